/*
 * store.c - the process's SQLite database, a connection per thread with a
 * cache of prepared statements, group commit, and the Lua `store` binding.
 *
 * Durability. Connections use journal_mode=WAL with synchronous=NORMAL: a
 * commit appends its frames to the -wal file and returns without an fsync.
 * Whoever needs a commit durable asks for a sync ticket afterwards; the
 * syncer thread fdatasync()s the -wal file once for every ticket taken
 * before that fdatasync started. For the commits a completed ticket covers
 * this is the guarantee synchronous=FULL gives (FULL syncs the WAL at each
 * commit, nothing more): their frames are either still in the WAL, which
 * is now on disk and replayed at the next open, or were already copied out
 * by a checkpoint, and a checkpoint syncs the WAL before copying and the
 * database file after (NORMAL keeps those syncs, and the sync of a new WAL
 * header). Without a -wal file (no connection open, or the last one closed
 * and checkpointed) everything is in the database file, which is synced
 * instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "host.h"
#include "log.h"
#include "store.h"

#define STORE_SLOTS 32            /* cached statements per connection */
#define STORE_BUSY_MS 10000
#define STORE_CHECKPOINT_FRAMES 1000
#define STORE_ERR 512
#define STORE_GROUP_RECENT 1024   /* outcomes kept for waiters that come after the end */

typedef void (*store_commit_cb)(void);

/* ---- the process's database and each thread's connection ---------------- */

typedef struct store_slot {
  char *sql;
  size_t len;
  sqlite3_stmt *st;
  int more;                       /* the SQL holds statements after the first */
  int in_use;
  unsigned long long used;        /* last use, for eviction */
} store_slot;

typedef struct store_conn {
  sqlite3 *db;
  unsigned generation;
  int hook_at_commit;            /* run the commit hook when this connection next commits */
  unsigned long long clock;
  store_slot slots[STORE_SLOTS];
} store_conn;

static pthread_mutex_t store_path_lock = PTHREAD_MUTEX_INITIALIZER;
static char store_db_path[PATH_MAX];
static atomic_uint store_gen;
static _Atomic(store_commit_cb) store_commit_fn;
static pthread_key_t store_key;
static pthread_once_t store_key_once = PTHREAD_ONCE_INIT;
static _Thread_local store_conn *store_tls;

static void store_conn_free(void *p) {
  store_conn *c = p;
  if (!c) return;
  for (int i = 0; i < STORE_SLOTS; i++) {
    sqlite3_finalize(c->slots[i].st);
    free(c->slots[i].sql);
  }
  sqlite3_close_v2(c->db);
  if (store_tls == c) store_tls = NULL;
  free(c);
}

static void store_key_init(void) { pthread_key_create(&store_key, store_conn_free); }

/* The checkpointer: SQLite's autocheckpoint would copy the WAL into the
 * database (two fsyncs) inside whichever commit crossed the threshold, an
 * HTTP request's, say. Instead that commit only wakes this thread, which
 * checkpoints PASSIVE-ly on its own connection while writers go on. */
static pthread_mutex_t store_ckpt_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t store_ckpt_wake = PTHREAD_COND_INITIALIZER;
static pthread_once_t store_ckpt_once = PTHREAD_ONCE_INIT;
static int store_ckpt_wanted;

static void *store_checkpointer_main(void *arg) {
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&store_ckpt_lock);
    while (!store_ckpt_wanted) pthread_cond_wait(&store_ckpt_wake, &store_ckpt_lock);
    store_ckpt_wanted = 0;
    pthread_mutex_unlock(&store_ckpt_lock);
    char err[STORE_ERR];
    sqlite3 *db = store_db(err, sizeof err);
    if (db && sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL) != SQLITE_OK
        && sqlite3_errcode(db) != SQLITE_BUSY)
      log_event(LOG_WARN, "store: checkpoint failed", "error", sqlite3_errmsg(db), NULL);
  }
  return NULL;
}

static void store_checkpointer_start(void) {
  pthread_t t;
  if (pthread_create(&t, NULL, store_checkpointer_main, NULL) == 0) pthread_detach(t);
  else log_event(LOG_ERROR, "store: cannot start the checkpointer", "error", strerror(errno), NULL);
}

/* Writers wait for each other here rather than in SQLite's default busy
 * handler, which sleeps 1, 2, 5, 10... ms between tries: every commit wakes
 * the waiters at once (the WAL hook below), and a waiter also retries every
 * half millisecond for a lock released without a commit (a rollback). */
static pthread_mutex_t store_busy_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t store_busy_wake;
static pthread_once_t store_busy_once = PTHREAD_ONCE_INIT;
static _Thread_local long long store_busy_since_us;

static void store_busy_init(void) {
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&store_busy_wake, &attr);
  pthread_condattr_destroy(&attr);
}

static int store_busy_handler(void *ud, int tries) {
  (void)ud;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  long long now_us = (long long)now.tv_sec * 1000000 + now.tv_nsec / 1000;
  if (tries == 0) store_busy_since_us = now_us;
  if (now_us - store_busy_since_us > (long long)STORE_BUSY_MS * 1000) return 0;  /* SQLITE_BUSY */
  long long until_ns = (long long)now.tv_sec * 1000000000LL + now.tv_nsec + 500000;
  struct timespec until = {(time_t)(until_ns / 1000000000LL), (long)(until_ns % 1000000000LL)};
  pthread_mutex_lock(&store_busy_lock);
  pthread_cond_timedwait(&store_busy_wake, &store_busy_lock, &until);
  pthread_mutex_unlock(&store_busy_lock);
  return 1;
}

