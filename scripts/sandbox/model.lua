-- sandbox/model.lua - the model router's POST /api/v1/chat/completions, as
-- OpenRouter answers it (CONTRACT.md section 3), drawn and written by the
-- sandbox: deterministic, after a configurable latency, with OpenRouter's
-- error shape {"error": {"code", "message", "metadata"}}.
local config = require "config"
local crypto = require "crypto"
local json = require "json"
local time = require "time"
local db = require "sandbox.db"
local web = require "sandbox.web"
local picture = require "sandbox.picture"

local model = {}

-- An answer in OpenRouter's error shape.
function model.error_answer(status, message, headers, metadata)
  return web.json(status, {error = {code = status, message = message, metadata = metadata or json.null}}, headers)
end

local function fail(status, message)
  web.answer(model.error_answer(status, message))
end

-- "image" when the request's modalities ask for an image, else "text";
-- nil when the body is not a JSON object.
function model.kind_of(body)
  if type(body) ~= "table" then return nil end
  local modalities = body.modalities
  if type(modalities) == "table" then
    for _, m in ipairs(modalities) do
      if m == "image" then return "image" end
    end
  end
  return "text"
end

-- The request body as a table, or nil (the handler answers the 400).
function model.decode(req)
  local raw = req.body
  if type(raw) ~= "string" or not raw:match("^%s*{") then return nil end
  local body = json.decode(raw)
  if type(body) ~= "table" then return nil end
  return body
end

