/*
 * main.c - the skudemo command: configuration, the signal thread, and the
 * `serve` and `run` commands (every other command is a script under
 * scripts/ run the same way as `run`).
 */
#include <errno.h>
#include <libgen.h>
#include <malloc.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "config.h"
#include "host.h"
#include "log.h"

/* `skudemo serve`: the app's init (store, migrations, sanity checks), the
 * worker pool and the HTTP server, then wait for a signal and shut down. */
static const char serve_driver[] =
    "local app, config, host, log = require 'app', require 'config', require 'host', require 'log'\n"
    "local pool, server = require 'pool', require 'server'\n"
    "if app.init then app.init() end\n"
    "pool.start{module = 'app', workers = config.int('POOL_WORKERS', 256)}\n"
    "local srv = server.start{module = 'app', host = config.get('APP_HOST', '0.0.0.0'),\n"
    "                         port = config.int('APP_PORT', 8000)}\n"
    "log.info('serving', {host = config.get('APP_HOST', '0.0.0.0'), port = srv.port,\n"
    "                     generation = host.generation(), version = host.version})\n"
    "if app.started then app.started(srv) end\n"
    "local sig = host.wait()\n"
    "srv:stop()\n"
    "pool.stop(config.int('SHUTDOWN_TIMEOUT_MS', 10000))\n"
    "if app.stopped then app.stopped() end\n"
    "log.info('stopped', {signal = sig})\n";

static void usage(FILE *out) {
  fprintf(out,
          "usage: skudemo [--env FILE] [--lua DIR] COMMAND [ARGS...]\n"
          "\n"
          "commands:\n"
          "  serve                  run the fulfillment server (APP_HOST:APP_PORT)\n"
          "  run SCRIPT.lua [ARGS]  run a Lua script with every binding\n"
          "  sandbox [ARGS]         the local marketplace and model emulator\n"
          "  whoami | listing | webhook | generate | check | orders | order |\n"
          "  tasks | jobs | requeue | demo\n"
          "                         seller commands (scripts/NAME.lua)\n"
          "\n"
          "options:\n"
          "  --env FILE   settings file (default $SKUDEMO_ENV_FILE or ./.env)\n"
          "  --lua DIR    script directory (default: lua/ beside the binary)\n"
          "  --help       this text\n"
          "  --version    the version\n");
}

static int is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Finds NAME beside the binary, or in ../share/skudemo/NAME when installed. */
static void find_beside_exe(const char *name, char *out, size_t len) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) {
    snprintf(out, len, "%s", name);
    return;
  }
  exe[n] = '\0';
  char *dir = dirname(exe);
  snprintf(out, len, "%s/%s", dir, name);
  if (is_dir(out)) return;
  snprintf(out, len, "%s/../share/skudemo/%s", dir, name);
  if (is_dir(out)) return;
  snprintf(out, len, "%s", name);
}

/* Runs a script file in a fresh state with `arg` set; returns the exit code. */
static int run_script(const char *script, int argc, char **argv) {
  char err[1024];
  lua_State *L = host_state_new(err, sizeof err);
  if (!L) {
    fprintf(stderr, "skudemo: %s\n", err);
    return 1;
  }
  lua_createtable(L, argc, 1);
  lua_pushstring(L, script);
  lua_seti(L, -2, 0);
  for (int i = 0; i < argc; i++) lua_pushstring(L, argv[i]), lua_seti(L, -2, i + 1);
  lua_setglobal(L, "arg");
  int code = 0;
  if (luaL_loadfile(L, script) != LUA_OK) {
    fprintf(stderr, "skudemo: %s\n", lua_tostring(L, -1));
    code = 1;
  } else {
    for (int i = 0; i < argc; i++) lua_pushstring(L, argv[i]);  /* ... as in lua.c */
    if (host_pcall(L, argc, 1, 0) != LUA_OK) {
      fprintf(stderr, "skudemo: %s\n", lua_tostring(L, -1));
      code = 1;
    } else if (lua_isinteger(L, -1)) {
      code = (int)lua_tointeger(L, -1);
    } else if (lua_isboolean(L, -1)) {
      code = lua_toboolean(L, -1) ? 0 : 1;
    }
  }
  fflush(NULL);
  return code;
}

static int serve(void) {
  char err[1024];
  lua_State *L = host_state_new(err, sizeof err);
  if (!L) {
    log_event(LOG_ERROR, "cannot start", "error", err, NULL);
    return 1;
  }
  int code = 0;
  if (luaL_loadbuffer(L, serve_driver, sizeof serve_driver - 1, "=serve") != LUA_OK ||
      host_pcall(L, 0, 0, 0) != LUA_OK) {
    log_event(LOG_ERROR, "cannot serve", "error", lua_tostring(L, -1), NULL);
    code = 1;
  }
  fflush(NULL);
  return code;
}