/* Replaces SQLite's autocheckpoint hook (same threshold, but the work is
 * done by the checkpointer) and, when asked (store_hook_at_commit), runs the
 * commit hook in the thread that just committed. ud is the store_conn. */
static int store_wal_hook(void *ud, sqlite3 *db, const char *name, int frames) {
  (void)db, (void)name;
  store_conn *c = ud;
  if (frames >= STORE_CHECKPOINT_FRAMES) {
    pthread_once(&store_ckpt_once, store_checkpointer_start);
    pthread_mutex_lock(&store_ckpt_lock);
    store_ckpt_wanted = 1;
    pthread_cond_signal(&store_ckpt_wake);
    pthread_mutex_unlock(&store_ckpt_lock);
  }
  pthread_mutex_lock(&store_busy_lock);
  pthread_cond_broadcast(&store_busy_wake);             /* the write lock is free */
  pthread_mutex_unlock(&store_busy_lock);
  store_commit_cb fn = atomic_load(&store_commit_fn);
  if (c->hook_at_commit && fn) {
    c->hook_at_commit = 0;
    fn();
  }
  return SQLITE_OK;
}

/* Creates every missing parent directory of path. */
static int store_mkdirs(const char *path, char *err, size_t errlen) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash || slash == dir) return 0;
  *slash = '\0';
  for (char *p = dir + 1;; p++) {
    if (*p != '/' && *p != '\0') continue;
    char c = *p;
    *p = '\0';
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
      snprintf(err, errlen, "store: cannot create %s: %s", dir, strerror(errno));
      return -1;
    }
    if (c == '\0') return 0;
    *p = c;
  }
}

/* Opens a connection with the store's settings. NULL and err on failure. */
static sqlite3 *store_connect(const char *path, char *err, size_t errlen) {
  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(path, &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  pthread_once(&store_busy_once, store_busy_init);
  if (rc == SQLITE_OK) rc = sqlite3_busy_handler(db, store_busy_handler, NULL);
  /* no lookaside: its 120 KB per connection adds up over a thread per job */
  if (rc == SQLITE_OK) rc = sqlite3_db_config(db, SQLITE_DBCONFIG_LOOKASIDE, NULL, 0, 0);
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(db,
                      "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; "
                      "PRAGMA journal_size_limit=67108864; PRAGMA cache_size=-128",
                      NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    snprintf(err, errlen, "store: cannot open %s: %s", path,
             db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close_v2(db);
    return NULL;
  }
  return db;
}

/* A connection record for db (closed if out of memory: NULL). */
static store_conn *store_conn_new(sqlite3 *db, unsigned gen) {
  store_conn *c = calloc(1, sizeof *c);
  if (!c) return sqlite3_close_v2(db), NULL;
  c->db = db;
  c->generation = gen;
  sqlite3_wal_hook(db, store_wal_hook, c);
  return c;
}

/* Makes db, opened on the database of generation gen, this thread's
 * connection (closing the previous one). NULL if out of memory. */
static store_conn *store_conn_install(sqlite3 *db, unsigned gen) {
  pthread_once(&store_key_once, store_key_init);
  store_conn *c = store_conn_new(db, gen);
  if (!c) return NULL;
  store_conn_free(store_tls);
  store_tls = c;
  pthread_setspecific(store_key, c);
  return c;
}

/* This thread's connection to the current database, opened when missing
 * or when store_open switched databases since. */
static store_conn *store_conn_get(char *err, size_t errlen) {
  unsigned gen = atomic_load(&store_gen);
  if (store_tls && store_tls->generation == gen) return store_tls;
  char path[PATH_MAX];
  pthread_mutex_lock(&store_path_lock);
  snprintf(path, sizeof path, "%s", store_db_path);
  gen = atomic_load(&store_gen);
  pthread_mutex_unlock(&store_path_lock);
  if (!path[0]) return snprintf(err, errlen, "store: no database (call store.open first)"), NULL;
  sqlite3 *db = store_connect(path, err, errlen);
  if (!db) return NULL;
  store_conn *c = store_conn_install(db, gen);
  if (!c) snprintf(err, errlen, "store: out of memory");
  return c;
}

int store_open(const char *path, char *err, size_t errlen) {
  if (!*path || strlen(path) >= PATH_MAX - 8)
    return snprintf(err, errlen, "store: bad database path"), -1;
  if (store_mkdirs(path, err, errlen) != 0) return -1;
  sqlite3 *db = store_connect(path, err, errlen);
  if (!db) return -1;
  pthread_mutex_lock(&store_path_lock);
  if (strcmp(store_db_path, path) != 0) {
    snprintf(store_db_path, sizeof store_db_path, "%s", path);
    atomic_fetch_add(&store_gen, 1);
  }
  unsigned gen = atomic_load(&store_gen);
  pthread_mutex_unlock(&store_path_lock);
  if (!store_conn_install(db, gen)) return snprintf(err, errlen, "store: out of memory"), -1;
  return 0;
}

const char *store_path(void) {
  pthread_mutex_lock(&store_path_lock);
  const char *p = store_db_path[0] ? store_db_path : NULL;
  pthread_mutex_unlock(&store_path_lock);
  return p;
}

unsigned store_generation(void) { return atomic_load(&store_gen); }

sqlite3 *store_db(char *err, size_t errlen) {
  store_conn *c = store_conn_get(err, errlen);
  return c ? c->db : NULL;
}

void store_set_commit_hook(void (*fn)(void)) { atomic_store(&store_commit_fn, fn); }

/* ---- prepared statements ------------------------------------------------ */

/* 1 if the text from tail to end holds another statement (not only spaces,
 * semicolons or comments); a syntax error there counts as one. */
static int store_has_more(sqlite3 *db, const char *tail, const char *end) {
  const char *p = tail;
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ';')) p++;
  if (p == end) return 0;
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, p, (int)(end - p), &st, NULL);
  sqlite3_finalize(st);
  return rc != SQLITE_OK || st != NULL;
}

