-- skudemo webhook - the guide's Module 2, step 4: register this server's
-- webhook with the platform, signed.
--   skudemo webhook set [PUBLIC_BASE_URL]
--   skudemo webhook show
local market, settings, dotenv, crypto, http, json =
  require "market", require "settings", require "dotenv", require "crypto", require "http", require "json"

local usage = [[
usage: skudemo webhook set [PUBLIC_BASE_URL]
       skudemo webhook show

set   registers PUBLIC_BASE_URL + WEBHOOK_PATH as the agent's webhook_url, with a
      webhook_secret (WEBHOOK_SECRET, generated into .env when not set), and reads
      it back. Without PUBLIC_BASE_URL: WEBHOOK_PUBLIC_BASE_URL, else the HTTPS
      address of an ngrok running on this machine (its API on 127.0.0.1:4040).
show  the registered webhook_url and whether it is the one configured here]]

local function fail(msg, code)
  io.stderr:write("skudemo webhook: ", msg, "\n")
  return code or 1
end

-- The public HTTPS address of a local ngrok, or nil and why.
local function ngrok_url()
  local res, err = http.request{method = "GET", url = "http://127.0.0.1:4040/api/tunnels", timeout = 2000}
  if not res then return nil, "no ngrok answers on 127.0.0.1:4040 (" .. tostring(err) .. "): start `ngrok http " ..
    settings.APP_PORT .. "` or pass the public URL" end
  local body = json.decode(res.body or "")
  for _, tunnel in ipairs(type(body) == "table" and body.tunnels or {}) do
    if type(tunnel.public_url) == "string" and tunnel.public_url:match("^https://") then return tunnel.public_url end
  end
  return nil, "ngrok runs but has no HTTPS tunnel: start `ngrok http " .. settings.APP_PORT .. "`"
end

local function set(args)
  local base = args[1]
  if base and base:sub(1, 2) == "--" then return fail("unknown option " .. base .. "\n" .. usage, 2) end
  local from = "the command line"
  if not base or base == "" then
    base, from = settings.WEBHOOK_PUBLIC_BASE_URL, "WEBHOOK_PUBLIC_BASE_URL"
  end
  if base == "" then
    local why
    base, why = ngrok_url()
    if not base then return fail("no public URL given, none configured, and " .. why) end
    from = "ngrok"
  end
  base = base:gsub("/+$", "")
  if not base:match("^https?://[^%s/]+") then return fail("not a URL: " .. base) end
  if not base:match("^https://") and not base:match("^http://127%.0%.0%.1[:/]") and not base:match("^http://localhost[:/]") then
    print("note: " .. base .. " is not HTTPS; the platform may refuse to deliver to it")
  end
  local url = base .. settings.WEBHOOK_PATH

  local secret = settings.WEBHOOK_SECRET
  local generated = false
  if secret == "" then
    secret = crypto.random_hex(24)
    generated = true
  elseif #secret < 32 or #secret > 64 then
    return fail("WEBHOOK_SECRET must be 32 to 64 characters (the platform's rule); clear it to have one generated")
  end

  local updated, failure = market.update_me{webhook_url = url, webhook_secret = secret}
  if not updated then
    if failure.status == 401 then return fail("401 Unauthorized: check the api_key in " .. settings.CREDENTIALS_FILE) end
    return fail("PATCH /agents/me failed: " .. failure.message)
  end
  if generated then
    local path, err = dotenv.set("WEBHOOK_SECRET", secret)
    if not path then return fail(err .. " (the platform already has the new secret: set WEBHOOK_SECRET by hand)") end
    print("generated a webhook secret, saved as WEBHOOK_SECRET in " .. path)
  end
  if from ~= "WEBHOOK_PUBLIC_BASE_URL" and base ~= settings.WEBHOOK_PUBLIC_BASE_URL then
    local path, err = dotenv.set("WEBHOOK_PUBLIC_BASE_URL", base)
    if not path then return fail(err) end
    print("WEBHOOK_PUBLIC_BASE_URL=" .. base .. " saved in " .. path)
  end

  local agent, read_failure = market.me()
  if not agent then return fail("GET /agents/me failed while confirming: " .. read_failure.message) end
  if agent.webhook_url ~= url then
    return fail("the platform shows webhook_url " .. tostring(agent.webhook_url) .. ", not " .. url)
  end
  print("webhook url  " .. url .. " (from " .. from .. ")")
  print("signed       yes: deliveries carry X-Webhook-Signature")
  print("confirmed    GET /agents/me shows it")
  if generated then print("restart skudemo serve so it checks signatures with the new secret") end
  return 0
end

local function show()
  local agent, failure = market.me()
  if not agent then return fail("GET /agents/me failed: " .. failure.message) end
  local url = agent.webhook_url
  if url == json.null or url == "" then url = nil end
  print("webhook url  " .. (url or "(not set): run skudemo webhook set"))
  print("secret       " .. (settings.WEBHOOK_SECRET ~= "" and "WEBHOOK_SECRET is set here" or
                              "WEBHOOK_SECRET is not set here: signatures are not checked"))
  local expected = settings.webhook_url()
  if expected then
    print("configured   " .. expected .. (url == expected and " (matches)" or " (DIFFERS: run skudemo webhook set)"))
  end
  return 0
end

local command = arg[1]
if command == "set" then return set({table.unpack(arg, 2)}) end
if command == "show" then return show() end
if command == nil or command == "--help" or command == "-h" then
  print(usage)
  return command and 0 or 2
end
return fail("unknown command '" .. command .. "'\n" .. usage, 2)
