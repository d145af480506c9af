/* Model loading: the sentence-transformers directory's JSON files, the weights, the tokenizer. */
#include "model.h"
#include "sbert_util.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *sbert_strerror(int err)
{
    switch (err) {
    case SBERT_OK:
        return "success";
    case SBERT_ENOMEM:
        return "out of memory";
    case SBERT_EIO:
        return "a model file could not be opened, read or mapped";
    case SBERT_EFORMAT:
        return "a model file is malformed or truncated";
    case SBERT_EUNSUPPORTED:
        return "the model is well-formed but not supported";
    case SBERT_EUTF8:
        return "the text is not valid UTF-8";
    case SBERT_EINVAL:
        return "invalid argument";
    case SBERT_ETHREAD:
        return "a worker thread could not be started";
    default:
        return "unknown sbert error";
    }
}

struct sbert_model_params sbert_model_default_params(void)
{
    struct sbert_model_params p = {
        .n_threads = 1, .log = NULL, .log_user = NULL, .precision = SBERT_PRECISION_FP32};
    return p;
}

const char *sbert_precision_name(int precision)
{
    return precision == SBERT_PRECISION_FP32   ? "fp32"
           : precision == SBERT_PRECISION_INT8 ? "int8"
                                               : NULL;
}

/* 1 when isa's kernel gives the scalar kernel's sums on this CPU over the first layer's QKV and
 * FFN output weights (both widths of k); else 0, or SBERT_ENOMEM. */
static int kernel_agrees(const sbert_model *m, int isa)
{
    const sbert_qgemm_fn fn = sbert_qgemm_get(isa);
    int rc = sbert_qgemm_agrees(fn, &m->layer[0].q_qkv);
    return rc == 1 ? sbert_qgemm_agrees(fn, &m->layer[0].q_out) : rc;
}

/*
 * int8 precision: quantises and packs the four dense layers of every layer, picks the kernel
 * (SBERT_INT8_ISA may force one, for tests and comparisons) and makes the thread pool. The kernel
 * must give the scalar kernel's sums here (sbert_qgemm_agrees: some kernels were only checked
 * on emulated instructions): a forced one that does not fails the load, a chosen one is logged
 * and the next best that does is taken.
 */
static int prepare_int8(sbert_model *m, char *errbuf, size_t errlen)
{
    const char *force = getenv("SBERT_INT8_ISA");
    int isa = sbert_qisa_best();
    if (force && *force) {
        isa = sbert_qisa_from_name(force);
        if (isa < 0 || !sbert_qisa_available(isa))
            return sbert_util_errf(
                errbuf, errlen, SBERT_EUNSUPPORTED, "SBERT_INT8_ISA=%s: %s", force,
                isa < 0 ? "unknown kernel (scalar, avx2, avxvnni, avx512vnni, amx)"
                        : "this CPU (or OS) cannot run that kernel");
    }
    const int H = m->hidden, NI = m->inter;
    if (H % 4 || NI % 4)
        return sbert_util_errf(
            errbuf, errlen, SBERT_EUNSUPPORTED,
            "int8 needs hidden_size and intermediate_size multiples of 4 (%d, %d)", H, NI);
    for (int l = 0; l < m->layers; l++) {
        struct sbert_layer_weights *w = &m->layer[l];
        int rc;
        if ((rc = sbert_qweight_init(&w->q_qkv, w->qkv_w, w->qkv_b, 3 * H, H, NULL)) ||
            (rc = sbert_qweight_init(&w->q_ao, w->ao_w, w->ao_b, H, H, NULL)) ||
            (rc = sbert_qweight_init(&w->q_in, w->in_w, w->in_b, NI, H, NULL)) ||
            (rc = sbert_qweight_init(&w->q_out, w->out_w, w->out_b, H, NI, NULL)))
            return rc;
    }
    for (;;) {
        const int ok = kernel_agrees(m, isa);
        if (ok < 0) return ok;
        if (ok) break;
        if ((force && *force) || isa == SBERT_QISA_SCALAR)
            return sbert_util_errf(errbuf, errlen, SBERT_EUNSUPPORTED,
                                   "the int8 kernel %s disagrees with the scalar reference on "
                                   "this CPU",
                                   sbert_qisa_name(isa));
        const int next = sbert_qisa_best_below(isa);
        sbert_util_logf(m->params.log, m->params.log_user, SBERT_LOG_WARN,
                        "int8 kernel %s disagrees with the scalar reference on this CPU: using %s",
                        sbert_qisa_name(isa), sbert_qisa_name(next));
        isa = next;
    }
    if (!(m->pool = sbert_pool_create())) return SBERT_ENOMEM;
    m->qgemm = sbert_qgemm_get(isa);
    m->info.int8_kernel = sbert_qisa_name(isa);
    return 0;
}

