/*
 * metrics.c - counters, gauges and latency histograms, and the Lua
 * `metrics` binding.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "host.h"
#include "metrics.h"

#define METRICS_MAX_SERIES 2048
#define METRICS_MAX_HELP 128

enum { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

/* Upper bounds of the latency buckets, in seconds. */
static const double metrics_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                         0.25,  0.5,    1,     2.5,  5,     10,   30};
#define METRICS_NBUCKETS (sizeof metrics_buckets / sizeof metrics_buckets[0])

typedef struct metric_series {
  char *name, *labels;
  int kind;
  double value;                       /* counter/gauge value; histogram sum */
  unsigned long long count;           /* histogram observations */
  unsigned long long buckets[METRICS_NBUCKETS];
} metric_series;

static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static metric_series metrics_series[METRICS_MAX_SERIES];
static int metrics_nseries;
static struct { char *name, *help; } metrics_helps[METRICS_MAX_HELP];
static int metrics_nhelps;

/* Finds or creates a series; NULL when the table is full. Lock held. */
static metric_series *metrics_find(const char *name, const char *labels, int kind) {
  if (!labels) labels = "";
  for (int i = 0; i < metrics_nseries; i++) {
    metric_series *s = &metrics_series[i];
    if (strcmp(s->name, name) == 0 && strcmp(s->labels, labels) == 0) return s;
  }
  if (metrics_nseries == METRICS_MAX_SERIES) return NULL;
  metric_series *s = &metrics_series[metrics_nseries];
  s->name = strdup(name);
  s->labels = strdup(labels);
  if (!s->name || !s->labels) {
    free(s->name), free(s->labels);
    s->name = s->labels = NULL;
    return NULL;
  }
  s->kind = kind;
  metrics_nseries++;
  return s;
}

void metrics_inc(const char *name, const char *labels, double by) {
  pthread_mutex_lock(&metrics_lock);
  metric_series *s = metrics_find(name, labels, METRIC_COUNTER);
  if (s) s->value += by;
  pthread_mutex_unlock(&metrics_lock);
}

void metrics_set(const char *name, const char *labels, double value) {
  pthread_mutex_lock(&metrics_lock);
  metric_series *s = metrics_find(name, labels, METRIC_GAUGE);
  if (s) s->value = value;
  pthread_mutex_unlock(&metrics_lock);
}

void metrics_observe(const char *name, const char *labels, double seconds) {
  pthread_mutex_lock(&metrics_lock);
  metric_series *s = metrics_find(name, labels, METRIC_HISTOGRAM);
  if (s) {
    s->value += seconds;
    s->count++;
    for (size_t b = 0; b < METRICS_NBUCKETS; b++)
      if (seconds <= metrics_buckets[b]) s->buckets[b]++;
  }
  pthread_mutex_unlock(&metrics_lock);
}

void metrics_help(const char *name, const char *help) {
  pthread_mutex_lock(&metrics_lock);
  int i = 0;
  while (i < metrics_nhelps && strcmp(metrics_helps[i].name, name) != 0) i++;
  if (i == metrics_nhelps && i < METRICS_MAX_HELP) {
    metrics_helps[i].name = strdup(name);
    metrics_helps[i].help = strdup(help);
    metrics_nhelps++;
  }
  pthread_mutex_unlock(&metrics_lock);
}

/* Renders a label table (string keys, scalar values) as `k="v",...` sorted by
 * key, with Prometheus escaping, onto the stack; returns it. */
static const char *metrics_lua_labels(lua_State *L, int idx) {
  if (lua_isnoneornil(L, idx)) return lua_pushliteral(L, "");
  luaL_checktype(L, idx, LUA_TTABLE);
  const char *keys[16];
  int n = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {                       /* key, value */
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING && n < 16) keys[n++] = lua_tostring(L, -1);
  }
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
      const char *t = keys[j];
      keys[j] = keys[j - 1], keys[j - 1] = t;
    }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 0; i < n; i++) {
    if (i) luaL_addchar(&b, ',');
    luaL_addstring(&b, keys[i]);
    luaL_addstring(&b, "=\"");
    lua_getfield(L, idx, keys[i]);                 /* value (buffer slot is below) */
    const char *v = luaL_tolstring(L, -1, NULL);   /* value, string */
    lua_remove(L, -2);                             /* string */
    char esc[512];
    size_t e = 0;
    for (const char *p = v; *p && e + 2 < sizeof esc; p++) {
      if (*p == '"' || *p == '\\') esc[e++] = '\\', esc[e++] = *p;
      else if (*p == '\n') esc[e++] = '\\', esc[e++] = 'n';
      else esc[e++] = *p;
    }
    lua_pop(L, 1);
    luaL_addlstring(&b, esc, e);
    luaL_addchar(&b, '"');
  }
  luaL_pushresult(&b);
  return lua_tostring(L, -1);
}

/* metrics.inc(name [, labels [, by]]) */
static int metrics_lua_inc(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  double by = luaL_optnumber(L, 3, 1);
  metrics_inc(name, metrics_lua_labels(L, 2), by);
  return 0;
}

