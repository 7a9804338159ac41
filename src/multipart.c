/*
 * multipart.c - multipart/form-data (RFC 7578) over a body held in memory.
 *
 * The body is: an optional preamble, then "--B" delimiters each followed by
 * CRLF, part headers, an empty line and the part's data; the data ends at
 * the next CRLF "--B", and "--B--" closes the body.
 */
#include <string.h>
#include <strings.h>

#include "multipart.h"

/* Length of the token or quoted string at s (quotes excluded); *start is
 * set to its first byte. Stops at ';', whitespace or the end of a line. */
static size_t multipart_param_value(const char *s, const char *end, const char **start) {
  if (s < end && *s == '"') {
    const char *close = memchr(s + 1, '"', (size_t)(end - s - 1));
    *start = s + 1;
    return close ? (size_t)(close - s - 1) : (size_t)(end - s - 1);
  }
  const char *p = s;
  while (p < end && *p != ';' && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') p++;
  *start = s;
  return (size_t)(p - s);
}

/* Finds parameter `key` (case-insensitive, followed by '=') in a header
 * value's "; key=value" list. Returns the value's length, or 0 when it is
 * absent or empty; *out is set only when it is present. */
static size_t multipart_param(const char *v, const char *end, const char *key, const char **out) {
  size_t klen = strlen(key);
  const char *p = v;
  while (p < end) {
    const char *semi = memchr(p, ';', (size_t)(end - p));
    if (!semi) return 0;
    p = semi + 1;
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    if ((size_t)(end - p) > klen && strncasecmp(p, key, klen) == 0 && p[klen] == '=')
      return multipart_param_value(p + klen + 1, end, out);
  }
  return 0;
}

size_t multipart_boundary(const char *content_type, const char **boundary) {
  const char *end = content_type + strlen(content_type);
  size_t n = multipart_param(content_type, end, "boundary", boundary);
  return n >= 1 && n <= 200 ? n : 0;
}

/* 1 if a delimiter ends at `at`: "--" closes the body, or padding and CRLF
 * open a part. A boundary-like string inside data is not a delimiter. */
static int multipart_delimiter_end(const multipart_reader *r, size_t at) {
  const char *p = r->body + at, *end = r->body + r->len;
  if (end - p >= 2 && p[0] == '-' && p[1] == '-') return 1;
  while (p < end && (*p == ' ' || *p == '\t')) p++;
  return end - p >= 2 && p[0] == '\r' && p[1] == '\n';
}

/* Position just past the next "--B" delimiter at or after from (the first
 * one may open the body without a CRLF), or 0 when there is none. */
static size_t multipart_find(const multipart_reader *r, size_t from, int first) {
  const char *b = r->boundary;
  size_t bl = r->boundary_len;
  if (first && r->len >= bl + 2 && memcmp(r->body, "--", 2) == 0 &&
      memcmp(r->body + 2, b, bl) == 0 && multipart_delimiter_end(r, bl + 2))
    return bl + 2;
  for (size_t at = from; at + bl + 4 <= r->len;) {
    const char *hit = memmem(r->body + at, r->len - at, "\r\n--", 4);
    if (!hit) return 0;
    size_t i = (size_t)(hit - r->body);
    if (i + 4 + bl <= r->len && memcmp(hit + 4, b, bl) == 0 && multipart_delimiter_end(r, i + 4 + bl))
      return i + 4 + bl;
    at = i + 1;
  }
  return 0;
}

int multipart_init(multipart_reader *r, const char *body, size_t len, const char *boundary,
                   size_t boundary_len) {
  *r = (multipart_reader){.body = body, .boundary = boundary, .len = len,
                          .boundary_len = boundary_len};
  r->pos = multipart_find(r, 0, 1);
  return r->pos ? 0 : -1;
}

/* Reads the headers of the part that starts at r->pos into part; returns
 * the offset of its data, or 0 when they are malformed. */
static size_t multipart_headers(const multipart_reader *r, multipart_part *part) {
  const char *p = r->body + r->pos, *end = r->body + r->len;
  const char *stop = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
  if (!stop) return 0;
  stop += 2;                                            /* keep the last header's CRLF */
  while (p < stop) {
    const char *eol = memmem(p, (size_t)(stop - p), "\r\n", 2);
    const char *colon = memchr(p, ':', (size_t)(eol - p));
    if (colon) {
      size_t nlen = (size_t)(colon - p);
      const char *v = colon + 1;
      while (v < eol && (*v == ' ' || *v == '\t')) v++;
      if (nlen == 19 && strncasecmp(p, "content-disposition", 19) == 0) {
        part->name_len = multipart_param(v, eol, "name", &part->name);
        part->filename_len = multipart_param(v, eol, "filename", &part->filename);
      } else if (nlen == 12 && strncasecmp(p, "content-type", 12) == 0) {
        part->content_type = v;
        part->content_type_len = (size_t)(eol - v);
      }
    }
    p = eol + 2;
  }
  return part->name ? (size_t)(stop + 2 - r->body) : 0;
}

int multipart_next(multipart_reader *r, multipart_part *part) {
  if (r->done) return 0;
  *part = (multipart_part){0};
  const char *p = r->body + r->pos;
  size_t left = r->len - r->pos;
  if (left >= 2 && memcmp(p, "--", 2) == 0) {            /* closing delimiter */
    r->done = 1;
    return 0;
  }
  while (left > 0 && (*p == ' ' || *p == '\t')) p++, left--;
  if (left < 2 || memcmp(p, "\r\n", 2) != 0) return -1;
  r->pos = (size_t)(p + 2 - r->body);
  size_t data = multipart_headers(r, part);
  if (!data) return -1;
  size_t next = multipart_find(r, data, 0);              /* the data may be empty */
  if (!next) return -1;
  part->data = r->body + data;
  part->data_len = next - r->boundary_len - 4 - data;
  r->pos = next;
  return 1;
}
