/*
 * Loader robustness and forward-pass checks on tiny synthetic models written into a temp dir:
 * F32/F16/BF16 and "bert."-prefixed weights load to identical results; truncated files, bad
 * header JSON, offsets past the end, wrong dtypes, wrong shapes, missing tensors and missing or
 * bad config files fail with the right code and a message (under ASan: without a crash); CLS,
 * mean and max pooling, both GELUs and packing of several texts agree with a naive double-precision
 * reference forward pass written here from the BERT definition.
 */
#include "sbert.h"
#include "testutil.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { V = 16, H = 8, NH = 2, NL = 2, NI = 16, P = 16 };

static const char *const vocab[V] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the",
                                     "cat",   "sat",   "on",    "mat",   "##s",    ".",
                                     "a",     "dog",   "hello", "world"};

struct tensor {
    char name[96];
    int nd;
    int64_t shape[2];
    float *v;
    size_t n;
};

static struct tensor T[64];
static int nT;
static char dir[256];
static uint32_t rng = 12345;

/* Multiples of 1/128 in [-0.5, 0.5), also after adding 1: exact in F16 and BF16, so every dtype
 * loads the same weights. */
static float rnd(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)((int)(rng >> 25) - 64) / 128.0f;
}

static void add(const char *name, int64_t a, int64_t b, float base)
{
    struct tensor *t = &T[nT++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->nd = b ? 2 : 1;
    t->shape[0] = a;
    t->shape[1] = b;
    t->n = (size_t)(a * (b ? b : 1));
    t->v = malloc(t->n * sizeof(float));
    for (size_t i = 0; i < t->n; i++)
        t->v[i] = base + rnd();
}

static void make_weights(void)
{
    add("embeddings.word_embeddings.weight", V, H, 0);
    add("embeddings.position_embeddings.weight", P, H, 0);
    add("embeddings.token_type_embeddings.weight", 2, H, 0);
    add("embeddings.LayerNorm.weight", H, 0, 1);
    add("embeddings.LayerNorm.bias", H, 0, 0);
    for (int l = 0; l < NL; l++) {
        char n[96];
#define L_(s, a, b, base)                                                                          \
    snprintf(n, sizeof n, "encoder.layer.%d.%s", l, s);                                            \
    add(n, a, b, base)
        L_("attention.self.query.weight", H, H, 0);
        L_("attention.self.query.bias", H, 0, 0);
        L_("attention.self.key.weight", H, H, 0);
        L_("attention.self.key.bias", H, 0, 0);
        L_("attention.self.value.weight", H, H, 0);
        L_("attention.self.value.bias", H, 0, 0);
        L_("attention.output.dense.weight", H, H, 0);
        L_("attention.output.dense.bias", H, 0, 0);
        L_("attention.output.LayerNorm.weight", H, 0, 1);
        L_("attention.output.LayerNorm.bias", H, 0, 0);
        L_("intermediate.dense.weight", NI, H, 0);
        L_("intermediate.dense.bias", NI, 0, 0);
        L_("output.dense.weight", H, NI, 0);
        L_("output.dense.bias", H, 0, 0);
        L_("output.LayerNorm.weight", H, 0, 1);
        L_("output.LayerNorm.bias", H, 0, 0);
#undef L_
    }
}

static const float *W(const char *name)
{
    for (int i = 0; i < nT; i++)
        if (!strcmp(T[i].name, name)) return T[i].v;
    CHECK(0, "no tensor %s", name);
    return NULL;
}

static void put(const char *rel, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    FILE *f = fopen(p, "wb");
    CHECK(f, "cannot write %s", p);
    fputs(text, f);
    fclose(f);
}

static void rm(const char *rel)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, rel);
    unlink(p);
}

static const char *CONFIG_FMT =
    "{\"model_type\": \"bert\", \"hidden_size\": 8, \"num_attention_heads\": 2, "
    "\"num_hidden_layers\": 2, \"intermediate_size\": 16, \"vocab_size\": 16, "
    "\"max_position_embeddings\": 16, \"type_vocab_size\": 2, \"layer_norm_eps\": 1e-12, "
    "\"hidden_act\": \"%s\"}";

static void write_config(const char *act)
{
    char c[512];
    snprintf(c, sizeof c, CONFIG_FMT, act);
    put("config.json", c);
}

