/*
 * host.c - the script bundle, per-thread Lua states, protected calls with a
 * deadline, reload and signals.
 *
 * A bundle is every file under lua/, compiled once to bytecode. States find
 * modules in the bundle they were built from (a searcher placed before the
 * file searchers), so a thread never mixes two generations. A reload builds
 * a new bundle, requires the app module in a throwaway state built from it,
 * and only then publishes it; threads notice the new generation before
 * their next request or job.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "clock.h"
#include "config.h"
#include "host.h"
#include "log.h"
#include "metrics.h"

typedef struct bundle_chunk {
  char *module;      /* "orders.machine" */
  char *bytecode;
  size_t len;
} bundle_chunk;

typedef struct bundle {
  atomic_int refs;
  unsigned generation;
  long long loaded_at_ms;
  int n;
  bundle_chunk *chunks;
} bundle;

/* What each state carries in its allocator's user data. */
typedef struct host_state_info {
  bundle *bundle;
  size_t mem, mem_limit;
  long long deadline_ms;   /* 0: no limit */
} host_state_info;

static char host_lua_dir[PATH_MAX];
static char host_extra_dir[PATH_MAX];
static char host_app_module[128];
static pthread_mutex_t host_lock = PTHREAD_MUTEX_INITIALIZER;
static bundle *host_current;
static atomic_uint host_gen;
static host_status_t host_stat;
static size_t host_mem_limit;

/* ---- bundles -------------------------------------------------------- */

static void bundle_release(bundle *b) {
  if (!b || atomic_fetch_sub(&b->refs, 1) != 1) return;
  for (int i = 0; i < b->n; i++) free(b->chunks[i].module), free(b->chunks[i].bytecode);
  free(b->chunks);
  free(b);
}

static bundle *bundle_acquire_current(void) {
  pthread_mutex_lock(&host_lock);
  bundle *b = host_current;
  if (b) atomic_fetch_add(&b->refs, 1);
  pthread_mutex_unlock(&host_lock);
  return b;
}

typedef struct dump_buf {
  char *data;
  size_t len, cap;
} dump_buf;

static int bundle_dump_writer(lua_State *L, const void *p, size_t sz, void *ud) {
  (void)L;
  dump_buf *d = ud;
  if (d->len + sz > d->cap) {
    size_t cap = d->cap ? d->cap * 2 : 4096;
    while (cap < d->len + sz) cap *= 2;
    char *grown = realloc(d->data, cap);
    if (!grown) return 1;
    d->data = grown, d->cap = cap;
  }
  memcpy(d->data + d->len, p, sz);
  d->len += sz;
  return 0;
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 8192, n = 0;
  char *buf = malloc(cap);
  size_t got;
  while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap) {
      char *grown = realloc(buf, cap *= 2);
      if (!grown) free(buf);
      buf = grown;
    }
  }
  fclose(f);
  if (buf) *len = n;
  return buf;
}

/* Compiles every .lua file under dir (rel is the module prefix) into b,
 * using L for compilation. Returns 0, or -1 with err set. */
static int bundle_scan(bundle *b, lua_State *L, const char *dir, const char *rel, char *err,
                       size_t errlen) {
  DIR *d = opendir(dir);
  if (!d) return snprintf(err, errlen, "cannot open %s: %s", dir, strerror(errno)), -1;
  struct dirent *e;
  int rc = 0;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    char path[PATH_MAX], mod[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat st;
    if (stat(path, &st) != 0) continue;
    snprintf(mod, sizeof mod, "%s%s%s", rel, *rel ? "." : "", e->d_name);
    if (S_ISDIR(st.st_mode)) {
      rc = bundle_scan(b, L, path, mod, err, errlen);
      continue;
    }
    size_t nl = strlen(mod);
    if (nl < 5 || strcmp(mod + nl - 4, ".lua") != 0) continue;
    mod[nl - 4] = '\0';
    if (nl > 9 && strcmp(mod + nl - 9, ".init") == 0) mod[nl - 9] = '\0';  /* a/init.lua is "a" */
    size_t srclen;
    char *src = read_file(path, &srclen);
    if (!src) {
      snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
      rc = -1;
      break;
    }
    char chunkname[PATH_MAX + 1];
    snprintf(chunkname, sizeof chunkname, "@%s", path);
    int st_load = luaL_loadbufferx(L, src, srclen, chunkname, "t");  /* chunk or message */
    free(src);
    if (st_load != LUA_OK) {
      snprintf(err, errlen, "%s", lua_tostring(L, -1));
      lua_pop(L, 1);
      rc = -1;
      break;
    }
    dump_buf out = {0};
    lua_dump(L, bundle_dump_writer, &out, 0);
    lua_pop(L, 1);                                      /* the chunk */
    bundle_chunk *grown = realloc(b->chunks, sizeof *grown * (size_t)(b->n + 1));
    if (!grown || !out.data) {
      free(out.data);
      snprintf(err, errlen, "out of memory compiling %s", path);
      rc = -1;
      break;
    }
    b->chunks = grown;
    b->chunks[b->n++] = (bundle_chunk){strdup(mod), out.data, out.len};
  }
  closedir(d);
  return rc;
}

