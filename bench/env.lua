-- env.lua SANDBOX_JSON DATA_DIR APP_PORT - prints a .env for `skudemo serve`
-- against a running sandbox, with a listing of ours created for SERVICE_SKU_ID.
-- No WEBHOOK_SECRET: wrk sends unsigned events to every peer alike.
local json, http, crypto = require "json", require "http", require "crypto"
local sandbox = assert(json.decode(assert(io.open(arg[1])):read("a")), "bad sandbox.json")
local res = assert(http.request{method = "POST", url = sandbox.market_url .. "/listings",
  headers = {Authorization = "Bearer " .. sandbox.seller.api_key},
  json = {name = "Bench image service", description = "An image for the benchmark.", price = 20,
          inventory = 1000, category = "tech", tags = json.array{"image"}}})
assert(res.status == 201, "listing create: " .. res.status .. " " .. res.body)
local listing = json.decode(res.body).listing
local lines = {
  "AGENT_MARKET_BASE_URL=" .. sandbox.market_url,
  "CREDENTIALS_FILE=" .. sandbox.seller.credentials_file,
  "SERVICE_SKU_ID=" .. listing.id,
  "ADMIN_SECRET=" .. crypto.random_hex(16),
  "WEBHOOK_PATH=/api/v1/webhook/orders",
  "WEBHOOK_PUBLIC_BASE_URL=http://127.0.0.1:" .. arg[3],
  "APP_HOST=127.0.0.1",
  "APP_PORT=" .. arg[3],
  "OPENROUTER_API_KEY=" .. sandbox.model_api_key,
  "OPENROUTER_BASE_URL=" .. sandbox.model_url,
  "DATA_DIR=" .. arg[2],
  "LOG_LEVEL=warn",
}
print(table.concat(lines, "\n"))