static char *join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 2);
    if (!s) return NULL;
    memcpy(s, a, la);
    size_t k = la;
    if (lb && la && a[la - 1] != '/') s[k++] = '/';
    memcpy(s + k, b, lb + 1);
    return s;
}

/*
 * Reads and parses dir/rel. Returns 0 with *out set, 1 when the file does not exist and
 * !required (*out NULL), or a negative code with errbuf set.
 */
static int read_json(const char *dir, const char *rel, int required, cJSON **out, char *errbuf,
                     size_t errlen)
{
    *out = NULL;
    char *path = join(dir, rel);
    if (!path) return SBERT_ENOMEM;
    int rc = 0;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT && !required)
            rc = 1;
        else
            rc = sbert_util_errf(errbuf, errlen, SBERT_EIO, "%s: cannot open: %s", path,
                                 strerror(errno));
        goto out;
    }
    long len = -1;
    if (fseek(f, 0, SEEK_END) == 0) len = ftell(f);
    if (len < 0 || len > (1L << 26) || fseek(f, 0, SEEK_SET) != 0) {
        rc = sbert_util_errf(errbuf, errlen, SBERT_EIO, "%s: cannot read (or larger than 64 MiB)",
                             path);
        goto out;
    }
    buf = malloc((size_t)len + 1);
    if (!buf) {
        rc = SBERT_ENOMEM;
        goto out;
    }
    if (fread(buf, 1, (size_t)len, f) != (size_t)len) {
        rc = sbert_util_errf(errbuf, errlen, SBERT_EIO, "%s: read error", path);
        goto out;
    }
    *out = cJSON_ParseWithLength(buf, (size_t)len);
    if (!*out && sbert_util_json_valid(buf, (size_t)len, NULL))
        rc = SBERT_ENOMEM; /* sound JSON that cJSON could not allocate for */
    else if (!*out)
        rc = sbert_util_errf(errbuf, errlen, SBERT_EFORMAT, "%s: not valid JSON", path);
out:
    if (f) fclose(f);
    free(buf);
    free(path);
    return rc;
}

/* An integer field in [lo, hi]; def when absent and def >= lo, else an error. */
static int get_int(const cJSON *o, const char *key, int def, int lo, int hi, int *v,
                   const char *file, char *errbuf, size_t errlen)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!j || cJSON_IsNull(j)) {
        if (def < lo)
            return sbert_util_errf(errbuf, errlen, SBERT_EFORMAT, "%s: \"%s\" is missing", file,
                                   key);
        *v = def;
        return 0;
    }
    /* the range first: converting a double outside int's range is undefined (fuzz_loader) */
    if (!cJSON_IsNumber(j) || !(j->valuedouble >= lo && j->valuedouble <= hi) ||
        j->valuedouble != (double)(int)j->valuedouble)
        return sbert_util_errf(errbuf, errlen, SBERT_EFORMAT,
                               "%s: \"%s\" must be an integer in [%d, %d]", file, key, lo, hi);
    *v = (int)j->valuedouble;
    return 0;
}

/* A boolean field; def when absent or null (null is returned as -1 when null_ok). */
static int get_bool(const cJSON *o, const char *key, int def, int null_ok, int *v, const char *file,
                    char *errbuf, size_t errlen)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!j) {
        *v = def;
    } else if (cJSON_IsNull(j)) {
        *v = null_ok ? -1 : def;
    } else if (cJSON_IsBool(j)) {
        *v = cJSON_IsTrue(j);
    } else {
        return sbert_util_errf(errbuf, errlen, SBERT_EFORMAT, "%s: \"%s\" must be true or false",
                               file, key);
    }
    return 0;
}