-- The text of a message: a string, or the text parts of a content array.
local function text_of(content)
  if type(content) == "string" then return content end
  if type(content) ~= "table" then return nil end
  local parts = {}
  for _, part in ipairs(content) do
    if type(part) == "table" and part.type == "text" and type(part.text) == "string" then
      parts[#parts + 1] = part.text
    end
  end
  return table.concat(parts, "\n")
end

-- The last user message's text (400 when the messages are malformed).
local function last_user_text(body)
  local messages = body.messages
  if type(messages) ~= "table" or #messages == 0 then fail(400, "messages must be a non-empty array") end
  local last
  for _, m in ipairs(messages) do
    if type(m) ~= "table" or type(m.role) ~= "string" then fail(400, "each message needs a role") end
    local text = text_of(m.content)
    if text == nil then fail(400, "message content must be a string or an array of parts") end
    if m.role == "user" then last = text end
  end
  if not last then fail(400, "messages need at least one user message") end
  return last
end

local function tokens(s)
  return math.max(1, math.ceil(#s / 4))
end

local function completion(body, message, prompt_text, completion_tokens)
  local prompt_tokens = tokens(prompt_text)
  return {
    id = "gen-sandbox-" .. crypto.random_hex(12), provider = "Sandbox", model = body.model,
    object = "chat.completion", created = time.now() // 1000,
    choices = json.array({{logprobs = json.null, finish_reason = "stop", native_finish_reason = "STOP",
                           index = 0, message = message}}),
    usage = {prompt_tokens = prompt_tokens, completion_tokens = completion_tokens,
             total_tokens = prompt_tokens + completion_tokens},
  }
end

-- Prompt shaping as a text model would do it: the buyer's words cleaned
-- of filler, with a style and an aspect ratio read from them.
model.styles = {
  {"watercolou?r", "watercolor"}, {"pixel", "pixel art"}, {"photo", "photorealistic"},
  {"minimal", "minimalist"}, {"cartoon", "cartoon"}, {"tech", "modern tech"}, {"retro", "retro"},
  {"3d", "3d render"}, {"sketch", "pencil sketch"}, {"anime", "anime"},
}
model.aspect_words = {
  {"16:9"}, {"9:16"}, {"4:3"}, {"3:4"}, {"3:2"}, {"2:3"}, {"1:1"}, {"21:9"}, {"4:5"}, {"5:4"},
  {"banner", "16:9"}, {"landscape", "16:9"}, {"wide", "16:9"}, {"cover", "16:9"},
  {"story", "9:16"}, {"portrait", "9:16"}, {"vertical", "9:16"}, {"poster", "2:3"},
  {"square", "1:1"}, {"avatar", "1:1"}, {"icon", "1:1"},
}

function model.shape_prompt(text)
  local cleaned = text:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
  local lower = cleaned:lower()
  for _, filler in ipairs({"^please ", "^could you ", "^can you ", "^i want ", "^i need ", "^generate ",
                           "^create ", "^make ", "^draw "}) do
    local before = lower
    lower = lower:gsub(filler, "")
    if lower ~= before then cleaned = cleaned:sub(#cleaned - #lower + 1) end
  end
  cleaned = cleaned:gsub("[%.!%?,;:%s]+$", "")
  if cleaned == "" then cleaned = "an abstract picture" end
  local style = "digital illustration"
  for _, s in ipairs(model.styles) do
    if lower:find(s[1]) then style = s[2] break end
  end
  local aspect = "1:1"
  for _, a in ipairs(model.aspect_words) do
    local word = a[1]
    local pattern = word:find(":") and word or ("%f[%a]" .. word)
    if lower:find(pattern) then aspect = a[2] or word break end
  end
  return {optimized_prompt = cleaned .. ", " .. style .. " style, high detail, professional lighting",
          style = style, aspect_ratio = aspect}
end

local function latency(kind)
  local name = kind .. "_latency_ms"
  return db.setting_int(name, config.int("SANDBOX_" .. name:upper(), 0))
end

local function image_answer(body, prompt, fault)
  local image_config = body.image_config
  local aspect = "1:1"
  if web.present(image_config) then
    if type(image_config) ~= "table" then fail(400, "image_config must be an object") end
    if web.present(image_config.aspect_ratio) then aspect = image_config.aspect_ratio end
  end
  local count = 1
  if web.present(body.n) then
    count = math.tointeger(body.n)
    if not count or count < 1 or count > 4 then fail(400, "n must be an integer from 1 to 4") end
  end
  if type(aspect) ~= "string" or not picture.size(aspect) then
    fail(400, "image_config.aspect_ratio must look like \"16:9\"")
  end
  if fault and fault.mode == "no_images" then
    return web.json(200, completion(body, {role = "assistant", content = "I could not draw that picture.",
                                           refusal = json.null, reasoning = json.null}, prompt, 12))
  end
  local bytes, info = picture.draw(prompt, aspect)
  local url = "data:image/png;base64," .. crypto.base64_encode(bytes)
  local images = json.array()
  for i = 1, count do
    images[i] = {type = "image_url", image_url = {url = url}, index = i - 1}
  end
  local message = {
    role = "assistant", refusal = json.null, reasoning = json.null, images = images,
    content = string.format("Here is a %s %s on %s, %dx%d.", info.accent or "contrasting", info.shape,
                            info.colour, info.width, info.height),
  }
  return web.json(200, completion(body, message, prompt, 1290 * count))
end

local function text_answer(body, prompt)
  local shaped = model.shape_prompt(prompt)
  local format = body.response_format
  local content
  if type(format) == "table" and (format.type == "json_object" or format.type == "json_schema") then
    content = json.encode(shaped)
  else
    content = shaped.optimized_prompt
  end
  return web.json(200, completion(body, {role = "assistant", content = content, refusal = json.null,
                                          reasoning = json.null}, prompt, tokens(content)))
end

-- POST /api/v1/chat/completions. fault: the injected behaviour for this
-- call from the app's wrapper ({mode = "error_object" | "no_images", ...}).
function model.complete(req, fault)
  local key = web.bearer(req)
  local expected = config.get("SANDBOX_MODEL_API_KEY")
  if not key or not expected or not crypto.equal(key, expected) then
    fail(401, key and "User not found." or "No auth credentials found")
  end
  local body = model.decode(req)
  if not body then fail(400, "Request body must be a JSON object") end
  if type(body.model) ~= "string" or body.model == "" then fail(400, "model is required") end
  local kind = model.kind_of(body)
  local prompt = last_user_text(body)
  local wait = latency(kind)
  if wait > 0 then time.sleep(wait) end
  if fault and fault.mode == "error_object" then
    local code = fault.status or 502
    return web.json(200, {
      id = "gen-sandbox-" .. crypto.random_hex(12), object = "chat.completion", model = body.model,
      created = time.now() // 1000,
      error = {code = code, message = "Provider returned error", metadata = {provider_name = "Sandbox"}},
    })
  end
  if kind == "image" then return image_answer(body, prompt, fault) end
  return text_answer(body, prompt)
end

return model
