/* pdf.c — the text of a PDF through poppler-glib, run in a child process (sbert_extract.h).
 *
 * Why a child: PDF parsers have a long record of crashes and hangs on hostile files, and poppler
 * prints its syntax errors to stderr. The child (fork, no exec: it parses the caller's bytes in
 * place) runs under RLIMIT_AS and RLIMIT_CPU with stderr on /dev/null and streams records to the
 * parent over a pipe; the parent enforces the wall-clock limit and the text bound, and reads a
 * child that dies by a signal or never finishes as SBERT_EXTRACT_ECRASH. glibc makes malloc safe
 * in the child of a multithreaded parent; nothing else in the child needs the parent's locks.
 *
 * Records: one type byte, a 64-bit length, the bytes: 'T' the title, 'P' one page's text, 'X' the
 * parser's refusal message, 'E' the end.
 */
#define _GNU_SOURCE
#include "internal.h"
#include "sbert_util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <poppler.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Under ASan or TSan the process reserves terabytes of address space for shadow memory, so an
 * address-space limit would fail every allocation: the sanitized builds run the child without it
 * (the time limit still holds). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif

static void put_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) _exit(3); /* the parent went away */
        c += w;
        n -= (size_t)w;
    }
}

static void record(int fd, char type, const char *s, size_t n)
{
    uint64_t len = n;
    put_all(fd, &type, 1);
    put_all(fd, &len, sizeof len);
    if (n) put_all(fd, s, n);
}

static void child(int fd, const char *data, size_t len, const struct sbert_extract_params *p)
{
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (devnull >= 0) dup2(devnull, STDERR_FILENO);
    struct rlimit as = {p->pdf_memory_bytes, p->pdf_memory_bytes};
    rlim_t secs = (rlim_t)(p->pdf_timeout_ms / 1000 + 1);
    struct rlimit cpu = {secs, secs + 1};
#ifndef SANITIZED
    setrlimit(RLIMIT_AS, &as);
#else
    (void)as;
#endif
    setrlimit(RLIMIT_CPU, &cpu);

    GBytes *bytes = g_bytes_new_static(data, len);
    GError *err = NULL;
    PopplerDocument *doc = poppler_document_new_from_bytes(bytes, NULL, &err);
    if (!doc) {
        const char *m = err && err->message ? err->message : "not a PDF poppler can read";
        record(fd, 'X', m, strlen(m));
        record(fd, 'E', NULL, 0);
        _exit(0);
    }
    gchar *title = poppler_document_get_title(doc);
    if (title && *title) record(fd, 'T', title, strlen(title));
    int pages = poppler_document_get_n_pages(doc);
    for (int i = 0; i < pages; i++) {
        PopplerPage *page = poppler_document_get_page(doc, i);
        if (!page) continue;
        gchar *t = poppler_page_get_text(page);
        record(fd, 'P', t ? t : "", t ? strlen(t) : 0);
        g_free(t);
        g_object_unref(page);
    }
    record(fd, 'E', NULL, 0);
    _exit(0);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads the child's whole output into *raw (bounded by cap bytes); 1 on a timeout, 0 otherwise. */
static int read_child(int fd, int timeout_ms, size_t cap, struct xbuf *raw)
{
    int64_t deadline = now_ms() + timeout_ms;
    char chunk[65536];
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0) return 1;
        struct pollfd pfd = {fd, POLLIN, 0};
        int r = poll(&pfd, 1, (int)left);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return r == 0;
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 0;
        if (raw->n + (size_t)n > cap) {
            raw->over = 1;
            return 0;
        }
        if (xbuf_put(raw, chunk, (size_t)n)) return -1;
    }
}

/* Turns the records into the document. */
static int decode(const struct xbuf *raw, const struct sbert_extract_params *p,
                  struct sbert_extract_doc *out, char *errbuf, size_t errlen)
{
    struct xbuf text = {.max = p->max_text_bytes};
    char *title = NULL;
    int pages = 0, ended = 0, rc = 0;
    size_t i = 0;
    while (!rc && !ended && i + 9 <= raw->n) {
        char type = raw->p[i];
        uint64_t n;
        memcpy(&n, raw->p + i + 1, sizeof n);
        i += 9;
        if (n > raw->n - i) break;
        const char *s = raw->p + i;
        i += n;
        if (type == 'E')
            ended = 1;
        else if (type == 'X')
            rc = sbert_util_errf(errbuf, errlen, SBERT_EXTRACT_EPARSE, "pdf: %.*s",
                                 (int)(n > 300 ? 300 : n), s);
        else if (type == 'T' && !title && !(title = strndup(s, n)))
            rc = SBERT_EXTRACT_ENOMEM;
        else if (type == 'P') {
            if ((pages++ && xbuf_put(&text, "\n\n", 2)) || xbuf_put(&text, s, n))
                rc = SBERT_EXTRACT_ENOMEM;
        }
    }
    if (!rc && !ended)
        rc = sbert_util_errf(errbuf, errlen, SBERT_EXTRACT_ECRASH,
                             "pdf: the parser stopped before the end of its output");
    if (rc) {
        free(text.p);
        free(title);
        return rc;
    }
    return extract_finish(&text, title, "pdf", out, errbuf, errlen);
}

int extract_pdf(const char *data, size_t len, const struct sbert_extract_params *p,
                struct sbert_extract_doc *out, char *errbuf, size_t errlen)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return sbert_util_errf(errbuf, errlen, SBERT_EXTRACT_EIO, "pdf: pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return sbert_util_errf(errbuf, errlen, SBERT_EXTRACT_EIO, "pdf: fork: %s", strerror(e));
    }
    if (pid == 0) {
        close(fds[0]);
        child(fds[1], data, len, p);
    }
    close(fds[1]);
    /* Records add 9 bytes a page and a blank line between pages: room for a page per 4 KiB. */
    size_t cap = p->max_text_bytes + p->max_text_bytes / 256 + 65536;
    struct xbuf raw = {.max = (size_t)-1};
    int timed_out = read_child(fds[0], p->pdf_timeout_ms, cap, &raw);
    close(fds[0]);
    int status = 0;
    if (timed_out || raw.over) kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    int rc;
    if (timed_out < 0)
        rc = SBERT_EXTRACT_ENOMEM;
    else if (timed_out)
        rc = sbert_util_errf(errbuf, errlen, SBERT_EXTRACT_ECRASH,
                             "pdf: the parser took longer than %d ms", p->pdf_timeout_ms);
    else if (raw.over)
        rc = sbert_util_errf(errbuf, errlen, SBERT_EXTRACT_ETOOBIG,
                             "pdf: the text is longer than %zu bytes", p->max_text_bytes);
    else if (WIFSIGNALED(status))
        rc = sbert_util_errf(errbuf, errlen, SBERT_EXTRACT_ECRASH,
                             "pdf: the parser died of signal %d (%s)", WTERMSIG(status),
                             WTERMSIG(status) == SIGXCPU ? "CPU time limit"
                                                         : strsignal(WTERMSIG(status)));
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        rc = sbert_util_errf(errbuf, errlen, SBERT_EXTRACT_ECRASH,
                             "pdf: the parser exited with status %d (memory limit?)",
                             WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    else
        rc = decode(&raw, p, out, errbuf, errlen);
    free(raw.p);
    return rc;
}
