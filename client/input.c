/* input.c — the txt, jsonl and csv readers behind input.h. */
#define _GNU_SOURCE
#include "input.h"
#include "sbert_proto.h"
#include "sbert_util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct sbc_input {
    FILE *f;
    int owns_file;
    char *path; /* for error messages; "<stdin>" for "-" */
    enum sbc_input_format format;
    long line; /* lines consumed so far */

    char *linebuf; /* txt/jsonl: getline() buffer */
    size_t linecap;

    /* Outputs of the current record, freed on the next call. */
    char *id_buf;
    char *meta_buf;
    cJSON *json;

    /* csv */
    char **header;
    size_t n_header;
    size_t text_col, id_col; /* id_col == SIZE_MAX: none */
    char *rec;               /* the current record's fields, NUL-separated */
    size_t rec_len, rec_cap;
    size_t *field_off;
    size_t n_fields, fields_cap;
};

const char *sbc_input_strerror(int err)
{
    static const char *const msgs[] = {
        [0] = "success",
        [-SBC_INPUT_ENOMEM] = "out of memory",
        [-SBC_INPUT_EIO] = "cannot read the input",
        [-SBC_INPUT_EFORMAT] = "malformed record",
        [-SBC_INPUT_EUTF8] = "text is not valid UTF-8",
        [-SBC_INPUT_ECOLUMN] = "no such CSV column",
        [-SBC_INPUT_EINVAL] = "invalid argument",
    };
    if (err > 0 || -err >= (int)(sizeof msgs / sizeof msgs[0])) return "unknown error";
    return msgs[-err];
}

