-- pool_test.lua - the durable worker pool: submit, run, retry with backoff,
-- dead jobs, giveup, retry_in, idempotent keys, requeue, time limits,
-- many concurrent jobs. The jobs are in pool_app.lua beside this file.
package.path = "tests/lib/?.lua;" .. package.path
local t = require "harness"
local store, pool, config, time, json = require "store", require "pool", require "config",
  require "time", require "json"

local dir = t.tmpdir("pool")
assert(store.open(dir .. "/pool.db"))
store.exec([[CREATE TABLE results (id INTEGER PRIMARY KEY, job_id INTEGER, name TEXT,
             attempt INTEGER, payload TEXT, at INTEGER);
             CREATE TABLE flags (name TEXT PRIMARY KEY);
             CREATE TABLE shared (job_id INTEGER, value TEXT)]])
config.set("POOL_BACKOFF_MS", "100")
config.set("POOL_BACKOFF_MAX_MS", "400")
config.set("POOL_JOB_TIMEOUT_MS", "1000")
config.set("POOL_POLL_MS", "5000")        -- long: the tests rely on wakes, not polling
config.set("POOL_IDLE_MS", "3000")

local function job(id)
  return store.row("SELECT * FROM jobs WHERE id = ?", id)
end

local function wait_state(id, state, timeout_ms)
  return t.eventually(function()
    local j = job(id)
    return j and j.state == state and j
  end, timeout_ms or 5000, "job " .. id .. " to be " .. state)
end

local function attempts_of(id)
  return store.query("SELECT attempt, at, payload FROM results WHERE job_id = ? ORDER BY id", id)
end

t.test("submit before start: stored and queued", function()
  local id, new = pool.submit("record", {n = 1})
  t.ok(math.type(id) == "integer")
  t.eq(new, true)
  local j = job(id)
  t.eq(j.state, "queued")
  t.eq(j.attempts, 0)
  t.eq(j.name, "record")
  local s = pool.stats()
  t.eq(s.queued, 1)
  t.eq(s.workers, 0)
  t.raises(function() pool.submit("record", {}, {delay = -1}) end, "delay")
  t.raises(function() pool.submit("record", {}, {key = 5}) end, "key")
  t.raises(function() pool.submit("record", {f = print}) end)
  t.raises(function() pool.submit(nil) end)
end)

t.test("start runs the waiting job; config is frozen", function()
  t.eq(pool.start{module = "pool_app", workers = 64}, true)
  t.raises(function() config.set("POOL_BACKOFF_MS", "1") end, "after threads started")
  t.raises(function() pool.start{module = "pool_app"} end, "already started")
  local id = store.row("SELECT id FROM jobs WHERE name = 'record'").id
  local j = wait_state(id, "done")
  t.eq(j.attempts, 1)
  t.ok(j.started_at and j.finished_at and j.finished_at >= j.started_at)
end)

t.test("payload and job table round trip", function()
  local payload = {text = "héllo \"quoted\"\n", int = 42, float = 1.5, yes = true, no = false,
                   list = {1, 2, 3}, nested = {a = {b = "c"}}}
  local id = pool.submit("record", payload, {max_attempts = 7, key = "round-trip"})
  wait_state(id, "done")
  local got = json.decode(attempts_of(id)[1].payload)
  t.same(got.payload, payload)
  t.same(got.job, {id = id, name = "record", attempt = 1, max_attempts = 7, key = "round-trip"})
  local nothing = pool.submit("record")
  wait_state(nothing, "done")
  t.eq(json.decode(attempts_of(nothing)[1].payload).payload, nil)
end)

