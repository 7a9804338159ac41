/*
 * json.c - the Lua `json` binding: an encoder and a decoder in C.
 *
 * Arrays carry one metatable per state (registry "json.array"), set by
 * json.array() and on every decoded array, so an empty array survives a
 * decode/encode round trip. json.null is the NULL light userdata, the same
 * value as cjson.null, so the two modules interoperate.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "host.h"

#define JSON_MAX_DEPTH 64
#define JSON_ARRAY_MT "json.array"
#define JSON_BUF_MT "json.buffer"
#define JSON_BUF_KEEP (1u << 20)  /* larger encode buffers are not kept */

/* The encoder's output, grown with the state's allocator so it counts
 * against the state's memory limit. One per state, kept between calls as an
 * upvalue of encode; its __gc frees the bytes if a call raised. */
typedef struct json_buf {
  char *p;
  size_t len, cap;
} json_buf;

/* Makes room for n more bytes or raises. */
static char *json_buf_reserve(lua_State *L, json_buf *b, size_t n) {
  if (b->cap - b->len >= n) return b->p + b->len;
  size_t cap = b->cap ? b->cap : 256;
  while (cap - b->len < n) {
    if (cap > ((size_t)-1) / 2) luaL_error(L, "not enough memory");
    cap *= 2;
  }
  void *ud;
  lua_Alloc alloc = lua_getallocf(L, &ud);
  char *p = alloc(ud, b->p, b->p ? b->cap : 0, cap);
  if (!p) luaL_error(L, "not enough memory");
  b->p = p;
  b->cap = cap;
  return p + b->len;
}

/* Appends n bytes, or raises when memory runs out. */
static void json_buf_add(lua_State *L, json_buf *b, const char *s, size_t n) {
  memcpy(json_buf_reserve(L, b, n), s, n);
  b->len += n;
}

/* Appends one byte, or raises when memory runs out. */
static void json_buf_addc(lua_State *L, json_buf *b, char c) {
  *json_buf_reserve(L, b, 1) = c;
  b->len++;
}

/* Frees the bytes; serves __gc, and shrinks an oversized buffer after use. */
static void json_buf_release(lua_State *L, json_buf *b) {
  if (!b->p) return;
  void *ud;
  lua_Alloc alloc = lua_getallocf(L, &ud);
  alloc(ud, b->p, b->cap, 0);
  b->p = NULL;
  b->len = b->cap = 0;
}

/* __gc of the state's encode buffer. */
static int json_buf_gc(lua_State *L) {
  json_buf_release(L, luaL_checkudata(L, 1, JSON_BUF_MT));
  return 0;
}

/* Pushes the array metatable of this state. */
static void json_push_array_mt(lua_State *L) {
  luaL_getmetatable(L, JSON_ARRAY_MT);                /* mt */
}

/* 1 if the table at idx carries the array mark. */
static int json_is_marked(lua_State *L, int idx) {
  if (!lua_getmetatable(L, idx)) return 0;            /* mt */
  json_push_array_mt(L);                              /* mt arraymt */
  int marked = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return marked;
}

/* Appends s quoted: '"', '\\' and control bytes escaped, other bytes
 * (UTF-8 included) as they are. */
static void json_encode_string(lua_State *L, json_buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  /* worst case every byte becomes \u00XX */
  char *out = json_buf_reserve(L, b, n * 6 + 2);
  char *o = out;
  *o++ = '"';
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\') {
      *o++ = (char)c;
      continue;
    }
    *o++ = '\\';
    switch (c) {
      case '"': *o++ = '"'; break;
      case '\\': *o++ = '\\'; break;
      case '\n': *o++ = 'n'; break;
      case '\r': *o++ = 'r'; break;
      case '\t': *o++ = 't'; break;
      case '\b': *o++ = 'b'; break;
      case '\f': *o++ = 'f'; break;
      default:
        *o++ = 'u', *o++ = '0', *o++ = '0';
        *o++ = hex[c >> 4], *o++ = hex[c & 15];
    }
  }
  *o++ = '"';
  b->len += (size_t)(o - out);
}

