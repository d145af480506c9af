/* Small helpers shared by the encoder tests: checks that fail loudly and file reading. */
#ifndef SBERT_TESTUTIL_H
#define SBERT_TESTUTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Reads a whole file; returns NULL (and *len 0) when it cannot. The caller frees. */
static inline char *read_file(const char *path, size_t *len)
{
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) {
        b[n] = '\0';
        *len = (size_t)n;
    }
    return b;
}

/*
 * Decodes one JSON string literal (the whole of line, quotes included, as Python's json.dumps
 * writes it) into malloc'd UTF-8; *len receives the byte length, which counts embedded NULs
 * (cJSON would stop at them). Returns NULL when line is not such a literal.
 */
static inline char *json_string_decode(const char *line, size_t *len)
{
    size_t n = strlen(line), k = 0;
    if (n < 2 || line[0] != '"') return NULL;
    char *o = malloc(n * 2 + 1);
    if (!o) return NULL;
    for (size_t i = 1; i < n; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c == '"') {
            o[k] = '\0';
            *len = k;
            return i + 1 == n ? o : (free(o), NULL);
        }
        if (c != '\\') {
            o[k++] = (char)c;
            continue;
        }
        c = (unsigned char)line[++i];
        const char *esc = strchr("\"\\/bfnrt", c);
        if (esc && c) {
            o[k++] = "\"\\/\b\f\n\r\t"[esc - "\"\\/bfnrt"];
            continue;
        }
        if (c != 'u' || i + 4 >= n) break;
        unsigned cp = (unsigned)strtoul(
            (char[5]){line[i + 1], line[i + 2], line[i + 3], line[i + 4], 0}, NULL, 16);
        i += 4;
        if (cp >= 0xD800 && cp < 0xDC00 && i + 6 < n && line[i + 1] == '\\' && line[i + 2] == 'u') {
            unsigned lo = (unsigned)strtoul(
                (char[5]){line[i + 3], line[i + 4], line[i + 5], line[i + 6], 0}, NULL, 16);
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 6;
        }
        if (cp < 0x80) {
            o[k++] = (char)cp;
        } else if (cp < 0x800) {
            o[k++] = (char)(0xC0 | cp >> 6);
            o[k++] = (char)(0x80 | (cp & 63));
        } else if (cp < 0x10000) {
            o[k++] = (char)(0xE0 | cp >> 12);
            o[k++] = (char)(0x80 | (cp >> 6 & 63));
            o[k++] = (char)(0x80 | (cp & 63));
        } else {
            o[k++] = (char)(0xF0 | cp >> 18);
            o[k++] = (char)(0x80 | (cp >> 12 & 63));
            o[k++] = (char)(0x80 | (cp >> 6 & 63));
            o[k++] = (char)(0x80 | (cp & 63));
        }
    }
    free(o);
    return NULL;
}

#endif
