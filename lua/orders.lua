-- orders.lua - the order state machine: the guide's event table, and the
-- decisions taken on each event and each buyer requirement. Pure functions
-- of plain data; the jobs that carry the decisions out are in pipeline.lua.
--
--   event_type        | what we do                                  | order status target
--   order.received    | check service_sku_id == SERVICE_SKU_ID,     | pending_accept -> in_progress
--                     | accept, send the guidance message           |
--   message.received  | read the buyer's requirement, generate,     | stays in_progress
--                     | upload, reply, complete                     |
--   order.completed   | nothing (sent after we complete)            | pending_confirmation
--   order.confirmed   | archive the order as completed              | completed
--   order.cancelled,  | stop all automation for the order; list it  | cancelled / in_dispute
--   order.rejected,   | for manual handling                         |
--   dispute.raised    |                                             |
--   anything else     | stored and acknowledged, nothing else       |
local O = {}

-- The guide's table. action: what the event asks of us; target: the status
-- the order is at afterwards.
O.events = {
  ["order.received"]   = {action = "accept", target = "in_progress"},
  ["message.received"] = {action = "requirement"},
  ["order.accepted"]   = {action = "record", target = "in_progress"},
  ["order.completed"]  = {action = "record", target = "pending_confirmation"},
  ["order.confirmed"]  = {action = "archive", target = "completed"},
  ["order.cancelled"]  = {action = "stop", target = "cancelled"},
  ["order.rejected"]   = {action = "stop", target = "cancelled"},
  ["dispute.raised"]   = {action = "stop", target = "in_dispute"},
  ["dispute.resolved"] = {action = "record"},
}

-- Platform statuses in the order they are reached (CONTRACT.md).
O.rank = {pending_accept = 1, in_progress = 2, pending_confirmation = 3, completed = 4}
O.final = {completed = true, cancelled = true}

-- The status an order moves to when an event (or the platform) says
-- `target`: never backwards (events arrive out of order), never out of a
-- final status, and out of a dispute only to its outcome.
function O.advance(current, target)
  if not target or target == current then return current end
  if not current then return target end
  if O.final[current] then return current end
  if current == "in_dispute" then
    return (target == "completed" or target == "cancelled") and target or current
  end
  if target == "cancelled" or target == "in_dispute" then return target end
  local from, to = O.rank[current], O.rank[target]
  if from and to and to > from then return target end
  if not from then return target end
  return current
end

-- Whether an event of this type needs a job at all (the rest are only stored).
function O.needs_job(envelope, sku)
  local rule = O.events[envelope.event_type]
  if not rule then return false end
  if envelope.event_type == "order.received" then
    local p = envelope.payload or {}
    return sku ~= nil and sku ~= "" and tostring(p.service_sku_id) == sku
  end
  return true
end

local function sender_of(payload)
  local s = payload.sender_id or payload.sender_agent_id
  if s == nil and type(payload.sender) == "table" then s = payload.sender.id end
  return s ~= nil and tostring(s) or nil
end
O.sender_of = sender_of

-- What to do with an event. order: our record of the order (or nil);
-- ctx: {sku = SERVICE_SKU_ID, agent_id = our id}. Returns a decision
-- {action = s, target = s|nil, reason = s}, where action is one of
--   accept, read_message, record, archive, stop, ignore.
function O.decide(envelope, order, ctx)
  local kind = envelope.event_type
  local rule = O.events[kind]
  local p = type(envelope.payload) == "table" and envelope.payload or {}
  if not rule then return {action = "ignore", reason = "event type not handled"} end

  if kind == "order.received" then
    if not ctx.sku or ctx.sku == "" then return {action = "ignore", reason = "SERVICE_SKU_ID is not set"} end
    if tostring(p.service_sku_id) ~= ctx.sku then return {action = "ignore", reason = "other SKU"} end
    if ctx.agent_id and p.seller_agent_id and tostring(p.seller_agent_id) ~= ctx.agent_id then
      return {action = "ignore", reason = "not our order"}
    end
    if order and order.stopped == 1 then return {action = "ignore", reason = "automation stopped"} end
    return {action = "accept", target = rule.target}
  end

  if kind == "message.received" then
    if p.context_type ~= nil and p.context_type ~= "order" then
      return {action = "ignore", reason = "not an order message"}
    end
    local sender = sender_of(p)
    if sender and ctx.agent_id and sender == ctx.agent_id then
      return {action = "ignore", reason = "our own message"}
    end
    if order and order.ours ~= 1 then return {action = "ignore", reason = "other SKU"} end
    if order and order.stopped == 1 then return {action = "ignore", reason = "automation stopped"} end
    return {action = "read_message"}
  end

  return {action = rule.action, target = rule.target}
end

-- Whether a task status means the task is still on its way.
O.task_active = {pending = true, generating = true, uploading = true}

-- What to do with a buyer message read back from the platform.
-- requirement: the usable requirement or nil; order: our record; tasks: the
-- order's tasks, newest first. Returns one of
--   start_task      make and deliver the image
--   guidance        no usable requirement yet: ask again
--   busy            an image is being made already
--   after_delivery  delivered already: no second free image
--   wait_accept     the order is not accepted yet: look again shortly
--   stopped         automation is stopped for this order
--   none            nothing to say (a thank-you after delivery, say)
function O.on_message(requirement, order, tasks)
  if order.stopped == 1 or order.state == "cancelled" or order.state == "in_dispute" then
    return "stopped"
  end
  local delivered = order.delivered_at ~= nil or order.state == "pending_confirmation" or
    order.state == "completed"
  if delivered then return requirement and "after_delivery" or "none" end
  if order.state == "pending_accept" then return "wait_accept" end
  for _, t in ipairs(tasks or {}) do
    if O.task_active[t.status] then return requirement and "busy" or "none" end
  end
  if not requirement then return "guidance" end
  return "start_task"
end

return O
