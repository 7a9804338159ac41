/*
 * http.c - the Lua `http` client on libcurl.
 *
 * Each thread keeps one easy handle (thread-local, freed by a pthread key
 * destructor when the thread ends) so its connections, DNS and TLS session
 * caches are reused from request to request; curl_easy_reset after every
 * request clears the options and keeps those caches.
 *
 * A request runs in three phases so that no error jumps past held memory:
 * read and check the Lua arguments (may raise; nothing is allocated yet,
 * every string used later is anchored on the stack), perform the request
 * (no Lua call that can raise; curl lists and the temporary output file are
 * freed before it returns), then build the result from the response box, a
 * to-be-closed userdata that frees the response buffers even if building
 * the result raises.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <lauxlib.h>
#include <lua.h>

#include "host.h"

#define HTTP_DEFAULT_TIMEOUT_MS 30000
#define HTTP_DEFAULT_MAX_SIZE ((lua_Integer)64 << 20)
#define HTTP_MAX_HEAD (256 * 1024)   /* bytes of response headers kept */
#define HTTP_MAX_REDIRECTS 10L
#define HTTP_RESPONSE_MT "http.response"

/* Stack slots of http.request while it runs. */
enum { HTTP_ARGS = 1, HTTP_ANCHOR, HTTP_LINES, HTTP_BOX };

static pthread_key_t http_key;
static pthread_once_t http_key_once = PTHREAD_ONCE_INIT;
static __thread CURL *http_thread_curl;

static void http_curl_free(void *curl) { curl_easy_cleanup(curl); }

static void http_key_create(void) { pthread_key_create(&http_key, http_curl_free); }

/* This thread's easy handle (created on first use), or NULL. */
static CURL *http_thread_handle(void) {
  if (!http_thread_curl) {
    pthread_once(&http_key_once, http_key_create);
    http_thread_curl = curl_easy_init();
    if (http_thread_curl) pthread_setspecific(http_key, http_thread_curl);
  }
  return http_thread_curl;
}

/* One multipart field; strings point into the anchor table. */
typedef struct http_part {
  const char *name, *value, *file, *filename, *content_type;
  size_t value_len;
} http_part;

/* What Lua asked for, checked; strings point into the anchor table. */
typedef struct http_request {
  const char *method, *url, *output;
  const char *body;
  size_t body_len;
  int has_body;
  int nlines;                     /* header lines in the HTTP_LINES table */
  http_part *parts;
  int nparts, multipart;
  long timeout_ms, connect_timeout_ms;
  curl_off_t max_size;
  int follow;
} http_request;

/* The response being received; lives in a userdata (the box). */
typedef struct http_response {
  char *body, *head;
  size_t body_len, body_cap, head_len, head_cap;
  curl_off_t size, max_size;
  long status;
  int fd;                         /* output temp file, or -1 */
  char tmp[PATH_MAX];             /* its name */
  int too_large, head_too_large, no_memory, write_errno;
} http_response;

/* Frees what the response holds; serves __gc and the normal path. */
static void http_response_free(http_response *r) {
  free(r->body);
  free(r->head);
  r->body = r->head = NULL;
  if (r->fd >= 0) {
    close(r->fd);
    unlink(r->tmp);
    r->fd = -1;
  }
}

/* __gc and __close of the response box. */
static int http_response_close(lua_State *L) {
  http_response_free(luaL_checkudata(L, 1, HTTP_RESPONSE_MT));
  return 0;
}

/* Moves the value on top of the stack into the anchor table. */
static void http_anchor(lua_State *L) {
  lua_rawseti(L, HTTP_ANCHOR, (lua_Integer)lua_rawlen(L, HTTP_ANCHOR) + 1);  /* pops it */
}

/* t[field] as an anchored string, NULL when nil; raises on another type.
 * Numbers are accepted (as their text) when numbers_ok. */
static const char *http_string_field(lua_State *L, int t, const char *field, size_t *len,
                                     int numbers_ok) {
  int type = lua_getfield(L, t, field);               /* v */
  if (type == LUA_TNIL) {
    lua_pop(L, 1);
    return NULL;
  }
  if (!(type == LUA_TSTRING || (numbers_ok && type == LUA_TNUMBER)))
    luaL_error(L, "http.request: '%s' must be a string, not %s", field, luaL_typename(L, -1));
  const char *s = lua_tolstring(L, -1, len);          /* numbers become strings in place */
  http_anchor(L);
  return s;
}

