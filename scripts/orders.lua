-- skudemo orders [--state S] [--limit N] [--json]: orders, newest first.
local cli = require "cli"
local backoffice = require "backoffice"
local opts = cli.args(arg, {state = "value", limit = "value", json = "flag"})
cli.open_store()
local orders = backoffice.orders{state = opts.state, limit = tonumber(opts.limit) or 50}
if opts.json then return cli.json(require("json").array(orders)) end
cli.table(orders, {
  {"order", "order_id"}, {"state", "state"},
  {"automation", function(o) return o.stopped == 1 and "stopped" or (o.ours == 1 and "on" or "not ours") end},
  {"needs a human", "needs_human"},
  {"created", function(o) return cli.when(o.created_at) end},
  {"requirement", "requirement"},
})
