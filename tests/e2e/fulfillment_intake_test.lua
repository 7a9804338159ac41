-- End to end: webhook signatures and bad bodies, and the admin image API.
package.path = "tests/lib/?.lua;" .. package.path
local t = require "harness"
local world = require "world"
local json, time, http, fs = require "json", require "time", require "http", require "fs"

local w = world.start{name = "intake"}

local function explain(fn)
  return function()
    local ok, err = xpcall(fn, debug.traceback)
    if not ok then error(tostring(err) .. "\n" .. w:logs():sub(-5000), 0) end
  end
end

local next_id = 700000000
local function envelope(kind, payload)
  next_id = next_id + 1
  return {event_id = next_id, event_type = kind or "order.received",
          payload = payload or {order_id = "o-" .. next_id, service_sku_id = w.sku}, created_at = time.iso()}
end

local function stored(event_id)
  return w:row("SELECT event_id FROM events WHERE event_id = ?", event_id) ~= nil
end

t.test("a signed event is stored and acknowledged; again, it is a duplicate", explain(function()
  local e = envelope("something.new", {order_id = "x"})
  local res, body = w:post_webhook(e)
  t.eq(res.status, 200)
  t.same(body, {success = true, event_type = "something.new", event_id = e.event_id, duplicate = false})
  t.ok(stored(e.event_id))
  res, body = w:post_webhook(e)
  t.eq(res.status, 200)
  t.eq(body.duplicate, true)
end))

t.test("unsigned and wrongly signed events: 401, nothing stored, nothing done", explain(function()
  local since = w:mark()
  local e = envelope()
  local res, body = w:post_webhook(e, false)
  t.eq(res.status, 401)
  t.eq(body.success, false)
  res = w:post_webhook(e, string.rep("0", 64))
  t.eq(res.status, 401)
  res = w:post_webhook(e, require("crypto").hmac_sha256("not the secret", json.encode(e)))
  t.eq(res.status, 401)
  time.sleep(300)
  t.eq(stored(e.event_id), false)
  t.eq(#w:calls{since = since, route = "/api/orders/{id}/accept"}, 0)
end))

t.test("malformed, mistyped, oversized and deeply nested bodies: 4xx, server alive", explain(function()
  local cases = {
    {"", 400}, {"{", 400}, {"null", 400}, {"[]", 400}, {'"text"', 400},
    {'{"event_id": "1", "event_type": "order.received", "payload": {}}', 400},
    {'{"event_id": 699999999.25, "event_type": "order.received", "payload": {}}', 400},
    {'{"event_id": 699999999, "event_type": ["order.received"], "payload": {}}', 400},
    {'{"event_id": 699999999, "event_type": "order.received", "payload": []}', 400},
    {'{"event_id": 699999999, "event_type": "order.received", "payload": 7}', 400},
    {string.rep("[", 5000) .. string.rep("]", 5000), 400},
    {'{"a":' .. string.rep('{"a":', 3000) .. "1" .. string.rep("}", 3001), 400},
    {"\0\1\2\255\254", 400},
  }
  for _, c in ipairs(cases) do
    local res = w:post_webhook(c[1])
    t.eq(res.status, c[2], c[1]:sub(1, 30))
    t.ok(w:alive(), "alive after " .. c[1]:sub(1, 30))
  end
  local big = '{"event_id": 699999999, "event_type": "x", "payload": {"pad": "' .. string.rep("a", 2 * 1024 * 1024) .. '"}}'
  local res = http.request{method = "POST", url = w.url .. "/api/v1/webhook/orders", body = big, timeout = 10000,
                           headers = {["Content-Type"] = "application/json"}}
  t.ok(res == nil or res.status == 413, "oversized: 413")
  res = http.request{method = "POST", url = w.url .. "/api/v1/webhook/orders", body = "{}", timeout = 10000,
                     headers = {["X-Pad"] = string.rep("h", 64 * 1024)}}
  t.ok(res == nil or res.status == 431 or res.status == 413, "huge header refused")
  t.ok(w:alive(), "alive")
  local e = envelope("ping.test", {})
  t.eq(w:post_webhook(e).status, 200, "still serving")
end))

t.test("the admin API: 401 without the secret", explain(function()
  local res = w:admin("POST", "/api/v1/image/generate", {input = "a cat"}, "wrong-secret-wrong-secret")
  t.eq(res.status, 401)
  res = http.request{method = "POST", url = w.url .. "/api/v1/image/generate", json = {input = "a cat"}}
  t.eq(res.status, 401)
  res = w:admin("GET", "/api/v1/image/tasks/whatever", nil, "")
  t.eq(res.status, 401)
end))

t.test("the admin API: empty input is refused", explain(function()
  for _, input in ipairs{"", "   ", json.null} do
    local res, body = w:admin("POST", "/api/v1/image/generate", {input = input})
    t.eq(res.status, 200)
    t.eq(body.success, false)
    t.eq(body.message, "Input is required")
  end
  local res = w:admin("POST", "/api/v1/image/generate", nil)
  t.eq(res.status, 400)
end))

t.test("the admin API: a task that completes", explain(function()
  local res, body = w:admin("POST", "/api/v1/image/generate",
                            {input = "Please generate a blue tech-style cover image", type = "social_media_visuals"})
  t.eq(res.status, 200)
  t.eq(body.success, true)
  t.eq(body.message, "Task accepted")
  t.match(body.task_id, "^%x+%-%x+%-%x+%-%x+%-%x+$")
  local task = t.eventually(function()
    local _, tk = w:admin("GET", "/api/v1/image/tasks/" .. body.task_id)
    return tk and (tk.status == "success" or tk.status == "failed") and tk
  end, 10000, "the task done")
  t.eq(task.status, "success")
  t.eq(task.task_id, body.task_id)
  t.eq(task.order_id, json.null)
  t.eq(#task.image_paths, 1)
  t.ok(fs.exists(task.image_paths[1]))
  local line
  for _, l in ipairs(w:task_log()) do if l.task_id == body.task_id then line = l end end
  t.ok(line, "a line in image_tasks.jsonl")
  for _, field in ipairs{"task_id", "order_id", "original_input", "optimized_prompt", "generation_params",
                         "image_paths", "status", "error_message", "created_at", "completed_at"} do
    t.ok(line[field] ~= nil, "field " .. field)
  end
  res = w:admin("GET", "/api/v1/image/tasks/no-such-task")
  t.eq(res.status, 404)
end))

t.test("the admin API with an order id delivers to that order", explain(function()
  local order = w.buyer:buy{listing_id = w.sku}
  t.eventually(function() return #w:our_messages(order.id) == 1 end, 10000, "guidance")
  local _, body = w:admin("POST", "/api/v1/image/generate", {input = "a green tree", order_id = order.id})
  t.eq(body.success, true)
  w:wait_status(order.id, "pending_confirmation")
  t.eq(#w.buyer:attachments(order.id).files, 1)
  local res = w:admin("POST", "/api/v1/image/generate", {input = "a cat", order_id = "../../etc"})
  t.eq(res.status, 400)
end))

w:stop()
return t.done()
