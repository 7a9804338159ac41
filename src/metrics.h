/*
 * metrics.h - process-wide counters and histograms shared by every thread,
 * rendered in the Prometheus text exposition format.
 *
 * A series is a metric name plus its rendered label set
 * (`route="/healthz",status="200"`). Creating a series takes a lock; so does
 * updating it: updates are a few instructions, contention is low.
 */
#ifndef SKUDEMO_METRICS_H
#define SKUDEMO_METRICS_H

/* labels: already rendered (`k="v",k2="v2"`) or NULL. help may be NULL. */
void metrics_inc(const char *name, const char *labels, double by);
void metrics_set(const char *name, const char *labels, double value);
/* Records one observation (in seconds) in a latency histogram. */
void metrics_observe(const char *name, const char *labels, double seconds);
void metrics_help(const char *name, const char *help);

#endif
