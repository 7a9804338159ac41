/*
 * pool.c - the durable worker pool and the Lua `pool` binding.
 *
 * A job is a row of `jobs`; a worker claims the oldest due one with a
 * single UPDATE ... RETURNING (so two workers, or two processes, never
 * claim the same job), runs it in its own Lua state under the job time
 * limit and writes the outcome, followed by a group-commit sync.
 *
 * Workers start on demand: when a worker claims a job and finds every
 * worker busy, it starts another (up to the pool's size), so a burst of
 * jobs fans out quickly. Idle workers wait on a condition variable; one of
 * them (the watcher) wakes for the next due job or after POOL_POLL_MS,
 * the others when work is submitted, when a job they saw falls due before
 * the watcher wakes, or when they have idled POOL_IDLE_MS, at which point
 * they leave. The last worker stays to keep watch but frees its Lua state.
 */
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "clock.h"
#include "config.h"
#include "host.h"
#include "log.h"
#include "pool.h"
#include "store.h"

#define POOL_ERR 512
#define POOL_MESSAGE_MAX 2000        /* bytes of an error kept in last_error */
#define POOL_TRACE_MAX 4096
#define POOL_START_WORKERS 2
#define POOL_DELAY_MAX 1000000000000LL   /* ms (about 30 years): bounds a requested delay */

static const char pool_schema_sql[] =
    "CREATE TABLE IF NOT EXISTS jobs ("
    " id INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL,"
    " payload TEXT,"
    " state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'dead')),"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " max_attempts INTEGER NOT NULL,"
    " run_at INTEGER NOT NULL,"
    " key TEXT UNIQUE,"
    " last_error TEXT,"
    " created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL,"
    " started_at INTEGER,"
    " finished_at INTEGER);"
    "CREATE INDEX IF NOT EXISTS jobs_state_run_at ON jobs (state, run_at);";

static const char pool_claim_sql[] =
    "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = ?1, updated_at = ?1"
    " WHERE id = (SELECT id FROM jobs WHERE state = 'queued' AND run_at <= ?1"
    "             ORDER BY run_at, id LIMIT 1)"
    " RETURNING id, name, payload, attempts, max_attempts, key";

typedef struct pool_job {
  long long id, attempt, max_attempts;
  char *name, *payload, *key;
  char module[128];
} pool_job;

/* Why a job failed, read from its error value. */
typedef struct pool_failure {
  int giveup;
  long long retry_in;              /* -1: exponential backoff */
  char message[POOL_MESSAGE_MAX];
  char traceback[POOL_TRACE_MAX];
} pool_failure;