static const char *get_str(const cJSON *o, const char *key)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(j) ? j->valuestring : NULL;
}

static int load_config(sbert_model *m, const char *tdir, char *errbuf, size_t errlen)
{
    cJSON *c;
    const char *f = "config.json";
    int rc = read_json(tdir, f, 1, &c, errbuf, errlen);
    if (rc) return rc;
    const char *mt = get_str(c, "model_type");
    const char *act = get_str(c, "hidden_act");
    const char *pet = get_str(c, "position_embedding_type");
    double eps = 1e-12;
    const cJSON *je = cJSON_GetObjectItemCaseSensitive(c, "layer_norm_eps");
    if ((rc = get_int(c, "hidden_size", -1, 1, 1 << 16, &m->hidden, f, errbuf, errlen)) ||
        (rc = get_int(c, "num_attention_heads", -1, 1, 1 << 12, &m->heads, f, errbuf, errlen)) ||
        (rc = get_int(c, "num_hidden_layers", -1, 1, 1 << 10, &m->layers, f, errbuf, errlen)) ||
        (rc = get_int(c, "intermediate_size", -1, 1, 1 << 18, &m->inter, f, errbuf, errlen)) ||
        (rc = get_int(c, "vocab_size", -1, 1, 1 << 24, &m->vocab, f, errbuf, errlen)) ||
        (rc = get_int(c, "max_position_embeddings", -1, 2, 1 << 16, &m->max_pos, f, errbuf,
                      errlen)) ||
        (rc = get_int(c, "type_vocab_size", 2, 1, 1 << 16, &m->type_vocab, f, errbuf, errlen)))
        goto out;
    if (mt && strcmp(mt, "bert")) {
        rc = sbert_util_errf(errbuf, errlen, SBERT_EUNSUPPORTED,
                             "%s/%s: model_type \"%s\" (only \"bert\")", tdir, f, mt);
        goto out;
    }
    if (pet && strcmp(pet, "absolute")) {
        rc = sbert_util_errf(errbuf, errlen, SBERT_EUNSUPPORTED,
                             "%s/%s: position_embedding_type \"%s\" (only \"absolute\")", tdir, f,
                             pet);
        goto out;
    }
    if (!act || !strcmp(act, "gelu")) {
        m->act = SBERT_ACT_GELU_ERF;
    } else if (!strcmp(act, "gelu_new") || !strcmp(act, "gelu_pytorch_tanh")) {
        m->act = SBERT_ACT_GELU_TANH;
    } else {
        rc = sbert_util_errf(
            errbuf, errlen, SBERT_EUNSUPPORTED,
            "%s/%s: hidden_act \"%s\" (supported: gelu, gelu_new, gelu_pytorch_tanh)", tdir, f,
            act);
        goto out;
    }
    if (je) {
        if (!cJSON_IsNumber(je) || !(je->valuedouble > 0 && je->valuedouble < 1)) {
            rc = sbert_util_errf(errbuf, errlen, SBERT_EFORMAT,
                                 "%s/%s: layer_norm_eps must be in (0, 1)", tdir, f);
            goto out;
        }
        eps = je->valuedouble;
    }
    m->ln_eps = (float)eps;
    if (m->hidden % m->heads) {
        rc = sbert_util_errf(errbuf, errlen, SBERT_EFORMAT,
                             "%s/%s: hidden_size %d is not a multiple of num_attention_heads %d",
                             tdir, f, m->hidden, m->heads);
        goto out;
    }
out:
    cJSON_Delete(c);
    return rc;
}

