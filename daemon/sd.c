/* sd.c — the sd_notify(3) messages and the checked watchdog thread behind sd.h. */
#define _GNU_SOURCE
#include "sd.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
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
    case SBERTD_SD_OK:
        return "success";
    case SBERTD_SD_ENOTIFY:
        return "sd_notify failed";
    case SBERTD_SD_EINVAL:
        return "invalid argument";
    case SBERTD_SD_ENOMEM:
        return "out of memory";
    case SBERTD_SD_ETHREAD:
        return "cannot start the watchdog thread";
    case SBERTD_SD_EENV:
        return "malformed WATCHDOG_USEC or WATCHDOG_PID";
    default:
        return "unknown error";
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
    if (!notifying()) return SBERTD_SD_OK;
    if (!status) return send_state(head);
    char clean[STATUS_MAX + 1];
    status_clean(clean, status);
    char *msg = NULL;
    if (asprintf(&msg, "%sSTATUS=%s", head, clean) < 0) return SBERTD_SD_ENOMEM;
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
    if (!fmt) return SBERTD_SD_EINVAL;
    if (!notifying()) return SBERTD_SD_OK;
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    return send_with_status("", text);
}

int sbertd_sd_extend_timeout(uint64_t usec)
{
    if (usec == 0) return SBERTD_SD_EINVAL;
    if (!notifying()) return SBERTD_SD_OK;
    char msg[64];
    snprintf(msg, sizeof msg, "EXTEND_TIMEOUT_USEC=%llu", (unsigned long long)usec);
    return send_state(msg);
}

int sbertd_sd_reloading(void)
{
    if (!notifying()) return SBERTD_SD_OK;
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

/* ---- ticker: a thread that runs a function every interval until stopped ------------------ */

struct ticker {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake; /* CLOCK_MONOTONIC, so a wall-clock jump neither stalls nor floods ticks */
    int stop;            /* under lock */
    uint64_t interval_usec;
    void (*tick)(void *self);
    void *self;
    const char *name; /* thread name shown by ps/top (at most 15 bytes) */
};

static void deadline_after(struct timespec *ts, uint64_t usec)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    uint64_t ns = (uint64_t)ts->tv_nsec + (usec % 1000000ULL) * 1000ULL;
    ts->tv_sec += (time_t)(usec / 1000000ULL + ns / 1000000000ULL);
    ts->tv_nsec = (long)(ns % 1000000000ULL);
}

static void *ticker_main(void *arg)
{
    struct ticker *t = arg;
    pthread_mutex_lock(&t->lock);
    for (;;) {
        struct timespec until;
        deadline_after(&until, t->interval_usec);
        while (!t->stop && pthread_cond_timedwait(&t->wake, &t->lock, &until) != ETIMEDOUT)
            ;
        if (t->stop) break;
        pthread_mutex_unlock(&t->lock);
        t->tick(t->self);
        pthread_mutex_lock(&t->lock);
    }
    pthread_mutex_unlock(&t->lock);
    return NULL;
}

/* Starts t's thread with every signal blocked, so that process-directed signals (SIGTERM,
 * SIGHUP) are never delivered to it whatever the caller's mask is. */
static int ticker_start(struct ticker *t)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0) return SBERTD_SD_ENOMEM;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int cr = pthread_cond_init(&t->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (cr != 0) return SBERTD_SD_ENOMEM;
    pthread_mutex_init(&t->lock, NULL);

    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&t->thread, NULL, ticker_main, t);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&t->wake);
        pthread_mutex_destroy(&t->lock);
        return SBERTD_SD_ETHREAD;
    }
    pthread_setname_np(t->thread, t->name);
    return SBERTD_SD_OK;
}

static void ticker_stop(struct ticker *t)
{
    pthread_mutex_lock(&t->lock);
    t->stop = 1;
    pthread_cond_signal(&t->wake);
    pthread_mutex_unlock(&t->lock);
    pthread_join(t->thread, NULL);
    pthread_cond_destroy(&t->wake);
    pthread_mutex_destroy(&t->lock);
}

