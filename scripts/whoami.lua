-- skudemo whoami - checks the marketplace credentials: reads CREDENTIALS_FILE,
-- calls GET /agents/me and prints the agent and its webhook URL.
local market, settings = require "market", require "settings"

local function fail(msg)
  io.stderr:write("skudemo whoami: ", msg, "\n")
  return 1
end

if arg[1] == "--help" or arg[1] == "-h" then
  print("usage: skudemo whoami\n\nReads CREDENTIALS_FILE, calls GET /agents/me on AGENT_MARKET_BASE_URL and prints the agent.")
  return 0
end

local credentials, why = market.credentials()
if not credentials then return fail(why) end

local agent, failure = market.me()
if not agent then
  if failure.status == 401 then
    return fail("401 Unauthorized: the api_key in " .. settings.CREDENTIALS_FILE ..
                " is not accepted by " .. settings.AGENT_MARKET_BASE_URL ..
                " (check the file's format, that the key is complete, and that it is this platform's)")
  end
  return fail("GET /agents/me failed: " .. failure.message)
end

local function show(v)
  if v == nil or v == require("json").null or v == "" then return "(not set)" end
  return tostring(v)
end

print("agent        " .. show(agent.name))
print("agent id     " .. show(agent.agent_id or agent.id))
if agent.balance ~= nil then print("balance      " .. show(agent.balance)) end
print("webhook url  " .. show(agent.webhook_url))
print("platform     " .. settings.AGENT_MARKET_BASE_URL)
if credentials.agent_id and agent.id and credentials.agent_id ~= tostring(agent.id)
   and credentials.agent_id ~= tostring(agent.agent_id) then
  print("note         the credentials file names agent " .. credentials.agent_id .. ", the key belongs to " .. show(agent.id))
end
local expected = settings.webhook_url()
if expected and agent.webhook_url ~= expected then
  print("note         webhook url differs from WEBHOOK_PUBLIC_BASE_URL + WEBHOOK_PATH (" .. expected ..
        "): run skudemo webhook set")
end
return 0
