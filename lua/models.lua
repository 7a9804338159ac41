-- models.lua - the model router client (OpenRouter, CONTRACT.md section 3).
--
--   analyze(requirement, type)  text model -> validated analysis (prompt.lua)
--   draw(prompt, aspect_ratio)  image model -> list of image URLs (data: or http)
--
-- Each returns its result, or nil and a failure:
--   {retry = bool, status = n, message = s, retry_after_ms = n|nil, kind = s}
-- `retry` follows CONTRACT.md: 408, 429, 5xx, network errors, a 200 with an
-- error object and an image call's 200 without images are worth another
-- try; 400, 401, 402, 403 (and other 4xx) never are. The caller (the task
-- pipeline) decides when to try again.
local http, json, time, metrics = require "http", require "json", require "time", require "metrics"
local settings, prompt = require "settings", require "prompt"

local M = {}

local PERMANENT = {[400] = true, [401] = true, [402] = true, [403] = true}

-- Seconds from a Retry-After header (delta-seconds only), as ms.
local function retry_after_ms(headers)
  local v = headers and tonumber(headers["retry-after"])
  if v and v >= 0 then return math.floor(v * 1000) end
end

-- The error message in an OpenRouter error body, if any.
local function error_message(body)
  if type(body) ~= "table" then return nil end
  local e = body.error
  if type(e) == "table" then return tostring(e.message or e.code or "error"), tonumber(e.code) end
  if type(e) == "string" then return e end
end

-- Classifies one HTTP answer (or a network error). Pure: used by the tests.
-- Returns the decoded body, or nil and a failure.
function M.classify(res, err)
  if not res then
    return nil, {retry = true, message = "network error: " .. tostring(err), kind = "network"}
  end
  local body = json.decode(res.body or "")
  local msg, code = error_message(body)
  if res.status ~= 200 then
    local status = res.status
    return nil, {
      retry = not PERMANENT[status] and (status == 408 or status == 429 or status >= 500),
      status = status,
      message = string.format("HTTP %d%s", status, msg and (": " .. msg) or ""),
      retry_after_ms = retry_after_ms(res.headers),
      kind = "http",
    }
  end
  if type(body) ~= "table" then
    return nil, {retry = true, status = 200, message = "the answer is not JSON", kind = "body"}
  end
  if msg then
    -- a failure after generation started: retried unless its code says the
    -- request itself can never succeed
    return nil, {retry = not PERMANENT[code], status = 200, message = "model error: " .. msg,
                 kind = "error_object", code = code}
  end
  return body
end

-- The first choice's message of a chat answer, or nil.
local function first_message(body)
  local choice = type(body.choices) == "table" and body.choices[1]
  return type(choice) == "table" and type(choice.message) == "table" and choice.message or nil
end

-- Image URLs in a chat answer (choices[1].message.images[].image_url.url).
function M.image_urls(body)
  local urls = {}
  local message = first_message(body)
  local images = message and message.images
  if type(images) ~= "table" then return urls end
  for _, image in ipairs(images) do
    local url = type(image) == "table" and
      (type(image.image_url) == "table" and image.image_url.url or image.url)
    if type(url) == "string" and url ~= "" then urls[#urls + 1] = url end
  end
  return urls
end

metrics.help("skudemo_model_calls_total", "Model calls by kind (text, image) and outcome (ok, retryable, failed).")
metrics.help("skudemo_model_call_seconds", "Model call latency by kind.")

-- Counts a model call on /metrics.
local function count(kind, started, failure)
  local outcome = not failure and "ok" or failure.retry and "retryable" or "failed"
  metrics.inc("skudemo_model_calls_total", {kind = kind, outcome = outcome})
  metrics.observe("skudemo_model_call_seconds", {kind = kind}, (time.mono() - started) / 1000)
end

-- POST /chat/completions with body (a table); the decoded answer or nil,
-- failure. kind ("text" or "image") labels the call on /metrics.
function M.chat(body, kind)
  local key = settings.OPENROUTER_API_KEY
  local started = time.mono()
  local res, err = http.request{
    method = "POST",
    url = settings.OPENROUTER_BASE_URL:gsub("/+$", "") .. "/chat/completions",
    headers = {Authorization = "Bearer " .. key, ["X-Title"] = "skudemo"},
    json = body,
    timeout = settings.MODEL_TIMEOUT_MS,
  }
  local answer, failure = M.classify(res, err)
  if kind ~= "image" then count(kind or "text", started, failure) end
  return answer, failure
end

-- Step 1: the requirement analysed by the text model. Returns the analysis
-- ({optimized_prompt, ...}) or nil and a failure.
function M.analyze(requirement, image_type)
  local request = prompt.analysis_request(requirement, image_type)
  request.model = settings.TEXT_MODEL
  local body, failure = M.chat(request, "text")
  if not body then return nil, failure end
  local message = first_message(body)
  local analysis, why = prompt.parse_analysis(message and message.content)
  if not analysis then
    -- a model that answers but not as asked would answer the same again
    return nil, {retry = false, status = 200, message = why, kind = "invalid_analysis"}
  end
  return analysis
end

-- Step 2: the image model. Returns a list of image URLs (at least one) or
-- nil and a failure.
function M.draw(image_prompt, aspect_ratio)
  local started = time.mono()
  local body, failure = M.chat({
    model = settings.IMAGE_MODEL,
    messages = {{role = "user", content = image_prompt}},
    modalities = {"image", "text"},
    image_config = {aspect_ratio = aspect_ratio},
  }, "image")
  local urls = body and M.image_urls(body) or {}
  if body and #urls == 0 then
    failure = {retry = true, status = 200, message = "the model answered without an image", kind = "no_images"}
  end
  count("image", started, failure)
  if failure then return nil, failure end
  return urls
end

-- A short reason a buyer may read (no keys, no internals).
function M.buyer_reason(failure)
  local status = failure and (failure.code or failure.status)
  if status == 403 then return "the request was refused by the image model's content policy" end
  if status == 400 then return "the image model could not process the request" end
  if status == 401 or status == 402 then return "the image service is unavailable right now" end
  if failure and failure.kind == "invalid_analysis" then return "we could not interpret the requirement" end
  return "the image model is busy or unavailable right now"
end

return M