int sbc_input_format_parse(const char *name, enum sbc_input_format *out)
{
    static const struct {
        const char *name;
        enum sbc_input_format f;
    } table[] = {{"txt", SBC_FORMAT_TXT}, {"jsonl", SBC_FORMAT_JSONL}, {"csv", SBC_FORMAT_CSV}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(name, table[i].name) == 0) {
            *out = table[i].f;
            return 0;
        }
    return SBC_INPUT_EINVAL;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

enum sbc_input_format sbc_input_format_guess(const char *path)
{
    if (ends_with(path, ".jsonl") || ends_with(path, ".ndjson")) return SBC_FORMAT_JSONL;
    if (ends_with(path, ".csv")) return SBC_FORMAT_CSV;
    return SBC_FORMAT_TXT;
}

static int fail(sbc_input *in, long line, int err, char *errbuf, size_t errlen, const char *fmt,
                ...)
{
    if (errbuf && errlen) {
        char detail[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(detail, sizeof detail, fmt, ap);
        va_end(ap);
        if (line > 0)
            snprintf(errbuf, errlen, "%s:%ld: %s", in->path, line, detail);
        else
            snprintf(errbuf, errlen, "%s: %s", in->path, detail);
    }
    return err;
}

static void clear_record(sbc_input *in)
{
    free(in->id_buf);
    in->id_buf = NULL;
    free(in->meta_buf);
    in->meta_buf = NULL;
    cJSON_Delete(in->json);
    in->json = NULL;
}

/* ---- csv ---------------------------------------------------------------------------------- */

static int rec_putc(sbc_input *in, char c)
{
    if (in->rec_len == in->rec_cap) {
        size_t cap = in->rec_cap ? in->rec_cap * 2 : 256;
        char *p = realloc(in->rec, cap);
        if (!p) return SBC_INPUT_ENOMEM;
        in->rec = p, in->rec_cap = cap;
    }
    in->rec[in->rec_len++] = c;
    return 0;
}

static int field_start(sbc_input *in)
{
    if (in->n_fields == in->fields_cap) {
        size_t cap = in->fields_cap ? in->fields_cap * 2 : 16;
        size_t *p = realloc(in->field_off, cap * sizeof *p);
        if (!p) return SBC_INPUT_ENOMEM;
        in->field_off = p, in->fields_cap = cap;
    }
    in->field_off[in->n_fields++] = in->rec_len;
    return 0;
}

/* Reads one RFC 4180 record into in->rec / in->field_off. Returns 1, 0 at end of input, or a
 * negative code. *start_line receives the line the record starts on. A record consisting of an
 * empty line is skipped, as a blank line is not a record. */
static int csv_read_record(sbc_input *in, long *start_line, char *errbuf, size_t errlen)
{
    for (;;) {
        in->rec_len = 0;
        in->n_fields = 0;
        *start_line = in->line + 1;
        int c = getc_unlocked(in->f);
        if (c == EOF)
            return ferror(in->f) ? fail(in, 0, SBC_INPUT_EIO, errbuf, errlen, "%s", strerror(errno))
                                 : 0;
        if (c == '\n') {
            in->line++;
            continue;
        }
        if (c == '\r') {
            int d = getc_unlocked(in->f);
            if (d == '\n') {
                in->line++;
                continue;
            }
            if (d != EOF) ungetc(d, in->f);
        }
        int err;
        int quoted = 0, after_quote = 0;
        if ((err = field_start(in)) < 0) return err;
        /* State machine over characters: a field begins unquoted or quoted; inside quotes only
         * a '"' followed by '"' is a literal quote, a '"' followed by ',' or a line end closes the
         * field, anything else after the closing quote is malformed (RFC 4180 section 2.5-2.7). */
        for (;; c = getc_unlocked(in->f)) {
            if (quoted) {
                if (c == EOF)
                    return fail(in, *start_line, SBC_INPUT_EFORMAT, errbuf, errlen,
                                "unterminated quoted field");
                if (c == '"') {
                    int d = getc_unlocked(in->f);
                    if (d == '"') {
                        if ((err = rec_putc(in, '"')) < 0) return err;
                        continue;
                    }
                    quoted = 0, after_quote = 1;
                    c = d;
                } else {
                    if (c == '\n') in->line++;
                    if ((err = rec_putc(in, (char)c)) < 0) return err;
                    continue;
                }
            }
            if (c == ',') {
                if ((err = rec_putc(in, '\0')) < 0 || (err = field_start(in)) < 0) return err;
                after_quote = 0;
                continue;
            }
            if (c == '\r') {
                int d = getc_unlocked(in->f);
                if (d == '\n' || d == EOF)
                    c = '\n';
                else
                    ungetc(d, in->f);
            }
            if (c == '\n' || c == EOF) {
                if (c == '\n') in->line++;
                if ((err = rec_putc(in, '\0')) < 0) return err;
                return 1;
            }
            if (after_quote)
                return fail(in, *start_line, SBC_INPUT_EFORMAT, errbuf, errlen,
                            "character after the closing quote of a field");
            if (c == '"') {
                if (in->rec_len != in->field_off[in->n_fields - 1])
                    return fail(in, *start_line, SBC_INPUT_EFORMAT, errbuf, errlen,
                                "quote inside an unquoted field");
                quoted = 1;
                continue;
            }
            if ((err = rec_putc(in, (char)c)) < 0) return err;
        }
    }
}

static const char *csv_field(const sbc_input *in, size_t i)
{
    return in->rec + in->field_off[i];
}

static int all_digits(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

static int csv_find_column(sbc_input *in, const char *name, size_t *out, char *errbuf,
                           size_t errlen)
{
    for (size_t i = 0; i < in->n_header; i++)
        if (strcmp(in->header[i], name) == 0) {
            *out = i;
            return 0;
        }
    if (all_digits(name)) {
        unsigned long k = strtoul(name, NULL, 10);
        if (k >= 1 && k <= in->n_header) {
            *out = k - 1;
            return 0;
        }
    }
    return fail(in, 1, SBC_INPUT_ECOLUMN, errbuf, errlen,
                "no column \"%s\" in the header (%zu columns)", name, in->n_header);
}

static int csv_open(sbc_input *in, const char *text_column, const char *id_column, char *errbuf,
                    size_t errlen)
{
    long line;
    int r = csv_read_record(in, &line, errbuf, errlen);
    if (r < 0) return r;
    if (r == 0)
        return fail(in, 0, SBC_INPUT_EFORMAT, errbuf, errlen, "empty file: no header record");
    in->header = calloc(in->n_fields, sizeof *in->header);
    if (!in->header) return SBC_INPUT_ENOMEM;
    in->n_header = in->n_fields;
    for (size_t i = 0; i < in->n_fields; i++) {
        const char *h = csv_field(in, i);
        /* A UTF-8 byte order mark before the first header name is common in exported CSV. */
        if (i == 0 && strncmp(h, "\xEF\xBB\xBF", 3) == 0) h += 3;
        if (!(in->header[i] = strdup(h))) return SBC_INPUT_ENOMEM;
    }
    if ((r = csv_find_column(in, text_column, &in->text_col, errbuf, errlen)) < 0) return r;
    in->id_col = SIZE_MAX;
    if (id_column && (r = csv_find_column(in, id_column, &in->id_col, errbuf, errlen)) < 0)
        return r;
    return 0;
}

static int csv_next(sbc_input *in, struct sbc_doc *doc, char *errbuf, size_t errlen)
{
    long line;
    int r = csv_read_record(in, &line, errbuf, errlen);
    if (r <= 0) return r;
    if (in->n_fields != in->n_header)
        return fail(in, line, SBC_INPUT_EFORMAT, errbuf, errlen,
                    "%zu fields where the header has %zu", in->n_fields, in->n_header);
    cJSON *meta = NULL;
    for (size_t i = 0; i < in->n_fields; i++) {
        if (i == in->text_col || i == in->id_col) continue;
        const char *v = csv_field(in, i);
        if (!sbert_util_utf8_valid((const char *)v, strlen(v)))
            return fail(in, line, SBC_INPUT_EUTF8, errbuf, errlen,
                        "column \"%s\" is not valid UTF-8", in->header[i]);
        if (!meta && !(meta = cJSON_CreateObject())) return SBC_INPUT_ENOMEM;
        if (!cJSON_AddStringToObject(meta, in->header[i], v)) {
            cJSON_Delete(meta);
            return SBC_INPUT_ENOMEM;
        }
    }
    if (meta) {
        in->meta_buf = cJSON_PrintUnformatted(meta);
        cJSON_Delete(meta);
        if (!in->meta_buf) return SBC_INPUT_ENOMEM;
    }
    doc->text = csv_field(in, in->text_col);
    doc->text_len = strlen(doc->text);
    doc->id = in->id_col == SIZE_MAX ? NULL : csv_field(in, in->id_col);
    if (doc->id && !*doc->id) return fail(in, line, SBC_INPUT_EFORMAT, errbuf, errlen, "empty id");
    doc->metadata_json = in->meta_buf;
    doc->line = line;
    return 1;
}

/* ---- txt and jsonl ------------------------------------------------------------------------ */

/* Reads the next non-blank line, without its line end. Returns its length, 0 at end of input,
 * or a negative code. */
static long read_line(sbc_input *in, char *errbuf, size_t errlen)
{
    for (;;) {
        errno = 0;
        ssize_t n = getline(&in->linebuf, &in->linecap, in->f);
        if (n < 0) {
            if (ferror(in->f))
                return fail(in, 0, SBC_INPUT_EIO, errbuf, errlen, "%s", strerror(errno));
            return 0;
        }
        in->line++;
        while (n > 0 && (in->linebuf[n - 1] == '\n' || in->linebuf[n - 1] == '\r'))
            in->linebuf[--n] = '\0';
        if ((size_t)n != strlen(in->linebuf))
            return fail(in, in->line, SBC_INPUT_EFORMAT, errbuf, errlen, "NUL byte in line");
        size_t k = 0;
        while (k < (size_t)n && (in->linebuf[k] == ' ' || in->linebuf[k] == '\t'))
            k++;
        if (k < (size_t)n) return n;
    }
}

static int txt_next(sbc_input *in, struct sbc_doc *doc, char *errbuf, size_t errlen)
{
    long n = read_line(in, errbuf, errlen);
    if (n <= 0) return (int)n;
    doc->text = in->linebuf;
    doc->text_len = (size_t)n;
    doc->id = NULL;
    doc->metadata_json = NULL;
    doc->line = in->line;
    return 1;
}

/* A line {"cursor": "..."} alone: the last line of `sbertctl list --json` when more remained. */
static int is_cursor_line(const cJSON *o)
{
    return cJSON_GetArraySize(o) == 1 &&
           cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "cursor"));
}

static int jsonl_next(sbc_input *in, struct sbc_doc *doc, char *errbuf, size_t errlen)
{
again:;
    long n = read_line(in, errbuf, errlen);
    if (n <= 0) return (int)n;
    long line = in->line;
    if (!sbert_util_utf8_valid((const char *)in->linebuf, (size_t)n))
        return fail(in, line, SBC_INPUT_EUTF8, errbuf, errlen, "line is not valid UTF-8");
    const char *end = NULL;
    in->json = cJSON_ParseWithLengthOpts(in->linebuf, (size_t)n, &end, 0);
    if (!in->json) return fail(in, line, SBC_INPUT_EFORMAT, errbuf, errlen, "not valid JSON");
    if (!cJSON_IsObject(in->json))
        return fail(in, line, SBC_INPUT_EFORMAT, errbuf, errlen, "not a JSON object");
    for (end = end ? end : in->linebuf + n; end < in->linebuf + n; end++)
        if (*end != ' ' && *end != '\t')
            return fail(in, line, SBC_INPUT_EFORMAT, errbuf, errlen,
                        "more than one JSON value on the line");
    if (is_cursor_line(in->json)) {
        cJSON_Delete(in->json);
        in->json = NULL;
        goto again;
    }
    memset(doc, 0, sizeof *doc);
    const cJSON *item;
    cJSON_ArrayForEach(item, in->json)
    {
        const char *k = item->string;
        if (strcmp(k, "text") == 0) {
            if (!cJSON_IsString(item))
                return fail(in, line, SBC_INPUT_EFORMAT, errbuf, errlen,
                            "\"text\" is not a string");
            doc->text = item->valuestring;
        } else if (strcmp(k, "id") == 0) {
            if (cJSON_IsString(item)) {
                doc->id = item->valuestring;
            } else if (cJSON_IsNumber(item) &&
                       item->valuedouble == (double)(long long)item->valuedouble) {
                if (asprintf(&in->id_buf, "%lld", (long long)item->valuedouble) < 0) {
                    in->id_buf = NULL;
                    return SBC_INPUT_ENOMEM;
                }
                doc->id = in->id_buf;
            } else if (!cJSON_IsNull(item)) {
                return fail(in, line, SBC_INPUT_EFORMAT, errbuf, errlen,
                            "\"id\" is not a string or an integer");
            }
        } else if (strcmp(k, "metadata") == 0) {
            if (cJSON_IsNull(item)) continue;
            if (!cJSON_IsObject(item))
                return fail(in, line, SBC_INPUT_EFORMAT, errbuf, errlen,
                            "\"metadata\" is not an object");
            if (!(in->meta_buf = cJSON_PrintUnformatted(item))) return SBC_INPUT_ENOMEM;
            doc->metadata_json = in->meta_buf;
        } else {
            return fail(in, line, SBC_INPUT_EFORMAT, errbuf, errlen,
                        "unknown key \"%s\" (expected text, id, metadata)", k);
        }
    }
    if (!doc->text) return fail(in, line, SBC_INPUT_EFORMAT, errbuf, errlen, "no \"text\"");
    if (doc->id && !*doc->id) return fail(in, line, SBC_INPUT_EFORMAT, errbuf, errlen, "empty id");
    doc->text_len = strlen(doc->text);
    doc->line = line;
    return 1;
}

/* ---- common ------------------------------------------------------------------------------- */

int sbc_input_open(const char *path, enum sbc_input_format format, const char *text_column,
                   const char *id_column, sbc_input **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    if (!path || format > SBC_FORMAT_CSV) return SBC_INPUT_EINVAL;
    sbc_input *in = calloc(1, sizeof *in);
    if (!in) return SBC_INPUT_ENOMEM;
    in->format = format;
    in->path = strdup(strcmp(path, "-") == 0 ? "<stdin>" : path);
    if (!in->path) {
        free(in);
        return SBC_INPUT_ENOMEM;
    }
    int r = 0;
    if (format == SBC_FORMAT_CSV && !text_column) {
        r = fail(in, 0, SBC_INPUT_EINVAL, errbuf, errlen, "csv input needs --text-column");
        goto out;
    }
    if (strcmp(path, "-") == 0) {
        in->f = stdin;
    } else {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            r = fail(in, 0, SBC_INPUT_EIO, errbuf, errlen, "is a directory");
            goto out;
        }
        if (!(in->f = fopen(path, "r"))) {
            r = fail(in, 0, SBC_INPUT_EIO, errbuf, errlen, "%s", strerror(errno));
            goto out;
        }
        in->owns_file = 1;
    }
    if (format == SBC_FORMAT_CSV) r = csv_open(in, text_column, id_column, errbuf, errlen);
out:
    if (r < 0) {
        sbc_input_close(in);
        return r;
    }
    *out = in;
    return 0;
}

