/*
 * server.c - the `server` binding: libmicrohttpd with its own thread pool,
 * each thread serving requests from its own Lua state.
 *
 * A request's body is gathered (up to max_body) and the whole request is
 * handed to the Lua handler of its route as one table; the handler returns
 * status, headers, body. Each server thread keeps a host_vm, rebuilt after
 * a reload between two requests, and compiles the app's routes once per
 * state (kept in that state's registry). Counters for metrics live in C,
 * shared by every server of the process.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <microhttpd.h>

#include "clock.h"
#include "config.h"
#include "host.h"
#include "log.h"
#include "multipart.h"
#include "store.h"

#define SERVER_MT "skudemo.server"
#define SERVER_FILE_MT "skudemo.server.file"
#define SERVER_ROUTES_MT "skudemo.server.routes"
#define SERVER_ROUTES_KEY "skudemo.server.routes"   /* registry: module -> compiled routes */
#define SERVER_JSON_KEY "skudemo.server.json_encode"
#define SERVER_MAX_SEGMENTS 32
/* Headers are limited twice: the access handler answers a JSON 431 above
 * max_header, and each connection's memory pool (max_header plus this
 * slack for MHD's own structures) bounds what MHD reads at all; beyond it
 * MHD itself answers 431 with an HTML body. Headers that fill the pool to
 * its last few hundred bytes leave no room for any answer: MHD closes
 * those connections without one. */
#define SERVER_HEADER_SLACK 4096
#define SERVER_DISCARD_MAX (1 << 20)   /* an oversized chunked body read before cutting it */
#define SERVER_DRAIN_SLACK_MS 1000     /* at stop, beyond the request time limit */

typedef struct server {
  struct MHD_Daemon *daemon;
  char module[128];
  char host[256];
  unsigned port;
  size_t max_body, max_header;
  long timeout_ms;
  atomic_int held;               /* connections suspended until their group commit */
  atomic_int in_flight;          /* requests begun and not yet completed */
  atomic_int stopping;
  int per_connection;            /* a thread per connection: handlers may block */
} server;

/* One request, from MHD's first call until it completes. */
typedef struct server_request {
  server *srv;
  char *body;
  size_t body_len, body_cap;
  int too_large;
  int answered;                  /* a response is queued */
  size_t discarded;              /* body bytes skipped once over the limit or answered */
  int slot;                      /* stats slot of its route */
  long long started_us;
  struct MHD_Connection *conn;
  struct MHD_Response *held;     /* answered, waiting for its group commit */
  unsigned held_status;
} server_request;

/* ---- counters ------------------------------------------------------------ */

#define SERVER_SLOTS 256
#define SERVER_SLOT_CODES 8

/* Requests of one route (slot 0: those that matched none), by status. */
typedef struct server_slot {
  char method[16];
  char route[240];
  atomic_uint code[SERVER_SLOT_CODES];
  atomic_ullong count[SERVER_SLOT_CODES];
  atomic_ullong other;           /* statuses beyond the first SERVER_SLOT_CODES */
} server_slot;

static server_slot server_slots[SERVER_SLOTS];
static atomic_int server_nslots = 1;
static pthread_mutex_t server_slots_lock = PTHREAD_MUTEX_INITIALIZER;

static const unsigned server_latency_le_ms[] = {1,   2,   5,    10,   25,   50,   100,
                                                250, 500, 1000, 2500, 5000, 10000};
#define SERVER_BUCKETS (sizeof server_latency_le_ms / sizeof *server_latency_le_ms)
static atomic_ullong server_latency[SERVER_BUCKETS + 1];   /* the last one: +Inf */
static atomic_ullong server_latency_sum_us;

/* The slot of METHOD pattern, created on first use; 0 when the table is
 * full. Slots are never removed, so an index stays valid across reloads. */
static int server_slot_for(const char *method, const char *route) {
  pthread_mutex_lock(&server_slots_lock);
  int n = atomic_load(&server_nslots), found = 0;
  for (int i = 1; i < n && !found; i++)
    if (strcmp(server_slots[i].method, method) == 0 && strcmp(server_slots[i].route, route) == 0)
      found = i;
  if (!found && n < SERVER_SLOTS) {
    snprintf(server_slots[n].method, sizeof server_slots[n].method, "%s", method);
    snprintf(server_slots[n].route, sizeof server_slots[n].route, "%s", route);
    atomic_store(&server_nslots, n + 1);                /* publish after the names */
    found = n;
  }
  pthread_mutex_unlock(&server_slots_lock);
  return found;
}

/* Counts one answered request and its latency. */
static void server_count(int slot, unsigned status, long long started_us) {
  server_slot *s = &server_slots[slot];
  int counted = 0;
  for (int i = 0; i < SERVER_SLOT_CODES && !counted; i++) {
    unsigned code = atomic_load(&s->code[i]);
    if (code == 0) {
      unsigned empty = 0;
      if (atomic_compare_exchange_strong(&s->code[i], &empty, status)) code = status;
      else code = empty;                                /* taken meanwhile: by which status? */
    }
    if (code == status) atomic_fetch_add(&s->count[i], 1), counted = 1;
  }
  if (!counted) atomic_fetch_add(&s->other, 1);
  long long us = clock_mono_us() - started_us;
  size_t b = 0;
  while (b < SERVER_BUCKETS && us > (long long)server_latency_le_ms[b] * 1000) b++;
  atomic_fetch_add(&server_latency[b], 1);
  atomic_fetch_add(&server_latency_sum_us, (unsigned long long)us);
}

/* ---- per-thread states ------------------------------------------------------ */

static pthread_key_t server_vm_key;
static pthread_once_t server_vm_once = PTHREAD_ONCE_INIT;

static void server_vm_free(void *p) {
  host_vm_close(p);
  free(p);
}

static void server_vm_key_init(void) { pthread_key_create(&server_vm_key, server_vm_free); }

/* The calling server thread's state (closed when the thread ends), or
 * NULL with err. */
static lua_State *server_vm(char *err, size_t errlen) {
  host_vm *vm = pthread_getspecific(server_vm_key);
  if (!vm) {
    vm = calloc(1, sizeof *vm);
    if (!vm || pthread_setspecific(server_vm_key, vm) != 0) {
      free(vm);
      return snprintf(err, errlen, "out of memory"), NULL;
    }
  }
  return host_vm_get(vm, err, errlen);
}

/* ---- routes ------------------------------------------------------------------- */

enum { SERVER_LITERAL, SERVER_PARAM, SERVER_REST };

