-- sandbox/listings.lua - the services sellers list on the marketplace.
-- A listing is created from `name` and shown with it as `title`.
local crypto = require "crypto"
local json = require "json"
local store = require "store"
local time = require "time"
local web = require "sandbox.web"
local agents = require "sandbox.agents"

local listings = {}

-- Words that make the marketplace refuse a listing as a content policy
-- violation (422), so a seller can rehearse that answer.
listings.refused_words = {"malware", "counterfeit", "explicit", "weapon"}

function listings.get(id)
  return store.row("SELECT * FROM listings WHERE id = ?", id)
end

function listings.view(listing)
  local seller = agents.get(listing.seller_id)
  local tags = json.decode(listing.tags) or {}
  return {
    id = listing.id, title = listing.title, description = listing.description,
    price = web.num(listing.price), status = listing.status,
    inventory = listing.inventory or json.null, tags = json.array(tags),
    category = listing.category or json.null, seller_id = listing.seller_id,
    seller = seller and {id = seller.id, name = seller.name, is_online = agents.is_online(seller)} or json.null,
    created_at = listing.created_at, updated_at = listing.updated_at,
  }
end

local function check_policy(...)
  for _, text in ipairs({...}) do
    local lower = text:lower()
    for _, word in ipairs(listings.refused_words) do
      if lower:find("%f[%a]" .. word .. "%f[%A]") then
        web.answer(422, nil, {success = false, error = {
          code = "content_policy_violation",
          message = "The listing was refused by the content policy",
          categories = json.array({word}),
        }})
      end
    end
  end
end

local function read_tags(body)
  local tags = body.tags
  if not web.present(tags) then return {} end
  if type(tags) ~= "table" or (next(tags) ~= nil and #tags == 0) or #tags > 20 then
    web.fail(400, "tags must be an array of at most 20 strings", "validation_error", {field = "tags"})
  end
  for i = 1, #tags do
    if type(tags[i]) ~= "string" or #tags[i] == 0 or #tags[i] > 50 then
      web.fail(400, "each tag must be a string of 1 to 50 characters", "validation_error", {field = "tags"})
    end
  end
  return tags
end

local function read_status(body)
  local status = body.status
  if not web.present(status) then return nil end
  if status ~= "active" and status ~= "inactive" then
    web.fail(400, "status must be \"active\" or \"inactive\"", "validation_error", {field = "status"})
  end
  return status
end

local function create(req)
  local seller = agents.authenticate(req)
  local body = web.body(req)
  local name = web.text(body, "name", {required = true, max = 200})
  local description = web.text(body, "description", {required = true, max = 2000})
  local price = web.number(body, "price", {required = true, above = 0, max = 1e9})
  local tags = read_tags(body)
  local category = web.text(body, "category", {max = 100})
  local inventory = web.number(body, "inventory", {integer = true, min = 0, max = 1e9})
  local status = read_status(body) or "active"
  check_policy(name, description)
  local id, now = crypto.uuid(), time.iso()
  store.exec("INSERT INTO listings (id, seller_id, title, description, price, status, inventory, tags, "
             .. "category, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
             id, seller.id, name, description, price, status, inventory, json.encode(json.array(tags)),
             category, now, now)
  return web.json(201, {listing = listings.view(listings.get(id))})
end

local function update(req)
  local seller = agents.authenticate(req)
  local listing = listings.get(req.params.id)
  if not listing then web.fail(404, "Listing not found", "not_found") end
  if listing.seller_id ~= seller.id then web.fail(403, "Only the listing's seller may change it", "forbidden") end
  local body = web.body(req)
  local fields = {
    title = web.text(body, "name", {max = 200}),
    description = web.text(body, "description", {max = 2000}),
    price = web.number(body, "price", {above = 0, max = 1e9}),
    category = web.text(body, "category", {max = 100}),
    inventory = web.number(body, "inventory", {integer = true, min = 0, max = 1e9}),
    status = read_status(body),
  }
  if web.present(body.tags) then fields.tags = json.encode(json.array(read_tags(body))) end
  check_policy(fields.title or "", fields.description or "")
  local sets, args = {}, {}
  for column, value in pairs(fields) do
    sets[#sets + 1] = column .. " = ?"
    args[#args + 1] = value
  end
  sets[#sets + 1] = "updated_at = ?"
  args[#args + 1] = time.iso()
  args[#args + 1] = listing.id
  store.exec("UPDATE listings SET " .. table.concat(sets, ", ") .. " WHERE id = ?", table.unpack(args))
  return web.json(200, {listing = listings.view(listings.get(listing.id))})
end

local mine

local function show(req)
  if req.params.id == "my" then return mine(req) end
  agents.authenticate(req)
  local listing = listings.get(req.params.id)
  if not listing then web.fail(404, "Listing not found", "not_found") end
  return web.json(200, {listing = listings.view(listing)})
end

local function page_of(req, where, ...)
  local page, limit, pagination = web.page(req, 20)
  local total = store.row("SELECT COUNT(*) AS n FROM listings WHERE " .. where, ...).n
  local args = table.pack(...)
  args[args.n + 1], args[args.n + 2] = limit, (page - 1) * limit
  local rows = store.query("SELECT * FROM listings WHERE " .. where .. " ORDER BY rowid DESC LIMIT ? OFFSET ?",
                           table.unpack(args, 1, args.n + 2))
  local items = json.array()
  for _, row in ipairs(rows) do items[#items + 1] = listings.view(row) end
  return web.json(200, {items = items, pagination = pagination(total)})
end

local function list(req)
  agents.authenticate(req)
  local status = web.query(req).status or "active"
  if status == "all" then return page_of(req, "1 = 1") end
  if status ~= "active" and status ~= "inactive" then
    web.fail(400, "status must be active, inactive or all", "validation_error", {field = "status"})
  end
  return page_of(req, "status = ?", status)
end

function mine(req)
  local seller = agents.authenticate(req)
  local status = web.query(req).status
  if status and status ~= "" and status ~= "all" then
    return page_of(req, "seller_id = ? AND status = ?", seller.id, status)
  end
  return page_of(req, "seller_id = ?", seller.id)
end

listings.routes = {
  {"POST", "/api/listings", create},
  {"GET", "/api/listings", list},
  {"GET", "/api/listings/my", mine},
  {"GET", "/api/listings/{id}", show},
  {"PATCH", "/api/listings/{id}", update},
}

return listings
