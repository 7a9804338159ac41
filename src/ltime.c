/*
 * ltime.c - the Lua `time` binding: clocks in milliseconds, ISO 8601, sleep.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "clock.h"
#include "host.h"

static int time_lua_now(lua_State *L) {
  lua_pushinteger(L, clock_wall_ms());
  return 1;
}

static int time_lua_mono(lua_State *L) {
  lua_pushinteger(L, clock_mono_ms());
  return 1;
}

/* time.iso([ms]) -> "2026-12-03T12:00:00.000Z" (UTC; now when omitted) */
static int time_lua_iso(lua_State *L) {
  long long ms = luaL_optinteger(L, 1, clock_wall_ms());
  time_t secs = (time_t)(ms / 1000);
  struct tm tm;
  if (!gmtime_r(&secs, &tm)) return luaL_argerror(L, 1, "time out of range");
  char buf[40];
  size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, sizeof buf - n, ".%03dZ", (int)(ms % 1000));
  lua_pushstring(L, buf);
  return 1;
}

/* time.parse_iso(s) -> ms, or nil, err. Accepts "YYYY-MM-DDTHH:MM:SS[.fff]Z". */
static int time_lua_parse_iso(lua_State *L) {
  const char *s = luaL_checkstring(L, 1);
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
  if (!rest) return lua_pushnil(L), lua_pushstring(L, "not an ISO 8601 time"), 2;
  int ms = 0;
  if (*rest == '.') {
    int digits = 0;
    for (rest++; *rest >= '0' && *rest <= '9'; rest++, digits++)
      if (digits < 3) ms = ms * 10 + (*rest - '0');
    for (; digits < 3; digits++) ms *= 10;
  }
  if (*rest != 'Z' && *rest != '\0' && strcmp(rest, "+00:00") != 0)
    return lua_pushnil(L), lua_pushstring(L, "only UTC times are accepted"), 2;
  lua_pushinteger(L, (lua_Integer)timegm(&tm) * 1000 + ms);
  return 1;
}

/* time.sleep(ms): blocks this thread (and only this thread). */
static int time_lua_sleep(lua_State *L) {
  lua_Integer ms = luaL_checkinteger(L, 1);
  if (ms <= 0) return 0;
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
  return 0;
}

int luaopen_time(lua_State *L) {
  static const luaL_Reg funcs[] = {{"now", time_lua_now},     {"mono", time_lua_mono},
                                   {"iso", time_lua_iso},     {"parse_iso", time_lua_parse_iso},
                                   {"sleep", time_lua_sleep}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