static struct {
  pthread_mutex_t lock;
  pthread_cond_t work;             /* idle workers */
  pthread_cond_t gone;             /* pool_stop, for workers leaving */
  int running;
  char module[128];
  int max_workers, workers, busy, idle, watcher;
  long long watch_until;           /* when the watcher wakes (monotonic ms) */
  unsigned long long wakes;        /* bumped by pool_wake: a worker that looked re-checks */
  long long idle_ms, poll_ms, timeout_ms, backoff_ms, backoff_max_ms;
  long long keep_done_ms;          /* finished jobs are deleted after this; 0: kept */
  long long pruned_at;             /* monotonic ms of the last prune */
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static atomic_uint pool_schema_gen;
static _Thread_local unsigned long long pool_rand_state;

/* ---- store helpers ------------------------------------------------------- */

/* Creates the jobs table in the current database unless this process did. */
static int pool_ensure_schema(char *err, size_t errlen) {
  sqlite3 *db = store_db(err, errlen);
  if (!db) return -1;
  unsigned gen = store_generation();
  if (atomic_load(&pool_schema_gen) == gen) return 0;
  char *msg = NULL;
  if (sqlite3_exec(db, pool_schema_sql, NULL, NULL, &msg) != SQLITE_OK) {
    snprintf(err, errlen, "pool: %s", msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return -1;
  }
  atomic_store(&pool_schema_gen, gen);
  return 0;
}

/* A cached statement for sql with parameters bound from types: 'i' a long
 * long, 't' a string (NULL binds NULL; it must outlive the statement's
 * use). NULL with err. */
static sqlite3_stmt *pool_vbind(const char *sql, char *err, size_t errlen, const char *types,
                                va_list ap) {
  if (pool_ensure_schema(err, errlen) != 0) return NULL;
  sqlite3_stmt *st = store_prepare(sql, strlen(sql), NULL, err, errlen);
  for (int i = 0; st && types[i]; i++) {
    if (types[i] == 'i') {
      sqlite3_bind_int64(st, i + 1, va_arg(ap, long long));
    } else {
      const char *s = va_arg(ap, const char *);
      if (s) sqlite3_bind_text(st, i + 1, s, -1, SQLITE_STATIC);
      else sqlite3_bind_null(st, i + 1);
    }
  }
  return st;
}

static sqlite3_stmt *pool_bind(const char *sql, char *err, size_t errlen, const char *types, ...) {
  va_list ap;
  va_start(ap, types);
  sqlite3_stmt *st = pool_vbind(sql, err, errlen, types, ap);
  va_end(ap);
  return st;
}

/* Runs a statement to completion: the rows it changed, or -1 with err. */
static long long pool_exec(const char *sql, char *err, size_t errlen, const char *types, ...) {
  va_list ap;
  va_start(ap, types);
  sqlite3_stmt *st = pool_vbind(sql, err, errlen, types, ap);
  va_end(ap);
  if (!st) return -1;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {}
  sqlite3 *db = sqlite3_db_handle(st);
  long long changes = rc == SQLITE_DONE ? sqlite3_changes64(db) : -1;
  if (rc != SQLITE_DONE) snprintf(err, errlen, "store: %s", sqlite3_errmsg(db));
  store_finish(st);
  return changes;
}

static char *pool_column_dup(sqlite3_stmt *st, int col) {
  const unsigned char *s = sqlite3_column_text(st, col);
  return s ? strdup((const char *)s) : NULL;
}

static void pool_job_free(pool_job *job) {
  free(job->name);
  free(job->payload);
  free(job->key);
}

/* Claims the oldest due job: 1 with job filled, 0 when none is due, -1 on
 * an error (logged). */
static int pool_claim(pool_job *job) {
  char err[POOL_ERR];
  sqlite3_stmt *st = pool_bind(pool_claim_sql, err, sizeof err, "i", clock_wall_ms());
  int rc = st ? sqlite3_step(st) : SQLITE_ERROR;
  int got = rc == SQLITE_ROW, lost = 0;
  if (got) {
    job->id = sqlite3_column_int64(st, 0);
    job->name = pool_column_dup(st, 1);
    job->payload = pool_column_dup(st, 2);
    job->attempt = sqlite3_column_int64(st, 3);
    job->max_attempts = sqlite3_column_int64(st, 4);
    job->key = pool_column_dup(st, 5);
    lost = !job->name || (!job->payload && sqlite3_column_type(st, 2) != SQLITE_NULL) ||
           (!job->key && sqlite3_column_type(st, 5) != SQLITE_NULL);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {}
  }
  if (st && rc != SQLITE_DONE)
    snprintf(err, sizeof err, "store: %s", sqlite3_errmsg(sqlite3_db_handle(st)));
  if (st) store_finish(st);
  if (rc != SQLITE_DONE || lost) {          /* a claimed job runs again at the next start */
    log_event(LOG_ERROR, "pool: cannot claim a job", "error", lost ? "out of memory" : err, NULL);
    if (got) pool_job_free(job);
    return -1;
  }
  return got;
}

/* Wall clock ms of the earliest queued job, or -1 when none is queued. */
static long long pool_next_due(void) {
  char err[POOL_ERR];
  sqlite3_stmt *st = pool_bind("SELECT MIN(run_at) FROM jobs WHERE state = 'queued'", err,
                               sizeof err, "");
  if (!st) return -1;
  long long due = -1;
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
    due = sqlite3_column_int64(st, 0);
  store_finish(st);
  return due;
}

/* ---- running a job --------------------------------------------------------- */

static double pool_random(void) {
  if (!pool_rand_state) pool_rand_state = (unsigned long long)clock_mono_us() * 2654435761ULL | 1;
  pool_rand_state ^= pool_rand_state << 13;
  pool_rand_state ^= pool_rand_state >> 7;
  pool_rand_state ^= pool_rand_state << 17;
  return (double)(pool_rand_state >> 11) / 9007199254740992.0;   /* [0, 1) */
}

/* The delay before retrying after failed attempt n: base * 2^(n-1) with
 * +-25% jitter, at most the cap. */
static long long pool_backoff(long long attempt) {
  double exp = (double)(attempt < 1 ? 0 : attempt > 41 ? 40 : attempt - 1);
  double delay = (double)pool.backoff_ms * pow(2.0, exp) * (0.75 + 0.5 * pool_random());
  return delay > (double)pool.backoff_max_ms ? pool.backoff_max_ms : (long long)delay;
}

/* A requested delay in whole ms, within 0 .. POOL_DELAY_MAX (NaN is 0). */
static long long pool_delay(lua_Number ms) {
  return ms > 0 ? (ms < (lua_Number)POOL_DELAY_MAX ? (long long)ms : POOL_DELAY_MAX) : 0;
}

/* Raises {pool_giveup = true, message = ...}. */
static int pool_raise_giveup(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_createtable(L, 0, 2);                              /* the error */
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "pool_giveup");
  lua_pushvfstring(L, fmt, ap);
  lua_setfield(L, -2, "message");
  va_end(ap);
  return lua_error(L);
}

/* Protected: calls require(module).jobs[name](payload, job). */
static int pool_call_job(lua_State *L) {
  pool_job *job = lua_touserdata(L, 1);
  if (host_app_field(L, job->module, "jobs") != LUA_TTABLE)   /* jobs table at 2 */
    return pool_raise_giveup(L, "module '%s' has no jobs table", job->module);
  if (lua_getfield(L, 2, job->name) != LUA_TFUNCTION)         /* the job function at 3 */
    return pool_raise_giveup(L, "unknown job '%s' (no function jobs.%s in module '%s')",
                             job->name, job->name, job->module);
  if (job->payload) {
    lua_getglobal(L, "require");
    lua_pushliteral(L, "json");
    lua_call(L, 1, 1);                                   /* json module */
    lua_getfield(L, -1, "decode");
    lua_pushstring(L, job->payload);
    lua_call(L, 1, 2);                                   /* json, payload or nil, err */
    if (lua_isnil(L, -2))
      return pool_raise_giveup(L, "payload is not JSON: %s", lua_tostring(L, -1));
    lua_pop(L, 1);                                       /* err */
    lua_remove(L, -2);                                   /* json module */
  } else {
    lua_pushnil(L);
  }
  lua_createtable(L, 0, 5);                              /* job */
  lua_pushinteger(L, job->id), lua_setfield(L, -2, "id");
  lua_pushstring(L, job->name), lua_setfield(L, -2, "name");
  lua_pushinteger(L, job->attempt), lua_setfield(L, -2, "attempt");
  lua_pushinteger(L, job->max_attempts), lua_setfield(L, -2, "max_attempts");
  if (job->key) lua_pushstring(L, job->key), lua_setfield(L, -2, "key");
  lua_call(L, 2, 0);                                     /* fn(payload, job) */
  return 0;
}

/* Protected: reads the error value at 1 (a string with its traceback, or a
 * table, possibly from pool.retry_in or pool.giveup) into the failure. */
static int pool_read_error(lua_State *L) {
  pool_failure *f = lua_touserdata(L, 2);
  if (lua_type(L, 1) == LUA_TTABLE) {
    f->giveup = lua_getfield(L, 1, "pool_giveup") != LUA_TNIL && lua_toboolean(L, -1);
    if (lua_getfield(L, 1, "pool_retry_in") == LUA_TNUMBER) {
      f->retry_in = pool_delay(lua_tonumber(L, -1));
    }
    const char *msg = lua_getfield(L, 1, "message") == LUA_TSTRING ? lua_tostring(L, -1)
                                                                   : "error object is a table";
    snprintf(f->message, sizeof f->message, "%s", msg);
    if (lua_getfield(L, 1, "traceback") == LUA_TSTRING)
      snprintf(f->traceback, sizeof f->traceback, "%s", lua_tostring(L, -1));
    return 0;
  }
  const char *s = lua_tostring(L, 1);
  if (!s) s = "(error object is not a string)";
  const char *trace = strstr(s, "\nstack traceback:");
  int n = trace ? (int)(trace - s) : (int)strlen(s);
  snprintf(f->message, sizeof f->message, "%.*s", n, s);
  snprintf(f->traceback, sizeof f->traceback, "%s", s);
  return 0;
}

/* Reads the error on top of L into f and pops it. */
static void pool_describe(lua_State *L, pool_failure *f) {
  lua_pushcfunction(L, pool_read_error);
  lua_insert(L, -2);                                     /* reader under the error */
  lua_pushlightuserdata(L, f);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    snprintf(f->message, sizeof f->message, "unreadable error: %s",
             lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?");
    lua_pop(L, 1);
  }
}

/* Rolls back a transaction the job left open, so locks are not held. */
static void pool_end_transaction(const pool_job *job) {
  char err[POOL_ERR], id[24];
  sqlite3 *db = store_db(err, sizeof err);
  if (!db || sqlite3_get_autocommit(db)) return;
  store_run("ROLLBACK", err, sizeof err);
  snprintf(id, sizeof id, "%lld", job->id);
  log_event(LOG_WARN, "pool: job left a transaction open, rolled back", "job", id, "name",
            job->name, NULL);
}

/* Writes the job's outcome (f NULL: success) and makes it durable. */
static void pool_record(const pool_job *job, const pool_failure *f) {
  char err[POOL_ERR], id[24], attempt[24], delay_s[24];
  long long now = clock_wall_ms(), rc;
  snprintf(id, sizeof id, "%lld", job->id);
  snprintf(attempt, sizeof attempt, "%lld/%lld", job->attempt, job->max_attempts);
  if (!f) {
    rc = pool_exec("UPDATE jobs SET state = 'done', finished_at = ?1, updated_at = ?1"
                   " WHERE id = ?2",
                   err, sizeof err, "ii", now, job->id);
  } else if (f->giveup || job->attempt >= job->max_attempts) {
    log_event(LOG_ERROR, "job dead", "job", id, "name", job->name, "attempt", attempt, "error",
              f->message, "traceback", f->traceback, NULL);
    rc = pool_exec("UPDATE jobs SET state = 'dead', last_error = ?1, finished_at = ?2,"
                   " updated_at = ?2 WHERE id = ?3",
                   err, sizeof err, "tii", f->message, now, job->id);
  } else {
    long long delay = f->retry_in >= 0 ? f->retry_in : pool_backoff(job->attempt);
    snprintf(delay_s, sizeof delay_s, "%lld", delay);
    log_event(LOG_WARN, "job failed, will retry", "job", id, "name", job->name, "attempt",
              attempt, "retry_in_ms", delay_s, "error", f->message, "traceback", f->traceback,
              NULL);
    rc = pool_exec("UPDATE jobs SET state = 'queued', run_at = ?1, last_error = ?2,"
                   " updated_at = ?3 WHERE id = ?4",
                   err, sizeof err, "itii", now + delay, f->message, now, job->id);
  }
  if (rc < 0) {
    log_event(LOG_ERROR, "pool: cannot record a job's outcome; it runs again at the next start",
              "job", id, "name", job->name, "error", err, NULL);
    return;
  }
  store_sync();
}

/* Runs one claimed job in the worker's state and records the outcome. */
static void pool_run(host_vm *vm, pool_job *job) {
  char err[POOL_ERR];
  pool_failure failure = {0, -1, "", ""};
  int failed = 1;
  lua_State *L = host_vm_get(vm, err, sizeof err);
  if (!L) {
    snprintf(failure.message, sizeof failure.message, "no Lua state: %s", err);
  } else {
    lua_settop(L, 0);
    lua_pushcfunction(L, pool_call_job);
    lua_pushlightuserdata(L, job);
    failed = host_pcall(L, 1, 0, (long)pool.timeout_ms) != LUA_OK;
    if (failed) pool_describe(L, &failure);
    lua_settop(L, 0);
    /* a job's garbage (model answers, images) would otherwise stay until
     * this worker's next job: with a worker per order in flight, that is
     * most of the pool's memory */
    lua_gc(L, LUA_GCCOLLECT);
  }
  pool_end_transaction(job);
  pool_record(job, failed ? &failure : NULL);
}

/* ---- workers ------------------------------------------------------------- */

static void *pool_worker_main(void *arg);

static void pool_on_commit(void);

/* Once per process: the condition variables on the monotonic clock and the
 * store's commit hook. */
static void pool_init(void) {
  store_set_commit_hook(pool_on_commit);
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&pool.work, &attr);
  pthread_cond_init(&pool.gone, &attr);
  pthread_condattr_destroy(&attr);
}

