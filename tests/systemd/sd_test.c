/* sd_test.c — daemon/sd.c against a notify socket this test owns, the way systemd receives it:
 * one AF_UNIX datagram per sd_notify() call. Checks every message's exact text, the no-op
 * behaviour without NOTIFY_SOCKET, and that the watchdog pings only while the liveness check
 * passes. Waits are bounded by counting the watchdog's calls, never by asserting durations. */
#define _GNU_SOURCE
#include "sd.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

static int sock = -1;
static char sock_path[108];

/* Receives one datagram into buf (NUL-terminated); returns its length, or -1 when none arrives
 * within timeout_ms. */
static int recv_msg(char *buf, size_t len, int timeout_ms)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t n = recv(sock, buf, len - 1, 0);
    if (n < 0) return -1;
    buf[n] = '\0';
    return (int)n;
}

static int drain(void)
{
    char buf[4096];
    int n = 0;
    while (recv(sock, buf, sizeof buf, MSG_DONTWAIT) >= 0)
        n++;
    return n;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_messages(void)
{
    char buf[4096], want[128];

    CHECK(sbertd_sd_ready("serving 3 documents") == 0, "ready");
    CHECK(recv_msg(buf, sizeof buf, 5000) > 0, "no READY datagram");
    snprintf(want, sizeof want, "READY=1\nMAINPID=%ld\nSTATUS=serving 3 documents", (long)getpid());
    CHECK(strcmp(buf, want) == 0, "ready sent [%s]", buf);

    CHECK(sbertd_sd_ready(NULL) == 0, "ready(NULL)");
    recv_msg(buf, sizeof buf, 5000);
    snprintf(want, sizeof want, "READY=1\nMAINPID=%ld\n", (long)getpid());
    CHECK(strcmp(buf, want) == 0, "ready(NULL) sent [%s]", buf);

    CHECK(sbertd_sd_status("rebuilding index: %d/%d", 40, 120) == 0, "status");
    recv_msg(buf, sizeof buf, 5000);
    CHECK(strcmp(buf, "STATUS=rebuilding index: 40/120") == 0, "status sent [%s]", buf);

    /* A newline would start a new assignment: it must become a space. */
    CHECK(sbertd_sd_status("line one\nREADY=1") == 0, "status with newline");
    recv_msg(buf, sizeof buf, 5000);
    CHECK(strcmp(buf, "STATUS=line one READY=1") == 0, "newline not cleaned [%s]", buf);

    /* 200 x "é" (2 bytes each): cut at 255 bytes must not split a character -> 127 chars. */
    char text[401];
    for (int i = 0; i < 200; i++)
        memcpy(text + 2 * i, "\xc3\xa9", 2);
    text[400] = '\0';
    CHECK(sbertd_sd_status("%s", text) == 0, "long status");
    int n = recv_msg(buf, sizeof buf, 5000);
    CHECK(n == (int)strlen("STATUS=") + 254, "long status length %d", n);
    CHECK(n > 0 && (unsigned char)buf[n - 1] == 0xa9 && (unsigned char)buf[n - 2] == 0xc3,
          "long status cut inside a character");

    CHECK(sbertd_sd_extend_timeout(30000000ULL) == 0, "extend");
    recv_msg(buf, sizeof buf, 5000);
    CHECK(strcmp(buf, "EXTEND_TIMEOUT_USEC=30000000") == 0, "extend sent [%s]", buf);
    CHECK(sbertd_sd_extend_timeout(0) == SBERTD_SD_EINVAL, "extend(0) accepted");
    CHECK(sbertd_sd_status(NULL) == SBERTD_SD_EINVAL, "status(NULL) accepted");

    CHECK(sbertd_sd_reloading() == 0, "reloading");
    recv_msg(buf, sizeof buf, 5000);
    unsigned long long mono = 0;
    CHECK(sscanf(buf, "RELOADING=1\nMONOTONIC_USEC=%llu", &mono) == 1 && mono > 0,
          "reloading sent [%s]", buf);
    CHECK(sbertd_sd_reloaded("reloaded: log_level info -> debug") == 0, "reloaded");
    recv_msg(buf, sizeof buf, 5000);
    CHECK(strcmp(buf, "READY=1\nSTATUS=reloaded: log_level info -> debug") == 0,
          "reloaded sent [%s]", buf);

    CHECK(sbertd_sd_stopping("stopping: draining requests") == 0, "stopping");
    recv_msg(buf, sizeof buf, 5000);
    CHECK(strcmp(buf, "STOPPING=1\nSTATUS=stopping: draining requests") == 0, "stopping sent [%s]",
          buf);

    CHECK(drain() == 0, "unexpected extra datagrams");
}

/* The thread named name (sd.c names its threads) must block SIGHUP (bit 0), SIGINT (1) and
 * SIGTERM (14), so process-directed signals reach the daemon's signal handling, never a helper
 * thread. Returns how many threads of that name exist, or -1 when one does not block them. */
static int helper_threads_block_signals(const char *name)
{
    DIR *dir = opendir("/proc/self/task");
    if (!dir) return -1;
    int others = 0, bad = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        long tid = atol(e->d_name);
        if (tid <= 0 || tid == (long)getpid()) continue;
        char path[96], line[256];
        snprintf(path, sizeof path, "/proc/self/task/%ld/comm", tid);
        FILE *c = fopen(path, "r");
        if (!c) continue;
        int match = fgets(line, sizeof line, c) && strncmp(line, name, strlen(name)) == 0 &&
                    line[strlen(name)] == '\n';
        fclose(c);
        if (!match) continue;
        others++;
        snprintf(path, sizeof path, "/proc/self/task/%ld/status", tid);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        while (fgets(line, sizeof line, f)) {
            unsigned long long mask;
            unsigned long long want = (1ULL << 0) | (1ULL << 1) | (1ULL << 14);
            if (sscanf(line, "SigBlk: %llx", &mask) == 1 && (mask & want) != want) bad++;
        }
        fclose(f);
    }
    closedir(dir);
    return bad ? -1 : others;
}

