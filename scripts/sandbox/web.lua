-- sandbox/web.lua - request reading, input checks and answers in the
-- marketplace's shapes, shared by the sandbox's route handlers.
--
-- A handler stops with web.fail(status, message, error_type[, details]):
-- it raises a marked table the app's wrapper turns into the answer
-- {"success": false, "error": message, "details": {"error_type": ...}}.
local json = require "json"

local web = {}

local Failure = {}
Failure.__index = Failure
Failure.__tostring = function(f) return string.format("%d %s", f.status, f.message) end

-- Stops the handler with an error answer in the marketplace's shape.
function web.fail(status, message, error_type, details)
  local d = {error_type = error_type or "error"}
  for k, v in pairs(details or {}) do d[k] = v end
  error(setmetatable({status = status, message = message, details = d}, Failure), 0)
end

-- Stops the handler with a fully custom answer (status, headers, body).
function web.answer(status, headers, body)
  error(setmetatable({status = status, headers = headers, body = body, custom = true}, Failure), 0)
end

function web.is_failure(v)
  return getmetatable(v) == Failure
end

function web.error_body(message, details)
  return {success = false, error = message, details = details or {}}
end

-- Encodes body as JSON and adds the content type.
function web.json(status, body, headers)
  local h = {["Content-Type"] = "application/json"}
  for k, v in pairs(headers or {}) do h[k] = v end
  return status, h, json.encode(body)
end

-- A header by its (case-insensitive) name.
function web.header(req, name)
  local headers = req.headers or {}
  local v = headers[name] or headers[name:lower()]
  if v then return v end
  name = name:lower()
  for k, value in pairs(headers) do
    if type(k) == "string" and k:lower() == name then return value end
  end
  return nil
end

-- The bearer token of the request, or nil.
function web.bearer(req)
  local auth = web.header(req, "authorization")
  if type(auth) ~= "string" then return nil end
  local token = auth:match("^%s*[Bb]earer%s+(%S+)%s*$")
  return token
end

local function unescape(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- The query parameters as a table of strings.
function web.query(req)
  local q = req.query
  if type(q) == "table" then return q end
  local out = {}
  local s = type(q) == "string" and q or (req.path or ""):match("%?(.*)$") or ""
  for pair in s:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    out[unescape(k)] = unescape(v)
  end
  return out
end

-- The request body as a JSON object (a table). An empty body reads as {};
-- anything that is not a JSON object is a 400.
function web.body(req)
  local raw = req.body
  if raw == nil or raw:match("^%s*$") then return {} end
  if not raw:match("^%s*{") then
    web.fail(400, "Request body must be a JSON object", "invalid_json")
  end
  local value, err = json.decode(raw)
  if type(value) ~= "table" then
    web.fail(400, "Request body is not valid JSON: " .. tostring(err), "invalid_json")
  end
  return value
end

-- json.null and nil both mean "absent" for optional fields.
function web.present(v)
  return v ~= nil and v ~= json.null
end

local function invalid(field, message)
  web.fail(400, message, "validation_error", {field = field})
end

-- A string field of 1..max characters (min may be given); nil when absent
-- and optional.
function web.text(body, field, opts)
  opts = opts or {}
  local v = body[field]
  if not web.present(v) then
    if opts.required then invalid(field, field .. " is required") end
    return nil
  end
  if type(v) ~= "string" then invalid(field, field .. " must be a string") end
  local len = utf8.len(v)
  if not len then invalid(field, field .. " must be valid UTF-8") end
  local min, max = opts.min or 1, opts.max or 2000
  if opts.trim ~= false and v:match("^%s*$") and min > 0 then
    invalid(field, field .. " must not be empty")
  end
  if len < min or len > max then
    invalid(field, string.format("%s must be %d to %d characters", field, min, max))
  end
  return v
end

-- A number field (opts.integer, opts.min, opts.above, opts.max).
function web.number(body, field, opts)
  opts = opts or {}
  local v = body[field]
  if not web.present(v) then
    if opts.required then invalid(field, field .. " is required") end
    return nil
  end
  if math.type(v) == nil or v ~= v or v == math.huge or v == -math.huge then
    invalid(field, field .. " must be a number")
  end
  if opts.integer then
    if not math.tointeger(v) then invalid(field, field .. " must be an integer") end
    v = math.tointeger(v)
  end
  if opts.above and not (v > opts.above) then invalid(field, field .. " must be greater than " .. opts.above) end
  if opts.min and v < opts.min then invalid(field, field .. " must be at least " .. opts.min) end
  if opts.max and v > opts.max then invalid(field, field .. " must be at most " .. opts.max) end
  return v
end

-- A positive integer query parameter with a default and bounds.
function web.query_int(query, name, default, min, max)
  local s = query[name]
  if s == nil or s == "" then return default end
  local n = math.tointeger(tonumber(s))
  if not n or n < min or (max and n > max) then
    web.fail(400, string.format("%s must be an integer from %d%s", name, min, max and (" to " .. max) or ""),
             "validation_error", {field = name})
  end
  return n
end

-- A decoded JSON value of field encoded again (400 when it cannot be, such
-- as a number too large for JSON, or when it is not UTF-8 text).
function web.reencode(value, field)
  local ok, encoded = pcall(json.encode, value)
  if not ok or not utf8.len(encoded) then
    web.fail(400, field .. " must be plain JSON text", "validation_error", {field = field})
  end
  return encoded
end

-- A number as it reads best in JSON: integral floats become integers.
function web.num(v)
  if v == nil then return nil end
  return math.tointeger(v) or v
end

-- The page/limit of a list request and its pagination block for total rows.
function web.page(req, default_limit)
  local q = web.query(req)
  local page = web.query_int(q, "page", 1, 1)
  local limit = web.query_int(q, "limit", default_limit or 20, 1, 100)
  return page, limit, function(total)
    return {page = page, limit = limit, total = total, totalPages = math.ceil(total / limit)}
  end
end

return web