/* t[field] as a positive integer, or def when nil; raises otherwise. */
static lua_Integer http_int_field(lua_State *L, int t, const char *field, lua_Integer def) {
  int type = lua_getfield(L, t, field);               /* v */
  int ok = 0;
  lua_Integer n = lua_tointegerx(L, -1, &ok);
  lua_pop(L, 1);
  if (type == LUA_TNIL) return def;
  if (type != LUA_TNUMBER || !ok || n <= 0)
    luaL_error(L, "http.request: '%s' must be a positive integer", field);
  return n;
}

/* Checks a header name (an HTTP token) and value (no line breaks). */
static int http_header_ok(const char *name, const char *value, size_t vlen) {
  if (!*name) return 0;
  for (const char *p = name; *p; p++)
    if (!(*p > 32 && *p < 127 && !strchr("()<>@,;:\\\"/[]?={}", *p))) return 0;
  return memchr(value, '\r', vlen) == NULL && memchr(value, '\n', vlen) == NULL &&
         memchr(value, '\0', vlen) == NULL;
}

/* Reads headers = {name = value} into "Name: value" lines in HTTP_LINES.
 * Sets *has_type / *has_expect when the caller gave those headers. */
static void http_check_headers(lua_State *L, http_request *rq, int *has_type, int *has_expect) {
  if (lua_getfield(L, HTTP_ARGS, "headers") == LUA_TNIL) {   /* headers */
    lua_pop(L, 1);
    return;
  }
  if (!lua_istable(L, -1)) luaL_error(L, "http.request: 'headers' must be a table");
  int t = lua_gettop(L);
  lua_pushnil(L);                                     /* headers nil */
  while (lua_next(L, t)) {                            /* headers k v */
    int vt = lua_type(L, -1);
    if (lua_type(L, -2) != LUA_TSTRING || !(vt == LUA_TSTRING || vt == LUA_TNUMBER))
      luaL_error(L, "http.request: headers must map names to strings");
    lua_pushvalue(L, -1);                             /* headers k v vcopy: tolstring converts */
    size_t vlen;
    const char *name = lua_tostring(L, -3), *value = lua_tolstring(L, -1, &vlen);
    if (!http_header_ok(name, value, vlen)) luaL_error(L, "http.request: invalid header '%s'", name);
    if (strcasecmp(name, "content-type") == 0) *has_type = 1;
    if (strcasecmp(name, "expect") == 0) *has_expect = 1;
    /* curl sends "Name;" as an empty header; "Name:" would remove it */
    if (vlen == 0) lua_pushfstring(L, "%s;", name);
    else lua_pushfstring(L, "%s: %s", name, value);   /* headers k v vcopy line */
    lua_rawseti(L, HTTP_LINES, ++rq->nlines);         /* headers k v vcopy */
    lua_pop(L, 2);                                    /* headers k */
  }
  lua_pop(L, 1);
}

/* Reads multipart = { {name, value | file | data, filename, content_type} }. */
static void http_check_multipart(lua_State *L, http_request *rq, int t) {
  if (!lua_istable(L, t)) luaL_error(L, "http.request: 'multipart' must be a list of tables");
  lua_Integer n = (lua_Integer)lua_rawlen(L, t);
  if (n > 10000) luaL_error(L, "http.request: too many multipart fields");
  rq->nparts = (int)n;
  rq->multipart = 1;
  rq->parts = lua_newuserdatauv(L, sizeof(http_part) * (size_t)(n ? n : 1), 0);  /* parts */
  http_anchor(L);
  for (lua_Integer i = 1; i <= n; i++) {
    http_part *p = &rq->parts[i - 1];
    memset(p, 0, sizeof *p);
    if (lua_rawgeti(L, t, i) != LUA_TTABLE)           /* part */
      luaL_error(L, "http.request: multipart field %d must be a table", (int)i);
    int pt = lua_gettop(L);
    size_t data_len = 0;
    p->name = http_string_field(L, pt, "name", NULL, 0);
    p->value = http_string_field(L, pt, "value", &p->value_len, 1);
    p->file = http_string_field(L, pt, "file", NULL, 0);
    const char *data = http_string_field(L, pt, "data", &data_len, 0);
    p->filename = http_string_field(L, pt, "filename", NULL, 0);
    p->content_type = http_string_field(L, pt, "content_type", NULL, 0);
    if (!p->name) luaL_error(L, "http.request: multipart field %d has no name", (int)i);
    if ((p->value != NULL) + (p->file != NULL) + (data != NULL) != 1)
      luaL_error(L, "http.request: multipart field '%s' needs one of value, file or data", p->name);
    if (data) p->value = data, p->value_len = data_len;
    lua_pop(L, 1);
  }
}