/* ---- watchdog ---- */

static atomic_int alive_flag = 1;
static atomic_int alive_calls;
static atomic_int warned, recovered;

static int alive_cb(void *ctx, char *why, size_t whylen)
{
    CHECK(ctx == &alive_flag, "ctx not passed through");
    atomic_fetch_add(&alive_calls, 1);
    if (atomic_load(&alive_flag)) return 1;
    snprintf(why, whylen, "worker 0 busy for 99 s");
    return 0;
}

static void log_cb(void *ctx, int level, const char *msg)
{
    (void)ctx;
    if (level == LOG_WARNING && strstr(msg, "worker 0 busy for 99 s")) atomic_fetch_add(&warned, 1);
    if (level == LOG_INFO && strstr(msg, "passes again")) atomic_fetch_add(&recovered, 1);
}

/* Waits until the watchdog has called the liveness check `more` more times; 0 if it did within
 * a generous bound (the interval is 50 ms; the bound only stops a broken build from hanging). */
static int wait_calls(int more)
{
    int target = atomic_load(&alive_calls) + more;
    for (int i = 0; i < 2000 && atomic_load(&alive_calls) < target; i++)
        sleep_ms(10);
    return atomic_load(&alive_calls) >= target ? 0 : -1;
}

static void test_watchdog(void)
{
    char buf[256];
    sbertd_sd_watchdog *wd = (sbertd_sd_watchdog *)&wd;
    uint64_t ivl = 1;

    /* Not requested: no WATCHDOG_USEC. */
    unsetenv("WATCHDOG_USEC");
    CHECK(sbertd_sd_watchdog_start(alive_cb, log_cb, &alive_flag, &wd, &ivl) == 0,
          "start w/o usec");
    CHECK(wd == NULL && ivl == 0, "watchdog started without WATCHDOG_USEC");

    /* Meant for another process. */
    setenv("WATCHDOG_USEC", "100000", 1);
    char pid[32];
    snprintf(pid, sizeof pid, "%ld", (long)getpid() + 1);
    setenv("WATCHDOG_PID", pid, 1);
    CHECK(sbertd_sd_watchdog_start(alive_cb, log_cb, &alive_flag, &wd, &ivl) == 0,
          "start other pid");
    CHECK(wd == NULL, "watchdog started for another WATCHDOG_PID");

    setenv("WATCHDOG_USEC", "soon", 1);
    unsetenv("WATCHDOG_PID");
    CHECK(sbertd_sd_watchdog_start(alive_cb, log_cb, &alive_flag, &wd, &ivl) == SBERTD_SD_EENV,
          "malformed WATCHDOG_USEC accepted");
    CHECK(wd == NULL, "handle set on error");
    CHECK(sbertd_sd_watchdog_start(NULL, log_cb, NULL, &wd, &ivl) == SBERTD_SD_EINVAL,
          "NULL alive");

    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    setenv("WATCHDOG_USEC", "100000", 1);
    CHECK(sbertd_sd_watchdog_start(alive_cb, log_cb, &alive_flag, &wd, &ivl) == 0, "start");
    CHECK(wd != NULL, "no watchdog although WATCHDOG_USEC is set");
    CHECK(ivl == 50000, "interval %llu, want half of WATCHDOG_USEC", (unsigned long long)ivl);
    if (!wd) return;

    for (int i = 0; i < 3; i++) {
        CHECK(recv_msg(buf, sizeof buf, 10000) > 0, "no ping %d", i);
        CHECK(strcmp(buf, "WATCHDOG=1") == 0, "ping sent [%s]", buf);
    }
    /* Checked once the thread has run (glibc blocks everything in a new thread until it starts). */
    CHECK(helper_threads_block_signals("sd-watchdog") == 1,
          "the watchdog thread does not block SIGTERM/SIGHUP/SIGINT");

    /* Liveness fails: after the check has seen it fail, no ping may arrive. */
    atomic_store(&alive_flag, 0);
    CHECK(wait_calls(2) == 0, "liveness check not called");
    drain();
    CHECK(wait_calls(4) == 0, "liveness check not called");
    CHECK(recv_msg(buf, sizeof buf, 1) < 0, "ping [%s] sent while the liveness check fails", buf);
    CHECK(atomic_load(&warned) == 1, "failing check logged %d times, want once",
          atomic_load(&warned));

    /* Recovers: pings resume and the recovery is logged. */
    atomic_store(&alive_flag, 1);
    CHECK(recv_msg(buf, sizeof buf, 10000) > 0 && strcmp(buf, "WATCHDOG=1") == 0,
          "no ping after recovery");
    CHECK(atomic_load(&recovered) == 1, "recovery logged %d times", atomic_load(&recovered));

    sbertd_sd_watchdog_stop(wd);
    int after = atomic_load(&alive_calls);
    drain();
    sleep_ms(200);
    CHECK(atomic_load(&alive_calls) == after, "liveness check called after stop");
    CHECK(drain() == 0, "ping after stop");
    sbertd_sd_watchdog_stop(NULL);
}

