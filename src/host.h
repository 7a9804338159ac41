/*
 * host.h - the Lua host shared by every thread: the script bundle read from
 * lua/, per-thread Lua states built from it, protected calls with a time
 * limit, reload on SIGHUP and the process's signal handling.
 *
 * A lua_State is never shared between threads. A thread keeps a host_vm and
 * calls host_vm_get() before each request or job; that rebuilds the state
 * when a reload has published a new bundle since the state was built.
 */
#ifndef SKUDEMO_HOST_H
#define SKUDEMO_HOST_H

#include <stddef.h>
#include <lua.h>

#define SKUDEMO_VERSION "0.1.0"

/* One thread's state and the generation of the bundle it was built from. */
typedef struct host_vm {
  lua_State *L;
  unsigned generation;
} host_vm;

/* Process start: remember the lua/ directory and the directory of extra
 * modules (a run script's own directory, or NULL); load the first bundle.
 * Returns 0, or -1 with a message in err. */
int host_init(const char *lua_dir, const char *script_dir, char *err, size_t errlen);
void host_shutdown(void);

/* The module whose app table (routes, jobs, check) the process serves;
 * reload validates it by requiring it in a throwaway state. */
void host_set_app(const char *module);
const char *host_app(void);

/* A fresh state: standard libraries, every binding in package.preload,
 * cjson, the current bundle as a module searcher. NULL (and err) on failure. */
lua_State *host_state_new(char *err, size_t errlen);
void host_state_close(lua_State *L);

/* The thread's state, rebuilt if a reload happened since it was built.
 * NULL (and err) if no state can be built. */
lua_State *host_vm_get(host_vm *vm, char *err, size_t errlen);
void host_vm_close(host_vm *vm);

/* lua_pcall with a traceback handler and, when timeout_ms > 0, an
 * instruction-count hook that raises "time limit exceeded" once the
 * deadline passes. On error the message (with traceback) is left on the
 * stack in place of the results. */
int host_pcall(lua_State *L, int nargs, int nresults, long timeout_ms);

/* Pushes require(module)[field] (or nil) onto the stack; returns its type. */
int host_app_field(lua_State *L, const char *module, const char *field);

/* Reload lua/: build a new bundle, validate it in a throwaway state, and
 * publish it on success. Returns 0, or -1 leaving the old bundle in place
 * and the reason in host_status(). */
int host_reload(void);

typedef struct host_status_t {
  unsigned generation;
  long long loaded_at_ms;      /* wall clock of the current bundle */
  long long last_reload_ms;    /* wall clock of the last attempt, 0 if none */
  int last_reload_ok;
  char last_error[1024];       /* empty when the last reload succeeded */
  int reloads, reload_failures;
  long long last_reload_took_us;
} host_status_t;
void host_status(host_status_t *out);
unsigned host_generation(void);

/* Signals. host_signals_init() blocks HUP, TERM, INT in the calling thread
 * (call it before any thread starts) and starts a thread that sigwaits: HUP
 * reloads, TERM/INT request a stop. host_wait() blocks until a stop is
 * requested and returns the signal number. If nobody waits, TERM/INT end
 * the process at once. */
void host_signals_init(void);
int host_wait(void);
void host_request_stop(int sig);
int host_stopping(void);

/* luaopen functions of the bindings, each in its own file. */
int luaopen_host(lua_State *L);
int luaopen_config(lua_State *L);
int luaopen_log(lua_State *L);
int luaopen_time(lua_State *L);
int luaopen_crypto(lua_State *L);
int luaopen_json(lua_State *L);
int luaopen_fs(lua_State *L);
int luaopen_store(lua_State *L);
int luaopen_pool(lua_State *L);
int luaopen_http(lua_State *L);
int luaopen_server(lua_State *L);
int luaopen_metrics(lua_State *L);
int luaopen_cjson(lua_State *L);

#endif