/* tokenizer_config.json and sentence_bert_config.json (both optional). */
static int load_tokenizer_settings(sbert_model *m, const char *tdir,
                                   struct sbert_tokenizer_config *tc, char *errbuf, size_t errlen)
{
    cJSON *t = NULL, *s = NULL;
    int rc = read_json(tdir, "tokenizer_config.json", 0, &t, errbuf, errlen);
    if (rc < 0) return rc;
    int model_max = 0;
    tc->do_lower_case = 1;
    tc->strip_accents = -1;
    tc->tokenize_chinese_chars = 1;
    if (t) {
        const char *f = "tokenizer_config.json";
        const cJSON *mm = cJSON_GetObjectItemCaseSensitive(t, "model_max_length");
        if (cJSON_IsNumber(mm) && mm->valuedouble >= 2 && mm->valuedouble <= m->max_pos)
            model_max = (int)mm->valuedouble;
        if ((rc = get_bool(t, "do_lower_case", 1, 0, &tc->do_lower_case, f, errbuf, errlen)) ||
            (rc = get_bool(t, "strip_accents", -1, 1, &tc->strip_accents, f, errbuf, errlen)) ||
            (rc = get_bool(t, "tokenize_chinese_chars", 1, 0, &tc->tokenize_chinese_chars, f,
                           errbuf, errlen)))
            goto out;
    }
    rc = read_json(tdir, "sentence_bert_config.json", 0, &s, errbuf, errlen);
    if (rc < 0) goto out;
    /* sentence-transformers' fallback when max_seq_length is not given: the tokenizer's
     * model_max_length, capped by the position table. */
    tc->max_seq_length = model_max ? model_max : m->max_pos;
    rc = 0;
    if (s) {
        const char *f = "sentence_bert_config.json";
        int st_lower = 0;
        if ((rc = get_int(s, "max_seq_length", tc->max_seq_length, 2, 1 << 20, &tc->max_seq_length,
                          f, errbuf, errlen)) ||
            (rc = get_bool(s, "do_lower_case", 0, 0, &st_lower, f, errbuf, errlen)))
            goto out;
        /* sentence-transformers would lowercase with Python's str.lower() before a tokenizer that
         * does not; we only implement the tokenizer's own lowercasing. */
        if (st_lower && !tc->do_lower_case) {
            rc = sbert_util_errf(errbuf, errlen, SBERT_EUNSUPPORTED,
                                 "%s/%s: do_lower_case true with a case-preserving tokenizer", tdir,
                                 f);
            goto out;
        }
    }
    if (tc->max_seq_length > m->max_pos) tc->max_seq_length = m->max_pos;
out:
    cJSON_Delete(t);
    cJSON_Delete(s);
    return rc;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* modules.json and the pooling config. Sets *tpath to the Transformer module's path. */
static int load_modules(sbert_model *m, const char *dir, char **tdir, char *errbuf, size_t errlen)
{
    cJSON *mods = NULL, *pool = NULL;
    int rc = read_json(dir, "modules.json", 0, &mods, errbuf, errlen);
    if (rc < 0) return rc;
    m->info.pooling = SBERT_POOL_MEAN;
    m->info.normalize = 0;
    if (!mods) {
        sbert_util_logf(m->params.log, m->params.log_user, SBERT_LOG_WARN,
                        "%s: no modules.json: using the plain transformer with mean pooling, no "
                        "normalisation (sentence-transformers' default)",
                        dir);
        *tdir = strdup(dir);
        return *tdir ? 0 : SBERT_ENOMEM;
    }
    rc = 0;
    const char *tpath = NULL, *ppath = NULL;
    int seen_t = 0;
    const cJSON *e;
    if (!cJSON_IsArray(mods)) {
        rc = sbert_util_errf(errbuf, errlen, SBERT_EFORMAT, "%s/modules.json: not a JSON array",
                             dir);
        goto out;
    }
    cJSON_ArrayForEach(e, mods)
    {
        const char *type = get_str(e, "type"), *path = get_str(e, "path");
        if (!type || !path) {
            rc = sbert_util_errf(errbuf, errlen, SBERT_EFORMAT,
                                 "%s/modules.json: an entry lacks \"type\" or \"path\"", dir);
            goto out;
        }
        int ok_order = 1;
        if (ends_with(type, ".Transformer")) {
            ok_order = !seen_t;
            seen_t = 1;
            tpath = path;
        } else if (ends_with(type, ".Pooling")) {
            ok_order = seen_t && !ppath;
            ppath = path;
        } else if (ends_with(type, ".Normalize")) {
            ok_order = ppath && !m->info.normalize;
            m->info.normalize = 1;
        } else {
            rc = sbert_util_errf(
                errbuf, errlen, SBERT_EUNSUPPORTED,
                "%s/modules.json: module type \"%s\" (supported: Transformer, Pooling, "
                "Normalize)",
                dir, type);
            goto out;
        }
        if (!ok_order) {
            rc = sbert_util_errf(
                errbuf, errlen, SBERT_EUNSUPPORTED,
                "%s/modules.json: modules must be Transformer, Pooling[, Normalize], once "
                "each, in that order",
                dir);
            goto out;
        }
    }
    if (!tpath || !ppath) {
        rc = sbert_util_errf(errbuf, errlen, SBERT_EUNSUPPORTED,
                             "%s/modules.json: needs a Transformer and a Pooling module", dir);
        goto out;
    }
    char *pdir = join(dir, ppath);
    if (!pdir) {
        rc = SBERT_ENOMEM;
        goto out;
    }
    rc = read_json(pdir, "config.json", 1, &pool, errbuf, errlen);
    free(pdir);
    if (rc) goto out;
    static const char *const modes[] = {
        "pooling_mode_cls_token",           "pooling_mode_mean_tokens",
        "pooling_mode_max_tokens",          "pooling_mode_mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"};
    static const int code[] = {SBERT_POOL_CLS, SBERT_POOL_MEAN, SBERT_POOL_MAX, -1, -1, -1};
    int n_on = 0, mode = -1;
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        int on = 0;
        if ((rc = get_bool(pool, modes[i], 0, 0, &on, "1_Pooling/config.json", errbuf, errlen)))
            goto out;
        if (on) {
            n_on++;
            mode = code[i];
            if (mode < 0) {
                rc = sbert_util_errf(errbuf, errlen, SBERT_EUNSUPPORTED,
                                     "%s/%s/config.json: %s (supported: cls, mean, max)", dir,
                                     ppath, modes[i]);
                goto out;
            }
        }
    }
    if ((rc = get_int(pool, "word_embedding_dimension", 0, 0, 1 << 16, &m->pool_dim,
                      "1_Pooling/config.json", errbuf, errlen)))
        goto out;
    if (n_on != 1) {
        rc = sbert_util_errf(
            errbuf, errlen, SBERT_EUNSUPPORTED,
            "%s/%s/config.json: exactly one pooling mode (cls, mean or max) is supported", dir,
            ppath);
        goto out;
    }
    m->info.pooling = mode;
    *tdir = join(dir, tpath);
    if (!*tdir) rc = SBERT_ENOMEM;
out:
    cJSON_Delete(mods);
    cJSON_Delete(pool);
    return rc;
}

