-- images.lua - generated images on disk: DATA_DIR/images/<task_id>-N.EXT.
-- Saved before any upload is tried and never deleted here (DESIGN.md rule 3).
local fs, http, crypto = require "fs", require "http", require "crypto"
local settings = require "settings"

local M = {}

M.extensions = {
  ["image/png"] = "png", ["image/jpeg"] = "jpg", ["image/jpg"] = "jpg", ["image/webp"] = "webp",
  ["image/gif"] = "gif",
}
M.content_types = {png = "image/png", jpg = "image/jpeg", webp = "image/webp", gif = "image/gif"}

function M.dir()
  return settings.DATA_DIR .. "/images"
end

-- The path of image `index` of a task, with extension ext.
function M.path(task_id, index, ext)
  return string.format("%s/%s-%d.%s", M.dir(), fs.safe_name(task_id), index, ext)
end

-- Splits a data URL into its MIME type and decoded bytes, or nil, why.
-- Pure: used by the tests.
function M.decode_data_url(url)
  local mime, data = url:match("^data:([%w%.%+%-]+/[%w%.%+%-]+)[^,]*;base64,(.*)$")
  if not mime then return nil, "not a base64 data URL" end
  local bytes = crypto.base64_decode((data:gsub("%s", "")))
  if not bytes or #bytes == 0 then return nil, "the data URL's base64 does not decode" end
  return mime:lower(), bytes
end

-- The images already saved for a task (by an attempt that crashed before
-- recording them), in order.
function M.saved(task_id)
  local paths = {}
  for index = 1, 100 do
    local found
    for ext in pairs(M.content_types) do
      local path = M.path(task_id, index, ext)
      if fs.exists(path) then found = path break end
    end
    if not found then break end
    paths[#paths + 1] = found
  end
  return paths
end

-- Saves every image URL (data URLs decoded, http(s) URLs downloaded) for a
-- task. Returns the list of paths, or nil and why (nothing is half-written:
-- each file is written atomically and made durable).
function M.save(task_id, urls)
  local dir = M.dir()
  local ok, err = fs.mkdir(dir)
  if not ok and not fs.exists(dir) then return nil, "cannot create " .. dir .. ": " .. tostring(err) end
  local paths = {}
  for i, url in ipairs(urls) do
    if url:sub(1, 5) == "data:" then
      local mime, bytes = M.decode_data_url(url)
      if not mime then return nil, bytes end
      local ext = M.extensions[mime]
      if not ext then return nil, "the model returned an image of unknown type " .. mime end
      local path = M.path(task_id, i, ext)
      local wrote, werr = fs.write(path, bytes)
      if not wrote then return nil, "cannot write " .. path .. ": " .. tostring(werr) end
      paths[#paths + 1] = path
    elseif url:match("^https?://") then
      local part = M.path(task_id, i, "part")
      local res, derr = http.request{method = "GET", url = url, output = part, timeout = settings.MODEL_TIMEOUT_MS,
                                     max_size = settings.IMAGE_DOWNLOAD_MAX_BYTES}
      if not res or res.status ~= 200 then
        fs.remove(part)
        return nil, "cannot download the image: " .. (res and ("HTTP " .. res.status) or tostring(derr))
      end
      local mime = (res.headers["content-type"] or ""):match("^%s*([^;%s]+)") or ""
      local ext = M.extensions[mime:lower()] or url:match("%.(%w+)$") or "png"
      if not M.content_types[ext] then ext = "png" end
      local path = M.path(task_id, i, ext)
      local data = fs.read(part)
      local wrote, werr = data and fs.write(path, data)
      fs.remove(part)
      if not wrote then return nil, "cannot keep the image: " .. tostring(werr) end
      paths[#paths + 1] = path
    else
      return nil, "the model returned an image URL of an unknown kind"
    end
  end
  return paths
end

-- The content type of a saved image, from its extension.
function M.content_type(path)
  return M.content_types[path:match("%.(%w+)$") or ""] or "application/octet-stream"
end

return M
