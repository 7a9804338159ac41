-- pipeline.lua - the jobs that fulfil orders: what the state machine
-- (orders.lua) decides on each event, carried out one step per job.
--
--   event     an event from the webhook or the feed, through the state machine
--   accept    accept an order, then queue the guidance message
--   reply     send one buyer message (a template of replies.lua), once
--   analyze   task step 1: requirement -> optimized_prompt (text model)
--   generate  task steps 2-3: image model, images saved under DATA_DIR
--   upload    task step 4: attachments to the order; then step 5, the task log
--   deliver   tell the buyer and complete the order
--
-- Every job can run twice without harm (DESIGN.md rule 2): it first checks
-- what the store (and, where a crash could hide it, the platform) says is
-- done. Every job about an order first checks that automation still runs
-- for it: after a cancel, reject or dispute, pending jobs do nothing.
local pool, store, log, time, crypto, json, metrics =
  require "pool", require "store", require "log", require "time", require "crypto", require "json", require "metrics"
local settings, records, orders, replies, prompt, models, market, images, tasklog =
  require "settings", require "records", require "orders", require "replies", require "prompt",
  require "models", require "market", require "images", require "tasklog"

local P = {}

metrics.help("skudemo_uploads_total", "Attachment uploads by outcome (ok, failed).")

-- ---- job plumbing -------------------------------------------------------------

-- Which run of its job this is (1 the first; pool.lua counts claims).
local function attempt_of(job)
  return type(job) == "table" and tonumber(job.attempt) or 1
end

local function backoff(base, attempt)
  return math.floor(base * 2 ^ (math.max(attempt, 1) - 1) * (0.5 + math.random()))
end

-- Queues a job; within a transaction it commits with the caller's writes.
function P.submit(name, payload, key, delay)
  local attempts = math.max(settings.JOB_ATTEMPTS, settings.MODEL_ATTEMPTS) + 5
  return pool.submit(name, payload, {key = key, delay = delay, max_attempts = attempts})
end

-- A marketplace step failed: run the job again later (429, 5xx, network),
-- or give up when the failure is final or the attempts are spent (the job
-- is then dead: listed for a person, who can requeue it).
local function retry_or_giveup(job, failure, what, order_id, task_id)
  local attempt = attempt_of(job)
  records.note(order_id, what .. "_failed", failure.message, task_id)
  if failure.retry and attempt < settings.JOB_ATTEMPTS then
    pool.retry_in(failure.retry_after_ms or backoff(settings.JOB_RETRY_BASE_MS, attempt), what .. ": " .. failure.message)
  end
  if order_id then records.update_order(order_id, {needs_human = what .. " failed: " .. failure.message}) end
  pool.giveup(what .. ": " .. failure.message)
end

-- Our record of an order, or nil when automation must not act on it.
local function live_order(order_id, step)
  local order = order_id and records.order(order_id)
  if not order then return nil end
  if order.stopped == 1 then
    log.info("automation stopped for this order, step skipped", {order_id = order_id, step = step})
    return nil
  end
  return order
end

local function context()
  return {sku = settings.SERVICE_SKU_ID, agent_id = market.agent_id()}
end

-- ---- events ---------------------------------------------------------------------

-- Stops automation for an order and lists it for a person.
local function stop_order(order_id, state, reason)
  local order = records.order(order_id)
  records.update_order(order_id, {state = orders.advance(order and order.state, state), stopped = 1,
                                  needs_human = order and order.ours == 1 and reason or json.null})
  records.note(order_id, "stopped", reason)
end

-- Records an order that an event tells us about, if we do not know it yet.
local function known_order(order_id, envelope, ours)
  local p = envelope.payload or {}
  return records.ensure_order{
    order_id = order_id, ours = ours, service_sku_id = p.service_sku_id and tostring(p.service_sku_id),
    buyer_id = p.buyer_agent_id and tostring(p.buyer_agent_id), price = p.price, state = "pending_accept",
  }
end

