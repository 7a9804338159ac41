/* multipart_test.c - the multipart/form-data reader on bodies held in memory. */
#include <string.h>

#include "multipart.h"
#include "unit.h"

/* A slice as a C string in buf (or "(none)"), for CHECK_STR. */
static const char *slice(const char *p, size_t n, char *buf) {
  if (!p) return "(none)";
  memcpy(buf, p, n);
  buf[n] = '\0';
  return buf;
}

int main(void) {
  char a[256], b[256];
  multipart_reader r;
  multipart_part part;
  CASE("boundary from Content-Type") {
    const char *bd;
    size_t n = multipart_boundary("multipart/form-data; boundary=abc123", &bd);
    CHECK_STR(slice(bd, n, a), "abc123");
    n = multipart_boundary("multipart/form-data; charset=utf-8; Boundary=\"q r\"", &bd);
    CHECK_STR(slice(bd, n, a), "q r");
    CHECK(multipart_boundary("multipart/form-data", &bd) == 0);
    CHECK(multipart_boundary("multipart/form-data; boundary=", &bd) == 0);
  }
  CASE("fields and a file, with preamble and empty data") {
    const char body[] =
        "preamble\r\n"
        "--XY\r\n"
        "Content-Disposition: form-data; name=\"title\"\r\n\r\n"
        "a fox\r\n"
        "--XY\r\n"
        "content-disposition: form-data; name=\"empty\"\r\n\r\n"
        "\r\n"
        "--XY  \r\n"
        "Content-Disposition: form-data; name=\"image\"; filename=\"fox.png\"\r\n"
        "Content-Type: image/png\r\n\r\n"
        "\x89PNG\r\n--XYZ not a delimiter\r\n\0tail\r\n"
        "--XY--\r\n"
        "epilogue";
    CHECK(multipart_init(&r, body, sizeof body - 1, "XY", 2) == 0);
    CHECK(multipart_next(&r, &part) == 1);
    CHECK_STR(slice(part.name, part.name_len, a), "title");
    CHECK(part.filename == NULL);
    CHECK_STR(slice(part.data, part.data_len, b), "a fox");
    CHECK(multipart_next(&r, &part) == 1);
    CHECK_STR(slice(part.name, part.name_len, a), "empty");
    CHECK(part.data_len == 0);
    CHECK(multipart_next(&r, &part) == 1);
    CHECK_STR(slice(part.name, part.name_len, a), "image");
    CHECK_STR(slice(part.filename, part.filename_len, a), "fox.png");
    CHECK_STR(slice(part.content_type, part.content_type_len, a), "image/png");
    const char want[] = "\x89PNG\r\n--XYZ not a delimiter\r\n\0tail";
    CHECK(part.data_len == sizeof want - 1 && memcmp(part.data, want, sizeof want - 1) == 0);
    CHECK(multipart_next(&r, &part) == 0);
    CHECK(multipart_next(&r, &part) == 0);
  }
  CASE("an empty filename still marks a file field") {
    const char body[] = "--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"\"\r\n\r\n\r\n--B--";
    CHECK(multipart_init(&r, body, sizeof body - 1, "B", 1) == 0);
    CHECK(multipart_next(&r, &part) == 1);
    CHECK(part.filename != NULL && part.filename_len == 0);
  }
  CASE("malformed bodies") {
    const char *bad[] = {
        "no delimiter at all",
        "--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nnever closed",
        "--B\r\nContent-Type: text/plain\r\n\r\nno name\r\n--B--",
        "--B\r\nContent-Disposition: form-data; name=\"a\"",
        "--Bjunk\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
      int rc = multipart_init(&r, bad[i], strlen(bad[i]), "B", 1);
      if (rc == 0) rc = multipart_next(&r, &part);
      CHECK(rc == -1);
    }
  }
  UNIT_DONE();
}