sqlite3_stmt *store_prepare(const char *sql, size_t len, int *more, char *err, size_t errlen) {
  store_conn *c = store_conn_get(err, errlen);
  if (!c) return NULL;
  store_slot *empty = NULL, *victim = NULL;
  int nested = 0;
  for (int i = 0; i < STORE_SLOTS; i++) {
    store_slot *s = &c->slots[i];
    if (!s->st) {
      if (!empty) empty = s;
      continue;
    }
    if (s->len == len && memcmp(s->sql, sql, len) == 0) {
      if (s->in_use) {                                  /* same SQL in use: a private copy */
        nested = 1;
        break;
      }
      s->in_use = 1;
      s->used = ++c->clock;
      if (more) *more = s->more;
      return s->st;
    }
    if (!s->in_use && (!victim || s->used < victim->used)) victim = s;
  }
  if (len > INT_MAX) return snprintf(err, errlen, "store: SQL too long"), NULL;
  sqlite3_stmt *st = NULL;
  const char *tail = NULL;
  int rc = sqlite3_prepare_v3(c->db, sql, (int)len, nested ? 0 : SQLITE_PREPARE_PERSISTENT, &st,
                              &tail);
  if (rc != SQLITE_OK) return snprintf(err, errlen, "store: %s", sqlite3_errmsg(c->db)), NULL;
  if (!st) return snprintf(err, errlen, "store: no SQL statement"), NULL;
  int m = store_has_more(c->db, tail, sql + len);
  if (more) *more = m;
  store_slot *slot = nested ? NULL : empty ? empty : victim;
  char *copy = slot ? malloc(len ? len : 1) : NULL;
  if (!copy) return st;                                 /* uncached: store_finish finalizes */
  memcpy(copy, sql, len);
  sqlite3_finalize(slot->st);
  free(slot->sql);
  *slot = (store_slot){copy, len, st, m, 1, ++c->clock};
  return st;
}

void store_finish(sqlite3_stmt *st) {
  store_conn *c = store_tls;
  for (int i = 0; c && i < STORE_SLOTS; i++) {
    if (c->slots[i].st == st) {
      sqlite3_reset(st);
      sqlite3_clear_bindings(st);
      c->slots[i].in_use = 0;
      return;
    }
  }
  sqlite3_finalize(st);
}

int store_run(const char *sql, char *err, size_t errlen) {
  sqlite3_stmt *st = store_prepare(sql, strlen(sql), NULL, err, errlen);
  if (!st) return -1;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {}
  if (rc != SQLITE_DONE) snprintf(err, errlen, "store: %s", sqlite3_errmsg(sqlite3_db_handle(st)));
  store_finish(st);
  return rc == SQLITE_DONE ? 0 : -1;
}

/* ---- group commit -------------------------------------------------------- */

typedef struct store_waiter {
  uint64_t ticket;
  void (*fn)(void *arg);
  void *arg;
  struct store_waiter *next;
} store_waiter;

static pthread_mutex_t store_sync_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t store_sync_wake = PTHREAD_COND_INITIALIZER;   /* the syncer */
static pthread_cond_t store_sync_done = PTHREAD_COND_INITIALIZER;   /* waiting callers */
static pthread_once_t store_syncer_once = PTHREAD_ONCE_INIT;
static store_sync_stats_t store_sync_counts;
static store_waiter *store_waiters;
static _Thread_local int store_deferring;
static _Thread_local uint64_t store_deferred_group;   /* see store.group */
static _Thread_local uint64_t store_deferred;

/* The syncer's own descriptors; only the syncer thread touches them. */
static struct {
  unsigned generation;
  char path[PATH_MAX];
  int wal_fd, db_fd;
} store_syncer = {0, "", -1, -1};

/* 1 if fd is open on the file now at path (not replaced, not unlinked). */
static int store_fd_current(int fd, const struct stat *at_path) {
  struct stat st;
  return fd >= 0 && fstat(fd, &st) == 0 && st.st_nlink > 0 && st.st_ino == at_path->st_ino &&
         st.st_dev == at_path->st_dev;
}

/* Reopens fd on path if it no longer refers to the file there. Returns 1
 * when it was (re)opened, 0 when it was current, -1 when path is missing. */
static int store_fd_refresh(int *fd, const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return -1;
  if (store_fd_current(*fd, &st)) return 0;
  if (*fd >= 0) close(*fd);
  *fd = open(path, O_RDONLY | O_CLOEXEC);
  return *fd >= 0 ? 1 : -1;
}

/* fsyncs the directory holding path, so the name of a file newly created
 * there is durable too. */
static void store_sync_dir(const char *path) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == dir) slash[1] = '\0';
  else if (slash) *slash = '\0';
  else snprintf(dir, sizeof dir, ".");
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  fsync(fd);
  close(fd);
}