-- Job `event` {event_id}: an event through the state machine.
function P.event(payload, job)
  local event = records.event(payload.event_id)
  if not event or type(event.envelope) ~= "table" then return end
  local envelope = event.envelope
  local order_id = records.event_order_id(envelope)
  if not order_id then return records.set_event_outcome(event.event_id, "ignored: no order id") end
  local order = records.order(order_id)
  local decision = orders.decide(envelope, order, context())
  local kind = envelope.event_type

  if decision.action == "ignore" then
    if kind == "order.received" and not order then known_order(order_id, envelope, false) end
    return records.set_event_outcome(event.event_id, "ignored: " .. decision.reason)
  end

  if decision.action == "accept" then
    store.transaction(function()
      if not records.order(order_id) then
        known_order(order_id, envelope, true)
        records.note(order_id, "received", {event_id = event.event_id})
      end
      P.submit("accept", {order_id = order_id}, "accept:" .. order_id)
      records.set_event_outcome(event.event_id, "accepting")
    end)
    return
  end

  if decision.action == "read_message" then
    return P.read_message(order_id, event, job)
  end

  -- record, archive, stop: our record follows the platform
  if not order then
    local p = envelope.payload or {}
    local ours = p.service_sku_id ~= nil and tostring(p.service_sku_id) == settings.SERVICE_SKU_ID
    order = known_order(order_id, envelope, ours)
  end
  store.transaction(function()
    if decision.action == "stop" then
      stop_order(order_id, decision.target, kind)
    elseif decision.action == "archive" then
      records.update_order(order_id, {state = orders.advance(order.state, decision.target), completed_at = time.now()})
      records.note(order_id, "confirmed", "the buyer confirmed; order archived as completed")
    else
      records.update_order(order_id, {state = orders.advance(order.state, decision.target)})
      records.note(order_id, kind:gsub("%.", "_"), nil)
    end
    records.set_event_outcome(event.event_id, decision.action)
  end)
end

-- ---- accept -----------------------------------------------------------------------

-- Job `accept` {order_id}: accept, then queue the guidance message. A 409
-- means the order was already accepted (or cancelled): go on from its real
-- status.
function P.accept(payload, job)
  local order_id = payload.order_id
  local order = live_order(order_id, "accept")
  if not order then return end
  if order.accepted_at then return end
  local status, failure = market.accept(order_id)
  if not status then return retry_or_giveup(job, failure, "accept", order_id) end
  if status == "pending_accept" then
    return retry_or_giveup(job, {retry = true, message = "the order is still pending_accept"}, "accept", order_id)
  end
  store.transaction(function()
    if status == "cancelled" or status == "in_dispute" then
      stop_order(order_id, status, "order " .. status .. " before we accepted it")
      return
    end
    records.update_order(order_id, {state = orders.advance(order.state, status), accepted_at = time.now()})
    records.note(order_id, "accepted", status)
    if status == "in_progress" then
      P.submit("reply", {order_id = order_id, key = "guidance:" .. order_id, template = "guidance"},
               "reply:guidance:" .. order_id)
    end
  end)
end

-- ---- buyer messages -----------------------------------------------------------------

-- Finds the message an event names among the order's messages on the
-- platform: by id when the event gives one, else the newest with the same
-- content not sent by us.
function P.find_message(messages, payload, agent_id)
  local wanted = payload.message_id or payload.id
  local found
  for _, m in ipairs(messages) do
    if type(m) == "table" then
      if wanted ~= nil then
        if tostring(m.id) == tostring(wanted) then return m end
      elseif m.content == payload.content and tostring(m.sender_id) ~= agent_id then
        found = m
      end
    end
  end
  return found
end

-- An order we have no record of: ask the platform whether it is ours.
local function adopt_order(order_id)
  local o, failure = market.order(order_id)
  if not o then return nil, failure end
  local sku = settings.SERVICE_SKU_ID
  local ours = sku ~= "" and (tostring(o.service_sku_id) == sku or tostring(o.listing_id) == sku)
  local order = records.ensure_order{order_id = order_id, ours = ours,
    service_sku_id = tostring(o.service_sku_id or o.listing_id), buyer_id = o.buyer_id and tostring(o.buyer_id),
    price = o.price, state = o.status or "pending_accept"}
  if ours then
    records.note(order_id, "received", "learnt from a message event")
    if o.status == "pending_accept" then P.submit("accept", {order_id = order_id}, "accept:" .. order_id) end
  end
  return order
