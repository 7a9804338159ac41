-- The order state machine's decisions (lua/orders.lua), as pure functions.
package.path = "tests/lib/?.lua;" .. package.path
local t = require "harness"
local orders = require "orders"

local ctx = {sku = "sku-1", agent_id = "seller-1"}

local function event(kind, payload)
  return {event_id = 1, event_type = kind, payload = payload or {}}
end

t.test("order.received for our SKU is accepted", function()
  local d = orders.decide(event("order.received", {order_id = "o1", service_sku_id = "sku-1",
                                                   seller_agent_id = "seller-1"}), nil, ctx)
  t.eq(d.action, "accept")
  t.eq(d.target, "in_progress")
end)

t.test("order.received for another SKU is ignored", function()
  local d = orders.decide(event("order.received", {order_id = "o1", service_sku_id = "sku-2"}), nil, ctx)
  t.eq(d.action, "ignore")
  t.eq(d.reason, "other SKU")
  t.eq(orders.decide(event("order.received", {service_sku_id = "sku-1"}), nil, {sku = ""}).action, "ignore")
end)

t.test("order.received for a stopped order does nothing", function()
  local d = orders.decide(event("order.received", {service_sku_id = "sku-1"}), {stopped = 1, ours = 1}, ctx)
  t.eq(d.action, "ignore")
end)

t.test("a numeric service_sku_id matches its string form", function()
  local d = orders.decide(event("order.received", {service_sku_id = 42}), nil, {sku = "42"})
  t.eq(d.action, "accept")
end)

t.test("message.received from the buyer is read back; ours and stopped orders are not", function()
  local order = {ours = 1, stopped = 0, state = "in_progress"}
  t.eq(orders.decide(event("message.received", {order_id = "o1", sender_id = "buyer"}), order, ctx).action,
       "read_message")
  t.eq(orders.decide(event("message.received", {order_id = "o1", sender_id = "seller-1"}), order, ctx).action,
       "ignore")
  t.eq(orders.decide(event("message.received", {order_id = "o1"}), {ours = 1, stopped = 1}, ctx).action, "ignore")
  t.eq(orders.decide(event("message.received", {order_id = "o1"}), {ours = 0, stopped = 0}, ctx).action, "ignore")
  t.eq(orders.decide(event("message.received", {context_type = "task", context_id = "x"}), nil, ctx).action,
       "ignore")
  t.eq(orders.decide(event("message.received", {context_type = "order", context_id = "o1"}), nil, ctx).action,
       "read_message")
end)

t.test("cancel, reject and dispute stop the automation", function()
  t.same(orders.decide(event("order.cancelled", {order_id = "o1"}), nil, ctx), {action = "stop", target = "cancelled"})
  t.same(orders.decide(event("order.rejected", {order_id = "o1"}), nil, ctx), {action = "stop", target = "cancelled"})
  t.same(orders.decide(event("dispute.raised", {order_id = "o1"}), nil, ctx), {action = "stop", target = "in_dispute"})
end)

t.test("confirmed archives, completed records, unknown types are ignored", function()
  t.same(orders.decide(event("order.confirmed"), nil, ctx), {action = "archive", target = "completed"})
  t.same(orders.decide(event("order.completed"), nil, ctx), {action = "record", target = "pending_confirmation"})
  t.eq(orders.decide(event("uat.received"), nil, ctx).action, "ignore")
  t.eq(orders.decide(event("something.new"), nil, ctx).action, "ignore")
end)

t.test("the guide's table: every event type it names has a rule", function()
  for _, kind in ipairs{"order.received", "message.received", "order.completed", "order.confirmed",
                        "order.cancelled", "dispute.raised"} do
    t.ok(orders.events[kind], kind)
  end
end)

t.test("statuses only move forward, and out of a dispute only to its outcome", function()
  t.eq(orders.advance("pending_accept", "in_progress"), "in_progress")
  t.eq(orders.advance("pending_confirmation", "in_progress"), "pending_confirmation")
  t.eq(orders.advance("completed", "cancelled"), "completed")
  t.eq(orders.advance("cancelled", "in_progress"), "cancelled")
  t.eq(orders.advance("in_progress", "cancelled"), "cancelled")
  t.eq(orders.advance("pending_confirmation", "in_dispute"), "in_dispute")
  t.eq(orders.advance("in_dispute", "in_progress"), "in_dispute")
  t.eq(orders.advance("in_dispute", "completed"), "completed")
  t.eq(orders.advance(nil, "in_progress"), "in_progress")
  t.eq(orders.advance("in_progress", nil), "in_progress")
end)

t.test("a requirement starts a task only once per order", function()
  local order = {ours = 1, stopped = 0, state = "in_progress"}
  t.eq(orders.on_message("a blue cat", order, {}), "start_task")
  t.eq(orders.on_message(nil, order, {}), "guidance")
  t.eq(orders.on_message("a red dog", order, {{status = "generating"}}), "busy")
  t.eq(orders.on_message(nil, order, {{status = "generating"}}), "none")
  t.eq(orders.on_message("again", order, {{status = "failed"}}), "start_task")
end)

t.test("after delivery: a template reply, never a second free image", function()
  local delivered = {ours = 1, stopped = 0, state = "in_progress", delivered_at = 123}
  t.eq(orders.on_message("another image please", delivered, {{status = "success"}}), "after_delivery")
  t.eq(orders.on_message(nil, delivered, {}), "none")
  t.eq(orders.on_message("more", {ours = 1, stopped = 0, state = "pending_confirmation"}, {}), "after_delivery")
  t.eq(orders.on_message("more", {ours = 1, stopped = 0, state = "completed"}, {}), "after_delivery")
end)

t.test("stopped and not yet accepted orders", function()
  t.eq(orders.on_message("a cat", {ours = 1, stopped = 1, state = "in_progress"}, {}), "stopped")
  t.eq(orders.on_message("a cat", {ours = 1, stopped = 0, state = "in_dispute"}, {}), "stopped")
  t.eq(orders.on_message("a cat", {ours = 1, stopped = 0, state = "pending_accept"}, {}), "wait_accept")
end)

t.test("only event types that do something get a job", function()
  t.eq(orders.needs_job(event("order.received", {service_sku_id = "sku-1"}), "sku-1"), true)
  t.eq(orders.needs_job(event("order.received", {service_sku_id = "sku-2"}), "sku-1"), false)
  t.eq(orders.needs_job(event("order.received", {service_sku_id = "sku-1"}), ""), false)
  t.eq(orders.needs_job(event("message.received", {}), "sku-1"), true)
  t.eq(orders.needs_job(event("uat.received", {}), "sku-1"), false)
end)

return t.done()
