-- cli.lua - what the inspection commands share: options, the store, and
-- aligned tables (or JSON with --json).
local json, store, fs, time = require "json", require "store", require "fs", require "time"
local settings = require "settings"

local C = {}

-- Parses argv into flags (--name value, --flag) and positional arguments.
-- spec: {name = "value"|"flag"}. Unknown options raise a usage error.
function C.args(argv, spec)
  local opts, rest, i = {}, {}, 1
  while i <= #argv do
    local a = argv[i]
    local name = a:match("^%-%-([%w%-]+)$")
    if name then
      local kind = spec[name]
      if not kind then C.fail("unknown option --" .. name, 2) end
      if kind == "flag" then opts[name] = true
      else
        i = i + 1
        if argv[i] == nil then C.fail("--" .. name .. " needs a value", 2) end
        opts[name] = argv[i]
      end
    else
      rest[#rest + 1] = a
    end
    i = i + 1
  end
  return opts, rest
end

-- Prints a one-line reason on stderr and exits with status code.
function C.fail(msg, code)
  io.stderr:write("skudemo: ", msg, "\n")
  os.exit(code or 1)
end

-- Opens the server's store (read and write; SQLite shares it safely).
function C.open_store()
  local path = settings.value("DATA_DIR") .. "/skudemo.db"
  if not fs.exists(path) then
    C.fail("no store at " .. path .. " (is DATA_DIR right? the server creates it at start)")
  end
  store.open(path)
  return path
end

-- "2026-12-03 12:00:00" from wall-clock ms (UTC), or "".
function C.when(ms)
  if not ms then return "" end
  return time.iso(ms):sub(1, 19):gsub("T", " ")
end

-- Prints rows as an aligned table with the given columns:
-- {{"header", function(row) return text end} or {"header", "field"}}.
function C.table(rows, columns)
  local cells, widths = {}, {}
  for c, col in ipairs(columns) do widths[c] = #col[1] end
  for r, row in ipairs(rows) do
    cells[r] = {}
    for c, col in ipairs(columns) do
      local v = type(col[2]) == "function" and col[2](row) or row[col[2]]
      v = tostring(v == nil and "" or v):gsub("%s+", " ")
      if #v > 60 and c < #columns then v = v:sub(1, 57) .. "..." end
      cells[r][c] = v
      widths[c] = math.max(widths[c], #v)
    end
  end
  local function line(values)
    local parts = {}
    for c, v in ipairs(values) do
      parts[c] = c < #values and v .. string.rep(" ", widths[c] - #v) or v
    end
    print((table.concat(parts, "  "):gsub("%s+$", "")))
  end
  local headers = {}
  for c, col in ipairs(columns) do headers[c] = col[1]:upper() end
  line(headers)
  for _, r in ipairs(cells) do line(r) end
  if #rows == 0 then print("(none)") end
end

-- Prints v as JSON (for scripts: --json).
function C.json(v)
  print(json.encode(v))
end

return C
