/*
 * tokenizer.c — vocabulary and the tokenizer sentence-transformers runs for BERT models:
 * Python str.strip(), then HF tokenizers' added-token split, BertNormalizer, BertPreTokenizer,
 * WordPiece and the [CLS] ... [SEP] template, truncated to max_seq_length.
 *
 * After a validation pass over the UTF-8, the text is processed in one streaming pass, code point
 * by code point, without building the normalised string: each code point goes through
 * clean_text -> chinese chars -> strip accents -> lowercase (BertNormalizer's order) and lands in
 * the current word, which WordPiece turns into ids when a whitespace or punctuation character
 * ends it; the pass stops once the ids are full. All scratch lives on the caller's stack, so a
 * shared tokenizer is read-only and needs no locking.
 *
 * Faithfulness: every code point is checked against tokenizers in three contexts
 * (tests/tokenizer/unicode_test.c) and hundreds of texts id for id (golden_test.c); see
 * hf_overrides below for where HF's Unicode data is not utf8proc's.
 */
#include "internal.h"
#include "sbert_util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* HF WordPiece's max_input_chars_per_word: a longer word is one [UNK]. */
#define WP_MAX_CHARS 100
#define WP_PREFIX "##"
#define N_SPECIALS 5

/* ---- vocabulary hash table ------------------------------------------------------------------ */

/* Open addressing, linear probing, load factor <= 1/2. A slot holds the key's 32-bit hash, its
 * place in the vocabulary text and id + 1 (0: empty), so a probe reads one slot and, only when
 * the hashes agree, the key's bytes. */
struct vslot {
    uint32_t hash, id1, off, len;
};
struct vtable {
    struct vslot *slots;
    uint32_t mask;
};

struct sbert_tokenizer {
    struct sbert_tokenizer_config cfg;
    int strip_accents; /* resolved from cfg: HF's strip_accents.unwrap_or(lowercase) */
    char *text;        /* vocab.txt's bytes, each token NUL-terminated in place */
    const char **tok;  /* token string by id */
    uint32_t *toklen;  /* token length in bytes by id */
    size_t n;
    struct vtable whole; /* every token, for the first piece of a word */
    struct vtable cont;  /* tokens starting with "##", keyed without the prefix */
    int32_t cls, sep, unk;
    /* Special tokens matched in the raw text before normalisation (tokenizers' added tokens with
     * normalized=false): their content and id; first_byte marks the bytes they start with. */
    char *special[N_SPECIALS];
    size_t special_len[N_SPECIALS];
    int32_t special_id[N_SPECIALS];
    int n_special;
    unsigned char first_byte[256];
    unsigned char ascii[128]; /* A_* class of each ASCII character after normalisation */
};

/* A multiply-xorshift hash over 8-byte words; only ever compared within one process. */
static uint32_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 0x9E3779B97F4A7C15ull ^ len;
    for (; len >= 8; s += 8, len -= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < len; i++)
        w |= (uint64_t)(unsigned char)s[i] << (8 * i);
    h = (h ^ w) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return (uint32_t)(h >> 32);
}

static int vtable_init(struct vtable *vt, size_t n)
{
    size_t cap = 16;
    while (cap < n * 2)
        cap <<= 1;
    vt->slots = calloc(cap, sizeof *vt->slots);
    if (!vt->slots) return SBERT_ENOMEM;
    vt->mask = (uint32_t)(cap - 1);
    return 0;
}

/* Later duplicates replace earlier ones, as a Python dict built from vocab.txt does. The key is
 * token id's bytes after its first `skip` bytes. */
static void vtable_put(struct vtable *vt, const sbert_tokenizer *t, uint32_t id, size_t skip)
{
    const char *key = t->tok[id] + skip;
    uint32_t len = t->toklen[id] - (uint32_t)skip;
    uint32_t h = hash_bytes(key, len), i = h & vt->mask;
    for (; vt->slots[i].id1; i = (i + 1) & vt->mask) {
        const struct vslot *sl = &vt->slots[i];
        if (sl->hash == h && sl->len == len && memcmp(t->text + sl->off, key, len) == 0) break;
    }
    vt->slots[i] = (struct vslot){h, id + 1, (uint32_t)(key - t->text), len};
}

/* Returns the id whose key (see vtable_put) is key[0..len), or -1. */
static int32_t vtable_get(const struct vtable *vt, const char *text, const char *key, size_t len)
{
    uint32_t h = hash_bytes(key, len), i = h & vt->mask;
    for (;; i = (i + 1) & vt->mask) {
        const struct vslot *sl = &vt->slots[i];
        if (!sl->id1) return -1;
        if (sl->hash == h && sl->len == len && memcmp(text + sl->off, key, len) == 0)
            return (int32_t)(sl->id1 - 1);
    }
}