static void pool_wait_until(pthread_cond_t *cond, long long mono_ms) {
  struct timespec ts = {(time_t)(mono_ms / 1000), (long)(mono_ms % 1000) * 1000000L};
  pthread_cond_timedwait(cond, &pool.lock, &ts);
}

/* Starts a worker thread. Called with pool.lock held. */
static void pool_spawn_locked(void) {
  pthread_attr_t attr;
  pthread_t t;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pool.workers++;
  if (pthread_create(&t, &attr, pool_worker_main, NULL) != 0) {
    pool.workers--;
    log_event(LOG_ERROR, "pool: cannot start a worker thread", NULL);
  }
  pthread_attr_destroy(&attr);
}

/* Frees what an idle last worker holds (its Lua state, SQLite's cache) and
 * hands the memory the departed workers' allocations left in malloc's
 * arenas back to the system. */
static void pool_shrink(host_vm *vm) {
  char err[POOL_ERR];
  host_vm_close(vm);
  sqlite3 *db = store_db(err, sizeof err);
  if (db) sqlite3_db_release_memory(db);
  malloc_trim(0);
}

/* Deletes jobs done longer ago than POOL_KEEP_DONE_DAYS, at most hourly,
 * so the table (and every count over it) stays the size of recent work.
 * Dead jobs stay until a person requeues them. Safe for idempotency: every
 * job checks the store before acting, and events are deduplicated by their
 * own table. Called with the pool lock held; releases it while deleting. */
