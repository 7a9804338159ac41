-- webdriver.lua - drives headless Chromium through chromedriver's W3C
-- WebDriver HTTP API, with the project's own http client (no npm, no
-- browser download: Debian's chromium and chromium-driver).
--
--   local wd = require "webdriver"
--   local browser = wd.start(dir)
--   browser:go("http://127.0.0.1:8000/admin"); browser:find("#secret"):type("...")
--   browser:screenshot(dir .. "/page.png"); browser:quit()
local http, json, time, crypto = require "http", require "json", require "time", require "crypto"
local proc = require "proc"

local W = {}
W.__index = W
local E = {}
E.__index = E
local ELEMENT = "element-6066-11e4-a52e-4f735466cecf"

function W.available()
  return os.execute("command -v chromedriver >/dev/null && command -v chromium >/dev/null") == true
end

-- One WebDriver call; raises with the driver's message on an error.
function W:call(method, path, body)
  local res, err = http.request{method = method, url = self.base .. path, json = body,
                                timeout = 30000}
  if not res then error("webdriver " .. path .. ": " .. err, 2) end
  local decoded = json.decode(res.body) or {}
  if res.status >= 300 then
    local v = decoded.value or {}
    error(string.format("webdriver %s %s: %d %s", method, path, res.status, v.message or res.body), 2)
  end
  return decoded.value
end

-- Starts chromedriver and a headless Chromium session (a fresh profile in dir).
function W.start(dir)
  local port = proc.free_port()
  local self = setmetatable({dir = dir}, W)
  self.driver = proc.spawn({"chromedriver", "--port=" .. port, "--allowed-ips=127.0.0.1"},
                           {log = dir .. "/chromedriver.log"})
  self.base = "http://127.0.0.1:" .. port
  proc.wait_http(self.base .. "/status", 15000)
  local value = self:call("POST", "/session", {capabilities = {alwaysMatch = {
    ["goog:chromeOptions"] = {binary = "/usr/bin/chromium", args = json.array{
      "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--disable-dev-shm-usage", "--window-size=1280,1000",
      "--user-data-dir=" .. dir .. "/chromium-profile-" .. crypto.random_hex(4)}}}}})
  self.session = "/session/" .. value.sessionId
  return self
end

function W:go(url) return self:call("POST", self.session .. "/url", {url = url}) end
function W:url() return self:call("GET", self.session .. "/url") end
function W:title() return self:call("GET", self.session .. "/title") end

-- Runs JavaScript in the page; returns its result.
function W:js(script, ...)
  return self:call("POST", self.session .. "/execute/sync", {script = script, args = json.array{...}})
end

-- The first element matching a CSS selector, waiting up to timeout_ms.
function W:find(selector, timeout_ms)
  local deadline = time.mono() + (timeout_ms or 5000)
  while true do
    local ok, value = pcall(self.call, self, "POST", self.session .. "/element",
                            {using = "css selector", value = selector})
    if ok then return setmetatable({browser = self, id = value[ELEMENT]}, E) end
    if time.mono() > deadline then error("no element " .. selector .. ": " .. tostring(value), 2) end
    time.sleep(100)
  end
end

-- Saves a PNG screenshot of the page.
function W:screenshot(path)
  local png = crypto.base64_decode(self:call("GET", self.session .. "/screenshot"))
  local f = assert(io.open(path, "wb"))
  f:write(png)
  f:close()
  return path
end

function W:quit()
  if self.session then pcall(self.call, self, "DELETE", self.session) end
  self.session = nil
  if self.driver then self.driver:stop(3000) end
end

function E:click()
  return self.browser:call("POST", self.browser.session .. "/element/" .. self.id .. "/click", {})
end

function E:type(text)
  return self.browser:call("POST", self.browser.session .. "/element/" .. self.id .. "/value", {text = text})
end

function E:text()
  return self.browser:call("GET", self.browser.session .. "/element/" .. self.id .. "/text")
end

return W
