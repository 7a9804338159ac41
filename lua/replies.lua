-- replies.lua - every text skudemo sends to a buyer, as templates.
--
-- Change a text here and send SIGHUP (or `systemctl reload skudemo`): the
-- next buyer sees it. `{name}` is replaced by a value the fulfillment code
-- supplies; the names each template may use are listed beside it, and the
-- reload self-check refuses a template that uses any other name.
local R = {}

R.templates = {
  -- After accepting an order, and again when a message holds no usable
  -- requirement. {order_id}
  guidance = "Thanks for your order! Please reply in this order's messages with your image "
    .. "requirements: the subject, style, colours and any text to include, e.g. "
    .. "\"a blue tech-style cover image with a glowing circuit pattern\". "
    .. "We will generate the image and deliver it here as an attachment.",

  -- A message arrived that we could not read a requirement from. {order_id}
  guidance_again = "Sorry, we could not find an image requirement in your message. Please "
    .. "describe the image you want (subject, style, colours), e.g. "
    .. "\"a blue tech-style cover image\".",

  -- The image is uploaded to the order. {order_id} {task_id} {count} {prompt}
  delivered = "Your image is ready and attached to this order ({count} file(s)). "
    .. "Please take a look and confirm the order if you are happy with it.",

  -- The `delivery_note` sent with complete. {order_id} {task_id} {count}
  delivery_note = "Delivered {count} generated image(s) as attachments (task {task_id}).",

  -- The image model could not make the image. {order_id} {task_id} {reason}
  generation_failed = "Sorry, we could not generate your image this time ({reason}). "
    .. "Your order stays open: reply with your requirement again to retry, or we will "
    .. "follow up shortly.",

  -- The image was made but could not be attached. {order_id} {task_id} {reason}
  upload_failed = "Your image was generated but we could not attach it to the order "
    .. "({reason}). Your order stays open and we will deliver it shortly.",

  -- A new requirement while the image for the first one is still being made.
  -- {order_id} {requirement}
  busy = "We are still working on your first requirement; your image will be attached "
    .. "here shortly. Once it is delivered you can confirm the order.",

  -- A message after the image was delivered (one image per order).
  -- {order_id} {state}
  after_delivery = "Your image has already been delivered as an attachment to this order. "
    .. "If it suits you, please confirm the order; for a different image, please place "
    .. "a new order.",
}

-- The placeholders each template may use.
R.placeholders = {
  guidance = {"order_id"},
  guidance_again = {"order_id"},
  delivered = {"order_id", "task_id", "count", "prompt"},
  delivery_note = {"order_id", "task_id", "count"},
  generation_failed = {"order_id", "task_id", "reason"},
  upload_failed = {"order_id", "task_id", "reason"},
  busy = {"order_id", "requirement"},
  after_delivery = {"order_id", "state"},
}

-- The text of template `name` with `{placeholders}` filled from vars.
-- An unknown template or a missing value raises (a bug, not a buyer's doing).
function R.render(name, vars)
  local template = R.templates[name]
  if type(template) ~= "string" then error("no reply template '" .. tostring(name) .. "'", 2) end
  vars = vars or {}
  return (template:gsub("{([%w_]+)}", function(key)
    local v = vars[key]
    if v == nil then error("reply template '" .. name .. "' needs {" .. key .. "}", 3) end
    return tostring(v)
  end))
end

-- Checks every template: present, a non-empty string, only its own
-- placeholders, at most 2000 characters (the platform's message limit).
-- Returns true, or nil and the first problem.
function R.check()
  for name, allowed in pairs(R.placeholders) do
    local template = R.templates[name]
    if type(template) ~= "string" or template:match("^%s*$") then
      return nil, "reply template '" .. name .. "' is missing or empty"
    end
    if #template > 2000 then return nil, "reply template '" .. name .. "' is over 2000 characters" end
    local ok = {}
    for _, p in ipairs(allowed) do ok[p] = true end
    for key in template:gmatch("{([%w_]+)}") do
      if not ok[key] then
        return nil, "reply template '" .. name .. "' uses unknown placeholder {" .. key .. "}"
      end
    end
  end
  return true
end

return R
