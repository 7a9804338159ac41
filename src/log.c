/*
 * log.c - levelled key=value lines on stderr, with secrets redacted, and the
 * Lua `log` binding.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "clock.h"
#include "host.h"
#include "log.h"

#define LOG_MAX_SECRETS 32
#define LOG_LINE_MAX 8192

static int log_min_level = LOG_INFO;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char *log_secrets[LOG_MAX_SECRETS];
static int log_nsecrets;

static const char *const log_level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(int level) { log_min_level = level; }

int log_level_from_name(const char *name) {
  for (int i = 0; i < 4; i++)
    if (strcasecmp(name, log_level_names[i]) == 0) return i;
  return -1;
}

void log_add_secret(const char *secret) {
  if (!secret || strlen(secret) < 4) return;  /* too short to mask safely */
  pthread_mutex_lock(&log_lock);
  for (int i = 0; i < log_nsecrets; i++)
    if (strcmp(log_secrets[i], secret) == 0) goto done;
  if (log_nsecrets < LOG_MAX_SECRETS) log_secrets[log_nsecrets++] = strdup(secret);
done:
  pthread_mutex_unlock(&log_lock);
}

int log_key_is_secret(const char *key) {
  static const char *const words[] = {"secret", "authorization", "api_key", "apikey",
                                      "password", "token", "cookie", NULL};
  for (int i = 0; words[i]; i++)
    if (strcasestr(key, words[i])) return 1;
  return 0;
}

/* Appends s to buf (quoted when it has spaces, quotes or '='), replacing
 * every registered secret with [redacted]. Called with log_lock held. */
static size_t log_put_value(char *buf, size_t at, size_t cap, const char *s) {
  int quote = (*s == '\0');
  for (const char *p = s; *p && !quote; p++)
    if (isspace((unsigned char)*p) || *p == '"' || *p == '=') quote = 1;
  if (quote && at < cap) buf[at++] = '"';
  while (*s && at + 12 < cap) {
    int hit = 0;
    for (int i = 0; i < log_nsecrets; i++) {
      size_t n = strlen(log_secrets[i]);
      if (strncmp(s, log_secrets[i], n) == 0) {
        memcpy(buf + at, "[redacted]", 10);
        at += 10, s += n, hit = 1;
        break;
      }
    }
    if (hit) continue;
    unsigned char c = (unsigned char)*s++;
    if (c == '"' || c == '\\') buf[at++] = '\\', buf[at++] = (char)c;
    else if (c == '\n') buf[at++] = '\\', buf[at++] = 'n';
    else if (c == '\t') buf[at++] = '\\', buf[at++] = 't';
    else if (c < 0x20) at += (size_t)snprintf(buf + at, cap - at, "\\x%02x", c);
    else buf[at++] = (char)c;
  }
  if (quote && at < cap) buf[at++] = '"';
  return at;
}

static size_t log_put_field(char *buf, size_t at, size_t cap, const char *k, const char *v) {
  if (at + strlen(k) + 16 >= cap) return at;
  buf[at++] = ' ';
  for (const char *p = k; *p; p++)
    buf[at++] = (isalnum((unsigned char)*p) || *p == '_' || *p == '.') ? *p : '_';
  buf[at++] = '=';
  return log_put_value(buf, at, cap, log_key_is_secret(k) ? "[redacted]" : v);
}

/* Writes one line from parallel arrays of keys and values. */
static void log_write(int level, const char *msg, int n, const char **keys, const char **vals) {
  if (level < log_min_level) return;
  char buf[LOG_LINE_MAX];
  long long now = clock_wall_ms();
  time_t secs = (time_t)(now / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  size_t at = strftime(buf, sizeof buf, "ts=%Y-%m-%dT%H:%M:%S", &tm);
  at += (size_t)snprintf(buf + at, sizeof buf - at, ".%03dZ level=%s msg=", (int)(now % 1000),
                         log_level_names[level]);
  pthread_mutex_lock(&log_lock);
  at = log_put_value(buf, at, sizeof buf - 2, msg);
  for (int i = 0; i < n; i++) at = log_put_field(buf, at, sizeof buf - 2, keys[i], vals[i]);
  pthread_mutex_unlock(&log_lock);
  buf[at++] = '\n';
  fwrite(buf, 1, at, stderr);  /* stderr is unbuffered: one write per line */
}

void log_event(int level, const char *msg, ...) {
  const char *keys[32], *vals[32];
  int n = 0;
  va_list ap;
  va_start(ap, msg);
  for (const char *k; n < 32 && (k = va_arg(ap, const char *)) != NULL; n++) {
    keys[n] = k;
    vals[n] = va_arg(ap, const char *);
    if (!vals[n]) vals[n] = "";
  }
  va_end(ap);
  log_write(level, msg, n, keys, vals);
}

/* log.<level>(msg [, fields]): fields is a table of key = value (any
 * scalar; tables are shown as [table]). Keys are written sorted. */
static int log_lua_write(lua_State *L, int level) {
  const char *msg = luaL_checkstring(L, 1);
  if (level < log_min_level) return 0;
  const char *keys[32], *vals[32];
  int n = 0;
  if (lua_istable(L, 2)) {
    luaL_checkstack(L, 70, "log fields");
    lua_pushnil(L);                              /* first key */
    while (lua_next(L, 2)) {                     /* ... k v */
      if (n < 32 && lua_type(L, -2) == LUA_TSTRING) {
        lua_pushvalue(L, -2);                    /* ... k v kcopy */
        if (lua_type(L, -2) == LUA_TTABLE) lua_pushliteral(L, "[table]");
        else luaL_tolstring(L, -2, NULL);        /* ... k v kcopy vstr */
        lua_rotate(L, -4, 2);                    /* ... kcopy vstr k v */
        keys[n] = lua_tostring(L, -4);           /* anchored on the stack */
        vals[n] = lua_tostring(L, -3);
        n++;
      }
      lua_pop(L, 1);                             /* keep k for lua_next */
    }
  }
  for (int i = 1; i < n; i++)                    /* sorted keys: stable lines */
    for (int j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
      const char *tk = keys[j], *tv = vals[j];
      keys[j] = keys[j - 1], vals[j] = vals[j - 1];
      keys[j - 1] = tk, vals[j - 1] = tv;
    }
  log_write(level, msg, n, keys, vals);
  return 0;
}

static int log_lua_debug(lua_State *L) { return log_lua_write(L, LOG_DEBUG); }
static int log_lua_info(lua_State *L) { return log_lua_write(L, LOG_INFO); }
static int log_lua_warn(lua_State *L) { return log_lua_write(L, LOG_WARN); }
static int log_lua_error(lua_State *L) { return log_lua_write(L, LOG_ERROR); }

/* log.secret(value): never print this value again, in any thread. */
static int log_lua_secret(lua_State *L) {
  log_add_secret(luaL_checkstring(L, 1));
  return 0;
}

/* log.level([name]): returns the current level, sets it when given. */
static int log_lua_level(lua_State *L) {
  if (!lua_isnoneornil(L, 1)) {
    int level = log_level_from_name(luaL_checkstring(L, 1));
    luaL_argcheck(L, level >= 0, 1, "expected debug, info, warn or error");
    log_set_level(level);
  }
  lua_pushstring(L, log_level_names[log_min_level]);
  return 1;
}

int luaopen_log(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"debug", log_lua_debug}, {"info", log_lua_info},     {"warn", log_lua_warn},
      {"error", log_lua_error}, {"secret", log_lua_secret}, {"level", log_lua_level},
      {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
