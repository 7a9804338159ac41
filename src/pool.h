/*
 * pool.h - the durable worker pool: jobs live in the store's `jobs` table;
 * worker threads, each with its own Lua state, claim due jobs and run
 * require(module).jobs[name](payload, job), retrying failures with
 * exponential backoff until the job's attempt limit, then marking it dead.
 *
 * Workers start on demand up to the pool's size and leave after idling
 * for POOL_IDLE_MS; they sleep on a condition variable until a job is due,
 * one is submitted, or POOL_POLL_MS passes (jobs written by another
 * process).
 */
#ifndef SKUDEMO_POOL_H
#define SKUDEMO_POOL_H

#include <stddef.h>

typedef struct pool_counts_t {
  long long queued, running, done, dead;   /* jobs in the store, by state */
  int workers, busy;                       /* this process's worker threads */
} pool_counts_t;

/* Fills out from the store and the pool. 0, or -1 with the reason in err
 * (no database open, SQL error). */
int pool_counts(pool_counts_t *out, char *err, size_t errlen);

/* Tells the workers that a job may be due now: wakes an idle one, or
 * starts one when all are busy and the pool has room. */
void pool_wake(void);

/* Stops claiming, wakes every worker and waits up to timeout_ms for the
 * running jobs; returns how many are still running (they stay `running`
 * in the store and run again at the next start). */
int pool_stop(long timeout_ms);

#endif