static void write_pooling(const char *mode)
{
    char c[512];
    snprintf(c, sizeof c,
             "{\"word_embedding_dimension\": 8, \"pooling_mode_cls_token\": %s, "
             "\"pooling_mode_mean_tokens\": %s, \"pooling_mode_max_tokens\": %s}",
             strcmp(mode, "cls") ? "false" : "true", strcmp(mode, "mean") ? "false" : "true",
             strcmp(mode, "max") ? "false" : "true");
    put("1_Pooling/config.json", c);
}

static void write_dir(void)
{
    char p[512];
    snprintf(p, sizeof p, "%s/1_Pooling", dir);
    mkdir(p, 0755);
    write_config("gelu");
    write_pooling("mean");
    put("modules.json", "[{\"idx\":0,\"name\":\"0\",\"path\":\"\",\"type\":\"sentence_transformers."
                        "models.Transformer\"},"
                        "{\"idx\":1,\"name\":\"1\",\"path\":\"1_Pooling\",\"type\":\"sentence_"
                        "transformers.models.Pooling\"},"
                        "{\"idx\":2,\"name\":\"2\",\"path\":\"2_Normalize\",\"type\":\"sentence_"
                        "transformers.models.Normalize\"}]");
    put("sentence_bert_config.json", "{\"max_seq_length\": 12, \"do_lower_case\": false}");
    put("tokenizer_config.json", "{\"do_lower_case\": true, \"strip_accents\": null}");
    put("special_tokens_map.json",
        "{\"unk_token\": \"[UNK]\", \"sep_token\": \"[SEP]\", \"pad_token\": \"[PAD]\", "
        "\"cls_token\": \"[CLS]\", \"mask_token\": \"[MASK]\"}");
    char v[512] = "";
    for (int i = 0; i < V; i++) {
        strcat(v, vocab[i]);
        strcat(v, "\n");
    }
    put("vocab.txt", v);
}

enum {
    M_NONE,
    M_TRUNCATE,
    M_BADJSON,
    M_HUGEHDR,
    M_PAST_EOF,
    M_DTYPE_I32,
    M_SHAPE,
    M_MISSING,
    M_EMPTY
};

/* Writes model.safetensors in dtype ("F32", "F16", "BF16"), names prefixed with prefix, with
 * one mutation. */
static void write_st(const char *dtype, const char *prefix, int mut)
{
    size_t es = strcmp(dtype, "F32") ? 2 : 4;
    cJSON *h = cJSON_CreateObject();
    cJSON_AddItemToObject(h, "__metadata__", cJSON_Parse("{\"format\": \"pt\"}"));
    size_t off = 0;
    if (*prefix) { /* the unused tensors a BertModel checkpoint carries */
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "dtype", "I64");
        cJSON_AddItemToObject(e, "shape", cJSON_Parse("[1, 16]"));
        cJSON_AddItemToObject(e, "data_offsets", cJSON_Parse("[0, 128]"));
        cJSON_AddItemToObject(h, "bert.embeddings.position_ids", e);
        off = 128;
    }
    for (int i = 0; i < nT; i++) {
        if (mut == M_MISSING && i == 7) continue;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "dtype", mut == M_DTYPE_I32 && i == 3 ? "I32" : dtype);
        cJSON *s = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < T[i].nd; d++) {
            int64_t v = T[i].shape[d];
            if (mut == M_SHAPE && i == 9 && d == 0) v = 4; /* [8,8] -> [4,16]: same size */
            if (mut == M_SHAPE && i == 9 && d == 1) v = 16;
            cJSON_AddItemToArray(s, cJSON_CreateNumber((double)v));
        }
        size_t bytes = T[i].n * (mut == M_DTYPE_I32 && i == 3 ? 4 : es);
        cJSON *o = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(
            o, cJSON_CreateNumber(
                   (double)(off + bytes + (mut == M_PAST_EOF && i == nT - 1 ? 64 : 0))));
        off += bytes;
        char name[128];
        snprintf(name, sizeof name, "%.16s%.96s", prefix, T[i].name);
        cJSON_AddItemToObject(h, name, e);
    }
    char *js = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (mut == M_BADJSON) js[strlen(js) - 1] = ' '; /* the closing brace */
    size_t hl = strlen(js);
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    FILE *f = fopen(p, "wb");
    CHECK(f, "cannot write %s", p);
    if (mut == M_EMPTY) {
        fclose(f);
        free(js);
        return;
    }
    uint64_t hl64 = mut == M_HUGEHDR ? (uint64_t)1 << 40 : hl;
    for (int i = 0; i < 8; i++)
        fputc((int)(hl64 >> (8 * i)) & 255, f);
    fwrite(js, 1, hl, f);
    free(js);
    if (*prefix)
        for (int i = 0; i < 128; i++)
            fputc(0, f);
    for (int i = 0; i < nT; i++) {
        if (mut == M_MISSING && i == 7) continue;
        for (size_t k = 0; k < T[i].n; k++) {
            float v = T[i].v[k];
            uint32_t b;
            memcpy(&b, &v, 4);
            if (mut == M_DTYPE_I32 && i == 3) {
                fwrite(&b, 4, 1, f);
            } else if (es == 4) {
                fwrite(&b, 4, 1, f);
            } else if (!strcmp(dtype, "BF16")) {
                uint16_t x = (uint16_t)(b >> 16);
                fwrite(&x, 2, 1, f);
            } else { /* F16 of a value k/256, |k| <= 384: normal, exact */
                uint16_t x = 0;
                if (v != 0) {
                    int e;
                    float fr = frexpf(fabsf(v), &e); /* v = fr * 2^e, fr in [0.5, 1) */
                    uint16_t man = (uint16_t)lrintf((fr * 2 - 1) * 1024);
                    x = (uint16_t)((v < 0 ? 0x8000 : 0) | (e - 1 + 15) << 10 | man);
                }
                fwrite(&x, 2, 1, f);
            }
        }
    }
    fclose(f);
    if (mut == M_TRUNCATE) CHECK(truncate(p, (off_t)(8 + hl + off / 2)) == 0, "truncate");
}