typedef struct server_segment {
  int kind;
  const char *text;              /* into the route's pattern */
  size_t len;
} server_segment;

typedef struct server_route {
  char method[16];
  char *pattern;
  server_segment *segs;
  int nsegs;
  int slot;
} server_route;

/* Userdata; its user value is the list of handlers, in route order. */
typedef struct server_routes {
  int n;
  server_route *routes;
} server_routes;

static int server_routes_gc(lua_State *L) {
  server_routes *rs = luaL_checkudata(L, 1, SERVER_ROUTES_MT);
  for (int i = 0; i < rs->n; i++) free(rs->routes[i].pattern), free(rs->routes[i].segs);
  free(rs->routes);
  rs->routes = NULL;
  rs->n = 0;
  return 0;
}

static int server_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Splits pattern ("/orders/{id}", "/files/{path...}") into r's segments.
 * Returns NULL, or what is wrong with it; r is left empty on failure. */
static const char *server_route_compile(server_route *r, const char *pattern) {
  if (pattern[0] != '/') return "a pattern starts with '/'";
  r->pattern = strdup(pattern);
  r->segs = calloc(SERVER_MAX_SEGMENTS, sizeof *r->segs);
  const char *why = (!r->pattern || !r->segs) ? "out of memory" : NULL;
  const char *p = r->pattern + 1;
  while (!why) {
    const char *end = strchr(p, '/');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    server_segment *s = &r->segs[r->nsegs];
    *s = (server_segment){SERVER_LITERAL, p, len};
    if (len >= 2 && p[0] == '{' && p[len - 1] == '}') {
      s->kind = SERVER_PARAM, s->text = p + 1, s->len = len - 2;
      if (s->len > 3 && memcmp(s->text + s->len - 3, "...", 3) == 0) {
        s->kind = SERVER_REST, s->len -= 3;
        if (end) why = "{name...} must be the last segment";
      }
      for (size_t i = 0; i < s->len && !why; i++)
        if (!server_name_char(s->text[i])) why = "a parameter name is made of [A-Za-z0-9_]";
      if (s->len == 0 && !why) why = "a parameter needs a name";
    } else if (memchr(p, '{', len) || memchr(p, '}', len)) {
      why = "a parameter takes a whole segment";
    }
    r->nsegs++;
    if (!end) break;
    if (r->nsegs == SERVER_MAX_SEGMENTS && !why) why = "too many segments";
    p = end + 1;
  }
  if (why) {
    free(r->pattern), free(r->segs);
    *r = (server_route){0};
  }
  return why;
}

typedef struct server_capture {
  const char *at;
  size_t len;
} server_capture;

/* 1 if path matches r's pattern, with each segment's text in caps. */
static int server_route_match(const server_route *r, const char *path, server_capture *caps) {
  if (path[0] != '/') return 0;
  const char *p = path + 1;
  for (int i = 0; i < r->nsegs; i++) {
    const server_segment *s = &r->segs[i];
    if (s->kind == SERVER_REST) {
      caps[i] = (server_capture){p, strlen(p)};
      return caps[i].len > 0;
    }
    const char *end = strchr(p, '/');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    int last = i == r->nsegs - 1;
    if (last != !end) return 0;                          /* a segment too many or too few */
    if (s->kind == SERVER_LITERAL && (len != s->len || memcmp(p, s->text, len) != 0)) return 0;
    if (s->kind == SERVER_PARAM && len == 0) return 0;
    caps[i] = (server_capture){p, len};
    if (end) p = end + 1;
  }
  return 1;
}

/* Builds the compiled routes of require(module).routes and leaves them on
 * the stack. Raises on a malformed route list. */
static server_routes *server_routes_build(lua_State *L, const char *module) {
  if (luaL_newmetatable(L, SERVER_ROUTES_MT)) {         /* routes metatable */
    lua_pushcfunction(L, server_routes_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  if (host_app_field(L, module, "routes") != LUA_TTABLE)       /* routes list */
    luaL_error(L, "module '%s' has no routes list", module);
  int list = lua_gettop(L);
  lua_Integer n = luaL_len(L, list);
  server_routes *rs = lua_newuserdatauv(L, sizeof *rs, 1);     /* list, routes */
  *rs = (server_routes){0};
  luaL_setmetatable(L, SERVER_ROUTES_MT);
  if (n > 0 && !(rs->routes = calloc((size_t)n, sizeof *rs->routes)))
    luaL_error(L, "out of memory");
  lua_createtable(L, (int)n, 0);                        /* list, routes, handlers */
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_geti(L, list, i) != LUA_TTABLE) luaL_error(L, "routes[%d] is not a table", (int)i);
    lua_geti(L, -1, 1);                                 /* ..., entry, method */
    lua_geti(L, -2, 2);                                 /* ..., entry, method, pattern */
    lua_geti(L, -3, 3);                                 /* ..., entry, method, pattern, handler */
    const char *method = lua_tostring(L, -3), *pattern = lua_tostring(L, -2);
    if (!method || strlen(method) >= sizeof rs->routes[0].method || !pattern ||
        !lua_isfunction(L, -1))
      luaL_error(L, "routes[%d] is not {method, pattern, handler}", (int)i);
    server_route *r = &rs->routes[rs->n];
    const char *why = server_route_compile(r, pattern);
    if (why) luaL_error(L, "routes[%d] '%s': %s", (int)i, pattern, why);
    snprintf(r->method, sizeof r->method, "%s", method);
    rs->n++;                                            /* owned by the userdata from here */
    r->slot = server_slot_for(method, pattern);
    lua_seti(L, -5, i);                                 /* handlers[i] = handler */
    lua_pop(L, 3);                                      /* entry, method, pattern */
  }
  lua_setiuservalue(L, -2, 1);                          /* list, routes */
  lua_remove(L, list);                                  /* routes */
  return rs;
}

/* The compiled routes of module in this state, built on first use. */
static server_routes *server_routes_get(lua_State *L, const char *module) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, SERVER_ROUTES_KEY);   /* cache */
  if (lua_getfield(L, -1, module) == LUA_TUSERDATA) {  /* cache, routes */
    lua_remove(L, -2);
    return lua_touserdata(L, -1);
  }
  lua_pop(L, 1);
  server_routes *rs = server_routes_build(L, module);  /* cache, routes */
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, module);
  lua_remove(L, -2);
  return rs;
}

/* ---- requests into Lua ------------------------------------------------------- */

