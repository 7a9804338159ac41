-- sandbox/db.lua - the sandbox's tables in its own SQLite file, and the
-- runtime settings the control API changes (shared by every thread through
-- the store, never through Lua state).
local store = require "store"

local db = {}

db.schema = {
  [[CREATE TABLE IF NOT EXISTS agents (
      id TEXT PRIMARY KEY, role TEXT NOT NULL, name TEXT NOT NULL, description TEXT,
      api_key TEXT NOT NULL UNIQUE, webhook_url TEXT, webhook_secret TEXT,
      balance REAL NOT NULL DEFAULT 0, last_heartbeat_ms INTEGER, created_at TEXT NOT NULL)]],
  [[CREATE TABLE IF NOT EXISTS listings (
      id TEXT PRIMARY KEY, seller_id TEXT NOT NULL, title TEXT NOT NULL, description TEXT NOT NULL,
      price REAL NOT NULL, status TEXT NOT NULL, inventory INTEGER, tags TEXT NOT NULL,
      category TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL)]],
  [[CREATE TABLE IF NOT EXISTS orders (
      id TEXT PRIMARY KEY, listing_id TEXT NOT NULL, buyer_id TEXT NOT NULL, seller_id TEXT NOT NULL,
      status TEXT NOT NULL, price REAL NOT NULL, requirement TEXT NOT NULL, delivery_note TEXT,
      cancel_reason TEXT, dispute_reason TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
      accepted_at TEXT, delivered_at TEXT, completed_at TEXT, cancelled_at TEXT,
      accept_deadline_at TEXT)]],
  [[CREATE INDEX IF NOT EXISTS orders_by_seller ON orders (seller_id, status)]],
  [[CREATE INDEX IF NOT EXISTS orders_by_buyer ON orders (buyer_id, status)]],
  [[CREATE TABLE IF NOT EXISTS messages (
      id TEXT PRIMARY KEY, order_id TEXT NOT NULL, sender_id TEXT NOT NULL, content TEXT NOT NULL,
      created_at TEXT NOT NULL)]],
  [[CREATE INDEX IF NOT EXISTS messages_by_order ON messages (order_id)]],
  [[CREATE TABLE IF NOT EXISTS attachments (
      id TEXT PRIMARY KEY, order_id TEXT NOT NULL, uploader_id TEXT NOT NULL, filename TEXT NOT NULL,
      content_type TEXT NOT NULL, size INTEGER NOT NULL, path TEXT NOT NULL, description TEXT,
      file_type TEXT NOT NULL, token TEXT NOT NULL, uploaded_at TEXT NOT NULL)]],
  [[CREATE INDEX IF NOT EXISTS attachments_by_order ON attachments (order_id)]],
  [[CREATE TABLE IF NOT EXISTS events (
      event_id INTEGER PRIMARY KEY AUTOINCREMENT, agent_id TEXT NOT NULL, event_type TEXT NOT NULL,
      order_id TEXT, envelope TEXT NOT NULL, created_at TEXT NOT NULL,
      delivery TEXT NOT NULL DEFAULT 'pending', acked_at TEXT)]],
  [[CREATE INDEX IF NOT EXISTS events_by_agent ON events (agent_id, event_id)]],
  [[CREATE TABLE IF NOT EXISTS deliveries (
      id INTEGER PRIMARY KEY AUTOINCREMENT, event_id INTEGER NOT NULL, copy INTEGER NOT NULL,
      attempt INTEGER NOT NULL, url TEXT, status INTEGER, error TEXT, took_ms INTEGER,
      at TEXT NOT NULL)]],
  [[CREATE INDEX IF NOT EXISTS deliveries_by_event ON deliveries (event_id, copy)]],
  [[CREATE TABLE IF NOT EXISTS faults (
      id INTEGER PRIMARY KEY AUTOINCREMENT, method TEXT, route TEXT NOT NULL, kind TEXT,
      mode TEXT, status INTEGER, delay_ms INTEGER NOT NULL DEFAULT 0, retry_after INTEGER,
      body TEXT, remaining INTEGER NOT NULL)]],
  [[CREATE TABLE IF NOT EXISTS calls (
      id INTEGER PRIMARY KEY AUTOINCREMENT, method TEXT NOT NULL, route TEXT NOT NULL,
      path TEXT NOT NULL, status INTEGER NOT NULL, order_id TEXT, kind TEXT, agent_id TEXT,
      at TEXT NOT NULL)]],
  [[CREATE INDEX IF NOT EXISTS calls_by_order ON calls (order_id)]],
  [[CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT)]],
}

-- Creates the tables that are missing.
function db.migrate()
  for _, sql in ipairs(db.schema) do store.exec(sql) end
end

-- A runtime setting (string), or default.
function db.setting(name, default)
  local row = store.row("SELECT value FROM settings WHERE name = ?", name)
  if row and row.value ~= nil then return row.value end
  return default
end

function db.setting_int(name, default)
  return math.tointeger(tonumber(db.setting(name))) or default
end

function db.set_setting(name, value)
  store.exec("INSERT INTO settings (name, value) VALUES (?, ?) "
             .. "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
             name, value ~= nil and tostring(value) or nil)
end

return db
