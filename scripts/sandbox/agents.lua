-- sandbox/agents.lua - marketplace agents: API keys, the caller's profile,
-- webhook settings and the heartbeat that keeps an agent shown online.
local config = require "config"
local crypto = require "crypto"
local json = require "json"
local store = require "store"
local time = require "time"
local web = require "sandbox.web"

local agents = {}

-- An agent is shown online this long after its last heartbeat.
local function online_window_ms()
  return config.int("SANDBOX_ONLINE_WINDOW_MS", 180000)
end

function agents.is_online(agent)
  local last = agent.last_heartbeat_ms
  return last ~= nil and time.now() - last < online_window_ms()
end

function agents.get(id)
  return store.row("SELECT * FROM agents WHERE id = ?", id)
end

-- The agent as GET /agents/me shows it (the secret itself never leaves).
function agents.view(agent)
  return {
    id = agent.id, agent_id = agent.id, name = agent.name,
    description = agent.description or "", role = agent.role,
    balance = web.num(agent.balance),
    webhook_url = agent.webhook_url or json.null,
    has_webhook_secret = agent.webhook_secret ~= nil,
    is_online = agents.is_online(agent),
    last_heartbeat_at = agent.last_heartbeat_ms and time.iso(agent.last_heartbeat_ms) or json.null,
    created_at = agent.created_at,
  }
end

-- The calling agent from the Bearer key; a 401 otherwise.
function agents.authenticate(req)
  local key = web.bearer(req)
  if not key then web.fail(401, "Missing API key: send Authorization: Bearer <api_key>", "unauthorized") end
  local agent = store.row("SELECT * FROM agents WHERE api_key = ?", key)
  if not agent then web.fail(401, "Invalid API key", "unauthorized") end
  req.agent_id = agent.id  -- for the sandbox's call log
  return agent
end

-- The agent of a role, created (with a new key) when missing.
function agents.ensure(role, name, balance)
  local agent = store.row("SELECT * FROM agents WHERE role = ? ORDER BY rowid LIMIT 1", role)
  if agent then return agent end
  local id = crypto.uuid()
  store.exec("INSERT INTO agents (id, role, name, description, api_key, balance, created_at) "
             .. "VALUES (?, ?, ?, ?, ?, ?, ?)",
             id, role, name, "The sandbox's " .. role, "am_sandbox_" .. crypto.random_hex(24),
             balance, time.iso())
  return agents.get(id)
end

local function get_me(req)
  local agent = agents.authenticate(req)
  return web.json(200, agents.view(agent))
end

local function valid_url(s)
  return s:match("^https?://[%w%.%-_%[%]:]+") ~= nil and not s:find("%s")
end

local function patch_me(req)
  local agent = agents.authenticate(req)
  local body = web.body(req)
  local name = web.text(body, "name", {max = 100})
  local description = web.text(body, "description", {min = 0, max = 2000})
  local sets, args = {}, {}
  if name then sets[#sets + 1] = "name = ?"; args[#args + 1] = name end
  if description then sets[#sets + 1] = "description = ?"; args[#args + 1] = description end
  if body.webhook_url ~= nil then
    local url = body.webhook_url
    if url == json.null or url == "" then
      sets[#sets + 1] = "webhook_url = NULL"
    else
      if type(url) ~= "string" or #url > 2048 or not valid_url(url) then
        web.fail(400, "webhook_url must be an http(s) URL", "validation_error", {field = "webhook_url"})
      end
      sets[#sets + 1] = "webhook_url = ?"; args[#args + 1] = url
    end
  end
  if body.webhook_secret ~= nil then
    local secret = body.webhook_secret
    if secret == json.null or secret == "" then
      sets[#sets + 1] = "webhook_secret = NULL"
    else
      if type(secret) ~= "string" or #secret < 32 or #secret > 64 then
        web.fail(400, "webhook_secret must be 32 to 64 characters", "validation_error",
                 {field = "webhook_secret"})
      end
      sets[#sets + 1] = "webhook_secret = ?"; args[#args + 1] = secret
    end
  end
  if #sets > 0 then
    args[#args + 1] = agent.id
    store.exec("UPDATE agents SET " .. table.concat(sets, ", ") .. " WHERE id = ?", table.unpack(args))
  end
  return web.json(200, agents.view(agents.get(agent.id)))
end

local function heartbeat(req)
  local agent = agents.authenticate(req)
  if req.body and not req.body:match("^%s*$") then web.body(req) end
  store.exec("UPDATE agents SET last_heartbeat_ms = ? WHERE id = ?", time.now(), agent.id)
  return web.json(200, {status = "ok", is_online = true})
end

agents.routes = {
  {"GET", "/api/agents/me", get_me},
  {"PATCH", "/api/agents/me", patch_me},
  {"POST", "/api/agents/heartbeat", heartbeat},
}

return agents
