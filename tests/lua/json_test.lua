package.path = "tests/lib/?.lua;" .. package.path
local t = require "harness"
local json = require "json"
local cjson = require "cjson"

t.test("scalars", function()
  t.eq(json.encode(nil), "null")
  t.eq(json.encode(json.null), "null")
  t.eq(json.encode(true), "true")
  t.eq(json.encode(false), "false")
  t.eq(json.encode(42), "42")
  t.eq(json.encode(-7), "-7")
  t.eq(json.encode(math.maxinteger), "9223372036854775807")
  t.eq(json.encode(math.mininteger), "-9223372036854775808")
  t.eq(json.encode(1.5), "1.5")
  t.eq(json.encode(3.0), "3")
  t.eq(json.encode(1e300), "1e+300")
end)

t.test("floats survive a round trip", function()
  for _, x in ipairs{0.1, 1 / 3, math.pi, -2.5e-300, 123456789.123456789, 2 ^ 60 + 0.0} do
    t.eq(json.decode(json.encode(x)), x, tostring(x))
  end
end)

t.test("NaN and infinity are refused", function()
  t.raises(function() json.encode(0 / 0) end, "NaN")
  t.raises(function() json.encode(math.huge) end, "infinity")
  t.raises(function() json.encode({x = -math.huge}) end, "infinity")
end)

t.test("strings are escaped", function()
  t.eq(json.encode('say "hi"\\'), [["say \"hi\"\\"]])
  t.eq(json.encode("a\nb\tc\r\b\f"), [["a\nb\tc\r\b\f"]])
  t.eq(json.encode("\0\1\31\127"), '"\\u0000\\u0001\\u001f\127"')
  t.eq(json.encode("café 😀 /"), '"café 😀 /"')
  t.eq(json.encode(""), '""')
end)

t.test("sequences are arrays, other tables objects", function()
  t.eq(json.encode({1, 2, 3}), "[1,2,3]")
  t.eq(json.encode({"a", {true}}), '["a",[true]]')
  t.eq(json.encode({}), "{}")
  t.eq(json.encode({a = 1}), '{"a":1}')
  local sparse = json.decode(json.encode({[1] = "x", [3] = "y"}))
  t.same(sparse, {["1"] = "x", ["3"] = "y"})
  t.same(json.decode(json.encode({1, 2, x = 3})), {["1"] = 1, ["2"] = 2, x = 3})
  t.eq(json.encode({[0] = "zero"}), '{"0":"zero"}')
end)

t.test("json.array marks tables", function()
  t.eq(json.encode(json.array()), "[]")
  local a = {}
  t.eq(json.array(a), a)
  t.ok(json.is_array(a))
  t.eq(json.encode(a), "[]")
  t.eq(json.encode({items = json.array({})}), '{"items":[]}')
  t.eq(json.encode(json.array({1, json.null, 3})), "[1,null,3]")
  t.eq(json.is_array({1, 2}), false)
  t.eq(json.is_array("x"), false)
  t.raises(function() json.array(setmetatable({}, {})) end, "metatable")
  t.raises(function() json.array(5) end)
end)

t.test("object keys: strings and integers only", function()
  t.same(json.decode(json.encode({[5] = true, [7] = false})), {["5"] = true, ["7"] = false})
  t.raises(function() json.encode({[true] = 1}) end, "key")
  t.raises(function() json.encode({[1.5] = 1}) end, "key")
end)

t.test("values JSON cannot hold raise", function()
  t.raises(function() json.encode(print) end, "function")
  t.raises(function() json.encode({f = coroutine.create(print)}) end, "thread")
  t.raises(function() json.encode(io.stdout) end, "userdata")
  t.raises(function() json.encode() end)
end)

t.test("nesting is limited to 64", function()
  local v = 1
  for _ = 1, 64 do v = {v} end
  t.ok(json.encode(v))
  t.raises(function() json.encode({v}) end, "nesting too deep")
  local cycle = {}
  cycle.self = cycle
  t.raises(function() json.encode(cycle) end, "nesting too deep")
  t.ok(json.decode(string.rep("[", 64) .. string.rep("]", 64)))
  local r, err = json.decode(string.rep("[", 65) .. string.rep("]", 65))
  t.eq(r, nil)
  t.match(err, "nesting too deep")
  r, err = json.decode(string.rep('{"a":', 100000) .. "1" .. string.rep("}", 100000))
  t.eq(r, nil)
  t.match(err, "nesting too deep")
end)

t.test("decode values", function()
  t.same(json.decode('{"a":[1,2,{"b":null}],"c":"d","e":true,"f":false}'),
    {a = {1, 2, {b = json.null}}, c = "d", e = true, f = false})
  t.eq(math.type(json.decode("12")), "integer")
  t.eq(math.type(json.decode("-0")), "integer")
  t.eq(math.type(json.decode("1.0")), "float")
  t.eq(json.decode("1e3"), 1000.0)
  t.eq(json.decode("9223372036854775807"), math.maxinteger)
  t.eq(math.type(json.decode("9223372036854775808")), "float")
  t.eq(json.decode(' \n\t"x" \r\n'), "x")
  t.eq(json.decode("null"), json.null)
  t.eq(json.decode('"\\u00e9\\ud83d\\ude00\\n\\"\\\\\\/"'), 'é😀\n"\\/')
  t.eq(json.decode('"tab\\there"'), "tab\there")
end)

t.test("decoded arrays keep their mark", function()
  local v = json.decode('{"empty":[],"list":[1],"obj":{}}')
  t.ok(json.is_array(v.empty))
  t.ok(json.is_array(v.list))
  t.eq(json.is_array(v.obj), false)
  t.eq(json.encode(v.empty), "[]")
  t.eq(json.encode(v.obj), "{}")
  t.eq(json.encode(json.decode("[null,null]")), "[null,null]")
  t.eq(#json.decode("[1,null,3]"), 3)
end)

t.test("invalid JSON is nil, message", function()
  local bad = {"", " ", "[1,", "[1 2]", "{\"a\" 1}", "{a:1}", "{\"a\":1,}", "[1,]", "01", "1.",
               ".5", "-", "1e", "tru", "nul", "\"abc", "\"a\nb\"", "\"\\x\"", "\"\\u12\"",
               "\"\\ud800\"", "\"\\udc00\"", "[1]x", "NaN", "Infinity", "{\"a\":1}}", "\"\\"}
  for _, s in ipairs(bad) do
    local v, err = json.decode(s)
    t.eq(v, nil, string.format("%q", s))
    t.match(err, "^invalid JSON: .* at byte %d+$", string.format("%q", s))
  end
  local _, err = json.decode("[1, @]")
  t.eq(err, "invalid JSON: unexpected character at byte 5")
  t.raises(function() json.decode(nil) end)
  t.raises(function() json.decode({}) end)
end)

t.test("interoperates with cjson", function()
  t.eq(json.null, cjson.null)
  t.eq(json.encode(cjson.decode('{"a":null}')), '{"a":null}')
  t.same(cjson.decode(json.encode({x = {1, 2}, y = "z"})), {x = {1, 2}, y = "z"})
  local s = '{"k":[1,2.5,"s",true,null,{"n":-3}]}'
  t.same(json.decode(s), cjson.decode(s))
end)

t.test("round trip of a large document", function()
  local doc = json.array()
  for i = 1, 2000 do
    doc[i] = {id = i, name = "item " .. i, tags = json.array({"a", "b"}), price = i / 4, note = "x\n\"y\""}
  end
  local s = json.encode(doc)
  local back = json.decode(s)
  t.same(back, doc)
  t.eq(#json.encode(back), #s)
end)

return t.done()
