-- Images on disk (lua/images.lua), the task log record (lua/tasklog.lua),
-- .env writing (lua/dotenv.lua) and the marketplace's failure rules
-- (lua/market.lua).
package.path = "tests/lib/?.lua;tests/lua/?.lua;" .. package.path
local t = require "harness"
local config, json, fs, crypto, server = require "config", require "json", require "fs", require "crypto", require "server"

local dir = t.tmpdir("fulfillment-files")
config.set("DATA_DIR", dir)
local images, tasklog, dotenv, market = require "images", require "tasklog", require "dotenv", require "market"
local files_app = require "fulfillment_files_app"
local srv = assert(server.start{module = "fulfillment_files_app", host = "127.0.0.1", port = 0, threads = 1})
local base = "http://127.0.0.1:" .. srv.port

t.test("data URLs decode with their MIME type", function()
  local mime, bytes = images.decode_data_url("data:image/png;base64," .. crypto.base64_encode(files_app.png))
  t.eq(mime, "image/png")
  t.eq(bytes, files_app.png)
  t.eq(images.decode_data_url("data:image/jpeg;base64,/9j/4AAQ"), "image/jpeg")
  t.eq(images.decode_data_url("data:text/plain,hello"), nil)
  t.eq(images.decode_data_url("data:image/png;base64,!!!"), nil)
end)

t.test("images are saved under DATA_DIR/images, data URLs and plain URLs alike", function()
  local paths = assert(images.save("task-a", {
    "data:image/png;base64," .. crypto.base64_encode(files_app.png),
    base .. "/image.png",
  }))
  t.same(paths, {dir .. "/images/task-a-1.png", dir .. "/images/task-a-2.png"})
  t.eq(fs.read(paths[1]), files_app.png)
  t.eq(fs.read(paths[2]), files_app.png)
  t.same(images.saved("task-a"), paths)
  t.same(images.saved("task-b"), {})
  t.eq(images.content_type(paths[1]), "image/png")
end)

t.test("an image that cannot be had is a failure, not a file", function()
  local paths, why = images.save("task-c", {base .. "/missing.png"})
  t.eq(paths, nil)
  t.match(why, "404")
  paths, why = images.save("task-d", {"ftp://example/x.png"})
  t.eq(paths, nil)
  t.match(why, "unknown kind")
  t.eq(fs.exists(dir .. "/images/task-c-1.part"), false)
end)

t.test("a task's record has the guide's fields", function()
  local record = tasklog.record{task_id = "t1", original_input = "a cat", status = "failed", created_at = 0,
                                error_message = "model down", source = "admin"}
  for _, field in ipairs{"task_id", "order_id", "original_input", "optimized_prompt", "generation_params",
                         "image_paths", "status", "error_message", "created_at", "completed_at"} do
    t.ok(record[field] ~= nil, field)
  end
  t.eq(record.order_id, json.null)
  t.eq(record.created_at, "1970-01-01T00:00:00.000Z")
  t.eq(json.encode(record.image_paths), "[]")
end)

t.test(".env lines are replaced in place or added", function()
  t.eq(dotenv.set_text("A=1\nB=2\n", "B", "3"), "A=1\nB=3\n")
  t.eq(dotenv.set_text("A=1\n# B=old\n", "B", "3"), "A=1\n# B=old\nB=3\n")
  t.eq(dotenv.set_text("export B=2\n", "B", "x"), "B=x\n")
  t.eq(dotenv.set_text("", "B", "a b"), 'B="a b"\n')
  t.eq(dotenv.set_text("A=1", "C", 'q"uote'), 'A=1\nC="q\\"uote"\n')
end)

t.test("marketplace failures: 429, 5xx and network errors are retried, other 4xx never", function()
  local function res(status, body, headers)
    return {status = status, body = json.encode(body or {}), headers = headers or {}}
  end
  t.eq(market.failure(res(429, {}, {["retry-after"] = "2"})).retry_after_ms, 2000)
  for _, s in ipairs{429, 500, 502, 503} do t.eq(market.failure(res(s)).retry, true, s) end
  for _, s in ipairs{400, 401, 403, 404, 409, 422} do t.eq(market.failure(res(s)).retry, false, s) end
  t.eq(market.failure(nil, "timeout").retry, true)
  t.match(market.failure(res(422, {success = false, error = {code = "content_policy_violation", message = "no"}})).message,
          "422: no")
  t.match(market.failure(res(404, {detail = "Order not found"})).message, "Order not found")
end)

srv:stop()
return t.done()
