-- tasklog.lua - DATA_DIR/image_tasks.jsonl, one line per finished task,
-- success or failure, with the guide's fields (DESIGN.md rule 5).
local fs, json, time = require "fs", require "json", require "time"
local settings, records = require "settings", require "records"

local M = {}

function M.path()
  return settings.DATA_DIR .. "/image_tasks.jsonl"
end

local function iso(ms)
  return ms and time.iso(ms) or json.null
end

-- The guide's task record for a task row (records.task). Pure.
function M.record(task)
  return {
    task_id = task.task_id,
    order_id = task.order_id or json.null,
    original_input = task.original_input,
    optimized_prompt = task.optimized_prompt or json.null,
    generation_params = task.generation_params or json.null,
    image_paths = json.array(task.image_paths or {}),
    status = task.status,
    error_message = task.error_message or json.null,
    created_at = iso(task.created_at),
    completed_at = iso(task.completed_at),
    type = task.type or json.null,
    source = task.source,
  }
end

-- Appends the task's line once. A crash between the append and the mark
-- leaves `logged = 1`; the next call then looks for the line before writing.
function M.write(task_id)
  local task = records.task(task_id)
  if not task or task.logged == 2 then return end
  if task.logged == 1 then
    local text = fs.read(M.path()) or ""
    if text:find('"task_id":"' .. task_id .. '"', 1, true) then
      records.update_task(task_id, {logged = 2})
      return
    end
  end
  records.update_task(task_id, {logged = 1})
  local ok, err = fs.append_line(M.path(), json.encode(M.record(task)))
  if not ok then error("cannot write " .. M.path() .. ": " .. tostring(err)) end
  records.update_task(task_id, {logged = 2})
end

return M