/* One round's disk work: the WAL if it exists, else the database file.
 * Returns 0, or -1 (logged) when the data may not be on disk. */
static int store_sync_files(void) {
  unsigned gen = atomic_load(&store_gen);
  if (gen != store_syncer.generation || !store_syncer.path[0]) {
    pthread_mutex_lock(&store_path_lock);
    snprintf(store_syncer.path, sizeof store_syncer.path, "%s", store_db_path);
    store_syncer.generation = atomic_load(&store_gen);
    pthread_mutex_unlock(&store_path_lock);
  }
  if (!store_syncer.path[0]) return 0;                 /* no database: nothing committed */
  char wal[PATH_MAX + 8];
  snprintf(wal, sizeof wal, "%s-wal", store_syncer.path);
  int fresh = store_fd_refresh(&store_syncer.wal_fd, wal);
  const char *what = wal;
  int rc;
  if (fresh >= 0) {
    rc = fdatasync(store_syncer.wal_fd);
    if (fresh == 1 && rc == 0) store_sync_dir(store_syncer.path);  /* a new WAL's name */
  } else {
    what = store_syncer.path;
    rc = store_fd_refresh(&store_syncer.db_fd, store_syncer.path) >= 0
             ? fdatasync(store_syncer.db_fd)
             : -1;
  }
  if (rc != 0 && errno != ENOENT) {
    /* Whoever waits would be told their commit is durable when it may not
     * be, and after a failed fsync the kernel may drop the dirty pages, so a
     * retry proves nothing. Stop instead: nothing was acknowledged for these
     * commits, the platform delivers them again, and a restart (systemd's
     * Restart=on-failure) reads the store back from disk. */
    log_event(LOG_ERROR, "store: fsync failed; stopping so nothing is acknowledged that is not on disk",
              "file", what, "error", strerror(errno), NULL);
    abort();
  }
  return rc;
}

static void *store_syncer_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&store_sync_lock);
  for (;;) {
    while (store_sync_counts.synced == store_sync_counts.requested)
      pthread_cond_wait(&store_sync_wake, &store_sync_lock);
    uint64_t target = store_sync_counts.requested;
    store_sync_counts.rounds_started++;
    pthread_mutex_unlock(&store_sync_lock);
    int rc = store_sync_files();
    pthread_mutex_lock(&store_sync_lock);
    store_sync_counts.synced = target;
    store_sync_counts.rounds_completed++;
    if (rc != 0) store_sync_counts.failures++;
    store_waiter *due = NULL, **link = &store_waiters;
    while (*link) {                                     /* move the covered callbacks to due */
      store_waiter *w = *link;
      if (w->ticket <= target) {
        *link = w->next;
        w->next = due;
        due = w;
      } else {
        link = &w->next;
      }
    }
    pthread_cond_broadcast(&store_sync_done);
    pthread_mutex_unlock(&store_sync_lock);
    while (due) {
      store_waiter *w = due;
      due = w->next;
      w->fn(w->arg);
      free(w);
    }
    pthread_mutex_lock(&store_sync_lock);
  }
  return NULL;
}

static void store_syncer_start(void) {
  pthread_t t;
  if (pthread_create(&t, NULL, store_syncer_main, NULL) != 0) {
    log_event(LOG_ERROR, "store: cannot start the syncer thread", "error", strerror(errno), NULL);
    abort();                                            /* every durable acknowledgement needs it */
  }
  pthread_detach(t);
}

uint64_t store_sync_request(void) {
  pthread_once(&store_syncer_once, store_syncer_start);
  pthread_mutex_lock(&store_sync_lock);
  uint64_t ticket = ++store_sync_counts.requested;
  pthread_cond_signal(&store_sync_wake);
  pthread_mutex_unlock(&store_sync_lock);
  return ticket;
}

void store_sync_wait(uint64_t ticket) {
  pthread_mutex_lock(&store_sync_lock);
  while (store_sync_counts.synced < ticket) pthread_cond_wait(&store_sync_done, &store_sync_lock);
  pthread_mutex_unlock(&store_sync_lock);
}

int store_sync_notify(uint64_t ticket, void (*fn)(void *arg), void *arg) {
  store_waiter *w = malloc(sizeof *w);
  pthread_mutex_lock(&store_sync_lock);
  int durable = store_sync_counts.synced >= ticket, queued = !durable && w;
  if (queued) {
    *w = (store_waiter){ticket, fn, arg, store_waiters};
    store_waiters = w;
  }
  pthread_mutex_unlock(&store_sync_lock);
  if (queued) return 0;
  free(w);
  if (!durable) store_sync_wait(ticket);                /* no memory to queue it: wait here */
  return 1;
}

void store_defer_sync_begin(void) {
  store_deferring = 1;
  store_deferred = 0;
  store_deferred_group = 0;
}

uint64_t store_defer_sync_end(void) {
  store_deferring = 0;
  return store_deferred;
}

void store_sync(void) {
  uint64_t ticket = store_sync_request();
  if (!store_deferring) store_sync_wait(ticket);
  else if (ticket > store_deferred) store_deferred = ticket;
}

void store_sync_stats(store_sync_stats_t *out) {
  pthread_mutex_lock(&store_sync_lock);
  *out = store_sync_counts;
  pthread_mutex_unlock(&store_sync_lock);
}

/* ---- group transactions ----------------------------------------------------- */

