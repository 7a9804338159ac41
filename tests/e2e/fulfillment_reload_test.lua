-- End to end: SIGHUP reloads the scripts of a running server. A changed
-- reply template reaches the next buyer; a broken script or template is
-- refused and the running code keeps serving.
package.path = "tests/lib/?.lua;" .. package.path
local t = require "harness"
local world = require "world"
local proc = require "proc"
local http, json, fs = require "http", require "json", require "fs"

local lua_dir = t.tmpdir("fulfillment-reload-lua") .. "/lua"
assert(os.execute("cp -r lua " .. proc.quote(lua_dir)))
local w = world.start{name = "reload", lua_dir = lua_dir}

local function explain(fn)
  return function()
    local ok, err = xpcall(fn, debug.traceback)
    if not ok then error(tostring(err) .. "\n" .. w:logs():sub(-5000), 0) end
  end
end

local function scripts()
  local res = http.request{method = "GET", url = w.url .. "/healthz", timeout = 2000}
  local body = res and json.decode(res.body or "")
  return type(body) == "table" and (body.scripts or body) or {}
end

local function reload()
  local before = scripts().reloads or 0
  w.server:kill("HUP")
  t.eventually(function() return (scripts().reloads or 0) > before end, 5000, "the reload")
  return scripts()
end

local replies_path = lua_dir .. "/replies.lua"
local original = fs.read(replies_path)

local function guidance_of_new_order()
  local order = w.buyer:place_order(w.sku)
  t.eventually(function() return #w:our_messages(order.id) == 1 end, 10000, "guidance")
  return w:our_messages(order.id)[1]
end

t.test("a changed reply template reaches the next buyer", explain(function()
  t.match(guidance_of_new_order(), "^Thanks for your order!")
  fs.write(replies_path, (original:gsub("Thanks for your order!", "Welcome, and thank you for ordering!")))
  local s = reload()
  t.eq(s.last_reload_ok, true)
  t.match(guidance_of_new_order(), "^Welcome, and thank you for ordering!")
end))

t.test("a script that does not compile is refused; the old code keeps serving", explain(function()
  local generation = scripts().generation
  fs.write(replies_path, original:gsub("R.templates = {", "R.templates = {{", 1))
  local s = reload()
  t.eq(s.last_reload_ok, false)
  t.ok(s.last_error and #s.last_error > 0)
  t.eq(s.generation, generation)
  t.match(guidance_of_new_order(), "^Welcome, and thank you for ordering!")
  local order = w:order_and_say("a navy blue anchor")
  w:wait_status(order.id, "pending_confirmation")
end))

t.test("a template with an unknown placeholder fails the self-check", explain(function()
  fs.write(replies_path, (original:gsub("Thanks for your order!", "Thanks {buyer_name}!")))
  local s = reload()
  t.eq(s.last_reload_ok, false)
  t.match(s.last_error, "buyer_name")
  t.match(guidance_of_new_order(), "^Welcome, and thank you for ordering!")
  fs.write(replies_path, original)
  t.eq(reload().last_reload_ok, true)
  t.match(guidance_of_new_order(), "^Thanks for your order!")
end))

w:stop()
return t.done()
