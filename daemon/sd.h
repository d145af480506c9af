/* sd.h — sbertd's systemd integration: the sd_notify(3) protocol and a checked watchdog.
 *
 * sbertd runs as a Type=notify service (systemd/sbertd.service). systemd learns from these
 * calls when start-up is complete (READY=1), what the daemon is doing (STATUS=), that a long
 * index rebuild needs more time than TimeoutStartSec= (EXTEND_TIMEOUT_USEC=), that a reload or a
 * shutdown is under way (RELOADING=1, STOPPING=1), and that the daemon is still alive
 * (WATCHDOG=1, sent by the watchdog thread below only while the daemon's own liveness check
 * passes). The extender thread keeps a long start-up step alive only while it makes progress.
 *
 * Outside systemd. Every function is a no-op that returns 0 when the environment variable
 * NOTIFY_SOCKET is unset, so sbertd started from a shell or a test behaves the same minus the
 * notifications. Nothing here changes the environment: the variables stay set for the whole
 * process (sd_notify's unset_environment is never used), so each call reads them afresh.
 *
 * Errors. Functions return 0 or a negative SBERTD_SD_E* code; sbertd_sd_strerror() names it.
 * A failed notification is never fatal to sbertd: the caller logs it and carries on (systemd
 * will then time the start-up out or kill on a missed watchdog, which is the right outcome).
 *
 * Thread safety. The notify functions keep no state and may be called from any thread at any
 * time (each sends one datagram on a socket of its own). A watchdog or extender handle belongs
 * to the caller that started it; its stop function must be called exactly once, from any
 * thread. Their threads (named "sd-watchdog" and "sd-extender" in ps/top) block every signal,
 * so SIGTERM/SIGHUP never land on them. This module
 * never prints: the watchdog reports through the log callback given to it.
 *
 * Where sbertd calls each function is written in /tmp/briefs/requests-to-daemon.md and, for
 * users, in docs/man/sbertd.8 (section SYSTEMD).
 */
#ifndef SBERTD_SD_H
#define SBERTD_SD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    SBERTD_SD_OK = 0,
    SBERTD_SD_ENOTIFY = -1, /* sd_notify() failed (socket unreachable, message refused) */
    SBERTD_SD_EINVAL = -2,  /* bad argument (NULL callback, empty or oversized status text) */
    SBERTD_SD_ENOMEM = -3,  /* out of memory */
    SBERTD_SD_ETHREAD = -4, /* the watchdog thread could not be created */
    SBERTD_SD_EENV = -5,    /* WATCHDOG_USEC / WATCHDOG_PID are set but malformed */
};

/* A static English text for any code this module returns; "unknown error" otherwise. */
const char *sbertd_sd_strerror(int err);

/* Start-up is complete: sends READY=1, MAINPID=<getpid()> and STATUS=<status>. Call it once,
 * after the model, the store and the index are loaded AND every listen socket is bound (nn_bind
 * returned and the ipc socket file has its final mode), so that a client started by
 * `After=sbertd.service` can connect at once. status may be NULL (no STATUS= line) and is
 * copied; it must be valid UTF-8 without newlines. */
int sbertd_sd_ready(const char *status);

/* STATUS=<printf-formatted text>: one line shown by `systemctl status sbertd`. Use it for
 * progress during long start-up steps (loading the model, rebuilding the index: "rebuilding
 * index: 40000/120000 vectors"). The formatted text is cut at 255 bytes on a UTF-8 boundary;
 * newlines are replaced by spaces. */
int sbertd_sd_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* EXTEND_TIMEOUT_USEC=<usec>: asks systemd for usec more microseconds before the current
 * start-up (or stop) timeout fires. Systemd honours it only if sent again before each extension
 * runs out, so a long rebuild calls it periodically (e.g. every 10 s with usec = 30 s) together
 * with sbertd_sd_status(). usec must be > 0. */
int sbertd_sd_extend_timeout(uint64_t usec);

/* RELOADING=1 (plus MONOTONIC_USEC=<now>, which systemd >= 253 requires for Type=notify-reload
 * and older versions ignore): call on SIGHUP before re-reading the configuration, then call
 * sbertd_sd_reloaded() when the new settings are in force (or the reload failed and the old
 * ones stay). status as for sbertd_sd_ready() (e.g. "reloaded: log_level info -> debug"). */
int sbertd_sd_reloading(void);
int sbertd_sd_reloaded(const char *status);

/* STOPPING=1: call first thing when SIGTERM/SIGINT is acted on, before in-flight requests are
 * drained and the index is snapshot. status may be NULL. */