end

-- message.received: read the message back from the platform (a message
-- that is not there costs nothing), extract the requirement, and let the
-- state machine decide.
function P.read_message(order_id, event, job)
  local envelope = event.envelope
  local p = envelope.payload
  local order = records.order(order_id)
  if not order then
    local failure
    order, failure = adopt_order(order_id)
    if not order and (failure.status == 403 or failure.status == 404) then
      return records.set_event_outcome(event.event_id, "ignored: no such order of ours (" .. failure.message .. ")")
    end
    if not order then return retry_or_giveup(job, failure, "read_order", order_id) end
  end
  if order.ours ~= 1 then return records.set_event_outcome(event.event_id, "ignored: other SKU") end
  if order.stopped == 1 then return records.set_event_outcome(event.event_id, "ignored: automation stopped") end

  local agent_id = market.agent_id()
  local messages, failure = market.messages(order_id)
  if not messages and (failure.status == 403 or failure.status == 404) then
    records.note(order_id, "forged_message", {event_id = event.event_id, error = failure.message})
    return records.set_event_outcome(event.event_id, "forged: " .. failure.message)
  end
  if not messages then return retry_or_giveup(job, failure, "read_message", order_id) end
  local message = P.find_message(messages, p, agent_id)
  if not message then
    records.note(order_id, "forged_message", {event_id = event.event_id})
    return records.set_event_outcome(event.event_id, "forged: no such message")
  end
  local sender = message.sender_id and tostring(message.sender_id)
  if sender == agent_id or (order.buyer_id and sender and sender ~= order.buyer_id) then
    return records.set_event_outcome(event.event_id, "ignored: not from the buyer")
  end
  local message_id = tostring(message.id or ("event-" .. event.event_id))
  local requirement = prompt.requirement(message.content, settings.MAX_REQUIREMENT_CHARS)

  local decision
  store.transaction(function()
    if records.get("message:" .. message_id) then
      decision = "duplicate"
      return
    end
    local current = records.order(order_id)
    decision = orders.on_message(requirement, current, records.order_tasks(order_id))
    if decision == "start_task" then
      local task_id = crypto.uuid()
      records.insert_task{task_id = task_id, order_id = order_id, source = "order", message_id = message_id,
                          original_input = requirement}
      records.update_order(order_id, {requirement = requirement, task_id = task_id})
      records.note(order_id, "requirement", requirement, task_id)
      P.submit("analyze", {task_id = task_id}, "analyze:" .. task_id)
    elseif decision == "guidance" or decision == "busy" or decision == "after_delivery" then
      local template = decision == "guidance" and "guidance_again" or decision
      P.submit("reply", {order_id = order_id, key = template .. ":" .. message_id, template = template,
                         vars = {requirement = requirement or "", state = current.state}},
               "reply:" .. template .. ":" .. message_id)
      records.note(order_id, "message", {decision = decision, message_id = message_id})
    end
    if decision ~= "wait_accept" then
      records.put("message:" .. message_id, decision)
      records.set_event_outcome(event.event_id, decision)
    end
  end)
  if decision == "wait_accept" then
    pool.retry_in(settings.ACCEPT_WAIT_MS, "the order is not accepted yet")
  end
end

-- ---- replies ----------------------------------------------------------------------------

-- Whether the platform shows more of our messages with this content than
-- we recorded as sent: then an earlier attempt did send it. Nil and the
-- failure when the platform cannot be asked.
local function already_on_platform(order_id, row, agent_id)
  local messages, failure = market.messages(order_id)
  if not messages then return nil, failure end
  local shown = 0
  for _, m in ipairs(messages) do
    if m.content == row.content and tostring(m.sender_id) == agent_id then shown = shown + 1 end
  end
  local sent = store.row("SELECT count(*) AS n FROM outbox WHERE order_id = ? AND content = ? AND sent_at IS NOT NULL",
                         order_id, row.content).n
  return shown > sent
end

