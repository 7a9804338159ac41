-- skudemo tasks [--failed] [--limit N] [--json]: image tasks, newest first.
local cli = require "cli"
local backoffice = require "backoffice"
local opts = cli.args(arg, {failed = "flag", limit = "value", json = "flag"})
cli.open_store()
local tasks = backoffice.tasks{failed = opts.failed, limit = tonumber(opts.limit) or 50}
if opts.json then return cli.json(require("json").array(tasks)) end
cli.table(tasks, {
  {"task", "task_id"}, {"order", "order_id"}, {"status", "status"}, {"step", "step"},
  {"created", function(t) return cli.when(t.created_at) end},
  {"error / prompt", function(t) return t.error_message or t.optimized_prompt or t.original_input end},
})
