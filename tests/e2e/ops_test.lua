-- ops_test.lua - /healthz, /metrics and the inspection commands against a
-- server that delivered an order through the sandbox.
package.path = "tests/lib/?.lua;scripts/?.lua;" .. package.path
local t = require "harness"
local world = require "world"
local http, json, crypto = require "http", require "json", require "crypto"

local w = world.start{name = "ops", env = {METRICS_TOKEN = "metrics-token-for-the-ops-test"}}

local function get(path, headers)
  return assert(http.request{url = w.url .. path, headers = headers})
end

local function metrics()
  local res = get("/metrics", {["X-Admin-Secret"] = w.admin_secret})
  assert(res.status == 200, "metrics answered " .. res.status)
  return res.body
end

-- The value of one series in Prometheus text, 0 when absent.
local function value(text, series)
  local escaped = series:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?{}]", "%%%0")
  return tonumber(text:match("\n" .. escaped .. " ([%d%.e%+]+)")) or 0
end

local function post_event(body, signature)
  return assert(http.request{method = "POST", url = w.url .. "/api/v1/webhook/orders", body = body,
    headers = {["Content-Type"] = "application/json",
               ["X-Webhook-Signature"] = signature or crypto.hmac_sha256(w.webhook_secret, body)}})
end

local order
t.test("an order is delivered", function()
  order = w:order_and_say("a blue tech-style cover image")
  w:wait_status(order.id, "pending_confirmation", 30000)
end)

t.test("/healthz: the store, scripts, jobs and the last webhook, nothing secret", function()
  local res = get("/healthz")
  t.eq(res.status, 200)
  local h = json.decode(res.body)
  t.eq(h.status, "ok")
  t.ok(h.scripts.generation >= 1, "generation")
  t.eq(h.scripts.last_reload_ok, true)
  t.ok(h.jobs.queued ~= nil and h.jobs.dead ~= nil, "job counts")
  t.ok(type(h.seconds_since_last_webhook) == "number", "time since the last webhook")
  for _, secret in ipairs{w.admin_secret, w.webhook_secret, w.info.seller.api_key, w.info.model_api_key} do
    t.ok(not res.body:find(secret, 1, true), "a secret in /healthz")
  end
end)

t.test("/metrics needs X-Admin-Secret or the METRICS_TOKEN bearer", function()
  t.eq(get("/metrics").status, 401)
  t.eq(get("/metrics", {["X-Admin-Secret"] = "wrong"}).status, 401)
  t.eq(get("/metrics", {Authorization = "Bearer wrong"}).status, 401)
  local res = get("/metrics", {Authorization = "Bearer metrics-token-for-the-ops-test"})
  t.eq(res.status, 200)
  t.match(res.headers["content-type"], "^text/plain")
end)

t.test("/metrics: what happened so far is counted", function()
  local text = metrics()
  t.match(text, "# TYPE skudemo_http_requests_total counter")
  t.match(text, "skudemo_http_request_duration_seconds_bucket{le=\"%+Inf\"}")
  t.ok(value(text, 'skudemo_orders{state="pending_confirmation"}') >= 1, "orders by state")
  t.ok(value(text, 'skudemo_jobs{state="done"}') >= 1, "jobs by state")
  t.ok(value(text, 'skudemo_model_calls_total{kind="image",outcome="ok"}') >= 1, "image calls")
  t.ok(value(text, 'skudemo_model_calls_total{kind="text",outcome="ok"}') >= 1, "text calls")
  t.match(text, 'skudemo_model_call_seconds_bucket{kind="image"')
  t.ok(value(text, 'skudemo_uploads_total{outcome="ok"}') >= 1, "uploads")
end)

t.test("/metrics: a metric moves when its event happens", function()
  local before = metrics()
  local body = json.encode{event_id = 900000001, event_type = "uat.received", payload = {},
                           created_at = "2026-12-03T00:00:00.000Z"}
  t.eq(post_event(body).status, 200)
  t.eq(post_event(body).status, 200)                 -- the same event again
  t.eq(post_event(body, string.rep("0", 64)).status, 401)
  get("/healthz")
  local after = metrics()
  local function moved(series, by)
    t.eq(value(after, series) - value(before, series), by, series)
  end
  moved('skudemo_webhook_events_total{outcome="new",type="uat.received"}', 1)
  moved('skudemo_webhook_events_total{outcome="duplicate",type="uat.received"}', 1)
  moved('skudemo_webhook_events_total{outcome="rejected",type="unknown"}', 1)
  t.ok(value(after, 'skudemo_http_requests_total{method="GET",route="/healthz",status="200"}') >
       value(before, 'skudemo_http_requests_total{method="GET",route="/healthz",status="200"}'), "requests")
end)

t.test("skudemo orders / order / tasks / jobs read the same store", function()
  local code, out = w:run{"orders"}
  t.eq(code, 0, out)
  t.match(out, "ORDER%s+STATE")
  t.contains(out, order.id)
  t.match(out, "pending_confirmation")
  code, out = w:run{"orders", "--json"}
  t.eq(code, 0, out)
  local rows = json.decode(out)
  t.eq(rows[1].order_id, order.id)
  code, out = w:run{"order", order.id}
  t.eq(code, 0, out)
  t.contains(out, "order " .. order.id)
  t.match(out, "accepted")
  t.match(out, "completed")
  code, out = w:run{"tasks"}
  t.eq(code, 0, out)
  t.match(out, "success")
  code, out = w:run{"jobs"}
  t.eq(code, 0, out)
  t.match(out, "queued %d+%s+running %d+%s+done %d+%s+dead %d+")
end)

t.test("the commands fail clearly", function()
  local code, out = w:run{"order", "no-such-order"}
  t.eq(code, 1)
  t.match(out, "no order no%-such%-order")
  code, out = w:run{"requeue", "987654321"}
  t.eq(code, 1)
  t.match(out, "cannot requeue job 987654321")
  code = w:run{"orders", "--bogus"}
  t.eq(code, 2)
end)

w:stop()
return t.done()
