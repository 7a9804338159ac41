-- sandbox/orders.lua - orders and their state machine (CONTRACT.md), order
-- messages, the accept and confirmation deadlines and dispute resolution.
--
--   pending_accept --accept--> in_progress --complete--> pending_confirmation --confirm/deadline--> completed
--         | reject, cancel, accept deadline                      | dispute
--         v                                                      v
--     cancelled                                             in_dispute --resolve--> completed | cancelled
--
-- Every move that is not on this map is a 409.
local config = require "config"
local crypto = require "crypto"
local json = require "json"
local pool = require "pool"
local store = require "store"
local time = require "time"
local web = require "sandbox.web"
local agents = require "sandbox.agents"
local listings = require "sandbox.listings"
local events = require "sandbox.events"

local orders = {}

orders.statuses = {
  pending_accept = true, in_progress = true, pending_confirmation = true,
  completed = true, cancelled = true, in_dispute = true,
}

local function null_if_nil(v)
  if v == nil then return json.null end
  return v
end

function orders.get(id)
  return store.row("SELECT * FROM orders WHERE id = ?", id)
end

function orders.requirement(order)
  local value = json.decode(order.requirement)
  if value == nil then return {} end
  return value
end

function orders.view(order)
  local listing = listings.get(order.listing_id)
  return {
    id = order.id, status = order.status, price = web.num(order.price),
    buyer_id = order.buyer_id, seller_id = order.seller_id,
    listing_id = order.listing_id, service_sku_id = order.listing_id,
    listing_title = listing and listing.title or json.null,
    requirement = orders.requirement(order),
    delivery_note = null_if_nil(order.delivery_note),
    cancel_reason = null_if_nil(order.cancel_reason),
    dispute_reason = null_if_nil(order.dispute_reason),
    created_at = order.created_at, updated_at = order.updated_at,
    accepted_at = null_if_nil(order.accepted_at), delivered_at = null_if_nil(order.delivered_at),
    completed_at = null_if_nil(order.completed_at), cancelled_at = null_if_nil(order.cancelled_at),
    accept_deadline_at = null_if_nil(order.accept_deadline_at),
  }
end

-- The payload of an order's events (CONTRACT.md's envelope), plus extra.
function orders.payload(order, extra)
  local payload = {
    order_id = order.id, service_sku_id = order.listing_id,
    seller_agent_id = order.seller_id, buyer_agent_id = order.buyer_id,
    price = web.num(order.price), requirement = orders.requirement(order), status = order.status,
  }
  for k, v in pairs(extra or {}) do payload[k] = v end
  return payload
end

-- The order of the request's {id} if the agent is its buyer or seller:
-- 404 when there is no such order, 403 for anyone else.
function orders.for_party(req, agent)
  local order = orders.get(req.params.id)
  if not order then web.fail(404, "Order not found", "not_found") end
  if agent.id ~= order.buyer_id and agent.id ~= order.seller_id then
    web.fail(403, "Only the order's buyer or seller may do this", "forbidden")
  end
  return order
end

local function allowed_from(order, from, action)
  if not from[order.status] then
    web.fail(409, string.format("Cannot %s an order that is %s", action, order.status),
             "invalid_state_transition", {current_status = order.status, action = action})
  end
end

