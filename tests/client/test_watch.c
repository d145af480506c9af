/* Unit tests of client/watch.c: what counts as a change under a tree, subdirectories made after
 * the watch began, hidden names, the watch set rebuilt (after a directory event and after the
 * kernel's queue overflowed), and a signal ending the wait. Waits are
 * bounded (a change must be seen within 30 s); no check depends on how fast the machine is. */
#define _GNU_SOURCE
#include "watch.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static char dir[] = "/tmp/sbertctl-watch-XXXXXX";

static void put(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void make_dir(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (mkdir(path, 0755) != 0) {
        perror(path);
        exit(1);
    }
}

/* Waits for the next change (at most 30 s) with a short quiet period. */
static int next(sbc_watch *w)
{
    char err[512];
    int r = sbc_watch_wait(w, 30000, 100, 2000, NULL, err, sizeof err);
    if (r < 0) fprintf(stderr, "sbc_watch_wait: %s\n", err);
    return r;
}

/* Whether nothing that counts happens within 300 ms. */
static int quiet(sbc_watch *w)
{
    char err[512];
    return sbc_watch_wait(w, 300, 100, 2000, NULL, err, sizeof err) == SBC_WATCH_IDLE;
}

static void on_usr1(int sig)
{
    (void)sig;
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    make_dir("old");
    sbc_watch *w;
    char err[512];
    CHECK(sbc_watch_open(dir, &w, err, sizeof err) == 0);
    CHECK(sbc_watch_unwatched(w, err, sizeof err) == 0);
    CHECK(quiet(w));

    put("a.txt", "one");
    CHECK(next(w) == SBC_WATCH_CHANGED);
    put("old/b.txt", "two"); /* a subdirectory that was there */
    CHECK(next(w) == SBC_WATCH_CHANGED);
    put(".swap", "hidden"); /* an editor's file: no round */
    CHECK(quiet(w));

    /* a directory made after the watch began: its creation is a change, and once the watch set
     * is rebuilt so is a file written in it */
    make_dir("new");
    CHECK(next(w) == SBC_WATCH_CHANGED);
    put("new/c.txt", "three");
    CHECK(next(w) == SBC_WATCH_CHANGED);
    make_dir("new/deeper");
    CHECK(next(w) == SBC_WATCH_CHANGED);
    put("new/deeper/d.txt", "four");
    CHECK(next(w) == SBC_WATCH_CHANGED);

    /* a rename into place, a deletion */
    put(".tmp-e", "five");
    CHECK(quiet(w));
    char from[512], to[512];
    snprintf(from, sizeof from, "%s/.tmp-e", dir);
    snprintf(to, sizeof to, "%s/e.txt", dir);
    CHECK(rename(from, to) == 0);
    CHECK(next(w) == SBC_WATCH_CHANGED);
    CHECK(unlink(to) == 0);
    CHECK(next(w) == SBC_WATCH_CHANGED);

    /* the kernel's queue overflows (IN_Q_OVERFLOW): every file below makes two events while
     * nobody reads, so the directory made last has its creation dropped; only the watch set
     * built again after the overflow sees a file written in it */
    long limit = 16384;
    FILE *q = fopen("/proc/sys/fs/inotify/max_queued_events", "r");
    if (q) {
        if (fscanf(q, "%ld", &limit) != 1) limit = 16384;
        fclose(q);
    }
    make_dir("flood");
    CHECK(next(w) == SBC_WATCH_CHANGED);
    for (long i = 0; i < limit; i++) {
        char name[64];
        snprintf(name, sizeof name, "flood/f%ld", i);
        put(name, "x");
    }
    make_dir("after-overflow");
    CHECK(next(w) == SBC_WATCH_CHANGED);
    put("after-overflow/g.txt", "six");
    CHECK(next(w) == SBC_WATCH_CHANGED);

    /* a signal unblocked only during the wait ends it */
    struct sigaction sa = {.sa_handler = on_usr1};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t block, waitmask;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigprocmask(SIG_BLOCK, &block, &waitmask);
    sigdelset(&waitmask, SIGUSR1);
    raise(SIGUSR1); /* pending until the wait unblocks it */
    CHECK(sbc_watch_wait(w, 30000, 100, 2000, &waitmask, err, sizeof err) == SBC_WATCH_SIGNAL);
    sbc_watch_free(w);

    CHECK(sbc_watch_open("/nonexistent/sbertctl-watch", &w, err, sizeof err) == SBC_WATCH_ESYS);
    CHECK(strstr(err, "/nonexistent/sbertctl-watch") != NULL);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all passed\n");
    return 0;
}
