/*
 * unit.h - C unit tests print one "ok"/"not ok" line per check group, like
 * the Lua harness, so tests/run counts both the same way.
 */
#ifndef SKUDEMO_UNIT_H
#define SKUDEMO_UNIT_H
#include <stdio.h>
#include <string.h>

static int unit_failed_total, unit_case_failed;
static const char *unit_case;

#define CASE(name) for (unit_case = (name), unit_case_failed = 0; unit_case; \
                        unit_case_end(), unit_case = NULL)
#define CHECK(cond) do { if (!(cond)) { unit_case_failed++; \
    fprintf(stdout, "# %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_STR(a, b) do { const char *a_ = (a), *b_ = (b); \
    if (!a_ || !b_ || strcmp(a_, b_) != 0) { unit_case_failed++; \
    fprintf(stdout, "# %s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__, a_ ? a_ : "(null)", \
            b_ ? b_ : "(null)"); } } while (0)

static inline void unit_case_end(void) {
  if (unit_case_failed) unit_failed_total++, printf("not ok - %s\n", unit_case);
  else printf("ok - %s\n", unit_case);
  fflush(stdout);
}

#define UNIT_DONE() return unit_failed_total ? 1 : 0
#endif
