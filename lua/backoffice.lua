-- backoffice.lua - what a seller looks at: orders and their timelines, the
-- delivered images, what needs a human, health and metrics. One place for
-- these reads, shared by the admin page, /healthz, /metrics and the
-- inspection commands (`skudemo orders`, `order`, `tasks`, `jobs`).
local store, pool, host, json, metrics, fs, time =
  require "store", require "pool", require "host", require "json", require "metrics",
  require "fs", require "time"
local settings = require "settings"

local B = {}

local STOPPED = {cancelled = true, rejected = true, in_dispute = true}

-- Orders newest first; state filters by the platform status.
function B.orders(opts)
  opts = opts or {}
  local limit = math.min(tonumber(opts.limit) or 100, 1000)
  if opts.state then
    return store.query([[SELECT * FROM orders WHERE state = ?
                         ORDER BY created_at DESC, order_id LIMIT ?]], opts.state, limit)
  end
  return store.query("SELECT * FROM orders ORDER BY created_at DESC, order_id LIMIT ?", limit)
end

-- The image files of a task, as names under DATA_DIR/images (the only
-- place the admin page serves images from).
local function image_names(task)
  local names = {}
  local ok, paths = pcall(json.decode, task.image_paths or "[]")
  for _, p in ipairs(ok and type(paths) == "table" and paths or {}) do
    names[#names + 1] = tostring(p):match("([^/]+)$")
  end
  return names
end

local function image_entries(task)
  local out = {}
  for _, name in ipairs(image_names(task)) do
    out[#out + 1] = {name = name, url = "/admin/images/" .. name, prompt = task.optimized_prompt
      or task.original_input, requirement = task.original_input, task_id = task.task_id,
      order_id = task.order_id,
      at = task.completed_at or task.created_at}
  end
  return out
end

-- One order with its timeline, tasks and images; nil if unknown.
function B.order(order_id)
  local order = store.row("SELECT * FROM orders WHERE order_id = ?", order_id)
  if not order then return nil end
  local tasks = store.query("SELECT * FROM tasks WHERE order_id = ? ORDER BY created_at", order_id)
  local images = {}
  for _, task in ipairs(tasks) do
    for _, im in ipairs(image_entries(task)) do images[#images + 1] = im end
  end
  local timeline = store.query([[SELECT at, kind, detail, task_id FROM order_timeline
                                 WHERE order_id = ? ORDER BY id]], order_id)
  for _, e in ipairs(timeline) do e.failure = e.kind:find("failed") ~= nil or e.kind == "forged_message" end
  return {order = order, tasks = tasks, images = images, timeline = timeline}
end

-- Tasks newest first; failed = true for failures only.
function B.tasks(opts)
  opts = opts or {}
  local limit = math.min(tonumber(opts.limit) or 100, 1000)
  if opts.failed then
    return store.query("SELECT * FROM tasks WHERE status = 'failed' ORDER BY created_at DESC LIMIT ?", limit)
  end
  return store.query("SELECT * FROM tasks ORDER BY created_at DESC LIMIT ?", limit)
end

-- Delivered images, newest first.
function B.images(limit)
  local out = {}
  local rows = store.query([[SELECT * FROM tasks WHERE image_paths IS NOT NULL AND image_paths != '[]'
                             ORDER BY created_at DESC LIMIT ?]], limit or 60)
  for _, task in ipairs(rows) do
    for _, im in ipairs(image_entries(task)) do out[#out + 1] = im end
  end
  return out
end

-- Orders by platform status.
function B.order_counts()
  local counts, total = {}, 0
  for _, r in ipairs(store.query("SELECT state, COUNT(*) AS n FROM orders GROUP BY state")) do
    counts[r.state] = r.n
    total = total + r.n
  end
  return counts, total
end

-- What needs a person: stopped or flagged orders, dead jobs, failed tasks.
function B.attention()
  local orders = store.query([[SELECT order_id AS id, state AS status, needs_human AS reason, updated_at
                               FROM orders WHERE needs_human IS NOT NULL OR stopped = 1
                               ORDER BY updated_at DESC LIMIT 100]])
  for _, o in ipairs(orders) do
    if not o.reason and STOPPED[o.status] then o.reason = "order " .. o.status .. ": automation stopped" end
  end
  return {
    orders = json.array(orders),
    dead_jobs = json.array(pool.jobs{state = "dead", limit = 100}),
    failed_tasks = json.array(store.query([[SELECT task_id, order_id, error_message, step, created_at
                                            FROM tasks WHERE status = 'failed'
                                            ORDER BY created_at DESC LIMIT 100]])),
  }
end

-- The scripts' generation and the last reload's result.
function B.scripts()
  local s = host.status()
  return {generation = s.generation, state_generation = s.state_generation,
          loaded_at_ms = s.loaded_at_ms, loaded_at = time.iso(s.loaded_at_ms),
          last_reload_ok = s.last_reload_ok, last_error = s.last_error,
          reloads = s.reloads, reload_failures = s.reload_failures}
end

-- Everything the admin page's front page shows.
function B.overview()
  local counts, total = B.order_counts()
  local orders = B.orders{limit = 200}
  for _, o in ipairs(orders) do o.id, o.status = o.order_id, o.state end
  return {scripts = B.scripts(), jobs = pool.stats(), order_counts = counts, orders_total = total,
          orders = json.array(orders), images = json.array(B.images(60)), attention = B.attention()}
end

-- /healthz: 200 with the figures, or 503 with the reason when the store is
-- not usable. Nothing secret.
function B.health()
  local ok, err = pcall(store.row, "SELECT COUNT(*) AS n FROM kv")
  local body = {status = ok and "ok" or "unavailable", scripts = B.scripts(), now = time.iso()}
  if not ok then
    body.error = "store not usable: " .. tostring(err):match("^[^\n]*")
    return 503, body
  end
  body.jobs = pool.stats()
  -- newest first along the primary key: no scan of the whole events table
  local last = store.row([[SELECT received_at AS at FROM events WHERE source = 'webhook'
                           ORDER BY event_id DESC LIMIT 1]])
  body.last_webhook_at = last and last.at and time.iso(last.at) or json.null
  body.seconds_since_last_webhook = last and last.at and (time.now() - last.at) // 1000 or json.null
  return 200, body
end

-- /metrics text: the counters kept as things happen, plus gauges read now.
function B.metrics_text()
  metrics.help("skudemo_jobs", "Jobs in the pool by state.")
  for state, n in pairs(pool.stats()) do
    if state ~= "workers" and state ~= "busy" then metrics.set("skudemo_jobs", {state = state}, n) end
  end
  metrics.help("skudemo_orders", "Orders by platform status.")
  for state, n in pairs(B.order_counts()) do metrics.set("skudemo_orders", {state = state}, n) end
  metrics.help("skudemo_reloads_total", "Script reloads (SIGHUP), by result.")
  metrics.set("skudemo_scripts_generation", nil, host.generation())
  return metrics.render() .. B.http_metrics_text()
end

local function label(v)
  return (tostring(v):gsub('[\\"]', "\\%0"):gsub("\n", "\\n"))
end

-- The server's own counters (kept in C for every request) as Prometheus text.
function B.http_metrics_text()
  local stats = require("server").stats()
  local out = {"# HELP skudemo_http_requests_total HTTP requests by route and status.",
               "# TYPE skudemo_http_requests_total counter"}
  for _, r in ipairs(stats.requests) do
    out[#out + 1] = string.format('skudemo_http_requests_total{method="%s",route="%s",status="%s"} %d',
                                  label(r.method), label(r.route), label(r.status), r.count)
  end
  out[#out + 1] = "# HELP skudemo_http_request_duration_seconds Time from request to response."
  out[#out + 1] = "# TYPE skudemo_http_request_duration_seconds histogram"
  for _, b in ipairs(stats.latency.buckets) do
    local le = b.le == math.huge and "+Inf" or string.format("%g", b.le / 1000)
    out[#out + 1] = string.format('skudemo_http_request_duration_seconds_bucket{le="%s"} %d', le, b.count)
  end
  out[#out + 1] = string.format("skudemo_http_request_duration_seconds_sum %.6f", stats.latency.sum_ms / 1000)
  out[#out + 1] = string.format("skudemo_http_request_duration_seconds_count %d", stats.latency.count)
  return table.concat(out, "\n") .. "\n"
end

-- A safe path of a delivered image, or nil: only a plain file name that
-- exists directly under DATA_DIR/images.
function B.image_path(name)
  if type(name) ~= "string" or name ~= fs.safe_name(name) or name:sub(1, 1) == "." then return nil end
  local path = settings.value("DATA_DIR") .. "/images/" .. name
  local st = fs.stat(path)
  return st and st.type == "file" and path or nil
end

return B