-- Moves order id from one of the `from` statuses to `to` in one
-- transaction, setting the extra columns and emitting events with
-- emit(batch, order_after). Returns the order after the move.
local function move(id, action, from, to, columns, emit)
  local batch = events.batch()
  local moved = store.transaction(function()
    local order = orders.get(id)
    allowed_from(order, from, action)
    local sets, args = {"status = ?", "updated_at = ?"}, {to, time.iso()}
    for column, value in pairs(columns or {}) do
      sets[#sets + 1] = column .. " = ?"
      args[#args + 1] = value
    end
    args[#args + 1] = id
    store.exec("UPDATE orders SET " .. table.concat(sets, ", ") .. " WHERE id = ?", table.unpack(args))
    if to == "cancelled" then
      store.exec("UPDATE agents SET balance = balance + ? WHERE id = ?", order.price, order.buyer_id)
    elseif to == "completed" then
      store.exec("UPDATE agents SET balance = balance + ? WHERE id = ?", order.price, order.seller_id)
    end
    local after = orders.get(id)
    if emit then emit(batch, after) end
    return after
  end)
  batch:dispatch()
  return moved
end

local function both(order) return {order.buyer_id, order.seller_id} end

local function require_role(agent, order, role, action)
  local id = role == "seller" and order.seller_id or order.buyer_id
  if agent.id ~= id then
    web.fail(403, string.format("Only the order's %s may %s it", role, action), "forbidden")
  end
end

local function answer(order)
  return web.json(200, orders.view(order))
end

local function create(req)
  local buyer = agents.authenticate(req)
  local body = web.body(req)
  local listing_id = web.text(body, "listing_id", {required = true, max = 100})
  local requirement = body.requirement
  if not web.present(requirement) then
    requirement = {}
  elseif type(requirement) == "string" then
    requirement = web.text(body, "requirement", {min = 0, max = 5000})
  elseif type(requirement) ~= "table" then
    web.fail(400, "requirement must be a string or an object", "validation_error", {field = "requirement"})
  end
  local encoded = web.reencode(requirement, "requirement")
  if #encoded > 20000 then
    web.fail(400, "requirement is too large", "validation_error", {field = "requirement"})
  end
  local listing = listings.get(listing_id)
  if not listing then web.fail(404, "Listing not found", "not_found") end
  if listing.seller_id == buyer.id then
    web.fail(400, "You cannot order your own listing", "validation_error", {field = "listing_id"})
  end
  if listing.status ~= "active" then
    web.fail(409, "The listing is not active", "listing_unavailable", {listing_status = listing.status})
  end
  local deadline_ms = config.int("SANDBOX_ACCEPT_DEADLINE_MS", 30 * 60 * 1000)
  local id, now = crypto.uuid(), time.now()
  local batch = events.batch()
  store.transaction(function()
    local balance = store.row("SELECT balance FROM agents WHERE id = ?", buyer.id).balance
    if balance < listing.price then
      web.fail(400, "Insufficient balance", "insufficient_balance", {balance = web.num(balance)})
    end
    store.exec("UPDATE agents SET balance = balance - ? WHERE id = ?", listing.price, buyer.id)
    store.exec("INSERT INTO orders (id, listing_id, buyer_id, seller_id, status, price, requirement, "
               .. "created_at, updated_at, accept_deadline_at) VALUES (?, ?, ?, ?, 'pending_accept', ?, ?, ?, ?, ?)",
               id, listing.id, buyer.id, listing.seller_id, listing.price, encoded,
               time.iso(now), time.iso(now), time.iso(now + deadline_ms))
    local order = orders.get(id)
    batch:emit({order.seller_id}, "order.received", orders.payload(order))
  end)
  req.order_id = id  -- for the sandbox's call log
  pool.submit("accept_deadline", {order_id = id}, {delay = deadline_ms, key = "accept_deadline:" .. id})
  batch:dispatch()
  return web.json(201, {order = orders.view(orders.get(id))})
end

local function show(req)
  local agent = agents.authenticate(req)
  return web.json(200, {order = orders.view(orders.for_party(req, agent))})
end

local function list(req)
  local agent = agents.authenticate(req)
  local q = web.query(req)
  local page, limit, pagination = web.page(req, 20)
  local where, args = {}, {}
  local role = q.role
  if role == "seller" then
    where[#where + 1] = "seller_id = ?"; args[#args + 1] = agent.id
  elseif role == "buyer" then
    where[#where + 1] = "buyer_id = ?"; args[#args + 1] = agent.id
  elseif role == nil or role == "" then
    where[#where + 1] = "(seller_id = ? OR buyer_id = ?)"
    args[#args + 1] = agent.id; args[#args + 1] = agent.id
  else
    web.fail(400, "role must be seller or buyer", "validation_error", {field = "role"})
  end
  if q.status and q.status ~= "" then
    if not orders.statuses[q.status] then
      web.fail(400, "unknown status " .. q.status, "validation_error", {field = "status"})
    end
    where[#where + 1] = "status = ?"; args[#args + 1] = q.status
  end
  local clause = table.concat(where, " AND ")
  local total = store.row("SELECT COUNT(*) AS n FROM orders WHERE " .. clause, table.unpack(args)).n
  args[#args + 1] = limit
  args[#args + 1] = (page - 1) * limit
  local rows = store.query("SELECT * FROM orders WHERE " .. clause .. " ORDER BY rowid DESC LIMIT ? OFFSET ?",
                           table.unpack(args))
  local out = json.array()
  for _, row in ipairs(rows) do out[#out + 1] = orders.view(row) end
  return web.json(200, {orders = out, pagination = pagination(total)})
end

local function accept(req)
  local agent = agents.authenticate(req)
  local order = orders.for_party(req, agent)
  require_role(agent, order, "seller", "accept")
  web.body(req)
  return answer(move(order.id, "accept", {pending_accept = true}, "in_progress", {accepted_at = time.iso()},
    function(batch, after) batch:emit({after.buyer_id}, "order.accepted", orders.payload(after)) end))
end

local function reject(req)
  local agent = agents.authenticate(req)
  local order = orders.for_party(req, agent)
  require_role(agent, order, "seller", "reject")
  local reason = web.text(web.body(req), "reason", {required = true, max = 2000})
  return answer(move(order.id, "reject", {pending_accept = true}, "cancelled",
    {cancel_reason = reason, cancelled_at = time.iso()},
    function(batch, after)
      batch:emit({after.buyer_id}, "order.rejected", orders.payload(after, {reason = reason}))
    end))
end

local function cancel(req)
  local agent = agents.authenticate(req)
  local order = orders.for_party(req, agent)
  local reason = web.text(web.body(req), "reason", {required = true, max = 2000})
  return answer(move(order.id, "cancel", {pending_accept = true}, "cancelled",
    {cancel_reason = reason, cancelled_at = time.iso()},
    function(batch, after)
      batch:emit(both(after), "order.cancelled",
                 orders.payload(after, {reason = reason, cancelled_by = agent.id}))
    end))
end

local function complete(req)
  local agent = agents.authenticate(req)
  local order = orders.for_party(req, agent)
  require_role(agent, order, "seller", "complete")
  local note = web.text(web.body(req), "delivery_note", {required = true, max = 5000})
  local done = move(order.id, "complete", {in_progress = true}, "pending_confirmation",
    {delivery_note = note, delivered_at = time.iso()},
    function(batch, after)
      batch:emit({after.buyer_id}, "order.completed", orders.payload(after, {delivery_note = note}))
    end)
  local confirm_ms = config.int("SANDBOX_CONFIRM_DEADLINE_MS", 72 * 3600 * 1000)
  if confirm_ms > 0 then
    pool.submit("confirm_deadline", {order_id = done.id}, {delay = confirm_ms, key = "confirm_deadline:" .. done.id})
  end
  return answer(done)
end

local function confirm(req)
  local agent = agents.authenticate(req)
  local order = orders.for_party(req, agent)
  require_role(agent, order, "buyer", "confirm")
  web.body(req)
  return answer(move(order.id, "confirm", {pending_confirmation = true}, "completed", {completed_at = time.iso()},
    function(batch, after) batch:emit({after.seller_id}, "order.confirmed", orders.payload(after)) end))
end

local function dispute(req)
  local agent = agents.authenticate(req)
  local order = orders.for_party(req, agent)
  local reason = web.text(web.body(req), "reason", {required = true, min = 10, max = 2000})
  return answer(move(order.id, "dispute", {pending_confirmation = true}, "in_dispute", {dispute_reason = reason},
    function(batch, after)
      batch:emit(both(after), "dispute.raised",
                 orders.payload(after, {reason = reason, raised_by = agent.id}))
    end))
end

-- Ends a dispute (the sandbox's stand-in for the platform's arbitration):
-- outcome "completed" or "cancelled". Returns the order.
function orders.resolve_dispute(id, outcome, note)
  local columns = outcome == "completed" and {completed_at = time.iso()}
                  or {cancelled_at = time.iso(), cancel_reason = note or "dispute resolved for the buyer"}
  return move(id, "resolve", {in_dispute = true}, outcome, columns, function(batch, after)
    batch:emit(both(after), "dispute.resolved", orders.payload(after, {outcome = outcome, note = note}))
  end)
end

-- Job: cancels an order its seller did not accept in time.
local function accept_deadline(payload)
  local order = orders.get(payload.order_id)
  if not order or order.status ~= "pending_accept" then return end
  local reason = "The seller did not accept the order in time"
  local ok, err = pcall(move, order.id, "cancel", {pending_accept = true}, "cancelled",
    {cancel_reason = reason, cancelled_at = time.iso()},
    function(batch, after)
      batch:emit(both(after), "order.cancelled", orders.payload(after, {reason = reason, cancelled_by = "system"}))
    end)
  if not ok and not web.is_failure(err) then error(err, 0) end
end

-- Job: confirms a delivered order the buyer left unconfirmed.
local function confirm_deadline(payload)
  local order = orders.get(payload.order_id)
  if not order or order.status ~= "pending_confirmation" then return end
  local ok, err = pcall(move, order.id, "confirm", {pending_confirmation = true}, "completed",
    {completed_at = time.iso()},
    function(batch, after)
      batch:emit({after.seller_id}, "order.confirmed", orders.payload(after, {auto_confirmed = true}))
    end)
  if not ok and not web.is_failure(err) then error(err, 0) end
end

-- Messages ---------------------------------------------------------------

local function message_view(message)
  local sender = agents.get(message.sender_id)
  return {
    id = message.id, order_id = message.order_id, sender_id = message.sender_id,
    sender = {id = message.sender_id, name = sender and sender.name or json.null},
    content = message.content, created_at = message.created_at,
  }
end

local function messages(req)
  local agent = agents.authenticate(req)
  local order = orders.for_party(req, agent)
  local out = json.array()
  for _, row in ipairs(store.query("SELECT * FROM messages WHERE order_id = ? ORDER BY rowid", order.id)) do
    out[#out + 1] = message_view(row)
  end
  return web.json(200, {messages = out})
end

local function post_message(req)
  local agent = agents.authenticate(req)
  local order = orders.for_party(req, agent)
  local content = web.text(web.body(req), "content", {required = true, max = 5000})
  local id = crypto.uuid()
  local batch = events.batch()
  store.transaction(function()
    store.exec("INSERT INTO messages (id, order_id, sender_id, content, created_at) VALUES (?, ?, ?, ?, ?)",
               id, order.id, agent.id, content, time.iso())
    local other = agent.id == order.buyer_id and order.seller_id or order.buyer_id
    batch:emit({other}, "message.received", orders.payload(orders.get(order.id), {
      content = content, sender_name = agent.name, sender_id = agent.id, message_id = id,
      context_type = "order", context_id = order.id,
    }))
  end)
  batch:dispatch()
  return web.json(201, {message = message_view(store.row("SELECT * FROM messages WHERE id = ?", id))})
end

orders.routes = {
  {"POST", "/api/orders", create},
  {"GET", "/api/orders", list},
  {"GET", "/api/orders/{id}", show},
  {"POST", "/api/orders/{id}/accept", accept},
  {"POST", "/api/orders/{id}/reject", reject},
  {"POST", "/api/orders/{id}/cancel", cancel},
  {"POST", "/api/orders/{id}/complete", complete},
  {"POST", "/api/orders/{id}/confirm", confirm},
  {"POST", "/api/orders/{id}/dispute", dispute},
  {"GET", "/api/orders/{id}/messages", messages},
  {"POST", "/api/orders/{id}/messages", post_message},
}

orders.jobs = {accept_deadline = accept_deadline, confirm_deadline = confirm_deadline}

return orders
