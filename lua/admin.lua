-- admin.lua - the guide's image API, for the seller (and `skudemo generate`):
--   POST /api/v1/image/generate      {input, order_id?, type?} -> {success, task_id, message}
--   GET  /api/v1/image/tasks/{id}    the task's record
-- Both need X-Admin-Secret (compared in constant time; 401 otherwise).
local json, crypto, store = require "json", require "crypto", require "store"
local settings, records, prompt, pipeline, tasklog =
  require "settings", require "records", require "prompt", require "pipeline", require "tasklog"

local A = {}

local JSON = {["content-type"] = "application/json"}

local function header(req, name)
  local h = req.headers or {}
  return h[name:lower()] or h[name]
end

-- Whether the request carries ADMIN_SECRET. Both sides are hashed first so
-- the comparison takes the same time whatever the length of the guess.
function A.authorized(req)
  local secret = settings.ADMIN_SECRET
  local given = header(req, "X-Admin-Secret")
  if secret == "" or type(given) ~= "string" then return false end
  return crypto.equal(crypto.sha256(given), crypto.sha256(secret))
end

local function unauthorized()
  return 401, JSON, {success = false, message = "Unauthorized"}
end

local function bad_request(message)
  return 400, JSON, {success = false, task_id = json.null, message = message}
end

-- POST /api/v1/image/generate
function A.generate(req)
  if not A.authorized(req) then return unauthorized() end
  local body = json.decode(req.body or "")
  if type(body) ~= "table" or json.is_array(body) then return bad_request("Body must be a JSON object") end
  local input = body.input
  if input ~= nil and input ~= json.null and type(input) ~= "string" then return bad_request("input must be a string") end
  local requirement = prompt.requirement(type(input) == "string" and input or "", settings.MAX_REQUIREMENT_CHARS)
  if not requirement then
    return 200, JSON, {success = false, task_id = json.null, message = "Input is required"}
  end
  local order_id = body.order_id
  if order_id == json.null or order_id == "" then order_id = nil end
  if order_id ~= nil and (type(order_id) ~= "string" or not order_id:match("^[%w_%-]+$") or #order_id > 100) then
    return bad_request("order_id must be an order id")
  end
  local image_type = body.type
  if image_type == json.null then image_type = nil end
  if image_type ~= nil and (type(image_type) ~= "string" or #image_type > 100) then
    return bad_request("type must be a short string")
  end
  local task_id
  store.transaction(function()
    task_id = pipeline.create_task{input = requirement, order_id = order_id, type = image_type, source = "admin"}
  end)
  store.sync()
  return 200, JSON, {success = true, task_id = task_id, message = "Task accepted"}
end

-- GET /api/v1/image/tasks/{task_id}
function A.task(req)
  if not A.authorized(req) then return unauthorized() end
  local task_id = req.params and req.params.task_id
  local task = type(task_id) == "string" and #task_id <= 100 and records.task(task_id)
  if not task then return 404, JSON, {success = false, message = "Task not found"} end
  local record = tasklog.record(task)
  record.step = task.step
  return 200, JSON, record
end

A.routes = {
  {"POST", "/api/v1/image/generate", A.generate},
  {"GET", "/api/v1/image/tasks/{task_id}", A.task},
}

return A
