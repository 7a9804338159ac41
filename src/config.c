/*
 * config.c - the .env reader and the Lua `config` binding.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lauxlib.h>
#include <lua.h>

#include "config.h"
#include "host.h"

static char config_env_path[4096] = ".env";
static volatile int config_frozen;

void config_set_env_file(const char *path) {
  snprintf(config_env_path, sizeof config_env_path, "%s", path);
}

const char *config_env_file(void) { return config_env_path; }

int config_parse_line(const char *line, char *key, size_t keylen, char *value, size_t vallen,
                      const char **err) {
  const char *p = line;
  while (isspace((unsigned char)*p)) p++;
  if (*p == '\0' || *p == '#') return 0;
  if (strncmp(p, "export", 6) == 0 && isspace((unsigned char)p[6])) {
    p += 6;
    while (isspace((unsigned char)*p)) p++;
  }
  size_t k = 0;
  if (!(isalpha((unsigned char)*p) || *p == '_')) return *err = "expected a variable name", -1;
  while (isalnum((unsigned char)*p) || *p == '_' || *p == '.') {
    if (k + 1 >= keylen) return *err = "variable name too long", -1;
    key[k++] = *p++;
  }
  key[k] = '\0';
  while (*p == ' ' || *p == '\t') p++;
  if (*p != '=') return *err = "expected '=' after the name", -1;
  p++;
  while (*p == ' ' || *p == '\t') p++;
  size_t v = 0;
  if (*p == '"' || *p == '\'') {
    char q = *p++;
    while (*p && *p != q) {
      char c = *p++;
      if (q == '"' && c == '\\' && *p) {
        c = *p++;
        if (c == 'n') c = '\n';
        else if (c == 't') c = '\t';
        else if (c == 'r') c = '\r';
      }
      if (v + 1 >= vallen) return *err = "value too long", -1;
      value[v++] = c;
    }
    if (*p != q) return *err = "unterminated quoted value", -1;
    p++;
    while (*p == ' ' || *p == '\t') p++;
    if (*p && *p != '#' && *p != '\n' && *p != '\r') return *err = "text after the closing quote", -1;
  } else {
    /* unquoted: up to an inline comment (" #") or the end, trimmed */
    const char *start = p, *end = p;
    for (; *p && *p != '\n' && *p != '\r'; p++) {
      if (*p == '#' && p > start && isspace((unsigned char)p[-1])) break;
      end = p + 1;
    }
    while (end > start && isspace((unsigned char)end[-1])) end--;
    if ((size_t)(end - start) >= vallen) return *err = "value too long", -1;
    memcpy(value, start, (size_t)(end - start));
    v = (size_t)(end - start);
  }
  value[v] = '\0';
  return 1;
}

int config_load_file(const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    if (errno == ENOENT) return 0;
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    return -1;
  }
  char line[8192], key[256], value[8192];
  int lineno = 0, count = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    const char *why = NULL;
    int r = config_parse_line(line, key, sizeof key, value, sizeof value, &why);
    if (r < 0) {
      snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
      fclose(f);
      return -1;
    }
    if (r == 1 && getenv(key) == NULL) {
      setenv(key, value, 0);
      count++;
    }
  }
  fclose(f);
  return count;
}

const char *config_get(const char *name, const char *def) {
  const char *v = getenv(name);
  return (v && *v) ? v : def;
}

long config_int(const char *name, long def) {
  const char *v = config_get(name, NULL);
  if (!v) return def;
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  return (errno || end == v || *end) ? def : n;
}

int config_path(const char *name, const char *def, char *out, size_t len) {
  const char *v = config_get(name, def);
  if (!v) return 0;
  const char *home = getenv("HOME");
  int n = (v[0] == '~' && (v[1] == '/' || v[1] == '\0') && home)
              ? snprintf(out, len, "%s%s", home, v + 1)
              : snprintf(out, len, "%s", v);
  return n >= 0 && (size_t)n < len ? 1 : -1;
}

/* config.get(name [, default]) -> string or default (empty counts as unset) */
static int config_lua_get(lua_State *L) {
  const char *v = config_get(luaL_checkstring(L, 1), NULL);
  if (v) lua_pushstring(L, v);
  else lua_settop(L, 2);
  return 1;
}

/* config.int(name [, default]): raises when set but not an integer. */
static int config_lua_int(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const char *v = config_get(name, NULL);
  if (!v) {
    lua_settop(L, 2);
    return 1;
  }
  char *end;
  errno = 0;
  long long n = strtoll(v, &end, 10);
  if (errno || end == v || *end) return luaL_error(L, "%s=%s is not an integer", name, v);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* config.bool(name [, default]): 1/true/yes/on and 0/false/no/off. */
static int config_lua_bool(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const char *v = config_get(name, NULL);
  if (!v) {
    lua_pushboolean(L, lua_toboolean(L, 2));
    return 1;
  }
  static const char *const yes[] = {"1", "true", "yes", "on", NULL};
  static const char *const no[] = {"0", "false", "no", "off", NULL};
  for (int i = 0; yes[i]; i++)
    if (strcasecmp(v, yes[i]) == 0) return lua_pushboolean(L, 1), 1;
  for (int i = 0; no[i]; i++)
    if (strcasecmp(v, no[i]) == 0) return lua_pushboolean(L, 0), 1;
  return luaL_error(L, "%s=%s is not a boolean", name, v);
}

/* config.path(name [, default]): the value with "~/" expanded. */
static int config_lua_path(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  char path[PATH_MAX];
  int found = config_path(name, luaL_optstring(L, 2, NULL), path, sizeof path);
  if (found < 0) return luaL_error(L, "%s is longer than a path can be", name);
  if (!found) return lua_pushnil(L), 1;
  lua_pushstring(L, path);
  return 1;
}

/* config.set(name, value): for scripts that take settings from their own
 * arguments. Only before starting a server or pool: setenv is not
 * thread-safe, which is why this refuses once other threads exist. */
static int config_lua_set(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  if (config_frozen) return luaL_error(L, "config.set after threads started");
  if (lua_isnil(L, 2)) unsetenv(name);
  else setenv(name, luaL_checkstring(L, 2), 1);
  return 0;
}

void config_freeze(void) { config_frozen = 1; }

static int config_lua_env_file(lua_State *L) {
  lua_pushstring(L, config_env_path);
  return 1;
}

int luaopen_config(lua_State *L) {
  static const luaL_Reg funcs[] = {{"get", config_lua_get},   {"int", config_lua_int},
                                   {"bool", config_lua_bool}, {"path", config_lua_path},
                                   {"env_file", config_lua_env_file}, {"set", config_lua_set},
                                   {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