static void pool_prune_locked(void) {
  long long now = clock_mono_ms();
  if (pool.keep_done_ms <= 0 || (pool.pruned_at && now - pool.pruned_at < 3600000)) return;
  pool.pruned_at = now;
  pthread_mutex_unlock(&pool.lock);
  char err[POOL_ERR];
  long long n = pool_exec("DELETE FROM jobs WHERE state = 'done' AND finished_at < ?1", err,
                          sizeof err, "i", clock_wall_ms() - pool.keep_done_ms);
  if (n < 0) log_event(LOG_WARN, "pool: cannot prune finished jobs", "error", err, NULL);
  else if (n > 0) {
    char count[24];
    snprintf(count, sizeof count, "%lld", n);
    log_event(LOG_INFO, "pool: pruned finished jobs", "jobs", count, NULL);
  }
  pthread_mutex_lock(&pool.lock);
}

static void *pool_worker_main(void *arg) {
  (void)arg;
  host_vm vm = {0};
  long long idle_since = clock_mono_ms();
  pthread_mutex_lock(&pool.lock);
  while (pool.running) {
    unsigned long long seen = pool.wakes;
    pool_job job = {0};
    snprintf(job.module, sizeof job.module, "%s", pool.module);
    pthread_mutex_unlock(&pool.lock);
    int got = pool_claim(&job);
    long long due = got == 0 ? pool_next_due() : -1;
    pthread_mutex_lock(&pool.lock);
    if (got == 1) {
      pool.busy++;
      if (pool.busy == pool.workers && pool.workers < pool.max_workers && pool.running)
        pool_spawn_locked();                             /* all busy: one more for the next job */
      else if (!pool.watcher && pool.idle > 0)
        pthread_cond_signal(&pool.work);                 /* an idle one takes over the watch */
      pthread_mutex_unlock(&pool.lock);
      pool_run(&vm, &job);
      pool_job_free(&job);
      pthread_mutex_lock(&pool.lock);
      pool.busy--;
      idle_since = clock_mono_ms();
      continue;
    }
    if (!pool.running) break;
    if (pool.wakes != seen) continue;                    /* work arrived while we looked */
    if (got == 0) pool_prune_locked();
    long long now = clock_mono_ms();
    if (now - idle_since >= pool.idle_ms) {
      if (pool.workers > 1) break;
      pthread_mutex_unlock(&pool.lock);
      pool_shrink(&vm);                                  /* the last one keeps watch, lean */
      pthread_mutex_lock(&pool.lock);
      idle_since = now;
      continue;
    }
    long long until = idle_since + pool.idle_ms, due_at = -1;
    if (due >= 0) {
      long long in = due - clock_wall_ms();
      due_at = now + (in < 1 ? 1 : in);
    }
    int watch = !pool.watcher;
    if (watch && now + pool.poll_ms < until) until = now + pool.poll_ms;
    if (due_at >= 0 && due_at < until && (watch || due_at < pool.watch_until))
      until = due_at;                                    /* a job due before anyone looks */
    if (watch) {
      pool.watcher = 1;
      pool.watch_until = until;
    }
    pool.idle++;
    pool_wait_until(&pool.work, until);
    pool.idle--;
    if (watch) pool.watcher = 0;
  }
  pool.workers--;
  if (pool.idle > 0) pthread_cond_signal(&pool.work);   /* someone re-reads what is due */
  pthread_cond_broadcast(&pool.gone);
  pthread_mutex_unlock(&pool.lock);
  host_vm_close(&vm);
  return NULL;
}