/* Phase one: checks the argument table into rq. Raises on misuse. */
static void http_check_request(lua_State *L, http_request *rq) {
  int has_type = 0, has_expect = 0;
  rq->url = http_string_field(L, HTTP_ARGS, "url", NULL, 0);
  if (!rq->url) luaL_error(L, "http.request: 'url' is required");
  rq->method = http_string_field(L, HTTP_ARGS, "method", NULL, 0);
  rq->output = http_string_field(L, HTTP_ARGS, "output", NULL, 0);
  if (rq->output && strlen(rq->output) > PATH_MAX - 64)
    luaL_error(L, "http.request: 'output' path too long");
  rq->timeout_ms = (long)http_int_field(L, HTTP_ARGS, "timeout", HTTP_DEFAULT_TIMEOUT_MS);
  rq->connect_timeout_ms = (long)http_int_field(L, HTTP_ARGS, "connect_timeout", 0);
  rq->max_size = (curl_off_t)http_int_field(L, HTTP_ARGS, "max_size", HTTP_DEFAULT_MAX_SIZE);
  int type = lua_getfield(L, HTTP_ARGS, "follow");    /* follow */
  if (type != LUA_TNIL && type != LUA_TBOOLEAN)
    luaL_error(L, "http.request: 'follow' must be a boolean");
  rq->follow = lua_toboolean(L, -1);
  lua_pop(L, 1);
  http_check_headers(L, rq, &has_type, &has_expect);

  int given = 0;
  rq->body = http_string_field(L, HTTP_ARGS, "body", &rq->body_len, 0);
  if (rq->body) given++, rq->has_body = 1;
  if (lua_getfield(L, HTTP_ARGS, "json") != LUA_TNIL) {   /* value */
    given++;
    luaL_requiref(L, "json", luaopen_json, 0);        /* value json */
    lua_getfield(L, -1, "encode");                    /* value json encode */
    lua_rotate(L, -3, 1);                             /* encode value json */
    lua_pop(L, 1);                                    /* encode value */
    lua_call(L, 1, 1);                                /* text; raises on values JSON cannot hold */
    rq->body = lua_tolstring(L, -1, &rq->body_len);
    rq->has_body = 1;
    http_anchor(L);
    if (!has_type) {
      lua_pushliteral(L, "Content-Type: application/json");
      lua_rawseti(L, HTTP_LINES, ++rq->nlines);
    }
  } else {
    lua_pop(L, 1);
  }
  if (lua_getfield(L, HTTP_ARGS, "multipart") != LUA_TNIL) {  /* list */
    given++;
    http_check_multipart(L, rq, lua_gettop(L));
  }
  lua_pop(L, 1);
  if (given > 1) luaL_error(L, "http.request: give only one of body, json and multipart");

  if (!rq->method) rq->method = given ? "POST" : "GET";
  size_t mlen = strlen(rq->method);
  int method_ok = mlen > 0 && mlen <= 16;
  for (size_t i = 0; i < mlen; i++)
    if (rq->method[i] < 'A' || rq->method[i] > 'Z') method_ok = 0;
  if (!method_ok) luaL_error(L, "http.request: invalid method '%s'", rq->method);
  if (given && strcmp(rq->method, "HEAD") == 0) luaL_error(L, "http.request: HEAD with a body");
  if ((rq->has_body || rq->nparts) && !has_expect) {  /* no 100-continue round trip */
    lua_pushliteral(L, "Expect:");
    lua_rawseti(L, HTTP_LINES, ++rq->nlines);
  }
}

/* Opens a new file beside path for writing (0666 less umask), its name in
 * tmp. Returns the descriptor or -1 with errno set. */
