-- pool_crash_test.lua - a job interrupted by kill -9 runs again after a
-- restart: the first process starts the job (it writes a marker, then
-- sleeps), is killed, and a second process requeues and finishes it.
package.path = "tests/lib/?.lua;" .. package.path
local t = require "harness"
local proc = require "proc"
local store, time = require "store", require "time"

local dir = t.tmpdir("pool-crash")
local db = dir .. "/crash.db"

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- The app: the job marks each attempt's start and end; the first attempt
-- sleeps long enough to be killed.
write(dir .. "/crash_app.lua", [[
local store, time = require "store", require "time"
local jobs = {}
function jobs.slow(payload, job)
  store.exec("INSERT INTO marks (attempt, what, at) VALUES (?, 'started', ?)", job.attempt, time.now())
  store.sync()
  if job.attempt == 1 then time.sleep(payload.sleep_ms) end
  store.exec("INSERT INTO marks (attempt, what, at) VALUES (?, 'finished', ?)", job.attempt, time.now())
end
return {jobs = jobs}
]])

-- The process: opens the store, starts the pool, submits the job (first
-- run) or waits for it to finish (second run).
write(dir .. "/worker.lua", [[
local store, pool, time = require "store", require "pool", require "time"
local db, mode = ...
assert(store.open(db))
store.exec("CREATE TABLE IF NOT EXISTS marks (id INTEGER PRIMARY KEY, attempt INTEGER, what TEXT, at INTEGER)")
pool.start{module = "crash_app", workers = 2}
if mode == "submit" then
  pool.submit("slow", {sleep_ms = 60000}, {key = "the-job", max_attempts = 3})
  while true do time.sleep(1000) end
end
local deadline = time.mono() + 20000
while time.mono() < deadline do
  local j = store.row("SELECT state FROM jobs WHERE key = 'the-job'")
  if j and j.state == "done" then
    pool.stop(5000)
    return 0
  end
  time.sleep(50)
end
return 1
]])

local function marks(what)
  local ok, rows = pcall(store.query, "SELECT attempt FROM marks WHERE what = ? ORDER BY id", what)
  return ok and rows or {}
end

t.test("a job killed mid-run runs again after a restart", function()
  local first = proc.skudemo({"run", dir .. "/worker.lua", db, "submit"}, {log = dir .. "/first.log"})
  assert(store.open(db))
  t.eventually(function() return #marks("started") == 1 end, 10000, "the first attempt to start")
  first:kill("KILL")
  t.ok(first:wait(5000), "the first process ended")
  local job = store.row("SELECT * FROM jobs WHERE key = 'the-job'")
  t.eq(job.state, "running")
  t.eq(job.attempts, 1)
  t.eq(#marks("finished"), 0)

  local second = proc.skudemo({"run", dir .. "/worker.lua", db, "resume"}, {log = dir .. "/second.log"})
  t.ok(second:wait(25000), "the second process finished")
  job = store.row("SELECT * FROM jobs WHERE key = 'the-job'")
  t.eq(job.state, "done", "job state; log: " .. second:output())
  t.eq(job.attempts, 2)
  local finished = marks("finished")
  t.eq(#finished, 1)
  t.eq(finished[1].attempt, 2)
  t.match(second:output(), "requeued_interrupted=1")
end)

return t.done()
