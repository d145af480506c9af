/* output.c — tables and the progress bar behind output.h. */
#define _POSIX_C_SOURCE 200809L
#include "output.h"

#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <utf8proc.h>

const char *sbc_out_strerror(int err)
{
    switch (err) {
    case SBC_OUT_OK:
        return "success";
    case SBC_OUT_ENOMEM:
        return "out of memory";
    case SBC_OUT_EINVAL:
        return "invalid argument";
    case SBC_OUT_EIO:
        return "write error";
    default:
        return "unknown error";
    }
}

/* ---- width -------------------------------------------------------------------------------- */

/* Decodes one character at s (n bytes left): its byte length and its display width. */
static void char_at(const char *s, size_t n, size_t *len, int *width)
{
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &cp);
    if (k <= 0) {
        *len = 1, *width = 1;
        return;
    }
    *len = (size_t)k;
    if (cp < 0x20 || cp == 0x7F)
        *width = 1;
    else
        *width = utf8proc_charwidth(cp);
}

size_t sbc_display_width(const char *s, size_t n)
{
    size_t w = 0, i = 0;
    while (i < n) {
        size_t len;
        int cw;
        char_at(s + i, n - i, &len, &cw);
        w += (size_t)cw;
        i += len;
    }
    return w;
}

int sbc_terminal_width(FILE *f)
{
    struct winsize ws;
    int fd = fileno(f);
    if (fd < 0 || !isatty(fd)) return 0;
    if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    return 80;
}

/* Writes s padded or shortened to exactly width columns (pad == 0: no padding, for the last
 * column). Control characters print as spaces. */
static void put_cell(FILE *f, const char *s, size_t width, int right, int pad)
{
    if (width == 0) return;
    size_t n = strlen(s), full = sbc_display_width(s, n);
    size_t limit = full > width ? width - 1 : full; /* room for "…" when shortening */
    if (right && full < width)
        for (size_t k = full; k < width; k++)
            fputc(' ', f);
    size_t used = 0, i = 0;
    while (i < n) {
        size_t len;
        int cw;
        char_at(s + i, n - i, &len, &cw);
        if (used + (size_t)cw > limit) break;
        unsigned char c = (unsigned char)s[i];
        if (len == 1 && (c < 0x20 || c == 0x7F))
            fputc(' ', f);
        else if (len == 1 && c >= 0x80)
            fputc('?', f); /* an invalid byte: never pass it through to the terminal */
        else
            fwrite(s + i, 1, len, f);
        used += (size_t)cw;
        i += len;
    }
    if (full > width) {
        fputs("\xE2\x80\xA6", f);
        used++;
    }
    if (!right && pad)
        for (; used < width; used++)
            fputc(' ', f);
}

/* ---- tables ------------------------------------------------------------------------------- */

struct sbc_table {
    size_t n_cols;
    char **headers;
    int *flags;
    char **cells; /* row-major, n_rows * n_cols */
    size_t n_rows, cap_rows;
};

int sbc_table_create(const struct sbc_column *cols, size_t n, sbc_table **out)
{
    *out = NULL;
    if (!cols || n == 0) return SBC_OUT_EINVAL;
    sbc_table *t = calloc(1, sizeof *t);
    if (!t) return SBC_OUT_ENOMEM;
    t->n_cols = n;
    t->headers = calloc(n, sizeof *t->headers);
    t->flags = calloc(n, sizeof *t->flags);
    if (!t->headers || !t->flags) {
        sbc_table_free(t);
        return SBC_OUT_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        t->flags[i] = cols[i].flags;
        if (!(t->headers[i] = strdup(cols[i].header ? cols[i].header : ""))) {
            sbc_table_free(t);
            return SBC_OUT_ENOMEM;
        }
    }
    *out = t;
    return 0;
}

int sbc_table_add_row(sbc_table *t, const char *const *cells)
{
    if (!t || !cells) return SBC_OUT_EINVAL;
    if (t->n_rows == t->cap_rows) {
        size_t cap = t->cap_rows ? t->cap_rows * 2 : 16;
        char **p = realloc(t->cells, cap * t->n_cols * sizeof *p);
        if (!p) return SBC_OUT_ENOMEM;
        t->cells = p, t->cap_rows = cap;
    }
    char **row = t->cells + t->n_rows * t->n_cols;
    for (size_t i = 0; i < t->n_cols; i++) {
        if (!(row[i] = strdup(cells[i] ? cells[i] : ""))) {
            while (i--)
                free(row[i]);
            return SBC_OUT_ENOMEM;
        }
    }
    t->n_rows++;
    return 0;
}

