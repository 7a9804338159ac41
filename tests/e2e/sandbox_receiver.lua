-- sandbox_receiver.lua - a webhook receiver for the sandbox's tests, served
-- by the test process itself (server.start{module = "sandbox_receiver"}).
-- It records every delivery in the test's store, and can be told to fail
-- (500) or to stall past the sandbox's timeout for its next N deliveries.
local store = require "store"
local time = require "time"

local R = {}

function R.setup()
  store.exec([[CREATE TABLE IF NOT EXISTS received (
    id INTEGER PRIMARY KEY AUTOINCREMENT, who TEXT, body TEXT, signature TEXT, content_type TEXT,
    answered INTEGER, at INTEGER)]])
  store.exec("CREATE TABLE IF NOT EXISTS receiver_control (name TEXT PRIMARY KEY, value INTEGER)")
end

-- The next n deliveries answer 500 ("fail") or stall for ms ("stall").
function R.set(name, value)
  store.exec("INSERT INTO receiver_control (name, value) VALUES (?, ?) "
             .. "ON CONFLICT (name) DO UPDATE SET value = excluded.value", name, value)
end

local function take(name)
  local row = store.row("SELECT value FROM receiver_control WHERE name = ?", name)
  if row and row.value > 0 then
    store.exec("UPDATE receiver_control SET value = value - 1 WHERE name = ?", name)
    return true
  end
  return false
end

local function hook(req)
  local status, stall = 200, false
  store.transaction(function()
    if take("fail") then status = 500 end
    stall = take("stall")
    store.exec("INSERT INTO received (who, body, signature, content_type, answered, at) VALUES (?, ?, ?, ?, ?, ?)",
               req.params.who, req.body, req.headers["x-webhook-signature"], req.headers["content-type"],
               stall and 0 or status, time.now())
  end)
  if stall then time.sleep(1500) end
  return status, {["Content-Type"] = "application/json"}, '{"received":true}'
end

-- Every delivery recorded so far, oldest first.
function R.received(who)
  if who then return store.query("SELECT * FROM received WHERE who = ? ORDER BY id", who) end
  return store.query("SELECT * FROM received ORDER BY id")
end

R.routes = {{"POST", "/hook/{who}", hook}}

return R
