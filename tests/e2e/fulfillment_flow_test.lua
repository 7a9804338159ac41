-- End to end against the sandbox: the happy path to pending_confirmation
-- and, once the buyer confirms, completed; the SKU filter; one event
-- delivered twice and at once; a forged message; an event only in the feed;
-- cancel and dispute stopping the automation.
package.path = "tests/lib/?.lua;" .. package.path
local t = require "harness"
local world = require "world"
local json, time, fs = require "json", require "time", require "fs"

local w = world.start{name = "flow"}

local function explain(fn)
  return function()
    local ok, err = xpcall(fn, debug.traceback)
    if not ok then error(tostring(err) .. "\n" .. w:logs():sub(-6000), 0) end
  end
end

t.test("happy path: accepted, guided, generated, uploaded, delivered, completed", explain(function()
  local since = w:mark()
  local order = w:order_and_say("Please generate a blue tech-style cover image")
  local delivered = w:wait_status(order.id, "pending_confirmation")
  t.match(delivered.delivery_note, "task")
  -- the buyer sees the guidance, the image and the delivered message
  local said = w:our_messages(order.id)
  t.eq(#said, 2, "guidance and delivered messages")
  t.match(said[1], "image requirements")
  t.match(said[2], "attached")
  local files = w.buyer:attachments(order.id).files
  t.eq(#files, 1)
  t.eq(files[1].file_type, "seller_delivery")
  t.ok(files[1].description:find(order.id, 1, true), "the description names the order")
  -- one of everything
  t.eq(w:count{order_id = order.id, route = "/api/orders/{id}/accept"}, 1, "accepts")
  t.eq(w:count{order_id = order.id, route = "/api/orders/{id}/attachments", method = "POST"}, 1, "uploads")
  t.eq(w:count{order_id = order.id, route = "/api/orders/{id}/complete"}, 1, "completes")
  t.eq(w:model_calls("image", since), 1, "image calls")
  t.eq(w:model_calls("text", since), 1, "text calls")
  -- the task record and the image on disk
  local lines = w:task_lines(order.id)
  t.eq(#lines, 1)
  local task = lines[1]
  t.eq(task.status, "success")
  t.eq(task.original_input, "Please generate a blue tech-style cover image")
  t.ok(task.optimized_prompt ~= json.null and #task.optimized_prompt > 0)
  t.eq(task.generation_params.count, 1)
  t.ok(task.generation_params.model)
  t.ok(task.created_at and task.completed_at)
  t.eq(task.error_message, json.null)
  t.eq(#task.image_paths, 1)
  local png = fs.read(task.image_paths[1])
  t.eq(png:sub(1, 8), "\137PNG\r\n\26\n")
  -- our record and its timeline
  local o = w:local_order(order.id)
  t.eq(o.state, "pending_confirmation")
  for _, kind in ipairs{"received", "accepted", "message_sent", "requirement", "prompt", "generated", "uploaded",
                        "delivered", "completed"} do
    t.ok(w:has_note(order.id, kind), "timeline has " .. kind)
  end
  -- the buyer confirms: archived as completed
  w.buyer:confirm(order.id)
  t.eventually(function() return w:local_order(order.id).state == "completed" end, 10000, "completed locally")
  t.ok(w:has_note(order.id, "confirmed"))
end))

t.test("orders for another SKU are recorded and ignored", explain(function()
  local other = w:create_listing("Someone else's service")
  local order = w.buyer:place_order(other)
  t.eventually(function()
    local e = w:row("SELECT outcome FROM events WHERE order_id = ? AND event_type = 'order.received'", order.id)
    return e and e.outcome
  end, 10000, "the event stored")
  time.sleep(300)
  t.eq(w:count{order_id = order.id, route = "/api/orders/{id}/accept"}, 0)
  t.eq(w:order(order.id).status, "pending_accept")
  t.match(w:row("SELECT outcome FROM events WHERE order_id = ?", order.id).outcome, "other SKU")
end))

t.test("one event delivered twice and many times at once: one of everything", explain(function()
  local since = w:mark()
  w:webhooks{duplicate = 4}
  local order = w:order_and_say("a red circle on a white background")
  w:wait_status(order.id, "pending_confirmation")
  -- and the same message event again, twenty times at once
  local ev = w:row("SELECT body FROM events WHERE order_id = ? AND event_type = 'message.received'", order.id)
  local sig = require("crypto").hmac_sha256(w.webhook_secret, ev.body)
  local body_file = w.dir .. "/event.json"
  fs.write(body_file, ev.body)
  local cmd = string.format("for i in $(seq 20); do curl -s -o /dev/null -w '%%{http_code}\\n' -X POST " ..
    "-H 'Content-Type: application/json' -H 'X-Webhook-Signature: %s' --data-binary @%s %s/api/v1/webhook/orders & " ..
    "done; wait", sig, body_file, w.url)
  local f = io.popen(cmd)
  local codes = f:read("a")
  f:close()
  local n = 0
  for code in codes:gmatch("%d+") do t.eq(code, "200") n = n + 1 end
  t.eq(n, 20)
  time.sleep(500)
  t.eq(w:count{order_id = order.id, route = "/api/orders/{id}/accept"}, 1, "accepts")
  t.eq(w:count{order_id = order.id, route = "/api/orders/{id}/attachments", method = "POST"}, 1, "uploads")
  t.eq(w:count{order_id = order.id, route = "/api/orders/{id}/complete"}, 1, "completes")
  t.eq(w:model_calls("image", since), 1, "image calls")
  t.eq(#w:our_messages(order.id), 2, "messages")
  t.eq(#w:task_lines(order.id), 1)
end))

t.test("a forged message.received costs nothing", explain(function()
  local order = w:order_and_say(nil)
  t.eventually(function() return #w:our_messages(order.id) == 1 end, 10000, "guidance")
  local since = w:mark()
  local res, body = w:post_webhook{event_id = 900000001, event_type = "message.received",
    payload = {order_id = order.id, message_id = "not-a-message", sender_id = w.info.buyer.agent_id,
               content = "a green dragon, please"}, created_at = time.iso()}
  t.eq(res.status, 200)
  t.eq(body.duplicate, false)
  t.eventually(function() return w:has_note(order.id, "forged_message") end, 10000, "forged noted")
  t.eq(w:model_calls(nil, since), 0, "model calls")
  t.eq(#w:our_messages(order.id), 1)
end))

t.test("a message.received for an order that does not exist is ignored", explain(function()
  local since = w:mark()
  local res = w:post_webhook{event_id = 900000002, event_type = "message.received",
    payload = {order_id = "no-such-order", message_id = "m1", sender_id = "someone", content = "a red cat"}}
  t.eq(res.status, 200)
  t.eventually(function()
    local e = w:row("SELECT outcome FROM events WHERE event_id = 900000002")
    return e and e.outcome
  end, 10000, "an outcome")
  t.match(w:row("SELECT outcome FROM events WHERE event_id = 900000002").outcome, "no such order")
  t.eq(w:model_calls(nil, since), 0)
  t.eq(#require("pool").jobs{state = "dead"}, 0, "no dead job")
end))

t.test("an event only in the events feed is handled, once", explain(function()
  w:webhooks{drop = 1}
  local order = w.buyer:place_order(w.sku)
  w:wait_status(order.id, "in_progress", 15000)
  local e = w:row("SELECT source FROM events WHERE order_id = ? AND event_type = 'order.received'", order.id)
  t.eq(e.source, "feed")
  t.eq(w:count{order_id = order.id, route = "/api/orders/{id}/accept"}, 1)
  local acked = w:control("GET", "/events?order_id=" .. order.id).events[1]
  t.eventually(function() return w:control("GET", "/events?order_id=" .. order.id).events[1].acked end, 5000,
               "acknowledged")
  t.eq(acked.event_type, "order.received")
end))

t.test("a cancelled order stops the automation and waits for a person", explain(function()
  w:fault{method = "POST", route = "/api/orders/{id}/accept", status = 503, count = 1000}
  local order = w.buyer:place_order(w.sku)
  t.eventually(function() return w:has_note(order.id, "accept_failed") end, 10000, "accept retried")
  w.buyer:cancel(order.id, "changed my mind")
  t.eventually(function() local o = w:local_order(order.id) return o and o.stopped == 1 end, 10000, "stopped")
  w:clear_faults()
  time.sleep(600)
  t.eq(w:count{order_id = order.id, route = "/api/orders/{id}/accept", ok = true}, 0, "no accept")
  local o = w:local_order(order.id)
  t.eq(o.state, "cancelled")
  t.ok(o.needs_human)
  t.eq(#w:our_messages(order.id), 0)
end))

t.test("a dispute stops the automation: no more replies", explain(function()
  local order = w:order_and_say("a yellow sun")
  w:wait_status(order.id, "pending_confirmation")
  w.buyer:dispute(order.id, "This is not what I asked for at all")
  t.eventually(function() local o = w:local_order(order.id) return o.stopped == 1 end, 10000, "stopped")
  local before = #w:our_messages(order.id)
  w.buyer:message(order.id, "please make another one, a purple moon")
  time.sleep(800)
  t.eq(#w:our_messages(order.id), before, "no reply after the dispute")
  local o = w:local_order(order.id)
  t.eq(o.state, "in_dispute")
  t.ok(o.needs_human)
end))

t.test("a second requirement after delivery gets a reply, not a second image", explain(function()
  local since = w:mark()
  local order = w:order_and_say("a black cat")
  w:wait_status(order.id, "pending_confirmation")
  w.buyer:message(order.id, "now a white dog please")
  t.eventually(function() return #w:our_messages(order.id) == 3 end, 10000, "a third message")
  t.match(w:our_messages(order.id)[3], "already been delivered")
  t.eq(w:model_calls("image", since), 1)
  -- a thank-you gets no answer at all
  w.buyer:message(order.id, "thanks!")
  time.sleep(500)
  t.eq(#w:our_messages(order.id), 3)
end))

t.test("a message without a requirement gets the guidance again", explain(function()
  local since = w:mark()
  local order = w:order_and_say("hello")
  t.eventually(function() return #w:our_messages(order.id) == 2 end, 10000, "guidance again")
  t.match(w:our_messages(order.id)[2], "could not find an image requirement")
  t.eq(w:model_calls(nil, since), 0)
  w.buyer:message(order.id, "a green forest at dawn")
  w:wait_status(order.id, "pending_confirmation")
end))

w:stop()
return t.done()