static unsigned char ascii_class(unsigned c);

/* Copies cfg into t with what follows from it (tests/tokenizer/unicode_test.c uses it too). */
static void set_config(sbert_tokenizer *t, const struct sbert_tokenizer_config *cfg)
{
    t->cfg = *cfg;
    t->strip_accents = cfg->strip_accents < 0 ? (cfg->do_lower_case != 0) : cfg->strip_accents != 0;
    for (unsigned c = 0; c < 128; c++)
        t->ascii[c] = ascii_class(c);
}

/* ---- loading -------------------------------------------------------------------------------- */

static int read_file(const char *path, char **out, size_t *len, char *errbuf, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(errbuf, errlen, "%s: %s", path, strerror(errno));
        return SBERT_EIO;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (!buf) {
            fclose(f);
            snprintf(errbuf, errlen, "%s: out of memory", path);
            return SBERT_ENOMEM;
        }
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        cap *= 2;
        char *nb = realloc(buf, cap + 1);
        if (!nb) free(buf);
        buf = nb;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        snprintf(errbuf, errlen, "%s: read error", path);
        return SBERT_EIO;
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
}

/* special_tokens_map.json values are either "[CLS]" or {"content": "[CLS]", ...}. */
static const char *special_content(const cJSON *root, const char *key, const char *dflt)
{
    const cJSON *v = root ? cJSON_GetObjectItemCaseSensitive(root, key) : NULL;
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsObject(v)) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (cJSON_IsString(c)) return c->valuestring;
    }
    return dflt;
}

static int load_specials(sbert_tokenizer *t, const char *dir, char *errbuf, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/special_tokens_map.json", dir);
    char *json = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    char ignore[8];
    if (read_file(path, &json, &len, ignore, sizeof ignore) == 0) {
        root = cJSON_ParseWithLength(json, len);
        int object = 0;
        int oom = !root && sbert_util_json_valid(json, len, &object) && object;
        free(json);
        if (oom) {
            snprintf(errbuf, errlen, "%s: out of memory", path);
            return SBERT_ENOMEM;
        }
        if (!root || !cJSON_IsObject(root)) {
            cJSON_Delete(root);
            snprintf(errbuf, errlen, "%s: not a JSON object", path);
            return SBERT_EFORMAT;
        }
    }
    static const char *const keys[N_SPECIALS] = {"cls_token", "sep_token", "unk_token", "pad_token",
                                                 "mask_token"};
    static const char *const dflt[N_SPECIALS] = {"[CLS]", "[SEP]", "[UNK]", "[PAD]", "[MASK]"};
    int rc = 0;
    for (int k = 0; k < N_SPECIALS && rc == 0; k++) {
        const char *s = special_content(root, keys[k], dflt[k]);
        int32_t id = vtable_get(&t->whole, t->text, s, strlen(s));
        if (id < 0) {
            /* [PAD] and [MASK] only matter as text to match; [CLS], [SEP], [UNK] are required. */
            if (k >= 3) continue;
            snprintf(errbuf, errlen,
                     "%s/vocab.txt: special token %s \"%s\" is not in the vocabulary", dir, keys[k],
                     s);
            rc = SBERT_EFORMAT;
            break;
        }
        if (k == 0) t->cls = id;
        if (k == 1) t->sep = id;
        if (k == 2) t->unk = id;
        if (!*s) continue;
        size_t sl = strlen(s);
        char *copy = malloc(sl + 1);
        if (!copy) {
            rc = SBERT_ENOMEM;
            break;
        }
        memcpy(copy, s, sl + 1);
        t->special[t->n_special] = copy;
        t->special_len[t->n_special] = sl;
        t->special_id[t->n_special] = id;
        t->n_special++;
        t->first_byte[(unsigned char)s[0]] = 1;
    }
    cJSON_Delete(root);
    return rc;
}

