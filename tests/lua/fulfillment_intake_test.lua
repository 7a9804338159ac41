-- Webhook validation and signatures (lua/webhook.lua), model and market
-- error classification (lua/models.lua, lua/market.lua).
package.path = "tests/lib/?.lua;" .. package.path
local t = require "harness"
local webhook, models, json, crypto = require "webhook", require "models", require "json", require "crypto"

local function body(t_)
  return json.encode(t_)
end

t.test("a valid envelope", function()
  local e = webhook.validate('{"event_id": 99, "event_type": "order.received", "payload": {"order_id": "o"},' ..
                             ' "created_at": "2026-05-19T00:00:00.000Z"}')
  t.eq(e.event_id, 99)
  t.eq(math.type(e.event_id), "integer")
  t.eq(e.payload.order_id, "o")
  t.same(webhook.validate('{"event_id": 1, "event_type": "x.y"}').payload, {})
end)

t.test("bodies refused with a reason", function()
  local cases = {
    {"", "empty"},
    {"not json", "not valid JSON"},
    {"[1, 2]", "object"},
    {"42", "object"},
    {'{"event_type": "order.received"}', "event_id"},
    {'{"event_id": "99", "event_type": "order.received"}', "event_id"},
    {'{"event_id": 1.5, "event_type": "order.received"}', "event_id"},
    {'{"event_id": -1, "event_type": "order.received"}', "event_id"},
    {'{"event_id": 1e300, "event_type": "order.received"}', "event_id"},
    {'{"event_id": 1}', "event_type"},
    {'{"event_id": 1, "event_type": ""}', "event_type"},
    {'{"event_id": 1, "event_type": 5}', "event_type"},
    {'{"event_id": 1, "event_type": "a b"}', "event_type"},
    {'{"event_id": 1, "event_type": "x", "payload": "p"}', "payload"},
    {'{"event_id": 1, "event_type": "x", "payload": []}', "payload"},
    {'{"event_id": 1, "event_type": "x", "payload": [1]}', "payload"},
    {'{"event_id": 1, "event_type": "x", "payload": {}, "created_at": 5}', "created_at"},
    {string.rep("[", 200) .. string.rep("]", 200), "JSON"},
  }
  for _, c in ipairs(cases) do
    local e, why = webhook.validate(c[1])
    t.eq(e, nil, c[1]:sub(1, 40))
    t.match(why, c[2], c[1]:sub(1, 40))
  end
end)

t.test("signatures: lowercase hex HMAC-SHA256 of the raw body", function()
  local raw = body{event_id = 1, event_type = "order.received"}
  local secret = string.rep("k", 40)
  local sig = crypto.hmac_sha256(secret, raw)
  t.ok(webhook.signature_ok(sig, raw, secret))
  t.ok(webhook.signature_ok(sig:upper(), raw, secret))
  t.eq(webhook.signature_ok(nil, raw, secret), false)
  t.eq(webhook.signature_ok("", raw, secret), false)
  t.eq(webhook.signature_ok(sig, raw .. " ", secret), false)
  t.eq(webhook.signature_ok("sha256=" .. sig, raw, secret), false)
  t.eq(webhook.signature_ok(crypto.hmac_sha256("other", raw), raw, secret), false)
end)

t.test("header lookup ignores case", function()
  t.eq(webhook.header({headers = {["x-webhook-signature"] = "a"}}, "X-Webhook-Signature"), "a")
end)

local function res(status, tbl, headers)
  return {status = status, body = type(tbl) == "string" and tbl or json.encode(tbl), headers = headers or {}}
end

t.test("model errors: which are retried (CONTRACT.md section 3)", function()
  for _, status in ipairs{408, 429, 500, 502, 503} do
    local _, f = models.classify(res(status, {error = {code = status, message = "m"}}))
    t.eq(f.retry, true, "status " .. status)
  end
  for _, status in ipairs{400, 401, 402, 403, 404, 422} do
    local _, f = models.classify(res(status, {error = {code = status, message = "m"}}))
    t.eq(f.retry, false, "status " .. status)
    t.eq(f.status, status)
  end
  local _, f = models.classify(nil, "connection refused")
  t.eq(f.retry, true)
  _, f = models.classify(res(429, {error = {code = 429, message = "slow down"}}, {["retry-after"] = "3"}))
  t.eq(f.retry_after_ms, 3000)
  _, f = models.classify(res(200, {error = {code = 502, message = "provider died"}}))
  t.eq(f.retry, true)
  t.eq(f.kind, "error_object")
  _, f = models.classify(res(200, {error = {code = 403, message = "moderation"}}))
  t.eq(f.retry, false)
  _, f = models.classify(res(200, "<html>"))
  t.eq(f.retry, true)
end)

t.test("image URLs are read from choices[1].message.images", function()
  local answer = {choices = {{message = {content = "", images = {
    {type = "image_url", image_url = {url = "data:image/png;base64,AAAA"}},
    {type = "image_url", image_url = {url = "https://x/y.png"}},
  }}}}}
  t.same(models.image_urls(answer), {"data:image/png;base64,AAAA", "https://x/y.png"})
  t.same(models.image_urls{choices = {{message = {content = "no image"}}}}, {})
  t.same(models.image_urls{choices = {}}, {})
end)

t.test("a buyer never reads the model's internals", function()
  t.match(models.buyer_reason{status = 403}, "content policy")
  t.match(models.buyer_reason{status = 401}, "unavailable")
  t.match(models.buyer_reason{status = 503, message = "key sk-123 failed"}, "busy")
end)

return t.done()
