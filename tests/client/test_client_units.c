/* Unit tests of sbertctl's readers (txt, jsonl, csv per RFC 4180, stdin) and tables. */
#define _GNU_SOURCE
#include "input.h"
#include "output.h"
#include "rotate.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                                   \
            fprintf(stderr, "%s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__, a_ ? a_ : "(null)",   \
                    b_ ? b_ : "(null)");                                                           \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static char dir[] = "/tmp/sbertctl-units-XXXXXX";

static const char *write_file(const char *name, const char *content, size_t len)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(content, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    return path;
}
#define WRITE(name, lit) write_file(name, lit, sizeof(lit) - 1)

/* Reads every record of path; docs[i] gets "id|text|metadata" (empty parts for NULL). Returns
 * the number of records, or the negative error code, with errbuf filled. */
static int read_all(const char *path, enum sbc_input_format fmt, const char *tc, const char *ic,
                    char out[][256], int cap, char *errbuf, size_t errlen)
{
    sbc_input *in;
    int r = sbc_input_open(path, fmt, tc, ic, &in, errbuf, errlen);
    if (r < 0) return r;
    int n = 0;
    struct sbc_doc d;
    while ((r = sbc_input_next(in, &d, errbuf, errlen)) == 1) {
        if (n < cap)
            snprintf(out[n], 256, "%s|%s|%s", d.id ? d.id : "", d.text,
                     d.metadata_json ? d.metadata_json : "");
        n++;
    }
    sbc_input_close(in);
    return r < 0 ? r : n;
}

static void test_txt(void)
{
    char docs[8][256], err[256];
    const char *p = WRITE("a.txt", "first line\r\n\n   \nsecond line\nno newline at end");
    CHECK(sbc_input_format_guess(p) == SBC_FORMAT_TXT);
    CHECK(read_all(p, SBC_FORMAT_TXT, NULL, NULL, docs, 8, err, sizeof err) == 3);
    CHECK_STR(docs[0], "|first line|");
    CHECK_STR(docs[1], "|second line|");
    CHECK_STR(docs[2], "|no newline at end|");
    CHECK(sbc_input_count(p, SBC_FORMAT_TXT, NULL, NULL) == 3);

    /* An overlong encoding of '/' (C0 AF) on line 2: refused, and the message names the line. */
    p = WRITE("bad.txt", "fine\nbad \xC0\xAF here\n");
    CHECK(read_all(p, SBC_FORMAT_TXT, NULL, NULL, docs, 8, err, sizeof err) == SBC_INPUT_EUTF8);
    CHECK(strstr(err, "bad.txt:2:") != NULL);
    /* A UTF-16 surrogate encoded in UTF-8 is not valid UTF-8 either. */
    p = WRITE("sur.txt", "\xED\xA0\x80\n");
    CHECK(read_all(p, SBC_FORMAT_TXT, NULL, NULL, docs, 8, err, sizeof err) == SBC_INPUT_EUTF8);
    p = WRITE("ok.txt", "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80\n");
    CHECK(read_all(p, SBC_FORMAT_TXT, NULL, NULL, docs, 8, err, sizeof err) == 1);

    CHECK(read_all("/nonexistent/x.txt", SBC_FORMAT_TXT, NULL, NULL, docs, 8, err, sizeof err) ==
          SBC_INPUT_EIO);
    CHECK(strstr(err, "/nonexistent/x.txt") != NULL);
}

static void test_jsonl(void)
{
    char docs[8][256], err[256];
    const char *p = WRITE("a.jsonl", "{\"text\":\"hello\"}\n"
                                     "\n"
                                     "{\"id\":\"d2\",\"text\":\"with id\",\"metadata\":{\"k\":1}}\n"
                                     "{\"id\":42,\"text\":\"numeric id\",\"metadata\":null}\r\n");
    CHECK(sbc_input_format_guess(p) == SBC_FORMAT_JSONL);
    CHECK(read_all(p, SBC_FORMAT_JSONL, NULL, NULL, docs, 8, err, sizeof err) == 3);
    CHECK_STR(docs[0], "|hello|");
    CHECK_STR(docs[1], "d2|with id|{\"k\":1}");
    CHECK_STR(docs[2], "42|numeric id|");

    struct {
        const char *content;
        int err;
        const char *needle;
    } bad[] = {
        {"{\"text\":\"a\"}\n{\"txt\":\"typo\"}\n", SBC_INPUT_EFORMAT, ":2:"},
        {"[1,2]\n", SBC_INPUT_EFORMAT, "not a JSON object"},
        {"{\"text\":\"a\"\n", SBC_INPUT_EFORMAT, "not valid JSON"},
        {"{\"text\":5}\n", SBC_INPUT_EFORMAT, "\"text\""},
        {"{\"id\":\"x\"}\n", SBC_INPUT_EFORMAT, "no \"text\""},
        {"{\"text\":\"\"}\n", SBC_INPUT_EFORMAT, "empty text"},
        {"{\"text\":\"a\",\"metadata\":[1]}\n", SBC_INPUT_EFORMAT, "metadata"},
        {"{\"text\":\"a\"} {\"text\":\"b\"}\n", SBC_INPUT_EFORMAT, "more than one"},
        {"{\"text\":\"\xFF\"}\n", SBC_INPUT_EUTF8, ":1:"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = write_file("bad.jsonl", bad[i].content, strlen(bad[i].content));
        err[0] = '\0';
        int r = read_all(p, SBC_FORMAT_JSONL, NULL, NULL, docs, 8, err, sizeof err);
        if (r != bad[i].err || !strstr(err, bad[i].needle)) {
            fprintf(stderr, "jsonl case %zu: got %d \"%s\"\n", i, r, err);
            failures++;
        }
    }
}

static void test_csv(void)
{
    char docs[8][256], err[256];
    /* RFC 4180: quoted commas, doubled quotes, a line break inside quotes, CRLF record ends,
     * an empty field, a BOM before the header, a blank line between records. */
    const char *p = WRITE("a.csv", "\xEF\xBB\xBFid,text,lang\r\n"
                                   "1,\"Hello, world\",en\r\n"
                                   "2,\"She said \"\"hi\"\"\",en\r\n"
                                   "\r\n"
                                   "3,\"two\nlines\",\r\n"
                                   "4,plain,fr");
    CHECK(sbc_input_format_guess(p) == SBC_FORMAT_CSV);
    CHECK(read_all(p, SBC_FORMAT_CSV, "text", "id", docs, 8, err, sizeof err) == 4);
    CHECK_STR(docs[0], "1|Hello, world|{\"lang\":\"en\"}");
    CHECK_STR(docs[1], "2|She said \"hi\"|{\"lang\":\"en\"}");
    CHECK_STR(docs[2], "3|two\nlines|{\"lang\":\"\"}");
    CHECK_STR(docs[3], "4|plain|{\"lang\":\"fr\"}");
    CHECK(sbc_input_count(p, SBC_FORMAT_CSV, "text", "id") == 4);

    /* Columns by 1-based number; without an id column the id column is metadata. */
    CHECK(read_all(p, SBC_FORMAT_CSV, "2", NULL, docs, 8, err, sizeof err) == 4);
    CHECK_STR(docs[0], "|Hello, world|{\"id\":\"1\",\"lang\":\"en\"}");

    CHECK(read_all(p, SBC_FORMAT_CSV, "body", NULL, docs, 8, err, sizeof err) == SBC_INPUT_ECOLUMN);
    CHECK(strstr(err, "\"body\"") != NULL);
    CHECK(read_all(p, SBC_FORMAT_CSV, NULL, NULL, docs, 8, err, sizeof err) == SBC_INPUT_EINVAL);

    struct {
        const char *content;
        int err;
        const char *needle;
    } bad[] = {
        {"text,x\na,b\nc\n", SBC_INPUT_EFORMAT, ":3: 1 fields where the header has 2"},
        {"text\n\"open\n", SBC_INPUT_EFORMAT, "unterminated"},
        {"text\n\"a\"b\n", SBC_INPUT_EFORMAT, "after the closing quote"},
        {"text\nab\"c\n", SBC_INPUT_EFORMAT, "quote inside an unquoted field"},
        {"", SBC_INPUT_EFORMAT, "no header"},
        {"text\n\xC3\x28\n", SBC_INPUT_EUTF8, ":2:"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = write_file("bad.csv", bad[i].content, strlen(bad[i].content));
        err[0] = '\0';
        int r = read_all(p, SBC_FORMAT_CSV, "text", NULL, docs, 8, err, sizeof err);
        if (r != bad[i].err || !strstr(err, bad[i].needle)) {
            fprintf(stderr, "csv case %zu: got %d \"%s\"\n", i, r, err);
            failures++;
        }
    }
}

static void test_stdin(void)
{
    char docs[8][256], err[256];
    const char *p = WRITE("stdin.txt", "from stdin\nsecond\n");
    int fd = open(p, O_RDONLY);
    CHECK(fd >= 0 && dup2(fd, STDIN_FILENO) == STDIN_FILENO);
    close(fd);
    CHECK(read_all("-", SBC_FORMAT_TXT, NULL, NULL, docs, 8, err, sizeof err) == 2);
    CHECK_STR(docs[1], "|second|");
    CHECK(sbc_input_count("-", SBC_FORMAT_TXT, NULL, NULL) == -1);
    enum sbc_input_format f;
    CHECK(sbc_input_format_parse("csv", &f) == 0 && f == SBC_FORMAT_CSV);
    CHECK(sbc_input_format_parse("xml", &f) == SBC_INPUT_EINVAL);
}

static void test_table(void)
{
    CHECK(sbc_display_width("abc", 3) == 3);
    CHECK(sbc_display_width("\xE6\x97\xA5\xE6\x9C\xAC", 6) == 4); /* two CJK: 2 columns each */
    CHECK(sbc_display_width("e\xCC\x81", 3) == 1);                /* e + combining acute */

    struct sbc_column cols[] = {{"TEXT", SBC_COL_SHRINK}, {"SCORE", SBC_COL_RIGHT}};
    sbc_table *t;
    CHECK(sbc_table_create(cols, 2, &t) == 0);
    const char *r1[] = {"The new movie is awesome", "0.8939"};
    const char *r2[] = {"tab\there", "0.1"};
    CHECK(sbc_table_add_row(t, r1) == 0);
    CHECK(sbc_table_add_row(t, r2) == 0);

    char *buf;
    size_t len;
    FILE *f = open_memstream(&buf, &len);
    CHECK(sbc_table_print(t, f, 0) == 0);
    fclose(f);
    CHECK_STR(buf, "TEXT                       SCORE\n"
                   "The new movie is awesome  0.8939\n"
                   "tab here                     0.1\n");
    free(buf);

    f = open_memstream(&buf, &len);
    CHECK(sbc_table_print(t, f, 20) == 0);
    fclose(f);
    CHECK_STR(buf, "TEXT           SCORE\n"
                   "The new mov\xE2\x80\xA6  0.8939\n"
                   "tab here         0.1\n");
    free(buf);
    sbc_table_free(t);

    /* Empty trailing cells are not padded: no line ends in spaces. */
    struct sbc_column c3[] = {{"A", 0}, {"B", 0}, {"C", 0}};
    CHECK(sbc_table_create(c3, 3, &t) == 0);
    const char *e1[] = {"long cell", "", ""};
    CHECK(sbc_table_add_row(t, e1) == 0);
    f = open_memstream(&buf, &len);
    CHECK(sbc_table_print(t, f, 0) == 0);
    fclose(f);
    CHECK_STR(buf, "A          B  C\n"
                   "long cell\n");
    free(buf);
    sbc_table_free(t);
}

static void touch(const char *path)
{
    FILE *f = fopen(path, "wb");
    CHECK(f && fclose(f) == 0);
}

/* Names, and pruning a folder that also holds things that are not backups. */
static void test_rotate(void)
{
    char name[64], root[600], err[700], p[700];
    CHECK(sbc_rotate_name(0, 0, name, sizeof name) == 0 &&
          strcmp(name, "sbertd-19700101T000000Z") == 0);
    CHECK(sbc_rotate_name(0, 12, name, sizeof name) == 0 &&
          strcmp(name, "sbertd-19700101T000000Z-12") == 0);
    CHECK(sbc_rotate_is_name("sbertd-20261203T041500Z") &&
          sbc_rotate_is_name("sbertd-20261203T041500Z-3"));
    CHECK(!sbc_rotate_is_name("sbertd-20261203T041500Z-0") && !sbc_rotate_is_name("sbertd-2026"));
    CHECK(!sbc_rotate_is_name("sbertd-20261203T041500Zx") &&
          !sbc_rotate_is_name("x-20261203T041500Z"));

    snprintf(root, sizeof root, "%s/rot", dir);
    CHECK(mkdir(root, 0755) == 0);
    const char *backups[] = {"sbertd-20260101T000000Z", "sbertd-20260102T000000Z",
                             "sbertd-20260102T000000Z-2", "sbertd-20260102T000000Z-10",
                             "sbertd-20260103T000000Z"};
    for (size_t i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/%s", root, backups[i]);
        CHECK(mkdir(p, 0755) == 0);
        snprintf(p, sizeof p, "%s/%s/store.mdb", root, backups[i]);
        touch(p);
    }
    /* look-alikes: no store.mdb; a subfolder inside; a symbolic link; a file */
    snprintf(p, sizeof p, "%s/sbertd-20250101T000000Z", root);
    CHECK(mkdir(p, 0755) == 0);
    snprintf(p, sizeof p, "%s/sbertd-20250102T000000Z", root);
    CHECK(mkdir(p, 0755) == 0);
    snprintf(p, sizeof p, "%s/sbertd-20250102T000000Z/store.mdb", root);
    touch(p);
    snprintf(p, sizeof p, "%s/sbertd-20250102T000000Z/sub", root);
    CHECK(mkdir(p, 0755) == 0);
    snprintf(p, sizeof p, "%s/sbertd-20250103T000000Z", root);
    CHECK(symlink(backups[0], p) == 0);
    snprintf(p, sizeof p, "%s/sbertd-20250104T000000Z", root);
    touch(p);

    CHECK(sbc_rotate_next(root, 1767312000, name, sizeof name, err, sizeof err) == 0 &&
          strcmp(name, "sbertd-20260102T000000Z-11") == 0); /* 2026-01-02 00:00:00 UTC */

    char **removed;
    size_t n;
    CHECK(sbc_rotate_prune(root, 2, &removed, &n, err, sizeof err) == 0);
    CHECK(n == 3);
    const char *want[] = {"sbertd-20260101T000000Z", "sbertd-20260102T000000Z",
                          "sbertd-20260102T000000Z-2"};
    for (size_t i = 0; i < n && i < 3; i++) {
        CHECK(strcmp(removed[i], want[i]) == 0);
        free(removed[i]);
    }
    free(removed);
    const char *kept[] = {"sbertd-20260102T000000Z-10", "sbertd-20260103T000000Z",
                          "sbertd-20250101T000000Z", "sbertd-20250102T000000Z",
                          "sbertd-20250104T000000Z"};
    for (size_t i = 0; i < 5; i++) {
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", root, kept[i]);
        CHECK(stat(p, &st) == 0);
    }
    CHECK(sbc_rotate_prune(root, 0, &removed, &n, err, sizeof err) == -1);
    CHECK(sbc_rotate_prune("/nonexistent/dir", 2, &removed, &n, err, sizeof err) == -1 &&
          strstr(err, "/nonexistent/dir") != NULL);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_txt();
    test_jsonl();
    test_csv();
    test_stdin();
    test_table();
    test_rotate();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    puts("all client unit checks passed");
    return 0;
}