void pool_wake(void) {
  pthread_once(&pool_once, pool_init);
  pthread_mutex_lock(&pool.lock);
  pool.wakes++;
  if (pool.idle > 0) pthread_cond_signal(&pool.work);
  else if (pool.running && pool.busy == pool.workers && pool.workers < pool.max_workers)
    pool_spawn_locked();
  pthread_mutex_unlock(&pool.lock);
}

/* The store's commit hook: a transaction that submitted jobs committed. */
static void pool_on_commit(void) { pool_wake(); }

int pool_stop(long timeout_ms) {
  pthread_once(&pool_once, pool_init);
  long long deadline = clock_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
  pthread_mutex_lock(&pool.lock);
  pool.running = 0;
  pthread_cond_broadcast(&pool.work);
  while (pool.workers > 0 && clock_mono_ms() < deadline) pool_wait_until(&pool.gone, deadline);
  int left = pool.busy;
  pthread_mutex_unlock(&pool.lock);
  return left;
}

int pool_counts(pool_counts_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  pthread_mutex_lock(&pool.lock);
  out->workers = pool.workers;
  out->busy = pool.busy;
  pthread_mutex_unlock(&pool.lock);
  sqlite3_stmt *st = pool_bind("SELECT state, COUNT(*) FROM jobs GROUP BY state", err, errlen, "");
  if (!st) return -1;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *state = (const char *)sqlite3_column_text(st, 0);
    long long n = sqlite3_column_int64(st, 1);
    if (!state) continue;
    if (strcmp(state, "queued") == 0) out->queued = n;
    else if (strcmp(state, "running") == 0) out->running = n;
    else if (strcmp(state, "done") == 0) out->done = n;
    else if (strcmp(state, "dead") == 0) out->dead = n;
  }
  if (rc != SQLITE_DONE) snprintf(err, errlen, "store: %s", sqlite3_errmsg(sqlite3_db_handle(st)));
  store_finish(st);
  return rc == SQLITE_DONE ? 0 : -1;
}