/* What one call of server_dispatch needs and learns. */
typedef struct server_call {
  server *srv;
  server_request *req;
  struct MHD_Connection *conn;
  const char *url, *method;
  long long started_ms;
  int phase;                     /* 0 routing, 1 the handler was called */
  int handler_failed;            /* 0, or SERVER_INTERNAL or SERVER_TIMED_OUT */
  int slot;
  char route[240];
  char error[4096];              /* the handler's error with its traceback */
} server_call;

/* require("json").encode, resolved once per state. Pushes the encoder. */
static void server_json_encoder(lua_State *L) {
  if (lua_getfield(L, LUA_REGISTRYINDEX, SERVER_JSON_KEY) == LUA_TFUNCTION) return;
  lua_pop(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "json");
  if (host_pcall(L, 1, 1, 0) != LUA_OK) lua_error(L);  /* json */
  if (lua_getfield(L, -1, "encode") != LUA_TFUNCTION) luaL_error(L, "json has no encode");
  lua_remove(L, -2);                                    /* encoder */
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, SERVER_JSON_KEY);
}

/* The answers the server gives by itself, each a JSON body. */
enum {
  SERVER_BAD_FORM, SERVER_NOT_FOUND, SERVER_BAD_METHOD, SERVER_BODY_TOO_LARGE,
  SERVER_HEADERS_TOO_LARGE, SERVER_INTERNAL, SERVER_TIMED_OUT, SERVER_UNAVAILABLE
};
static const struct {
  unsigned status;
  const char *body;
} server_errors[] = {
    [SERVER_BAD_FORM] = {400, "{\"success\":false,\"error\":\"malformed multipart body\"}"},
    [SERVER_NOT_FOUND] = {404, "{\"success\":false,\"error\":\"not found\"}"},
    [SERVER_BAD_METHOD] = {405, "{\"success\":false,\"error\":\"method not allowed\"}"},
    [SERVER_BODY_TOO_LARGE] = {413, "{\"success\":false,\"error\":\"request body too large\"}"},
    [SERVER_HEADERS_TOO_LARGE] = {431, "{\"success\":false,\"error\":\"request headers too large\"}"},
    [SERVER_INTERNAL] = {500, "{\"success\":false,\"error\":\"internal error\"}"},
    [SERVER_TIMED_OUT] = {503, "{\"success\":false,\"error\":\"request timed out\"}"},
    [SERVER_UNAVAILABLE] = {503, "{\"success\":false,\"error\":\"service unavailable\"}"},
};

/* 1 if msg is the time limit's error and the limit has indeed passed (a
 * handler could raise the same words). */
static int server_timed_out(const char *msg, long long started_ms, long timeout_ms) {
  return timeout_ms > 0 && strstr(msg, "time limit exceeded") &&
         clock_mono_ms() - started_ms >= timeout_ms;
}

/* Pushes the three results of one of server_errors: status, headers, body. */
static int server_push_error(lua_State *L, int error) {
  lua_pushinteger(L, server_errors[error].status);
  lua_createtable(L, 0, 2);
  lua_pushliteral(L, "application/json");
  lua_setfield(L, -2, "Content-Type");
  lua_pushstring(L, server_errors[error].body);
  return 3;
}

/* MHD iterators: they run inside server_dispatch; MHD holds no lock or
 * buffer while iterating, so a Lua memory error may unwind through it. */
static enum MHD_Result server_push_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                          size_t key_size, const char *value, size_t value_size) {
  lua_State *L = cls;                                   /* ..., headers */
  luaL_Buffer b;
  char *lower = luaL_buffinitsize(L, &b, key_size);
  for (size_t i = 0; i < key_size; i++)
    lower[i] = (char)((key[i] >= 'A' && key[i] <= 'Z') ? key[i] + 32 : key[i]);
  luaL_pushresultsize(&b, key_size);                    /* ..., headers, name */
  lua_pushvalue(L, -1);
  if (lua_rawget(L, -3) == LUA_TSTRING) {               /* repeated: join as HTTP does */
    lua_pushliteral(L, ", ");
    lua_pushlstring(L, value ? value : "", value ? value_size : 0);
    lua_concat(L, 3);
  } else {
    lua_pop(L, 1);
    lua_pushlstring(L, value ? value : "", value ? value_size : 0);
  }
  lua_rawset(L, -3);
  return MHD_YES;
}

static enum MHD_Result server_push_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                         size_t key_size, const char *value, size_t value_size) {
  lua_State *L = cls;                                   /* ..., query */
  lua_pushlstring(L, key, key_size);
  lua_pushlstring(L, value ? value : "", value ? value_size : 0);
  lua_rawset(L, -3);
  return MHD_YES;
}

static int server_hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Pushes s[0..len) decoded as application/x-www-form-urlencoded. */
static void server_push_urldecoded(lua_State *L, const char *s, size_t len) {
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, len);
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    int hi, lo;
    if (s[i] == '+') out[n++] = ' ';
    else if (s[i] == '%' && i + 2 < len && (hi = server_hex(s[i + 1])) >= 0 &&
             (lo = server_hex(s[i + 2])) >= 0)
      out[n++] = (char)(hi * 16 + lo), i += 2;
    else out[n++] = s[i];
  }
  luaL_pushresultsize(&b, n);
}

/* Fills the form table at the top from an urlencoded body. */
static void server_form_urlencoded(lua_State *L, const char *body, size_t len) {
  const char *p = body, *end = body + len;
  while (p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *stop = amp ? amp : end;
    const char *eq = memchr(p, '=', (size_t)(stop - p));
    if (stop > p) {
      server_push_urldecoded(L, p, (size_t)((eq ? eq : stop) - p));
      if (eq) server_push_urldecoded(L, eq + 1, (size_t)(stop - eq - 1));
      else lua_pushliteral(L, "");
      lua_rawset(L, -3);
    }
    p = stop + 1;
  }
}

/* Fills form (at form_idx) and files (at the top) from a multipart body.
 * Returns 0, or -1 when the body is malformed. */