static void log_to(sbertd_sd_log_fn log, void *ctx, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void log_to(sbertd_sd_log_fn log, void *ctx, int level, const char *fmt, ...)
{
    if (!log) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log(ctx, level, msg);
}

/* ---- watchdog -------------------------------------------------------------------------- */

struct sbertd_sd_watchdog {
    struct ticker t;
    sbertd_sd_alive_fn alive;
    sbertd_sd_log_fn log;
    void *ctx;
    int failing;                 /* ticker thread only */
    unsigned long long withheld; /* ticker thread only */
};

static void wd_tick(void *self)
{
    struct sbertd_sd_watchdog *wd = self;
    char why[200] = "";
    if (wd->alive(wd->ctx, why, sizeof why)) {
        if (wd->failing)
            log_to(wd->log, wd->ctx, LOG_INFO,
                   "liveness check passes again after %llu withheld ping(s)", wd->withheld);
        wd->failing = 0;
        wd->withheld = 0;
        int r = sd_notify(0, "WATCHDOG=1");
        if (r < 0)
            log_to(wd->log, wd->ctx, LOG_WARNING, "sending WATCHDOG=1 failed: %s", strerror(-r));
    } else {
        why[sizeof why - 1] = '\0';
        if (!wd->failing)
            log_to(wd->log, wd->ctx, LOG_WARNING,
                   "liveness check failed, withholding WATCHDOG=1%s%s", why[0] ? ": " : "", why);
        wd->failing = 1;
        wd->withheld++;
    }
}

int sbertd_sd_watchdog_start(sbertd_sd_alive_fn alive, sbertd_sd_log_fn log, void *ctx,
                             sbertd_sd_watchdog **out, uint64_t *interval_usec)
{
    if (!out || !alive) return SBERTD_SD_EINVAL;
    *out = NULL;
    if (interval_usec) *interval_usec = 0;
    if (!notifying()) return SBERTD_SD_OK;

    uint64_t usec = 0;
    int r = sd_watchdog_enabled(0, &usec);
    if (r < 0) return SBERTD_SD_EENV;
    if (r == 0 || usec == 0) return SBERTD_SD_OK;

    struct sbertd_sd_watchdog *wd = calloc(1, sizeof *wd);
    if (!wd) return SBERTD_SD_ENOMEM;
    /* Half the interval, as sd_watchdog_enabled(3) recommends: one late ping is not fatal. */
    wd->t.interval_usec = usec / 2 ? usec / 2 : 1;
    wd->t.tick = wd_tick;
    wd->t.self = wd;
    wd->t.name = "sd-watchdog";
    wd->alive = alive;
    wd->log = log;
    wd->ctx = ctx;
    int rc = ticker_start(&wd->t);
    if (rc) {
        free(wd);
        return rc;
    }
    *out = wd;
    if (interval_usec) *interval_usec = wd->t.interval_usec;
    return SBERTD_SD_OK;
}

void sbertd_sd_watchdog_stop(sbertd_sd_watchdog *wd)
{
    if (!wd) return;
    ticker_stop(&wd->t);
    free(wd);
}

/* ---- start-up timeout extender --------------------------------------------------------- */

struct sbertd_sd_extender {
    struct ticker t;
    char what[STATUS_MAX + 1];
    sbertd_sd_progress_fn progress;
    void *ctx;
    uint64_t last_done; /* ticker thread only */
    int ticks;          /* ticker thread only */
    unsigned stalled;   /* ticker thread only: ticks without progress */
};

static void ex_tick(void *self)
{
    struct sbertd_sd_extender *ex = self;
    uint64_t done = 0, total = 0;
    ex->progress(ex->ctx, &done, &total);
    char text[STATUS_MAX + 128], status[STATUS_MAX + 1], msg[STATUS_MAX + 64];
    int n = snprintf(text, sizeof text, "%s: %llu", ex->what, (unsigned long long)done);
    if (total) n += snprintf(text + n, sizeof text - (size_t)n, "/%llu", (unsigned long long)total);
    if (ex->ticks++ == 0 || done != ex->last_done) {
        ex->stalled = 0;
        ex->last_done = done;
        status_clean(status, text);
        /* Three periods: two late ticks in a row still do not let the timeout fire. */
        snprintf(msg, sizeof msg, "EXTEND_TIMEOUT_USEC=%llu\nSTATUS=%s",
                 (unsigned long long)ex->t.interval_usec * 3, status);
    } else {
        /* No extension: a step that stopped advancing runs into TimeoutStartSec= as it should. */
        ex->stalled++;
        snprintf(text + n, sizeof text - (size_t)n, ", no progress for %u period(s)", ex->stalled);
        status_clean(status, text);
        snprintf(msg, sizeof msg, "STATUS=%s", status);
    }
    sd_notify(0, msg);
}

int sbertd_sd_extender_start(const char *what, sbertd_sd_progress_fn progress, void *ctx,
                             uint64_t period_usec, sbertd_sd_extender **out)
{
    if (!out || !what || !progress || period_usec == 0) return SBERTD_SD_EINVAL;
    *out = NULL;
    if (!notifying()) return SBERTD_SD_OK;
    struct sbertd_sd_extender *ex = calloc(1, sizeof *ex);
    if (!ex) return SBERTD_SD_ENOMEM;
    status_clean(ex->what, what);
    ex->progress = progress;
    ex->ctx = ctx;
    ex->t.interval_usec = period_usec;
    ex->t.tick = ex_tick;
    ex->t.self = ex;
    ex->t.name = "sd-extender";
    int rc = ticker_start(&ex->t);
    if (rc) {
        free(ex);
        return rc;
    }
    *out = ex;
    return SBERTD_SD_OK;
}

void sbertd_sd_extender_stop(sbertd_sd_extender *ex)
{
    if (!ex) return;
    ticker_stop(&ex->t);
    free(ex);
}
