-- sandbox/attachments.lua - files on an order: multipart upload kept on
-- disk under the sandbox's data directory, the list, and the download.
-- Limits from CONTRACT.md: 10 files an order, a size cap, no executables or
-- scripts; a seller uploads while the order is in_progress or
-- pending_confirmation and its files are `seller_delivery`.
local config = require "config"
local crypto = require "crypto"
local fs = require "fs"
local json = require "json"
local server = require "server"
local store = require "store"
local time = require "time"
local web = require "sandbox.web"
local agents = require "sandbox.agents"
local orders = require "sandbox.orders"

local attachments = {MAX_FILES = 10}

attachments.refused_extensions = {
  exe = true, bat = true, sh = true, dll = true, ps1 = true, cmd = true, vbs = true, js = true,
}

local seller_upload_statuses = {in_progress = true, pending_confirmation = true}
local buyer_upload_statuses = {pending_accept = true, in_progress = true, pending_confirmation = true,
                               in_dispute = true}

local content_types = {
  png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg", webp = "image/webp", gif = "image/gif",
  pdf = "application/pdf", txt = "text/plain", json = "application/json", zip = "application/zip",
}

-- The largest file accepted, in bytes.
function attachments.max_bytes()
  return config.int("SANDBOX_MAX_FILE_BYTES", 100 * 1024 * 1024)
end

local function dir_for(order_id)
  return config.get("SANDBOX_DATA_DIR", "./data/sandbox") .. "/attachments/" .. fs.safe_name(order_id)
end

local function extension(filename)
  return (filename:match("%.([%w]+)$") or ""):lower()
end

-- The uploaded part named `name` from the server's parsed multipart form:
-- {filename, content_type, data | path, size}, or nil.
local function uploaded_part(req, name)
  local files = req.files
  if type(files) ~= "table" then return nil end
  local part = files[name]
  if part == nil then
    for _, f in ipairs(files) do
      if f.name == name or f.field == name then part = f break end
    end
  end
  if type(part) == "table" and part[1] and not part.filename then part = part[1] end
  return type(part) == "table" and part or nil
end

local function form_value(req, name)
  local form = req.form
  if type(form) ~= "table" then return nil end
  local v = form[name]
  if type(v) == "table" then v = v[1] or v.value end
  return v
end

local function view(file, host)
  return {
    file_id = file.id, filename = file.filename, content_type = file.content_type,
    size = file.size, uploaded_at = file.uploaded_at,
    download_url = string.format("http://%s/api/orders/%s/attachments/%s?token=%s",
                                 host or "127.0.0.1", file.order_id, file.id, file.token),
    description = file.description or json.null, file_type = file.file_type,
    uploaded_by = file.uploader_id,
  }
end

local function upload(req)
  local agent = agents.authenticate(req)
  local order = orders.for_party(req, agent)
  local is_seller = agent.id == order.seller_id
  local allowed = is_seller and seller_upload_statuses or buyer_upload_statuses
  if not allowed[order.status] then
    web.fail(409, string.format("Cannot upload to an order that is %s", order.status),
             "invalid_state_transition", {current_status = order.status, action = "upload"})
  end
  local part = uploaded_part(req, "file")
  if not part then
    web.fail(400, "A multipart field named \"file\" is required", "validation_error", {field = "file"})
  end
  local filename = tostring(part.filename or "")
  if filename == "" or #filename > 255 or not utf8.len(filename) then
    web.fail(400, "The file needs a name of 1 to 255 characters", "validation_error", {field = "file"})
  end
  if attachments.refused_extensions[extension(filename)] then
    web.fail(400, "Executable and script files are not allowed", "file_type_not_allowed",
             {field = "file", extension = extension(filename)})
  end
  local data = part.data
  if data == nil and part.path then data = fs.read(part.path) end
  if type(data) ~= "string" then web.fail(400, "The file could not be read", "validation_error", {field = "file"}) end
  if #data > attachments.max_bytes() then
    web.fail(413, "The file is larger than the limit", "file_too_large", {max_bytes = attachments.max_bytes()})
  end
  local description = form_value(req, "description")
  if description ~= nil and (type(description) ~= "string" or #description > 1000 or not utf8.len(description)) then
    web.fail(400, "description must be UTF-8 text of at most 1000 bytes", "validation_error", {field = "description"})
  end
  local content_type = part.content_type
  if type(content_type) ~= "string" or content_type == "" or content_type == "application/octet-stream" then
    content_type = content_types[extension(filename)] or content_type or "application/octet-stream"
  end
  local id = crypto.uuid()
  local dir = dir_for(order.id)
  local path = dir .. "/" .. id .. "-" .. fs.safe_name(filename)
  assert(fs.mkdir(dir))
  assert(fs.write(path, data))
  local inserted = store.transaction(function()
    local count = store.row("SELECT COUNT(*) AS n FROM attachments WHERE order_id = ?", order.id).n
    if count >= attachments.MAX_FILES then return false end
    store.exec("INSERT INTO attachments (id, order_id, uploader_id, filename, content_type, size, path, "
               .. "description, file_type, token, uploaded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               id, order.id, agent.id, filename, content_type, #data, path, description,
               is_seller and "seller_delivery" or "buyer_attachment", crypto.random_hex(16), time.iso())
    return true
  end)
  if not inserted then
    fs.remove(path)
    web.fail(400, string.format("An order holds at most %d files", attachments.MAX_FILES), "file_limit_exceeded",
             {max_files = attachments.MAX_FILES})
  end
  local file = store.row("SELECT * FROM attachments WHERE id = ?", id)
  return web.json(201, view(file, web.header(req, "host")))
end

local function list(req)
  local agent = agents.authenticate(req)
  local order = orders.for_party(req, agent)
  local files, total = json.array(), 0
  for _, row in ipairs(store.query("SELECT * FROM attachments WHERE order_id = ? ORDER BY rowid", order.id)) do
    files[#files + 1] = view(row, web.header(req, "host"))
    total = total + row.size
  end
  return web.json(200, {files = files, total_size = total, file_count = #files})
end

-- The download answers the order's parties (Bearer key) or anyone holding
-- the file's download_url (its token), like a signed storage URL.
local function download(req)
  local file = store.row("SELECT * FROM attachments WHERE id = ? AND order_id = ?",
                         req.params.file_id, req.params.id)
  local token = web.query(req).token
  if file and token and crypto.equal(token, file.token) then
    -- signed URL: no key needed
  else
    local agent = agents.authenticate(req)
    orders.for_party(req, agent)
    if not file then web.fail(404, "File not found", "not_found") end
  end
  local headers = {
    ["Content-Type"] = file.content_type,
    ["Content-Disposition"] = string.format("attachment; filename=%q", fs.safe_name(file.filename)),
  }
  return 200, headers, server.file(file.path)
end

attachments.routes = {
  {"POST", "/api/orders/{id}/attachments", upload},
  {"GET", "/api/orders/{id}/attachments", list},
  {"GET", "/api/orders/{id}/attachments/{file_id}", download},
}

return attachments
