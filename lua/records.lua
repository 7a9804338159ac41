-- records.lua - what skudemo remembers, in the store (schema in
-- migrations.lua): events, orders and their timeline, tasks, the outbox of
-- buyer messages, uploads, and small named values. Every function is one
-- short statement or transaction; callers compose them.
local store, json, time, log = require "store", require "json", require "time", require "log"

local M = {}

-- ---- events ---------------------------------------------------------------

-- Inserts an event unless its event_id is known. Returns true when new.
function M.insert_event(envelope, body, source, outcome)
  local changes = store.exec(
    "INSERT OR IGNORE INTO events(event_id, event_type, order_id, body, source, received_at, outcome) " ..
    "VALUES (?, ?, ?, ?, ?, ?, ?)",
    envelope.event_id, envelope.event_type, M.event_order_id(envelope), body, source, time.now(), outcome)
  return changes == 1
end

function M.event(event_id)
  local row = store.row("SELECT * FROM events WHERE event_id = ?", event_id)
  if row then row.envelope = json.decode(row.body) end
  return row
end

function M.set_event_outcome(event_id, outcome)
  store.exec("UPDATE events SET outcome = ? WHERE event_id = ?", outcome, event_id)
end

-- The order an envelope is about: payload.order_id, or the context of an
-- order message (CONTRACT.md section 2). Nil when there is none.
function M.event_order_id(envelope)
  local p = envelope.payload
  if type(p) ~= "table" then return nil end
  local id = p.order_id
  if id == nil and p.context_type == "order" then id = p.context_id end
  if type(id) == "number" then id = string.format("%d", id) end
  if type(id) ~= "string" or id == "" or #id > 200 then return nil end
  return id
end

-- ---- orders ---------------------------------------------------------------

function M.order(order_id)
  return store.row("SELECT * FROM orders WHERE order_id = ?", order_id)
end

-- Creates an order record if there is none; returns the record.
function M.ensure_order(fields)
  local now = time.now()
  store.exec(
    "INSERT OR IGNORE INTO orders(order_id, ours, service_sku_id, buyer_id, price, state, created_at, updated_at) " ..
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    fields.order_id, fields.ours and 1 or 0, fields.service_sku_id, fields.buyer_id,
    tonumber(fields.price), fields.state or "pending_accept", now, now)
  return M.order(fields.order_id)
end

local ORDER_COLUMNS = {
  ours = true, service_sku_id = true, buyer_id = true, price = true, state = true, stopped = true,
  needs_human = true, requirement = true, task_id = true, accepted_at = true, guidance_at = true,
  delivered_at = true, completed_at = true,
}

