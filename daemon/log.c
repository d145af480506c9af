/* log.c — stderr lines with sd-daemon priority prefixes. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static _Atomic int log_level = LOG_INFO;

static const struct {
    int level;
    const char *name;
} level_names[] = {
    {3, "error"}, {4, "warning"}, {5, "notice"}, {6, "info"}, {7, "debug"},
};

int sbertd_log_level_parse(const char *name)
{
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++)
        if (strcmp(name, level_names[i].name) == 0) return level_names[i].level;
    return -1;
}

const char *sbertd_log_level_name(int level)
{
    for (size_t i = 0; i < sizeof level_names / sizeof level_names[0]; i++)
        if (level_names[i].level == level) return level_names[i].name;
    return "unknown";
}

void sbertd_log_set_level(int level)
{
    atomic_store(&log_level, level);
}

int sbertd_log_enabled(int level)
{
    return level <= atomic_load(&log_level);
}

void sbertd_log(int level, const char *fmt, ...)
{
    if (!sbertd_log_enabled(level)) return;
    char line[4096 + 8];
    int n = snprintf(line, sizeof line, "<%d>", level);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2) len = sizeof line - 2;
    for (size_t i = (size_t)n; i < len; i++)
        if (line[i] == '\n') line[i] = ' '; /* one record per line for journald */
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w; /* nowhere left to report a failed write to stderr */
}

void sbertd_log_library(int level, const char *msg, void *user)
{
    static const int map[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    const char *who = user ? (const char *)user : "lib";
    int l = (level >= 0 && level <= 3) ? map[level] : LOG_DEBUG;
    sbertd_log(l, "%s: %s", who, msg);
}