int sbert_tokenizer_load(const char *dir, const struct sbert_tokenizer_config *cfg,
                         sbert_tokenizer **out, char *errbuf, size_t errlen)
{
    char dummy[1];
    if (!errbuf || errlen == 0) {
        errbuf = dummy;
        errlen = sizeof dummy;
    }
    if (!out) return SBERT_EINVAL;
    *out = NULL;
    if (!dir || !cfg || cfg->max_seq_length < 2) {
        snprintf(errbuf, errlen, "tokenizer: bad arguments (max_seq_length must be >= 2)");
        return SBERT_EINVAL;
    }
    sbert_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return SBERT_ENOMEM;
    set_config(t, cfg);

    char path[4096];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    size_t len = 0;
    int rc = read_file(path, &t->text, &len, errbuf, errlen);
    if (rc) goto fail;

    if (len >= UINT32_MAX) { /* struct vslot keeps 32-bit offsets */
        rc = SBERT_EFORMAT;
        snprintf(errbuf, errlen, "%s: larger than 4 GiB", path);
        goto fail;
    }
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += t->text[i] == '\n';
    t->tok = malloc(lines * sizeof *t->tok);
    t->toklen = malloc(lines * sizeof *t->toklen);
    if (!t->tok || !t->toklen) {
        rc = SBERT_ENOMEM;
        goto fail;
    }
    /* One token per line; a final line without '\n' counts, an empty last line does not. */
    for (size_t p = 0; p < len;) {
        char *s = t->text + p;
        char *nl = memchr(s, '\n', len - p);
        size_t l = nl ? (size_t)(nl - s) : len - p;
        p += l + (nl != NULL);
        if (l > 0 && s[l - 1] == '\r') l--;
        s[l] = 0;
        t->tok[t->n] = s;
        t->toklen[t->n] = (uint32_t)l;
        t->n++;
    }
    if (t->n == 0 || t->n >= INT32_MAX) {
        rc = SBERT_EFORMAT;
        snprintf(errbuf, errlen, "%s: empty or oversized vocabulary", path);
        goto fail;
    }
    size_t n_cont = 0;
    for (size_t i = 0; i < t->n; i++)
        n_cont += t->toklen[i] >= 2 && memcmp(t->tok[i], WP_PREFIX, 2) == 0;
    if ((rc = vtable_init(&t->whole, t->n)) || (rc = vtable_init(&t->cont, n_cont))) goto fail;
    for (size_t i = 0; i < t->n; i++) {
        vtable_put(&t->whole, t, (uint32_t)i, 0);
        if (t->toklen[i] >= 2 && memcmp(t->tok[i], WP_PREFIX, 2) == 0)
            vtable_put(&t->cont, t, (uint32_t)i, 2);
    }
    if ((rc = load_specials(t, dir, errbuf, errlen))) goto fail;
    *out = t;
    return 0;
fail:
    if (rc == SBERT_ENOMEM) snprintf(errbuf, errlen, "%s: out of memory", path);
    sbert_tokenizer_free(t);
    return rc;
}

void sbert_tokenizer_free(sbert_tokenizer *t)
{
    if (!t) return;
    for (int k = 0; k < t->n_special; k++)
        free(t->special[k]);
    free(t->whole.slots);
    free(t->cont.slots);
    free(t->tok);
    free(t->toklen);
    free(t->text);
    free(t);
}

size_t sbert_tokenizer_vocab_size(const sbert_tokenizer *t)
{
    return t ? t->n : 0;
}

/* ---- UTF-8 ---------------------------------------------------------------------------------- */