-- Records an outbox message as on the platform.
local function mark_sent(order_id, key, row, message_id, found)
  store.transaction(function()
    records.outbox_sent(key, message_id)
    records.note(order_id, "message_sent", found and (row.template .. " (found on the platform)") or row.template)
    if row.template == "guidance" then records.update_order(order_id, {guidance_at = time.now()}) end
  end)
end

-- Sends the outbox message `key` once. Returns true when it is on the
-- platform; raises (retry) otherwise. A message an earlier attempt may
-- have sent (it crashed or lost the answer) is looked for first.
function P.send(job, order_id, key, template, vars)
  local row = records.outbox(key)
  if row and row.sent_at then return true end
  local agent_id = market.agent_id()
  if row then
    local found, failure = already_on_platform(order_id, row, agent_id)
    if found == nil then return retry_or_giveup(job, failure, "message", order_id) end
    if found then
      mark_sent(order_id, key, row, nil, true)
      return true
    end
  else
    local v = {order_id = order_id}
    for k, x in pairs(vars or {}) do v[k] = x end
    if v.requirement then v.requirement = prompt.truncate(v.requirement, 300) end
    row = records.outbox_prepare(key, order_id, template, replies.render(template, v))
  end
  local message, failure = market.send_message(order_id, row.content)
  if not message then return retry_or_giveup(job, failure, "message", order_id) end
  mark_sent(order_id, key, row, message.id and tostring(message.id))
  return true
end

-- Job `reply` {order_id, key, template, vars}: one buyer message.
function P.reply(payload, job)
  if not live_order(payload.order_id, "reply") then return end
  P.send(job, payload.order_id, payload.key, payload.template, payload.vars)
end

-- ---- the task pipeline ------------------------------------------------------------------

-- Creates an image task (the admin API or a buyer requirement) and queues
-- its first step. Call within a transaction to commit both together.
function P.create_task(t)
  local task_id = t.task_id or crypto.uuid()
  records.insert_task{task_id = task_id, order_id = t.order_id, source = t.source or "admin",
                      message_id = t.message_id, type = t.type, original_input = t.input}
  if t.order_id then records.note(t.order_id, "task", "created by " .. (t.source or "admin"), task_id) end
  P.submit("analyze", {task_id = task_id}, "analyze:" .. task_id)
  return task_id
end

-- Ends a task: status, reason, completion time. Its task-log line is
-- written after the transaction this runs in (tasklog.write), never while
-- it holds the store's write lock.
local function finish_task(task_id, status, error_message)
  records.update_task(task_id, {status = status, error_message = error_message or json.null,
                                completed_at = time.now()})
end

-- A task whose order stopped meanwhile ends here, its images kept.
local function task_order_stopped(task)
  if not task.order_id or task.source ~= "order" then return false end
  local order = records.order(task.order_id)
  if order and order.stopped == 1 then
    store.transaction(function()
      finish_task(task.task_id, "failed", "automation stopped: order " .. order.state)
      records.note(task.order_id, "task_stopped", order.state, task.task_id)
    end)
    tasklog.write(task.task_id)
    return true
  end
  return false
end

-- The task still to be worked on at `step`, or nil. A finished task whose
-- line a crash kept out of the task log gets it here.
local function task_at(task_id, step)
  local task = records.task(task_id)
  if task and not orders.task_active[task.status] and task.logged ~= 2 then tasklog.write(task_id) end
  if not task or not orders.task_active[task.status] then return nil end
  if task_order_stopped(task) then return nil end
  return task, task.step == step
end

-- A model call failed: retry with backoff and jitter while it is worth it,
-- else fail the task, tell the buyer, and leave the order in_progress.
local function model_failed(task, failure, step)
  local attempts = (task.model_attempts or 0) + 1
  records.update_task(task.task_id, {model_attempts = attempts})
  records.note(task.order_id, step .. "_failed", failure.message, task.task_id)
  if failure.retry and attempts < settings.MODEL_ATTEMPTS then
    local wait = backoff(settings.MODEL_RETRY_BASE_MS, attempts)
    if failure.retry_after_ms and failure.retry_after_ms > wait then wait = failure.retry_after_ms end
    pool.retry_in(wait, step .. ": " .. failure.message)
  end
  store.transaction(function()
    finish_task(task.task_id, "failed", step .. " failed: " .. failure.message)
    if task.order_id and task.source == "order" then
      P.submit("reply", {order_id = task.order_id, key = "generation_failed:" .. task.task_id,
                         template = "generation_failed",
                         vars = {task_id = task.task_id, reason = models.buyer_reason(failure)}},
               "reply:generation_failed:" .. task.task_id)
    end
  end)
  tasklog.write(task.task_id)