static const bundle_chunk *bundle_find(const bundle *b, const char *module) {
  for (int i = 0; b && i < b->n; i++)
    if (strcmp(b->chunks[i].module, module) == 0) return &b->chunks[i];
  return NULL;
}

/* ---- states ---------------------------------------------------------- */

static void *host_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  host_state_info *info = ud;
  if (!ptr) osize = 0;
  if (nsize == 0) {
    free(ptr);
    info->mem -= osize;
    return NULL;
  }
  if (info->mem_limit && nsize > osize && info->mem + (nsize - osize) > info->mem_limit)
    return NULL;                                        /* Lua raises "not enough memory" */
  void *p = realloc(ptr, nsize);
  if (p) info->mem += nsize - osize;
  return p;
}

static host_state_info *host_info(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  return ud;
}

/* package.searchers entry: finds a module in the state's bundle. */
static int host_bundle_searcher(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const bundle_chunk *c = bundle_find(host_info(L)->bundle, name);
  if (!c) {
    lua_pushfstring(L, "no module '%s' in %s", name, host_lua_dir);
    return 1;
  }
  if (luaL_loadbufferx(L, c->bytecode, c->len, name, "b") != LUA_OK) return lua_error(L);
  lua_pushfstring(L, "%s/%s.lua", host_lua_dir, name);  /* second argument to the loader */
  return 2;
}

static int host_traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    if (lua_type(L, 1) == LUA_TTABLE) {                /* structured error: keep it */
      lua_getfield(L, 1, "message");
      if (lua_type(L, -1) == LUA_TSTRING) lua_setfield(L, 1, "traceback_message");
      else lua_pop(L, 1);
      luaL_traceback(L, L, NULL, 1);
      lua_setfield(L, 1, "traceback");
      lua_settop(L, 1);
      return 1;
    }
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

static void host_deadline_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  host_state_info *info = host_info(L);
  if (info->deadline_ms && clock_mono_ms() > info->deadline_ms)
    luaL_error(L, "time limit exceeded");
}

int host_pcall(lua_State *L, int nargs, int nresults, long timeout_ms) {
  host_state_info *info = host_info(L);
  int base = lua_gettop(L) - nargs;                    /* function index */
  lua_pushcfunction(L, host_traceback);
  lua_insert(L, base);                                 /* put handler under function and args */
  long long saved = info->deadline_ms;
  if (timeout_ms > 0) {
    info->deadline_ms = clock_mono_ms() + timeout_ms;
    lua_sethook(L, host_deadline_hook, LUA_MASKCOUNT, 10000);
  }
  int status = lua_pcall(L, nargs, nresults, base);
  if (timeout_ms > 0) {
    info->deadline_ms = saved;
    if (!saved) lua_sethook(L, NULL, 0, 0);
  }
  lua_remove(L, base);                                 /* remove handler */
  return status;
}

