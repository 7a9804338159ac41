-- sandbox/picture.lua - what the sandbox's image model draws for a prompt.
--
-- Deterministic: the first colour named in the prompt fills the background
-- (so it is the dominant colour), a second named colour (or a shade of the
-- first) draws a shape in the middle, and a thin band along the bottom keeps
-- the picture from being flat. The size follows the aspect ratio with the
-- long side at picture.LONG_SIDE pixels.
local png = require "sandbox.png"

local picture = {LONG_SIDE = 256}

-- Colour words the model understands, in RGB.
picture.colours = {
  red = {220, 30, 30}, green = {30, 160, 60}, blue = {30, 80, 220},
  yellow = {245, 210, 40}, orange = {245, 140, 20}, purple = {130, 50, 170},
  pink = {245, 130, 180}, black = {15, 15, 15}, white = {245, 245, 245},
  gray = {128, 128, 128}, grey = {128, 128, 128}, brown = {120, 75, 35},
  cyan = {30, 200, 220}, magenta = {220, 40, 200}, teal = {20, 128, 128},
  navy = {20, 30, 100}, gold = {212, 175, 55}, silver = {192, 192, 200},
  beige = {230, 215, 180}, violet = {140, 90, 220}, turquoise = {60, 210, 200},
  lime = {150, 230, 40}, maroon = {110, 20, 30},
}
-- The background when the prompt names no colour.
picture.default_colour = "slate"
picture.colours.slate = {70, 90, 110}

-- Width and height for an aspect ratio "W:H" (nil when malformed).
function picture.size(aspect_ratio)
  local w, h = tostring(aspect_ratio or "1:1"):match("^%s*(%d+)%s*:%s*(%d+)%s*$")
  w, h = tonumber(w), tonumber(h)
  if not w or w < 1 or h < 1 or w > 100 or h > 100 then return nil end
  if w >= h then
    return picture.LONG_SIDE, math.max(1, math.floor(picture.LONG_SIDE * h / w + 0.5))
  end
  return math.max(1, math.floor(picture.LONG_SIDE * w / h + 0.5)), picture.LONG_SIDE
end

-- The colour names in text, in the order they appear (each once).
function picture.colours_named(text)
  local found, seen = {}, {}
  for word in tostring(text):lower():gmatch("%a+") do
    if picture.colours[word] and word ~= picture.default_colour then
      local canonical = word == "grey" and "gray" or word
      if not seen[canonical] then
        seen[canonical] = true
        found[#found + 1] = canonical
      end
    end
  end
  return found
end

-- The shape the prompt asks for: "square", "triangle" or "circle".
function picture.shape_named(text)
  local t = tostring(text):lower()
  if t:find("%f[%a]squares?%f[%A]") or t:find("%f[%a]box") then return "square" end
  if t:find("%f[%a]triangle") or t:find("%f[%a]mountain") then return "triangle" end
  return "circle"
end

local function shade(rgb, toward, amount)
  local out = {}
  for i = 1, 3 do out[i] = math.floor(rgb[i] + (toward[i] - rgb[i]) * amount + 0.5) end
  return out
end

local function luminance(rgb)
  return 0.299 * rgb[1] + 0.587 * rgb[2] + 0.114 * rgb[3]
end

local function contrast_shade(rgb, amount)
  if luminance(rgb) < 110 then return shade(rgb, {255, 255, 255}, amount) end
  return shade(rgb, {0, 0, 0}, amount)
end

local function inside(shape, x, y, cx, cy, r)
  if shape == "square" then
    return math.abs(x - cx) <= r and math.abs(y - cy) <= r
  elseif shape == "triangle" then
    local top, bottom = cy - r, cy + r
    if y < top or y > bottom then return false end
    local half = r * (y - top) / (bottom - top)
    return math.abs(x - cx) <= half
  end
  local dx, dy = x - cx, y - cy
  return dx * dx + dy * dy <= r * r
end

local cache = {}  -- drawn pictures by description: a per-thread cache only

-- Draws the picture for a prompt at an aspect ratio. Returns the PNG bytes
-- and a description {width, height, colour, rgb, accent, shape}; nil and a
-- message when the aspect ratio is malformed.
function picture.draw(prompt, aspect_ratio)
  local w, h = picture.size(aspect_ratio)
  if not w then return nil, "aspect_ratio must look like \"16:9\"" end
  local named = picture.colours_named(prompt)
  local main = named[1] or picture.default_colour
  local bg = picture.colours[main]
  local accent = named[2] and picture.colours[named[2]] or contrast_shade(bg, 0.55)
  local band = contrast_shade(bg, 0.3)
  local shape = picture.shape_named(prompt)
  local info = {width = w, height = h, colour = main, rgb = bg, accent = named[2], shape = shape}
  local key = table.concat({w, h, main, named[2] or "", shape}, "/")
  if cache[key] then return cache[key], info end

  local cx, cy = (w - 1) / 2, (h - 1) / 2 - h * 0.05
  local r = math.min(w, h) * 0.28
  local band_top = math.floor(h * 0.92)
  local bytes = png.encode(w, h, {bg, accent, band}, function(x, y)
    if y >= band_top then return 2 end
    if inside(shape, x, y, cx, cy, r) then return 1 end
    return 0
  end)
  cache[key] = bytes
  return bytes, info
end

return picture
