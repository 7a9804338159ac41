package.path = "tests/lib/?.lua;" .. package.path
local t = require "harness"
local crypto = require "crypto"

local function unhex(s)
  return (s:gsub("..", function(h) return string.char(tonumber(h, 16)) end))
end

t.test("codec is the same binding", function()
  local codec = require "codec"
  t.eq(codec.sha256("abc"), crypto.sha256("abc"))
  t.eq(codec.base64_encode("foo"), "Zm9v")
end)

t.test("base64 RFC 4648 vectors", function()
  local vectors = {{"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="},
                   {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}}
  for _, v in ipairs(vectors) do
    t.eq(crypto.base64_encode(v[1]), v[2])
    t.eq(crypto.base64_decode(v[2]), v[1])
  end
end)

t.test("base64 of every byte value round-trips", function()
  local all = {}
  for i = 0, 255 do all[#all + 1] = string.char(i) end
  local s = table.concat(all)
  for n = 0, 10 do
    local part = s:sub(1, 256 - n)
    t.eq(crypto.base64_decode(crypto.base64_encode(part)), part)
  end
  t.match(crypto.base64_encode(s), "^[A-Za-z0-9+/]+=*$")
end)

t.test("base64 decode: padding optional, whitespace ignored", function()
  t.eq(crypto.base64_decode("Zg"), "f")
  t.eq(crypto.base64_decode("Zm8"), "fo")
  t.eq(crypto.base64_decode("Zm9v\nYmFy\r\n"), "foobar")
  t.eq(crypto.base64_decode(" Zm9v YmE= "), "fooba")
  t.eq(crypto.base64_decode("Zm9vYg=\n="), "foob")
  t.eq(crypto.base64_decode("+/+/"), "\251\255\191")
end)

t.test("base64 decode: bad input is nil, message", function()
  for _, s in ipairs{"Z", "Zm9vY", "Zm9v!", "Zm-_", "Zg===", "Zg=", "Zm8==", "Zg==Zg==", "====",
                     "=", "Zm9v=", "\0\0\0\0"} do
    local v, err = crypto.base64_decode(s)
    t.eq(v, nil, string.format("%q", s))
    t.match(err, "^invalid base64", string.format("%q", s))
  end
  t.raises(function() crypto.base64_decode(nil) end)
  t.raises(function() crypto.base64_encode({}) end)
end)

t.test("sha256 vectors", function()
  t.eq(crypto.sha256("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
  t.eq(crypto.sha256(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
  t.eq(crypto.sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
  t.eq(crypto.sha256(string.rep("a", 1000000)),
    "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
  t.eq(crypto.sha256("a\0b"), crypto.sha256("a\0b"))
  t.ok(crypto.sha256("a\0b") ~= crypto.sha256("a"))
end)

t.test("hmac_sha256 RFC 4231 vectors", function()
  local big_key = string.rep("\170", 131)
  local cases = {
    {string.rep("\11", 20), "Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
    {"Jefe", "what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
    {string.rep("\170", 20), string.rep("\221", 50),
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
    {unhex("0102030405060708090a0b0c0d0e0f10111213141516171819"), string.rep("\205", 50),
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
    {big_key, "Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
    {big_key, "This is a test using a larger than block-size key and a larger than block-size data."
      .. " The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
  }
  for i, c in ipairs(cases) do t.eq(crypto.hmac_sha256(c[1], c[2]), c[3], "case " .. i) end
end)

t.test("hmac_sha256 with an empty key", function()
  t.eq(crypto.hmac_sha256("", ""), "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad")
  t.raises(function() crypto.hmac_sha256("k") end)
end)

t.test("equal", function()
  t.eq(crypto.equal("abc", "abc"), true)
  t.eq(crypto.equal("", ""), true)
  t.eq(crypto.equal("abc", "abd"), false)
  t.eq(crypto.equal("abc", "ab"), false)
  t.eq(crypto.equal("ab", "abc"), false)
  t.eq(crypto.equal("", "a"), false)
  t.eq(crypto.equal("a", ""), false)
  t.eq(crypto.equal("abcabc", "abc"), false)
  t.eq(crypto.equal("abc", "abcabc"), false)
  t.eq(crypto.equal("a\0", "a\1"), false)
  t.raises(function() crypto.equal("a", nil) end)
end)

t.test("random_bytes and random_hex", function()
  t.eq(#crypto.random_bytes(0), 0)
  t.eq(#crypto.random_bytes(32), 32)
  t.ok(crypto.random_bytes(16) ~= crypto.random_bytes(16))
  t.match(crypto.random_hex(16), "^%x+$")
  t.eq(#crypto.random_hex(16), 32)
  t.eq(crypto.random_hex(0), "")
  local h = crypto.random_hex(64)
  t.eq(h, h:lower())
  t.ok(crypto.random_hex(16) ~= crypto.random_hex(16))
  t.raises(function() crypto.random_bytes(-1) end)
  t.raises(function() crypto.random_hex("x") end)
  t.raises(function() crypto.random_bytes(1 << 30) end)
end)

t.test("uuid v4", function()
  local seen = {}
  for _ = 1, 200 do
    local u = crypto.uuid()
    t.match(u, "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$")
    t.eq(u, u:lower())
    t.eq(seen[u], nil)
    seen[u] = true
  end
end)

return t.done()
