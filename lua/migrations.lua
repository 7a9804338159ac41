-- migrations.lua - the store's schema, one step per version. The store
-- keeps its version in `PRAGMA user_version`; `migrations.run()` applies
-- the steps it has not seen, each in its own transaction. Add steps at the
-- end; never change one that has shipped.
--
-- Tables (times are wall-clock milliseconds):
--   events          every webhook or feed event, once per event_id
--   orders          our view of each order and whether automation still runs
--   order_timeline  what happened to an order, in order (admin page, `skudemo order ID`)
--   tasks           image tasks (the guide's task record), one per requirement
--   outbox          messages to buyers, so none is sent twice
--   uploads         attachments uploaded for a task, so none is uploaded twice
--   kv              small named values (the events feed cursor)
--   admin_signins   failed admin sign-ins, for the rate limit
local store = require "store"

local M = {}

M.steps = {
  -- 1: the fulfillment records
  [[
  CREATE TABLE IF NOT EXISTS events (
    event_id     INTEGER PRIMARY KEY,
    event_type   TEXT NOT NULL,
    order_id     TEXT,
    body         TEXT NOT NULL,
    source       TEXT NOT NULL,          -- webhook | feed
    received_at  INTEGER NOT NULL,
    outcome      TEXT                     -- what the state machine made of it
  );
  CREATE INDEX IF NOT EXISTS events_order ON events(order_id);

  CREATE TABLE IF NOT EXISTS orders (
    order_id        TEXT PRIMARY KEY,
    ours            INTEGER NOT NULL DEFAULT 0,   -- 1: our SKU, automation applies
    service_sku_id  TEXT,
    buyer_id        TEXT,
    price           REAL,
    state           TEXT NOT NULL,                -- last known platform status
    stopped         INTEGER NOT NULL DEFAULT 0,   -- 1: automation stopped for good
    needs_human     TEXT,                         -- why a person should look, or NULL
    requirement     TEXT,                         -- the requirement being delivered
    task_id         TEXT,                         -- the task delivering this order
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    accepted_at     INTEGER,
    guidance_at     INTEGER,
    delivered_at    INTEGER,
    completed_at    INTEGER
  );
  CREATE INDEX IF NOT EXISTS orders_state ON orders(state);

  CREATE TABLE IF NOT EXISTS order_timeline (
    id        INTEGER PRIMARY KEY,
    order_id  TEXT NOT NULL,
    at        INTEGER NOT NULL,
    kind      TEXT NOT NULL,     -- received, accepted, guidance_sent, requirement, prompt,
                                 -- generated, uploaded, delivered, completed, confirmed,
                                 -- stopped, ignored, forged_message, ..._failed
    detail    TEXT,
    task_id   TEXT
  );
  CREATE INDEX IF NOT EXISTS order_timeline_order ON order_timeline(order_id, id);

  CREATE TABLE IF NOT EXISTS tasks (
    task_id           TEXT PRIMARY KEY,
    order_id          TEXT,
    source            TEXT NOT NULL,           -- order | admin
    message_id        TEXT UNIQUE,             -- the buyer message it answers
    type              TEXT,
    original_input    TEXT NOT NULL,
    optimized_prompt  TEXT,
    generation_params TEXT,                    -- JSON
    image_paths       TEXT,                    -- JSON array
    status            TEXT NOT NULL,           -- pending, generating, uploading, success, failed
    step              TEXT,                    -- the step it is at or failed in
    error_message     TEXT,
    model_attempts    INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    completed_at      INTEGER,
    logged            INTEGER NOT NULL DEFAULT 0   -- 1: writing, 2: its line is in image_tasks.jsonl
  );
  CREATE INDEX IF NOT EXISTS tasks_order ON tasks(order_id);

  CREATE TABLE IF NOT EXISTS outbox (
    key         TEXT PRIMARY KEY,
    order_id    TEXT NOT NULL,
    template    TEXT,
    content     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    sent_at     INTEGER,
    message_id  TEXT
  );

  CREATE TABLE IF NOT EXISTS uploads (
    task_id      TEXT NOT NULL,
    image_index  INTEGER NOT NULL,
    order_id     TEXT NOT NULL,
    path         TEXT NOT NULL,
    file_id      TEXT,
    uploaded_at  INTEGER,
    PRIMARY KEY (task_id, image_index)
  );

  CREATE TABLE IF NOT EXISTS kv (
    key    TEXT PRIMARY KEY,
    value  TEXT
  );
  ]],

  -- 2: failed admin sign-ins, for the per-client rate limit (admin_page.lua)
  [[
  CREATE TABLE IF NOT EXISTS admin_signins (
    remote  TEXT NOT NULL,
    at      INTEGER NOT NULL
  );
  CREATE INDEX IF NOT EXISTS admin_signins_remote ON admin_signins(remote, at);
  ]],
  -- 3: webhook intake is the hot path: no index the fulfillment never reads by
  [[
  DROP INDEX IF EXISTS events_order;
  ]],
}

-- The version the store is at.
function M.version()
  local row = store.row("PRAGMA user_version")
  return row and row.user_version or 0
end

-- Splits a step into statements, comments removed (no step has '--' or
-- ';' inside a string literal).
local function statements(sql)
  local out = {}
  for stmt in sql:gsub("%-%-[^\n]*", ""):gmatch("[^;]+") do
    local body = stmt:match("^%s*(.-)%s*$")
    if body ~= "" then out[#out + 1] = body end
  end
  return out
end

-- Applies every step above the store's version; returns the new version.
function M.run()
  local version = M.version()
  for v = version + 1, #M.steps do
    store.transaction(function()
      for _, stmt in ipairs(statements(M.steps[v])) do store.exec(stmt) end
      store.exec("PRAGMA user_version = " .. v)
    end)
  end
  return #M.steps
end

return M
