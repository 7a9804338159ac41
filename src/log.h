/*
 * log.h - one line per event on stderr: "ts=... level=... msg=... k=v ...".
 * Values that are registered secrets, or whose key names a secret, are
 * replaced by [redacted] before the line is written.
 */
#ifndef SKUDEMO_LOG_H
#define SKUDEMO_LOG_H

enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* fields: "key", "value", ... terminated by NULL. */
void log_event(int level, const char *msg, ...);
void log_set_level(int level);
int log_level_from_name(const char *name);   /* -1 if unknown */
/* Remember a secret so it never appears in a line (copies it). */
void log_add_secret(const char *secret);
/* 1 if a field with this key must never be printed in clear. */
int log_key_is_secret(const char *key);

#endif
