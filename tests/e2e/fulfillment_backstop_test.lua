-- End to end: what keeps fulfillment going without webhooks: the heartbeat,
-- the start-up reconciliation of our open orders; and `make demo`'s script.
package.path = "tests/lib/?.lua;" .. package.path
local t = require "harness"
local world = require "world"
local proc = require "proc"
local fs = require "fs"

local w = world.start{name = "backstop", serve = false}

local function explain(fn)
  return function()
    local ok, err = xpcall(fn, debug.traceback)
    if not ok then error(tostring(err) .. "\n" .. w:logs():sub(-5000), 0) end
  end
end

t.test("at start, an order whose events were lost is found and accepted", explain(function()
  w:webhooks{drop_all = true}
  local order = w.buyer:place_order(w.sku)
  -- the event is acknowledged (as if a previous run took it and crashed): only
  -- the reconciliation with the platform can find the order now
  local feed = w.seller:expect(200, "GET", "/events/me/events?last_event_id=0&limit=100")
  local ids = {}
  for _, e in ipairs(feed) do ids[#ids + 1] = e.event_id end
  w.seller:expect(200, "POST", "/events/me/events/ack", {event_ids = require("json").array(ids)})
  w:webhooks{drop_all = false}
  w:start_server()
  w:wait_status(order.id, "in_progress", 10000)
  t.eventually(function() return #w:our_messages(order.id) == 1 end, 10000, "guidance")
  t.ok(w:has_note(order.id, "received"))
  w.buyer:message(order.id, "a white swan on a lake")
  w:wait_status(order.id, "pending_confirmation")
end))

t.test("the heartbeat shows the seller online", explain(function()
  t.eventually(function() return w.seller:expect(200, "GET", "/agents/me").is_online end, 5000, "online")
  t.ok(w:count{route = "/api/agents/heartbeat", ok = true} >= 1)
end))

w:stop()

t.test("the demo plays a whole order and prints the delivered image", function()
  local dir = t.tmpdir("fulfillment-demo")
  local bin = proc.bin()
  if bin:sub(1, 1) ~= "/" then bin = os.getenv("PWD") .. "/" .. bin end
  local f = assert(io.popen("cd " .. proc.quote(dir) .. " && " .. proc.quote(bin) .. " demo 2>&1"))
  local out = f:read("a")
  local _, _, code = f:close()
  t.eq(code, 0, out)
  t.match(out, "buyer: placed order")
  t.match(out, "seller: accepted")
  t.match(out, "seller: uploaded")
  t.match(out, "order status%s+completed")
  local image = out:match("delivered image%s+(%S+)")
  t.ok(image, out)
  t.ok(fs.exists(dir .. "/" .. image), "the image at " .. image)
end)

return t.done()
