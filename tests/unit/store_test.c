/* store_test.c - group commit, deferred sync and the statement cache. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "store.h"
#include "unit.h"

#define CALLERS 16
#define ROUNDS 20

static atomic_int late_returns;       /* returned before a round that began after the call */
static atomic_int commit_errors;
static pthread_barrier_t start_line;

/* One caller: commit a row, then sync, ROUNDS times. */
static void *caller(void *arg) {
  long id = (long)arg;
  char err[256], sql[128];
  pthread_barrier_wait(&start_line);
  for (int i = 0; i < ROUNDS; i++) {
    snprintf(sql, sizeof sql, "INSERT INTO events(caller, n) VALUES(%ld, %d)", id, i);
    if (store_run(sql, err, sizeof err) != 0) atomic_fetch_add(&commit_errors, 1);
    store_sync_stats_t before, after;
    store_sync_stats(&before);
    uint64_t ticket = store_sync_request();
    store_sync_wait(ticket);
    store_sync_stats(&after);
    /* rounds run one at a time and round rounds_started+1 is the first to
     * begin after the call did: it must have completed */
    if (after.rounds_completed < before.rounds_started + 1 || after.synced < ticket)
      atomic_fetch_add(&late_returns, 1);
  }
  return NULL;
}

static atomic_int notified;
static void on_durable(void *arg) { atomic_fetch_add(&notified, *(int *)arg); }

static const char *tmp_base(void) {
  const char *t = getenv("SKUDEMO_TEST_TMP");
  return t ? t : "tests/tmp";
}

int main(void) {
  char path[512], err[256];
  snprintf(path, sizeof path, "%s/store-unit-%d/sub/store.db", tmp_base(), (int)getpid());

  CASE("open creates directories and a WAL database") {
    CHECK(store_open(path, err, sizeof err) == 0);
    CHECK_STR(store_path(), path);
    CHECK(store_run("CREATE TABLE events(id INTEGER PRIMARY KEY, caller, n)", err, sizeof err) == 0);
    sqlite3_stmt *st = store_prepare("PRAGMA journal_mode", 19, NULL, err, sizeof err);
    CHECK(st && sqlite3_step(st) == SQLITE_ROW);
    if (st) CHECK_STR((const char *)sqlite3_column_text(st, 0), "wal");
    if (st) store_finish(st);
  }

  CASE("group commit: each caller waits for a sync begun after its call, fsyncs are shared") {
    pthread_t t[CALLERS];
    store_sync_stats_t s0, s1;
    store_sync_stats(&s0);
    pthread_barrier_init(&start_line, NULL, CALLERS);
    for (long i = 0; i < CALLERS; i++) pthread_create(&t[i], NULL, caller, (void *)i);
    for (int i = 0; i < CALLERS; i++) pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start_line);
    store_sync_stats(&s1);
    uint64_t rounds = s1.rounds_completed - s0.rounds_completed;
    printf("# %d sync calls, %llu fsync rounds\n", CALLERS * ROUNDS, (unsigned long long)rounds);
    CHECK(atomic_load(&commit_errors) == 0);
    CHECK(atomic_load(&late_returns) == 0);
    CHECK(rounds > 0 && rounds < CALLERS * ROUNDS);
    CHECK(s1.failures == 0);
    sqlite3_stmt *st = store_prepare("SELECT count(*) FROM events", 27, NULL, err, sizeof err);
    CHECK(st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == CALLERS * ROUNDS);
    if (st) store_finish(st);
  }

  CASE("notify: queued callbacks run once durable, a durable ticket returns 1") {
    int one = 1, ten = 10;
    store_sync_wait(store_sync_request());
    store_sync_stats_t s;
    store_sync_stats(&s);
    CHECK(store_sync_notify(s.synced, on_durable, &one) == 1);
    CHECK(atomic_load(&notified) == 0);
    CHECK(store_run("INSERT INTO events(caller, n) VALUES(-1, 0)", err, sizeof err) == 0);
    uint64_t ticket = store_sync_request();
    if (store_sync_notify(ticket, on_durable, &ten) == 1) atomic_fetch_add(&notified, ten);
    for (int i = 0; i < 500 && atomic_load(&notified) != 10; i++) usleep(2000);
    CHECK(atomic_load(&notified) == 10);
    CHECK(store_sync_notify(0, on_durable, &one) == 1);
  }

  CASE("deferred sync: records the highest ticket without blocking") {
    store_defer_sync_begin();
    CHECK(store_defer_sync_end() == 0);
    store_defer_sync_begin();
    store_sync();
    store_sync();
    uint64_t ticket = store_defer_sync_end();
    store_sync_stats_t s;
    store_sync_stats(&s);
    CHECK(ticket > 0 && ticket == s.requested);
    store_sync_wait(ticket);
    store_sync_stats(&s);
    CHECK(s.synced >= ticket);
  }

  CASE("statement cache: reuse, nested use, eviction") {
    const char *sql = "SELECT n FROM events WHERE caller = ?";
    sqlite3_stmt *a = store_prepare(sql, strlen(sql), NULL, err, sizeof err);
    sqlite3_stmt *b = store_prepare(sql, strlen(sql), NULL, err, sizeof err);
    CHECK(a && b && a != b);                            /* in use: a private copy */
    store_finish(b);
    store_finish(a);
    sqlite3_stmt *c = store_prepare(sql, strlen(sql), NULL, err, sizeof err);
    CHECK(c == a);
    store_finish(c);
    for (int i = 0; i < 40; i++) {
      char q[64];
      snprintf(q, sizeof q, "SELECT %d", i);
      sqlite3_stmt *st = store_prepare(q, strlen(q), NULL, err, sizeof err);
      CHECK(st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == i);
      if (st) store_finish(st);
    }
    int more = 0;
    sqlite3_stmt *m = store_prepare("SELECT 1; SELECT 2", 18, &more, err, sizeof err);
    CHECK(m && more == 1);
    if (m) store_finish(m);
    m = store_prepare("SELECT 1; -- only a comment", 27, &more, err, sizeof err);
    CHECK(m && more == 0);
    if (m) store_finish(m);
    CHECK(store_prepare("SELEC 1", 7, NULL, err, sizeof err) == NULL);
    CHECK(strncmp(err, "store: ", 7) == 0);
  }

  CASE("switching databases: syncs follow the new file") {
    char other[600];
    snprintf(other, sizeof other, "%s.other", path);
    CHECK(store_open(other, err, sizeof err) == 0);
    CHECK(store_run("CREATE TABLE x(y)", err, sizeof err) == 0);
    store_sync_wait(store_sync_request());
    store_sync_stats_t s;
    store_sync_stats(&s);
    CHECK(s.failures == 0);
    CHECK(store_open("", err, sizeof err) == -1);
  }
  UNIT_DONE();
}