/* Runs setup (bindings, searcher, path) in protected mode. */
static int host_state_setup(lua_State *L) {
  luaL_openlibs(L);
  static const luaL_Reg preload[] = {
      {"host", luaopen_host},   {"config", luaopen_config}, {"log", luaopen_log},
      {"time", luaopen_time},   {"crypto", luaopen_crypto}, {"codec", luaopen_crypto},
      {"json", luaopen_json},   {"fs", luaopen_fs},         {"store", luaopen_store},
      {"pool", luaopen_pool},   {"http", luaopen_http},     {"server", luaopen_server},
      {"cjson", luaopen_cjson}, {"metrics", luaopen_metrics}, {NULL, NULL}};
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);   /* preload */
  for (const luaL_Reg *r = preload; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, -2, r->name);
  }
  lua_pop(L, 1);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "searchers");                    /* package searchers */
  for (lua_Integer i = (lua_Integer)luaL_len(L, -1); i >= 2; i--) {  /* shift up from 2 */
    lua_geti(L, -1, i);
    lua_seti(L, -2, i + 1);
  }
  lua_pushcfunction(L, host_bundle_searcher);
  lua_seti(L, -2, 2);                                  /* bundle right after preload */
  lua_pop(L, 1);
  if (host_extra_dir[0]) {
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", host_extra_dir, host_extra_dir,
                    lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 1);
  }
  lua_pop(L, 1);                                       /* package */
  /* cjson as a global-free module with a sane nesting limit */
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cjson");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "decode_max_depth");
  lua_pushinteger(L, 64);
  lua_call(L, 1, 0);
  lua_pop(L, 1);
  return 0;
}

static lua_State *host_state_from(bundle *b, char *err, size_t errlen) {
  host_state_info *info = calloc(1, sizeof *info);
  if (!info) return snprintf(err, errlen, "out of memory"), bundle_release(b), NULL;
  info->bundle = b;
  info->mem_limit = host_mem_limit;
  lua_State *L = lua_newstate(host_alloc, info);
  if (!L) {
    snprintf(err, errlen, "cannot create a Lua state");
    bundle_release(b);
    free(info);
    return NULL;
  }
  lua_gc(L, LUA_GCGEN, 0, 0);  /* requests and jobs make short-lived garbage: collect it young */
  lua_pushcfunction(L, host_state_setup);
  if (host_pcall(L, 0, 0, 0) != LUA_OK) {
    snprintf(err, errlen, "state setup: %s", lua_tostring(L, -1));
    host_state_close(L);
    return NULL;
  }
  return L;
}

lua_State *host_state_new(char *err, size_t errlen) {
  bundle *b = bundle_acquire_current();
  if (!b) return snprintf(err, errlen, "no script bundle loaded"), NULL;
  return host_state_from(b, err, errlen);
}

void host_state_close(lua_State *L) {
  if (!L) return;
  host_state_info *info = host_info(L);
  lua_close(L);
  bundle_release(info->bundle);
  free(info);
}

lua_State *host_vm_get(host_vm *vm, char *err, size_t errlen) {
  unsigned gen = atomic_load(&host_gen);
  if (vm->L && vm->generation == gen) return vm->L;
  host_vm_close(vm);
  vm->L = host_state_new(err, errlen);
  if (vm->L) vm->generation = host_info(vm->L)->bundle->generation;
  return vm->L;
}

void host_vm_close(host_vm *vm) {
  host_state_close(vm->L);
  vm->L = NULL;
  vm->generation = 0;
}

int host_app_field(lua_State *L, const char *module, const char *field) {
  lua_getglobal(L, "require");
  lua_pushstring(L, module);
  if (host_pcall(L, 1, 1, 0) != LUA_OK) return lua_error(L);   /* app table */
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_pushnil(L);
    return LUA_TNIL;
  }
  int t = lua_getfield(L, -1, field);
  lua_remove(L, -2);                                    /* drop the app table */
  return t;
}

/* ---- load and reload -------------------------------------------------- */

