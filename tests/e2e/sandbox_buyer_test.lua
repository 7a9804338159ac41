-- The buyer's commands of `skudemo sandbox` (buy, message, status,
-- confirm, cancel, dispute) run as real processes against a running
-- sandbox, with this test playing the seller.
local S = require "sandbox_helper"
local t = require "harness"
local json = require "json"
local proc = require "proc"

local sb = S.start()

-- Runs `skudemo sandbox --data DIR ARGS`; returns the exit code and output.
local function cli(...)
  local words = {proc.quote(proc.bin()), "sandbox", "--data", proc.quote(sb.dir)}
  for _, a in ipairs({...}) do words[#words + 1] = proc.quote(a) end
  local p = assert(io.popen(table.concat(words, " ") .. " 2>&1; echo \"exit=$?\""))
  local out = p:read("a")
  p:close()
  local code = tonumber(out:match("exit=(%d+)%s*$"))
  return code, out:gsub("exit=%d+%s*$", "")
end

t.test("--help, and an unknown command is a usage error", function()
  local code, out = cli("--help")
  t.eq(code, 0)
  t.match(out, "buy %[%-%-listing ID%] %-%-say TEXT")
  code = cli("shout")
  t.eq(code, 2)
end)

t.test("buy: places the order, waits for the accept, sends the requirement", function()
  local listing = sb:listing()
  local buyer = proc.skudemo({"sandbox", "buy", "--listing", listing.id, "--say", "a blue tech cover",
                              "--data", sb.dir, "--timeout-ms", "10000"}, {log = sb.dir .. "/buy.log"})
  local order = t.eventually(function()
    local _, body = sb.seller:request("GET", "/orders?role=seller&status=pending_accept")
    return body.orders[1]
  end, 5000, "the order")
  t.eq(order.listing_id, listing.id)
  sb.seller:expect(200, "POST", "/orders/" .. order.id .. "/accept", {})
  t.ok(buyer:wait(10000), "the buy command ends")
  t.match(buyer:output(), "sent the requirement: a blue tech cover")
  local messages = sb.seller:expect(200, "GET", "/orders/" .. order.id .. "/messages").messages
  t.eq(#messages, 1)
  t.eq(messages[1].content, "a blue tech cover")
  t.eq(messages[1].sender_id, sb.info.buyer.agent_id)
end)

t.test("message, status, confirm", function()
  local order = sb:order("in_progress")
  local code, out = cli("message", order.id, "make it bigger")
  t.eq(code, 0, out)
  sb.seller:request("POST", "/orders/" .. order.id .. "/attachments",
                    {multipart = {{name = "file", data = "PNG", filename = "cover.png", content_type = "image/png"}}})
  sb.seller:expect(200, "POST", "/orders/" .. order.id .. "/complete", {delivery_note = "your cover"})
  code, out = cli("status", order.id)
  t.eq(code, 0, out)
  t.match(out, "order " .. order.id:gsub("%-", "%%-") .. ": pending_confirmation")
  t.match(out, "make it bigger")
  t.match(out, "delivery note: your cover")
  t.match(out, "seller_delivery cover.png 3 bytes")
  code, out = cli("status", order.id, "--json")
  t.eq(code, 0)
  local s = json.decode(out)
  t.eq(s.order.status, "pending_confirmation")
  t.eq(s.attachments.file_count, 1)
  code, out = cli("confirm", order.id)
  t.eq(code, 0, out)
  t.match(out, "completed")
  code, out = cli("confirm", order.id)
  t.eq(code, 1, "confirming twice fails")
  t.match(out, "409")
end)

t.test("cancel and dispute", function()
  local order = sb:order()
  local code, out = cli("cancel", order.id, "--reason", "changed my mind")
  t.eq(code, 0, out)
  t.eq(sb.buyer:order(order.id).cancel_reason, "changed my mind")
  order = sb:order("pending_confirmation")
  code = cli("dispute", order.id)
  t.eq(code, 1, "dispute needs a reason")
  code, out = cli("dispute", order.id, "--reason", "the colour is all wrong")
  t.eq(code, 0, out)
  t.eq(sb.buyer:order(order.id).status, "in_dispute")
end)

t.test("a command without a running sandbox says so", function()
  local code, out = cli("status", "x", "--data", sb.dir .. "/nowhere")
  t.eq(code, 1)
  t.match(out, "sandbox")
end)

sb:stop()
return t.done()
