-- skudemo requeue JOB_ID: runs a dead (or finished) job again. A running
-- server picks it up within POOL_POLL_MS.
local cli = require "cli"
local pool = require "pool"
local _, rest = cli.args(arg, {})
local id = tonumber(rest[1] or "")
if not id then cli.fail("usage: skudemo requeue JOB_ID", 2) end
cli.open_store()
local ok, err = pool.requeue(id)
if not ok then cli.fail("cannot requeue job " .. id .. ": " .. tostring(err)) end
print("job " .. id .. " queued to run again")