/* Builds and validates a bundle; on success it becomes current. */
static int host_load(char *err, size_t errlen) {
  long long started = clock_mono_us();
  bundle *b = calloc(1, sizeof *b);
  if (!b) return snprintf(err, errlen, "out of memory"), -1;
  atomic_init(&b->refs, 1);
  b->generation = atomic_load(&host_gen) + 1;
  b->loaded_at_ms = clock_wall_ms();
  lua_State *C = luaL_newstate();
  int rc = C ? bundle_scan(b, C, host_lua_dir, "", err, errlen) : -1;
  if (C) lua_close(C);
  if (rc == 0 && host_app_module[0] && bundle_find(b, host_app_module)) {
    /* the self-check: the app loads in a fresh state and its check() passes */
    atomic_fetch_add(&b->refs, 1);
    lua_State *T = host_state_from(b, err, errlen);
    if (!T) rc = -1;
    else {
      int t = host_app_field(T, host_app_module, "check");
      if (t == LUA_TFUNCTION) {
        if (host_pcall(T, 0, 0, 5000) != LUA_OK) {
          snprintf(err, errlen, "check failed: %s", lua_tostring(T, -1));
          rc = -1;
        }
      }
      host_state_close(T);
    }
  }
  pthread_mutex_lock(&host_lock);
  host_stat.last_reload_ms = clock_wall_ms();
  host_stat.last_reload_took_us = clock_mono_us() - started;
  if (rc == 0) {
    bundle *old = host_current;
    host_current = b;
    atomic_store(&host_gen, b->generation);
    host_stat.generation = b->generation;
    host_stat.loaded_at_ms = b->loaded_at_ms;
    host_stat.last_reload_ok = 1;
    host_stat.last_error[0] = '\0';
    pthread_mutex_unlock(&host_lock);
    bundle_release(old);
    return 0;
  }
  host_stat.last_reload_ok = 0;
  snprintf(host_stat.last_error, sizeof host_stat.last_error, "%s", err);
  pthread_mutex_unlock(&host_lock);
  bundle_release(b);
  return -1;
}

int host_init(const char *lua_dir, const char *script_dir, char *err, size_t errlen) {
  snprintf(host_lua_dir, sizeof host_lua_dir, "%s", lua_dir);
  snprintf(host_extra_dir, sizeof host_extra_dir, "%s", script_dir ? script_dir : "");
  host_mem_limit = (size_t)config_int("LUA_MEMORY_LIMIT_MB", 256) * 1024 * 1024;
  return host_load(err, errlen);
}

void host_shutdown(void) {
  pthread_mutex_lock(&host_lock);
  bundle *b = host_current;
  host_current = NULL;
  pthread_mutex_unlock(&host_lock);
  bundle_release(b);
}

void host_set_app(const char *module) {
  pthread_mutex_lock(&host_lock);
  snprintf(host_app_module, sizeof host_app_module, "%s", module);
  pthread_mutex_unlock(&host_lock);
}

const char *host_app(void) { return host_app_module; }

int host_reload(void) {
  char err[1024];
  int rc = host_load(err, sizeof err);
  pthread_mutex_lock(&host_lock);
  host_stat.reloads++;
  if (rc != 0) host_stat.reload_failures++;
  unsigned gen = host_stat.generation;
  long long took = host_stat.last_reload_took_us;
  pthread_mutex_unlock(&host_lock);
  char gens[16], tooks[32];
  snprintf(gens, sizeof gens, "%u", gen);
  snprintf(tooks, sizeof tooks, "%.1f", (double)took / 1000.0);
  metrics_inc("skudemo_reloads_total", rc == 0 ? "result=\"ok\"" : "result=\"failed\"", 1);
  if (rc == 0) log_event(LOG_INFO, "reloaded", "generation", gens, "took_ms", tooks, NULL);
  else
    log_event(LOG_ERROR, "reload failed, keeping the running scripts", "generation", gens,
              "error", err, NULL);
  return rc;
}

void host_status(host_status_t *out) {
  pthread_mutex_lock(&host_lock);
  *out = host_stat;
  pthread_mutex_unlock(&host_lock);
}

unsigned host_generation(void) { return atomic_load(&host_gen); }

/* ---- signals ----------------------------------------------------------- */

static pthread_mutex_t host_sig_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t host_sig_cond = PTHREAD_COND_INITIALIZER;
static int host_stop_signal;
static int host_waiters;

void host_request_stop(int sig) {
  pthread_mutex_lock(&host_sig_lock);
  if (!host_stop_signal) host_stop_signal = sig;
  pthread_cond_broadcast(&host_sig_cond);
  pthread_mutex_unlock(&host_sig_lock);
}

int host_stopping(void) {
  pthread_mutex_lock(&host_sig_lock);
  int s = host_stop_signal;
  pthread_mutex_unlock(&host_sig_lock);
  return s;
}

