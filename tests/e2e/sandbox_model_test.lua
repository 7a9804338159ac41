-- The sandbox's model router against CONTRACT.md section 3: auth and the
-- error shape, text and JSON completions, real PNGs with the asked colour
-- and size, latency, and injected failures (also on marketplace routes),
-- with the call log that records them.
local S = require "sandbox_helper"
local t = require "harness"
local crypto = require "crypto"
local http = require "http"
local json = require "json"
local time = require "time"
local proc = require "proc"

local sb = S.start{args = {"--threads", "32"}}
local MODEL = "google/gemini-2.5-flash-image"

local function call(body, key)
  local res = assert(http.request{method = "POST", url = sb.info.model_url .. "/chat/completions",
                                  headers = {Authorization = "Bearer " .. (key or sb.info.model_api_key)},
                                  json = body, timeout = 15000})
  return res.status, json.decode(res.body), res
end

local function image_request(prompt, aspect, extra)
  local body = {model = MODEL, messages = {{role = "user", content = prompt}}, modalities = {"image", "text"},
                image_config = aspect and {aspect_ratio = aspect} or nil}
  for k, v in pairs(extra or {}) do body[k] = v end
  return body
end

local function is_model_error(status, body, want)
  t.eq(status, want, "status")
  t.eq(type(body), "table")
  t.eq(type(body.error), "table", "error object")
  t.eq(body.error.code, want, "error.code")
  t.eq(type(body.error.message), "string", "error.message")
end

-- Decodes a data URL's PNG with the independent checker:
-- width, height, "r,g,b" of the dominant colour, its share.
local function check_png(url)
  local mime, b64 = url:match("^data:([^;]+);base64,(.+)$")
  t.eq(mime, "image/png")
  local bytes = assert(crypto.base64_decode(b64))
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
  local p = assert(io.popen("python3 tests/e2e/sandbox_pngcheck.py " .. path .. " 2>&1"))
  local out = p:read("a")
  p:close()
  os.remove(path)
  local w, h, rgb, share = out:match("^(%d+) (%d+) (%S+) (%S+)")
  t.ok(w, "the PNG decodes: " .. out)
  return tonumber(w), tonumber(h), rgb, tonumber(share)
end

t.test("401 without or with a wrong key, in OpenRouter's error shape", function()
  local res = assert(http.request{method = "POST", url = sb.info.model_url .. "/chat/completions",
                                  json = image_request("x"), timeout = 5000})
  is_model_error(res.status, json.decode(res.body), 401)
  local status, body = call(image_request("x"), "sk-wrong")
  is_model_error(status, body, 401)
end)

t.test("400 for malformed requests, never a 500", function()
  local bad = {
    {messages = {{role = "user", content = "x"}}},
    {model = MODEL},
    {model = MODEL, messages = {}},
    {model = MODEL, messages = {{content = "x"}}},
    {model = MODEL, messages = {{role = "system", content = "x"}}},
    image_request("x", "wide"),
    image_request("x", "1:1", {n = 9}),
    image_request("x", "1:1", {image_config = "big"}),
  }
  for i, body in ipairs(bad) do
    local status, decoded = call(body)
    is_model_error(status, decoded, 400)
    t.ok(status == 400, "case " .. i)
  end
  local res = assert(http.request{method = "POST", url = sb.info.model_url .. "/chat/completions",
    headers = {Authorization = "Bearer " .. sb.info.model_api_key, ["Content-Type"] = "application/json"},
    body = "{not json", timeout = 5000})
  is_model_error(res.status, json.decode(res.body), 400)
end)

t.test("a text completion, and a JSON object when response_format asks", function()
  local status, body = call({model = "openai/gpt-4o-mini",
                             messages = {{role = "system", content = "Shape prompts."},
                                         {role = "user", content = "Please generate a blue tech-style cover image"}}})
  t.eq(status, 200)
  t.match(body.id, "^gen%-")
  t.eq(body.model, "openai/gpt-4o-mini")
  t.eq(math.type(body.created), "integer")
  t.eq(body.usage.total_tokens, body.usage.prompt_tokens + body.usage.completion_tokens)
  t.match(body.choices[1].message.content, "blue tech%-style cover image")
  t.eq(body.choices[1].message.images, nil)
  status, body = call({model = "openai/gpt-4o-mini", response_format = {type = "json_object"},
                       messages = {{role = "user", content = {{type = "text", text = "a yellow banner for my shop"}}}}})
  t.eq(status, 200)
  local shaped = json.decode(body.choices[1].message.content)
  t.eq(type(shaped), "table", "content is a JSON object")
  t.match(shaped.optimized_prompt, "^a yellow banner for my shop, .*high detail, professional lighting$")
  t.eq(type(shaped.style), "string")
  t.eq(shaped.aspect_ratio, "16:9")
end)