static int load_weights(sbert_model *m, char *errbuf, size_t errlen)
{
    const int64_t H = m->hidden, NI = m->inter;
    int rc;
    const float *type = NULL;
#define GET(ptr, name, ...)                                                                        \
    do {                                                                                           \
        const int64_t shape_[] = {__VA_ARGS__};                                                    \
        rc = sbert_st_get_f32(m->st, name, shape_, (int)(sizeof shape_ / sizeof shape_[0]),        \
                              &(ptr), errbuf, errlen);                                             \
        if (rc) return rc;                                                                         \
    } while (0)
    GET(m->word, "embeddings.word_embeddings.weight", m->vocab, H);
    GET(m->pos, "embeddings.position_embeddings.weight", m->max_pos, H);
    GET(type, "embeddings.token_type_embeddings.weight", m->type_vocab, H);
    GET(m->emb_ln_g, "embeddings.LayerNorm.weight", H);
    GET(m->emb_ln_b, "embeddings.LayerNorm.bias", H);
    m->type0 = type;
    m->layer = calloc((size_t)m->layers, sizeof *m->layer);
    if (!m->layer) return SBERT_ENOMEM;
    for (int l = 0; l < m->layers; l++) {
        struct sbert_layer_weights *w = &m->layer[l];
        char n[128];
        const float *q, *k, *v, *qb, *kb, *vb;
#define LGET(ptr, suffix, ...)                                                                     \
    do {                                                                                           \
        snprintf(n, sizeof n, "encoder.layer.%d.%s", l, suffix);                                   \
        GET(ptr, n, __VA_ARGS__);                                                                  \
    } while (0)
        LGET(q, "attention.self.query.weight", H, H);
        LGET(qb, "attention.self.query.bias", H);
        LGET(k, "attention.self.key.weight", H, H);
        LGET(kb, "attention.self.key.bias", H);
        LGET(v, "attention.self.value.weight", H, H);
        LGET(vb, "attention.self.value.bias", H);
        LGET(w->ao_w, "attention.output.dense.weight", H, H);
        LGET(w->ao_b, "attention.output.dense.bias", H);
        LGET(w->ln1_g, "attention.output.LayerNorm.weight", H);
        LGET(w->ln1_b, "attention.output.LayerNorm.bias", H);
        LGET(w->in_w, "intermediate.dense.weight", NI, H);
        LGET(w->in_b, "intermediate.dense.bias", NI);
        LGET(w->out_w, "output.dense.weight", H, NI);
        LGET(w->out_b, "output.dense.bias", H);
        LGET(w->ln2_g, "output.LayerNorm.weight", H);
        LGET(w->ln2_b, "output.LayerNorm.bias", H);
#undef LGET
        /* One [3H x H] product instead of three [H x H] ones. */
        w->qkv_w = malloc((size_t)(3 * H * H) * sizeof(float));
        w->qkv_b = malloc((size_t)(3 * H) * sizeof(float));
        if (!w->qkv_w || !w->qkv_b) return SBERT_ENOMEM;
        const float *parts[3] = {q, k, v}, *bparts[3] = {qb, kb, vb};
        for (int p = 0; p < 3; p++) {
            memcpy(w->qkv_w + p * H * H, parts[p], (size_t)(H * H) * sizeof(float));
            memcpy(w->qkv_b + p * H, bparts[p], (size_t)H * sizeof(float));
        }
    }
#undef GET
    return 0;
}