/* store.group(fn): events that arrive together share one transaction.
 *
 * Members take turns on one shared writer connection: the first opens a
 * transaction (BEGIN IMMEDIATE), each runs its fn inside a savepoint of it,
 * and the committer thread COMMITs whatever has gathered as soon as it gets
 * the connection, then takes one sync ticket for the lot. So a burst of
 * webhooks costs one WAL write and one fsync rather than one each, and no
 * member waits on its thread: in a handler the response is held until its
 * group is durable (store_defer_group), elsewhere store.group waits. Groups
 * commit in the order they opened; ids count up from 1. */
typedef struct store_group_waiter {
  uint64_t group;
  store_group_cb fn;        /* NULL for a thread blocked in store_group_wait */
  void *arg;
  int done, ok;
  uint64_t ticket;
  struct store_group_waiter *next;
} store_group_waiter;

static struct {
  pthread_mutex_t lock;             /* the shared connection and everything here */
  pthread_cond_t open;              /* the committer: a group is open */
  pthread_cond_t done;              /* blocked waiters: a group ended */
  pthread_once_t once;
  store_conn *conn;
  uint64_t open_id, next_id;
  int broken;                       /* the open transaction was lost (rolled back by SQLite) */
  store_group_waiter *waiters;
  uint64_t ended_id;                /* every group up to this one has ended */
  struct { uint64_t id, ticket; int ok; } recent[STORE_GROUP_RECENT];  /* how they ended */
} store_grp = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
               PTHREAD_ONCE_INIT, NULL, 0, 0, 0, NULL, 0, {{0, 0, 0}}};

typedef struct store_group_relay {
  store_group_cb fn;
  void *arg;
} store_group_relay;

static void store_group_relay_ok(void *arg) {
  store_group_relay r = *(store_group_relay *)arg;
  free(arg);
  r.fn(r.arg, 1);
}

static void *store_committer_main(void *arg);

static void store_committer_start(void) {
  pthread_t t;
  if (pthread_create(&t, NULL, store_committer_main, NULL) != 0) {
    log_event(LOG_ERROR, "store: cannot start the committer thread", "error", strerror(errno), NULL);
    abort();                                            /* every group member would wait forever */
  }
  pthread_detach(t);
}

/* Ends group id (ok or not) for its waiters: queued callbacks fire once the
 * commit is durable; blocked threads are woken. Called with the lock held;
 * the callbacks are handed over, not run, so nothing runs under the lock. */
static store_group_waiter *store_group_end(uint64_t id, int ok, uint64_t ticket) {
  store_grp.ended_id = id;
  store_grp.recent[id % STORE_GROUP_RECENT].id = id;
  store_grp.recent[id % STORE_GROUP_RECENT].ok = ok;
  store_grp.recent[id % STORE_GROUP_RECENT].ticket = ticket;
  store_group_waiter *callbacks = NULL, **link = &store_grp.waiters;
  while (*link) {
    store_group_waiter *w = *link;
    if (w->group != id) {
      link = &w->next;
      continue;
    }
    *link = w->next;
    w->done = 1, w->ok = ok, w->ticket = ticket;
    if (w->fn) w->next = callbacks, callbacks = w;
  }
  pthread_cond_broadcast(&store_grp.done);
  return callbacks;
}