/* ---- the `pool` binding ------------------------------------------------------ */

/* Integer field of the options table at idx (def when absent); raises
 * unless it is an integer of at least min. */
static long long pool_opt_int(lua_State *L, int idx, const char *field, long long def,
                              long long min) {
  int t = lua_getfield(L, idx, field);
  long long v = def;
  if (t != LUA_TNIL) {
    int ok;
    v = lua_tointegerx(L, -1, &ok);
    if (!ok || v < min)
      return luaL_error(L, "pool: option %s must be an integer >= %d", field, (int)min);
  }
  lua_pop(L, 1);
  return v;
}

/* Leaves the options table (argument 1, or a new empty one) alone on the
 * stack; raises if the argument is not a table. */
static void pool_opt_table(lua_State *L) {
  lua_settop(L, 1);
  if (lua_isnil(L, 1)) {
    lua_newtable(L);
    lua_replace(L, 1);
  }
  luaL_checktype(L, 1, LUA_TTABLE);
}

/* Pushes json.<fn> of this state. */
static void pool_json(lua_State *L, const char *fn) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "json");
  lua_call(L, 1, 1);                                     /* json */
  lua_getfield(L, -1, fn);
  lua_remove(L, -2);                                     /* json.fn */
}

/* pool.submit(name, payload [, {delay, max_attempts, key}]) -> id, new.
 * Stored (and durable, outside a transaction) before it returns. */
static int pool_lua_submit(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_settop(L, 3);
  if (lua_isnil(L, 3)) {
    lua_newtable(L);
    lua_replace(L, 3);                                   /* no options: an empty table */
  }
  luaL_checktype(L, 3, LUA_TTABLE);
  long long delay = pool_opt_int(L, 3, "delay", 0, 0);
  if (delay > POOL_DELAY_MAX) delay = POOL_DELAY_MAX;
  long long max_attempts =
      pool_opt_int(L, 3, "max_attempts", config_int("POOL_MAX_ATTEMPTS", 5), 1);
  lua_getfield(L, 3, "key");                             /* key at 4 */
  if (!lua_isnil(L, 4) && lua_type(L, 4) != LUA_TSTRING)
    return luaL_error(L, "pool: option key must be a string");
  const char *key = lua_tostring(L, 4);
  const char *payload = NULL;
  if (!lua_isnil(L, 2)) {
    pool_json(L, "encode");
    lua_pushvalue(L, 2);
    lua_call(L, 1, 1);                                   /* payload JSON at 5 */
    payload = lua_tostring(L, 5);
  }
  char err[POOL_ERR];
  long long now = clock_wall_ms();
  sqlite3_stmt *st = pool_bind(
      "INSERT INTO jobs (name, payload, state, attempts, max_attempts, run_at, key, created_at,"
      " updated_at) VALUES (?1, ?2, 'queued', 0, ?3, ?4, ?5, ?6, ?6)"
      " ON CONFLICT (key) DO NOTHING RETURNING id",
      err, sizeof err, "ttiiti", name, payload, max_attempts, now + delay, key, now);
  if (!st) return luaL_error(L, "%s", err);
  int rc = sqlite3_step(st);
  int created = rc == SQLITE_ROW;
  long long id = created ? sqlite3_column_int64(st, 0) : 0;
  if (created) rc = sqlite3_step(st);
  if (rc != SQLITE_DONE)
    snprintf(err, sizeof err, "store: %s", sqlite3_errmsg(sqlite3_db_handle(st)));
  store_finish(st);
  if (rc != SQLITE_DONE) return luaL_error(L, "%s", err);
  if (!created) {
    st = pool_bind("SELECT id FROM jobs WHERE key = ?1", err, sizeof err, "t", key);
    if (!st) return luaL_error(L, "%s", err);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) id = sqlite3_column_int64(st, 0);
    else snprintf(err, sizeof err, "store: %s", sqlite3_errmsg(sqlite3_db_handle(st)));
    store_finish(st);
    if (rc != SQLITE_ROW) return luaL_error(L, "%s", err);
  }
  sqlite3 *db = store_db(err, sizeof err);
  if (db && sqlite3_get_autocommit(db)) {
    store_sync();
    if (created) pool_wake();
  } else if (created) {
    store_hook_at_commit();                              /* woken by the commit */
  }
  lua_pushinteger(L, id);
  lua_pushboolean(L, created);
  return 2;
}

