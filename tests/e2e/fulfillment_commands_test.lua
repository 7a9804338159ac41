-- End to end: the seller's set-up commands against the sandbox: whoami,
-- listing create/list, generate, check, webhook set/show.
package.path = "tests/lib/?.lua;" .. package.path
local t = require "harness"
local world = require "world"
local fs, json = require "fs", require "json"

local w = world.start{name = "commands"}

local function explain(fn)
  return function()
    local ok, err = xpcall(fn, debug.traceback)
    if not ok then error(tostring(err) .. "\n" .. w:logs():sub(-3000), 0) end
  end
end

local function env_value(name)
  return (fs.read(w.env_file) or ""):match("\n?" .. name .. "=([^\n]*)")
end

t.test("whoami prints the agent and its webhook", explain(function()
  local code, out = w:run{"whoami"}
  t.eq(code, 0, out)
  t.match(out, "agent id%s+" .. w.info.seller.agent_id:gsub("%-", "%%-"))
  t.match(out, "webhook url%s+http://127%.0%.0%.1:" .. w.port)
end))

t.test("whoami explains a 401", explain(function()
  local bad = w.dir .. "/bad-credentials.json"
  fs.write(bad, json.encode{api_key = "am_not_a_key", agent_id = "x"})
  local code, out = w:run({"whoami"}, {CREDENTIALS_FILE = bad})
  t.eq(code, 1)
  t.match(out, "401 Unauthorized")
  code, out = w:run({"whoami"}, {CREDENTIALS_FILE = w.dir .. "/missing.json"})
  t.eq(code, 1)
  t.match(out, "not found")
end))

t.test("listing create publishes the guide's template and writes SERVICE_SKU_ID", explain(function()
  local code, out = w:run{"listing", "create", "--write-env"}
  t.eq(code, 0, out)
  local id = out:match("listing%.id%s+(%S+)")
  t.ok(id, out)
  t.match(out, "listing%.name%s+AI Social Media Visual Generation Service")
  t.match(out, "listing%.status%s+active")
  t.match(out, "listing%.price%s+20")
  t.eq(env_value("SERVICE_SKU_ID"), id)
  code, out = w:run({"listing", "list"}, {SERVICE_SKU_ID = id})
  t.eq(code, 0, out)
  t.match(out, id:gsub("%-", "%%-") .. ".-<%- ours %(SERVICE_SKU_ID%)")
  t.match(out, w.sku:gsub("%-", "%%-") .. ".-<%- ours")
end))

t.test("listing create refuses a bad file with a one-line reason", explain(function()
  local file = w.dir .. "/listing.json"
  fs.write(file, json.encode{name = "x", description = "y", price = 0})
  local code, out = w:run{"listing", "create", file, "--no-env"}
  t.eq(code, 1)
  t.match(out, "price")
  code = w:run{"listing", "frobnicate"}
  t.eq(code, 2)
end))

t.test("generate runs the smoke test through the running server", explain(function()
  local code, out = w:run{"generate", "Please generate a blue tech-style cover image"}
  t.eq(code, 0, out)
  t.match(out, "Task accepted")
  local image = out:match("\nimage%s+(%S+)")
  t.ok(image and fs.exists(image), out)
  code, out = w:run({"generate", "a cat"}, {ADMIN_SECRET = "wrong-wrong-wrong-wrong"})
  t.eq(code, 1)
  t.match(out, "401")
end))

t.test("check: every line OK when all is set up", explain(function()
  local code, out = w:run({"check"}, {SERVICE_SKU_ID = w.sku})
  t.eq(code, 0, out)
  for _, what in ipairs{"credentials valid", "listing .- is active", "webhook registered", "model key valid",
                        "data directory writable", "ADMIN_SECRET set", "server answers"} do
    t.match(out, "OK%s+" .. what)
  end
end))

t.test("check: what to fix", explain(function()
  local code, out = w:run({"check", "--no-model"}, {SERVICE_SKU_ID = "no-such-listing", ADMIN_SECRET = "short",
                                                    WEBHOOK_PUBLIC_BASE_URL = "https://example.invalid"})
  t.eq(code, 1)
  t.match(out, "FIX%s+SERVICE_SKU_ID no%-such%-listing is not one of our listings")
  t.match(out, "FIX%s+registered webhook")
  t.match(out, "FIX%s+ADMIN_SECRET")
end))

t.test("webhook show and set (with a generated secret)", explain(function()
  local code, out = w:run{"webhook", "show"}
  t.eq(code, 0, out)
  t.match(out, "matches")
  code, out = w:run({"webhook", "set"}, {WEBHOOK_PUBLIC_BASE_URL = ""})
  t.eq(code, 1)
  t.match(out, "ngrok")
  code, out = w:run({"webhook", "set", "http://127.0.0.1:" .. w.port}, {WEBHOOK_SECRET = ""})
  t.eq(code, 0, out)
  t.match(out, "generated a webhook secret")
  t.match(out, "confirmed")
  local secret = env_value("WEBHOOK_SECRET")
  t.ok(secret and #secret >= 32 and #secret <= 64, "a 32-64 character secret in .env")
  t.ok(secret ~= w.webhook_secret)
  t.eq(w.seller:expect(200, "GET", "/agents/me").webhook_url, w.url .. "/api/v1/webhook/orders")
end))

t.test("serve refuses to start without a long ADMIN_SECRET", explain(function()
  local port = require("proc").free_port()
  for _, case in ipairs{{"", "not set"}, {"short-secret", "too short"}} do
    local code, out = w:run({"serve"}, {ADMIN_SECRET = case[1], APP_PORT = port})
    t.eq(code, 1, out)
    t.match(out, "ADMIN_SECRET is " .. case[2])
  end
end))

w:stop()
return t.done()