/* Shortest of %.15g, %.16g, %.17g that reads back as the same double. */
static void json_encode_float(lua_State *L, json_buf *b, double d) {
  if (isnan(d) || isinf(d)) luaL_error(L, "cannot encode %s in JSON", isnan(d) ? "NaN" : "infinity");
  char tmp[40];
  int n = 0;
  for (int prec = 15; prec <= 17; prec++) {
    n = snprintf(tmp, sizeof tmp, "%.*g", prec, d);
    if (strtod(tmp, NULL) == d) break;
  }
  json_buf_add(L, b, tmp, (size_t)n);
}

static void json_encode_value(lua_State *L, json_buf *b, int idx, int depth);

/* 1 if the unmarked table at idx is a non-empty sequence 1..n and nothing else. */
static int json_is_sequence(lua_State *L, int idx) {
  lua_Integer count = 0, max = 0;
  lua_pushnil(L);                                     /* first key */
  while (lua_next(L, idx)) {                          /* k v */
    if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1) {
      lua_pop(L, 2);                                  /* stop early: an object */
      return 0;
    }
    lua_Integer k = lua_tointeger(L, -2);
    if (k > max) max = k;
    count++;
    lua_pop(L, 1);                                    /* keep k for lua_next */
  }
  return count > 0 && max == count;
}

/* Appends t[1..#t] of the table at idx as an array (holes as null). */
static void json_encode_array(lua_State *L, json_buf *b, int idx, int depth) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  json_buf_addc(L, b, '[');
  for (lua_Integer i = 1; i <= n; i++) {
    if (i > 1) json_buf_addc(L, b, ',');
    lua_rawgeti(L, idx, i);                           /* element */
    json_encode_value(L, b, lua_gettop(L), depth);
    lua_pop(L, 1);
  }
  json_buf_addc(L, b, ']');
}

/* Appends the table at idx as an object, in pairs order; raises on keys
 * that are neither strings nor integers. */
static void json_encode_object(lua_State *L, json_buf *b, int idx, int depth) {
  int first = 1;
  json_buf_addc(L, b, '{');
  lua_pushnil(L);                                     /* first key */
  while (lua_next(L, idx)) {                          /* k v */
    if (!first) json_buf_addc(L, b, ',');
    first = 0;
    int kt = lua_type(L, -2);
    if (kt == LUA_TSTRING) {
      size_t n;
      const char *k = lua_tolstring(L, -2, &n);
      json_encode_string(L, b, k, n);
    } else if (kt == LUA_TNUMBER && lua_isinteger(L, -2)) {
      char tmp[32];
      int n = snprintf(tmp, sizeof tmp, "\"" LUA_INTEGER_FMT "\"", lua_tointeger(L, -2));
      json_buf_add(L, b, tmp, (size_t)n);
    } else {
      luaL_error(L, "cannot encode a table key of type %s", luaL_typename(L, -2));
    }
    json_buf_addc(L, b, ':');
    json_encode_value(L, b, lua_gettop(L), depth);
    lua_pop(L, 1);                                    /* keep k for lua_next */
  }
  json_buf_addc(L, b, '}');
}

/* Appends the value at idx; depth counts the tables being encoded. */
static void json_encode_value(lua_State *L, json_buf *b, int idx, int depth) {
  switch (lua_type(L, idx)) {
    case LUA_TNIL: json_buf_add(L, b, "null", 4); break;
    case LUA_TBOOLEAN:
      if (lua_toboolean(L, idx)) json_buf_add(L, b, "true", 4);
      else json_buf_add(L, b, "false", 5);
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        char tmp[32];
        int n = snprintf(tmp, sizeof tmp, LUA_INTEGER_FMT, lua_tointeger(L, idx));
        json_buf_add(L, b, tmp, (size_t)n);
      } else {
        json_encode_float(L, b, (double)lua_tonumber(L, idx));
      }
      break;
    case LUA_TSTRING: {
      size_t n;
      const char *s = lua_tolstring(L, idx, &n);
      json_encode_string(L, b, s, n);
      break;
    }
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) != NULL) luaL_error(L, "cannot encode a light userdata");
      json_buf_add(L, b, "null", 4);
      break;
    case LUA_TTABLE:
      if (depth >= JSON_MAX_DEPTH) luaL_error(L, "nesting too deep");
      luaL_checkstack(L, 4, "nesting too deep");
      if (json_is_marked(L, idx) || json_is_sequence(L, idx)) json_encode_array(L, b, idx, depth + 1);
      else json_encode_object(L, b, idx, depth + 1);
      break;
    default: luaL_error(L, "cannot encode a %s in JSON", luaL_typename(L, idx));
  }
}

