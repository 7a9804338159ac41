-- store_test.lua - the store binding: types, parameters, NULLs, errors,
-- transactions, sync, and rows written by other threads (pool workers).
package.path = "tests/lib/?.lua;" .. package.path
local t = require "harness"
local store, pool, time = require "store", require "pool", require "time"

local dir = t.tmpdir("store")

t.test("before open: no path, use raises", function()
  t.eq(store.path(), nil)
  t.raises(function() store.exec("SELECT 1") end, "store.open")
end)

t.test("open creates directories; a bad path is nil, err", function()
  local path = dir .. "/nested/deeper/app.db"
  t.eq(store.open(path), true)
  t.eq(store.path(), path)
  t.eq(store.row("PRAGMA journal_mode").journal_mode, "wal")
  t.eq(store.row("PRAGMA synchronous").synchronous, 1)       -- NORMAL
  t.eq(store.row("PRAGMA foreign_keys").foreign_keys, 1)
  local ok, err = store.open("/proc/no/such/dir/x.db")
  t.eq(ok, nil)
  t.match(err, "^store: ")
  t.eq(store.path(), path)
end)

t.test("exec returns changes and the last row id", function()
  t.eq(store.exec([[CREATE TABLE items (id INTEGER PRIMARY KEY, i INTEGER, f REAL, s TEXT,
                    b BLOB, flag INTEGER, note TEXT)]]), 0)
  local changes, id = store.exec("INSERT INTO items (i, s) VALUES (?, ?)", 1, "one")
  t.eq(changes, 1)
  t.eq(id, 1)
  changes, id = store.exec("INSERT INTO items (i, s) VALUES (?, ?)", 2, "two")
  t.eq(changes, 1)
  t.eq(id, 2)
  t.eq(store.exec("UPDATE items SET note = 'x'"), 2)
  t.eq(store.exec("UPDATE items SET note = 'y' WHERE id = ?", 99), 0)
  t.eq(store.exec("SELECT * FROM items"), 0)
  t.eq(store.exec("DELETE FROM items"), 2)
end)

t.test("values keep their types; NULL is absent", function()
  local blob = "\0\1\2\255binary"
  store.exec("INSERT INTO items (i, f, s, b, flag, note) VALUES (?, ?, ?, CAST(? AS BLOB), ?, ?)",
             math.maxinteger, 2.5, "héllo", blob, true, nil)
  local r = store.row("SELECT * FROM items WHERE i = ?", math.maxinteger)
  t.eq(math.type(r.i), "integer")
  t.eq(r.i, math.maxinteger)
  t.eq(math.type(r.f), "float")
  t.eq(r.f, 2.5)
  t.eq(r.s, "héllo")
  t.eq(r.b, blob)
  t.eq(r.flag, 1)
  t.eq(r.note, nil)
  t.eq(store.row("SELECT ? AS v", false).v, 0)
  t.eq(store.row("SELECT ? AS v", -7).v, -7)
  t.eq(math.type(store.row("SELECT 3.0 AS v").v), "float")
  t.eq(store.row("SELECT ? AS v", nil).v, nil)
  t.eq(store.row("SELECT 'a' AS x, NULL AS y, 2 AS z").z, 2)
end)

