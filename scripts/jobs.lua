-- skudemo jobs [--dead] [--state S] [--limit N] [--json]: the worker pool's jobs.
local cli = require "cli"
local pool = require "pool"
local opts = cli.args(arg, {dead = "flag", state = "value", limit = "value", json = "flag"})
cli.open_store()
local jobs = pool.jobs{state = opts.dead and "dead" or opts.state, limit = tonumber(opts.limit) or 50}
if opts.json then return cli.json(require("json").array(jobs)) end
local stats = pool.stats()
print(string.format("queued %d  running %d  done %d  dead %d", stats.queued or 0, stats.running or 0,
  stats.done or 0, stats.dead or 0))
print("")
cli.table(jobs, {
  {"id", "id"}, {"name", "name"}, {"state", "state"},
  {"attempts", function(j) return (j.attempts or 0) .. "/" .. (j.max_attempts or "?") end},
  {"next run", function(j) return j.state == "queued" and cli.when(j.run_at) or "" end},
  {"last error", "last_error"},
})
