/*
 * crypto.c - the Lua `crypto` binding (also `codec`): base64, SHA-256,
 * HMAC-SHA-256, constant-time comparison and random values, on OpenSSL's
 * libcrypto.
 */
#include <limits.h>

#include <lauxlib.h>
#include <lua.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "host.h"

#define CRYPTO_MAX_RANDOM (1 << 20)   /* one call asks for at most 1 MiB */

static const char crypto_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Pushes n bytes as lowercase hex. */
static void crypto_push_hex(lua_State *L, const unsigned char *p, size_t n) {
  static const char hex[] = "0123456789abcdef";
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, n * 2);
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hex[p[i] >> 4];
    out[2 * i + 1] = hex[p[i] & 15];
  }
  luaL_pushresultsize(&b, n * 2);                     /* hex */
}

/* crypto.base64_encode(s) -> standard alphabet, with padding. */
static int crypto_lua_base64_encode(lua_State *L) {
  size_t n;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  size_t outlen = (n + 2) / 3 * 4;
  luaL_Buffer b;
  char *o = luaL_buffinitsize(L, &b, outlen);
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8 | s[i + 2];
    *o++ = crypto_b64[v >> 18], *o++ = crypto_b64[(v >> 12) & 63];
    *o++ = crypto_b64[(v >> 6) & 63], *o++ = crypto_b64[v & 63];
  }
  if (n - i == 1) {
    unsigned v = (unsigned)s[i] << 16;
    *o++ = crypto_b64[v >> 18], *o++ = crypto_b64[(v >> 12) & 63], *o++ = '=', *o++ = '=';
  } else if (n - i == 2) {
    unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8;
    *o++ = crypto_b64[v >> 18], *o++ = crypto_b64[(v >> 12) & 63];
    *o++ = crypto_b64[(v >> 6) & 63], *o++ = '=';
  }
  luaL_pushresultsize(&b, outlen);                    /* s b64 */
  return 1;
}

/* The value of a base64 character, -1 for whitespace, -2 for anything else. */
static int crypto_b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') return -1;
  return -2;
}

/* crypto.base64_decode(s) -> bytes, or nil, message. Standard alphabet;
 * padding optional; ASCII whitespace anywhere is ignored. */
static int crypto_lua_base64_decode(lua_State *L) {
  size_t n;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, n / 4 * 3 + 3);
  size_t len = 0, digits = 0, pad = 0;
  unsigned acc = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '=') {
      pad++;
      continue;
    }
    int v = crypto_b64_value(s[i]);
    if (v == -1) continue;
    if (v == -2 || pad) {
      lua_pushnil(L);
      lua_pushstring(L, pad ? "invalid base64: data after padding" : "invalid base64: bad character");
      return 2;
    }
    acc = acc << 6 | (unsigned)v;
    if (++digits % 4 == 0) {
      out[len++] = (char)(acc >> 16), out[len++] = (char)(acc >> 8), out[len++] = (char)acc;
      acc = 0;
    }
  }
  size_t tail = digits % 4;
  if (tail == 1 || pad > 2 || (pad && tail + pad != 4)) {
    lua_pushnil(L);
    lua_pushstring(L, "invalid base64: bad length");
    return 2;
  }
  if (tail == 2) out[len++] = (char)(acc >> 4);
  else if (tail == 3) out[len++] = (char)(acc >> 10), out[len++] = (char)(acc >> 2);
  luaL_pushresultsize(&b, len);                       /* s bytes */
  return 1;
}

/* crypto.sha256(s) -> 64 lowercase hex digits. */
static int crypto_lua_sha256(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (!EVP_Digest(s, n, md, &mdlen, EVP_sha256(), NULL)) return luaL_error(L, "sha256 failed");
  crypto_push_hex(L, md, mdlen);
  return 1;
}

