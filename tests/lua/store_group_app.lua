-- store_group_app.lua - jobs for store_group_test.lua: each joins the group
-- transaction of whoever else is writing at the same moment.
local store = require "store"

local jobs = {}

-- Inserts payload.n (ignored when already there) inside store.group.
function jobs.insert(payload)
  local new = store.group(function()
    return store.exec("INSERT OR IGNORE INTO grouped (n) VALUES (?)", payload.n) == 1
  end)
  store.exec("INSERT INTO outcomes (n, new) VALUES (?, ?)", payload.n, new and 1 or 0)
end

return {jobs = jobs}