end

local function generation_params(analysis)
  local ratio = settings.IMAGE_ASPECT_RATIO
  if ratio == "auto" or ratio == "" then ratio = analysis and analysis.aspect_ratio or "1:1" end
  return {model = settings.IMAGE_MODEL, text_model = settings.TEXT_MODEL, count = 1, aspect_ratio = ratio,
          style = analysis and analysis.style or nil}
end

-- Job `analyze` {task_id}: step 1, the requirement into an optimized prompt.
function P.analyze(payload, job)
  local task, here = task_at(payload.task_id, "analyze")
  if not task then return end
  if not here then return P.submit(task.step, {task_id = task.task_id}, task.step .. ":" .. task.task_id) end
  local analysis, failure = models.analyze(task.original_input, task.type)
  if not analysis then return model_failed(task, failure, "analyze") end
  store.transaction(function()
    records.update_task(task.task_id, {optimized_prompt = analysis.optimized_prompt, status = "generating",
                                       step = "generate", model_attempts = 0,
                                       generation_params = generation_params(analysis)})
    records.note(task.order_id, "prompt", analysis.optimized_prompt, task.task_id)
    P.submit("generate", {task_id = task.task_id}, "generate:" .. task.task_id)
  end)
end

-- Job `generate` {task_id}: steps 2 and 3, the image model and the files.
function P.generate(payload, job)
  local task, here = task_at(payload.task_id, "generate")
  if not task then return end
  if not here then return P.submit(task.step, {task_id = task.task_id}, task.step .. ":" .. task.task_id) end
  local params = task.generation_params or generation_params(nil)
  -- images saved by an attempt that crashed before recording them are kept
  local paths = images.saved(task.task_id)
  if #paths == 0 then
    local started = time.mono()
    local urls, failure = models.draw(prompt.image_request(task), params.aspect_ratio)
    if not urls then return model_failed(task, failure, "generate") end
    local why
    paths, why = images.save(task.task_id, urls)
    if not paths then
      return model_failed(task, {retry = true, message = why, kind = "save"}, "generate")
    end
    params.latency_ms = time.mono() - started
  end
  params.count = #paths
  local to_order = task.order_id ~= nil
  store.transaction(function()
    records.update_task(task.task_id, {image_paths = json.array(paths), generation_params = params,
                                       status = "uploading", step = to_order and "upload" or "done"})
    records.note(task.order_id, "generated", {count = #paths, paths = paths}, task.task_id)
    if to_order then
      P.submit("upload", {task_id = task.task_id}, "upload:" .. task.task_id)
    else
      finish_task(task.task_id, "success")
    end
  end)
  if not to_order then tasklog.write(task.task_id) end
end

-- The attachment description: names the order, the task and the image, so
-- a retry can recognise an upload that happened before a crash.
function P.attachment_description(task, index, count)
  return string.format("Generated image %d of %d for order %s (task %s)", index, count, task.order_id, task.task_id)
end

-- Job `upload` {task_id}: step 4, each image as an attachment (once), then
-- step 5, the task's line; then the delivery. An upload an earlier attempt
-- began is looked for on the platform first (by its description).
function P.upload(payload, job)
  local task, here = task_at(payload.task_id, "upload")
  if not task then return end
  if not here then return P.submit(task.step, {task_id = task.task_id}, task.step .. ":" .. task.task_id) end
  local paths, order_id = task.image_paths or {}, task.order_id
  local on_platform
  for i, path in ipairs(paths) do
    local done = records.upload(task.task_id, i)
    if not (done and done.uploaded_at) then
      local description = P.attachment_description(task, i, #paths)
      local file, failure
      if not records.upload_begin(task.task_id, i, order_id, path) then
        if not on_platform then
          on_platform, failure = market.attachments(order_id)
          if not on_platform then return P.upload_failed(job, task, failure) end
        end
        for _, f in ipairs(on_platform) do
          if type(f) == "table" and f.description == description then file = f end
        end
      end
      if not file then
        file, failure = market.upload(order_id, {
          path = path, filename = string.format("%s-%d.%s", task.task_id, i, path:match("%.(%w+)$") or "png"),
          content_type = images.content_type(path), description = description,
        })
      end
      if not file then
        metrics.inc("skudemo_uploads_total", {outcome = "failed"})
        return P.upload_failed(job, task, failure)
      end
      metrics.inc("skudemo_uploads_total", {outcome = "ok"})
      records.upload_done(task.task_id, i, file.file_id and tostring(file.file_id))
      records.note(order_id, "uploaded", {file_id = file.file_id, path = path}, task.task_id)
    end
  end
  store.transaction(function()
    records.update_task(task.task_id, {step = "deliver"})
    finish_task(task.task_id, "success")
    P.submit("deliver", {task_id = task.task_id}, "deliver:" .. task.task_id)
  end)
  tasklog.write(task.task_id)
end

-- An upload failed: try again later while it is worth it; at the end the
-- task fails (images kept), the buyer is told, the order stays in_progress.
function P.upload_failed(job, task, failure)
  local attempt = attempt_of(job)
  records.note(task.order_id, "upload_failed", failure.message, task.task_id)
  if failure.retry and attempt < settings.JOB_ATTEMPTS then
    pool.retry_in(failure.retry_after_ms or backoff(settings.JOB_RETRY_BASE_MS, attempt), "upload: " .. failure.message)
  end
  store.transaction(function()
    finish_task(task.task_id, "failed", "upload failed: " .. failure.message)
    records.update_order(task.order_id, {needs_human = "upload failed: " .. failure.message})
    if task.source == "order" then
      P.submit("reply", {order_id = task.order_id, key = "upload_failed:" .. task.task_id, template = "upload_failed",
                         vars = {task_id = task.task_id, reason = "the attachment service is unavailable"}},
               "reply:upload_failed:" .. task.task_id)
    end
  end)
  tasklog.write(task.task_id)
end

-- Job `deliver` {task_id}: the delivered message, then complete (retried
-- on its own, never generating again). A person's task (admin API) for an
-- order delivers it too when the order is ours and in progress.
function P.deliver(payload, job)
  local task = records.task(payload.task_id)
  if not task or task.status ~= "success" or not task.order_id then return end
  local order_id = task.order_id
  local order = live_order(order_id, "deliver")
  if not order or order.ours ~= 1 then return end
  if order.task_id ~= task.task_id and task.source ~= "admin" then return end
  if order.state ~= "in_progress" and not (order.task_id == task.task_id and order.delivered_at) then return end
  local count = #(task.image_paths or {})
  local vars = {task_id = task.task_id, count = count, prompt = task.optimized_prompt or ""}
  P.send(job, order_id, "delivered:" .. task.task_id, "delivered", vars)
  if not order.delivered_at then
    records.update_order(order_id, {delivered_at = time.now(), task_id = task.task_id})
    records.note(order_id, "delivered", {count = count}, task.task_id)
  end
  if order.state ~= "in_progress" then return end
  local note = replies.render("delivery_note", {order_id = order_id, task_id = task.task_id, count = count})
  local status, failure = market.complete(order_id, note)
  if not status then return retry_or_giveup(job, failure, "complete", order_id, task.task_id) end
  store.transaction(function()
    if status == "cancelled" or status == "in_dispute" then
      stop_order(order_id, status, "order " .. status .. " at delivery")
    elseif status == "in_progress" then
      return
    else
      records.update_order(order_id, {state = orders.advance(order.state, status), needs_human = json.null})
      records.note(order_id, "completed", status, task.task_id)
    end
  end)
  if status == "in_progress" then
    retry_or_giveup(job, {retry = true, message = "the order is still in_progress after complete"}, "complete", order_id)
  end
end

P.jobs = {
  event = P.event,
  accept = P.accept,
  reply = P.reply,
  analyze = P.analyze,
  generate = P.generate,
  upload = P.upload,
  deliver = P.deliver,
}

return P