int sbc_table_print(const sbc_table *t, FILE *f, int width)
{
    if (!t || !f) return SBC_OUT_EINVAL;
    size_t *w = calloc(t->n_cols, sizeof *w);
    if (!w) return SBC_OUT_ENOMEM;
    for (size_t c = 0; c < t->n_cols; c++) {
        w[c] = sbc_display_width(t->headers[c], strlen(t->headers[c]));
        for (size_t r = 0; r < t->n_rows; r++) {
            const char *s = t->cells[r * t->n_cols + c];
            size_t cw = sbc_display_width(s, strlen(s));
            if (cw > w[c]) w[c] = cw;
        }
    }
    if (width > 0) {
        /* Shrink the widest shrinkable column one step at a time: long texts give way first and
         * short ones keep their full width. */
        enum { MIN_SHRUNK = 8 };
        for (;;) {
            size_t total = 2 * (t->n_cols - 1);
            for (size_t c = 0; c < t->n_cols; c++)
                total += w[c];
            if (total <= (size_t)width) break;
            size_t best = t->n_cols;
            for (size_t c = 0; c < t->n_cols; c++)
                if ((t->flags[c] & SBC_COL_SHRINK) && w[c] > MIN_SHRUNK &&
                    (best == t->n_cols || w[c] > w[best]))
                    best = c;
            if (best == t->n_cols) break;
            w[best]--;
        }
    }
    for (size_t r = 0; r <= t->n_rows; r++) {
        char *const *row = r == 0 ? t->headers : t->cells + (r - 1) * t->n_cols;
        /* Cells after the last non-empty one are left out, so no line ends in spaces. */
        size_t last = t->n_cols;
        while (last > 1 && !row[last - 1][0])
            last--;
        for (size_t c = 0; c < last; c++) {
            if (c) fputs("  ", f);
            put_cell(f, row[c], w[c], t->flags[c] & SBC_COL_RIGHT, c + 1 < last);
        }
        fputc('\n', f);
    }
    free(w);
    return ferror(f) ? SBC_OUT_EIO : 0;
}

void sbc_table_free(sbc_table *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->n_rows * t->n_cols; i++)
        free(t->cells[i]);
    free(t->cells);
    for (size_t i = 0; t->headers && i < t->n_cols; i++)
        free(t->headers[i]);
    free(t->headers);
    free(t->flags);
    free(t);
}

/* ---- progress ----------------------------------------------------------------------------- */

struct sbc_progress {
    FILE *f;
    long total, done, done2;
    const char *unit, *unit2; /* unit2: the second count's, or NULL */
    double t0, last_draw;
    int drawn;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int sbc_progress_create(FILE *f, long total, const char *unit, sbc_progress **out)
{
    *out = NULL;
    if (!f || !unit) return SBC_OUT_EINVAL;
    int fd = fileno(f);
    if (fd < 0 || !isatty(fd)) return 0;
    sbc_progress *p = calloc(1, sizeof *p);
    if (!p) return SBC_OUT_ENOMEM;
    p->f = f, p->total = total, p->unit = unit;
    p->t0 = now_s();
    *out = p;
    return 0;
}

static void draw(sbc_progress *p, double t)
{
    double el = t - p->t0;
    double rate = el > 0 ? (double)p->done / el : 0;
    fprintf(p->f, "\r%8ld", p->done);
    if (p->total >= 0) {
        enum { BAR = 24 };
        double frac = p->total > 0 ? (double)p->done / (double)p->total : 1.0;
        if (frac > 1) frac = 1;
        int fill = (int)(frac * BAR);
        fprintf(p->f, "/%ld %3d%% [", p->total, (int)(frac * 100));
        for (int i = 0; i < BAR; i++)
            fputc(i < fill ? '#' : '.', p->f);
        fputc(']', p->f);
    }
    fprintf(p->f, " %.0f %s/s", rate, p->unit);
    if (p->unit2) fprintf(p->f, " %.0f %s/s", el > 0 ? (double)p->done2 / el : 0, p->unit2);
    if (p->total >= 0 && rate > 0 && p->done < p->total) {
        long eta = (long)((double)(p->total - p->done) / rate + 0.5);
        fprintf(p->f, " ETA %ld:%02ld", eta / 60, eta % 60);
    } else if (p->total >= 0 && p->done >= p->total) {
        fprintf(p->f, " in %.1fs", el);
    }
    fputs("\x1b[K", p->f); /* clear what a longer previous line left */
    fflush(p->f);
    p->last_draw = t;
    p->drawn = 1;
}

void sbc_progress_update(sbc_progress *p, long done)
{
    if (!p) return;
    p->done = done;
    double t = now_s();
    if (!p->drawn || t - p->last_draw >= 0.1) draw(p, t);
}

void sbc_progress_count(sbc_progress *p, const char *unit, long n)
{
    if (!p) return;
    p->unit2 = unit;
    p->done2 = n;
}

void sbc_progress_finish(sbc_progress *p)
{
    if (!p) return;
    draw(p, now_s());
    fputc('\n', p->f);
    fflush(p->f);
    free(p);
}