/* pool.start{module = "app", workers = n}: requeues the jobs a crash left
 * running, then starts workers. */
static int pool_lua_start(lua_State *L) {
  pool_opt_table(L);
  lua_getfield(L, 1, "module");
  const char *module = luaL_optstring(L, -1, "app");
  if (strlen(module) >= sizeof pool.module) return luaL_error(L, "pool: module name too long");
  long long workers = pool_opt_int(L, 1, "workers", config_int("POOL_WORKERS", 16), 1);
  config_freeze();
  pthread_once(&pool_once, pool_init);
  pthread_mutex_lock(&pool.lock);
  int already = pool.running, lingering = pool.busy;
  pthread_mutex_unlock(&pool.lock);
  if (already) return luaL_error(L, "pool: already started");
  if (lingering)                       /* jobs `running` in the store may be this process's own */
    return luaL_error(L, "pool: %d jobs from before pool.stop are still running", lingering);
  char err[POOL_ERR];
  long long now = clock_wall_ms();
  long long dead = pool_exec("UPDATE jobs SET state = 'dead', finished_at = ?1, updated_at = ?1,"
                             " last_error = 'interrupted: the process ended while it ran'"
                             " WHERE state = 'running' AND attempts >= max_attempts",
                             err, sizeof err, "i", now);
  long long requeued = dead < 0 ? -1
                                : pool_exec("UPDATE jobs SET state = 'queued', run_at = ?1,"
                                            " updated_at = ?1 WHERE state = 'running'",
                                            err, sizeof err, "i", now);
  if (requeued < 0) return luaL_error(L, "%s", err);
  store_sync();
  pthread_mutex_lock(&pool.lock);
  already = pool.running;
  if (!already) {
    snprintf(pool.module, sizeof pool.module, "%s", module);
    pool.max_workers = workers > 100000 ? 100000 : (int)workers;
    pool.idle_ms = config_int("POOL_IDLE_MS", 30000);
    pool.keep_done_ms = config_int("POOL_KEEP_DONE_DAYS", 7) * 86400000LL;
    pool.poll_ms = config_int("POOL_POLL_MS", 1000);
    pool.timeout_ms = config_int("POOL_JOB_TIMEOUT_MS", 300000);
    pool.backoff_ms = config_int("POOL_BACKOFF_MS", 1000);
    pool.backoff_max_ms = config_int("POOL_BACKOFF_MAX_MS", 600000);
    if (pool.poll_ms < 1) pool.poll_ms = 1;
    pool.running = 1;
    for (int i = 0; i < POOL_START_WORKERS && pool.workers < pool.max_workers; i++)
      pool_spawn_locked();
  }
  pthread_mutex_unlock(&pool.lock);
  if (already) return luaL_error(L, "pool: already started");
  char n_re[24], n_dead[24], n_max[24];
  snprintf(n_re, sizeof n_re, "%lld", requeued);
  snprintf(n_dead, sizeof n_dead, "%lld", dead);
  snprintf(n_max, sizeof n_max, "%lld", workers);
  log_event(LOG_INFO, "pool started", "module", module, "workers", n_max,
            "requeued_interrupted", n_re, "dead_interrupted", n_dead, NULL);
  lua_pushboolean(L, 1);
  return 1;
}

/* pool.stop([timeout_ms]) -> true, or nil, "N jobs still running" */
static int pool_lua_stop(lua_State *L) {
  int left = pool_stop((long)luaL_optinteger(L, 1, 10000));
  if (left == 0) return lua_pushboolean(L, 1), 1;
  lua_pushnil(L);
  lua_pushfstring(L, "%d jobs still running", left);
  return 2;
}