/* crypto.hmac_sha256(key, msg) -> 64 lowercase hex digits. */
static int crypto_lua_hmac_sha256(lua_State *L) {
  size_t klen, mlen;
  const char *key = luaL_checklstring(L, 1, &klen);
  const char *msg = luaL_checklstring(L, 2, &mlen);
  luaL_argcheck(L, klen <= INT_MAX, 1, "key too long");
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (!HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, mlen, md, &mdlen))
    return luaL_error(L, "hmac_sha256 failed");
  crypto_push_hex(L, md, mdlen);
  return 1;
}

/* crypto.equal(a, b) -> boolean. The time taken depends only on #b (the
 * value an attacker controls), never on where the bytes first differ or on
 * whether the lengths match. */
static int crypto_lua_equal(lua_State *L) {
  size_t la, lb;
  const unsigned char *a = (const unsigned char *)luaL_checklstring(L, 1, &la);
  const unsigned char *b = (const unsigned char *)luaL_checklstring(L, 2, &lb);
  volatile unsigned char diff = (unsigned char)(la != lb);
  for (size_t i = 0; i < lb; i++) {
    unsigned char ca = la ? a[i % la] : 0;
    diff |= (unsigned char)(ca ^ b[i]);
  }
  lua_pushboolean(L, diff == 0);
  return 1;
}

/* Reads the byte count argument of random_bytes and random_hex. */
static size_t crypto_check_count(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 0 && n <= CRYPTO_MAX_RANDOM, 1, "expected 0 to 1048576 bytes");
  return (size_t)n;
}

/* The nil, message of a failed random generator. */
static int crypto_random_failed(lua_State *L) {
  lua_pushnil(L);
  lua_pushliteral(L, "random generator failed");
  return 2;
}

/* crypto.random_bytes(n) -> n bytes from OpenSSL's CSPRNG, or nil, message. */
static int crypto_lua_random_bytes(lua_State *L) {
  size_t n = crypto_check_count(L);
  luaL_Buffer b;
  unsigned char *out = (unsigned char *)luaL_buffinitsize(L, &b, n);
  if (n && RAND_bytes(out, (int)n) != 1) return crypto_random_failed(L);
  luaL_pushresultsize(&b, n);                         /* n bytes */
  return 1;
}

/* crypto.random_hex(n) -> n random bytes as 2n hex digits, or nil, message. */
static int crypto_lua_random_hex(lua_State *L) {
  size_t n = crypto_check_count(L);
  unsigned char *raw = lua_newuserdatauv(L, n ? n : 1, 0);   /* n raw */
  if (n && RAND_bytes(raw, (int)n) != 1) return crypto_random_failed(L);
  crypto_push_hex(L, raw, n);                         /* n raw hex */
  return 1;
}

/* crypto.uuid() -> a random (version 4) UUID in lowercase, or nil, message. */
static int crypto_lua_uuid(lua_State *L) {
  unsigned char u[16];
  if (RAND_bytes(u, sizeof u) != 1) return crypto_random_failed(L);
  u[6] = (unsigned char)((u[6] & 0x0F) | 0x40);       /* version 4 */
  u[8] = (unsigned char)((u[8] & 0x3F) | 0x80);       /* RFC 4122 variant */
  static const char hex[] = "0123456789abcdef";
  char out[36];
  size_t o = 0;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
    out[o++] = hex[u[i] >> 4];
    out[o++] = hex[u[i] & 15];
  }
  lua_pushlstring(L, out, sizeof out);
  return 1;
}

int luaopen_crypto(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"base64_encode", crypto_lua_base64_encode}, {"base64_decode", crypto_lua_base64_decode},
      {"sha256", crypto_lua_sha256},               {"hmac_sha256", crypto_lua_hmac_sha256},
      {"equal", crypto_lua_equal},                 {"random_bytes", crypto_lua_random_bytes},
      {"random_hex", crypto_lua_random_hex},       {"uuid", crypto_lua_uuid},
      {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
