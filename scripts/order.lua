-- skudemo order ID [--json]: one order, its tasks and its timeline.
local cli = require "cli"
local backoffice = require "backoffice"
local opts, rest = cli.args(arg, {json = "flag"})
if not rest[1] then cli.fail("usage: skudemo order ORDER_ID [--json]", 2) end
cli.open_store()
local o = backoffice.order(rest[1])
if not o then cli.fail("no order " .. rest[1] .. " in the store") end
if opts.json then return cli.json(o) end
local order = o.order
print(string.format("order %s  %s%s", order.order_id, order.state,
  order.stopped == 1 and "  (automation stopped)" or ""))
print("buyer        " .. (order.buyer_id or "?"))
print("requirement  " .. (order.requirement or "-"))
if order.needs_human then print("needs human  " .. order.needs_human) end
for _, im in ipairs(o.images) do print("image        " .. im.name .. "  (task " .. im.task_id .. ")") end
print("")
cli.table(o.timeline, {
  {"when", function(e) return cli.when(e.at) end},
  {"step", "kind"},
  {"detail", function(e) return (e.failure and "FAILED " or "") .. (e.detail or "") end},
})