static int server_form_multipart(lua_State *L, int form_idx, const char *ctype, const char *body,
                                 size_t len) {
  const char *boundary;
  size_t blen = multipart_boundary(ctype, &boundary);
  multipart_reader r;
  if (!blen || multipart_init(&r, body, len, boundary, blen) != 0) return -1;
  multipart_part part;
  int rc;
  while ((rc = multipart_next(&r, &part)) == 1) {
    if (!part.filename) {
      lua_pushlstring(L, part.name, part.name_len);
      lua_pushlstring(L, part.data, part.data_len);
      lua_rawset(L, form_idx);
      continue;
    }
    lua_createtable(L, 0, 4);                           /* files, file */
    lua_pushlstring(L, part.name, part.name_len);
    lua_setfield(L, -2, "name");
    lua_pushlstring(L, part.filename, part.filename_len);
    lua_setfield(L, -2, "filename");
    if (part.content_type) lua_pushlstring(L, part.content_type, part.content_type_len);
    else lua_pushliteral(L, "application/octet-stream");
    lua_setfield(L, -2, "content_type");
    lua_pushlstring(L, part.data, part.data_len);
    lua_setfield(L, -2, "data");
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);   /* files */
  }
  return rc;
}

static void server_push_remote(lua_State *L, struct MHD_Connection *conn) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  char ip[INET6_ADDRSTRLEN] = "";
  if (ci && ci->client_addr) {
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
      inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, ip, sizeof ip);
    else if (sa->sa_family == AF_INET6)
      inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, ip, sizeof ip);
  }
  lua_pushstring(L, ip);
}

/* Pushes the request table handed to a handler. Returns 0, or -1 (nothing
 * pushed) when its multipart body is malformed. */
static int server_push_request(lua_State *L, server_call *c, const server_route *r,
                               const server_capture *caps) {
  lua_createtable(L, 0, 10);                            /* request */
  int req = lua_gettop(L);
  lua_pushstring(L, c->method);
  lua_setfield(L, req, "method");
  lua_pushstring(L, c->url);
  lua_setfield(L, req, "path");
  lua_createtable(L, 0, 2);                             /* request, params */
  for (int i = 0; i < r->nsegs; i++) {
    if (r->segs[i].kind == SERVER_LITERAL) continue;
    lua_pushlstring(L, r->segs[i].text, r->segs[i].len);
    lua_pushlstring(L, caps[i].at, caps[i].len);
    lua_rawset(L, -3);
  }
  lua_setfield(L, req, "params");
  lua_newtable(L);                                      /* request, query */
  MHD_get_connection_values_n(c->conn, MHD_GET_ARGUMENT_KIND, server_push_query, L);
  lua_setfield(L, req, "query");
  lua_newtable(L);                                      /* request, headers */
  MHD_get_connection_values_n(c->conn, MHD_HEADER_KIND, server_push_header, L);
  lua_setfield(L, req, "headers");
  const char *body = c->req->body ? c->req->body : "";
  lua_pushlstring(L, body, c->req->body_len);
  lua_setfield(L, req, "body");
  server_push_remote(L, c->conn);
  lua_setfield(L, req, "remote");
  lua_newtable(L);                                      /* request, form */
  lua_newtable(L);                                      /* request, form, files */
  const char *ctype = MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Content-Type");
  if (ctype && strncasecmp(ctype, "application/x-www-form-urlencoded", 33) == 0) {
    lua_pushvalue(L, -2);
    server_form_urlencoded(L, body, c->req->body_len);
    lua_pop(L, 1);
  } else if (ctype && strncasecmp(ctype, "multipart/form-data", 19) == 0 &&
             server_form_multipart(L, req + 1, ctype, body, c->req->body_len) != 0) {
    lua_settop(L, req - 1);
    return -1;
  }
  lua_setfield(L, req, "files");
  lua_setfield(L, req, "form");
  return 0;
}

/* The error value at idx, with its traceback, into out. */
static void server_error_text(lua_State *L, int idx, char *out, size_t len) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TTABLE) {
    lua_getfield(L, idx, "message");
    lua_getfield(L, idx, "traceback");
    snprintf(out, len, "%s\n%s", lua_isstring(L, -2) ? lua_tostring(L, -2) : "(error table)",
             lua_isstring(L, -1) ? lua_tostring(L, -1) : "");
    lua_pop(L, 2);
    return;
  }
  snprintf(out, len, "%s", luaL_tolstring(L, idx, NULL));
  lua_pop(L, 1);
}

static const char *server_file_type(const char *path) {
  static const char *const types[][2] = {
      {".png", "image/png"},        {".jpg", "image/jpeg"},      {".jpeg", "image/jpeg"},
      {".webp", "image/webp"},      {".gif", "image/gif"},       {".svg", "image/svg+xml"},
      {".json", "application/json"}, {".jsonl", "application/x-ndjson"},
      {".txt", "text/plain; charset=utf-8"}, {".html", "text/html; charset=utf-8"},
      {".css", "text/css"},         {".js", "text/javascript"}, {NULL, NULL}};
  const char *dot = strrchr(path, '.');
  for (int i = 0; dot && types[i][0]; i++)
    if (strcasecmp(dot, types[i][0]) == 0) return types[i][1];
  return "application/octet-stream";
}

/* Turns a handler's status, headers, body (the top three values) into
 * status, a table of string headers with a Content-Type, and a string or
 * file body. Raises on anything else. */
static int server_normalize(lua_State *L) {
  int base = lua_gettop(L) - 2;
  lua_Integer status = 200;
  if (!lua_isnil(L, base)) {
    int isint;
    status = lua_tointegerx(L, base, &isint);
    if (!isint || status < 100 || status > 599)
      luaL_error(L, "handler returned status %s, not an HTTP status", luaL_tolstring(L, base, NULL));
  }
  if (!lua_isnil(L, base + 1) && !lua_istable(L, base + 1))
    luaL_error(L, "handler returned %s headers, not a table", luaL_typename(L, base + 1));
  lua_createtable(L, 0, 4);                             /* ..., out */
  int out = lua_gettop(L), has_type = 0;
  if (lua_istable(L, base + 1)) {
    lua_pushnil(L);
    while (lua_next(L, base + 1)) {                     /* ..., out, name, value */
      size_t nl, vl;
      const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &nl) : NULL;
      if (!name || !lua_isstring(L, -1))
        luaL_error(L, "handler returned a header that is not name = string");
      lua_pushvalue(L, -1);                             /* ..., out, name, value, text */
      const char *value = lua_tolstring(L, -1, &vl);
      if (nl == 0 || strcspn(name, ":\r\n \t") != nl || strcspn(value, "\r\n") != vl ||
          strlen(value) != vl)
        luaL_error(L, "handler returned a malformed header '%s'", name);
      if (strcasecmp(name, "content-type") == 0) has_type = 1;
      lua_pushvalue(L, -3);                             /* ..., out, name, value, text, name */
      lua_insert(L, -2);                                /* ..., out, name, value, name, text */
      lua_rawset(L, out);                               /* ..., out, name, value */
      lua_pop(L, 1);
    }
  }
  const char *ctype = "text/plain; charset=utf-8";
  switch (lua_type(L, base + 2)) {
    case LUA_TNIL:
      lua_pushliteral(L, "");
      ctype = NULL;
      break;
    case LUA_TSTRING:
      lua_pushvalue(L, base + 2);
      break;
    case LUA_TTABLE:
      server_json_encoder(L);                           /* ..., out, encode */
      lua_pushvalue(L, base + 2);
      lua_call(L, 1, 1);                                /* ..., out, json */
      ctype = "application/json";
      break;
    default: {
      const char *path = luaL_testudata(L, base + 2, SERVER_FILE_MT);
      if (!path) luaL_error(L, "handler returned a %s body", luaL_typename(L, base + 2));
      lua_pushvalue(L, base + 2);
      ctype = server_file_type(path);
    }
  }
  if (!has_type && ctype) {
    lua_pushstring(L, ctype);
    lua_setfield(L, out, "Content-Type");
  }
  lua_pushinteger(L, status);                           /* ..., out, body, status */
  lua_insert(L, out);                                   /* ..., status, out, body */
  return 3;
}

