/* sd.c — the sd_notify(3) messages and the checked watchdog thread behind sd.h. */
#define _GNU_SOURCE
#include "sd.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

/* systemd shows STATUS= in one line of `systemctl status`; longer texts only get cut there. */
#define STATUS_MAX 255

const char *sbertd_sd_strerror(int err)
{
    switch (err) {
    case SBERTD_SD_OK: return "success";
    case SBERTD_SD_ENOTIFY: return "sd_notify failed";
    case SBERTD_SD_EINVAL: return "invalid argument";
    case SBERTD_SD_ENOMEM: return "out of memory";
    case SBERTD_SD_ETHREAD: return "cannot start the watchdog thread";
    case SBERTD_SD_EENV: return "malformed WATCHDOG_USEC or WATCHDOG_PID";
    default: return "unknown error";
    }
}

static int notifying(void)
{
    const char *s = getenv("NOTIFY_SOCKET");
    return s && *s;
}

static int send_state(const char *state)
{
    /* sd_notify returns > 0 when sent, 0 when NOTIFY_SOCKET is unset, < 0 (-errno) on failure. */
    return sd_notify(0, state) < 0 ? SBERTD_SD_ENOTIFY : SBERTD_SD_OK;
}

/* Copies src into dst (STATUS_MAX + 1 bytes) with newlines turned into spaces, because a newline
 * would start a new notify assignment, and cut on a UTF-8 character boundary. */
