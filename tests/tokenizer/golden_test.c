/*
 * golden_test.c — every text in tests/golden/tokens.jsonl through sbert_tokenizer_encode() with
 * the model's vocabulary and configuration (lowercase, strip_accents null, chinese chars,
 * max_length from the golden header): the id sequence and the truncated flag must be identical to
 * HF's (a header may name another configuration: "do_lower_case", "strip_accents",
 * "tokenize_chinese_chars" in "meta"). Prints each mismatch (text, expected, got); exits 1 on any.
 *
 * Usage: tokenizer_golden_test MODEL_DIR tokens.jsonl
 */
#include "internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        cap *= 2;
        char *nb = realloc(buf, cap + 1);
        if (!nb) free(buf);
        buf = nb;
    }
    fclose(f);
    if (buf) buf[n] = 0;
    *len = n;
    return buf;
}

static void print_text(const char *s, size_t len)
{
    putchar('"');
    for (size_t i = 0; i < len && i < 300; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7F || c == '"' || c == '\\')
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    printf(len > 300 ? "\"...\n" : "\"\n");
}

static void print_ids(const char *what, const int32_t *ids, size_t n)
{
    printf("  %s (%zu):", what, n);
    for (size_t i = 0; i < n; i++)
        printf(" %d", ids[i]);
    putchar('\n');
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL_DIR tokens.jsonl\n", argv[0]);
        return 2;
    }
    size_t len;
    char *data = slurp(argv[2], &len);
    if (!data) {
        fprintf(stderr, "FAIL: cannot read %s\n", argv[2]);
        return 1;
    }

    int max_len = 0, lineno = 0, checked = 0, bad = 0, n_trunc = 0;
    sbert_tokenizer *tok = NULL;
    char *save = NULL;
    for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        cJSON *o = cJSON_Parse(line);
        if (!o) {
            fprintf(stderr, "FAIL: %s:%d: not JSON\n", argv[2], lineno);
            return 1;
        }
        if (lineno == 1) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "v");
            const cJSON *meta = cJSON_GetObjectItemCaseSensitive(o, "meta");
            const cJSON *ml = meta ? cJSON_GetObjectItemCaseSensitive(meta, "max_length") : NULL;
            if (!cJSON_IsNumber(v) || v->valueint != 1 || !cJSON_IsNumber(ml)) {
                fprintf(stderr,
                        "FAIL: %s: header is not {\"v\": 1, \"meta\": {\"max_length\": N}}\n",
                        argv[2]);
                return 1;
            }
            max_len = ml->valueint;
            /* The model's configuration unless the header names another (HF's null for
             * strip_accents is -1 here). */
            struct sbert_tokenizer_config cfg = {.do_lower_case = 1,
                                                 .strip_accents = -1,
                                                 .tokenize_chinese_chars = 1,
                                                 .max_seq_length = max_len};
            const cJSON *lc = cJSON_GetObjectItemCaseSensitive(meta, "do_lower_case");
            const cJSON *sa = cJSON_GetObjectItemCaseSensitive(meta, "strip_accents");
            const cJSON *cc = cJSON_GetObjectItemCaseSensitive(meta, "tokenize_chinese_chars");
            if (cJSON_IsBool(lc)) cfg.do_lower_case = cJSON_IsTrue(lc);
            if (cJSON_IsBool(sa)) cfg.strip_accents = cJSON_IsTrue(sa);
            if (cJSON_IsBool(cc)) cfg.tokenize_chinese_chars = cJSON_IsTrue(cc);
            char err[512];
            int rc = sbert_tokenizer_load(argv[1], &cfg, &tok, err, sizeof err);
            if (rc) {
                fprintf(stderr, "FAIL: sbert_tokenizer_load(%s): %s (%s)\n", argv[1], err,
                        sbert_strerror(rc));
                return 1;
            }
            if (sbert_tokenizer_vocab_size(tok) != 30522) {
                fprintf(stderr, "FAIL: vocabulary has %zu entries, want 30522\n",
                        sbert_tokenizer_vocab_size(tok));
                return 1;
            }
            cJSON_Delete(o);
            continue;
        }
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "text");
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(o, "ids");
        const cJSON *tr = cJSON_GetObjectItemCaseSensitive(o, "truncated");
        const cJSON *hex = cJSON_GetObjectItemCaseSensitive(o, "utf8_hex");
        if (!cJSON_IsString(text) || !cJSON_IsArray(ids) || !cJSON_IsBool(tr)) {
            fprintf(stderr, "FAIL: %s:%d: want text, ids, truncated\n", argv[2], lineno);
            return 1;
        }
        const char *s = text->valuestring;
        size_t slen = strlen(s);
        char hexbuf[4096];
        if (cJSON_IsString(hex)) {
            size_t hl = strlen(hex->valuestring);
            if (hl % 2 || hl / 2 > sizeof hexbuf) {
                fprintf(stderr, "FAIL: %s:%d: bad utf8_hex\n", argv[2], lineno);
                return 1;
            }
            for (size_t i = 0; i < hl / 2; i++)
                hexbuf[i] = (char)(hexval(hex->valuestring[2 * i]) * 16 +
                                   hexval(hex->valuestring[2 * i + 1]));
            s = hexbuf;
            slen = hl / 2;
        }
        size_t n_exp = (size_t)cJSON_GetArraySize(ids);
        int32_t exp[1024], got[1024];
        if (n_exp > 1024) {
            fprintf(stderr, "FAIL: %s:%d: too many ids\n", argv[2], lineno);
            return 1;
        }
        for (size_t i = 0; i < n_exp; i++)
            exp[i] = (int32_t)cJSON_GetArrayItem(ids, (int)i)->valueint;
        size_t n_got = 0;
        int truncated = -1;
        /* An exact-size copy without a NUL, so a sanitizer build catches any read past len. */
        char *exact = malloc(slen ? slen : 1);
        if (!exact) return 1;
        memcpy(exact, s, slen);
        int rc = sbert_tokenizer_encode(tok, exact, slen, got, 1024, &n_got, &truncated);
        free(exact);
        int want_tr = cJSON_IsTrue(tr);
        n_trunc += want_tr;
        if (rc || n_got != n_exp || memcmp(exp, got, n_exp * sizeof *exp) != 0 ||
            truncated != want_tr) {
            bad++;
            printf("MISMATCH line %d: ", lineno);
            print_text(s, slen);
            print_ids("expected", exp, n_exp);
            if (rc)
                printf("  got error %d (%s)\n", rc, sbert_strerror(rc));
            else
                print_ids("got     ", got, n_got);
            printf("  truncated: expected %d, got %d\n", want_tr, truncated);
        }
        checked++;
        cJSON_Delete(o);
    }
    sbert_tokenizer_free(tok);
    free(data);
    printf("%d golden texts (%d truncated to %d), %d mismatches\n", checked, n_trunc, max_len, bad);
    if (checked < 300) {
        printf("FAIL: expected at least 300 golden texts\n");
        return 1;
    }
    return bad ? 1 : 0;
}
