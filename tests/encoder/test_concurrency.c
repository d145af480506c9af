/*
 * Two threads encoding at once on one model give bit-identical results to one thread alone, and
 * the thread count of a call changes nothing beyond float rounding. Also: invalid UTF-8 is
 * refused with SBERT_EUTF8 naming the text, and n = 0 is a no-op.
 * usage: test_concurrency MODEL_DIR GOLDEN_DIR
 */
#include "sbert.h"
#include "testutil.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <string.h>

static sbert_model *model;
static char **texts;
static size_t *lens;
static size_t count;
static int dim;

struct job {
    int n_threads;
    float *out;
    int rc;
};

static void *run(void *arg)
{
    struct job *j = arg;
    struct sbert_encode_params ep = {.n_threads = j->n_threads};
    for (int rep = 0; rep < 2 && !j->rc; rep++)
        j->rc =
            sbert_encode(model, (const char *const *)texts, lens, count, j->out, &ep, NULL, NULL);
    return NULL;
}

int main(int argc, char **argv)
{
    CHECK(argc == 3, "usage: test_concurrency MODEL_DIR GOLDEN_DIR");
    char path[4096], err[512];
    size_t len;
    snprintf(path, sizeof path, "%s/embeddings.jsonl", argv[2]);
    char *jl = read_file(path, &len);
    CHECK(jl, "cannot read %s", path);
    texts = calloc(400, sizeof *texts);
    lens = calloc(400, sizeof *lens);
    char *save = NULL;
    strtok_r(jl, "\n", &save); /* header */
    for (char *line; count < 400 && (line = strtok_r(NULL, "\n", &save));) {
        size_t n;
        texts[count] = json_string_decode(line, &n);
        CHECK(texts[count], "bad line %zu", count + 2);
        lens[count++] = n;
    }
    CHECK(sbert_model_load(argv[1], NULL, &model, err, sizeof err) == 0, "load: %s", err);
    dim = sbert_model_info(model)->dim;
    size_t sz = count * (size_t)dim;
    struct job alone = {1, malloc(sz * 4), 0}, a = {1, malloc(sz * 4), 0},
               b = {1, malloc(sz * 4), 0}, two = {2, malloc(sz * 4), 0};
    run(&alone);
    CHECK(alone.rc == 0, "encode: %s", sbert_strerror(alone.rc));
    pthread_t ta, tb;
    CHECK(pthread_create(&ta, NULL, run, &a) == 0 && pthread_create(&tb, NULL, run, &b) == 0,
          "pthread_create");
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(a.rc == 0 && b.rc == 0, "concurrent encode: %d %d", a.rc, b.rc);
    CHECK(!memcmp(alone.out, a.out, sz * 4) && !memcmp(alone.out, b.out, sz * 4),
          "concurrent calls differ from a lone call");
    run(&two);
    CHECK(two.rc == 0, "2-thread encode: %s", sbert_strerror(two.rc));
    double mx = 0;
    for (size_t i = 0; i < sz; i++)
        mx = fmax(mx, fabs((double)two.out[i] - alone.out[i]));
    printf("%zu texts: two concurrent callers identical to one; 2 vs 1 threads max |diff| %.3g\n",
           count, mx);
    CHECK(mx < 1e-5, "2 threads differ from 1 by %g", mx);

    /* Results do not depend on the other texts of a call (packing, sorting). */
    float one[1024];
    CHECK(dim <= 1024, "dim");
    for (size_t i = 0; i < count; i += 97) {
        CHECK(sbert_encode(model, (const char *const *)&texts[i], &lens[i], 1, one, NULL, NULL,
                           NULL) == 0,
              "single encode");
        double d = 0;
        for (int j = 0; j < dim; j++)
            d = fmax(d, fabs((double)one[j] - alone.out[i * dim + j]));
        CHECK(d < 1e-5, "text %zu alone differs by %g from the batched result", i, d);
    }

    const char *bad[3] = {"fine", "bad \xC3\x28 byte", "also fine"};
    size_t bi = 99;
    int rc = sbert_encode(model, bad, NULL, 3, one, NULL, NULL, &bi);
    CHECK(rc == SBERT_EUTF8 && bi == 1, "invalid UTF-8: rc %d index %zu", rc, bi);
    CHECK(sbert_encode(model, NULL, NULL, 0, NULL, NULL, NULL, NULL) == 0, "n = 0");
    CHECK(sbert_encode(NULL, bad, NULL, 1, one, NULL, NULL, NULL) == SBERT_EINVAL, "NULL model");

    for (size_t i = 0; i < count; i++)
        free(texts[i]);
    free(texts);
    free(lens);
    free(jl);
    free(alone.out);
    free(a.out);
    free(b.out);
    free(two.out);
    sbert_model_free(model);
    return 0;
}
