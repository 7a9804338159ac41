-- The sandbox's events: CONTRACT.md's envelope, who gets which event,
-- signed delivery verified with the key, retries after a failing or slow
-- receiver, drop and duplicate, the events feed and ack, the deadlines.
local S = require "sandbox_helper"
local t = require "harness"
local crypto = require "crypto"
local json = require "json"
local server = require "server"
local store = require "store"
local R = require "sandbox_receiver"

local dir = t.tmpdir("sandbox-events")
assert(store.open(dir .. "/receiver.db"))
R.setup()
local receiver = assert(server.start{module = "sandbox_receiver", host = "127.0.0.1", port = 0, threads = 4})
local hook = "http://127.0.0.1:" .. receiver.port .. "/hook/"

local sb = S.start{args = {"--webhook-retry-ms", "100,200,300", "--webhook-timeout-ms", "600"}}
local SECRET = string.rep("k", 20) .. "0123456789abcdef"
sb.seller:expect(200, "PATCH", "/agents/me", {webhook_url = hook .. "seller", webhook_secret = SECRET})
sb.buyer:expect(200, "PATCH", "/agents/me", {webhook_url = hook .. "buyer"})

-- The deliveries `who` received for one order, decoded, in arrival order.
local function deliveries(who, order_id)
  local out = {}
  for _, row in ipairs(R.received(who)) do
    local env = json.decode(row.body)
    if env and env.payload.order_id == order_id then
      out[#out + 1] = {envelope = env, raw = row.body, signature = row.signature,
                       content_type = row.content_type, answered = row.answered}
    end
  end
  return out
end

local function wait_deliveries(who, order_id, n, what)
  return t.eventually(function()
    local got = deliveries(who, order_id)
    return #got >= n and got
  end, 5000, what or (n .. " deliveries to the " .. who))
end