int main(int argc, char **argv) {
  /* Many threads (a worker per concurrent order) would each get a malloc
   * arena of their own; a few shared ones keep memory in step with the work. */
  mallopt(M_ARENA_MAX, 4);
  const char *env_file = getenv("SKUDEMO_ENV_FILE");
  const char *lua_dir_opt = NULL;
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) return usage(stdout), 0;
    if (strcmp(a, "--version") == 0) return printf("skudemo %s\n", SKUDEMO_VERSION), 0;
    if ((strcmp(a, "--env") == 0 || strcmp(a, "--lua") == 0) && i + 1 < argc) {
      if (a[2] == 'e') env_file = argv[++i];
      else lua_dir_opt = argv[++i];
      continue;
    }
    fprintf(stderr, "skudemo: unknown option %s\n", a);
    usage(stderr);
    return 2;
  }
  if (i >= argc) return usage(stderr), 2;
  const char *cmd = argv[i++];

  char err[1024];
  config_set_env_file(env_file ? env_file : ".env");
  if (config_load_file(config_env_file(), err, sizeof err) < 0) {
    fprintf(stderr, "skudemo: %s\n", err);
    return 1;
  }
  const char *level = config_get("LOG_LEVEL", "info");
  if (log_level_from_name(level) >= 0) log_set_level(log_level_from_name(level));
  static const char *const secrets[] = {"ADMIN_SECRET", "OPENROUTER_API_KEY", "WEBHOOK_SECRET",
                                        "METRICS_TOKEN", NULL};
  for (int s = 0; secrets[s]; s++) log_add_secret(config_get(secrets[s], NULL));

  char lua_dir[PATH_MAX], scripts_dir[PATH_MAX], script[PATH_MAX + 256];
  if (lua_dir_opt) snprintf(lua_dir, sizeof lua_dir, "%s", lua_dir_opt);
  else if (config_get("SKUDEMO_LUA_DIR", NULL))
    snprintf(lua_dir, sizeof lua_dir, "%s", config_get("SKUDEMO_LUA_DIR", NULL));
  else find_beside_exe("lua", lua_dir, sizeof lua_dir);
  if (config_get("SKUDEMO_SCRIPTS_DIR", NULL))
    snprintf(scripts_dir, sizeof scripts_dir, "%s", config_get("SKUDEMO_SCRIPTS_DIR", NULL));
  else find_beside_exe("scripts", scripts_dir, sizeof scripts_dir);
  char web_dir[PATH_MAX];
  if (config_get("SKUDEMO_WEB_DIR", NULL))
    snprintf(web_dir, sizeof web_dir, "%s", config_get("SKUDEMO_WEB_DIR", NULL));
  else find_beside_exe("web", web_dir, sizeof web_dir);
  /* where the scripts find their own files, whichever way they were found */
  setenv("SKUDEMO_LUA_DIR_RESOLVED", lua_dir, 1);
  setenv("SKUDEMO_SCRIPTS_DIR_RESOLVED", scripts_dir, 1);
  setenv("SKUDEMO_WEB_DIR_RESOLVED", web_dir, 1);

  const char *script_dir = NULL;
  if (strcmp(cmd, "serve") == 0) {
    host_set_app("app");
  } else if (strcmp(cmd, "run") == 0) {
    if (i >= argc) {
      fprintf(stderr, "skudemo: run needs a script\n");
      return usage(stderr), 2;
    }
    snprintf(script, sizeof script, "%s", argv[i++]);
    if (!is_file(script)) return fprintf(stderr, "skudemo: no such script: %s\n", script), 2;
  } else {
    snprintf(script, sizeof script, "%s/%s.lua", scripts_dir, cmd);
    if (strchr(cmd, '/') || strchr(cmd, '.') || !is_file(script)) {
      fprintf(stderr, "skudemo: unknown command '%s'\n", cmd);
      return usage(stderr), 2;
    }
  }
  if (strcmp(cmd, "serve") != 0) {
    static char dirbuf[PATH_MAX + 256];
    snprintf(dirbuf, sizeof dirbuf, "%s", script);
    script_dir = dirname(dirbuf);
  }

  curl_global_init(CURL_GLOBAL_DEFAULT);
  host_signals_init();
  if (host_init(lua_dir, script_dir, err, sizeof err) != 0) {
    log_event(LOG_ERROR, "cannot load scripts", "dir", lua_dir, "error", err, NULL);
    return 1;
  }
  int code = strcmp(cmd, "serve") == 0 ? serve() : run_script(script, argc - i, argv + i);
  _exit(code);  /* threads may still run; nothing left needs an orderly exit */
}
