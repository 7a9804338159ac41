-- End to end: the server killed with SIGKILL at the worst moments, then
-- restarted on the same store. Every order is delivered exactly once.
package.path = "tests/lib/?.lua;" .. package.path
local t = require "harness"
local world = require "world"
local time = require "time"

local w = world.start{name = "crash"}

local function explain(fn)
  return function()
    local ok, err = xpcall(fn, debug.traceback)
    w:clear_faults()
    w:model{image_latency_ms = 0}
    if not w.server then w:start_server() end
    if not ok then error(tostring(err) .. "\n" .. w:logs():sub(-6000), 0) end
  end
end

local function delivered_once(order_id)
  t.eq(w:count{order_id = order_id, route = "/api/orders/{id}/attachments", method = "POST", ok = true}, 1, "uploads")
  t.eq(#w.buyer:attachments(order_id).files, 1, "attachments")
  t.eq(w:count{order_id = order_id, route = "/api/orders/{id}/complete", ok = true}, 1, "completes")
  t.eq(#w:our_messages(order_id), 2, "guidance and one delivered message")
  t.eq(#w:task_lines(order_id), 1, "one task line")
end

t.test("killed during generation, restarted: delivered exactly once", explain(function()
  w:model{image_latency_ms = 1500}
  local order = w:order_and_say("a blue whale under the sea")
  t.eventually(function()
    local task = w:row("SELECT status FROM tasks WHERE order_id = ?", order.id)
    return task and task.status == "generating"
  end, 10000, "generation started")
  time.sleep(300)
  w:stop_server(true)
  t.eq(w:order(order.id).status, "in_progress")
  w:model{image_latency_ms = 0}
  w:start_server()
  w:wait_status(order.id, "pending_confirmation")
  delivered_once(order.id)
end))

t.test("killed between upload and complete, restarted: completed once, nothing made again", explain(function()
  local since = w:mark()
  w:fault{method = "POST", route = "/api/orders/{id}/complete", status = 503, count = 100000}
  local order = w:order_and_say("a red barn in a field")
  t.eventually(function() return w:has_note(order.id, "complete_failed") end, 10000, "complete failing")
  t.eq(w:count{order_id = order.id, route = "/api/orders/{id}/attachments", method = "POST", ok = true}, 1)
  w:stop_server(true)
  w:clear_faults()
  w:start_server()
  w:wait_status(order.id, "pending_confirmation")
  delivered_once(order.id)
  t.eq(w:model_calls("image", since), 1, "one generation")
end))

t.test("killed while the accept was in flight, restarted: accepted and guided once", explain(function()
  w:fault{method = "POST", route = "/api/orders/{id}/accept", delay_ms = 1500, count = 1}
  local order = w.buyer:place_order(w.sku)
  t.eventually(function() return w:local_order(order.id) end, 10000, "the order recorded")
  time.sleep(500)
  w:stop_server(true)
  w:start_server()
  w:wait_status(order.id, "in_progress")
  t.eventually(function() return #w:our_messages(order.id) == 1 end, 10000, "guidance")
  time.sleep(500)
  t.eq(#w:our_messages(order.id), 1, "guided once")
  w.buyer:message(order.id, "a violet tulip")
  w:wait_status(order.id, "pending_confirmation")
  delivered_once(order.id)
end))

t.test("killed while the upload was in flight, restarted: the attachment is found, not sent again",
       explain(function()
  w:fault{method = "POST", route = "/api/orders/{id}/attachments", delay_ms = 1500, count = 1}
  local order = w:order_and_say("a grey castle on a hill")
  t.eventually(function()
    local task = w:row("SELECT status FROM tasks WHERE order_id = ?", order.id)
    return task and task.status == "uploading"
  end, 10000, "upload started")
  time.sleep(300)
  w:stop_server(true)
  t.eventually(function() return #w.buyer:attachments(order.id).files == 1 end, 5000, "the upload landed")
  w:start_server()
  w:wait_status(order.id, "pending_confirmation")
  delivered_once(order.id)
end))

t.test("killed while the guidance message was in flight, restarted: guided once", explain(function()
  w:fault{method = "POST", route = "/api/orders/{id}/messages", delay_ms = 1500, count = 1}
  local order = w.buyer:place_order(w.sku)
  w:wait_status(order.id, "in_progress")
  time.sleep(300)
  w:stop_server(true)
  t.eventually(function() return #w:our_messages(order.id) == 1 end, 5000, "the message landed")
  w:start_server()
  time.sleep(800)
  t.eq(#w:our_messages(order.id), 1, "guided once")
  t.eventually(function()
    local o = w:local_order(order.id)
    return o and o.guidance_at
  end, 5000, "guidance recorded as sent")
end))

w:stop()
return t.done()
