/*
 * multipart.h - a multipart/form-data body, already in memory, read part by
 * part. Every slice points into the body; nothing is allocated, so a caller
 * may raise between parts without leaking.
 */
#ifndef SKUDEMO_MULTIPART_H
#define SKUDEMO_MULTIPART_H

#include <stddef.h>

/* One part: name and filename from its Content-Disposition (filename NULL
 * when the part is a plain field), its Content-Type (NULL when absent). */
typedef struct multipart_part {
  const char *name, *filename, *content_type, *data;
  size_t name_len, filename_len, content_type_len, data_len;
} multipart_part;

typedef struct multipart_reader {
  const char *body, *boundary;
  size_t len, boundary_len, pos;
  int done;
} multipart_reader;

/* The boundary parameter of a Content-Type value (quotes removed). Returns
 * its length and sets *boundary, or 0 when there is none or it is invalid. */
size_t multipart_boundary(const char *content_type, const char **boundary);

/* Starts reading body. Returns 0, or -1 when the body does not open with
 * the boundary. */
int multipart_init(multipart_reader *r, const char *body, size_t len, const char *boundary,
                   size_t boundary_len);

/* The next part: 1 with *part filled, 0 after the closing boundary, -1 on a
 * malformed body. */
int multipart_next(multipart_reader *r, multipart_part *part);

#endif