static int http_open_temp(const char *path, char *tmp, size_t tmplen) {
  static unsigned long counter;
  const char *slash = strrchr(path, '/');
  int dirlen = slash ? (int)(slash - path + 1) : 0;
  for (int attempt = 0; attempt < 100; attempt++) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long n = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    snprintf(tmp, tmplen, "%.*s.%s.part-%d-%lu-%lx", dirlen, path, path + dirlen, (int)getpid(), n,
             (unsigned long)ts.tv_nsec);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0 || errno != EEXIST) return fd;
  }
  return -1;
}

/* curl header callback: keeps the header block of the last response
 * (after redirects and 100 Continue), up to HTTP_MAX_HEAD bytes. */
static size_t http_on_header(char *data, size_t size, size_t n, void *ud) {
  http_response *r = ud;
  size_t len = size * n;
  if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) r->head_len = 0;   /* keep only the last response's */
  if (r->head_len + len > HTTP_MAX_HEAD) return r->head_too_large = 1, 0;
  if (r->head_len + len > r->head_cap) {
    size_t cap = r->head_cap ? r->head_cap : 2048;
    while (cap < r->head_len + len) cap *= 2;
    char *p = realloc(r->head, cap);
    if (!p) return r->no_memory = 1, 0;
    r->head = p, r->head_cap = cap;
  }
  memcpy(r->head + r->head_len, data, len);
  r->head_len += len;
  return len;
}

/* curl write callback: the body into the output file or the buffer;
 * stops the transfer past max_size or on a failed write. */
static size_t http_on_body(char *data, size_t size, size_t n, void *ud) {
  http_response *r = ud;
  size_t len = size * n;
  if (r->size + (curl_off_t)len > r->max_size) return r->too_large = 1, 0;
  if (r->fd >= 0) {
    for (size_t done = 0; done < len;) {
      ssize_t w = write(r->fd, data + done, len - done);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return r->write_errno = errno, 0;
      done += (size_t)w;
    }
  } else {
    if (r->body_len + len > r->body_cap) {
      size_t cap = r->body_cap ? r->body_cap : 16384;
      while (cap < r->body_len + len) cap *= 2;
      char *p = realloc(r->body, cap);
      if (!p) return r->no_memory = 1, 0;
      r->body = p, r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, len);
    r->body_len += len;
  }
  r->size += (curl_off_t)len;
  return len;
}

/* Sets the method and body options. Returns NULL, or an error code with
 * the message in err. */
static const char *http_set_body(CURL *curl, const http_request *rq, curl_mime **mime, char *err,
                                 size_t errlen) {
  int is_post = strcmp(rq->method, "POST") == 0;
  if (rq->multipart) {
    *mime = curl_mime_init(curl);
    if (!*mime) return snprintf(err, errlen, "out of memory"), "memory";
    for (int i = 0; i < rq->nparts; i++) {
      const http_part *p = &rq->parts[i];
      curl_mimepart *part = curl_mime_addpart(*mime);
      if (!part) return snprintf(err, errlen, "out of memory"), "memory";
      CURLcode c = curl_mime_name(part, p->name);
      if (p->file) {
        struct stat st;
        if (stat(p->file, &st) != 0 || access(p->file, R_OK) != 0)
          return snprintf(err, errlen, "cannot read %s: %s", p->file, strerror(errno)), "io";
        if (!S_ISREG(st.st_mode))
          return snprintf(err, errlen, "cannot read %s: not a file", p->file), "io";
        if (!c) c = curl_mime_filedata(part, p->file);
      } else if (!c) {
        c = curl_mime_data(part, p->value, p->value_len);
      }
      if (!c && p->filename) c = curl_mime_filename(part, p->filename);
      if (!c && p->content_type) c = curl_mime_type(part, p->content_type);
      if (c) return snprintf(err, errlen, "multipart: %s", curl_easy_strerror(c)), "memory";
    }
    curl_easy_setopt(curl, CURLOPT_MIMEPOST, *mime);
    if (!is_post) curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, rq->method);
  } else if (rq->has_body || is_post) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(rq->has_body ? rq->body_len : 0));
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, rq->has_body ? rq->body : "");
    if (!is_post) curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, rq->method);
  } else if (strcmp(rq->method, "HEAD") == 0) {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (strcmp(rq->method, "GET") != 0) {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, rq->method);
  }
  return NULL;
}