/* Routes one request and calls its handler, run under host_pcall with the
 * request time limit. Returns status, headers, body (see server_normalize);
 * a handler's error becomes a 500 (or 503 on timeout) with the error kept
 * in the call. */
static int server_dispatch(lua_State *L) {
  server_call *c = lua_touserdata(L, 1);
  server_routes *rs = server_routes_get(L, c->srv->module);    /* call, routes */
  server_capture caps[SERVER_MAX_SEGMENTS];
  const server_route *hit = NULL;
  char allow[256] = "";
  for (int i = 0; i < rs->n && !hit; i++) {
    const server_route *r = &rs->routes[i];
    if (!server_route_match(r, c->url, caps)) continue;
    if (strcmp(r->method, c->method) == 0 || strcmp(r->method, "*") == 0 ||
        (strcmp(c->method, "HEAD") == 0 && strcmp(r->method, "GET") == 0))
      hit = r;
    else if (!strstr(allow, r->method) && strlen(allow) + strlen(r->method) + 3 < sizeof allow)
      snprintf(allow + strlen(allow), sizeof allow - strlen(allow), "%s%s", *allow ? ", " : "",
               r->method);
  }
  if (!hit && !*allow) return server_push_error(L, SERVER_NOT_FOUND);
  if (!hit) {
    server_push_error(L, SERVER_BAD_METHOD);
    lua_pushstring(L, allow);
    lua_setfield(L, -3, "Allow");
    return 3;
  }
  c->slot = hit->slot;
  snprintf(c->route, sizeof c->route, "%s", hit->pattern);
  lua_getiuservalue(L, 2, 1);                           /* call, routes, handlers */
  lua_geti(L, -1, (lua_Integer)(hit - rs->routes) + 1); /* ..., handler */
  if (server_push_request(L, c, hit, caps) != 0) return server_push_error(L, SERVER_BAD_FORM);
  c->phase = 1;
  if (host_pcall(L, 1, 3, 0) != LUA_OK) {               /* status, headers, body, or error */
    server_error_text(L, -1, c->error, sizeof c->error);
    c->handler_failed = server_timed_out(c->error, c->started_ms, c->srv->timeout_ms)
                            ? SERVER_TIMED_OUT
                            : SERVER_INTERNAL;
    return server_push_error(L, c->handler_failed);
  }
  return server_normalize(L);
}

/* ---- responses --------------------------------------------------------------- */

static struct MHD_Response *server_error_response(int error) {
  const char *body = server_errors[error].body;
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(strlen(body), (void *)(uintptr_t)body, MHD_RESPMEM_PERSISTENT);
  if (resp) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
  return resp;
}

/* Queues resp for req and counts it; the response is released. */
static enum MHD_Result server_queue(server_request *req, struct MHD_Connection *conn,
                                    unsigned status, struct MHD_Response *resp) {
  if (!resp) return MHD_NO;
  req->answered = 1;
  enum MHD_Result ok = MHD_queue_response(conn, status, resp);
  MHD_destroy_response(resp);
  server_count(req->slot, status, req->started_us);
  return ok;
}

static enum MHD_Result server_queue_error(server_request *req, struct MHD_Connection *conn,
                                          int error) {
  return server_queue(req, conn, server_errors[error].status, server_error_response(error));
}

/* The response for dispatch's results at base (status, headers, body);
 * *status is set. NULL when out of memory. Never raises. */