/* json.encode(v) -> string; raises on values JSON cannot hold. */
static int json_lua_encode(lua_State *L) {
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  json_buf *b = lua_touserdata(L, lua_upvalueindex(1));
  b->len = 0;
  json_encode_value(L, b, 1, 0);
  lua_pushlstring(L, b->p, b->len);                   /* v json */
  if (b->cap > JSON_BUF_KEEP) json_buf_release(L, b);
  return 1;
}

/* The decoder: recursive descent over a NUL-terminated Lua string. Errors
 * are returned (not raised) so decode can answer nil, message. Unescaped
 * strings go through scratch, a userdata as long as the input, which is
 * enough because no escape decodes to more bytes than it takes. */
typedef struct json_dec {
  lua_State *L;
  const char *start, *p, *end;
  char *scratch;
  const char *err;
  const char *err_at;
} json_dec;

/* Records the first error and where it happened; returns -1. */
static int json_fail(json_dec *d, const char *msg, const char *at) {
  if (!d->err) d->err = msg, d->err_at = at;
  return -1;
}

/* Skips JSON whitespace (space, tab, CR, LF). */
static void json_skip_space(json_dec *d) {
  while (d->p < d->end && (*d->p == ' ' || *d->p == '\t' || *d->p == '\n' || *d->p == '\r')) d->p++;
}

/* Reads four hex digits into *out; -1 when they are not. */
static int json_hex4(const char *s, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = s[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return -1;
  }
  *out = v;
  return 0;
}

/* Writes code point cp as UTF-8; returns the byte count. */
static size_t json_utf8(char *o, unsigned cp) {
  if (cp < 0x80) return o[0] = (char)cp, 1;
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6)), o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12)), o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18)), o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Reads a string at d->p (on the opening quote) and pushes it. */
static int json_decode_string(json_dec *d) {
  const char *s = ++d->p;
  while (d->p < d->end && *d->p != '"' && *d->p != '\\' && (unsigned char)*d->p >= 0x20) d->p++;
  if (d->p < d->end && *d->p == '"') {                /* no escapes: the common case */
    lua_pushlstring(d->L, s, (size_t)(d->p - s));     /* str */
    d->p++;
    return 0;
  }
  char *o = d->scratch;
  memcpy(o, s, (size_t)(d->p - s));
  o += d->p - s;
  while (d->p < d->end && *d->p != '"') {
    unsigned char c = (unsigned char)*d->p;
    if (c < 0x20) return json_fail(d, "control character in string", d->p);
    if (c != '\\') {
      *o++ = *d->p++;
      continue;
    }
    if (d->end - d->p < 2) return json_fail(d, "unterminated string", s - 1);
    const char *esc = d->p;
    char e = d->p[1];
    d->p += 2;
    switch (e) {
      case '"': *o++ = '"'; break;
      case '\\': *o++ = '\\'; break;
      case '/': *o++ = '/'; break;
      case 'b': *o++ = '\b'; break;
      case 'f': *o++ = '\f'; break;
      case 'n': *o++ = '\n'; break;
      case 'r': *o++ = '\r'; break;
      case 't': *o++ = '\t'; break;
      case 'u': {
        unsigned cp, lo;
        if (d->end - d->p < 4 || json_hex4(d->p, &cp) < 0)
          return json_fail(d, "invalid unicode escape", esc);
        d->p += 4;
        if (cp >= 0xDC00 && cp <= 0xDFFF) return json_fail(d, "invalid unicode escape", esc);
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          if (d->end - d->p < 6 || d->p[0] != '\\' || d->p[1] != 'u' || json_hex4(d->p + 2, &lo) < 0 ||
              lo < 0xDC00 || lo > 0xDFFF)
            return json_fail(d, "invalid unicode escape", esc);
          d->p += 6;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        o += json_utf8(o, cp);
        break;
      }
      default: return json_fail(d, "invalid escape in string", esc);
    }
  }
  if (d->p >= d->end) return json_fail(d, "unterminated string", s - 1);
  d->p++;
  lua_pushlstring(d->L, d->scratch, (size_t)(o - d->scratch));  /* str */
  return 0;
}