/* Says what went wrong with a transfer, in words a log reader needs. */
static const char *http_describe(CURLcode res, const http_request *rq, const http_response *r,
                                 long os_errno, int sent, const char *curl_msg, char *err,
                                 size_t errlen) {
  if (r->too_large || res == CURLE_FILESIZE_EXCEEDED)
    return snprintf(err, errlen, "response too large"), "too_large";
  if (r->write_errno) {
    snprintf(err, errlen, "cannot write %s: %s", rq->output, strerror(r->write_errno));
    return "io";
  }
  if (r->no_memory || res == CURLE_OUT_OF_MEMORY)
    return snprintf(err, errlen, "out of memory"), "memory";
  if (r->head_too_large) return snprintf(err, errlen, "response headers too large"), "too_large";
  switch (res) {
    case CURLE_OPERATION_TIMEDOUT:
      if (!sent) {
        long ms = rq->timeout_ms;
        if (rq->connect_timeout_ms && rq->connect_timeout_ms < ms) ms = rq->connect_timeout_ms;
        snprintf(err, errlen, "connect timeout after %ld ms", ms);
      } else {
        snprintf(err, errlen, "timeout after %ld ms", rq->timeout_ms);
      }
      return "timeout";
    case CURLE_COULDNT_CONNECT:
      if (os_errno == ECONNREFUSED) snprintf(err, errlen, "connection refused");
      else snprintf(err, errlen, "cannot connect: %s", curl_msg);
      return "connect";
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      snprintf(err, errlen, "cannot resolve host: %s", curl_msg);
      return "resolve";
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      snprintf(err, errlen, "invalid url: %s", curl_msg);
      return "url";
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
      snprintf(err, errlen, "TLS: %s", curl_msg);
      return "tls";
    case CURLE_TOO_MANY_REDIRECTS:
      snprintf(err, errlen, "too many redirects");
      return "redirects";
    case CURLE_GOT_NOTHING:
      snprintf(err, errlen, "empty reply from server");
      return "network";
    default:
      snprintf(err, errlen, "%s", curl_msg);
      return "network";
  }
}

/* Phase two: performs rq into r without raising. Returns NULL on success,
 * or a short error code with the message in err. */
static const char *http_perform(lua_State *L, const http_request *rq, http_response *r, char *err,
                                size_t errlen) {
  CURL *curl = http_thread_handle();
  if (!curl) return snprintf(err, errlen, "cannot create a curl handle"), "memory";
  struct curl_slist *headers = NULL;
  curl_mime *mime = NULL;
  const char *code = NULL;
  char curl_msg[CURL_ERROR_SIZE] = "";

  for (int i = 1; i <= rq->nlines; i++) {
    lua_rawgeti(L, HTTP_LINES, i);                    /* line (anchored in the table) */
    struct curl_slist *next = curl_slist_append(headers, lua_tostring(L, -1));
    lua_pop(L, 1);
    if (!next) {
      code = "memory";
      snprintf(err, errlen, "out of memory");
      goto done;
    }
    headers = next;
  }
  if (rq->output && (r->fd = http_open_temp(rq->output, r->tmp, sizeof r->tmp)) < 0) {
    code = "io";
    snprintf(err, errlen, "cannot write %s: %s", rq->output, strerror(errno));
    goto done;
  }
  curl_easy_setopt(curl, CURLOPT_URL, rq->url);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_msg);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, rq->timeout_ms);
  if (rq->connect_timeout_ms) curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, rq->connect_timeout_ms);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, (long)rq->follow);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, HTTP_MAX_REDIRECTS);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "skudemo/" SKUDEMO_VERSION);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, http_on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, http_on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, rq->max_size);
  if ((code = http_set_body(curl, rq, &mime, err, errlen)) != NULL) goto done;

  CURLcode res = curl_easy_perform(curl);
  long os_errno = 0;
  curl_off_t pretransfer_us = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r->status);
  curl_easy_getinfo(curl, CURLINFO_OS_ERRNO, &os_errno);
  curl_easy_getinfo(curl, CURLINFO_PRETRANSFER_TIME_T, &pretransfer_us);
  if (res != CURLE_OK) {
    if (!curl_msg[0]) snprintf(curl_msg, sizeof curl_msg, "%s", curl_easy_strerror(res));
    code = http_describe(res, rq, r, os_errno, pretransfer_us > 0, curl_msg, err, errlen);
  }
  if (!code && r->fd >= 0) {
    int fd = r->fd;
    r->fd = -1;
    if (fsync(fd) != 0 || close(fd) != 0 || rename(r->tmp, rq->output) != 0) {
      code = "io";
      snprintf(err, errlen, "cannot write %s: %s", rq->output, strerror(errno));
      unlink(r->tmp);
    }
  }