static atomic_ulong prog_done;
static atomic_int prog_calls;

static void progress_cb(void *ctx, uint64_t *done, uint64_t *total)
{
    CHECK(ctx == &prog_done, "extender ctx not passed through");
    atomic_fetch_add(&prog_calls, 1);
    *done = atomic_load(&prog_done);
    *total = 100;
}

static int wait_progress_calls(int more)
{
    int target = atomic_load(&prog_calls) + more;
    for (int i = 0; i < 2000 && atomic_load(&prog_calls) < target; i++)
        sleep_ms(10);
    return atomic_load(&prog_calls) >= target ? 0 : -1;
}

static void test_extender(void)
{
    char buf[512];
    sbertd_sd_extender *ex = NULL;
    CHECK(sbertd_sd_extender_start("x", NULL, NULL, 1, &ex) == SBERTD_SD_EINVAL, "NULL progress");
    CHECK(sbertd_sd_extender_start("x", progress_cb, &prog_done, 0, &ex) == SBERTD_SD_EINVAL,
          "period 0");

    /* The main thread blocks nothing here; the helper thread must block the signals anyway. */
    sigset_t none, old;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, &old);
    CHECK(sbertd_sd_extender_start("rebuilding index", progress_cb, &prog_done, 50000, &ex) == 0,
          "start");
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    CHECK(ex != NULL, "no extender although NOTIFY_SOCKET is set");
    if (!ex) return;

    /* The first period always extends. */
    CHECK(recv_msg(buf, sizeof buf, 10000) > 0, "no extender message");
    CHECK(strcmp(buf, "EXTEND_TIMEOUT_USEC=150000\nSTATUS=rebuilding index: 0/100") == 0,
          "first extender message [%s]", buf);
    CHECK(helper_threads_block_signals("sd-extender") == 1,
          "the extender thread does not block SIGTERM/SIGHUP/SIGINT");

    /* No progress: status only, no extension. */
    CHECK(recv_msg(buf, sizeof buf, 10000) > 0, "no second extender message");
    CHECK(strcmp(buf, "STATUS=rebuilding index: 0/100, no progress for 1 period(s)") == 0,
          "stalled extender message [%s]", buf);

    /* Progress again: extended again, with the new count. */
    atomic_store(&prog_done, 40);
    CHECK(wait_progress_calls(2) == 0, "progress not read");
    int found = 0;
    while (recv_msg(buf, sizeof buf, 1) > 0)
        if (strcmp(buf, "EXTEND_TIMEOUT_USEC=150000\nSTATUS=rebuilding index: 40/100") == 0)
            found = 1;
        else
            CHECK(strncmp(buf, "STATUS=rebuilding index: ", 25) == 0 &&
                      (strstr(buf, "40/100, no progress") || strstr(buf, "0/100, no progress")),
                  "unexpected extender message [%s]", buf);
    CHECK(found, "no extension after progress");

    sbertd_sd_extender_stop(ex);
    int after = atomic_load(&prog_calls);
    drain();
    sleep_ms(200);
    CHECK(atomic_load(&prog_calls) == after && drain() == 0, "extender still running after stop");
    sbertd_sd_extender_stop(NULL);
}

