"""The guide's own design, as its skeleton says to fill it in: the FastAPI
webhook deduplicates by event_id, records the event durably (SQLite,
synchronous=FULL: one fsync per event) and hands the work to a background
task. Used by `make bench` as the peer skudemo is compared with."""
import json
import os
import sqlite3
import threading

from fastapi import BackgroundTasks, FastAPI, HTTPException, Request

app = FastAPI()
SERVICE_SKU_ID = os.getenv("SERVICE_SKU_ID", "")
DB_PATH = os.getenv("BENCH_STATE_DB", "state/webhook_state.db")
os.makedirs(os.path.dirname(DB_PATH) or ".", exist_ok=True)
db = sqlite3.connect(DB_PATH, check_same_thread=False, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=FULL")
db.execute("CREATE TABLE IF NOT EXISTS events (event_id INTEGER PRIMARY KEY, "
           "event_type TEXT, body TEXT, handled INTEGER DEFAULT 0)")
lock = threading.Lock()


def handle_order_event(event: dict):
    # 2) order.received: accept + guidance message; 3) message.received: ...
    # (the fulfillment itself; for an event of another SKU there is nothing to do)
    payload = event.get("payload") or {}
    if event.get("event_type") == "order.received" and payload.get("service_sku_id") != SERVICE_SKU_ID:
        with lock:
            db.execute("UPDATE events SET handled = 1 WHERE event_id = ?", (event["event_id"],))


@app.post("/api/v1/webhook/orders")
async def order_webhook(request: Request, bg: BackgroundTasks):
    try:
        event = await request.json()
    except Exception:
        raise HTTPException(status_code=400, detail="invalid JSON")
    event_id = event.get("event_id") if isinstance(event, dict) else None
    if not isinstance(event_id, int):
        raise HTTPException(status_code=400, detail="event_id must be an integer")
    # 1) Idempotency check (deduplicate by event_id), recorded durably
    with lock:
        cur = db.execute("INSERT OR IGNORE INTO events (event_id, event_type, body) VALUES (?, ?, ?)",
                         (event_id, event.get("event_type"), json.dumps(event)))
    duplicate = cur.rowcount == 0
    if not duplicate:
        bg.add_task(handle_order_event, event)
    return {"success": True, "event_type": event.get("event_type"), "event_id": event_id,
            "duplicate": duplicate}


@app.get("/hello")
def hello():
    return "ok"
