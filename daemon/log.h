/*
 * log.h — sbertd's log: lines on stderr with sd-daemon(3) "<N>" priority prefixes, which journald
 * turns into priorities (and a terminal shows as is).
 *
 * Thread safety: every function may be called from any thread; one line is written with one
 * write(2), so lines from different threads never interleave. The level may be changed at any
 * time (SIGHUP reload).
 */
#ifndef SBERTD_LOG_H
#define SBERTD_LOG_H

#include <syslog.h>

/* Levels are syslog(3)'s, which are the N of sd-daemon(3)'s "<N>" prefixes: LOG_ERR (3),
 * LOG_WARNING (4), LOG_NOTICE (5), LOG_INFO (6), LOG_DEBUG (7). */

/* Parses "error", "warning", "notice", "info", "debug"; returns the level or -1. */
int sbertd_log_level_parse(const char *name);

/* Returns the name of a level ("info"). */
const char *sbertd_log_level_name(int level);

/* Lines of a priority above (less urgent than) level are dropped. Default LOG_INFO. */
void sbertd_log_set_level(int level);

/* Returns 1 when a line of this level would be written. */
int sbertd_log_enabled(int level);

/* Writes "<level>text\n"; text longer than 4 KiB is cut. */
void sbertd_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Log callbacks for the encoder and the index (their levels 0..3 = error, warn, info, debug). */
void sbertd_log_library(int level, const char *msg, void *user);

#endif
