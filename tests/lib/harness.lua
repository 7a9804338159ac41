-- harness.lua - the tests' tiny runner: one "ok"/"not ok" line per case.
--
--   local t = require "harness"
--   t.test("name", function() t.eq(1 + 1, 2) end)
--   return t.done()      -- exit status: 0 when every case passed
local H = {passed = 0, failed = 0}

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

local function fail(msg, level)
  error(msg, (level or 1) + 2)
end

function H.test(name, fn)
  local ok, err = xpcall(fn, debug.traceback)
  if ok then
    H.passed = H.passed + 1
    print("ok - " .. name)
  else
    H.failed = H.failed + 1
    print("not ok - " .. name .. ": " .. tostring(err):gsub("\n", "\n#   "))
  end
  io.stdout:flush()
end

function H.ok(v, msg)
  if not v then fail((msg or "expected a true value") .. ", got " .. show(v)) end
  return v
end

function H.eq(got, want, msg)
  if got ~= want then
    fail((msg and msg .. ": " or "") .. "expected " .. show(want) .. ", got " .. show(got))
  end
end

function H.match(s, pattern, msg)
  if type(s) ~= "string" or not s:find(pattern) then
    fail((msg and msg .. ": " or "") .. "expected " .. show(s) .. " to match " .. show(pattern))
  end
end

-- s contains sub, as plain text.
function H.contains(s, sub, msg)
  if type(s) ~= "string" or not s:find(sub, 1, true) then
    fail((msg and msg .. ": " or "") .. "expected " .. show(s) .. " to contain " .. show(sub))
  end
end

-- Deep equality of plain data.
function H.same(got, want, msg)
  local function same(a, b)
    if type(a) ~= "table" or type(b) ~= "table" then return a == b end
    for k, v in pairs(a) do if not same(v, b[k]) then return false end end
    for k in pairs(b) do if a[k] == nil then return false end end
    return true
  end
  if not same(got, want) then
    local json = require "json"
    fail((msg and msg .. ": " or "") .. "expected " .. json.encode(want) .. ", got " .. json.encode(got))
  end
end

-- Calls fn, which must raise an error matching pattern (when given).
function H.raises(fn, pattern)
  local ok, err = pcall(fn)
  if ok then fail("expected an error") end
  if pattern and not tostring(err):find(pattern) then
    fail("error " .. show(tostring(err)) .. " does not match " .. show(pattern))
  end
  return err
end

-- Polls fn until it returns a true value or timeout_ms passes.
function H.eventually(fn, timeout_ms, what)
  local time = require "time"
  local deadline = time.mono() + (timeout_ms or 5000)
  repeat
    local v = fn()
    if v then return v end
    time.sleep(20)
  until time.mono() > deadline
  fail("timed out waiting for " .. (what or "a condition"))
end

-- A fresh directory for one test file under tests/tmp.
function H.tmpdir(name)
  local base = os.getenv("SKUDEMO_TEST_TMP") or "tests/tmp"
  local dir = string.format("%s/%s-%d-%d", base, name or "t", os.time(), math.random(1e9))
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  return dir
end

function H.done()
  return H.failed == 0 and 0 or 1
end

return H