static void *store_committer_main(void *arg) {
  (void)arg;
  pthread_mutex_lock(&store_grp.lock);
  for (;;) {
    while (!store_grp.open_id) pthread_cond_wait(&store_grp.open, &store_grp.lock);
    uint64_t id = store_grp.open_id;
    char err[STORE_ERR] = "";
    int ok = !store_grp.broken;
    if (ok && sqlite3_exec(store_grp.conn->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
      snprintf(err, sizeof err, "%s", sqlite3_errmsg(store_grp.conn->db));
      ok = 0;
    }
    if (!ok && !sqlite3_get_autocommit(store_grp.conn->db))
      sqlite3_exec(store_grp.conn->db, "ROLLBACK", NULL, NULL, NULL);
    store_grp.open_id = 0, store_grp.broken = 0;
    uint64_t ticket = ok ? store_sync_request() : 0;
    store_group_waiter *callbacks = store_group_end(id, ok, ticket);
    pthread_mutex_unlock(&store_grp.lock);
    if (!ok) log_event(LOG_ERROR, "store: a group transaction failed; its writes are lost", "error",
                       err[0] ? err : "transaction rolled back", NULL);
    while (callbacks) {
      store_group_waiter *w = callbacks;
      callbacks = w->next;
      store_group_relay *relay = ok ? malloc(sizeof *relay) : NULL;
      if (relay) {
        *relay = (store_group_relay){w->fn, w->arg};
        if (store_sync_notify(ticket, store_group_relay_ok, relay) == 1) store_group_relay_ok(relay);
      } else {
        if (ok) store_sync_wait(ticket);                /* no memory to queue: wait here */
        w->fn(w->arg, ok);
      }
      free(w);
    }
    pthread_mutex_lock(&store_grp.lock);
  }
  return NULL;
}

/* How an ended group ended: 1 ok (ticket set), 0 failed or forgotten
 * (a waiter that old is told it failed: the safe answer). Lock held. */
static int store_group_outcome(uint64_t group, uint64_t *ticket) {
  if (store_grp.recent[group % STORE_GROUP_RECENT].id != group) return 0;
  *ticket = store_grp.recent[group % STORE_GROUP_RECENT].ticket;
  return store_grp.recent[group % STORE_GROUP_RECENT].ok;
}

int store_group_notify(uint64_t group, store_group_cb fn, void *arg) {
  store_group_waiter *w = calloc(1, sizeof *w);
  if (!w) return -1;
  w->group = group, w->fn = fn, w->arg = arg;
  pthread_mutex_lock(&store_grp.lock);
  if (group > store_grp.ended_id) {
    w->next = store_grp.waiters;
    store_grp.waiters = w;
    pthread_mutex_unlock(&store_grp.lock);
    return 0;
  }
  uint64_t ticket = 0;
  int ok = store_group_outcome(group, &ticket);
  pthread_mutex_unlock(&store_grp.lock);
  free(w);
  store_group_relay *relay = ok ? malloc(sizeof *relay) : NULL;
  if (!relay) {
    if (ok) store_sync_wait(ticket);
    fn(arg, ok);
    return 0;
  }
  *relay = (store_group_relay){fn, arg};
  if (store_sync_notify(ticket, store_group_relay_ok, relay) == 1) store_group_relay_ok(relay);
  return 0;
}

int store_group_wait(uint64_t group) {
  store_group_waiter w = {.group = group};
  pthread_mutex_lock(&store_grp.lock);
  if (group <= store_grp.ended_id) {
    w.done = 1;
    w.ok = store_group_outcome(group, &w.ticket);
  } else {
    w.next = store_grp.waiters;
    store_grp.waiters = &w;
  }
  while (!w.done) pthread_cond_wait(&store_grp.done, &store_grp.lock);
  pthread_mutex_unlock(&store_grp.lock);
  if (w.ok) store_sync_wait(w.ticket);
  return w.ok;
}

void store_hook_at_commit(void) {
  if (store_tls) store_tls->hook_at_commit = 1;    /* the group's, inside store.group */
}

uint64_t store_defer_group(void) {
  uint64_t g = store_deferred_group;
  store_deferred_group = 0;
  return g;
}

/* Joins the open group (opening one if none), with the shared connection
 * in place of this thread's. Returns the group id, or 0 with err set. Holds
 * the lock on success: store_group_leave releases it. */
static uint64_t store_group_join(char *err, size_t errlen) {
  pthread_once(&store_grp.once, store_committer_start);
  pthread_mutex_lock(&store_grp.lock);
  unsigned gen = atomic_load(&store_gen);
  if (!store_grp.conn || (store_grp.conn->generation != gen && !store_grp.open_id)) {
    char path[PATH_MAX];
    pthread_mutex_lock(&store_path_lock);
    snprintf(path, sizeof path, "%s", store_db_path);
    pthread_mutex_unlock(&store_path_lock);
    sqlite3 *db = path[0] ? store_connect(path, err, errlen) : NULL;
    if (!path[0]) snprintf(err, errlen, "store: no database (call store.open first)");
    store_conn *c = db ? store_conn_new(db, gen) : NULL;
    if (!c) {
      if (db) snprintf(err, errlen, "store: out of memory");
      pthread_mutex_unlock(&store_grp.lock);
      return 0;
    }
    store_conn_free(store_grp.conn);
    store_grp.conn = c;
  }
  if (!store_grp.open_id) {
    if (sqlite3_exec(store_grp.conn->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
      snprintf(err, errlen, "store: %s", sqlite3_errmsg(store_grp.conn->db));
      pthread_mutex_unlock(&store_grp.lock);
      return 0;
    }
    store_grp.open_id = ++store_grp.next_id;
    pthread_cond_signal(&store_grp.open);
  }
  if (sqlite3_exec(store_grp.conn->db, "SAVEPOINT store_group", NULL, NULL, NULL) != SQLITE_OK) {
    snprintf(err, errlen, "store: %s", sqlite3_errmsg(store_grp.conn->db));
    pthread_mutex_unlock(&store_grp.lock);
    return 0;
  }
  return store_grp.open_id;
}

/* Keeps (ok) or undoes this member's writes and lets the next one in. */
static void store_group_leave(int ok) {
  sqlite3 *db = store_grp.conn->db;
  if (!ok) sqlite3_exec(db, "ROLLBACK TO store_group", NULL, NULL, NULL);
  sqlite3_exec(db, "RELEASE store_group", NULL, NULL, NULL);
  if (sqlite3_get_autocommit(db)) store_grp.broken = 1;  /* SQLite dropped the transaction */
  pthread_mutex_unlock(&store_grp.lock);
}

/* ---- the `store` binding --------------------------------------------------- */

/* Raises unless every argument from first on is a bindable value; called
 * before anything is held. */
static void store_check_params(lua_State *L, int first) {
  for (int i = first; i <= lua_gettop(L); i++) {
    int t = lua_type(L, i);
    if (t != LUA_TNIL && t != LUA_TBOOLEAN && t != LUA_TNUMBER && t != LUA_TSTRING)
      luaL_argerror(L, i, lua_pushfstring(L, "store: cannot bind a %s", luaL_typename(L, i)));
  }
}

/* Binds the arguments from first on to st. 0, or -1 with err. Raises nothing. */
static int store_bind(lua_State *L, sqlite3_stmt *st, int first, char *err, size_t errlen) {
  int n = lua_gettop(L) - first + 1;
  int want = sqlite3_bind_parameter_count(st);
  if (n != want)
    return snprintf(err, errlen, "store: statement takes %d parameters, got %d", want, n), -1;
  for (int i = 0; i < n; i++) {
    int idx = first + i, rc;
    switch (lua_type(L, idx)) {
      case LUA_TBOOLEAN: rc = sqlite3_bind_int(st, i + 1, lua_toboolean(L, idx)); break;
      case LUA_TNUMBER:
        rc = lua_isinteger(L, idx) ? sqlite3_bind_int64(st, i + 1, lua_tointeger(L, idx))
                                   : sqlite3_bind_double(st, i + 1, lua_tonumber(L, idx));
        break;
      case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);     /* stays on the stack while bound */
        rc = sqlite3_bind_text64(st, i + 1, s, len, SQLITE_STATIC, SQLITE_UTF8);
        break;
      }
      default: rc = sqlite3_bind_null(st, i + 1); break;
    }
    if (rc != SQLITE_OK)
      return snprintf(err, errlen, "store: %s", sqlite3_errmsg(sqlite3_db_handle(st))), -1;
  }
  return 0;
}