/* ---- the naive reference ------------------------------------------------------------------- */

static void ln(double *x, const float *g, const float *b)
{
    double mu = 0, var = 0;
    for (int i = 0; i < H; i++)
        mu += x[i];
    mu /= H;
    for (int i = 0; i < H; i++)
        var += (x[i] - mu) * (x[i] - mu);
    var /= H;
    for (int i = 0; i < H; i++)
        x[i] = (x[i] - mu) / sqrt(var + 1e-12) * g[i] + b[i];
}

static void dense(const double *x, int in, const float *w, const float *b, int out, double *y)
{
    for (int o = 0; o < out; o++) {
        double s = b[o];
        for (int i = 0; i < in; i++)
            s += x[i] * w[o * in + i];
        y[o] = s;
    }
}

static void reference(const int32_t *ids, int n, int pooling, int tanh_gelu, double *out)
{
    double x[16][H], q[16][H], k[16][H], v[16][H], c[16][H], t[16][NI];
    char nm[96];
    for (int p = 0; p < n; p++) {
        for (int j = 0; j < H; j++)
            x[p][j] = (double)W("embeddings.word_embeddings.weight")[ids[p] * H + j] +
                      W("embeddings.position_embeddings.weight")[p * H + j] +
                      W("embeddings.token_type_embeddings.weight")[j];
        ln(x[p], W("embeddings.LayerNorm.weight"), W("embeddings.LayerNorm.bias"));
    }
#define LW(s) (snprintf(nm, sizeof nm, "encoder.layer.%d.%s", l, s), W(nm))
    for (int l = 0; l < NL; l++) {
        for (int p = 0; p < n; p++) {
            dense(x[p], H, LW("attention.self.query.weight"), LW("attention.self.query.bias"), H,
                  q[p]);
            dense(x[p], H, LW("attention.self.key.weight"), LW("attention.self.key.bias"), H, k[p]);
            dense(x[p], H, LW("attention.self.value.weight"), LW("attention.self.value.bias"), H,
                  v[p]);
        }
        const int dh = H / NH;
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < n; i++) {
                double s[16], mx = -1e300, sum = 0;
                for (int j = 0; j < n; j++) {
                    s[j] = 0;
                    for (int d = 0; d < dh; d++)
                        s[j] += q[i][h * dh + d] * k[j][h * dh + d];
                    s[j] /= sqrt((double)dh);
                    mx = s[j] > mx ? s[j] : mx;
                }
                for (int j = 0; j < n; j++)
                    sum += (s[j] = exp(s[j] - mx));
                for (int d = 0; d < dh; d++) {
                    double a = 0;
                    for (int j = 0; j < n; j++)
                        a += s[j] / sum * v[j][h * dh + d];
                    c[i][h * dh + d] = a;
                }
            }
        for (int p = 0; p < n; p++) {
            double y[H];
            dense(c[p], H, LW("attention.output.dense.weight"), LW("attention.output.dense.bias"),
                  H, y);
            for (int j = 0; j < H; j++)
                x[p][j] += y[j];
            ln(x[p], LW("attention.output.LayerNorm.weight"),
               LW("attention.output.LayerNorm.bias"));
            dense(x[p], H, LW("intermediate.dense.weight"), LW("intermediate.dense.bias"), NI,
                  t[p]);
            for (int j = 0; j < NI; j++) {
                double z = t[p][j];
                t[p][j] = tanh_gelu
                              ? 0.5 * z * (1 + tanh(sqrt(2 / M_PI) * (z + 0.044715 * z * z * z)))
                              : 0.5 * z * (1 + erf(z / sqrt(2.0)));
            }
            dense(t[p], NI, LW("output.dense.weight"), LW("output.dense.bias"), H, y);
            for (int j = 0; j < H; j++)
                x[p][j] += y[j];
            ln(x[p], LW("output.LayerNorm.weight"), LW("output.LayerNorm.bias"));
        }
    }