done:
  /* forget every pointer into this call (buffers, lists, the stack);
   * the connection cache survives the reset */
  curl_easy_reset(curl);
  curl_slist_free_all(headers);
  curl_mime_free(mime);
  if (code && r->fd >= 0) {
    close(r->fd);
    unlink(r->tmp);
    r->fd = -1;
  }
  return code;
}

/* Phase three: pushes {status, headers, body?, size} from r. */
static void http_push_result(lua_State *L, http_response *r, int with_body) {
  lua_createtable(L, 0, 4);                           /* res */
  lua_pushinteger(L, r->status);
  lua_setfield(L, -2, "status");
  lua_pushinteger(L, (lua_Integer)r->size);
  lua_setfield(L, -2, "size");
  if (with_body) {
    lua_pushlstring(L, r->body ? r->body : "", r->body_len);
    lua_setfield(L, -2, "body");
  }
  lua_newtable(L);                                    /* res headers */
  char *p = r->head, *end = r->head ? r->head + r->head_len : NULL;
  while (p && p < end) {
    char *eol = memchr(p, '\n', (size_t)(end - p));
    char *line_end = eol ? eol : end;
    char *colon = memchr(p, ':', (size_t)(line_end - p));
    if (colon && colon > p && memcmp(p, "HTTP/", 5) != 0) {
      char *v = colon + 1, *ve = line_end;
      while (v < ve && (*v == ' ' || *v == '\t')) v++;
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
      for (char *c = p; c < colon; c++)
        if (*c >= 'A' && *c <= 'Z') *c = (char)(*c + 32);
      lua_pushlstring(L, p, (size_t)(colon - p));     /* res headers name */
      lua_pushvalue(L, -1);
      lua_rawget(L, -3);                              /* res headers name old */
      if (lua_isstring(L, -1)) {                      /* repeated: join as HTTP allows */
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, v, (size_t)(ve - v));
        lua_concat(L, 3);                             /* res headers name joined */
      } else {
        lua_pop(L, 1);
        lua_pushlstring(L, v, (size_t)(ve - v));      /* res headers name value */
      }
      lua_rawset(L, -3);                              /* res headers */
    }
    p = eol ? eol + 1 : end;
  }
  lua_setfield(L, -2, "headers");                     /* res */
}

/* http.request{method, url, headers, body | json | multipart, timeout,
 * connect_timeout, output, max_size, follow} -> {status, headers, body,
 * size}, or nil, message, code (code: timeout, connect, resolve, tls, url,
 * too_large, io, memory, redirects, network). */
static int http_lua_request(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_newtable(L);                                    /* args anchor */
  lua_newtable(L);                                    /* args anchor lines */
  http_response *r = lua_newuserdatauv(L, sizeof *r, 0);   /* args anchor lines box */
  memset(r, 0, sizeof *r);
  r->fd = -1;
  luaL_setmetatable(L, HTTP_RESPONSE_MT);
  lua_toclose(L, HTTP_BOX);                           /* freed on return or on any error */
  http_request rq;
  memset(&rq, 0, sizeof rq);
  http_check_request(L, &rq);
  lua_settop(L, HTTP_BOX);
  r->max_size = rq.max_size;

  char err[CURL_ERROR_SIZE + PATH_MAX + 64];
  const char *code = http_perform(L, &rq, r, err, sizeof err);
  if (code) {
    http_response_free(r);
    lua_pushnil(L);
    lua_pushstring(L, err);
    lua_pushstring(L, code);
    return 3;
  }
  http_push_result(L, r, rq.output == NULL);
  http_response_free(r);
  return 1;
}

int luaopen_http(lua_State *L) {
  static const luaL_Reg funcs[] = {{"request", http_lua_request}, {NULL, NULL}};
  if (luaL_newmetatable(L, HTTP_RESPONSE_MT)) {       /* mt */
    lua_pushcfunction(L, http_response_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, http_response_close);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  return 1;
}
