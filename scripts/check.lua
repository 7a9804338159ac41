-- skudemo check - the guide's quick checklist, each line OK or what to fix.
--   skudemo check [--no-model]
local market, models, settings, fs, crypto, json, http =
  require "market", require "models", require "settings", require "fs", require "crypto", require "json", require "http"

if arg[1] == "--help" or arg[1] == "-h" then
  print([[usage: skudemo check [--no-model]

Checks, in the guide's order: the credentials file and key, SERVICE_SKU_ID and
its listing, the registered webhook, the model key (one tiny text call; skip it
with --no-model), the data directory, ADMIN_SECRET. Exits 1 if anything needs fixing.]])
  return 0
end
local skip_model = arg[1] == "--no-model"

local problems = 0
local function ok(text) print("OK    " .. text) end
local function fix(text) problems = problems + 1 print("FIX   " .. text) end
local function note(text) print("NOTE  " .. text) end

-- 1. credentials
local credentials, why = market.credentials()
local agent
if not credentials then
  fix(why)
else
  ok("credentials file " .. settings.CREDENTIALS_FILE)
  local failure
  agent, failure = market.me()
  if agent then
    ok("credentials valid: agent " .. tostring(agent.name) .. " (" .. tostring(agent.id or agent.agent_id) .. ")")
  elseif failure.status == 401 then
    fix("the platform refuses the api_key (401): check " .. settings.CREDENTIALS_FILE)
  else
    fix("GET /agents/me failed: " .. failure.message)
  end
end

-- 2. the SKU
local sku = settings.SERVICE_SKU_ID
if sku == "" then
  fix("SERVICE_SKU_ID is not set: skudemo listing create --write-env")
elseif agent then
  local found
  for page = 1, 20 do
    local body, failure = market.request("GET", "/listings/my", {query = {page = page, limit = 100}})
    if not body then fix("GET /listings/my failed: " .. failure.message) break end
    for _, l in ipairs(body.items or body.listings or {}) do
      if tostring(l.id) == sku then found = l end
    end
    local pages = body.pagination and tonumber(body.pagination.totalPages) or 1
    if found or page >= pages then break end
  end
  if not found then
    fix("SERVICE_SKU_ID " .. sku .. " is not one of our listings: skudemo listing list")
  elseif found.status ~= "active" then
    fix("listing " .. sku .. " is " .. tostring(found.status) .. ", not active: check its inventory")
  else
    ok("listing " .. sku .. " is active: " .. tostring(found.title or found.name) .. ", price " .. tostring(found.price))
  end
end

-- 3. the webhook
local expected = settings.webhook_url()
if not expected then
  fix("WEBHOOK_PUBLIC_BASE_URL is not set: skudemo webhook set [URL]")
elseif agent then
  local registered = agent.webhook_url
  if registered == json.null or registered == nil or registered == "" then
    fix("no webhook registered: skudemo webhook set")
  elseif registered ~= expected then
    fix("registered webhook " .. tostring(registered) .. " is not " .. expected .. ": skudemo webhook set")
  else
    ok("webhook registered: " .. expected)
  end
end
if settings.WEBHOOK_SECRET == "" then
  note("WEBHOOK_SECRET is not set: webhooks are not checked for a signature (skudemo webhook set makes one)")
end

-- 4. the model key
if settings.OPENROUTER_API_KEY == "" then
  fix("OPENROUTER_API_KEY is not set: create one at https://openrouter.ai/keys")
elseif skip_model then
  note("model key not tried (--no-model)")
else
  local _, failure = models.chat{model = settings.TEXT_MODEL, max_tokens = 1,
                                 messages = {{role = "user", content = "Reply with OK."}}}
  if not failure then
    ok("model key valid (" .. settings.TEXT_MODEL .. " answered)")
  elseif failure.status == 401 then
    fix("the model router refuses OPENROUTER_API_KEY (401)")
  elseif failure.status == 402 then
    fix("the model router account is out of credits (402)")
  else
    fix("model call failed: " .. failure.message)
  end
end

-- 5. the data directory
local data = settings.DATA_DIR
local probe = data .. "/.check-" .. crypto.random_hex(4)
fs.mkdir(data)
local wrote, err = fs.write(probe, "ok")
if wrote then
  fs.remove(probe)
  ok("data directory writable: " .. data)
else
  fix("data directory " .. data .. " is not writable: " .. tostring(err))
end

-- 6. the admin secret
local secret = settings.ADMIN_SECRET
if #secret >= 16 then
  ok("ADMIN_SECRET set")
else
  fix("ADMIN_SECRET is " .. (secret == "" and "not set" or "shorter than 16 characters") ..
      ": the server will not start (openssl rand -hex 24)")
end

-- the server, if it runs
local host = settings.APP_HOST
if host == "" or host == "0.0.0.0" then host = "127.0.0.1" end
local res = http.request{method = "GET", url = string.format("http://%s:%d/healthz", host, settings.APP_PORT),
                         timeout = 1000}
if res and res.status == 200 then
  ok("server answers on port " .. settings.APP_PORT)
else
  note("no server answers on port " .. settings.APP_PORT .. " (start it with skudemo serve)")
end

if problems > 0 then
  io.stderr:write(string.format("skudemo check: %d thing(s) to fix\n", problems))
  return 1
end
print("all checks passed")
return 0
