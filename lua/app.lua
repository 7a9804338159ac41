-- app.lua - what `skudemo serve` runs: the routes, the jobs, and the
-- start-up and reload hooks. The parts live in the modules named after
-- them; this file only puts them together.
local store, fs, log = require "store", require "fs", require "log"
local settings, migrations, market, replies, pipeline, backstop =
  require "settings", require "migrations", require "market", require "replies", require "pipeline",
  require "backstop"

local app = {}

app.ADMIN_SECRET_MIN_LENGTH = 16

-- The modules that bring routes: order events in, the image API, and the
-- back office (health, metrics, the admin page).
app.route_modules = {"webhook", "admin", "ops", "admin_page"}

app.routes = {}
for _, name in ipairs(app.route_modules) do
  for _, route in ipairs(require(name).routes) do app.routes[#app.routes + 1] = route end
end

app.jobs = {}
for name, fn in pairs(pipeline.jobs) do app.jobs[name] = fn end
for name, fn in pairs(backstop.jobs) do app.jobs[name] = fn end

-- Start-up: refuse a weak ADMIN_SECRET, open the store, migrate, and keep
-- every secret out of the logs.
function app.init()
  local secret = settings.ADMIN_SECRET
  if #secret < app.ADMIN_SECRET_MIN_LENGTH then
    error(string.format("ADMIN_SECRET is %s: set it in .env to a random value of at least %d characters " ..
                        "(for example: openssl rand -hex 24)",
                        secret == "" and "not set" or "too short", app.ADMIN_SECRET_MIN_LENGTH), 0)
  end
  for _, name in ipairs{"ADMIN_SECRET", "WEBHOOK_SECRET", "OPENROUTER_API_KEY"} do
    local v = settings[name]
    if v ~= "" then log.secret(v) end
  end
  local data = settings.DATA_DIR
  assert(fs.mkdir(data .. "/images") or fs.exists(data .. "/images"), "cannot create " .. data .. "/images")
  assert(store.open(data .. "/skudemo.db"))
  local version = migrations.run()
  local credentials, why = market.credentials()     -- registers the API key as a secret
  if not credentials then log.warn("no marketplace credentials: nothing can be fulfilled", {reason = why}) end
  if settings.SERVICE_SKU_ID == "" then
    log.warn("SERVICE_SKU_ID is not set: every order.received is ignored (skudemo listing create)")
  end
  log.info("fulfillment ready", {data_dir = data, schema = version, sku = settings.SERVICE_SKU_ID})
end

-- The reload self-check: the scripts load and their data is sound. It runs
-- in a throwaway state and must not touch the network.
function app.check()
  assert(replies.check())
  assert(settings.WEBHOOK_PATH:match("^/"), "WEBHOOK_PATH must start with /")
  for _, route in ipairs(app.routes) do
    assert(type(route[3]) == "function", "route " .. tostring(route[2]) .. " has no handler")
  end
  for name, fn in pairs(app.jobs) do
    assert(type(fn) == "function", "job " .. name .. " has no function")
  end
end

function app.started(server)
  backstop.start()
end

return app