int sbc_input_next(sbc_input *in, struct sbc_doc *doc, char *errbuf, size_t errlen)
{
    clear_record(in);
    int r;
    switch (in->format) {
    case SBC_FORMAT_TXT:
        r = txt_next(in, doc, errbuf, errlen);
        break;
    case SBC_FORMAT_JSONL:
        r = jsonl_next(in, doc, errbuf, errlen);
        break;
    default:
        r = csv_next(in, doc, errbuf, errlen);
        break;
    }
    if (r != 1) return r;
    if (doc->text_len == 0)
        return fail(in, doc->line, SBC_INPUT_EFORMAT, errbuf, errlen, "empty text");
    if (!sbert_util_utf8_valid((const char *)doc->text, doc->text_len) ||
        (doc->id && !sbert_util_utf8_valid((const char *)doc->id, strlen(doc->id))))
        return fail(in, doc->line, SBC_INPUT_EUTF8, errbuf, errlen, "text is not valid UTF-8");
    return 1;
}

void sbc_input_close(sbc_input *in)
{
    if (!in) return;
    clear_record(in);
    if (in->owns_file) fclose(in->f);
    for (size_t i = 0; i < in->n_header; i++)
        free(in->header[i]);
    free(in->header);
    free(in->rec);
    free(in->field_off);
    free(in->linebuf);
    free(in->path);
    free(in);
}

long sbc_input_count(const char *path, enum sbc_input_format format, const char *text_column,
                     const char *id_column)
{
    struct stat st;
    if (strcmp(path, "-") == 0 || stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return -1;
    sbc_input *in;
    if (sbc_input_open(path, format, text_column, id_column, &in, NULL, 0) < 0) return -1;
    long n = 0;
    struct sbc_doc doc;
    int r;
    while ((r = sbc_input_next(in, &doc, NULL, 0)) == 1)
        n++;
    sbc_input_close(in);
    return r < 0 ? -1 : n;
}
