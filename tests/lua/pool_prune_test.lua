-- pool_prune_test.lua - finished jobs older than POOL_KEEP_DONE_DAYS are
-- deleted once the pool is idle; recent ones and dead ones stay.
package.path = "tests/lib/?.lua;" .. package.path
local t = require "harness"
local store, pool, time = require "store", require "pool", require "time"

local dir = t.tmpdir("pool-prune")
assert(store.open(dir .. "/prune.db"))
store.exec("CREATE TABLE results (id INTEGER PRIMARY KEY, job_id INTEGER, name TEXT, attempt INTEGER, payload TEXT, at INTEGER)")

local day = 86400000
local old, recent, dead = pool.submit("record", {}), pool.submit("record", {}), pool.submit("record", {})
store.exec("UPDATE jobs SET state = 'done', finished_at = ? WHERE id = ?", time.now() - 8 * day, old)
store.exec("UPDATE jobs SET state = 'done', finished_at = ? WHERE id = ?", time.now() - day, recent)
store.exec("UPDATE jobs SET state = 'dead', finished_at = ? WHERE id = ?", time.now() - 30 * day, dead)

t.test("prune: done jobs past the keep time go, recent and dead jobs stay", function()
  t.eq(pool.start{module = "pool_app", workers = 2}, true)
  t.eventually(function() return store.row("SELECT id FROM jobs WHERE id = ?", old) == nil end,
               5000, "the old finished job to be pruned")
  t.ok(store.row("SELECT id FROM jobs WHERE id = ?", recent), "a job done yesterday stays")
  t.ok(store.row("SELECT id FROM jobs WHERE id = ?", dead), "a dead job stays for a person")
  pool.stop(2000)
end)

return t.done()
