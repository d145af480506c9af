/*
 * output.h — sbertctl's terminal output: aligned tables and the ingest progress bar.
 *
 * Tables measure cells in terminal columns (utf8proc character widths: CJK counts two, combining
 * marks zero), replace control characters in cells with spaces so a text with a line break cannot
 * break the layout, and, given a width, shorten the widest "shrinkable" columns with "…" until the
 * table fits. Without a width (output is not a terminal) nothing is shortened: piped output keeps
 * every byte of every text.
 *
 * Errors: functions return 0 or a negative SBC_OUT_E* code (sbc_out_strerror()).
 * Thread safety: none; each object is used by one thread.
 */
#ifndef SBC_OUTPUT_H
#define SBC_OUTPUT_H

#include <stddef.h>
#include <stdio.h>

enum {
    SBC_OUT_OK = 0,
    SBC_OUT_ENOMEM = -1, /* allocation failed */
    SBC_OUT_EINVAL = -2, /* a bad argument (cell count, NULL) */
    SBC_OUT_EIO = -3,    /* writing to the stream failed */
};

const char *sbc_out_strerror(int err);

/* Column flags. */
enum {
    SBC_COL_RIGHT = 1, /* right-aligned (numbers) */
    SBC_COL_SHRINK = 2 /* may be shortened to fit a width */
};

struct sbc_column {
    const char *header; /* copied */
    int flags;
};

typedef struct sbc_table sbc_table;

/* Creates a table of n columns (n >= 1). *out owns it; free with sbc_table_free(). */
int sbc_table_create(const struct sbc_column *cols, size_t n, sbc_table **out);

/* Appends a row of exactly the table's column count; cells are copied (NULL prints empty). */
int sbc_table_add_row(sbc_table *t, const char *const *cells);

/* Prints the header and the rows, columns separated by two spaces, no trailing spaces.
 * width > 0: shorten SBC_COL_SHRINK columns (never below 8 columns each) so lines fit in width.
 * width == 0: print everything. Returns SBC_OUT_EIO when the stream reports an error. */
int sbc_table_print(const sbc_table *t, FILE *f, int width);

void sbc_table_free(sbc_table *t);

/* The display width of UTF-8 text s (n bytes), control characters counting one (they print as a
 * space). Invalid bytes count one each. */
size_t sbc_display_width(const char *s, size_t n);

/* The terminal width of the stream's terminal, or 0 when f is not a terminal. */
int sbc_terminal_width(FILE *f);

/*
 * Progress bar for long-running ingests: "  1200/5000  24%  [######....]  310 docs/s  ETA 0:12".
 * It draws only when the stream is a terminal (otherwise every call is a no-op and returns 0), at
 * most ten times a second, redrawing one line with "\r". total < 0 means unknown: the bar then
 * shows the count and the rate only.
 */
typedef struct sbc_progress sbc_progress;

/* unit is borrowed ("docs") and must outlive the bar. */
int sbc_progress_create(FILE *f, long total, const char *unit, sbc_progress **out);

/* Records that done items are complete (monotonic) and redraws when due. */
void sbc_progress_update(sbc_progress *p, long done);

/* Sets a second count (e.g. passages, when the bar counts files), shown with its rate after the
 * first: "  310 files/s  1200 passages/s". unit is borrowed, as create's. NULL p is allowed. */
void sbc_progress_count(sbc_progress *p, const char *unit, long n);

/* Draws the final state, ends the line and frees p. NULL is allowed. */
void sbc_progress_finish(sbc_progress *p);

#endif
