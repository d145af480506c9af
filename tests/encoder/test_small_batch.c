/*
 * Calls with fewer texts than threads (a query: one text) split every layer between the threads
 * (forward.c, forward_split). Their results must not depend on the thread count: one text, or two
 * or three, with 2, 3, 4 and 16 threads equal the same call with 1 thread within 1e-6 per
 * component, for short texts (the few-row kernel) and a 256-token one (sgemm on column slices).
 * One-text results at 2 threads also match sentence-transformers' goldens (cosine >= 0.99999,
 * components within 1e-4), and two callers doing this at once get the same bits as one alone.
 * usage: test_small_batch MODEL_DIR GOLDEN_DIR
 */
#include "sbert.h"
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

enum { STEP = 13, MAX_TEXTS = 800 };

static sbert_model *model;
static char *texts[MAX_TEXTS];
static size_t lens[MAX_TEXTS], count;
static int dim;

static double max_diff(const float *a, const float *b, size_t n)
{
    double mx = 0;
    for (size_t i = 0; i < n; i++)
        mx = fmax(mx, fabs((double)a[i] - b[i]));
    return mx;
}

/* The index after i when walking 0..last in steps of step, last always included. */
static size_t next_index(size_t i, size_t step, size_t last)
{
    return i == last ? last + 1 : i + step < last ? i + step : last;
}

/* Encodes texts[i..i+n) with t threads into out. */
static void encode(size_t i, size_t n, int t, float *out)
{
    struct sbert_encode_params ep = {.n_threads = t};
    int rc = sbert_encode(model, (const char *const *)&texts[i], &lens[i], n, out, &ep, NULL, NULL);
    CHECK(rc == 0, "encode texts %zu..%zu with %d threads: %s", i, i + n, t, sbert_strerror(rc));
}

/* A caller encoding every STEP-th text alone with 2 threads, as a daemon worker does queries. */
struct caller {
    float *out;
};

static void *run_caller(void *arg)
{
    struct caller *c = arg;
    for (size_t i = 0, k = 0; i < count; i += STEP, k++)
        encode(i, 1, 2, c->out + k * (size_t)dim);
    return NULL;
}

