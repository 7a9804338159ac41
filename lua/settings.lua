-- settings.lua - every setting skudemo's scripts read, with its default, in
-- one place. Values come from the environment or .env through `config`;
-- read them as fields: `settings.SERVICE_SKU_ID`, `settings.APP_PORT`.
--
-- `.env.example` lists the same settings with the same comments; the test
-- tests/lua/settings_test.lua keeps the two in step.
local config = require "config"

local S = {}

-- {name, default, kind, comment}. kind: "string", "int", "bool", "path",
-- "secret" (a string never logged). Group order follows the guide.
S.list = {
  -- the guide's settings
  {"AGENT_MARKET_BASE_URL", "https://molt-market-mvp.vercel.app/api", "string",
   "Platform API address (the marketplace)"},
  {"CREDENTIALS_FILE", "~/.config/agentmarket/credentials.json", "path",
   "Local credentials file: {\"api_key\": \"...\", \"agent_id\": \"...\"}"},
  {"SERVICE_SKU_ID", "", "string",
   "The listing whose orders this service fulfils (listing.id from `skudemo listing create`)"},
  {"ADMIN_SECRET", "", "secret",
   "Shared secret for the admin API (X-Admin-Secret); at least 16 characters or the server refuses to start"},
  {"WEBHOOK_PATH", "/api/v1/webhook/orders", "string", "Route the platform POSTs order events to"},
  {"WEBHOOK_PUBLIC_BASE_URL", "", "string",
   "Public HTTPS address of this server (ngrok's), without the path"},
  {"APP_PORT", 8000, "int", "Port the server listens on"},
  {"OPENROUTER_API_KEY", "", "secret", "Model router key (https://openrouter.ai/keys)"},
  {"OPENROUTER_BASE_URL", "https://openrouter.ai/api/v1", "string", "Model router address"},
  {"DATA_DIR", "./data", "path", "Store, images/ and image_tasks.jsonl live here"},
  -- the server
  {"APP_HOST", "0.0.0.0", "string", "Address the server listens on (127.0.0.1 behind ngrok on the same machine)"},
  {"WEBHOOK_SECRET", "", "secret",
   "Webhook signing secret (32-64 chars); when set, unsigned or wrongly signed webhooks get 401. `skudemo webhook set` generates it"},
  {"POOL_WORKERS", 256, "int", "Most worker threads running jobs at once (a model call holds one); started on demand, idle ones exit"},
  {"SHUTDOWN_TIMEOUT_MS", 10000, "int", "How long a stopping server waits for running jobs"},
  {"LOG_LEVEL", "info", "string", "debug, info, warn or error"},
  -- models
  {"TEXT_MODEL", "openai/gpt-4o-mini", "string", "Text model that turns a requirement into an optimized prompt (JSON)"},
  {"IMAGE_MODEL", "google/gemini-2.5-flash-image", "string", "Image model"},
  {"IMAGE_ASPECT_RATIO", "auto", "string",
   "image_config.aspect_ratio of every image request; auto: the text model picks from the requirement"},
  {"MODEL_TIMEOUT_MS", 180000, "int", "Time limit of one model call"},
  {"MODEL_ATTEMPTS", 4, "int", "Attempts of a model call on a retryable failure (408, 429, 502, 503, network, no image)"},
  {"MODEL_RETRY_BASE_MS", 2000, "int", "First retry delay of a model call; doubles each attempt, with jitter"},
  {"IMAGE_DOWNLOAD_MAX_BYTES", 50 * 1024 * 1024, "int", "Largest image fetched when a model answers with a plain URL"},
  -- marketplace calls
  {"MARKET_TIMEOUT_MS", 20000, "int", "Time limit of one marketplace call"},
  {"MARKET_ATTEMPTS", 3, "int", "Attempts of one marketplace call before its job is retried later (429, 5xx, network)"},
  {"MARKET_RETRY_BASE_MS", 250, "int", "First retry delay of a marketplace call; doubles each attempt, with jitter"},
  {"MARKET_RETRY_MAX_WAIT_MS", 5000, "int",
   "Longest Retry-After waited for in place; longer waits reschedule the job instead"},
  {"JOB_ATTEMPTS", 10, "int", "Attempts of a marketplace step (accept, message, upload, complete) before it waits for a person"},
  {"JOB_RETRY_BASE_MS", 1000, "int", "First delay before a failed step runs again; doubles each attempt, with jitter"},
  -- background loops
  {"EVENTS_POLL_INTERVAL_MS", 30000, "int", "How often the events feed is read for events whose webhook never arrived"},
  {"HEARTBEAT_INTERVAL_MS", 60000, "int", "How often the marketplace heartbeat is sent (buyers see the seller online)"},
  {"ACCEPT_WAIT_MS", 500, "int", "Delay before a buyer message that arrived before its order was accepted is looked at again"},
  -- buyer requirements
  {"MAX_REQUIREMENT_CHARS", 2000, "int", "Longest buyer requirement passed to the text model"},
}

local by_name = {}
for _, s in ipairs(S.list) do by_name[s[1]] = s end
S.by_name = by_name

-- The value of one setting, typed by its kind.
function S.value(name)
  local s = by_name[name]
  if not s then error("unknown setting " .. tostring(name), 2) end
  local default, kind = s[2], s[3]
  if kind == "int" then return config.int(name, default) end
  if kind == "bool" then return config.bool(name, default) end
  if kind == "path" then return config.path(name, default) end
  return config.get(name, default)
end

-- Every setting as a plain table (for `skudemo check` and tests).
function S.all()
  local t = {}
  for _, s in ipairs(S.list) do t[s[1]] = S.value(s[1]) end
  return t
end

-- The webhook URL the platform should have: public base + path.
function S.webhook_url()
  local base = S.value("WEBHOOK_PUBLIC_BASE_URL"):gsub("/+$", "")
  if base == "" then return nil end
  return base .. S.value("WEBHOOK_PATH")
end

return setmetatable(S, {__index = function(_, name)
  if by_name[name] then return S.value(name) end
end})