/* Decodes one code point at s[0..n), n >= 1, strictly (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF, no cut sequences). Returns its length in bytes, or 0 when invalid. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c < 0xC2) return 0;
    if (c < 0xE0) {
        if (n < 2 || (s[1] & 0xC0) != 0x80) return 0;
        *cp = ((c & 0x1Fu) << 6) | (s[1] & 0x3Fu);
        return 2;
    }
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0;  /* overlong */
        if (c == 0xED && s[1] >= 0xA0) return 0; /* surrogate */
        *cp = ((c & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;  /* overlong */
        if (c == 0xF4 && s[1] >= 0x90) return 0; /* above U+10FFFF */
        *cp = ((c & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
        return 4;
    }
    return 0;
}

static size_t utf8_encode(uint32_t c, char *o)
{
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xC0 | (c >> 6));
        o[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | (c >> 12));
        o[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (c >> 18));
    o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* ---- character classes ---------------------------------------------------------------------- */

/* Python's str.isspace(), which str.strip() uses: bidi class WS, B or S, or category Zs. */
static int is_py_space(uint32_t c)
{
    if (c < 0x80) return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20);
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Rust's char::is_whitespace (Unicode White_Space), which BertNormalizer and BertPreTokenizer
 * use (plus \t \n \r, already in it). */
static int is_rust_space(uint32_t c)
{
    if (c < 0x80) return (c >= 0x09 && c <= 0x0D) || c == 0x20;
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* BertNormalizer's is_control: categories Cc, Cf, Co, Cs except \t \n \r. Unassigned code
 * points (Cn) are kept, as tokenizers 0.23.3 keeps them (unlike the slow Python tokenizer). */
static int is_control(uint32_t c)
{
    if (c == '\t' || c == '\n' || c == '\r') return 0;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CS:
        return 1;
    default:
        return 0;
    }
}

/* BertNormalizer's is_chinese_char: the CJK Unified Ideographs blocks it lists. */
static int is_chinese(uint32_t c)
{
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* BertPreTokenizer's is_bert_punc: ASCII punctuation or Unicode P*. */
static int is_punct(uint32_t c)
{
    if (c < 0x80)
        return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
               (c >= 123 && c <= 126);
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
        return 1;
    default:
        return 0;
    }
}

/*
 * Code points where tokenizers 0.23.3 does not do what utf8proc 2.8's Unicode 15 data implies.
 * Its BertNormalizer and BertPreTokenizer take categories from the unicode_categories crate
 * (about Unicode 8: punctuation, Mn and Cf added or recategorised since are unknown to it), NFD
 * and combining classes from an old unicode-normalization-alignments crate, and lowercase from
 * Rust's std (Unicode 16, newer than utf8proc). Each entry states HF's outcome for the code point
 * in the model's configuration: OV_KEEP an ordinary word character (never dropped, stripped,
 * split, decomposed or case-mapped) with utf8proc's combining class when accents are stripped,
 * OV_KEEP0 the same with combining class 0 (unknown to HF's NFD tables, so never reordered),
 * OV_PUNCT split off as punctuation, OV_STRIP dropped as Mn when accents are stripped, OV_LOWER
 * lowercased to c + delta when lowercasing.
 * Found by comparing every code point (tests/tokenizer/unicode_test.c against
 * tests/golden/codepoints*.txt), which fails if another utf8proc or tokenizers changes any of it.
 * To rederive: empty the table, run that test on codepoints.txt and classify each mismatching
 * code point by its golden template: a.X.b -> KEEP (KEEP0 where its S/P reordering flags differ
 * from ours), "a X b" -> PUNCT, a.b -> STRIP, a.Y.b -> LOWER by Y - X.
 */
enum { OV_KEEP, OV_KEEP0, OV_PUNCT, OV_STRIP, OV_LOWER };
static const struct hf_override {
    uint32_t lo, hi;
    int kind;
    int32_t delta;
} hf_overrides[] = {
    {0x61D, 0x61D, OV_KEEP, 0},         {0x7FD, 0x7FD, OV_KEEP0, 0},
    {0x890, 0x891, OV_KEEP, 0},         {0x898, 0x89F, OV_KEEP0, 0},
    {0x8CA, 0x8D3, OV_KEEP0, 0},        {0x8D4, 0x8E2, OV_KEEP, 0},
    {0x9FD, 0x9FD, OV_KEEP, 0},         {0x9FE, 0x9FE, OV_KEEP0, 0},
    {0xA76, 0xA76, OV_KEEP, 0},         {0xAFA, 0xAFF, OV_KEEP, 0},
    {0xB55, 0xB55, OV_KEEP, 0},         {0xC04, 0xC04, OV_KEEP, 0},
    {0xC3C, 0xC3C, OV_KEEP0, 0},        {0xC77, 0xC77, OV_KEEP, 0},
    {0xC84, 0xC84, OV_KEEP, 0},         {0xD00, 0xD00, OV_KEEP, 0},
    {0xD3B, 0xD3C, OV_KEEP0, 0},        {0xD81, 0xD81, OV_KEEP, 0},
    {0xEBA, 0xEBA, OV_KEEP0, 0},        {0xECE, 0xECE, OV_KEEP, 0},
    {0x166D, 0x166D, OV_PUNCT, 0},      {0x1715, 0x1715, OV_KEEP0, 0},
    {0x1734, 0x1734, OV_STRIP, 0},      {0x180F, 0x180F, OV_KEEP, 0},
    {0x1885, 0x1886, OV_KEEP, 0},       {0x1ABF, 0x1ACE, OV_KEEP0, 0},
    {0x1B7D, 0x1B7E, OV_KEEP, 0},       {0x1C89, 0x1C89, OV_LOWER, 1},
    {0x1DF6, 0x1DFA, OV_KEEP0, 0},      {0x1DFB, 0x1DFB, OV_KEEP, 0},
    {0x2E43, 0x2E4F, OV_KEEP, 0},       {0x2E52, 0x2E5D, OV_KEEP, 0},
    {0xA7CB, 0xA7CB, OV_LOWER, -42343}, {0xA7CC, 0xA7CC, OV_LOWER, 1},
    {0xA7CE, 0xA7CE, OV_LOWER, 1},      {0xA7D2, 0xA7D2, OV_LOWER, 1},
    {0xA7D4, 0xA7D4, OV_LOWER, 1},      {0xA7DA, 0xA7DA, OV_LOWER, 1},
    {0xA7DC, 0xA7DC, OV_LOWER, -42561}, {0xA82C, 0xA82C, OV_KEEP0, 0},
    {0xA8C5, 0xA8C5, OV_KEEP, 0},       {0xA8FF, 0xA8FF, OV_KEEP, 0},
    {0xA9BD, 0xA9BD, OV_KEEP, 0},       {0x10D24, 0x10D27, OV_KEEP0, 0},
    {0x10D50, 0x10D65, OV_LOWER, 32},   {0x10EAB, 0x10EAC, OV_KEEP0, 0},
    {0x10EAD, 0x10EAD, OV_KEEP, 0},     {0x10EFD, 0x10EFF, OV_KEEP0, 0},
    {0x10F46, 0x10F50, OV_KEEP0, 0},    {0x10F55, 0x10F59, OV_KEEP, 0},
    {0x10F82, 0x10F85, OV_KEEP0, 0},    {0x10F86, 0x10F89, OV_KEEP, 0},
    {0x11070, 0x11070, OV_KEEP0, 0},    {0x11073, 0x11074, OV_KEEP, 0},
    {0x110C2, 0x110C2, OV_KEEP, 0},     {0x110CD, 0x110CD, OV_KEEP, 0},
    {0x111C9, 0x111C9, OV_PUNCT, 0},    {0x111CF, 0x111CF, OV_KEEP, 0},
    {0x1123E, 0x1123E, OV_KEEP, 0},     {0x11241, 0x11241, OV_KEEP, 0},
    {0x1133B, 0x1133B, OV_KEEP0, 0},    {0x11438, 0x1143F, OV_KEEP, 0},
    {0x11442, 0x11444, OV_KEEP, 0},     {0x11446, 0x11446, OV_KEEP, 0},
    {0x1144B, 0x1144F, OV_KEEP, 0},     {0x1145A, 0x1145B, OV_KEEP, 0},
    {0x1145D, 0x1145D, OV_KEEP, 0},     {0x1145E, 0x1145E, OV_KEEP0, 0},
    {0x11660, 0x1166C, OV_KEEP, 0},     {0x116B9, 0x116B9, OV_KEEP, 0},
    {0x1182F, 0x11837, OV_KEEP, 0},     {0x11839, 0x1183A, OV_KEEP0, 0},
    {0x1183B, 0x1183B, OV_KEEP, 0},     {0x11938, 0x11938, OV_KEEP, 0},
    {0x1193B, 0x1193C, OV_KEEP, 0},     {0x1193D, 0x1193E, OV_KEEP0, 0},
    {0x11943, 0x11943, OV_KEEP0, 0},    {0x11944, 0x11946, OV_KEEP, 0},
    {0x119D4, 0x119D7, OV_KEEP, 0},     {0x119DA, 0x119DB, OV_KEEP, 0},
    {0x119E0, 0x119E0, OV_KEEP0, 0},    {0x119E2, 0x119E2, OV_KEEP, 0},
    {0x11A01, 0x11A0A, OV_KEEP, 0},     {0x11A33, 0x11A33, OV_KEEP, 0},
    {0x11A34, 0x11A34, OV_KEEP0, 0},    {0x11A35, 0x11A38, OV_KEEP, 0},
    {0x11A3B, 0x11A46, OV_KEEP, 0},     {0x11A47, 0x11A47, OV_KEEP0, 0},
    {0x11A51, 0x11A56, OV_KEEP, 0},     {0x11A59, 0x11A5B, OV_KEEP, 0},
    {0x11A8A, 0x11A96, OV_KEEP, 0},     {0x11A98, 0x11A98, OV_KEEP, 0},
    {0x11A99, 0x11A99, OV_KEEP0, 0},    {0x11A9A, 0x11A9C, OV_KEEP, 0},
    {0x11A9E, 0x11AA2, OV_KEEP, 0},     {0x11B00, 0x11B09, OV_KEEP, 0},
    {0x11C30, 0x11C36, OV_KEEP, 0},     {0x11C38, 0x11C3D, OV_KEEP, 0},
    {0x11C3F, 0x11C3F, OV_KEEP, 0},     {0x11C41, 0x11C45, OV_KEEP, 0},
    {0x11C70, 0x11C71, OV_KEEP, 0},     {0x11C92, 0x11CA7, OV_KEEP, 0},
    {0x11CAA, 0x11CB0, OV_KEEP, 0},     {0x11CB2, 0x11CB3, OV_KEEP, 0},
    {0x11CB5, 0x11CB6, OV_KEEP, 0},     {0x11D31, 0x11D36, OV_KEEP, 0},
    {0x11D3A, 0x11D3A, OV_KEEP, 0},     {0x11D3C, 0x11D3D, OV_KEEP, 0},
    {0x11D3F, 0x11D41, OV_KEEP, 0},     {0x11D42, 0x11D42, OV_KEEP0, 0},
    {0x11D43, 0x11D43, OV_KEEP, 0},     {0x11D44, 0x11D45, OV_KEEP0, 0},
    {0x11D47, 0x11D47, OV_KEEP, 0},     {0x11D90, 0x11D91, OV_KEEP, 0},
    {0x11D95, 0x11D95, OV_KEEP, 0},     {0x11D97, 0x11D97, OV_KEEP0, 0},
    {0x11EF3, 0x11EF4, OV_KEEP, 0},     {0x11EF7, 0x11EF8, OV_KEEP, 0},
    {0x11F00, 0x11F01, OV_KEEP, 0},     {0x11F36, 0x11F3A, OV_KEEP, 0},
    {0x11F40, 0x11F40, OV_KEEP, 0},     {0x11F41, 0x11F42, OV_KEEP0, 0},
    {0x11F43, 0x11F4F, OV_KEEP, 0},     {0x11FFF, 0x11FFF, OV_KEEP, 0},
    {0x12FF1, 0x12FF2, OV_KEEP, 0},     {0x13430, 0x13440, OV_KEEP, 0},
    {0x13447, 0x13455, OV_KEEP, 0},     {0x16E97, 0x16E9A, OV_KEEP, 0},
    {0x16EA0, 0x16EB8, OV_LOWER, 27},   {0x16F4F, 0x16F4F, OV_KEEP, 0},
    {0x16FE2, 0x16FE2, OV_KEEP, 0},     {0x16FE4, 0x16FE4, OV_KEEP, 0},
    {0x16FF0, 0x16FF1, OV_KEEP0, 0},    {0x1CF00, 0x1CF2D, OV_KEEP, 0},
    {0x1CF30, 0x1CF46, OV_KEEP, 0},     {0x1E000, 0x1E006, OV_KEEP, 0},
    {0x1E008, 0x1E018, OV_KEEP, 0},     {0x1E01B, 0x1E021, OV_KEEP, 0},
    {0x1E023, 0x1E024, OV_KEEP, 0},     {0x1E026, 0x1E02A, OV_KEEP, 0},
    {0x1E08F, 0x1E08F, OV_KEEP0, 0},    {0x1E130, 0x1E136, OV_KEEP0, 0},
    {0x1E2AE, 0x1E2AE, OV_KEEP0, 0},    {0x1E2EC, 0x1E2EF, OV_KEEP0, 0},
    {0x1E4EC, 0x1E4EF, OV_KEEP0, 0},    {0x1E944, 0x1E94A, OV_KEEP, 0},
    {0x1E95E, 0x1E95F, OV_KEEP, 0},
};
#define N_OVERRIDES (sizeof hf_overrides / sizeof hf_overrides[0])

static const struct hf_override *find_override(uint32_t c)
{
    if (c < hf_overrides[0].lo || c > hf_overrides[N_OVERRIDES - 1].hi) return NULL;
    size_t lo = 0, hi = N_OVERRIDES;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (c > hf_overrides[mid].hi)
            lo = mid + 1;
        else if (c < hf_overrides[mid].lo)
            hi = mid;
        else
            return &hf_overrides[mid];
    }
    return NULL;
}

/* ASCII classes after clean_text and lowercasing, so the common case needs no Unicode lookup. */
enum { A_DROP = 0, A_SPACE, A_PUNCT, A_WORD, A_UPPER };
static unsigned char ascii_class(unsigned c)
{
    if (c == '\t' || c == '\n' || c == '\r' || c == ' ') return A_SPACE;
    if (c < 0x20 || c == 0x7F) return A_DROP;
    if (is_punct(c)) return A_PUNCT;
    return c >= 'A' && c <= 'Z' ? A_UPPER : A_WORD;
}

/* ---- encoding ------------------------------------------------------------------------------- */

/* The per-call state: output ids, and the word being collected, as UTF-8. Only its first
 * WP_MAX_CHARS + 1 characters are kept: a longer word is [UNK] whatever it holds. */
struct enc {
    const sbert_tokenizer *t;
    int32_t *ids;
    size_t n, limit; /* ids written (after [CLS]); content ids allowed */
    int full;        /* a token had to be dropped */
    size_t wlen;     /* characters in the word */
    char wb[(WP_MAX_CHARS + 1) * 4];
    uint16_t woff[WP_MAX_CHARS + 2];     /* woff[i]: byte offset of character i; woff[0] = 0 */
    unsigned char ccc[WP_MAX_CHARS + 1]; /* canonical combining classes, for NFD reordering */
};

static void emit(struct enc *e, int32_t id)
{
    if (e->n < e->limit)
        e->ids[1 + e->n++] = id;
    else
        e->full = 1;
}

/* HF WordPiece: greedy longest-match-first; a word with an unmatched rest is one [UNK]. */
static void word_end(struct enc *e)
{
    size_t nc = e->wlen;
    e->wlen = 0;
    if (nc == 0) return;
#ifdef SBERT_TOKENIZER_WORD_HOOK
    /* tests/tokenizer/unicode_test.c includes this file to see the pre-tokenizer's words */
    SBERT_TOKENIZER_WORD_HOOK(e, nc);
    return;
#endif
    const sbert_tokenizer *t = e->t;
    if (nc > WP_MAX_CHARS) {
        emit(e, t->unk);
        return;
    }
    const char *buf = e->wb;
    const uint16_t *off = e->woff;
    int32_t pieces[WP_MAX_CHARS];
    size_t np = 0, start = 0;
    while (start < nc) {
        size_t end = nc;
        int32_t id = -1;
        const struct vtable *vt = start ? &t->cont : &t->whole;
        for (; end > start; end--) {
            id = vtable_get(vt, t->text, buf + off[start], off[end] - off[start]);
            if (id >= 0) break;
        }
        if (id < 0) {
            emit(e, t->unk);
            return;
        }
        pieces[np++] = id;
        start = end;
    }
    for (size_t i = 0; i < np; i++)
        emit(e, pieces[i]);
}

/* Appends a normalised code point with canonical combining class ccc to the word. NFD puts runs
 * of non-starters in ccc order (stable); a word over WP_MAX_CHARS is [UNK] whatever its order. */
static void word_push(struct enc *e, uint32_t c, unsigned ccc)
{
    size_t i = e->wlen++;
    if (i > WP_MAX_CHARS) return;
    size_t at = e->woff[i];
    if (c < 0x80) {
        e->wb[at] = (char)c;
        e->woff[i + 1] = (uint16_t)(at + 1);
        e->ccc[i] = 0;
        return;
    }
    char u[4];
    size_t k = utf8_encode(c, u);
    size_t j = i;
    while (ccc && j > 0 && e->ccc[j - 1] > ccc)
        j--;
    if (j < i) { /* insert before the non-starters with a higher class */
        memmove(e->wb + e->woff[j] + k, e->wb + e->woff[j], at - e->woff[j]);
        for (size_t m = i + 1; m > j; m--)
            e->woff[m] = (uint16_t)(e->woff[m - 1] + k);
        for (size_t m = i; m > j; m--)
            e->ccc[m] = e->ccc[m - 1];
        at = e->woff[j];
    } else {
        e->woff[i + 1] = (uint16_t)(at + k);
    }
    memcpy(e->wb + at, u, k);
    e->ccc[j] = (unsigned char)ccc;
}

/* BertPreTokenizer isolates each punctuation character as a word of its own. */
static void punct_word(struct enc *e, uint32_t c)
{
    word_end(e);
    word_push(e, c, 0);
    word_end(e);
}

/* BertPreTokenizer on one normalised code point. */
static void pretok(struct enc *e, uint32_t c, unsigned ccc)
{
    if (is_rust_space(c)) {
        word_end(e);
    } else if (is_punct(c)) {
        punct_word(e, c);
    } else {
        word_push(e, c, ccc);
    }
}

/* Rust's char::to_lowercase, then the pre-tokenizer. U+0130 is the one code point whose full
 * lowercase mapping (SpecialCasing) differs from the simple one utf8proc gives. */
static void lower_then_pretok(struct enc *e, uint32_t c, unsigned ccc)
{
    if (e->t->cfg.do_lower_case) {
        if (c == 0x130) { /* reached only without NFD, so no reordering either */
            pretok(e, 'i', 0);
            pretok(e, 0x307, 0);
            return;
        }
        c = (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
    }
    pretok(e, c, ccc);
}

/* One raw code point through BertNormalizer (clean_text, chinese chars, strip accents,
 * lowercase, in that order) and into the pre-tokenizer. */
static void feed(struct enc *e, uint32_t c)
{
    if (c < 0x80) {
        switch (e->t->ascii[c]) {
        case A_DROP:
            return;
        case A_SPACE:
            word_end(e);
            return;
        case A_PUNCT:
            punct_word(e, c);
            return;
        case A_UPPER:
            if (e->t->cfg.do_lower_case) c += 'a' - 'A';
            break;
        default:
            break;
        }
        size_t i = e->wlen++;
        if (i <= WP_MAX_CHARS) {
            size_t at = e->woff[i];
            e->wb[at] = (char)c;
            e->woff[i + 1] = (uint16_t)(at + 1);
            e->ccc[i] = 0;
        }
        return;
    }
    const struct hf_override *ov = find_override(c);
    if (ov) {
        switch (ov->kind) {
        case OV_PUNCT:
            punct_word(e, c);
            return;
        case OV_STRIP:
            if (e->t->strip_accents) return;
            break;
        case OV_LOWER:
            if (e->t->cfg.do_lower_case) c = (uint32_t)((int32_t)c + ov->delta);
            break;
        case OV_KEEP:
            if (e->t->strip_accents) {
                word_push(e, c, utf8proc_get_property((utf8proc_int32_t)c)->combining_class);
                return;
            }
            break;
        default:
            break;
        }
        word_push(e, c, 0);
        return;
    }
    if (c == 0xFFFD || is_control(c)) return;
    if (is_rust_space(c)) {
        word_end(e);
        return;
    }
    if (e->t->cfg.tokenize_chinese_chars && is_chinese(c)) {
        word_end(e);
        /* NFD may map a compatibility ideograph (U+F900..) to a unified one; no case. */
        if (e->t->strip_accents) {
            utf8proc_int32_t d[4];
            int last = 0;
            utf8proc_ssize_t k =
                utf8proc_decompose_char((utf8proc_int32_t)c, d, 4, UTF8PROC_DECOMPOSE, &last);
            for (utf8proc_ssize_t i = 0; i < k && i < 4; i++)
                lower_then_pretok(e, (uint32_t)d[i], 0);
        } else {
            lower_then_pretok(e, c, 0);
        }
        word_end(e);
        return;
    }
    if (e->t->strip_accents) {
        utf8proc_int32_t d[8];
        int last = 0;
        utf8proc_ssize_t k =
            utf8proc_decompose_char((utf8proc_int32_t)c, d, 8, UTF8PROC_DECOMPOSE, &last);
        for (utf8proc_ssize_t i = 0; i < k && i < 8; i++) {
            const utf8proc_property_t *p = utf8proc_get_property(d[i]);
            if (p->category == UTF8PROC_CATEGORY_MN) continue;
            lower_then_pretok(e, (uint32_t)d[i], p->combining_class);
        }
        return;
    }
    /* No NFD without accent stripping, hence no canonical reordering: class 0. */
    lower_then_pretok(e, c, 0);
}

int sbert_tokenizer_encode(const sbert_tokenizer *t, const char *text, size_t len, int32_t *ids,
                           size_t cap, size_t *n_ids, int *truncated)
{
    if (!t || (!text && len) || !ids || !n_ids || cap < 2) return SBERT_EINVAL;
    const unsigned char *s = (const unsigned char *)text;

    /* Validate everything first: invalid input changes nothing. Track Python-strip bounds. */
    size_t begin = len, end = 0;
    for (size_t p = 0; p < len;) {
        uint32_t c;
        size_t k;
        if (s[p] < 0x80) {
            c = s[p];
            k = 1;
        } else if (!(k = utf8_decode(s + p, len - p, &c))) {
            return SBERT_EUTF8;
        }
        if (!is_py_space(c)) {
            if (begin == len) begin = p;
            end = p + k;
        }
        p += k;
    }

    size_t max = (size_t)t->cfg.max_seq_length;
    if (cap < max) max = cap;
    struct enc e;
    e.t = t;
    e.ids = ids;
    e.n = 0;
    e.limit = max - 2;
    e.full = 0;
    e.wlen = 0;
    e.woff[0] = 0;
    for (size_t p = begin; p < end && !e.full;) {
        uint32_t c = s[p];
        size_t k = 1;
        if (t->first_byte[c]) {
            /* tokenizers' added-token split: leftmost-longest match in the raw text */
            int best = -1;
            for (int j = 0; j < t->n_special; j++)
                if (t->special_len[j] <= end - p &&
                    memcmp(s + p, t->special[j], t->special_len[j]) == 0 &&
                    (best < 0 || t->special_len[j] > t->special_len[best]))
                    best = j;
            if (best >= 0) {
                word_end(&e);
                emit(&e, t->special_id[best]);
                p += t->special_len[best];
                continue;
            }
        }
        if (c >= 0x80) k = utf8_decode(s + p, end - p, &c);
        feed(&e, c);
        p += k;
    }
    word_end(&e);
    ids[0] = t->cls;
    ids[1 + e.n] = t->sep;
    *n_ids = e.n + 2;
    if (truncated) *truncated = e.full;
    return 0;
}
