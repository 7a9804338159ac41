-- admin_page_test.lua - the back office in a real headless browser, against
-- an order delivered through the sandbox: sign-in, the order and its
-- thumbnail, requeueing a dead job, and what must be refused.
package.path = "tests/lib/?.lua;scripts/?.lua;" .. package.path
local t = require "harness"
local world = require "world"
local webdriver = require "webdriver"
local http, json = require "http", require "json"

local w = world.start{name = "admin", env = {JOB_ATTEMPTS = 2, SIGNIN_ATTEMPTS_PER_MINUTE = 3}}

local function get(path, cookie)
  return assert(http.request{url = w.url .. path, headers = {Cookie = cookie}})
end

local function sign_in(secret)
  return assert(http.request{method = "POST", url = w.url .. "/admin/login",
    headers = {["Content-Type"] = "application/x-www-form-urlencoded"}, body = "secret=" .. secret})
end

local cookie
t.test("the page without a session redirects to sign-in; the API answers 401", function()
  local res = get("/admin")
  t.eq(res.status, 303)
  t.eq(res.headers.location, "/admin/login")
  t.eq(get("/admin/api/overview").status, 401)
  local login = get("/admin/login")
  t.eq(login.status, 200)
  t.match(login.body, "Admin secret")
end)

t.test("a right secret gets an HttpOnly, SameSite=Strict session cookie", function()
  local res = sign_in(w.admin_secret)
  t.eq(res.status, 303)
  t.eq(res.headers.location, "/admin")
  local set = res.headers["set-cookie"]
  t.match(set, "HttpOnly")
  t.match(set, "SameSite=Strict")
  cookie = set:match("^([^;]+)")
  t.eq(get("/admin/api/overview", cookie).status, 200)
end)

t.test("nothing outside DATA_DIR/images can be fetched", function()
  for _, path in ipairs{"/admin/images/..%2Fskudemo.db", "/admin/images/../skudemo.db",
                        "/admin/images/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "/admin/images/skudemo.db",
                        "/admin/static/..%2F..%2Flua%2Fapp.lua", "/admin/images/.env"} do
    local res = get(path, cookie)
    t.ok(res.status == 404, path .. " answered " .. res.status)
    t.ok(not res.body:find("SQLite format"), path .. " leaked the store")
  end
end)

local order
t.test("an order is delivered through the sandbox", function()
  order = w:order_and_say("a green product photo of a tea cup")
  w:wait_status(order.id, "pending_confirmation", 30000)
end)

local failing
t.test("a complete that keeps failing leaves a dead job", function()
  w:fault{method = "POST", route = "/api/orders/{id}/complete", count = 1000, status = 503}
  failing = w:order_and_say("a red poster of a mountain")
  t.eventually(function()
    local res = get("/admin/api/overview", cookie)
    local o = json.decode(res.body)
    return #o.attention.dead_jobs > 0
  end, 30000, "a dead job")
  w:clear_faults()
end)

if not webdriver.available() then
  t.test("headless browser (chromium and chromium-driver are installed by make deps)", function()
    error("chromedriver or chromium not found")
  end)
  w:stop()
  return t.done()
end

local browser
t.test("in a browser: sign in, see the delivered order with its thumbnail, requeue a dead job", function()
  browser = webdriver.start(w.dir)
  browser:go(w.url .. "/admin")
  t.match(browser:url(), "/admin/login$", "redirected to sign-in")
  browser:find("#secret"):type(w.admin_secret)
  browser:find("button[type=submit]"):click()
  t.eventually(function() return browser:url():match("/admin$") end, 5000, "the admin page")
  browser:find("#orders td.mono")
  local page = browser:js("return document.body.innerText")
  t.contains(page, order.id, "the delivered order is listed")
  t.eventually(function()
    return browser:js([[const img = document.querySelector('#gallery img');
                        return img !== null && img.complete && img.naturalWidth > 0]])
  end, 5000, "the thumbnail to load")
  browser:screenshot(w.dir .. "/admin.png")
  print("# screenshot: " .. w.dir .. "/admin.png")
  browser:find("[data-requeue]"):click()
  w:wait_status(failing.id, "pending_confirmation", 30000)
  browser:go(w.url .. "/admin")
  browser:find("#orders td.mono")
  browser:screenshot(w.dir .. "/admin-after-requeue.png")
end)

t.test("wrong secrets are refused, then sign-in is rate limited", function()
  for _ = 1, 3 do
    local res = sign_in("not-the-secret")
    t.eq(res.status, 303)
    t.eq(res.headers.location, "/admin/login?error=1")
    t.eq(res.headers["set-cookie"], nil)
  end
  local res = sign_in(w.admin_secret)       -- even the right one waits now
  t.eq(res.headers.location, "/admin/login?error=wait")
  t.eq(get("/admin/api/overview", "skudemo_session=1.ab.cd").status, 401, "forged cookie")
end)

if browser then browser:quit() end
w:stop()
return t.done()