/* metrics.set(name, labels, value) */
static int metrics_lua_set(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  double v = luaL_checknumber(L, 3);
  metrics_set(name, metrics_lua_labels(L, 2), v);
  return 0;
}

/* metrics.observe(name, labels, seconds) */
static int metrics_lua_observe(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  double v = luaL_checknumber(L, 3);
  metrics_observe(name, metrics_lua_labels(L, 2), v);
  return 0;
}

static int metrics_lua_help(lua_State *L) {
  metrics_help(luaL_checkstring(L, 1), luaL_checkstring(L, 2));
  return 0;
}

/* metrics.get(name [, labels]) -> value (histograms: count, sum), or 0. */
static int metrics_lua_get(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const char *labels = metrics_lua_labels(L, 2);
  double v = 0, count = 0;
  int kind = -1;
  pthread_mutex_lock(&metrics_lock);
  for (int i = 0; i < metrics_nseries; i++) {
    metric_series *s = &metrics_series[i];
    if (strcmp(s->name, name) == 0 && strcmp(s->labels, labels) == 0) {
      v = s->value, count = (double)s->count, kind = s->kind;
      break;
    }
  }
  pthread_mutex_unlock(&metrics_lock);
  if (kind == METRIC_HISTOGRAM) {
    lua_pushnumber(L, count);
    lua_pushnumber(L, v);
    return 2;
  }
  lua_pushnumber(L, v);
  return 1;
}

static void metrics_put_number(luaL_Buffer *b, double v) {
  char num[64];
  if (v == floor(v) && fabs(v) < 1e15) snprintf(num, sizeof num, "%.0f", v);
  else snprintf(num, sizeof num, "%.6g", v);
  luaL_addstring(b, num);
}

/* metrics.render() -> every series as Prometheus text, grouped by name. */
static int metrics_lua_render(lua_State *L) {
  /* the snapshot and the marks are userdata, so an error in the buffer
   * below (out of memory) leaks nothing; allocated before taking the lock */
  pthread_mutex_lock(&metrics_lock);
  int n = metrics_nseries + 16;                           /* room for series added meanwhile */
  pthread_mutex_unlock(&metrics_lock);
  metric_series *copy = lua_newuserdatauv(L, sizeof *copy * (size_t)n, 0);
  char *done = lua_newuserdatauv(L, (size_t)n, 0);
  memset(done, 0, (size_t)n);
  pthread_mutex_lock(&metrics_lock);
  if (metrics_nseries < n) n = metrics_nseries;
  memcpy(copy, metrics_series, sizeof *copy * (size_t)n);  /* names stay valid: never freed */
  int nhelps = metrics_nhelps;                            /* entries below it never change */
  pthread_mutex_unlock(&metrics_lock);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 0; i < n; i++) {
    if (done[i]) continue;
    const char *name = copy[i].name;
    const char *help = NULL;
    for (int h = 0; h < nhelps; h++)
      if (strcmp(metrics_helps[h].name, name) == 0) help = metrics_helps[h].help;
    if (help) {
      luaL_addstring(&b, "# HELP "), luaL_addstring(&b, name), luaL_addchar(&b, ' ');
      luaL_addstring(&b, help), luaL_addchar(&b, '\n');
    }
    static const char *const kinds[] = {"counter", "gauge", "histogram"};
    luaL_addstring(&b, "# TYPE "), luaL_addstring(&b, name), luaL_addchar(&b, ' ');
    luaL_addstring(&b, kinds[copy[i].kind]), luaL_addchar(&b, '\n');
    for (int j = i; j < n; j++) {
      metric_series *s = &copy[j];
      if (done[j] || strcmp(s->name, name) != 0) continue;
      done[j] = 1;
      const char *sep = s->labels[0] ? "," : "";
      if (s->kind != METRIC_HISTOGRAM) {
        luaL_addstring(&b, name);
        if (s->labels[0]) luaL_addchar(&b, '{'), luaL_addstring(&b, s->labels), luaL_addchar(&b, '}');
        luaL_addchar(&b, ' ');
        metrics_put_number(&b, s->value);
        luaL_addchar(&b, '\n');
        continue;
      }
      char line[1024];
      for (size_t k = 0; k < METRICS_NBUCKETS; k++) {
        snprintf(line, sizeof line, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, s->labels, sep,
                 metrics_buckets[k], s->buckets[k]);
        luaL_addstring(&b, line);
      }
      snprintf(line, sizeof line, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, s->labels, sep, s->count);
      luaL_addstring(&b, line);
      snprintf(line, sizeof line, "%s_sum%s%s%s %.6f\n%s_count%s%s%s %llu\n", name,
               s->labels[0] ? "{" : "", s->labels, s->labels[0] ? "}" : "", s->value, name,
               s->labels[0] ? "{" : "", s->labels, s->labels[0] ? "}" : "", s->count);
      luaL_addstring(&b, line);
    }
  }
  luaL_pushresult(&b);
  return 1;
}

int luaopen_metrics(lua_State *L) {
  static const luaL_Reg funcs[] = {{"inc", metrics_lua_inc},       {"set", metrics_lua_set},
                                   {"observe", metrics_lua_observe}, {"help", metrics_lua_help},
                                   {"get", metrics_lua_get},       {"render", metrics_lua_render},
                                   {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
