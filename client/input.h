/*
 * input.h — sbertctl's document readers: the records `sbertctl add --file F` sends.
 *
 * Three formats, read as a stream (memory is bounded by the longest record, not the file):
 *   txt    one document per line; "\n" or "\r\n" line ends; blank lines are skipped (an empty
 *          text is not a document); no id, no metadata.
 *   jsonl  one JSON object per line: "text" (string, required), "id" (string or integer,
 *          optional), "metadata" (object, optional); other keys are refused so that a typo such
 *          as "txt" is reported instead of silently dropped. Blank lines are skipped, and so is a
 *          line {"cursor": "..."} alone (the last line of `sbertctl list --json` when more
 *          remained), so that list's output reads back.
 *   csv    RFC 4180: comma-separated, fields optionally enclosed in double quotes, a quote inside
 *          a quoted field doubled (""), quoted fields may hold commas and line breaks; "\n" or
 *          "\r\n" record ends. The first record is the header. text_column (required) and
 *          id_column (optional) name header fields, or, when no header field has that name and
 *          it is all digits, give a 1-based column number. Every other column becomes a metadata
 *          string value under its header name. A record with a different field count than the
 *          header is an error.
 * The path "-" reads standard input. All texts must be valid UTF-8 (checked here so that the
 * error names the line rather than a batch).
 *
 * Errors: functions return 0 or a negative SBC_INPUT_E* code; sbc_input_strerror() names it, and
 * errbuf (when given) receives a sentence with the file name and line number.
 * Thread safety: a reader is used by one thread at a time; distinct readers are independent.
 */
#ifndef SBC_INPUT_H
#define SBC_INPUT_H

#include <stddef.h>
#include <stdio.h>

enum {
    SBC_INPUT_OK = 0,
    SBC_INPUT_ENOMEM = -1,  /* allocation failed */
    SBC_INPUT_EIO = -2,     /* the file could not be opened or read */
    SBC_INPUT_EFORMAT = -3, /* a record is malformed (bad JSON, bad CSV quoting, field count) */
    SBC_INPUT_EUTF8 = -4,   /* a text is not valid UTF-8 */
    SBC_INPUT_ECOLUMN = -5, /* a CSV column named by the caller is not in the header */
    SBC_INPUT_EINVAL = -6,  /* a bad argument (unknown format, text_column missing for csv) */
};

const char *sbc_input_strerror(int err);

enum sbc_input_format { SBC_FORMAT_TXT = 0, SBC_FORMAT_JSONL = 1, SBC_FORMAT_CSV = 2 };

/* Parses "txt", "jsonl" or "csv" into *out; returns SBC_INPUT_EINVAL for anything else. */
int sbc_input_format_parse(const char *name, enum sbc_input_format *out);

/* The format a path implies: ".jsonl"/".ndjson" -> jsonl, ".csv" -> csv, anything else
 * (including "-") -> txt. */
enum sbc_input_format sbc_input_format_guess(const char *path);

/* One record. Every pointer is borrowed from the reader and valid until the next
 * sbc_input_next() or sbc_input_close() on it. */
struct sbc_doc {
    const char *id;   /* NULL when the record has none; a jsonl integer id as its digits */
    const char *text; /* NUL-terminated; text_len bytes, never 0 */
    size_t text_len;
    const char *metadata_json; /* a JSON object as text, or NULL */
    long line;                 /* 1-based line where the record starts */
};

typedef struct sbc_input sbc_input;

/* Opens path ("-" for stdin, which is not closed by sbc_input_close()) in the given format.
 * text_column/id_column are for csv only (text_column required there; both ignored otherwise).
 * For csv the header is read here, so a missing column is reported before any record.
 * On success *out owns the reader; on failure *out is NULL. */
int sbc_input_open(const char *path, enum sbc_input_format format, const char *text_column,
                   const char *id_column, sbc_input **out, char *errbuf, size_t errlen);

/* Reads the next record into *doc. Returns 1 when a record was read, 0 at end of input, or a
 * negative code (the reader is then unusable; errbuf names the line). */
int sbc_input_next(sbc_input *in, struct sbc_doc *doc, char *errbuf, size_t errlen);

/* Closes the reader. NULL is allowed. */
void sbc_input_close(sbc_input *in);

/* Counts the records of a regular file by reading it through once (for the progress bar's
 * total). Returns the count, or -1 when path is "-", not a regular file, or unreadable/malformed
 * (the real read reports the error then). */
long sbc_input_count(const char *path, enum sbc_input_format format, const char *text_column,
                     const char *id_column);

#endif
