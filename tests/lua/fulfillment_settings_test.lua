-- lua/settings.lua and .env.example say the same: every setting, its
-- default and its comment.
package.path = "tests/lib/?.lua;" .. package.path
local t = require "harness"
local settings = require "settings"

local example = assert(io.open(".env.example")):read("a")
local lines = {}
for line in example:gmatch("[^\n]*") do lines[#lines + 1] = line end

-- The line "KEY=value" or "# KEY=value" and the comment line above it.
local function find(name)
  for i, line in ipairs(lines) do
    local value = line:match("^#? ?" .. name .. "=(.*)$")
    if value then return value, lines[i - 1] end
  end
end

t.test("every setting is in .env.example with its default and comment", function()
  for _, s in ipairs(settings.list) do
    local name, default, _, comment = s[1], s[2], s[3], s[4]
    local value, above = find(name)
    t.ok(value, name .. " in .env.example")
    if default ~= "" then
      t.eq(value, tostring(default), name .. " default")
    end
    t.eq(above, "# " .. comment, name .. " comment")
  end
end)

t.test("the guide's settings come first", function()
  local first = {}
  for line in example:gmatch("[^\n]+") do
    local name = line:match("^([A-Z_]+)=")
    if name then first[#first + 1] = name end
  end
  t.same({table.unpack(first, 1, 10)}, {"AGENT_MARKET_BASE_URL", "CREDENTIALS_FILE", "SERVICE_SKU_ID", "ADMIN_SECRET",
    "WEBHOOK_PATH", "WEBHOOK_PUBLIC_BASE_URL", "APP_PORT", "OPENROUTER_API_KEY", "OPENROUTER_BASE_URL", "DATA_DIR"})
end)

-- Every setting name read anywhere in the project (C, lua/, scripts/, bench/).
local function names_read()
  local names = {}
  local f = assert(io.popen([[grep -rhoE 'config(_|\.)(get|int|path|bool)\("[A-Z_0-9]+"' src lua scripts bench 2>/dev/null]]))
  for name in f:read("a"):gmatch('"([A-Z_0-9]+)"') do names[name] = true end
  f:close()
  return names
end

t.test(".env.example lists every setting the project reads", function()
  local internal = {SKUDEMO_LUA_DIR_RESOLVED = true, SKUDEMO_SCRIPTS_DIR_RESOLVED = true,
                    SKUDEMO_WEB_DIR_RESOLVED = true, SANDBOX_ = true}
  local count = 0
  for name in pairs(names_read()) do
    count = count + 1
    if not internal[name] then t.ok(find(name), name .. " in .env.example") end
  end
  t.ok(count > 30, "the search found the settings")
end)

t.test("settings are typed and defaulted", function()
  t.eq(math.type(settings.APP_PORT), "integer")
  t.eq(type(settings.WEBHOOK_PATH), "string")
  t.eq(settings.nonexistent, nil)
  t.raises(function() settings.value("NOPE") end, "unknown setting")
end)

return t.done()
