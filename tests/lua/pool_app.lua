-- pool_app.lua - jobs for pool_test.lua and store_test.lua. Each records
-- its attempts in the `results` table the tests create.
local store, pool, json, time = require "store", require "pool", require "json", require "time"

local function record(job, payload)
  store.exec("INSERT INTO results (job_id, name, attempt, payload, at) VALUES (?, ?, ?, ?, ?)",
             job.id, job.name, job.attempt, json.encode({payload = payload, job = job}), time.now())
end

local jobs = {}

function jobs.record(payload, job)
  record(job, payload)
end

-- Fails until attempt payload.succeed_on.
function jobs.flaky(payload, job)
  record(job, payload)
  if job.attempt < payload.succeed_on then error("flaky failure " .. job.attempt) end
end

function jobs.always_fails(payload, job)
  record(job, payload)
  error("boom on attempt " .. job.attempt)
end

function jobs.giveup(payload, job)
  record(job, payload)
  pool.giveup("no point in trying again")
end

-- Asks to be retried after payload.ms once, then succeeds.
function jobs.later(payload, job)
  record(job, payload)
  if job.attempt == 1 then pool.retry_in(payload.ms, "not yet") end
end

-- Fails until the `fixed` flag row exists.
function jobs.needs_fix(payload, job)
  record(job, payload)
  if not store.row("SELECT 1 AS ok FROM flags WHERE name = 'fixed'") then error("not fixed") end
end

function jobs.spin(payload, job)
  record(job, payload)
  local n = 0
  while true do n = n + 1 end
end

function jobs.nap(payload, job)
  time.sleep(payload.ms)
  record(job, payload)
end

-- Writes a row the submitting thread reads back (store visibility across threads).
function jobs.write_row(payload, job)
  store.exec("INSERT INTO shared (job_id, value) VALUES (?, ?)", job.id, payload.value)
  record(job, payload)
end

-- Leaves a transaction open; the pool must roll it back.
function jobs.leaky(payload, job)
  store.exec("BEGIN IMMEDIATE")
  store.exec("INSERT INTO shared (job_id, value) VALUES (?, 'leaked')", job.id)
  record(job, payload)
end

return {jobs = jobs}