t.test("images: real PNGs in the colour named, sized by aspect_ratio", function()
  local cases = {
    {"a blue tech cover", "1:1", 256, 256, "30,80,220"},
    {"Red poster with a yellow sun", "16:9", 256, 144, "220,30,30"},
    {"green forest", "9:16", 144, 256, "30,160,60"},
    {"grey office", "4:3", 256, 192, "128,128,128"},
    {"purple triangle logo", "3:4", 192, 256, "130,50,170"},
    {"orange square", "3:2", 256, 171, "245,140,20"},
    {"something nice", "2:3", 171, 256, "70,90,110"},
    {"black, white", nil, 256, 256, "15,15,15"},
  }
  for _, c in ipairs(cases) do
    local status, body = call(image_request(c[1], c[2]))
    t.eq(status, 200, c[1])
    local message = body.choices[1].message
    t.eq(#message.images, 1)
    t.eq(message.images[1].type, "image_url")
    local w, h, rgb, share = check_png(message.images[1].image_url.url)
    t.eq(w, c[3], c[1] .. " width")
    t.eq(h, c[4], c[1] .. " height")
    t.eq(rgb, c[5], c[1] .. " dominant colour")
    t.ok(share > 0.5 and share < 0.95, c[1] .. ": dominant but not flat (" .. share .. ")")
  end
  local status, body = call(image_request("two pink ones", "1:1", {n = 2}))
  t.eq(status, 200)
  t.eq(#body.choices[1].message.images, 2)
end)

t.test("latency: per kind, changed at runtime", function()
  local status, state = sb:control("POST", "/model", {image_latency_ms = 300})
  t.eq(status, 200)
  t.eq(state.image_latency_ms, 300)
  local started = time.mono()
  call({model = MODEL, messages = {{role = "user", content = "fast text"}}})
  t.ok(time.mono() - started < 250, "text stays fast")
  started = time.mono()
  call(image_request("slow blue"))
  t.ok(time.mono() - started >= 300, "the image waits")
  status = sb:control("POST", "/model", {image_latency_ms = -1})
  t.eq(status, 400)
  sb:control("POST", "/model", {image_latency_ms = 0})
end)

t.test("slow image calls are served side by side", function()
  sb:control("POST", "/model", {image_latency_ms = 500})
  local body = json.encode(image_request("a cyan wave"))
  local started = time.mono()
  local cmd = string.format(
    "for i in $(seq 20); do curl -s -o /dev/null -w '%%{http_code}\\n' -H 'Authorization: Bearer %s' "
    .. "-H 'Content-Type: application/json' -d %s %s/chat/completions & done; wait",
    sb.info.model_api_key, proc.quote(body), sb.info.model_url)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  local took = time.mono() - started
  sb:control("POST", "/model", {image_latency_ms = 0})
  local _, oks = out:gsub("200", "")
  t.eq(oks, 20, "every call answered 200")
  -- One after another they would take 10 s; each connection has its own
  -- thread, so they overlap (the bound leaves room for 20 curl processes
  -- starting on two busy cores).
  t.ok(took < 6000, "20 calls of 500 ms took " .. took .. " ms")
end)

t.test("injected model failures: statuses with Retry-After, by kind", function()
  local route = "/api/v1/chat/completions"
  local status = sb:control("POST", "/faults", {route = route, kind = "image", status = 503, retry_after = 2})
  t.eq(status, 201)
  local ok = call({model = MODEL, messages = {{role = "user", content = "text is not targeted"}}})
  t.eq(ok, 200)
  local s, body, res = call(image_request("blue"))
  is_model_error(s, body, 503)
  t.eq(res.headers["retry-after"], "2")
  t.eq((call(image_request("blue"))), 200, "only the next call")
  for _, code in ipairs({401, 402, 429, 502}) do
    sb:control("POST", "/faults", {route = route, status = code})
    s, body = call(image_request("blue"))
    is_model_error(s, body, code)
  end
end)

t.test("injected model failures: a 200 with an error object, a 200 without images", function()
  local route = "/api/v1/chat/completions"
  sb:control("POST", "/faults", {route = route, kind = "image", mode = "error_object"})
  local s, body = call(image_request("blue"))
  t.eq(s, 200)
  t.eq(type(body.error), "table")
  t.eq(type(body.error.code), "number")
  t.eq(body.choices, nil)
  sb:control("POST", "/faults", {route = route, kind = "image", mode = "no_images"})
  s, body = call(image_request("blue"))
  t.eq(s, 200)
  t.eq(body.choices[1].message.images, nil)
  t.eq(type(body.choices[1].message.content), "string")
  s, body = call(image_request("blue"))
  t.eq(#body.choices[1].message.images, 1, "back to normal")
end)

t.test("marketplace faults: the next N calls of a route; the call log shows them", function()
  local order = sb:order()
  local status, f = sb:control("POST", "/faults", {method = "POST", route = "/api/orders/{id}/accept",
                                                   count = 2, status = 503, retry_after = 1})
  t.eq(status, 201)
  t.eq(f.fault.remaining, 2)
  local path = "/orders/" .. order.id .. "/accept"
  local s, body, res = sb.seller:request("POST", path, {})
  S.is_error(s, body, 503)
  t.eq(res.headers["retry-after"], "1")
  s = sb.seller:request("POST", path, {})
  t.eq(s, 503)
  s, body = sb.seller:request("POST", path, {})
  t.eq(s, 200)
  t.eq(body.status, "in_progress")
  local _, log = sb:control("GET", "/calls?order_id=" .. order.id)
  local accepts = {}
  for _, c in ipairs(log.calls) do
    t.eq(c.order_id, order.id)
    if c.route == "/api/orders/{id}/accept" then accepts[#accepts + 1] = c.status end
  end
  t.eq(table.concat(accepts, ","), "503,503,200")
  t.eq(log.calls[1].route, "/api/orders", "the order's creation is logged with its id")
  t.eq(log.calls[1].status, 201)
end)

t.test("faults: delay only, a custom body, one concrete path, clearing", function()
  local order = sb:order()
  sb:control("POST", "/faults", {route = "/api/orders/{id}", delay_ms = 300})
  local started = time.mono()
  local s = sb.buyer:request("GET", "/orders/" .. order.id)
  t.eq(s, 200)
  t.ok(time.mono() - started >= 300, "delayed")
  sb:control("POST", "/faults", {route = "/api/orders/{id}", status = 429, body = {detail = "slow down"}})
  local body
  s, body = sb.buyer:request("GET", "/orders/" .. order.id)
  t.eq(s, 429)
  t.same(body, {detail = "slow down"})
  sb:control("POST", "/faults", {route = "/api/orders/" .. order.id, status = 500})
  local other = sb:order()
  t.eq((sb.buyer:request("GET", "/orders/" .. other.id)), 200, "another order is not hit")
  t.eq((sb.buyer:request("GET", "/orders/" .. order.id)), 500)
  sb:control("POST", "/faults", {route = "/api/agents/me", status = 500, count = 5})
  local _, list = sb:control("GET", "/faults")
  t.eq(#list.faults, 1)
  t.eq((sb:control("DELETE", "/faults")), 200)
  t.eq((sb.buyer:request("GET", "/agents/me")), 200)
  sb:control("POST", "/faults", {route = "/agents/me", status = 503})
  t.eq((sb.buyer:request("GET", "/agents/me")), 503, "a route relative to the base URL")
  for _, bad in ipairs({{}, {route = "x", status = 500}, {route = "/a"}, {route = "/a", status = 99},
                        {route = "/a", status = 500, kind = "video"}, {route = "/a", mode = "weird"}}) do
    s, body = sb:control("POST", "/faults", bad)
    S.is_error(s, body, 400)
  end
end)

t.test("model calls are in the call log with their kind", function()
  sb:control("DELETE", "/calls")
  call(image_request("blue"))
  call({model = MODEL, messages = {{role = "user", content = "text"}}})
  local _, log = sb:control("GET", "/calls")
  t.eq(#log.calls, 2)
  t.eq(log.calls[1].kind, "image")
  t.eq(log.calls[2].kind, "text")
  t.eq(log.calls[1].route, "/api/v1/chat/completions")
  t.eq(log.calls[1].status, 200)
end)

sb:stop()
return t.done()