int sbertd_sd_stopping(const char *status);

/* ---- watchdog -------------------------------------------------------------------------- */

/* The daemon's liveness check, called from the watchdog thread once per ping interval. Return
 * nonzero when the daemon is healthy: every worker is either idle (blocked waiting for a
 * request) or has made progress since the previous call, and no request has been running for
 * longer than the daemon allows. Return 0 to withhold this ping; systemd kills and (with
 * Restart=on-failure) restarts the service when no ping arrives within WatchdogSec=. The
 * function must not block for long and must be safe to call concurrently with the workers;
 * reading atomic counters is the intended implementation. why/whylen: on 0, the check may
 * write a short reason there (NUL-terminated) for the log. */
typedef int (*sbertd_sd_alive_fn)(void *ctx, char *why, size_t whylen);

/* Log callback of the watchdog thread. level is a syslog priority (LOG_WARNING = 4,
 * LOG_INFO = 6 from <syslog.h>: the N of sd-daemon's "<N>" stderr prefixes); msg is valid only
 * during the call. Called from the watchdog thread. */
typedef void (*sbertd_sd_log_fn)(void *ctx, int level, const char *msg);

typedef struct sbertd_sd_watchdog sbertd_sd_watchdog;

/* Starts the watchdog when systemd asks for one: NOTIFY_SOCKET set and sd_watchdog_enabled()
 * true (WATCHDOG_USEC set, WATCHDOG_PID absent or equal to getpid()). A thread then wakes every
 * WATCHDOG_USEC/2, calls alive(ctx, ...) and sends WATCHDOG=1 only when it returns nonzero; a
 * failing check is logged at LOG_WARNING once when it starts failing and at LOG_INFO when it
 * recovers, not on every tick.
 *
 * On success *out is a handle (free it with sbertd_sd_watchdog_stop()) or NULL when no watchdog
 * was requested, and *interval_usec (if not NULL) is the ping interval or 0. alive is required;
 * log may be NULL. ctx is borrowed: it must stay valid until sbertd_sd_watchdog_stop() returns.
 * Call this after the workers exist, before or after sbertd_sd_ready(). On error *out is NULL
 * and no thread runs. */
int sbertd_sd_watchdog_start(sbertd_sd_alive_fn alive, sbertd_sd_log_fn log, void *ctx,
                             sbertd_sd_watchdog **out, uint64_t *interval_usec);

/* Stops and joins the watchdog thread (it wakes at once, not at its next tick) and frees the
 * handle. NULL is a no-op. Call it late in shutdown: after the in-flight requests are drained
 * and the index is snapshot (pings continue through a long snapshot) and before the workers'
 * state is freed, so the liveness check never reads freed memory. */
void sbertd_sd_watchdog_stop(sbertd_sd_watchdog *wd);

/* ---- start-up timeout extender --------------------------------------------------------- */

/* Progress of a long step (e.g. rebuilding the vector index from 2 million stored vectors, or
 * re-encoding every text after a model change): how many items are done, of how many (total 0
 * when unknown). Called from the extender thread; must be cheap and thread-safe (read two atomic
 * counters that the working thread updates). */
typedef void (*sbertd_sd_progress_fn)(void *ctx, uint64_t *done, uint64_t *total);

typedef struct sbertd_sd_extender sbertd_sd_extender;

/* Starts a thread that, every period_usec, reads progress(ctx) and sends
 *   STATUS=<what>: <done>/<total>  plus EXTEND_TIMEOUT_USEC=<3 x period_usec>
 * when done has changed since the previous period (and at the first one), or only
 *   STATUS=<what>: <done>/<total>, no progress for N period(s)
 * when it has not: a step that stalls is not granted more time, so TimeoutStartSec= (or
 * TimeoutStopSec=) still ends a hung start-up. Use it around a call that can outlast the unit's
 * timeout: start it before, stop it after. what is copied (cut to 255 bytes); ctx is borrowed
 * until sbertd_sd_extender_stop() returns. period_usec must be > 0 (10 s is a good value).
 * *out is NULL, and nothing runs, when NOTIFY_SOCKET is unset. */
int sbertd_sd_extender_start(const char *what, sbertd_sd_progress_fn progress, void *ctx,
                             uint64_t period_usec, sbertd_sd_extender **out);

/* Stops and joins the extender thread at once and frees it. NULL is a no-op. */
void sbertd_sd_extender_stop(sbertd_sd_extender *ex);

#ifdef __cplusplus
}
#endif

#endif
