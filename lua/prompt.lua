-- prompt.lua - from a buyer's words to the prompt the image model gets.
--
--   requirement(text)        the requirement in a buyer message, or nil and
--                            why it is not usable (then the buyer is guided)
--   analysis_request(req)    the text-model request: a system prompt asking
--                            for JSON with `optimized_prompt`
--   parse_analysis(content)  the text model's answer, validated (step 1 of
--                            the guide: a missing or empty field fails the task)
--   image_request(analysis)  the words sent to the image model
local json = require "json"

local P = {}

-- Words that on their own say nothing about an image: a message made only
-- of these (and punctuation) is a greeting or an acknowledgement.
P.filler_words = {}
for w in ([[
  hi hello hey hiya yo there greetings morning evening good thanks thank thx ty you
  ok okay k sure yes yeah yep no nope fine great cool nice awesome perfect
  please pls plz test testing ping done received got it sounds wonderful
  anything whatever something idk dunno lol bye cheers
]]):gmatch("%a+") do
  P.filler_words[w] = true
end

-- Collapses whitespace, drops control characters, trims.
function P.clean(text)
  if type(text) ~= "string" then return "" end
  text = text:gsub("[%z\1-\8\11\12\14-\31\127]", ""):gsub("%s+", " ")
  return (text:match("^%s*(.-)%s*$"))
end

-- Cuts s to at most max bytes without splitting a UTF-8 character.
function P.truncate(s, max)
  if #s <= max then return s end
  local cut = max
  while cut > 0 and (s:byte(cut + 1) or 0) & 0xC0 == 0x80 do cut = cut - 1 end
  return s:sub(1, cut)
end

-- Whether a code point is a letter for our purposes: ASCII letters and
-- digits, and non-ASCII characters outside the punctuation, symbol and
-- emoji blocks. CJK ideographs and Hangul count double (one says more).
local function letter_weight(cp)
  if cp < 128 then
    return (cp >= 65 and cp <= 90 or cp >= 97 and cp <= 122 or cp >= 48 and cp <= 57) and 1 or 0
  end
  if cp < 0xC0 or (cp >= 0x2000 and cp <= 0x2BFF) or (cp >= 0x3000 and cp <= 0x303F) or
     (cp >= 0xFE00 and cp <= 0xFE0F) or (cp >= 0xFF00 and cp <= 0xFF0F) or cp >= 0x1F000 then
    return 0
  end
  if (cp >= 0x3400 and cp <= 0x9FFF) or (cp >= 0xAC00 and cp <= 0xD7AF) then return 2 end
  return 1
end

-- The words of a text (runs of letters, lower-cased) and its letter count.
local function words_of(text)
  local words, letters, current = {}, 0, {}
  local function flush()
    if #current > 0 then words[#words + 1] = table.concat(current):lower() current = {} end
  end
  if not utf8.len(text) then
    for w in text:gmatch("[%w\128-\255]+") do words[#words + 1] = w:lower() letters = letters + #w end
    return words, letters
  end
  for _, cp in utf8.codes(text) do
    local weight = letter_weight(cp)
    if weight > 0 then
      letters = letters + weight
      current[#current + 1] = utf8.char(cp)
    else
      flush()
    end
  end
  flush()
  return words, letters
end

-- The requirement in a buyer message: cleaned text, or nil and a reason.
-- Usable means it names something to draw: at least three letters and at
-- least one word that is not a greeting or a thank-you.
function P.requirement(text, max_chars)
  local req = P.clean(text)
  if req == "" then return nil, "empty message" end
  local words, letters = words_of(req)
  if letters < 3 then return nil, "too short" end
  local meaningful = false
  for _, word in ipairs(words) do
    if not P.filler_words[word] then meaningful = true break end
  end
  if not meaningful then return nil, "greeting or acknowledgement only" end
  return P.truncate(req, max_chars or 2000)
end

P.system_prompt = [[
You turn a customer's request for an image into a prompt for an image generation model.
Answer with one JSON object and nothing else, with these fields:
  "optimized_prompt": a single detailed prompt in English for the image model: subject,
      composition, style, colours, lighting and mood; keep every colour, text and subject
      the customer asked for, and add nothing they ruled out;
  "style": a few words naming the visual style;
  "aspect_ratio": one of "1:1", "16:9", "9:16", "4:3", "3:4", chosen from the request
      (social media cover: "16:9"; story: "9:16"; otherwise "1:1");
  "summary": the request in one short sentence.
Do not refuse or ask questions: if the request is vague, make reasonable choices.]]

-- The text-model request body (without `model`) for a requirement.
function P.analysis_request(requirement, image_type)
  local user = "Customer request: " .. requirement
  if image_type and image_type ~= "" then user = user .. "\nImage type: " .. image_type end
  return {
    messages = {
      {role = "system", content = P.system_prompt},
      {role = "user", content = user},
    },
    response_format = {type = "json_object"},
  }
end

P.aspect_ratios = {["1:1"] = true, ["16:9"] = true, ["9:16"] = true, ["4:3"] = true, ["3:4"] = true}

-- Validates the text model's answer. Returns {optimized_prompt, style,
-- aspect_ratio, summary} or nil and why it is not acceptable.
function P.parse_analysis(content)
  if type(content) ~= "string" or content:match("^%s*$") then
    return nil, "the text model returned no content"
  end
  -- some models wrap JSON in a code fence despite response_format
  local body = content:match("^%s*```%w*%s*(.-)%s*```%s*$") or content
  local analysis = json.decode(body)
  if type(analysis) ~= "table" then
    return nil, "the text model's answer is not a JSON object"
  end
  local optimized = analysis.optimized_prompt
  if type(optimized) ~= "string" or P.clean(optimized) == "" then
    return nil, "the text model's answer has no optimized_prompt"
  end
  local result = {optimized_prompt = P.truncate(P.clean(optimized), 4000)}
  if type(analysis.style) == "string" then result.style = P.truncate(P.clean(analysis.style), 200) end
  if type(analysis.summary) == "string" then result.summary = P.truncate(P.clean(analysis.summary), 500) end
  if P.aspect_ratios[analysis.aspect_ratio] then result.aspect_ratio = analysis.aspect_ratio end
  return result
end

-- The words sent to the image model.
function P.image_request(analysis)
  return "Generate an image: " .. analysis.optimized_prompt
end

return P
