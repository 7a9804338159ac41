-- skudemo listing - the guide's Module 1: publish the SKU and check it.
--   skudemo listing create [FILE.json] [--write-env | --no-env]
--   skudemo listing list [--all]
local market, settings, dotenv, json, fs, config =
  require "market", require "settings", require "dotenv", require "json", require "fs", require "config"

local usage = [[
usage: skudemo listing create [FILE.json] [--write-env | --no-env]
       skudemo listing list [--all]

create  publishes a listing (default: the guide's template, scripts/listing.json)
        and prints listing.id, name, status and price; offers to write
        SERVICE_SKU_ID into .env (--write-env: without asking; --no-env: never)
list    the active listings (--all: every status), ours marked]]

local function fail(msg, code)
  io.stderr:write("skudemo listing: ", msg, "\n")
  return code or 1
end

local function template_path()
  return config.get("SKUDEMO_SCRIPTS_DIR_RESOLVED", "scripts") .. "/listing.json"
end

-- Checks a listing as CONTRACT.md states the platform does.
local function check(listing)
  if type(listing) ~= "table" then return "the file must hold a JSON object" end
  if type(listing.name) ~= "string" or #listing.name < 1 or #listing.name > 200 then
    return "name must be 1 to 200 characters"
  end
  if type(listing.description) ~= "string" or #listing.description < 1 or #listing.description > 2000 then
    return "description must be 1 to 2000 characters"
  end
  if type(listing.price) ~= "number" or listing.price <= 0 then return "price must be a number above 0" end
end

local function interactive()
  return os.execute("[ -t 0 ] && [ -t 1 ]") == true
end

local function create(args)
  local file, mode
  for _, a in ipairs(args) do
    if a == "--write-env" or a == "--yes" then mode = "write"
    elseif a == "--no-env" then mode = "skip"
    elseif a:sub(1, 2) == "--" then return fail("unknown option " .. a .. "\n" .. usage, 2)
    else file = a end
  end
  file = file or template_path()
  local text, err = fs.read(file)
  if not text then return fail("cannot read " .. file .. ": " .. tostring(err)) end
  local listing, jerr = json.decode(text)
  if listing == nil then return fail(file .. " is not valid JSON: " .. tostring(jerr)) end
  local problem = check(listing)
  if problem then return fail(file .. ": " .. problem) end
  if type(listing.tags) == "table" then json.array(listing.tags) end

  local body, failure = market.create_listing(listing)
  if not body then
    if failure.status == 401 then return fail("401 Unauthorized: check the api_key in " .. settings.CREDENTIALS_FILE) end
    if failure.status == 422 then
      return fail("the platform refused the listing (" .. failure.message .. "): reword the name or description")
    end
    return fail("POST /listings failed: " .. failure.message)
  end
  local created = body.listing or body
  print("listing.id      " .. tostring(created.id))
  print("listing.name    " .. tostring(created.title or created.name))
  print("listing.status  " .. tostring(created.status))
  print("listing.price   " .. tostring(created.price))
  if created.status ~= "active" then
    print("note: the listing is not active; check its inventory and the platform's status")
  end

  if mode == nil then
    if interactive() then
      io.write("Write SERVICE_SKU_ID=" .. created.id .. " into " .. config.env_file() .. "? [Y/n] ")
      io.flush()
      local answer = (io.read("l") or ""):lower()
      mode = (answer == "" or answer:sub(1, 1) == "y") and "write" or "skip"
    else
      print("to use it: skudemo listing create --write-env, or set SERVICE_SKU_ID=" .. created.id .. " in .env")
    end
  end
  if mode == "write" then
    local path, werr = dotenv.set("SERVICE_SKU_ID", tostring(created.id))
    if not path then return fail(werr) end
    print("SERVICE_SKU_ID written to " .. path)
  end
  return 0
end

local function list(args)
  local all = args[1] == "--all"
  if args[1] and not all then return fail("unknown option " .. args[1] .. "\n" .. usage, 2) end
  local agent_id = market.agent_id()
  local sku = settings.SERVICE_SKU_ID
  local rows = {}
  local page = 1
  repeat
    local query = {page = page, limit = 100}
    if not all then query.status = "active" end
    local body, failure = market.listings(query)
    if not body then return fail("GET /listings failed: " .. failure.message) end
    for _, l in ipairs(body.items or {}) do rows[#rows + 1] = l end
    local pages = body.pagination and tonumber(body.pagination.totalPages) or 1
    page = page + 1
  until page > pages or page > 20
  if #rows == 0 then
    print(all and "no listings" or "no active listings")
    return 0
  end
  local ours = 0
  print(string.format("%-38s %-8s %8s  %s", "id", "status", "price", "title"))
  for _, l in ipairs(rows) do
    local mark = ""
    if sku ~= "" and tostring(l.id) == sku then mark = "  <- ours (SERVICE_SKU_ID)"
    elseif agent_id and tostring(l.seller_id) == agent_id then mark = "  <- ours" end
    if mark ~= "" then ours = ours + 1 end
    print(string.format("%-38s %-8s %8s  %s%s", tostring(l.id), tostring(l.status), tostring(l.price),
                        tostring(l.title or l.name), mark))
  end
  print(string.format("%d listing(s), %d of them ours", #rows, ours))
  if sku ~= "" then
    local found = false
    for _, l in ipairs(rows) do if tostring(l.id) == sku then found = true end end
    if not found and not all then print("note: SERVICE_SKU_ID " .. sku .. " is not among the active listings") end
  end
  return 0
end

local command = arg[1]
local rest = {table.unpack(arg, 2)}
if command == "create" then return create(rest) end
if command == "list" then return list(rest) end
if command == nil or command == "--help" or command == "-h" then
  print(usage)
  return command and 0 or 2
end
return fail("unknown command '" .. command .. "'\n" .. usage, 2)