static const char *last_component(const char *path, size_t *len)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/')
        b--;
    *len = n - b;
    return path + b;
}

int sbert_model_load(const char *dir, const struct sbert_model_params *params, sbert_model **out,
                     char *errbuf, size_t errlen)
{
    if (errbuf && errlen) errbuf[0] = '\0';
    if (!out) return SBERT_EINVAL;
    *out = NULL;
    if (!dir) return SBERT_EINVAL;
    sbert_model *m = calloc(1, sizeof *m);
    if (!m) return SBERT_ENOMEM;
    m->params = params ? *params : sbert_model_default_params();
    if (m->params.n_threads <= 0) m->params.n_threads = 1;
    m->precision = m->params.precision;
    char *tdir = NULL, *wpath = NULL;
    size_t nlen;
    const char *nm = last_component(dir, &nlen);
    int rc;
    if (!sbert_precision_name(m->precision)) {
        rc = sbert_util_errf(errbuf, errlen, SBERT_EINVAL, "unknown precision %d", m->precision);
        goto fail;
    }
    rc = SBERT_ENOMEM;
    m->path = strdup(dir);
    m->name = strndup(nm, nlen);
    if (!m->path || !m->name) goto fail;
    if ((rc = load_modules(m, dir, &tdir, errbuf, errlen))) goto fail;
    if ((rc = load_config(m, tdir, errbuf, errlen))) goto fail;
    if (m->pool_dim && m->pool_dim != m->hidden) {
        rc = sbert_util_errf(
            errbuf, errlen, SBERT_EFORMAT,
            "%s: the Pooling module's word_embedding_dimension %d is not hidden_size %d", dir,
            m->pool_dim, m->hidden);
        goto fail;
    }
    struct sbert_tokenizer_config tc;
    if ((rc = load_tokenizer_settings(m, tdir, &tc, errbuf, errlen))) goto fail;
    if ((rc = sbert_tokenizer_load(tdir, &tc, &m->tok, errbuf, errlen))) goto fail;
    if (sbert_tokenizer_vocab_size(m->tok) > (size_t)m->vocab) {
        rc = sbert_util_errf(errbuf, errlen, SBERT_EFORMAT,
                             "%s/vocab.txt: %zu entries, more than config.json's vocab_size %d",
                             tdir, sbert_tokenizer_vocab_size(m->tok), m->vocab);
        goto fail;
    }
    rc = SBERT_ENOMEM;
    if (!(wpath = join(tdir, "model.safetensors"))) goto fail;
    if ((rc = sbert_st_open(wpath, &m->st, errbuf, errlen))) goto fail;
    if ((rc = load_weights(m, errbuf, errlen))) goto fail;
    size_t size;
    const void *bytes = sbert_st_bytes(m->st, &size);
    sbert_sha256_hex(bytes, size, m->info.weights_sha256);

    /* The encoder runs one BLAS call per thread of its own (see sbert.h): OpenBLAS's own pool
     * would oversubscribe the cores. */
    openblas_set_num_threads(1);

    struct sbert_model_info *in = &m->info;
    in->name = m->name;
    in->path = m->path;
    in->dim = m->hidden;
    in->max_seq_length = tc.max_seq_length;
    in->n_layers = m->layers;
    in->n_heads = m->heads;
    in->intermediate_size = m->inter;
    in->vocab_size = m->vocab;
    in->do_lower_case = tc.do_lower_case;
    in->strip_accents = tc.strip_accents < 0 ? tc.do_lower_case : tc.strip_accents;
    in->tokenize_chinese_chars = tc.tokenize_chinese_chars;
    in->precision = m->precision;
    if (m->precision == SBERT_PRECISION_INT8) {
        if ((rc = prepare_int8(m, errbuf, errlen))) goto fail;
        if ((rc = sbert_int8_smooth(m))) {
            sbert_util_errf(errbuf, errlen, rc, "%s: int8 calibration failed", dir);
            goto fail;
        }
    }
    sbert_util_logf(m->params.log, m->params.log_user, SBERT_LOG_INFO,
                    "loaded %s: %d layers, hidden %d, %d heads, max_seq_length %d, %s pooling%s, "
                    "sha256 %s, %s%s%s, OpenBLAS core %s",
                    dir, m->layers, m->hidden, m->heads, in->max_seq_length,
                    in->pooling == SBERT_POOL_MEAN  ? "mean"
                    : in->pooling == SBERT_POOL_CLS ? "cls"
                                                    : "max",
                    in->normalize ? " + normalize" : "", in->weights_sha256,
                    sbert_precision_name(m->precision), in->int8_kernel ? " kernel " : "",
                    in->int8_kernel ? in->int8_kernel : "", openblas_get_corename());
    free(tdir);
    free(wpath);
    *out = m;
    return 0;
fail:
    free(tdir);
    free(wpath);
    sbert_model_free(m);
    return rc;
}

void sbert_model_free(sbert_model *m)
{
    if (!m) return;
    if (m->layer)
        for (int l = 0; l < m->layers; l++) {
            free(m->layer[l].qkv_w);
            free(m->layer[l].qkv_b);
            sbert_qweight_free(&m->layer[l].q_qkv);
            sbert_qweight_free(&m->layer[l].q_ao);
            sbert_qweight_free(&m->layer[l].q_in);
            sbert_qweight_free(&m->layer[l].q_out);
        }
    sbert_pool_free(m->pool);
    free(m->layer);
    sbert_st_close(m->st);
    sbert_tokenizer_free(m->tok);
    free(m->name);
    free(m->path);
    free(m);
}

const struct sbert_model_info *sbert_model_info(const sbert_model *m)
{
    return &m->info;
}

int sbert_tokenize(const sbert_model *m, const char *text, size_t len, int32_t *ids, size_t cap,
                   size_t *n_ids, int *truncated)
{
    if (!m) return SBERT_EINVAL;
    return sbert_tokenizer_encode(m->tok, text, len, ids, cap, n_ids, truncated);
}