/* The statement for the call's SQL (argument 1) with the rest bound; on
 * failure raises, having given the statement back first. */
static sqlite3_stmt *store_lua_statement(lua_State *L, int *more) {
  size_t len;
  const char *sql = luaL_checklstring(L, 1, &len);
  store_check_params(L, 2);
  char err[STORE_ERR];
  sqlite3_stmt *st = store_prepare(sql, len, more, err, sizeof err);
  if (!st) luaL_error(L, "%s", err);
  if (more && *more) return st;                          /* the caller runs the whole script */
  if (store_bind(L, st, 2, err, sizeof err) != 0) {
    store_finish(st);
    luaL_error(L, "%s", err);
  }
  return st;
}

/* store.exec(sql, ...) -> changes, last insert row id. SQL with several
 * statements (a migration) runs whole when it takes no parameters. */
static int store_lua_exec(lua_State *L) {
  int more = 0;
  sqlite3_stmt *st = store_lua_statement(L, &more);
  sqlite3 *db = sqlite3_db_handle(st);
  char err[STORE_ERR];
  sqlite3_int64 before = sqlite3_total_changes64(db);
  int rc;
  if (more) {
    store_finish(st);
    if (lua_gettop(L) > 1) return luaL_error(L, "store: parameters with more than one statement");
    char *msg = NULL;
    rc = sqlite3_exec(db, lua_tostring(L, 1), NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
      snprintf(err, sizeof err, "store: %s", msg ? msg : sqlite3_errstr(rc));
      sqlite3_free(msg);
      return luaL_error(L, "%s", err);
    }
    lua_pushinteger(L, sqlite3_total_changes64(db) - before);
    lua_pushinteger(L, sqlite3_last_insert_rowid(db));
    return 2;
  }
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {}
  if (rc != SQLITE_DONE) snprintf(err, sizeof err, "store: %s", sqlite3_errmsg(db));
  store_finish(st);
  if (rc != SQLITE_DONE) return luaL_error(L, "%s", err);
  lua_pushinteger(L, sqlite3_total_changes64(db) != before ? sqlite3_changes64(db) : 0);
  lua_pushinteger(L, sqlite3_last_insert_rowid(db));
  return 2;
}

typedef struct store_rows {
  sqlite3_stmt *st;
  int limit;                      /* 0: every row */
  int rc;                         /* the last sqlite3_step result */
} store_rows;

/* Steps the statement and returns its rows as an array of tables. Runs
 * protected, so a memory error cannot leave the statement unreset. */
static int store_collect(lua_State *L) {
  store_rows *r = lua_touserdata(L, 1);
  int ncol = sqlite3_column_count(r->st);
  luaL_checkstack(L, 6, NULL);
  lua_createtable(L, ncol, 0);                           /* column names at 2 */
  for (int i = 0; i < ncol; i++) {
    lua_pushstring(L, sqlite3_column_name(r->st, i));
    lua_rawseti(L, 2, i + 1);
  }
  lua_newtable(L);                                       /* rows at 3 */
  for (int n = 0; r->limit == 0 || n < r->limit;) {
    r->rc = sqlite3_step(r->st);
    if (r->rc != SQLITE_ROW) break;
    lua_createtable(L, 0, ncol);                         /* the row */
    for (int i = 0; i < ncol; i++) {
      int type = sqlite3_column_type(r->st, i);
      if (type == SQLITE_NULL) continue;
      lua_rawgeti(L, 2, i + 1);                          /* name */
      switch (type) {
        case SQLITE_INTEGER: lua_pushinteger(L, sqlite3_column_int64(r->st, i)); break;
        case SQLITE_FLOAT: lua_pushnumber(L, sqlite3_column_double(r->st, i)); break;
        case SQLITE_BLOB: {
          const void *b = sqlite3_column_blob(r->st, i);
          lua_pushlstring(L, b, (size_t)sqlite3_column_bytes(r->st, i));
          break;
        }
        default: {
          const unsigned char *s = sqlite3_column_text(r->st, i);
          lua_pushlstring(L, (const char *)s, (size_t)sqlite3_column_bytes(r->st, i));
          break;
        }
      }
      lua_rawset(L, -3);                                 /* row[name] = value */
    }
    lua_rawseti(L, 3, ++n);                              /* append the row */
  }
  return 1;
}

