/*
 * store.h - the process's SQLite database (WAL), one connection per thread,
 * and group commit: explicit durability shared by every caller waiting at
 * the same time.
 *
 * Connections run with synchronous=NORMAL, so a commit reaches the OS but
 * not the disk. Code whose acknowledgement depends on a commit takes a sync
 * ticket afterwards and waits for it (or, in an HTTP handler, is notified
 * when it is durable); one fdatasync of the WAL covers every ticket taken
 * before it started.
 */
#ifndef SKUDEMO_STORE_H
#define SKUDEMO_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>
#include <sqlite3.h>

/* Sets the process's database (creating parent directories) and opens this
 * thread's connection to it. Returns 0, or -1 with the reason in err (the
 * previous database, if any, stays in use). */
int store_open(const char *path, char *err, size_t errlen);

/* The process's database path, or NULL before store_open. */
const char *store_path(void);

/* Changes each time store_open switches to another database. */
unsigned store_generation(void);

/* This thread's connection, opened on first use (closed at thread exit).
 * NULL with the reason in err when no database is set or it cannot open. */
sqlite3 *store_db(char *err, size_t errlen);

/* A reset statement for sql from this thread's cache (prepared on a miss).
 * *more (when not NULL) is set to 1 if sql holds further statements after
 * the first. NULL with "store: <message>" in err. Give it back with
 * store_finish before any other call that may reuse it returns. */
sqlite3_stmt *store_prepare(const char *sql, size_t len, int *more, char *err, size_t errlen);

/* Resets and clears a statement from store_prepare (finalizes it if it was
 * not cached). */
void store_finish(sqlite3_stmt *st);

/* Steps st (from store_prepare, parameters bound) and pushes its rows as
 * an array of tables (column name to value, NULL absent), at most limit
 * (0: all). Gives the statement back in every case. Returns 0, or -1 with
 * "store: <message>" in err and nothing pushed; a Lua memory error is
 * raised after the statement is given back. */
int store_push_rows(lua_State *L, sqlite3_stmt *st, int limit, char *err, size_t errlen);

/* Runs one parameterless statement to completion. 0, or -1 with
 * "store: <message>" in err. */
int store_run(const char *sql, char *err, size_t errlen);

/* Set once, before threads start: called in the committing thread when a
 * connection that store_hook_at_commit marked next commits. */
void store_set_commit_hook(void (*fn)(void));
/* Marks this thread's current connection (the group's inside store.group,
 * whose commit happens on the committer thread) for the commit hook. */
void store_hook_at_commit(void);

/* ---- group commit ---------------------------------------------------- */

/* A ticket covering every commit made so far; wakes the syncer. */
uint64_t store_sync_request(void);

/* Blocks until that ticket is durable. */
void store_sync_wait(uint64_t ticket);

/* Calls fn(arg) once ticket is durable, from the syncer thread, and returns
 * 0; or returns 1 without calling it if the ticket already is durable (the
 * caller proceeds at once). */
int store_sync_notify(uint64_t ticket, void (*fn)(void *arg), void *arg);

/* Handler context: between begin and end, store_sync() (and store.sync())
 * in this thread records a ticket instead of blocking; end returns the
 * highest ticket recorded, or 0 if no sync was asked for. */
void store_defer_sync_begin(void);
uint64_t store_defer_sync_end(void);

/* Makes everything this thread committed so far durable: waits, or records
 * a ticket in a handler context. */
void store_sync(void);

/* Counters of the syncer, for tests and metrics. A round starts when the
 * syncer picks its target ticket and completes after its fdatasync. */
typedef struct store_sync_stats_t {
  uint64_t requested, synced;
  uint64_t rounds_started, rounds_completed;
  uint64_t failures;
} store_sync_stats_t;
void store_sync_stats(store_sync_stats_t *out);

/* Group transactions (store.group in Lua). fn(arg, ok) runs once group is
 * committed and durable (ok = 1) or failed (ok = 0), from the committer or
 * the syncer thread; it must not block. Returns 0, -1 without memory. */
typedef void (*store_group_cb)(void *arg, int ok);
int store_group_notify(uint64_t group, store_group_cb fn, void *arg);
/* Blocks until group is committed and durable: 1, or 0 if it failed. */
int store_group_wait(uint64_t group);
/* Between store_defer_sync_begin and its end: the highest group this thread
 * joined (0 if none), cleared by the call. */
uint64_t store_defer_group(void);

#endif