static void test_without_notify_socket(void)
{
    char buf[256];
    unsetenv("NOTIFY_SOCKET");
    setenv("WATCHDOG_USEC", "100000", 1);
    CHECK(sbertd_sd_ready("x") == 0, "ready without NOTIFY_SOCKET");
    CHECK(sbertd_sd_status("x %d", 1) == 0, "status without NOTIFY_SOCKET");
    CHECK(sbertd_sd_extend_timeout(1) == 0, "extend without NOTIFY_SOCKET");
    CHECK(sbertd_sd_reloading() == 0 && sbertd_sd_reloaded(NULL) == 0,
          "reload without NOTIFY_SOCKET");
    CHECK(sbertd_sd_stopping(NULL) == 0, "stopping without NOTIFY_SOCKET");
    sbertd_sd_watchdog *wd = NULL;
    CHECK(sbertd_sd_watchdog_start(alive_cb, log_cb, &alive_flag, &wd, NULL) == 0 && wd == NULL,
          "watchdog started without NOTIFY_SOCKET");
    sbertd_sd_extender *ex = NULL;
    CHECK(sbertd_sd_extender_start("x", progress_cb, &prog_done, 1000, &ex) == 0 && ex == NULL,
          "extender started without NOTIFY_SOCKET");
    sleep_ms(100);
    CHECK(recv_msg(buf, sizeof buf, 1) < 0, "datagram [%s] sent without NOTIFY_SOCKET", buf);

    /* A socket that is not there is an error the caller can log. */
    setenv("NOTIFY_SOCKET", "/nonexistent/sbertd-notify", 1);
    CHECK(sbertd_sd_ready(NULL) == SBERTD_SD_ENOTIFY, "ready to a missing socket succeeded");
    CHECK(strcmp(sbertd_sd_strerror(SBERTD_SD_ENOTIFY), "sd_notify failed") == 0, "strerror");
    CHECK(strcmp(sbertd_sd_strerror(12345), "unknown error") == 0, "strerror unknown");
}

int main(void)
{
    char dir[] = "/tmp/sbertd-sd-test-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(sock_path, sizeof sock_path, "%s/notify", dir);
    sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock_path);
    if (sock < 0 || bind(sock, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("notify socket");
        return 1;
    }
    setenv("NOTIFY_SOCKET", sock_path, 1);
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");

    test_messages();
    test_watchdog();
    test_extender();
    test_without_notify_socket();

    close(sock);
    unlink(sock_path);
    rmdir(dir);
    if (failures) {
        fprintf(stderr, "sd_test: %d check(s) failed\n", failures);
        return 1;
    }
    printf("sd_test: all checks passed\n");
    return 0;
}
