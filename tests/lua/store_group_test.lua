-- store_group_test.lua - store.group: writes of concurrent callers share a
-- transaction; each caller's results, errors and rollbacks stay its own.
package.path = "tests/lib/?.lua;" .. package.path
local t = require "harness"
local store, pool, time, config = require "store", require "pool", require "time", require "config"

local dir = t.tmpdir("store-group")
assert(store.open(dir .. "/group.db"))
store.exec("CREATE TABLE grouped (n INTEGER PRIMARY KEY)")
store.exec("CREATE TABLE outcomes (n INTEGER, new INTEGER)")
config.set("POOL_POLL_MS", "60000")   -- jobs must be woken by commits, never found by a poll

t.test("group: fn's results come back, its writes are committed", function()
  local a, b = store.group(function()
    store.exec("INSERT INTO grouped (n) VALUES (1)")
    return "first", 2
  end)
  t.eq(a, "first")
  t.eq(b, 2)
  t.eq(store.row("SELECT COUNT(*) AS c FROM grouped WHERE n = 1").c, 1)
end)

t.test("group: an error undoes only that caller's writes and is raised again", function()
  t.raises(function()
    store.group(function()
      store.exec("INSERT INTO grouped (n) VALUES (2)")
      error("the buyer's message was forged")
    end)
  end, "forged")
  t.eq(store.row("SELECT COUNT(*) AS c FROM grouped WHERE n = 2").c, 0)
  store.group(function() store.exec("INSERT INTO grouped (n) VALUES (3)") end)
  t.eq(store.row("SELECT COUNT(*) AS c FROM grouped WHERE n = 3").c, 1, "the next group works")
  t.raises(function() store.group(function() store.exec("INSERT INTO grouped (n) VALUES (3)") end) end,
           "UNIQUE")
end)

t.test("group: a transaction inside it nests, and rolls back on its own", function()
  store.group(function()
    store.exec("INSERT INTO grouped (n) VALUES (4)")
    pcall(store.transaction, function()
      store.exec("INSERT INTO grouped (n) VALUES (5)")
      error("no")
    end)
  end)
  t.eq(store.row("SELECT COUNT(*) AS c FROM grouped WHERE n IN (4, 5)").c, 1)
end)

t.test("group: a group inside a group joins it; one inside a transaction is refused", function()
  local v = store.group(function()
    return store.group(function()
      store.exec("INSERT INTO grouped (n) VALUES (6)")
      return "inner"
    end)
  end)
  t.eq(v, "inner")
  t.eq(store.row("SELECT COUNT(*) AS c FROM grouped WHERE n = 6").c, 1)
  t.raises(function()
    store.transaction(function() store.group(function() end) end)
  end, "inside store.transaction")
end)

t.test("group: 400 concurrent callers, each event stored once, duplicates told apart", function()
  t.eq(pool.start{module = "store_group_app", workers = 32}, true)
  for i = 1, 200 do
    pool.submit("insert", {n = 1000 + i})
    pool.submit("insert", {n = 1000 + i})        -- the same event delivered twice
  end
  t.eventually(function()
    return store.row("SELECT COUNT(*) AS c FROM outcomes").c == 400
  end, 30000, "400 outcomes")
  t.eq(store.row("SELECT COUNT(*) AS c FROM grouped WHERE n > 1000").c, 200)
  t.eq(store.row("SELECT SUM(new) AS s FROM outcomes").s, 200, "exactly one caller saw each event as new")
  t.eq(store.row("SELECT COUNT(DISTINCT n) AS c FROM outcomes WHERE new = 1").c, 200)
end)

t.test("group: a job submitted inside a group runs as soon as the group commits", function()
  local started = time.mono()
  store.group(function() pool.submit("insert", {n = 5000}) end)
  t.eventually(function()
    return store.row("SELECT COUNT(*) AS c FROM outcomes WHERE n = 5000").c == 1
  end, 5000, "the job to run")
  t.ok(time.mono() - started < 2000, "woken by the commit, not a poll")
  pool.stop(5000)
end)

return t.done()