t.test("a failing job is retried with growing backoff, then done", function()
  local id = pool.submit("flaky", {succeed_on = 3}, {max_attempts = 5})
  local j = wait_state(id, "done")
  t.eq(j.attempts, 3)
  t.match(j.last_error, "flaky failure 2")
  local runs = attempts_of(id)
  t.eq(#runs, 3)
  local first, second = runs[2].at - runs[1].at, runs[3].at - runs[2].at
  t.ok(first >= 75 - 5, "first backoff " .. first .. " ms >= 75")     -- 100 ms -25%
  t.ok(second >= 150 - 5, "second backoff " .. second .. " ms >= 150")  -- 200 ms -25%
end)

t.test("dead after max_attempts, with the error's first line", function()
  local id = pool.submit("always_fails", {}, {max_attempts = 2})
  local j = wait_state(id, "dead")
  t.eq(j.attempts, 2)
  t.eq(#attempts_of(id), 2)
  t.match(j.last_error, "boom on attempt 2$")
  t.ok(not j.last_error:find("traceback"), "no traceback in last_error")
  t.eq(pool.stats().dead >= 1, true)
end)

t.test("giveup: dead at once", function()
  local id = pool.submit("giveup", {}, {max_attempts = 5})
  local j = wait_state(id, "dead")
  t.eq(j.attempts, 1)
  t.eq(j.last_error, "no point in trying again")
end)

t.test("retry_in: retried after exactly that delay", function()
  local id = pool.submit("later", {ms = 400}, {max_attempts = 5})
  local j = wait_state(id, "done")
  t.eq(j.attempts, 2)
  t.eq(j.last_error, "not yet")
  local runs = attempts_of(id)
  local gap = runs[2].at - runs[1].at
  t.ok(gap >= 395 and gap < 1500, "retry after " .. gap .. " ms")
end)

t.test("unknown job name: dead with a clear error", function()
  local id = pool.submit("no_such_job", {})
  local j = wait_state(id, "dead")
  t.eq(j.attempts, 1)
  t.match(j.last_error, "unknown job 'no_such_job'")
end)

t.test("idempotent key: one job, one run", function()
  local a, new_a = pool.submit("record", {v = 1}, {key = "order-7:deliver"})
  local b, new_b = pool.submit("record", {v = 2}, {key = "order-7:deliver"})
  t.eq(new_a, true)
  t.eq(new_b, false)
  t.eq(a, b)
  wait_state(a, "done")
  local c, new_c = pool.submit("record", {v = 3}, {key = "order-7:deliver"})
  t.eq(c, a)
  t.eq(new_c, false)
  time.sleep(100)
  t.eq(#attempts_of(a), 1)
  t.eq(json.decode(attempts_of(a)[1].payload).payload.v, 1)
end)

t.test("requeue a dead job: it runs again with attempts reset", function()
  local id = pool.submit("needs_fix", {}, {max_attempts = 1})
  wait_state(id, "dead")
  store.exec("INSERT INTO flags (name) VALUES ('fixed')")
  t.eq(pool.requeue(id), true)
  local j = wait_state(id, "done")
  t.eq(j.attempts, 1)
  t.eq(#attempts_of(id), 2)
  local ok, err = pool.requeue(999999)
  t.eq(ok, nil)
  t.match(err, "no job")
end)

t.test("an endless loop is stopped by the time limit, retried, then dead", function()
  local started = time.mono()
  local id = pool.submit("spin", {}, {max_attempts = 2})
  local j = wait_state(id, "dead", 10000)
  t.eq(j.attempts, 2)
  t.match(j.last_error, "time limit exceeded")
  t.ok(time.mono() - started >= 2000, "two attempts of about a second each")
  t.eq(#attempts_of(id), 2)
end)

t.test("a transaction left open by a job is rolled back", function()
  local id = pool.submit("leaky", {})
  wait_state(id, "done")
  t.eq(store.row("SELECT COUNT(*) AS n FROM shared WHERE value = 'leaked'").n, 0)
  local after = pool.submit("record", {})
  wait_state(after, "done")
end)

t.test("submit inside a transaction: runs once committed, not before", function()
  local id
  store.transaction(function()
    id = pool.submit("record", {inside = true})
    time.sleep(200)
    t.eq(job(id).state, "queued")
  end)
  local started = time.mono()
  wait_state(id, "done", 3000)
  t.ok(time.mono() - started < 2000, "woken by the commit, not the 5 s poll")
  local rolled
  pcall(store.transaction, function()
    rolled = pool.submit("record", {})
    error("abandon")
  end)
  t.eq(job(rolled), nil)
end)

t.test("a delayed job runs when due", function()
  local started = time.now()
  local id = pool.submit("record", {}, {delay = 300})
  t.eq(job(id).state, "queued")
  local j = wait_state(id, "done", 3000)
  t.ok(j.started_at - started >= 295, "started after " .. (j.started_at - started) .. " ms")
  t.ok(j.started_at - started < 1500, "not left for the poll")
end)

t.test("jobs lists newest first with payloads decoded", function()
  local list = pool.jobs{name = "record", limit = 3}
  t.eq(#list, 3)
  t.ok(list[1].id > list[2].id and list[2].id > list[3].id)
  local dead = pool.jobs{state = "dead"}
  t.ok(#dead >= 3)
  for _, j in ipairs(dead) do t.eq(j.state, "dead") end
  local id = pool.submit("record", {x = {1, 2}}, {delay = 60000})
  local mine = pool.jobs{state = "queued", name = "record", limit = 1}[1]
  t.eq(mine.id, id)
  t.same(mine.payload, {x = {1, 2}})
  t.eq(#pool.jobs{state = "no-such-state"}, 0)
end)

t.test("many concurrent jobs fan out over workers", function()
  local started, ids = time.mono(), {}
  for i = 1, 60 do ids[i] = pool.submit("nap", {ms = 500, i = i}) end
  t.eventually(function()
    return store.row("SELECT COUNT(*) AS n FROM jobs WHERE name = 'nap' AND state = 'done'").n == 60
  end, 10000, "60 naps done")
  local took = time.mono() - started
  t.ok(took < 2500, "60 half-second jobs took " .. took .. " ms")
  local s = pool.stats()
  t.ok(s.workers >= 30 and s.workers <= 64, "workers " .. s.workers)
end)

t.test("stop waits for running jobs; they stay running otherwise", function()
  local id = pool.submit("nap", {ms = 1500})
  wait_state(id, "running")
  local ok, err = pool.stop(100)
  t.eq(ok, nil)
  t.match(err, "1 jobs still running")
  t.eq(job(id).state, "running")
  t.eq(pool.stop(5000), true)
  t.eq(job(id).state, "done")
  t.eq(pool.stats().workers, 0)
end)

return t.done()