t.test("query returns every row in order; row returns the first or nil", function()
  store.exec("DELETE FROM items")
  for i = 1, 5 do store.exec("INSERT INTO items (i, s) VALUES (?, ?)", i, "n" .. i) end
  local rows = store.query("SELECT i, s FROM items WHERE i > ? ORDER BY i", 2)
  t.eq(#rows, 3)
  t.same(rows[1], {i = 3, s = "n3"})
  t.same(rows[3], {i = 5, s = "n5"})
  t.eq(#store.query("SELECT * FROM items WHERE i > 100"), 0)
  t.eq(store.row("SELECT i FROM items ORDER BY i DESC").i, 5)
  t.eq(store.row("SELECT i FROM items WHERE i > 100"), nil)
end)

t.test("parameters: wrong types and counts raise", function()
  t.raises(function() store.exec("SELECT ?", {}) end, "cannot bind a table")
  t.raises(function() store.exec("SELECT ?", print) end, "cannot bind a function")
  t.raises(function() store.exec("SELECT ?, ?", 1) end, "takes 2 parameters, got 1")
  t.raises(function() store.exec("SELECT 1", 1) end, "takes 0 parameters, got 1")
  t.raises(function() store.query() end)
end)

t.test("SQL errors raise 'store: ...' and leave the connection usable", function()
  t.raises(function() store.exec("SELEC 1") end, ": store: near \"SELEC\": syntax error$")
  t.raises(function() store.query("SELECT * FROM missing_table") end, ": store: no such table: missing_table$")
  store.exec("CREATE TABLE uniq (k TEXT UNIQUE)")
  store.exec("INSERT INTO uniq VALUES ('a')")
  t.raises(function() store.exec("INSERT INTO uniq VALUES (?)", "a") end, ": store: UNIQUE constraint failed")
  t.raises(function() store.exec("INSERT INTO uniq VALUES (?)", "a") end, ": store: UNIQUE constraint failed")
  t.eq(store.row("SELECT COUNT(*) AS n FROM uniq").n, 1)
  t.raises(function() store.query("SELECT 1; SELECT 2") end, "one statement")
  t.raises(function() store.exec("SELECT ?; SELECT 2", 1) end, "more than one statement")
  t.eq(store.exec("INSERT INTO uniq VALUES ('b'); INSERT INTO uniq VALUES ('c'); -- done"), 2)
  t.eq(store.row("SELECT COUNT(*) AS n FROM uniq").n, 3)
end)

t.test("transaction commits and returns fn's results", function()
  local a, b = store.transaction(function()
    store.exec("INSERT INTO uniq VALUES ('t1')")
    return "x", 2
  end)
  t.eq(a, "x")
  t.eq(b, 2)
  t.ok(store.row("SELECT 1 AS ok FROM uniq WHERE k = 't1'"))
end)

t.test("transaction rolls back and re-raises the same error value", function()
  local err = {reason = "mine"}
  local ok, got = pcall(store.transaction, function()
    store.exec("INSERT INTO uniq VALUES ('t2')")
    error(err)
  end)
  t.eq(ok, false)
  t.eq(got, err)
  t.eq(store.row("SELECT 1 AS ok FROM uniq WHERE k = 't2'"), nil)
  ok, got = pcall(store.transaction, function() error("plain") end)
  t.match(got, "plain$")
  ok, got = pcall(store.transaction, function() store.exec("INSERT INTO uniq VALUES ('a')") end)
  t.match(got, ": store: UNIQUE constraint failed")
  t.eq(store.exec("INSERT INTO uniq VALUES ('after')"), 1)    -- no transaction left open
  t.raises(function() store.transaction("not a function") end)
end)

t.test("nested transaction: inner failure rolls back only the inner part", function()
  store.transaction(function()
    store.exec("INSERT INTO uniq VALUES ('outer')")
    local ok = pcall(store.transaction, function()
      store.exec("INSERT INTO uniq VALUES ('inner')")
      error("inner fails")
    end)
    t.eq(ok, false)
    store.transaction(function() store.exec("INSERT INTO uniq VALUES ('inner2')") end)
  end)
  t.ok(store.row("SELECT 1 AS ok FROM uniq WHERE k = 'outer'"))
  t.eq(store.row("SELECT 1 AS ok FROM uniq WHERE k = 'inner'"), nil)
  t.ok(store.row("SELECT 1 AS ok FROM uniq WHERE k = 'inner2'"))
end)

t.test("sync returns once committed data is durable", function()
  store.exec("INSERT INTO uniq VALUES ('synced')")
  t.eq(store.sync(), true)
  t.eq(store.sync(), true)
end)

t.test("rows written by worker threads are visible here, and ours there", function()
  store.exec([[CREATE TABLE results (id INTEGER PRIMARY KEY, job_id INTEGER, name TEXT,
               attempt INTEGER, payload TEXT, at INTEGER);
               CREATE TABLE shared (job_id INTEGER, value TEXT);
               CREATE TABLE flags (name TEXT PRIMARY KEY)]])
  store.exec("INSERT INTO flags VALUES ('fixed')")
  pool.start{module = "pool_app", workers = 4}
  local ids = {}
  for i = 1, 8 do ids[i] = pool.submit("write_row", {value = "v" .. i}) end
  local fixed = pool.submit("needs_fix", {})              -- reads our row from its thread
  t.eventually(function()
    return store.row("SELECT COUNT(*) AS n FROM shared").n == 8
  end, 5000, "rows from the workers")
  for i = 1, 8 do
    t.eq(store.row("SELECT value FROM shared WHERE job_id = ?", ids[i]).value, "v" .. i)
  end
  t.eventually(function() return store.row("SELECT state FROM jobs WHERE id = ?", fixed).state == "done" end)
  t.eq(pool.stop(5000), true)
end)

return t.done()