#undef LW
    double n2 = 0;
    for (int j = 0; j < H; j++) {
        double a = pooling == SBERT_POOL_MAX ? -1e300 : 0;
        for (int p = 0; p < (pooling == SBERT_POOL_CLS ? 1 : n); p++)
            a = pooling == SBERT_POOL_MAX ? (x[p][j] > a ? x[p][j] : a) : a + x[p][j];
        out[j] = pooling == SBERT_POOL_MEAN ? a / n : a;
        n2 += out[j] * out[j];
    }
    for (int j = 0; j < H; j++)
        out[j] /= sqrt(n2);
}

/* ---- checks -------------------------------------------------------------------------------- */

static const char *const texts[4] = {"the cat sat on the mat.", "Hello world", "a dog",
                                     "cats cats cats cats cats cats cats cats cats cats"};

static void encode_tiny(float *out)
{
    sbert_model *m;
    char err[512];
    int rc = sbert_model_load(dir, NULL, &m, err, sizeof err);
    CHECK(rc == 0, "load: %s", err);
    rc = sbert_encode(m, texts, NULL, 4, out, NULL, NULL, NULL);
    CHECK(rc == 0, "encode: %s", sbert_strerror(rc));
    sbert_model_free(m);
}

static void expect_fail(const char *what, int code, const char *needle)
{
    sbert_model *m = (sbert_model *)1;
    char err[512] = "";
    int rc = sbert_model_load(dir, NULL, &m, err, sizeof err);
    printf("%-28s -> %d (%s): %s\n", what, rc, sbert_strerror(rc), err);
    CHECK(rc == code, "%s: got %d (%s), want %d: %s", what, rc, sbert_strerror(rc), code, err);
    CHECK(m == NULL, "%s: *out not NULL after failure", what);
    CHECK(strstr(err, needle), "%s: message \"%s\" does not name \"%s\"", what, err, needle);
}