/* pool.jobs{state =, name =, limit = 100} -> jobs, newest first */
static int pool_lua_jobs(lua_State *L) {
  pool_opt_table(L);
  lua_getfield(L, 1, "state");                           /* 2 */
  lua_getfield(L, 1, "name");                            /* 3 */
  const char *state = luaL_optstring(L, 2, NULL), *name = luaL_optstring(L, 3, NULL);
  long long limit = pool_opt_int(L, 1, "limit", 100, 0);
  char err[POOL_ERR];
  sqlite3_stmt *st = pool_bind(
      "SELECT id, name, payload, state, attempts, max_attempts, run_at, key, last_error,"
      " created_at, updated_at, started_at, finished_at FROM jobs"
      " WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR name = ?2) ORDER BY id DESC LIMIT ?3",
      err, sizeof err, "tti", state, name, limit);
  if (!st) return luaL_error(L, "%s", err);
  if (store_push_rows(L, st, 0, err, sizeof err) != 0) return luaL_error(L, "%s", err);
  int rows = lua_gettop(L);
  pool_json(L, "decode");                                /* decode at rows + 1 */
  for (lua_Integer i = 1; lua_rawgeti(L, rows, i) == LUA_TTABLE; i++) {   /* job */
    if (lua_getfield(L, -1, "payload") == LUA_TSTRING) {
      lua_pushvalue(L, rows + 1);
      lua_insert(L, -2);
      lua_call(L, 1, 1);                                 /* decoded payload or nil */
      if (!lua_isnil(L, -1)) lua_setfield(L, -2, "payload");
      else lua_pop(L, 1);
    } else {
      lua_pop(L, 1);
    }
    lua_pop(L, 1);                                       /* job */
  }
  lua_settop(L, rows);
  return 1;
}

/* pool.requeue(id) -> true, or nil, err: a queued, done or dead job runs
 * again now with its attempts reset. */
static int pool_lua_requeue(lua_State *L) {
  long long id = (long long)luaL_checkinteger(L, 1);
  char err[POOL_ERR];
  long long now = clock_wall_ms();
  long long n = pool_exec("UPDATE jobs SET state = 'queued', run_at = ?1, attempts = 0,"
                          " updated_at = ?1 WHERE id = ?2 AND state <> 'running'",
                          err, sizeof err, "ii", now, id);
  if (n < 0) return luaL_error(L, "%s", err);
  if (n == 0) {
    sqlite3_stmt *st = pool_bind("SELECT 1 FROM jobs WHERE id = ?1", err, sizeof err, "i", id);
    if (!st) return luaL_error(L, "%s", err);
    int exists = sqlite3_step(st) == SQLITE_ROW;
    store_finish(st);
    lua_pushnil(L);
    lua_pushfstring(L, exists ? "job %I is running" : "no job %I", (lua_Integer)id);
    return 2;
  }
  store_sync();
  pool_wake();
  lua_pushboolean(L, 1);
  return 1;
}

/* pool.stats() -> {queued, running, done, dead, workers, busy} */
static int pool_lua_stats(lua_State *L) {
  pool_counts_t c;
  char err[POOL_ERR];
  if (pool_counts(&c, err, sizeof err) != 0) return luaL_error(L, "%s", err);
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, c.queued), lua_setfield(L, -2, "queued");
  lua_pushinteger(L, c.running), lua_setfield(L, -2, "running");
  lua_pushinteger(L, c.done), lua_setfield(L, -2, "done");
  lua_pushinteger(L, c.dead), lua_setfield(L, -2, "dead");
  lua_pushinteger(L, c.workers), lua_setfield(L, -2, "workers");
  lua_pushinteger(L, c.busy), lua_setfield(L, -2, "busy");
  return 1;
}

/* pool.retry_in(ms [, message]): raises a retry after exactly ms. */
static int pool_lua_retry_in(lua_State *L) {
  long long ms = pool_delay(luaL_checknumber(L, 1));
  const char *msg = luaL_optstring(L, 2, "retry requested");
  lua_createtable(L, 0, 2);                              /* the error */
  lua_pushinteger(L, ms);
  lua_setfield(L, -2, "pool_retry_in");
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  return lua_error(L);
}

/* pool.giveup([message]): raises; the job is marked dead at once. */
static int pool_lua_giveup(lua_State *L) {
  return pool_raise_giveup(L, "%s", luaL_optstring(L, 1, "gave up"));
}

int luaopen_pool(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"submit", pool_lua_submit}, {"start", pool_lua_start},       {"stop", pool_lua_stop},
      {"jobs", pool_lua_jobs},     {"requeue", pool_lua_requeue},   {"stats", pool_lua_stats},
      {"retry_in", pool_lua_retry_in}, {"giveup", pool_lua_giveup}, {NULL, NULL}};
  pthread_once(&pool_once, pool_init);
  luaL_newlib(L, funcs);
  return 1;
}