-- Updates columns of an order (fields: column -> value; json.null clears).
function M.update_order(order_id, fields)
  local sets, values, n = {"updated_at = ?"}, {time.now()}, 1
  for k, v in pairs(fields) do
    if not ORDER_COLUMNS[k] then error("no order column " .. tostring(k), 2) end
    sets[#sets + 1] = k .. " = ?"
    if v == json.null then v = nil elseif type(v) == "boolean" then v = v and 1 or 0 end
    n = n + 1
    values[n] = v
  end
  values[n + 1] = order_id
  return store.exec("UPDATE orders SET " .. table.concat(sets, ", ") .. " WHERE order_id = ?",
                    table.unpack(values, 1, n + 1))
end

-- Orders in the given state, or needing a person (state = "needs_human").
function M.orders(state, limit)
  if state == "needs_human" then
    return store.query("SELECT * FROM orders WHERE needs_human IS NOT NULL ORDER BY updated_at DESC LIMIT ?", limit or 100)
  elseif state then
    return store.query("SELECT * FROM orders WHERE state = ? ORDER BY updated_at DESC LIMIT ?", state, limit or 100)
  end
  return store.query("SELECT * FROM orders ORDER BY created_at DESC LIMIT ?", limit or 100)
end

-- ---- timeline -------------------------------------------------------------

-- Adds a line to an order's timeline: kind (a word), detail (text or a
-- table, stored as JSON), the task it concerns.
-- Every line is logged too (a task without an order is only logged).
function M.note(order_id, kind, detail, task_id)
  if type(detail) == "table" then detail = json.encode(detail) end
  local failed = kind:find("failed") or kind == "forged_message" or kind == "stopped"
  log[failed and "warn" or "info"]((order_id and "order " or "task ") .. kind:gsub("_", " "),
    {order_id = order_id, task_id = task_id, detail = detail and #detail > 200 and detail:sub(1, 200) .. "..." or detail})
  if not order_id then return end
  store.exec("INSERT INTO order_timeline(order_id, at, kind, detail, task_id) VALUES (?, ?, ?, ?, ?)",
             order_id, time.now(), kind, detail, task_id)
end

function M.timeline(order_id)
  return store.query("SELECT * FROM order_timeline WHERE order_id = ? ORDER BY id", order_id)
end

-- ---- tasks ----------------------------------------------------------------

local TASK_COLUMNS = {
  optimized_prompt = true, generation_params = true, image_paths = true, status = true, step = true,
  error_message = true, model_attempts = true, completed_at = true, logged = true,
}

-- Creates a task; returns false when a task for the same message exists.
function M.insert_task(t)
  local changes = store.exec(
    "INSERT OR IGNORE INTO tasks(task_id, order_id, source, message_id, type, original_input, status, step, created_at) " ..
    "VALUES (?, ?, ?, ?, ?, ?, 'pending', 'analyze', ?)",
    t.task_id, t.order_id, t.source, t.message_id, t.type, t.original_input, t.created_at or time.now())
  return changes == 1
end

-- The task, with JSON columns decoded (generation_params, image_paths).
function M.task(task_id)
  local row = store.row("SELECT * FROM tasks WHERE task_id = ?", task_id)
  if not row then return nil end
  row.generation_params = row.generation_params and json.decode(row.generation_params) or nil
  row.image_paths = row.image_paths and json.decode(row.image_paths) or nil
  return row
end

function M.task_for_message(message_id)
  return store.row("SELECT task_id FROM tasks WHERE message_id = ?", message_id)
end

-- Updates task columns (tables are stored as JSON).
function M.update_task(task_id, fields)
  local sets, values, n = {}, {}, 0
  for k, v in pairs(fields) do
    if not TASK_COLUMNS[k] then error("no task column " .. tostring(k), 2) end
    sets[#sets + 1] = k .. " = ?"
    if v == json.null then v = nil elseif type(v) == "table" then v = json.encode(v) end
    n = n + 1
    values[n] = v
  end
  values[n + 1] = task_id
  return store.exec("UPDATE tasks SET " .. table.concat(sets, ", ") .. " WHERE task_id = ?",
                    table.unpack(values, 1, n + 1))
end

-- The order's tasks, newest first.
function M.order_tasks(order_id)
  return store.query("SELECT task_id, status, step, source, created_at FROM tasks WHERE order_id = ? " ..
                     "ORDER BY created_at DESC, rowid DESC", order_id)
end

-- ---- outbox (buyer messages) ------------------------------------------------

function M.outbox(key)
  return store.row("SELECT * FROM outbox WHERE key = ?", key)
end

-- Records a message about to be sent (once per key); returns the row.
function M.outbox_prepare(key, order_id, template, content)
  store.exec("INSERT OR IGNORE INTO outbox(key, order_id, template, content, created_at) VALUES (?, ?, ?, ?, ?)",
             key, order_id, template, content, time.now())
  return M.outbox(key)
end

function M.outbox_sent(key, message_id)
  store.exec("UPDATE outbox SET sent_at = ?, message_id = ? WHERE key = ?", time.now(), message_id, key)
end

-- ---- uploads ----------------------------------------------------------------

function M.upload(task_id, index)
  return store.row("SELECT * FROM uploads WHERE task_id = ? AND image_index = ?", task_id, index)
end

-- Records an upload about to be tried. Returns false when an earlier
-- attempt got this far (it may have reached the platform).
function M.upload_begin(task_id, index, order_id, path)
  return store.exec("INSERT OR IGNORE INTO uploads(task_id, image_index, order_id, path) VALUES (?, ?, ?, ?)",
                    task_id, index, order_id, path) == 1
end

function M.upload_done(task_id, index, file_id)
  store.exec("UPDATE uploads SET file_id = ?, uploaded_at = ? WHERE task_id = ? AND image_index = ?",
             file_id, time.now(), task_id, index)
end

-- ---- named values -------------------------------------------------------------

function M.get(key)
  local row = store.row("SELECT value FROM kv WHERE key = ?", key)
  return row and row.value
end

function M.put(key, value)
  store.exec("INSERT INTO kv(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
             key, value ~= nil and tostring(value) or nil)
end

return M