-- Delivery order is not guaranteed (CONTRACT.md): sort by event_id.
local function by_event(list)
  local out = table.move(list, 1, #list, 1, {})
  table.sort(out, function(a, b) return a.envelope.event_id < b.envelope.event_id end)
  return out
end

local function types(list)
  local out = {}
  for i, d in ipairs(by_event(list)) do out[i] = d.envelope.event_type end
  return table.concat(out, ",")
end

t.test("order.received: the envelope, signed with the seller's secret", function()
  local order, listing = sb:order()
  local got = wait_deliveries("seller", order.id, 1)
  local d = got[1]
  t.eq(d.envelope.event_type, "order.received")
  t.eq(math.type(d.envelope.event_id), "integer", "event_id is a JSON integer")
  t.match(d.envelope.created_at, "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$")
  local p = d.envelope.payload
  t.eq(p.order_id, order.id)
  t.eq(p.service_sku_id, listing.id)
  t.eq(p.seller_agent_id, sb.info.seller.agent_id)
  t.eq(p.buyer_agent_id, sb.info.buyer.agent_id)
  t.eq(p.price, 20)
  t.eq(type(p.requirement), "table")
  t.match(d.content_type, "^application/json")
  t.eq(d.signature, crypto.hmac_sha256(SECRET, d.raw), "signature over the raw body")
  t.match(d.signature, "^%x+$")
  t.eq(d.signature, d.signature:lower())
end)

t.test("each change reaches the right party; unsigned without a secret", function()
  local order = sb:order()
  local path = "/orders/" .. order.id
  sb.seller:expect(200, "POST", path .. "/accept", {})
  sb.buyer:message(order.id, "a blue tech cover")
  sb.seller:message(order.id, "working on it")
  sb.seller:expect(200, "POST", path .. "/complete", {delivery_note = "done"})
  sb.buyer:expect(200, "POST", path .. "/dispute", {reason = "this is not what I asked for"})
  local seller_got = by_event(wait_deliveries("seller", order.id, 3))
  local buyer_got = by_event(wait_deliveries("buyer", order.id, 4))
  t.eq(types(seller_got), "order.received,message.received,dispute.raised")
  t.eq(types(buyer_got), "order.accepted,message.received,order.completed,dispute.raised")
  for _, d in ipairs(buyer_got) do t.eq(d.signature, nil, "the buyer has no secret") end
  local m = seller_got[2].envelope.payload
  t.eq(m.content, "a blue tech cover")
  t.eq(m.sender_name, "Sandbox Buyer")
  t.eq(m.sender_id, sb.info.buyer.agent_id)
  t.eq(m.context_type, "order")
  t.eq(m.context_id, order.id)
  t.eq(type(m.message_id), "string")
  t.eq(buyer_got[3].envelope.payload.delivery_note, "done")
  local ids = {}
  for _, d in ipairs(seller_got) do ids[#ids + 1] = d.envelope.event_id end
  t.ok(ids[1] < ids[2] and ids[2] < ids[3], "event ids increase")
end)

t.test("cancel reaches both parties, confirm reaches the seller", function()
  local order = sb:order()
  sb.buyer:cancel(order.id, "changed my mind")
  t.eq(types(wait_deliveries("seller", order.id, 2)), "order.received,order.cancelled")
  t.eq(types(wait_deliveries("buyer", order.id, 1)), "order.cancelled")
  order = sb:order("pending_confirmation")
  sb.buyer:confirm(order.id)
  t.eq(types(wait_deliveries("seller", order.id, 2)), "order.received,order.confirmed")
end)

t.test("a failing receiver gets the same event again on the retry schedule", function()
  R.set("fail", 2)
  local order = sb:order()
  local got = wait_deliveries("seller", order.id, 3)
  t.eq(#got, 3)
  t.eq(got[1].answered, 500)
  t.eq(got[2].answered, 500)
  t.eq(got[3].answered, 200)
  t.eq(got[3].raw, got[1].raw, "the same bytes each time")
  t.eq(got[3].signature, got[1].signature)
  local evs = sb:wait_events(order.id, function(evs) return evs[1] and evs[1].delivery == "delivered" end,
                             "the event delivered")
  t.eq(#evs[1].attempts, 3)
  t.eq(evs[1].attempts[1].status, 500)
  t.eq(evs[1].attempts[3].status, 200)
end)

t.test("a receiver slower than the timeout counts as failed and is retried", function()
  R.set("stall", 1)
  local order = sb:order()
  local got = wait_deliveries("seller", order.id, 2)
  t.eq(got[1].answered, 0)
  t.eq(got[2].answered, 200)
  local evs = sb:wait_events(order.id, function(evs) return evs[1] and evs[1].delivery == "delivered" end,
                             "the event delivered")
  t.eq(evs[1].attempts[1].status, json.null)
  t.match(evs[1].attempts[1].error, ".")
end)

t.test("after the last retry the event stays in the feed", function()
  R.set("fail", 4)
  local order = sb:order()
  sb:wait_events(order.id, function(evs) return evs[1] and evs[1].delivery == "failed" end, "delivery failed")
  t.eq(#deliveries("seller", order.id), 4, "1 attempt + 3 retries")
  local status, feed = sb.seller:request("GET", "/events/me/events")
  t.eq(status, 200)
  t.ok(S.count(feed, function(e) return e.payload.order_id == order.id end) == 1, "in the feed")
end)

t.test("drop: the next delivery never goes out, the feed has it; ack removes it", function()
  local status, state = sb:control("POST", "/webhooks", {drop = 1})
  t.eq(status, 200)
  t.eq(state.drop, 1)
  local order = sb:order()
  local evs = sb:events(order.id)
  t.eq(evs[1].delivery, "dropped")
  S.sleep(300)
  t.eq(#deliveries("seller", order.id), 0)
  local _, feed = sb.seller:request("GET", "/events/me/events")
  local mine
  for _, e in ipairs(feed) do if e.payload.order_id == order.id then mine = e end end
  t.ok(mine, "the dropped event is in the feed")
  t.eq(mine.event_type, "order.received")
  t.eq(mine.event_id, evs[1].event_id)
  local _, ack = sb.seller:request("POST", "/events/me/events/ack", {event_ids = {mine.event_id}})
  t.same(ack, {success = true, acknowledged = 1})
  _, feed = sb.seller:request("GET", "/events/me/events")
  t.eq(S.count(feed, function(e) return e.event_id == mine.event_id end), 0)
  t.eq(sb:events(order.id)[1].acked, true)
  -- the next event goes out again
  order = sb:order()
  wait_deliveries("seller", order.id, 1)
end)

t.test("drop_all holds every delivery until turned off", function()
  sb:control("POST", "/webhooks", {drop_all = true})
  local a = sb:order()
  local b = sb:order()
  sb:control("POST", "/webhooks", {drop_all = false})
  local c = sb:order()
  wait_deliveries("seller", c.id, 1)
  t.eq(#deliveries("seller", a.id) + #deliveries("seller", b.id), 0)
end)

t.test("duplicate: the next delivery arrives twice with one event_id", function()
  sb:control("POST", "/webhooks", {duplicate = 1})
  local order = sb:order()
  local got = wait_deliveries("seller", order.id, 2)
  t.eq(got[1].envelope.event_id, got[2].envelope.event_id)
  t.eq(got[1].raw, got[2].raw)
  S.sleep(200)
  t.eq(#deliveries("seller", order.id), 2)
end)

t.test("events feed: a bare array, oldest first, last_event_id and limit; ack checks", function()
  local _, _, res = sb.seller:request("GET", "/events/me/events?limit=2")
  t.match(res.body, "^%[")
  local status, feed = sb.seller:request("GET", "/events/me/events?limit=100")
  t.eq(status, 200)
  t.ok(#feed >= 3, "undelivered events are there")
  for i = 2, #feed do t.ok(feed[i - 1].event_id < feed[i].event_id, "oldest first") end
  local _, after = sb.seller:request("GET", "/events/me/events?last_event_id=" .. feed[1].event_id)
  t.eq(after[1].event_id, feed[2].event_id)
  local _, two = sb.seller:request("GET", "/events/me/events?limit=1")
  t.eq(#two, 1)
  _, _, res = sb:stranger():request("GET", "/events/me/events")
  t.eq(res.body, "[]")
  local body
  status, body = sb.seller:request("GET", "/events/me/events?limit=0")
  S.is_error(status, body, 400)
  status, body = sb.seller:request("GET", "/events/me/events?last_event_id=abc")
  S.is_error(status, body, 400)
  status, body = sb.seller:request("POST", "/events/me/events/ack", {event_ids = "1"})
  S.is_error(status, body, 400)
  status, body = sb.seller:request("POST", "/events/me/events/ack", {event_ids = {"x"}})
  S.is_error(status, body, 400)
  status, body = sb.buyer:request("POST", "/events/me/events/ack", {event_ids = {feed[1].event_id}})
  t.eq(status, 200)
  t.eq(body.acknowledged, 0, "nobody acknowledges another agent's events")
  status = sb:raw("GET", "/api/events/me/events")
  t.eq(status, 401)
end)

t.test("deadlines: accept (cancels), confirmation (completes), heartbeat (lapses)", function()
  local quick = S.start{args = {"--accept-deadline-ms", "300", "--confirm-deadline-ms", "300",
                                 "--online-window-ms", "300"}}
  local order = quick:order()
  local cancelled = quick.buyer:wait_status(order.id, "cancelled", 5000)
  t.match(cancelled.cancel_reason, "in time")
  local evs = quick:wait_events(order.id, function(evs) return #evs >= 3 end, "the cancel events")
  t.eq(S.count(evs, function(e) return e.event_type == "order.cancelled" end), 2, "to buyer and seller")
  local status, body = quick.seller:request("POST", "/orders/" .. order.id .. "/accept", {})
  S.is_error(status, body, 409)
  local accepted = quick:order("in_progress")
  S.sleep(600)
  t.eq(quick.buyer:order(accepted.id).status, "in_progress", "an accepted order stays")
  local delivered = quick:order("pending_confirmation")
  t.eq(quick.buyer:wait_status(delivered.id, "completed", 5000).status, "completed", "auto-confirmed")
  quick.seller:expect(200, "POST", "/agents/heartbeat", {})
  t.eq(quick:listing().seller.is_online, true, "online after a heartbeat")
  S.sleep(400)
  t.eq(quick.seller:expect(200, "GET", "/agents/me").is_online, false, "offline after the window")
  quick:stop()
end)

sb:stop()
receiver:stop()
return t.done()
