-- Prompt shaping (lua/prompt.lua) and reply templates (lua/replies.lua).
package.path = "tests/lib/?.lua;" .. package.path
local t = require "harness"
local prompt, replies, json = require "prompt", require "replies", require "json"

t.test("a requirement is the cleaned message", function()
  t.eq(prompt.requirement("  a blue\n\ttech-style   cover image "), "a blue tech-style cover image")
  t.eq(prompt.requirement("一只蓝色的猫"), "一只蓝色的猫")
  t.eq(prompt.requirement("cat"), "cat")
end)

t.test("no usable requirement: empty, too short, greetings and thanks", function()
  for _, text in ipairs{"", "   ", "\n", "ok", "hi!", "Hello there", "thanks!!", "Thank you :)", "?!", "👍",
                        "ok thanks", 42} do
    t.eq(prompt.requirement(text), nil, tostring(text))
  end
  local _, why = prompt.requirement("hello")
  t.match(why, "greeting")
end)

t.test("a long requirement is cut on a character boundary", function()
  local req = prompt.requirement(string.rep("é", 3000), 2001)
  t.ok(#req <= 2001)
  t.ok(utf8.len(req), "valid UTF-8")
end)

t.test("control characters are dropped", function()
  t.eq(prompt.requirement("a red\0 fox\27[31m"), "a red fox[31m")
end)

t.test("the analysis request asks for JSON with optimized_prompt", function()
  local req = prompt.analysis_request("a blue cat", "social_media_visuals")
  t.same(req.response_format, {type = "json_object"})
  t.eq(req.messages[1].role, "system")
  t.match(req.messages[1].content, "optimized_prompt")
  t.match(req.messages[2].content, "a blue cat")
  t.match(req.messages[2].content, "social_media_visuals")
end)

t.test("a valid analysis", function()
  local a = prompt.parse_analysis(json.encode{optimized_prompt = " A blue cat, flat style ", style = "flat",
                                              aspect_ratio = "16:9"})
  t.eq(a.optimized_prompt, "A blue cat, flat style")
  t.eq(a.style, "flat")
  t.eq(a.aspect_ratio, "16:9")
  t.eq(prompt.parse_analysis('```json\n{"optimized_prompt": "x y"}\n```').optimized_prompt, "x y")
  t.eq(prompt.parse_analysis('{"optimized_prompt": "x", "aspect_ratio": "7:3"}').aspect_ratio, nil)
end)

t.test("an analysis without optimized_prompt fails the task", function()
  for _, content in ipairs{nil, "", "not json", "[1,2]", '{"prompt": "x"}', '{"optimized_prompt": ""}',
                           '{"optimized_prompt": "   "}', '{"optimized_prompt": 3}'} do
    local a, why = prompt.parse_analysis(content)
    t.eq(a, nil, tostring(content))
    t.ok(why)
  end
end)

t.test("the image request carries the optimized prompt", function()
  t.match(prompt.image_request{optimized_prompt = "a red fox"}, "a red fox")
end)

t.test("every reply template is sound", function()
  t.ok(replies.check())
  for name in pairs(replies.placeholders) do t.ok(replies.templates[name], name) end
end)

t.test("templates render their placeholders", function()
  t.match(replies.render("delivery_note", {order_id = "o1", task_id = "t1", count = 2}), "task t1")
  t.match(replies.render("generation_failed", {order_id = "o", task_id = "t", reason = "busy 100%"}), "busy 100%%")
  t.raises(function() replies.render("delivery_note", {order_id = "o"}) end, "needs {")
  t.raises(function() replies.render("no_such_template", {}) end, "no reply template")
end)

t.test("the check refuses unknown placeholders and empty templates", function()
  local saved = replies.templates.guidance
  replies.templates.guidance = "Hello {buyer_name}"
  local ok, why = replies.check()
  t.eq(ok, nil)
  t.match(why, "buyer_name")
  replies.templates.guidance = "  "
  t.eq(replies.check(), nil)
  replies.templates.guidance = saved
  t.ok(replies.check())
end)

return t.done()
