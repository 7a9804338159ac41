-- env.lua SANDBOX_JSON DATA_DIR APP_PORT - prints a .env for `skudemo serve`
-- against a running sandbox, with a listing of ours created for SERVICE_SKU_ID.
-- No WEBHOOK_SECRET: wrk sends unsigned events to every peer alike.
package.path = "scripts/?.lua;" .. package.path
local json, http, crypto = require "json", require "http", require "crypto"
local buyer_lib = require "sandbox.buyer"
local sandbox = assert(json.decode(assert(io.open(arg[1])):read("a")), "bad sandbox.json")
local res = assert(http.request{method = "POST", url = sandbox.market_url .. "/listings",
  headers = {Authorization = "Bearer " .. sandbox.seller.api_key},
  json = {name = "Bench image service", description = "An image for the benchmark.", price = 20,
          inventory = 1000, category = "tech", tags = json.array{"image"}}})
assert(res.status == 201, "listing create: " .. res.status .. " " .. res.body)
local settings = buyer_lib.serve_settings(sandbox)
settings.SERVICE_SKU_ID = json.decode(res.body).listing.id
settings.ADMIN_SECRET = crypto.random_hex(16)
settings.WEBHOOK_PATH = "/api/v1/webhook/orders"
settings.WEBHOOK_PUBLIC_BASE_URL = "http://127.0.0.1:" .. arg[3]
settings.APP_HOST = "127.0.0.1"
settings.APP_PORT = arg[3]
settings.DATA_DIR = arg[2]
settings.LOG_LEVEL = "warn"
for name, value in pairs(settings) do print(name .. "=" .. value) end