int main(int argc, char **argv)
{
    CHECK(argc == 3, "usage: test_small_batch MODEL_DIR GOLDEN_DIR");
    char path[4096], err[512];
    size_t len, flen;
    snprintf(path, sizeof path, "%s/embeddings.jsonl", argv[2]);
    char *jl = read_file(path, &len);
    CHECK(jl, "cannot read %s", path);
    snprintf(path, sizeof path, "%s/embeddings.f32", argv[2]);
    float *ref = (float *)(void *)read_file(path, &flen);
    CHECK(ref, "cannot read %s", path);
    char *save = NULL;
    strtok_r(jl, "\n", &save); /* header; test_golden checks it and the weights' hash */
    for (char *line; count < MAX_TEXTS - 1 && (line = strtok_r(NULL, "\n", &save));) {
        texts[count] = json_string_decode(line, &lens[count]);
        CHECK(texts[count], "bad line %zu", count + 2);
        count++;
    }
    CHECK(count >= 100, "only %zu golden texts", count);
    CHECK(sbert_model_load(argv[1], NULL, &model, err, sizeof err) == 0, "load: %s", err);
    dim = sbert_model_info(model)->dim;
    CHECK(flen >= count * (size_t)dim * 4, "embeddings.f32 is short");
    const size_t n_gold = count;

    /* A text longer than max_seq_length (truncated to 256 tokens: more rows than the few-row
     * kernel takes), appended after the goldens. */
    size_t long_len = 0;
    for (size_t i = 0; i < 60; i++)
        long_len += lens[i] + 1;
    char *long_text = malloc(long_len + 1), *p = long_text;
    for (size_t i = 0; i < 60; i++) {
        memcpy(p, texts[i], lens[i]);
        p += lens[i];
        *p++ = ' ';
    }
    *p = '\0';
    texts[count] = long_text;
    lens[count++] = long_len;
    int truncated = 0;
    struct sbert_encode_params one_thread = {.n_threads = 1};
    float *probe = malloc((size_t)dim * sizeof *probe);
    CHECK(sbert_encode(model, (const char *const *)&texts[count - 1], &lens[count - 1], 1, probe,
                       &one_thread, &truncated, NULL) == 0 &&
              truncated,
          "the long text is not truncated");

    const int threads[] = {2, 3, 4, 16};
    float *a = malloc(3 * (size_t)dim * sizeof *a), *b = malloc(3 * (size_t)dim * sizeof *b);
    double worst = 0, worst_cos = 2, worst_gold = 0;
    size_t singles = 0;
    for (size_t i = 0; i < count; i = next_index(i, STEP, count - 1)) {
        encode(i, 1, 1, a);
        for (size_t k = 0; k < sizeof threads / sizeof *threads; k++) {
            encode(i, 1, threads[k], b);
            double d = max_diff(a, b, (size_t)dim);
            CHECK(d < 1e-6, "text %zu alone: %d threads differ from 1 by %g", i, threads[k], d);
            worst = fmax(worst, d);
            if (threads[k] == 2 && i < n_gold) {
                const float *g = ref + i * (size_t)dim;
                double ab = 0, aa = 0, bb = 0;
                for (int j = 0; j < dim; j++) {
                    ab += (double)b[j] * g[j];
                    aa += (double)b[j] * b[j];
                    bb += (double)g[j] * g[j];
                }
                double cos = ab / sqrt(aa * bb), dg = max_diff(b, g, (size_t)dim);
                CHECK(cos >= 0.99999 && dg <= 1e-4,
                      "text %zu alone, 2 threads: cosine %.8f, max |diff| %.3g vs the golden", i,
                      cos, dg);
                worst_cos = fmin(worst_cos, cos);
                worst_gold = fmax(worst_gold, dg);
            }
        }
        singles++;
    }
    CHECK(singles >= 60, "only %zu single texts checked", singles);

    /* Two and three texts with 4 threads (fewer texts than threads), the long one among them. */
    for (size_t n = 2; n <= 3; n++)
        for (size_t i = 0; i + n <= count; i = next_index(i, 97, count - n)) {
            encode(i, n, 1, a);
            encode(i, n, 4, b);
            double d = max_diff(a, b, n * (size_t)dim);
            CHECK(d < 1e-6, "texts %zu..%zu: 4 threads differ from 1 by %g", i, i + n, d);
            worst = fmax(worst, d);
        }

    /* Two callers at once, each splitting its calls over 2 threads: per-call scratch and
     * counters, so the same bits as one caller alone. */
    size_t nk = (count + STEP - 1) / STEP;
    struct caller lone = {malloc(nk * (size_t)dim * 4)}, c1 = {malloc(nk * (size_t)dim * 4)},
                  c2 = {malloc(nk * (size_t)dim * 4)};
    run_caller(&lone);
    pthread_t t1, t2;
    CHECK(pthread_create(&t1, NULL, run_caller, &c1) == 0 &&
              pthread_create(&t2, NULL, run_caller, &c2) == 0,
          "pthread_create");
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    CHECK(!memcmp(lone.out, c1.out, nk * (size_t)dim * 4) &&
              !memcmp(lone.out, c2.out, nk * (size_t)dim * 4),
          "concurrent 2-thread single-text calls differ from a lone caller's");

    printf(
        "%zu single texts (one of 256 tokens) and pairs/triples: n threads vs 1 max |diff| %.3g; "
        "vs goldens at 2 threads: worst cosine %.9f, max |diff| %.3g; 2 concurrent callers "
        "identical to one\n",
        singles, worst, worst_cos, worst_gold);

    for (size_t i = 0; i < count; i++)
        free(texts[i]);
    free(jl);
    free(ref);
    free(probe);
    free(a);
    free(b);
    free(lone.out);
    free(c1.out);
    free(c2.out);
    sbert_model_free(model);
    return 0;
}