static struct MHD_Response *server_response(lua_State *L, int base, unsigned *status) {
  *status = (unsigned)lua_tointeger(L, base);
  struct MHD_Response *resp;
  size_t len;
  const char *body = lua_tolstring(L, base + 2, &len);
  if (body) {
    resp = MHD_create_response_from_buffer(len, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
  } else {
    const char *path = lua_touserdata(L, base + 2);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      if (fd >= 0) close(fd);
      *status = 404;
      return server_error_response(SERVER_NOT_FOUND);
    }
    resp = MHD_create_response_from_fd((uint64_t)st.st_size, fd);
    if (!resp) close(fd);
  }
  if (!resp) return NULL;
  lua_pushnil(L);
  while (lua_next(L, base + 1)) {                       /* ..., name, value */
    const char *name = lua_tostring(L, -2);
    if (strcasecmp(name, "content-length") != 0)
      MHD_add_response_header(resp, name, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return resp;
}

/* From the syncer thread: the held response's commit is durable. */
static void server_resume(void *arg) {
  server_request *req = arg;
  server *srv = req->srv;
  MHD_resume_connection(req->conn);                     /* req may be gone from here */
  atomic_fetch_sub(&srv->held, 1);
}

/* From the committer or syncer thread: the held response's group
 * transaction is durable (ok), or failed, when the answer becomes a 503 so
 * the platform delivers the event again. */
static void server_group_done(void *arg, int ok) {
  server_request *req = arg;
  if (!ok) {
    MHD_destroy_response(req->held);
    req->held = server_error_response(SERVER_UNAVAILABLE);
    req->held_status = server_errors[SERVER_UNAVAILABLE].status;
  }
  server_resume(req);
}

/* Sends resp once ticket (and group, if any) is durable without keeping
 * this thread: the connection is suspended, and the access handler queues
 * resp when the syncer or committer resumes it. While the server stops,
 * waits here instead (stop must not meet a suspended connection). A
 * group's ticket comes after its commit, so it covers an earlier ticket. */
static enum MHD_Result server_hold(server_request *req, struct MHD_Connection *conn,
                                   unsigned status, struct MHD_Response *resp, uint64_t ticket,
                                   uint64_t group) {
  server *srv = req->srv;
  atomic_fetch_add(&srv->held, 1);                      /* before reading stopping: see server_stop */
  if (atomic_load(&srv->stopping)) {
    atomic_fetch_sub(&srv->held, 1);
    if (group && !store_group_wait(group)) {
      MHD_destroy_response(resp);
      return server_queue_error(req, conn, SERVER_UNAVAILABLE);
    }
    if (ticket) store_sync_wait(ticket);
    return server_queue(req, conn, status, resp);
  }
  req->conn = conn, req->held = resp, req->held_status = status;
  MHD_suspend_connection(conn);
  if (group) {                                          /* server_group_done resumes it */
    if (store_group_notify(group, server_group_done, req) != 0)
      server_group_done(req, store_group_wait(group));  /* no memory to queue: wait here */
    return MHD_YES;
  }
  if (store_sync_notify(ticket, server_resume, req) == 1) server_resume(req);
  return MHD_YES;
}

/* Runs the request through Lua on this thread's state and queues the
 * answer; a handler that asked for store.sync() is answered after it. */
static enum MHD_Result server_handle(server *srv, server_request *req, struct MHD_Connection *conn,
                                     const char *url, const char *method) {
  char err[1024];
  lua_State *L = server_vm(err, sizeof err);
  if (!L) {
    log_event(LOG_ERROR, "no Lua state for a request", "path", url, "error", err, NULL);
    return server_queue_error(req, conn, SERVER_UNAVAILABLE);
  }
  server_call c = {.srv = srv, .req = req, .conn = conn, .url = url, .method = method,
                   .started_ms = clock_mono_ms()};
  int top = lua_gettop(L);
  lua_pushcfunction(L, server_dispatch);
  lua_pushlightuserdata(L, &c);
  if (!srv->per_connection) store_defer_sync_begin();   /* else store.sync() just blocks */
  int st = host_pcall(L, 1, 3, srv->timeout_ms);        /* status, headers, body, or error */
  uint64_t ticket = srv->per_connection ? 0 : store_defer_sync_end();
  uint64_t group = srv->per_connection ? 0 : store_defer_group();
  req->slot = c.slot;
  char limit[24];
  snprintf(limit, sizeof limit, "%ld", srv->timeout_ms);
  if (st != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    msg = msg ? msg : "(error object is not a string)";
    int timed_out = server_timed_out(msg, c.started_ms, srv->timeout_ms);
    if (timed_out)
      log_event(LOG_WARN, "request timed out", "method", method, "path", url, "limit_ms", limit,
                NULL);
    else
      log_event(LOG_ERROR, c.phase ? "handler returned a bad response" : "cannot route request",
                "method", method, "path", url, "module", srv->module, "error", msg, NULL);
    lua_settop(L, top);
    return server_queue_error(req, conn, timed_out   ? SERVER_TIMED_OUT
                                         : c.phase ? SERVER_INTERNAL
                                                   : SERVER_UNAVAILABLE);
  }
  if (c.handler_failed == SERVER_TIMED_OUT)
    log_event(LOG_WARN, "request timed out", "method", method, "route", c.route, "path", url,
              "limit_ms", limit, NULL);
  else if (c.handler_failed)
    log_event(LOG_ERROR, "handler failed", "method", method, "route", c.route, "path", url,
              "error", c.error, NULL);
  unsigned status;
  struct MHD_Response *resp = server_response(L, top + 1, &status);
  lua_settop(L, top);
  if (resp && (ticket || group) && !c.handler_failed)
    return server_hold(req, conn, status, resp, ticket, group);
  return server_queue(req, conn, status, resp);
}

/* ---- libmicrohttpd callbacks -------------------------------------------------- */

static enum MHD_Result server_count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                           size_t key_size, const char *value, size_t value_size) {
  *(size_t *)cls += key_size + value_size + 4;          /* "name: value\r\n" */
  return MHD_YES;
}

/* Appends a body chunk; 0, or -1 once the body is over the limit. */
static int server_body_append(server_request *req, const char *data, size_t n) {
  size_t max = req->srv->max_body;
  if (req->too_large || n > max - req->body_len) {
    free(req->body);
    req->body = NULL, req->body_len = req->body_cap = 0, req->too_large = 1;
    return -1;
  }
  if (req->body_len + n > req->body_cap) {
    size_t cap = req->body_cap ? req->body_cap : 16384;
    while (cap < req->body_len + n) cap *= 2;
    if (cap > max) cap = max;
    char *grown = realloc(req->body, cap);
    if (!grown) return -1;
    req->body = grown, req->body_cap = cap;
  }
  memcpy(req->body + req->body_len, data, n);
  req->body_len += n;
  return 0;
}

/* MHD's access handler: called at the headers, for each piece of body, and
 * once the request is complete. */
static enum MHD_Result server_access(void *cls, struct MHD_Connection *conn, const char *url,
                                     const char *method, const char *version,
                                     const char *upload_data, size_t *upload_size, void **con_cls) {
  server *srv = cls;
  server_request *req = *con_cls;
  if (req && req->held) {                               /* resumed: its commit is durable */
    struct MHD_Response *resp = req->held;
    req->held = NULL;
    return server_queue(req, conn, req->held_status, resp);
  }
  if (!req) {
    if (!(req = calloc(1, sizeof *req))) return MHD_NO;
    req->srv = srv;
    req->started_us = clock_mono_us();
    *con_cls = req;
    atomic_fetch_add(&srv->in_flight, 1);               /* before reading stopping: see server_stop */
    if (atomic_load(&srv->stopping)) return server_queue_error(req, conn, SERVER_UNAVAILABLE);
    size_t header_bytes = strlen(url) + strlen(method) + 12;
    MHD_get_connection_values_n(conn, MHD_HEADER_KIND, server_count_header, &header_bytes);
    if (header_bytes > srv->max_header) return server_queue_error(req, conn, SERVER_HEADERS_TOO_LARGE);
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > srv->max_body)
      return server_queue_error(req, conn, SERVER_BODY_TOO_LARGE);
    return MHD_YES;
  }
  if (*upload_size > 0) {
    size_t n = *upload_size;
    *upload_size = 0;
    if (!req->answered && server_body_append(req, upload_data, n) == 0) return MHD_YES;
    if (!req->answered && !req->too_large) return MHD_NO;     /* out of memory: drop the connection */
    /* MHD still reads a body answered before it, and takes no response in
     * mid-body: skip the rest, unless the client sends far too much */
    req->discarded += n;
    return req->discarded <= SERVER_DISCARD_MAX ? MHD_YES : MHD_NO;
  }
  if (req->answered) return MHD_YES;                    /* the end of a body answered early */
  if (req->too_large) return server_queue_error(req, conn, SERVER_BODY_TOO_LARGE);
  return server_handle(srv, req, conn, url, method);
}

