/*
 * config.h - settings come from the environment, then from a .env file
 * (a variable already in the environment wins). The file is read once at
 * start, before any thread exists, since setenv is not thread-safe.
 */
#ifndef SKUDEMO_CONFIG_H
#define SKUDEMO_CONFIG_H

#include <stddef.h>

/* Parses one dotenv line. Returns 1 with key and value filled, 0 for a
 * blank or comment line, -1 on a syntax error (reason in err). */
int config_parse_line(const char *line, char *key, size_t keylen, char *value, size_t vallen,
                      const char **err);

/* Loads a .env file into the environment without overriding what is set.
 * A missing file is fine (returns 0). Returns the number of variables set,
 * or -1 with "path:line: reason" in err. */
int config_load_file(const char *path, char *err, size_t errlen);

/* The .env path in use, set at start. */
void config_set_env_file(const char *path);
const char *config_env_file(void);

/* getenv with a default; "~/" at the start of a path expands to $HOME. */
const char *config_get(const char *name, const char *def);
long config_int(const char *name, long def);
/* The setting (or def) with "~/" expanded, into out: 1, 0 when unset,
 * -1 when it does not fit. */
int config_path(const char *name, const char *def, char *out, size_t len);

/* After this, config.set refuses: called by whatever starts a thread that
 * may read the environment (server, pool). */
void config_freeze(void);

#endif