static void compare_reference(int pooling, int tanh_gelu)
{
    sbert_model *m;
    char err[512];
    int rc = sbert_model_load(dir, NULL, &m, err, sizeof err);
    CHECK(rc == 0, "load: %s", err);
    CHECK(sbert_model_info(m)->pooling == pooling, "pooling %d", sbert_model_info(m)->pooling);
    float out[4 * H];
    int tr[4];
    struct sbert_encode_params ep = {.n_threads = 2};
    rc = sbert_encode(m, texts, NULL, 4, out, &ep, tr, NULL);
    CHECK(rc == 0, "encode: %s", sbert_strerror(rc));
    CHECK(tr[3] == 1 && tr[0] == 0, "truncation flags %d %d", tr[0], tr[3]);
    for (int i = 0; i < 4; i++) {
        int32_t ids[16];
        size_t n;
        rc = sbert_tokenize(m, texts[i], strlen(texts[i]), ids, 16, &n, NULL);
        CHECK(rc == 0 && n >= 2 && n <= 12, "tokenize %d: rc %d n %zu", i, rc, n);
        double ref[H];
        reference(ids, (int)n, pooling, tanh_gelu, ref);
        for (int j = 0; j < H; j++)
            CHECK(fabs(ref[j] - out[i * H + j]) < 1e-5,
                  "pooling %d gelu %s text %d dim %d: %.7f vs reference %.7f", pooling,
                  tanh_gelu ? "tanh" : "erf", i, j, out[i * H + j], ref[j]);
    }
    sbert_model_free(m);
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s/sbert-loader-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    CHECK(mkdtemp(dir), "mkdtemp");
    make_weights();
    write_dir();

    float a[4 * H], b[4 * H];
    write_st("F32", "", M_NONE);
    encode_tiny(a);
    for (int i = 0; i < 4; i++) {
        double n2 = 0;
        for (int j = 0; j < H; j++)
            n2 += (double)a[i * H + j] * a[i * H + j];
        CHECK(fabs(n2 - 1) < 1e-5, "row %d not normalised: |x|^2 = %g", i, n2);
    }
    static const char *const dt[] = {"F16", "BF16"};
    for (int d = 0; d < 2; d++) {
        write_st(dt[d], "", M_NONE);
        encode_tiny(b);
        for (int i = 0; i < 4 * H; i++)
            CHECK(a[i] == b[i], "%s weights give other results than F32: [%d] %.9g vs %.9g", dt[d],
                  i, b[i], a[i]);
    }
    write_st("F32", "bert.", M_NONE);
    encode_tiny(b);
    CHECK(!memcmp(a, b, sizeof a), "bert.-prefixed weights give other results");

    compare_reference(SBERT_POOL_MEAN, 0);
    write_pooling("cls");
    compare_reference(SBERT_POOL_CLS, 0);
    write_pooling("max");
    compare_reference(SBERT_POOL_MAX, 0);
    write_pooling("mean");
    write_config("gelu_new");
    compare_reference(SBERT_POOL_MEAN, 1);
    write_config("gelu");

    write_st("F32", "", M_TRUNCATE);
    expect_fail("truncated safetensors", SBERT_EFORMAT, "model.safetensors");
    write_st("F32", "", M_EMPTY);
    expect_fail("empty safetensors", SBERT_EFORMAT, "model.safetensors");
    write_st("F32", "", M_HUGEHDR);
    expect_fail("header length past EOF", SBERT_EFORMAT, "model.safetensors");
    write_st("F32", "", M_BADJSON);
    expect_fail("bad header JSON", SBERT_EFORMAT, "JSON");
    write_st("F32", "", M_PAST_EOF);
    expect_fail("offsets past EOF", SBERT_EFORMAT, "model.safetensors");
    write_st("F32", "", M_DTYPE_I32);
    expect_fail("wrong dtype", SBERT_EUNSUPPORTED, "I32");
    write_st("F32", "", M_SHAPE);
    expect_fail("wrong shape", SBERT_EFORMAT, "shape");
    write_st("F32", "", M_MISSING);
    expect_fail("missing tensor", SBERT_EFORMAT, "missing");
    write_st("F32", "", M_NONE);

    write_config("relu");
    expect_fail("hidden_act relu", SBERT_EUNSUPPORTED, "relu");
    put("config.json", "{\"hidden_size\": 8,");
    expect_fail("bad config.json", SBERT_EFORMAT, "config.json");
    rm("config.json");
    expect_fail("missing config.json", SBERT_EIO, "config.json");
    write_config("gelu");
    rm("1_Pooling/config.json");
    expect_fail("missing pooling config", SBERT_EIO, "1_Pooling");
    write_pooling("mean");
    put("modules.json",
        "[{\"type\": \"sentence_transformers.models.Dense\", \"path\": \"2_Dense\"}]");
    expect_fail("unsupported module", SBERT_EUNSUPPORTED, "Dense");
    rm("modules.json"); /* sentence-transformers' fallback: mean pooling, no Normalize */
    {
        sbert_model *m;
        char err[512];
        CHECK(sbert_model_load(dir, NULL, &m, err, sizeof err) == 0, "no modules.json: %s", err);
        CHECK(sbert_model_info(m)->normalize == 0 &&
                  sbert_model_info(m)->pooling == SBERT_POOL_MEAN,
              "no modules.json: normalize %d pooling %d", sbert_model_info(m)->normalize,
              sbert_model_info(m)->pooling);
        sbert_model_free(m);
    }
    rm("vocab.txt");
    {
        sbert_model *m = (sbert_model *)1;
        char err[512] = "";
        int rc = sbert_model_load(dir, NULL, &m, err, sizeof err);
        printf("%-28s -> %d (%s): %s\n", "missing vocab.txt", rc, sbert_strerror(rc), err);
        CHECK(rc < 0 && m == NULL && strstr(err, "vocab.txt"), "missing vocab.txt: rc %d: %s", rc,
              err);
    }

    static const char *const files[] = {"config.json",
                                        "1_Pooling/config.json",
                                        "sentence_bert_config.json",
                                        "tokenizer_config.json",
                                        "special_tokens_map.json",
                                        "model.safetensors",
                                        "1_Pooling"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        remove(p);
    }
    CHECK(rmdir(dir) == 0, "temp dir %s not empty", dir);
    for (int i = 0; i < nT; i++)
        free(T[i].v);
    printf("ok\n");
    return 0;
}
