-- dotenv.lua - writes a setting into the .env file the commands read
-- (`skudemo listing create` records SERVICE_SKU_ID, `skudemo webhook set`
-- WEBHOOK_SECRET and WEBHOOK_PUBLIC_BASE_URL). The line of that setting is
-- replaced in place, or added at the end; every other line stays as it is.
local fs, config = require "fs", require "config"

local D = {}

-- A value as dotenv writes it: bare when it is plain, else double-quoted.
function D.quote(value)
  value = tostring(value)
  if value:match("^[%w%._/:@%-~+]*$") then return value end
  return '"' .. value:gsub('[\\"]', "\\%0"):gsub("\n", "\\n") .. '"'
end

-- The text of a .env file with name set to value. Pure: used by the tests.
function D.set_text(text, name, value)
  local line = name .. "=" .. D.quote(value)
  local out, done = {}, false
  for l in (text or ""):gmatch("([^\n]*)\n?") do
    if not done and (l:match("^%s*" .. name .. "%s*=") or l:match("^%s*export%s+" .. name .. "%s*=")) then
      out[#out + 1] = line
      done = true
    else
      out[#out + 1] = l
    end
  end
  while #out > 0 and out[#out] == "" do out[#out] = nil end
  if not done then out[#out + 1] = line end
  return table.concat(out, "\n") .. "\n"
end

-- Sets name=value in the .env file in use (created when missing). Also
-- sets it for the rest of this command when config allows. Returns the
-- path, or nil and why.
function D.set(name, value)
  local path = config.env_file()
  local text = fs.read(path)
  local ok, err = fs.write(path, D.set_text(text or "", name, value))
  if not ok then return nil, "cannot write " .. path .. ": " .. tostring(err) end
  pcall(config.set, name, value)
  return path
end

return D
