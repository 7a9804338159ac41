-- End to end against the sandbox, with failures injected: the model's 503
-- then success, the model's 401 (no retry, buyer told, task failed), upload
-- failures then success (one generation), complete failures then success.
package.path = "tests/lib/?.lua;" .. package.path
local t = require "harness"
local world = require "world"
local time = require "time"

local w = world.start{name = "faults"}

local function explain(fn)
  return function()
    local ok, err = xpcall(fn, debug.traceback)
    w:clear_faults()
    if not ok then error(tostring(err) .. "\n" .. w:logs():sub(-6000), 0) end
  end
end

local MODEL = "/api/v1/chat/completions"

t.test("the image model's 503 is retried, then the image is delivered", explain(function()
  local since = w:mark()
  w:fault{route = MODEL, kind = "image", status = 503, count = 2, retry_after = 0}
  local order = w:order_and_say("an orange fox in the snow")
  w:wait_status(order.id, "pending_confirmation")
  t.eq(w:model_calls("image", since), 3, "two failures and a success")
  t.eq(w:count{order_id = order.id, route = "/api/orders/{id}/attachments", method = "POST"}, 1)
  local lines = w:task_lines(order.id)
  t.eq(#lines, 1)
  t.eq(lines[1].status, "success")
  t.ok(w:has_note(order.id, "generate_failed"))
end))

t.test("a 200 without images and a 200 with an error object are retried too", explain(function()
  local since = w:mark()
  w:fault{route = MODEL, kind = "image", mode = "no_images", count = 1}
  w:fault{route = MODEL, kind = "image", mode = "error_object", count = 1}
  local order = w:order_and_say("a pink flamingo")
  w:wait_status(order.id, "pending_confirmation")
  t.eq(w:model_calls("image", since), 3)
end))

t.test("the image model's 401 is not retried: the buyer is told, the task fails, the order stays open",
       explain(function()
  local since = w:mark()
  w:fault{route = MODEL, kind = "image", status = 401, count = 1}
  local order = w:order_and_say("a silver robot")
  t.eventually(function() return #w:task_lines(order.id) == 1 end, 10000, "the task's line")
  local line = w:task_lines(order.id)[1]
  t.eq(line.status, "failed")
  t.match(line.error_message, "401")
  t.eq(w:model_calls("image", since), 1, "no retry")
  t.eventually(function() return #w:our_messages(order.id) == 2 end, 10000, "the buyer told")
  t.match(w:our_messages(order.id)[2], "could not generate")
  time.sleep(300)
  t.eq(w:order(order.id).status, "in_progress")
  t.eq(w:count{order_id = order.id, route = "/api/orders/{id}/attachments", method = "POST"}, 0)
  -- the buyer asks again: a new task delivers
  w.buyer:message(order.id, "a silver robot, please try again")
  w:wait_status(order.id, "pending_confirmation")
  t.eq(#w:task_lines(order.id), 2)
end))

t.test("the text model's 402 fails the task before any image is made", explain(function()
  local since = w:mark()
  w:fault{route = MODEL, kind = "text", status = 402, count = 1}
  local order = w:order_and_say("a gold coin")
  t.eventually(function() return #w:task_lines(order.id) == 1 end, 10000, "the task's line")
  t.eq(w:task_lines(order.id)[1].status, "failed")
  t.eq(w:model_calls("image", since), 0)
  t.eq(w:model_calls("text", since), 1)
end))

t.test("upload failures are retried without generating again", explain(function()
  local since = w:mark()
  w:fault{method = "POST", route = "/api/orders/{id}/attachments", status = 500, count = 2}
  local order = w:order_and_say("a purple mountain")
  w:wait_status(order.id, "pending_confirmation")
  t.eq(w:model_calls("image", since), 1, "one generation")
  t.eq(w:count{order_id = order.id, route = "/api/orders/{id}/attachments", method = "POST", ok = true}, 1)
  t.eq(#w.buyer:attachments(order.id).files, 1)
  t.eq(w:task_lines(order.id)[1].status, "success")
end))

t.test("an upload that keeps failing: buyer told, images kept, order stays in_progress", explain(function()
  w:fault{method = "POST", route = "/api/orders/{id}/attachments", status = 400, count = 1}
  local order = w:order_and_say("a teal boat")
  t.eventually(function() return #w:task_lines(order.id) == 1 end, 10000, "the task's line")
  local line = w:task_lines(order.id)[1]
  t.eq(line.status, "failed")
  t.match(line.error_message, "upload failed")
  t.eq(#line.image_paths, 1)
  t.ok(require("fs").exists(line.image_paths[1]), "the image is kept")
  t.eventually(function() return #w:our_messages(order.id) == 2 end, 10000, "the buyer told")
  t.match(w:our_messages(order.id)[2], "could not attach")
  t.eq(w:order(order.id).status, "in_progress")
  t.ok(w:local_order(order.id).needs_human)
end))

t.test("complete failures are retried without generating or uploading again", explain(function()
  local since = w:mark()
  w:fault{method = "POST", route = "/api/orders/{id}/complete", status = 503, count = 3}
  local order = w:order_and_say("a brown bear")
  w:wait_status(order.id, "pending_confirmation")
  t.eq(w:model_calls("image", since), 1)
  t.eq(w:count{order_id = order.id, route = "/api/orders/{id}/attachments", method = "POST"}, 1)
  t.eq(w:count{order_id = order.id, route = "/api/orders/{id}/complete", ok = true}, 1)
  t.eq(#w:our_messages(order.id), 2, "one delivered message")
end))

t.test("accept failures are retried; a 429 honours Retry-After", explain(function()
  w:fault{method = "POST", route = "/api/orders/{id}/accept", status = 429, retry_after = 1, count = 1}
  w:fault{method = "POST", route = "/api/orders/{id}/accept", status = 502, count = 1}
  local placed = time.mono()
  local order = w.buyer:place_order(w.sku)
  w:wait_status(order.id, "in_progress")
  t.ok(time.mono() - placed >= 900, "waited for Retry-After")
  t.eq(w:count{order_id = order.id, route = "/api/orders/{id}/accept"}, 3)
end))

w:stop()
return t.done()