int store_push_rows(lua_State *L, sqlite3_stmt *st, int limit, char *err, size_t errlen) {
  store_rows r = {st, limit, SQLITE_DONE};
  lua_pushcfunction(L, store_collect);
  lua_pushlightuserdata(L, &r);
  int status = lua_pcall(L, 1, 1, 0);                    /* rows or error */
  int failed = status == LUA_OK && r.rc != SQLITE_DONE && r.rc != SQLITE_ROW;
  if (failed) snprintf(err, errlen, "store: %s", sqlite3_errmsg(sqlite3_db_handle(st)));
  store_finish(st);
  if (status != LUA_OK) lua_error(L);
  if (failed) lua_pop(L, 1);                             /* the partial rows */
  return failed ? -1 : 0;
}

/* Runs the call's statement and leaves its rows (at most limit) on the
 * stack; raises on SQL errors after giving the statement back. */
static void store_lua_rows(lua_State *L, int limit) {
  int more = 0;
  sqlite3_stmt *st = store_lua_statement(L, &more);
  char err[STORE_ERR];
  if (more) {
    store_finish(st);
    luaL_error(L, "store: query takes one statement");
  }
  if (store_push_rows(L, st, limit, err, sizeof err) != 0) luaL_error(L, "%s", err);
}

/* store.query(sql, ...) -> array of rows (column -> value; NULL absent) */
static int store_lua_query(lua_State *L) {
  store_lua_rows(L, 0);
  return 1;
}

/* store.row(sql, ...) -> the first row, or nil */
static int store_lua_row(lua_State *L) {
  store_lua_rows(L, 1);
  lua_rawgeti(L, -1, 1);                                 /* first row or nil */
  return 1;
}

/* store.transaction(fn) -> fn's results. BEGIN IMMEDIATE, fn, COMMIT; on
 * an error ROLLBACK and re-raise the same value. Inside another
 * transaction fn runs under a savepoint. */
/* store.group(fn) -> fn's results. fn's writes join the group transaction
 * (see above); they are durable when store.group returns, or, in an HTTP
 * handler, before the response is sent. fn must not wait for anything:
 * every other member waits for it. An error in fn undoes only its writes
 * and is raised again. */
static int store_lua_group(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  if (store_tls && store_tls == store_grp.conn) {       /* already a member: fn joins too */
    lua_call(L, 0, LUA_MULTRET);
    return lua_gettop(L);
  }
  if (store_tls && !sqlite3_get_autocommit(store_tls->db))
    return luaL_error(L, "store.group inside store.transaction: the group would wait for this "
                         "thread's own write lock");
  char err[STORE_ERR];
  uint64_t id = store_group_join(err, sizeof err);
  if (!id) return luaL_error(L, "%s", err);
  store_conn *own = store_tls;
  store_tls = store_grp.conn;                           /* every write of fn goes to the group */
  int status = lua_pcall(L, 0, LUA_MULTRET, 0);         /* fn's results, or its error */
  store_tls = own;
  store_group_leave(status == LUA_OK);
  if (status != LUA_OK) return lua_error(L);
  if (store_deferring) {
    if (id > store_deferred_group) store_deferred_group = id;
  } else if (!store_group_wait(id)) {
    return luaL_error(L, "store: the group transaction failed; see the log");
  }
  return lua_gettop(L);
}

static int store_lua_transaction(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  char err[STORE_ERR];
  sqlite3 *db = store_db(err, sizeof err);
  if (!db) return luaL_error(L, "%s", err);
  int nested = !sqlite3_get_autocommit(db);
  if (store_run(nested ? "SAVEPOINT store_nested" : "BEGIN IMMEDIATE", err, sizeof err) != 0)
    return luaL_error(L, "%s", err);
  int status = lua_pcall(L, 0, LUA_MULTRET, 0);         /* fn's results, or its error */
  if (status == LUA_OK &&
      store_run(nested ? "RELEASE store_nested" : "COMMIT", err, sizeof err) == 0)
    return lua_gettop(L);
  char ignored[STORE_ERR];
  if (nested) {
    store_run("ROLLBACK TO store_nested", ignored, sizeof ignored);
    store_run("RELEASE store_nested", ignored, sizeof ignored);
  } else if (!sqlite3_get_autocommit(db)) {
    store_run("ROLLBACK", ignored, sizeof ignored);
  }
  if (status != LUA_OK) return lua_error(L);
  return luaL_error(L, "%s", err);
}

/* store.open(path) -> true, or nil, err */
static int store_lua_open(lua_State *L) {
  char err[STORE_ERR];
  if (store_open(luaL_checkstring(L, 1), err, sizeof err) != 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* store.path() -> the database path, or nil before store.open */
static int store_lua_path(lua_State *L) {
  char path[PATH_MAX];
  pthread_mutex_lock(&store_path_lock);
  snprintf(path, sizeof path, "%s", store_db_path);
  pthread_mutex_unlock(&store_path_lock);
  if (path[0]) lua_pushstring(L, path);
  else lua_pushnil(L);
  return 1;
}

/* store.sync(): everything this thread committed is durable on return (in
 * an HTTP handler, before the response is sent). */
static int store_lua_sync(lua_State *L) {
  store_sync();
  lua_pushboolean(L, 1);
  return 1;
}

int luaopen_store(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"open", store_lua_open}, {"path", store_lua_path},   {"exec", store_lua_exec},
      {"query", store_lua_query}, {"row", store_lua_row},   {"transaction", store_lua_transaction},
      {"sync", store_lua_sync},   {"group", store_lua_group}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