static void status_clean(char *dst, const char *src)
{
    size_t n = strlen(src);
    if (n > STATUS_MAX) {
        n = STATUS_MAX;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    for (size_t i = 0; i < n; i++)
        dst[i] = (src[i] == '\n' || src[i] == '\r') ? ' ' : src[i];
    dst[n] = '\0';
}

/* Sends head (fixed assignments, each ending in '\n') followed by STATUS=<status> if status is
 * not NULL. */
static int send_with_status(const char *head, const char *status)
{
    if (!notifying())
        return SBERTD_SD_OK;
    if (!status)
        return send_state(head);
    char clean[STATUS_MAX + 1];
    status_clean(clean, status);
    char *msg = NULL;
    if (asprintf(&msg, "%sSTATUS=%s", head, clean) < 0)
        return SBERTD_SD_ENOMEM;
    int rc = send_state(msg);
    free(msg);
    return rc;
}

int sbertd_sd_ready(const char *status)
{
    char head[64];
    snprintf(head, sizeof head, "READY=1\nMAINPID=%ld\n", (long)getpid());
    return send_with_status(head, status);
}

int sbertd_sd_status(const char *fmt, ...)
{
    if (!fmt)
        return SBERTD_SD_EINVAL;
    if (!notifying())
        return SBERTD_SD_OK;
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    return send_with_status("", text);
}

int sbertd_sd_extend_timeout(uint64_t usec)
{
    if (usec == 0)
        return SBERTD_SD_EINVAL;
    if (!notifying())
        return SBERTD_SD_OK;
    char msg[64];
    snprintf(msg, sizeof msg, "EXTEND_TIMEOUT_USEC=%llu", (unsigned long long)usec);
    return send_state(msg);
}

int sbertd_sd_reloading(void)
{
    if (!notifying())
        return SBERTD_SD_OK;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char msg[96];
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
    return send_state(msg);
}

int sbertd_sd_reloaded(const char *status)
{
    return send_with_status("READY=1\n", status);
}

int sbertd_sd_stopping(const char *status)
{
    return send_with_status("STOPPING=1\n", status);
}

/* ---- watchdog -------------------------------------------------------------------------- */

struct sbertd_sd_watchdog {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* CLOCK_MONOTONIC, so a wall-clock jump neither stalls nor floods pings */
    int stop;            /* under lock */
    uint64_t interval_usec;
    sbertd_sd_alive_fn alive;
    sbertd_sd_log_fn log;
    void *ctx;
};

static void wd_log(struct sbertd_sd_watchdog *wd, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void wd_log(struct sbertd_sd_watchdog *wd, int level, const char *fmt, ...)
{
    if (!wd->log)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    wd->log(wd->ctx, level, msg);
}

static void deadline_after(struct timespec *ts, uint64_t usec)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    uint64_t ns = (uint64_t)ts->tv_nsec + (usec % 1000000ULL) * 1000ULL;
    ts->tv_sec += (time_t)(usec / 1000000ULL + ns / 1000000000ULL);
    ts->tv_nsec = (long)(ns % 1000000000ULL);
}

static void *wd_main(void *arg)
{
    struct sbertd_sd_watchdog *wd = arg;
    int failing = 0;
    unsigned long long withheld = 0;

    pthread_mutex_lock(&wd->lock);
    for (;;) {
        struct timespec until;
        deadline_after(&until, wd->interval_usec);
        while (!wd->stop) {
            int rc = pthread_cond_timedwait(&wd->wake, &wd->lock, &until);
            if (rc == ETIMEDOUT)
                break;
        }
        if (wd->stop)
            break;
        pthread_mutex_unlock(&wd->lock);

        char why[200] = "";
        if (wd->alive(wd->ctx, why, sizeof why)) {
            if (failing)
                wd_log(wd, LOG_INFO, "liveness check passes again after %llu withheld ping(s)",
                       withheld);
            failing = 0;
            withheld = 0;
            int r = sd_notify(0, "WATCHDOG=1");
            if (r < 0)
                wd_log(wd, LOG_WARNING, "sending WATCHDOG=1 failed: %s", strerror(-r));
        } else {
            why[sizeof why - 1] = '\0';
            if (!failing)
                wd_log(wd, LOG_WARNING, "liveness check failed, withholding WATCHDOG=1%s%s",
                       why[0] ? ": " : "", why);
            failing = 1;
            withheld++;
        }

        pthread_mutex_lock(&wd->lock);
    }
    pthread_mutex_unlock(&wd->lock);
    return NULL;
}

int sbertd_sd_watchdog_start(sbertd_sd_alive_fn alive, sbertd_sd_log_fn log, void *ctx,
                             sbertd_sd_watchdog **out, uint64_t *interval_usec)
{
    if (!out || !alive)
        return SBERTD_SD_EINVAL;
    *out = NULL;
    if (interval_usec)
        *interval_usec = 0;
    if (!notifying())
        return SBERTD_SD_OK;

    uint64_t usec = 0;
    int r = sd_watchdog_enabled(0, &usec);
    if (r < 0)
        return SBERTD_SD_EENV;
    if (r == 0 || usec == 0)
        return SBERTD_SD_OK;

    struct sbertd_sd_watchdog *wd = calloc(1, sizeof *wd);
    if (!wd)
        return SBERTD_SD_ENOMEM;
    /* Half the interval, as sd_watchdog_enabled(3) recommends: one late ping is not fatal. */
    wd->interval_usec = usec / 2 ? usec / 2 : 1;
    wd->alive = alive;
    wd->log = log;
    wd->ctx = ctx;

    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) {
        free(wd);
        return SBERTD_SD_ENOMEM;
    }
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int cr = pthread_cond_init(&wd->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (cr != 0) {
        free(wd);
        return SBERTD_SD_ENOMEM;
    }
    pthread_mutex_init(&wd->lock, NULL);

    if (pthread_create(&wd->thread, NULL, wd_main, wd) != 0) {
        pthread_cond_destroy(&wd->wake);
        pthread_mutex_destroy(&wd->lock);
        free(wd);
        return SBERTD_SD_ETHREAD;
    }
    *out = wd;
    if (interval_usec)
        *interval_usec = wd->interval_usec;
    return SBERTD_SD_OK;
}

void sbertd_sd_watchdog_stop(sbertd_sd_watchdog *wd)
{
    if (!wd)
        return;
    pthread_mutex_lock(&wd->lock);
    wd->stop = 1;
    pthread_cond_signal(&wd->wake);
    pthread_mutex_unlock(&wd->lock);
    pthread_join(wd->thread, NULL);
    pthread_cond_destroy(&wd->wake);
    pthread_mutex_destroy(&wd->lock);
    free(wd);
}