static void *host_signal_thread(void *arg) {
  sigset_t *set = arg;
  for (;;) {
    int sig;
    if (sigwait(set, &sig) != 0) continue;
    if (sig == SIGHUP) {
      host_reload();
      continue;
    }
    pthread_mutex_lock(&host_sig_lock);
    int waiting = host_waiters > 0;
    pthread_mutex_unlock(&host_sig_lock);
    if (!waiting) _exit(128 + sig);                   /* nothing to shut down cleanly */
    log_event(LOG_INFO, "stopping", "signal", sig == SIGTERM ? "TERM" : "INT", NULL);
    host_request_stop(sig);
  }
  return NULL;
}

void host_signals_init(void) {
  static sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
  pthread_t t;
  pthread_create(&t, NULL, host_signal_thread, &set);
  pthread_detach(t);
}

int host_wait(void) {
  pthread_mutex_lock(&host_sig_lock);
  host_waiters++;
  while (!host_stop_signal) pthread_cond_wait(&host_sig_cond, &host_sig_lock);
  host_waiters--;
  int sig = host_stop_signal;
  pthread_mutex_unlock(&host_sig_lock);
  return sig;
}

/* ---- the `host` binding -------------------------------------------------- */

static int host_lua_status(lua_State *L) {
  host_status_t s;
  host_status(&s);
  lua_createtable(L, 0, 9);
  lua_pushinteger(L, s.generation), lua_setfield(L, -2, "generation");
  lua_pushinteger(L, s.loaded_at_ms), lua_setfield(L, -2, "loaded_at_ms");
  lua_pushinteger(L, s.last_reload_ms), lua_setfield(L, -2, "last_reload_ms");
  lua_pushboolean(L, s.last_reload_ms == 0 || s.last_reload_ok), lua_setfield(L, -2, "last_reload_ok");
  if (s.last_error[0]) lua_pushstring(L, s.last_error), lua_setfield(L, -2, "last_error");
  lua_pushinteger(L, s.reloads), lua_setfield(L, -2, "reloads");
  lua_pushinteger(L, s.reload_failures), lua_setfield(L, -2, "reload_failures");
  lua_pushnumber(L, (double)s.last_reload_took_us / 1000.0), lua_setfield(L, -2, "last_reload_took_ms");
  lua_pushstring(L, host_lua_dir), lua_setfield(L, -2, "lua_dir");
  host_state_info *info = host_info(L);
  lua_pushinteger(L, info->bundle ? info->bundle->generation : 0);
  lua_setfield(L, -2, "state_generation");
  lua_pushinteger(L, (lua_Integer)info->mem), lua_setfield(L, -2, "state_memory");
  return 1;
}

static int host_lua_generation(lua_State *L) {
  lua_pushinteger(L, host_generation());
  return 1;
}

/* host.reload(): reload now, as SIGHUP would. Returns true or nil, err. */
static int host_lua_reload(lua_State *L) {
  if (host_reload() == 0) return lua_pushboolean(L, 1), 1;
  host_status_t s;
  host_status(&s);
  lua_pushnil(L);
  lua_pushstring(L, s.last_error);
  return 2;
}

/* host.wait(): blocks until SIGTERM or SIGINT; returns "TERM" or "INT".
 * SIGHUP reloads meanwhile. */
static int host_lua_wait(lua_State *L) {
  int sig = host_wait();
  lua_pushstring(L, sig == SIGTERM ? "TERM" : sig == SIGINT ? "INT" : "STOP");
  return 1;
}

static int host_lua_stop(lua_State *L) {
  host_request_stop(SIGTERM);
  (void)L;
  return 0;
}

int luaopen_host(lua_State *L) {
  static const luaL_Reg funcs[] = {{"status", host_lua_status}, {"generation", host_lua_generation},
                                   {"reload", host_lua_reload}, {"wait", host_lua_wait},
                                   {"stop", host_lua_stop},     {NULL, NULL}};
  luaL_newlib(L, funcs);
  lua_pushliteral(L, SKUDEMO_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, host_lua_dir);
  lua_setfield(L, -2, "lua_dir");
  lua_pushstring(L, host_app_module);
  lua_setfield(L, -2, "app");
  return 1;
}
