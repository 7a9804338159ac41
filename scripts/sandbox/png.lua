-- sandbox/png.lua - a small pure-Lua PNG encoder for the sandbox's image model.
--
-- Pictures are indexed-colour PNGs (a palette of up to 16 colours, packed
-- 1, 2 or 4 bits a pixel), compressed as a zlib stream of stored deflate
-- blocks. Few colours keep the raw data small, so CRC-32 and Adler-32 in
-- Lua stay cheap even when many images are drawn at once.
--
--   local png = require "sandbox.png"
--   local bytes = png.encode(w, h, {{0,0,255}, {255,255,0}}, function(x, y) return 0 end)
local png = {}

local crc_table = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if c & 1 == 1 then c = 0xEDB88320 ~ (c >> 1) else c = c >> 1 end
  end
  crc_table[i] = c
end

-- CRC-32 (the one PNG chunks and zlib's gzip use) of s.
function png.crc32(s)
  local crc = 0xFFFFFFFF
  local byte = string.byte
  for i = 1, #s do
    crc = crc_table[(crc ~ byte(s, i)) & 0xFF] ~ (crc >> 8)
  end
  return crc ~ 0xFFFFFFFF
end

-- Adler-32 (the zlib trailer) of s.
function png.adler32(s)
  local a, b = 1, 0
  local byte = string.byte
  local n = #s
  local i = 1
  while i <= n do
    local last = math.min(i + 5551, n)  -- 5552 bytes cannot overflow before the modulo
    for j = i, last do
      a = a + byte(s, j)
      b = b + a
    end
    a, b = a % 65521, b % 65521
    i = last + 1
  end
  return (b << 16) | a
end

local function u32(n)
  return string.pack(">I4", n & 0xFFFFFFFF)
end

local function chunk(kind, data)
  return u32(#data) .. kind .. data .. u32(png.crc32(kind .. data))
end

-- A zlib stream holding data in stored (uncompressed) deflate blocks.
function png.zlib_stored(data)
  local parts = {"\x78\x01"}
  local n = #data
  local i = 1
  repeat
    local len = math.min(65535, n - i + 1)
    local final = (i + len > n) and 1 or 0
    parts[#parts + 1] = string.pack("<BI2I2", final, len, len ~ 0xFFFF)
    parts[#parts + 1] = data:sub(i, i + len - 1)
    i = i + len
  until i > n
  parts[#parts + 1] = u32(png.adler32(data))
  return table.concat(parts)
end

local function bit_depth_for(colours)
  if colours <= 2 then return 1 elseif colours <= 4 then return 2 end
  return 4
end

-- Encodes a w x h picture. palette: a list of {r, g, b} (1 to 16 colours);
-- pixel(x, y) returns a 0-based palette index (x, y from 0). Returns the
-- PNG file's bytes.
function png.encode(w, h, palette, pixel)
  assert(w >= 1 and h >= 1 and w <= 4096 and h <= 4096, "image size out of range")
  assert(#palette >= 1 and #palette <= 16, "palette must hold 1 to 16 colours")
  local depth = bit_depth_for(#palette)
  local per_byte = 8 // depth
  local rows = {}
  local char = string.char
  for y = 0, h - 1 do
    local row = {"\0"}  -- filter type 0 (none)
    local acc, filled = 0, 0
    for x = 0, w - 1 do
      acc = (acc << depth) | pixel(x, y)
      filled = filled + 1
      if filled == per_byte then
        row[#row + 1] = char(acc)
        acc, filled = 0, 0
      end
    end
    if filled > 0 then row[#row + 1] = char(acc << (depth * (per_byte - filled))) end
    rows[#rows + 1] = table.concat(row)
  end
  local plte = {}
  for i, c in ipairs(palette) do plte[i] = char(c[1], c[2], c[3]) end
  return "\137PNG\r\n\26\n"
    .. chunk("IHDR", string.pack(">I4I4BBBBB", w, h, depth, 3, 0, 0, 0))
    .. chunk("PLTE", table.concat(plte))
    .. chunk("IDAT", png.zlib_stored(table.concat(rows)))
    .. chunk("IEND", "")
end

return png