/* Reads a number with JSON's grammar; integers that fit stay integers. */
static int json_decode_number(json_dec *d) {
  const char *s = d->p, *q = d->p;
  int is_float = 0;
  if (*q == '-') q++;
  if (*q == '0') q++;
  else if (*q >= '1' && *q <= '9') while (*q >= '0' && *q <= '9') q++;
  else return json_fail(d, "invalid number", s);
  if (*q == '.') {
    is_float = 1, q++;
    if (!(*q >= '0' && *q <= '9')) return json_fail(d, "invalid number", s);
    while (*q >= '0' && *q <= '9') q++;
  }
  if (*q == 'e' || *q == 'E') {
    is_float = 1, q++;
    if (*q == '+' || *q == '-') q++;
    if (!(*q >= '0' && *q <= '9')) return json_fail(d, "invalid number", s);
    while (*q >= '0' && *q <= '9') q++;
  }
  if (!is_float) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == q && errno == 0) {
      lua_pushinteger(d->L, (lua_Integer)v);          /* n */
      d->p = q;
      return 0;
    }
  }
  char *end;
  double v = strtod(s, &end);
  if (end != q) return json_fail(d, "invalid number", s);
  lua_pushnumber(d->L, (lua_Number)v);                /* n */
  d->p = q;
  return 0;
}

static int json_decode_value(json_dec *d, int depth);

/* Reads an array at d->p (on '[') and pushes it, marked as an array. */
static int json_decode_array(json_dec *d, int depth) {
  lua_State *L = d->L;
  lua_newtable(L);                                    /* arr */
  json_push_array_mt(L);
  lua_setmetatable(L, -2);
  d->p++;
  json_skip_space(d);
  if (d->p < d->end && *d->p == ']') return d->p++, 0;
  for (lua_Integer i = 1;; i++) {
    if (json_decode_value(d, depth) < 0) return -1;   /* arr v */
    lua_rawseti(L, -2, i);                            /* arr */
    json_skip_space(d);
    if (d->p < d->end && *d->p == ',') {
      d->p++;
      continue;
    }
    if (d->p < d->end && *d->p == ']') return d->p++, 0;
    return json_fail(d, "expected ',' or ']'", d->p);
  }
}

/* Reads an object at d->p (on '{') and pushes it; a repeated key keeps
 * its last value. */
static int json_decode_object(json_dec *d, int depth) {
  lua_State *L = d->L;
  lua_newtable(L);                                    /* obj */
  d->p++;
  json_skip_space(d);
  if (d->p < d->end && *d->p == '}') return d->p++, 0;
  for (;;) {
    json_skip_space(d);
    if (d->p >= d->end || *d->p != '"') return json_fail(d, "expected a string key", d->p);
    if (json_decode_string(d) < 0) return -1;         /* obj k */
    json_skip_space(d);
    if (d->p >= d->end || *d->p != ':') return json_fail(d, "expected ':'", d->p);
    d->p++;
    if (json_decode_value(d, depth) < 0) return -1;   /* obj k v */
    lua_rawset(L, -3);                                /* obj */
    json_skip_space(d);
    if (d->p < d->end && *d->p == ',') {
      d->p++;
      continue;
    }
    if (d->p < d->end && *d->p == '}') return d->p++, 0;
    return json_fail(d, "expected ',' or '}'", d->p);
  }
}