static void server_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                             enum MHD_RequestTerminationCode toe) {
  server_request *req = *con_cls;
  if (!req) return;
  atomic_fetch_sub(&req->srv->in_flight, 1);
  if (req->held) MHD_destroy_response(req->held);
  free(req->body);
  free(req);
  *con_cls = NULL;
}

__attribute__((format(printf, 2, 0)))
static void server_mhd_log(void *cls, const char *fmt, va_list ap) {
  char line[512];
  vsnprintf(line, sizeof line, fmt, ap);
  line[strcspn(line, "\n")] = '\0';
  log_event(LOG_WARN, "httpd", "detail", line, NULL);
}

/* ---- the binding --------------------------------------------------------------- */

static server *server_check(lua_State *L) { return luaL_checkudata(L, 1, SERVER_MT); }

static void server_sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

/* Stops accepting, turns new requests on open connections away with 503,
 * lets requests in flight finish (held ones until their group commit: MHD
 * must not stop with suspended connections; the others for at most the
 * request time limit), then stops the daemon. Safe to call twice. */
static void server_stop(server *s) {
  if (!s->daemon) return;
  MHD_socket listener = MHD_quiesce_daemon(s->daemon);
  atomic_store(&s->stopping, 1);                        /* before reading held and in_flight */
  while (atomic_load(&s->held) > 0) server_sleep_ms(1);
  long long drain_until = clock_mono_ms() + s->timeout_ms + SERVER_DRAIN_SLACK_MS;
  while (atomic_load(&s->in_flight) > 0 && clock_mono_ms() < drain_until) server_sleep_ms(1);
  MHD_stop_daemon(s->daemon);
  if (listener != MHD_INVALID_SOCKET) close(listener);
  s->daemon = NULL;
  char port[16];
  snprintf(port, sizeof port, "%u", s->port);
  log_event(LOG_INFO, "server stopped", "host", s->host, "port", port, NULL);
}

static long server_opt_int(lua_State *L, const char *field, const char *setting, long def,
                           long min, long max) {
  long v = setting ? config_int(setting, def) : def;
  if (lua_getfield(L, 1, field) != LUA_TNIL) {
    int isint;
    lua_Integer got = lua_tointegerx(L, -1, &isint);
    if (!isint) luaL_error(L, "server.start: %s must be an integer", field);
    v = (long)got;
  }
  lua_pop(L, 1);
  if (v < min || v > max) luaL_error(L, "server.start: %s must be in %d..%d", field, (int)min, (int)max);
  return v;
}

/* Resolves host:port into *addr. Returns 0, or an EAI_ code. */
static int server_address(const char *host, unsigned port, struct sockaddr_storage *addr,
                          socklen_t *len) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                           .ai_flags = AI_PASSIVE}, *res;
  char service[8];
  snprintf(service, sizeof service, "%u", port);
  int rc = getaddrinfo(host, service, &hints, &res);
  if (rc != 0) return rc;
  memcpy(addr, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  return 0;
}

/* server.start{module, host, port, threads, max_body, max_header,
 * max_connections, per_client, timeout_ms, idle_timeout_s, per_connection}:
 * a running server, or nil, err when it cannot listen. per_connection gives
 * each connection its own thread (and Lua state): for handlers that wait,
 * like the sandbox's slow model, which would otherwise queue behind each
 * other on a pool thread. */
static int server_lua_start(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "module");
  const char *module = lua_tostring(L, -1);
  if (!module || strlen(module) >= sizeof ((server *)0)->module)
    luaL_error(L, "server.start: module must be a module name");
  lua_getfield(L, 1, "host");
  const char *host = luaL_optstring(L, -1, "0.0.0.0");
  if (strlen(host) >= sizeof ((server *)0)->host) luaL_error(L, "server.start: host too long");
  long port = server_opt_int(L, "port", NULL, 8000, 0, 65535);
  long threads = server_opt_int(L, "threads", "SERVER_THREADS", 2, 1, 256);
  long max_body = server_opt_int(L, "max_body", "MAX_BODY_BYTES", 1 << 20, 0, 1L << 30);
  long max_header = server_opt_int(L, "max_header", "MAX_HEADER_BYTES", 16 << 10, 1024, 1 << 20);
  long max_conns = server_opt_int(L, "max_connections", "SERVER_MAX_CONNECTIONS", 512, 1, 1 << 20);
  long per_client = server_opt_int(L, "per_client", "SERVER_PER_CLIENT", 64, 0, 1 << 20);
  long timeout_ms = server_opt_int(L, "timeout_ms", "REQUEST_TIMEOUT_MS", 10000, 0, 1L << 30);
  long idle_s = server_opt_int(L, "idle_timeout_s", "SERVER_IDLE_TIMEOUT_S", 30, 0, 1 << 20);
  lua_getfield(L, 1, "per_connection");
  int per_connection = lua_toboolean(L, -1);
  lua_pop(L, 1);
  server_routes_get(L, module);                         /* a broken route list fails here */
  lua_pop(L, 1);

  server *s = lua_newuserdatauv(L, sizeof *s, 0);
  *s = (server){.port = (unsigned)port, .max_body = (size_t)max_body,
                .max_header = (size_t)max_header, .timeout_ms = timeout_ms,
                .per_connection = per_connection};
  snprintf(s->module, sizeof s->module, "%s", module);
  snprintf(s->host, sizeof s->host, "%s", host);
  luaL_setmetatable(L, SERVER_MT);

  struct sockaddr_storage addr;
  socklen_t addrlen;
  int rc = server_address(s->host, s->port, &addr, &addrlen);
  if (rc != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot resolve %s: %s", s->host, gai_strerror(rc));
    return 2;
  }
  pthread_once(&server_vm_once, server_vm_key_init);
  if (!host_app()[0]) host_set_app(s->module);
  config_freeze();
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
                   (addr.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0) |
                   (per_connection ? MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL
                                   : MHD_USE_AUTO | MHD_ALLOW_SUSPEND_RESUME);
  if (per_connection) threads = 1;                      /* no pool: a thread per connection */
  struct MHD_OptionItem limits[] = {
      {MHD_OPTION_CONNECTION_LIMIT, max_conns, NULL},
      {MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_client, NULL},
      {MHD_OPTION_CONNECTION_TIMEOUT, idle_s, NULL},
      {MHD_OPTION_CONNECTION_MEMORY_LIMIT, max_header + SERVER_HEADER_SLACK, NULL},
      {threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, threads, NULL},  /* 1: no pool */
      {MHD_OPTION_END, 0, NULL}};
  errno = 0;
  s->daemon = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, server_access, s,
                               MHD_OPTION_EXTERNAL_LOGGER, server_mhd_log, s,
                               MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                               MHD_OPTION_NOTIFY_COMPLETED, server_completed, s,
                               MHD_OPTION_ARRAY, limits,
                               MHD_OPTION_END);
  if (!s->daemon) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot listen on %s:%d: %s", s->host, (int)port,
                    errno ? strerror(errno) : "libmicrohttpd refused the settings");
    return 2;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
  if (info) s->port = info->port;
  char ports[16], threadss[16];
  snprintf(ports, sizeof ports, "%u", s->port);
  snprintf(threadss, sizeof threadss, "%ld", threads);
  log_event(LOG_INFO, "server listening", "host", s->host, "port", ports, "module", s->module,
            "threads", threadss, NULL);
  return 1;
}

