package.path = "tests/lib/?.lua;" .. package.path
local t = require "harness"
local fs = require "fs"

local dir = t.tmpdir("fs")

t.test("write then read", function()
  local path = dir .. "/a.txt"
  t.eq(fs.write(path, "hello\0world\n"), true)
  t.eq(fs.read(path), "hello\0world\n")
  t.eq(fs.write(path, ""), true)
  t.eq(fs.read(path), "")
  local big = string.rep("0123456789abcdef", 100000)
  t.eq(fs.write(path, big), true)
  t.eq(fs.read(path), big)
end)

t.test("write replaces atomically and leaves no temporary files", function()
  local d = dir .. "/atomic"
  t.eq(fs.mkdir(d), true)
  for i = 1, 20 do t.eq(fs.write(d .. "/state.json", '{"n":' .. i .. "}"), true) end
  t.eq(fs.read(d .. "/state.json"), '{"n":20}')
  t.same(fs.list(d), {"state.json"})
end)

t.test("write into a missing directory is nil, message", function()
  local ok, err, code = fs.write(dir .. "/missing/x.txt", "x")
  t.eq(ok, nil)
  t.match(err, "missing/x%.txt: No such file or directory")
  t.eq(math.type(code), "integer")
  for _, name in ipairs(fs.list(dir)) do t.eq(name:find("%.tmp%-"), nil, name) end
end)

t.test("write over a directory fails and cleans up", function()
  local d = dir .. "/isdir"
  fs.mkdir(d .. "/inner")
  local ok, err = fs.write(d .. "/inner", "x")
  t.eq(ok, nil)
  t.match(err, "inner: ")
  t.same(fs.list(d), {"inner"}, "no temporary left")
end)

t.test("read errors", function()
  local v, err, code = fs.read(dir .. "/nope")
  t.eq(v, nil)
  t.eq(err, dir .. "/nope: No such file or directory")
  t.eq(code, 2)
  v, err = fs.read(dir)
  t.eq(v, nil)
  t.match(err, "Is a directory")
  t.raises(function() fs.read(nil) end)
  t.raises(function() fs.write("x") end)
end)

t.test("read of a file that reports size 0", function()
  local s = fs.read("/proc/self/status")
  t.ok(s and #s > 0, "read /proc/self/status")
  t.match(s, "Name:")
end)

t.test("append_line", function()
  local path = dir .. "/journal.log"
  t.eq(fs.append_line(path, "first"), true)
  t.eq(fs.append_line(path, '{"n":2}'), true)
  t.eq(fs.append_line(path, ""), true)
  t.eq(fs.read(path), 'first\n{"n":2}\n\n')
  local ok, err = fs.append_line(dir .. "/missing/j.log", "x")
  t.eq(ok, nil)
  t.match(err, "No such file")
  t.raises(function() fs.append_line(path) end)
end)

t.test("mkdir with parents", function()
  local d = dir .. "/m/a/b/c"
  t.eq(fs.mkdir(d), true)
  t.eq(fs.stat(d).type, "dir")
  t.eq(fs.mkdir(d), true, "existing is fine")
  t.eq(fs.mkdir(dir .. "/m/x//y/"), true)
  t.eq(fs.stat(dir .. "/m/x/y").type, "dir")
  fs.write(dir .. "/m/file", "x")
  local ok, err = fs.mkdir(dir .. "/m/file")
  t.eq(ok, nil)
  t.match(err, "Not a directory")
  ok, err = fs.mkdir(dir .. "/m/file/sub")
  t.eq(ok, nil)
  t.match(err, "Not a directory")
  t.eq(fs.mkdir(""), nil)
end)

t.test("list is sorted and skips dot entries", function()
  local d = dir .. "/list"
  fs.mkdir(d)
  for _, name in ipairs{"b", "a", "C", ".hidden", "10", "2"} do fs.write(d .. "/" .. name, name) end
  fs.mkdir(d .. "/sub")
  t.same(fs.list(d), {".hidden", "10", "2", "C", "a", "b", "sub"})
  local list = fs.list(d)
  t.eq(list[1], ".hidden")
  t.eq(list[7], "sub")
  fs.mkdir(d .. "/empty")
  t.eq(#fs.list(d .. "/empty"), 0)
  local v, err = fs.list(d .. "/nope")
  t.eq(v, nil)
  t.match(err, "No such file")
  v, err = fs.list(d .. "/a")
  t.eq(v, nil)
  t.match(err, "Not a directory")
end)

t.test("exists and stat", function()
  local path = dir .. "/s.bin"
  fs.write(path, "12345")
  t.eq(fs.exists(path), true)
  t.eq(fs.exists(dir), true)
  t.eq(fs.exists(dir .. "/nope"), false)
  local st = fs.stat(path)
  t.eq(st.size, 5)
  t.eq(st.type, "file")
  t.eq(math.type(st.mtime), "integer")
  t.ok(math.abs(st.mtime - os.time() * 1000) < 60000, "mtime in ms near now")
  t.eq(fs.stat(dir).type, "dir")
  t.eq(fs.stat("/dev/null").type, "other")
  local v, err = fs.stat(dir .. "/nope")
  t.eq(v, nil)
  t.match(err, "No such file")
  t.raises(function() fs.exists() end)
end)

t.test("remove", function()
  local path = dir .. "/r.txt"
  fs.write(path, "x")
  t.eq(fs.remove(path), true)
  t.eq(fs.exists(path), false)
  t.eq(fs.remove(path), true, "already absent")
  fs.mkdir(dir .. "/rd/inner")
  local ok, err = fs.remove(dir .. "/rd")
  t.eq(ok, nil)
  t.match(err, "not empty")
  t.eq(fs.remove(dir .. "/rd/inner"), true)
  t.eq(fs.remove(dir .. "/rd"), true)
end)

t.test("safe_name", function()
  local cases = {
    {"photo.png", "photo.png"},
    {"My Photo (1).png", "My_Photo_1_.png"},
    {"../../etc/passwd", "_.._etc_passwd"},
    {"", "_"},
    {".", "_"},
    {"..", "_"},
    {"...", "_"},
    {".env", "env"},
    {"/", "_"},
    {"a/b\\c", "a_b_c"},
    {"café crème.jpg", "caf_cr_me.jpg"},
    {"日本語", "_"},
    {"a\0b\nc", "a_b_c"},
    {"keep-these_chars.OK9", "keep-these_chars.OK9"},
  }
  for _, c in ipairs(cases) do t.eq(fs.safe_name(c[1]), c[2], string.format("%q", c[1])) end
  local long = fs.safe_name(string.rep("x", 300))
  t.eq(#long, 100)
  t.eq(fs.safe_name(string.rep("é", 300)), "_")
  for _, s in ipairs{"../../etc/passwd", "", "..", string.rep("ab/", 100), "\255\254", ". . ."} do
    local name = fs.safe_name(s)
    t.match(name, "^[A-Za-z0-9_%-][A-Za-z0-9._%-]*$", string.format("%q", s))
    t.ok(#name >= 1 and #name <= 100)
    t.ok(name ~= "." and name ~= "..")
  end
  t.raises(function() fs.safe_name(nil) end)
end)

return t.done()