/* Pushes the value at d->p, or returns -1 with d->err set. */
static int json_decode_value(json_dec *d, int depth) {
  json_skip_space(d);
  if (d->p >= d->end) return json_fail(d, "unexpected end of input", d->p);
  switch (*d->p) {
    case '{':
    case '[':
      if (depth >= JSON_MAX_DEPTH) return json_fail(d, "nesting too deep", d->p);
      if (!lua_checkstack(d->L, 4)) return json_fail(d, "nesting too deep", d->p);
      return *d->p == '{' ? json_decode_object(d, depth + 1) : json_decode_array(d, depth + 1);
    case '"': return json_decode_string(d);
    case 't':
      if (d->end - d->p >= 4 && memcmp(d->p, "true", 4) == 0)
        return d->p += 4, lua_pushboolean(d->L, 1), 0;
      break;
    case 'f':
      if (d->end - d->p >= 5 && memcmp(d->p, "false", 5) == 0)
        return d->p += 5, lua_pushboolean(d->L, 0), 0;
      break;
    case 'n':
      if (d->end - d->p >= 4 && memcmp(d->p, "null", 4) == 0)
        return d->p += 4, lua_pushlightuserdata(d->L, NULL), 0;
      break;
    default:
      if (*d->p == '-' || (*d->p >= '0' && *d->p <= '9')) return json_decode_number(d);
  }
  return json_fail(d, "unexpected character", d->p);
}

/* json.decode(s) -> value, or nil, message (with the byte offset). */
static int json_lua_decode(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  lua_settop(L, 1);
  json_dec d = {L, s, s, s + n, lua_newuserdatauv(L, n + 1, 0), NULL, NULL};  /* s scratch */
  if (json_decode_value(&d, 0) == 0) {
    json_skip_space(&d);
    if (d.p == d.end) return 1;
    json_fail(&d, "unexpected text after the value", d.p);
  }
  lua_pushnil(L);
  lua_pushfstring(L, "invalid JSON: %s at byte %d", d.err, (int)(d.err_at - d.start) + 1);
  return 2;
}

/* json.array([t]) -> t marked as an array (a new table when omitted). */
static int json_lua_array(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);                                  /* t */
  } else {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    int has_mt = lua_getmetatable(L, 1);              /* t [mt] */
    lua_settop(L, 1);
    luaL_argcheck(L, !has_mt || json_is_marked(L, 1), 1, "table already has a metatable");
  }
  json_push_array_mt(L);                              /* t mt */
  lua_setmetatable(L, 1);                             /* t */
  return 1;
}

/* json.is_array(v) -> true when v is a table carrying the array mark. */
static int json_lua_is_array(lua_State *L) {
  lua_pushboolean(L, lua_istable(L, 1) && json_is_marked(L, 1));
  return 1;
}

int luaopen_json(lua_State *L) {
  static const luaL_Reg funcs[] = {{"decode", json_lua_decode}, {"array", json_lua_array},
                                   {"is_array", json_lua_is_array}, {NULL, NULL}};
  luaL_newmetatable(L, JSON_ARRAY_MT);                /* arraymt */
  lua_pop(L, 1);
  luaL_newlib(L, funcs);                              /* json */
  json_buf *b = lua_newuserdatauv(L, sizeof *b, 0);   /* json buf */
  memset(b, 0, sizeof *b);
  if (luaL_newmetatable(L, JSON_BUF_MT)) {            /* json buf bufmt */
    lua_pushcfunction(L, json_buf_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);                            /* json buf */
  lua_pushcclosure(L, json_lua_encode, 1);            /* json encode */
  lua_setfield(L, -2, "encode");
  lua_pushlightuserdata(L, NULL);                     /* json null */
  lua_setfield(L, -2, "null");
  return 1;
}