/* srv:stop(): stops the server; later calls do nothing. */
static int server_lua_stop(lua_State *L) {
  server_stop(server_check(L));
  return 0;
}

static int server_lua_index(lua_State *L) {
  server *s = server_check(L);
  const char *key = luaL_checkstring(L, 2);
  if (strcmp(key, "port") == 0) lua_pushinteger(L, s->port);
  else if (strcmp(key, "host") == 0) lua_pushstring(L, s->host);
  else if (strcmp(key, "module") == 0) lua_pushstring(L, s->module);
  else if (strcmp(key, "running") == 0) lua_pushboolean(L, s->daemon != NULL);
  else lua_getfield(L, lua_upvalueindex(1), key);       /* a method, or nil */
  return 1;
}

static int server_lua_tostring(lua_State *L) {
  server *s = server_check(L);
  lua_pushfstring(L, "server %s:%d (%s)", s->host, (int)s->port,
                  s->daemon ? "running" : "stopped");
  return 1;
}

/* server.file(path): a body value that sends the file at path. */
static int server_lua_file(lua_State *L) {
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  if (strlen(path) != len) luaL_argerror(L, 1, "path contains a NUL byte");
  char *ud = lua_newuserdatauv(L, len + 1, 0);
  memcpy(ud, path, len + 1);
  luaL_setmetatable(L, SERVER_FILE_MT);
  return 1;
}

/* server.stats(): {requests = {{method, route, status, count}...},
 * latency = {buckets = {{le, count}...} (cumulative, le in ms, the last
 * one math.huge), sum_ms, count}}, over every server of the process.
 * Requests that matched no route (or were refused before routing) have
 * method and route ""; status 0 gathers a route's rarer statuses. */
static int server_lua_stats(lua_State *L) {
  int n = atomic_load(&server_nslots);
  lua_createtable(L, 0, 2);                             /* stats */
  lua_newtable(L);                                      /* stats, requests */
  lua_Integer row = 0;
  for (int i = 0; i < n; i++) {
    server_slot *s = &server_slots[i];
    for (int k = 0; k <= SERVER_SLOT_CODES; k++) {
      unsigned code = k < SERVER_SLOT_CODES ? atomic_load(&s->code[k]) : 0;
      unsigned long long count = k < SERVER_SLOT_CODES ? atomic_load(&s->count[k])
                                                       : atomic_load(&s->other);
      if (count == 0) continue;
      lua_createtable(L, 0, 4);
      lua_pushstring(L, s->method);
      lua_setfield(L, -2, "method");
      lua_pushstring(L, s->route);
      lua_setfield(L, -2, "route");
      lua_pushinteger(L, code);
      lua_setfield(L, -2, "status");
      lua_pushinteger(L, (lua_Integer)count);
      lua_setfield(L, -2, "count");
      lua_rawseti(L, -2, ++row);
    }
  }
  lua_setfield(L, -2, "requests");
  lua_createtable(L, 0, 3);                             /* stats, latency */
  lua_createtable(L, SERVER_BUCKETS + 1, 0);            /* stats, latency, buckets */
  unsigned long long total = 0;
  for (size_t b = 0; b <= SERVER_BUCKETS; b++) {
    total += atomic_load(&server_latency[b]);
    lua_createtable(L, 0, 2);
    if (b < SERVER_BUCKETS) lua_pushinteger(L, server_latency_le_ms[b]);
    else lua_pushnumber(L, HUGE_VAL);
    lua_setfield(L, -2, "le");
    lua_pushinteger(L, (lua_Integer)total);
    lua_setfield(L, -2, "count");
    lua_rawseti(L, -2, (lua_Integer)b + 1);
  }
  lua_setfield(L, -2, "buckets");
  lua_pushnumber(L, (double)atomic_load(&server_latency_sum_us) / 1000.0);
  lua_setfield(L, -2, "sum_ms");
  lua_pushinteger(L, (lua_Integer)total);
  lua_setfield(L, -2, "count");
  lua_setfield(L, -2, "latency");
  return 1;
}

static int server_lua_gc(lua_State *L) {
  server_stop(server_check(L));
  return 0;
}

int luaopen_server(lua_State *L) {
  static const luaL_Reg methods[] = {{"stop", server_lua_stop}, {NULL, NULL}};
  static const luaL_Reg metamethods[] = {{"__gc", server_lua_gc},
                                         {"__close", server_lua_gc},
                                         {"__tostring", server_lua_tostring},
                                         {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"start", server_lua_start},
                                   {"file", server_lua_file},
                                   {"stats", server_lua_stats},
                                   {NULL, NULL}};
  luaL_newmetatable(L, SERVER_MT);                      /* mt */
  luaL_setfuncs(L, metamethods, 0);
  luaL_newlib(L, methods);                              /* mt, methods */
  lua_pushcclosure(L, server_lua_index, 1);             /* mt, __index */
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newmetatable(L, SERVER_FILE_MT);
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  return 1;
}
