/* config_test.c - the dotenv line parser and file loader. */
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "unit.h"

static int parse(const char *line, char *k, char *v) {
  const char *err = NULL;
  return config_parse_line(line, k, 256, v, 1024, &err);
}

int main(void) {
  char k[256], v[1024];
  CASE("dotenv: plain, export, quotes, comments") {
    CHECK(parse("A=1\n", k, v) == 1); CHECK_STR(k, "A"); CHECK_STR(v, "1");
    CHECK(parse("export B = two words  # note\n", k, v) == 1); CHECK_STR(k, "B"); CHECK_STR(v, "two words");
    CHECK(parse("C=\"quoted # not a comment\\n\"\n", k, v) == 1); CHECK_STR(v, "quoted # not a comment\n");
    CHECK(parse("D='single $HOME \\n'", k, v) == 1); CHECK_STR(v, "single $HOME \\n");
    CHECK(parse("E=", k, v) == 1); CHECK_STR(v, "");
    CHECK(parse("URL=https://x.example/a#frag", k, v) == 1); CHECK_STR(v, "https://x.example/a#frag");
    CHECK(parse("   # comment", k, v) == 0);
    CHECK(parse("", k, v) == 0);
  }
  CASE("dotenv: syntax errors are reported") {
    CHECK(parse("NOEQUALS", k, v) == -1);
    CHECK(parse("1BAD=x", k, v) == -1);
    CHECK(parse("Q=\"open", k, v) == -1);
    CHECK(parse("Q=\"a\" trailing", k, v) == -1);
  }
  CASE("dotenv: the environment wins, ~ expands in paths") {
    char path[] = "/tmp/skudemo-config-XXXXXX";
    int fd = mkstemp(path);
    const char *text = "UNIT_ENV_A=from-file\nUNIT_ENV_B=from-file\nUNIT_ENV_P=~/x/y\n";
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    setenv("UNIT_ENV_A", "from-env", 1);
    char err[256];
    CHECK(config_load_file(path, err, sizeof err) == 2);
    CHECK_STR(getenv("UNIT_ENV_A"), "from-env");
    CHECK_STR(getenv("UNIT_ENV_B"), "from-file");
    setenv("HOME", "/home/seller", 1);
    char p[64];
    CHECK(config_path("UNIT_ENV_P", NULL, p, sizeof p) == 1);
    CHECK_STR(p, "/home/seller/x/y");
    CHECK(config_path("UNIT_ENV_UNSET", NULL, p, sizeof p) == 0);
    CHECK(config_path("UNIT_ENV_P", NULL, p, 8) == -1);
    CHECK(config_load_file("/nonexistent/.env", err, sizeof err) == 0);
    unlink(path);
  }
  CASE("dotenv: a bad line names file and line") {
    char path[] = "/tmp/skudemo-config-XXXXXX";
    int fd = mkstemp(path);
    const char *text = "OK=1\nbroken line\n";
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    char err[256];
    CHECK(config_load_file(path, err, sizeof err) == -1);
    CHECK(strstr(err, ":2:") != NULL);
    unlink(path);
  }
  UNIT_DONE();
}
