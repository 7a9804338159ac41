-- The sandbox's attachments: multipart round trip byte for byte, who may
-- upload when, CONTRACT.md's limits, the list and the download.
local S = require "sandbox_helper"
local t = require "harness"
local http = require "http"

local sb = S.start{args = {"--max-file-bytes", "200000"}}

-- Every byte value, several times over: survives no text mangling.
local function binary(n)
  local parts = {}
  for i = 0, n - 1 do parts[#parts + 1] = string.char((i * 7 + (i // 256)) % 256) end
  return table.concat(parts)
end

local function upload(client, order_id, filename, data, description, content_type)
  local parts = {{name = "file", data = data, filename = filename, content_type = content_type or "image/png"}}
  if description then parts[#parts + 1] = {name = "description", value = description} end
  return client:request("POST", "/orders/" .. order_id .. "/attachments", {multipart = parts})
end

t.test("a seller's upload round-trips byte for byte", function()
  local order = sb:order("in_progress")
  local data = binary(70000)
  local status, f = upload(sb.seller, order.id, "delivery.png", data, "Delivery image")
  t.eq(status, 201)
  t.eq(f.filename, "delivery.png")
  t.eq(f.content_type, "image/png")
  t.eq(f.size, #data)
  t.eq(f.description, "Delivery image")
  t.eq(f.file_type, "seller_delivery")
  t.eq(type(f.file_id), "string")
  t.match(f.uploaded_at, "Z$")
  t.match(f.download_url, "^http://127%.0%.0%.1:%d+/api/orders/")
  local res = assert(http.request{method = "GET", url = f.download_url, timeout = 5000})
  t.eq(res.status, 200)
  t.eq(#res.body, #data)
  t.ok(res.body == data, "the download is the upload, byte for byte")
  local _, _, authed = sb.buyer:request("GET", "/orders/" .. order.id .. "/attachments/" .. f.file_id)
  t.ok(authed.body == data, "the download with the buyer's key")
  local kept = assert(io.popen("find '" .. sb.dir .. "/attachments' -type f -name '" .. f.file_id .. "*'"))
  local path = kept:read("l")
  kept:close()
  t.ok(path, "kept under the data directory's attachments/")
  local fh = assert(io.open(path, "rb"))
  t.ok(fh:read("a") == data, "on disk byte for byte")
  fh:close()
end)

t.test("the list: files, total_size, file_count", function()
  local order = sb:order("in_progress")
  local _, _, res = sb.buyer:request("GET", "/orders/" .. order.id .. "/attachments")
  t.match(res.body, '"files":%[%]')
  upload(sb.seller, order.id, "a.png", "aaaa")
  upload(sb.seller, order.id, "b.txt", "bbbbbb", nil, "text/plain")
  local status, list = sb.buyer:request("GET", "/orders/" .. order.id .. "/attachments")
  t.eq(status, 200)
  t.eq(list.file_count, 2)
  t.eq(list.total_size, 10)
  t.eq(list.files[1].filename, "a.png")
  t.eq(list.files[2].content_type, "text/plain")
end)

t.test("who may upload when: seller only in_progress or pending_confirmation", function()
  local order = sb:order()
  local status, body = upload(sb.seller, order.id, "early.png", "x")
  S.is_error(status, body, 409)
  status, body = upload(sb.buyer, order.id, "brief.pdf", "%PDF", nil, "application/pdf")
  t.eq(status, 201)
  t.eq(body.file_type, "buyer_attachment")
  local stranger = sb:stranger()
  status, body = upload(stranger, order.id, "x.png", "x")
  S.is_error(status, body, 403)
  status, body = stranger:request("GET", "/orders/" .. order.id .. "/attachments")
  S.is_error(status, body, 403)
  order = sb:order("pending_confirmation")
  status = upload(sb.seller, order.id, "late.png", "x")
  t.eq(status, 201)
  sb.buyer:confirm(order.id)
  status, body = upload(sb.seller, order.id, "after.png", "x")
  S.is_error(status, body, 409)
end)

t.test("limits: refused extensions, a missing file, the size cap, 10 files", function()
  local order = sb:order("in_progress")
  for _, name in ipairs({"run.exe", "x.BAT", "a.sh", "lib.dll", "s.ps1", "c.cmd", "v.vbs", "app.js"}) do
    local status, body = upload(sb.seller, order.id, name, "x", nil, "application/octet-stream")
    S.is_error(status, body, 400, "file_type_not_allowed")
  end
  local status, body = sb.seller:request("POST", "/orders/" .. order.id .. "/attachments",
                                         {multipart = {{name = "description", value = "no file"}}})
  S.is_error(status, body, 400)
  status, body = sb.seller:request("POST", "/orders/" .. order.id .. "/attachments", {note = "json"})
  S.is_error(status, body, 400)
  status, body = upload(sb.seller, order.id, "big.png", string.rep("x", 200001))
  S.is_error(status, body, 413)
  for i = 1, 10 do
    status = upload(sb.seller, order.id, "f" .. i .. ".png", "x")
    t.eq(status, 201, "file " .. i)
  end
  status, body = upload(sb.seller, order.id, "f11.png", "x")
  S.is_error(status, body, 400, "file_limit_exceeded")
end)

t.test("the download needs the token or a party's key", function()
  local order = sb:order("in_progress")
  local _, f = upload(sb.seller, order.id, "d.png", "secret picture")
  local bare = f.download_url:gsub("%?.*$", "")
  local res = assert(http.request{method = "GET", url = bare, timeout = 5000})
  t.eq(res.status, 401)
  res = assert(http.request{method = "GET", url = bare .. "?token=wrong", timeout = 5000})
  t.eq(res.status, 401)
  local status = sb:stranger():request("GET", "/orders/" .. order.id .. "/attachments/" .. f.file_id)
  t.eq(status, 403)
  status = sb.seller:request("GET", "/orders/" .. order.id .. "/attachments/no-such-file")
  t.eq(status, 404)
end)

sb:stop()
return t.done()
