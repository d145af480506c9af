/*
 * Faithfulness: every embedding of the committed goldens (sentence-transformers' own output,
 * tests/golden/make_embeddings.py) reproduced with cosine >= 0.99999 and every component within
 * 1e-4. usage: test_golden MODEL_DIR GOLDEN_DIR [THREADS]
 */
#include "sbert.h"
#include "testutil.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

int main(int argc, char **argv)
{
    CHECK(argc >= 3, "usage: test_golden MODEL_DIR GOLDEN_DIR [THREADS]");
    char path[4096];
    size_t len;
    snprintf(path, sizeof path, "%s/embeddings.jsonl", argv[2]);
    char *jl = read_file(path, &len);
    CHECK(jl, "cannot read %s", path);
    snprintf(path, sizeof path, "%s/embeddings.f32", argv[2]);
    size_t flen;
    float *ref = (float *)(void *)read_file(path, &flen);
    CHECK(ref, "cannot read %s", path);

    char *save = NULL, *line = strtok_r(jl, "\n", &save);
    cJSON *hdr = cJSON_Parse(line);
    CHECK(hdr && cJSON_IsObject(hdr), "bad header line");
    const cJSON *ver = cJSON_GetObjectItem(hdr, "version"),
                *fmt = cJSON_GetObjectItem(hdr, "format");
    CHECK(cJSON_IsString(fmt) && !strcmp(fmt->valuestring, "sbert-embeddings-golden") &&
              cJSON_IsNumber(ver) && ver->valueint == 1,
          "unknown golden format/version");
    int dim = cJSON_GetObjectItem(hdr, "dim")->valueint;
    size_t count = (size_t)cJSON_GetObjectItem(hdr, "count")->valuedouble;
    CHECK(flen == count * (size_t)dim * 4, "embeddings.f32 has %zu bytes, want %zu", flen,
          count * (size_t)dim * 4);
    char **texts = calloc(count, sizeof *texts);
    size_t *lens = calloc(count, sizeof *lens);
    for (size_t i = 0; i < count; i++) {
        line = strtok_r(NULL, "\n", &save);
        CHECK(line, "embeddings.jsonl has fewer than %zu texts", count);
        texts[i] = json_string_decode(line, &lens[i]);
        CHECK(texts[i], "line %zu is not a JSON string", i + 2);
    }

    sbert_model *m;
    char err[512];
    int rc = sbert_model_load(argv[1], NULL, &m, err, sizeof err);
    CHECK(rc == 0, "load: %s", err);
    const struct sbert_model_info *info = sbert_model_info(m);
    CHECK(info->dim == dim, "model dim %d, goldens %d", info->dim, dim);
    const char *sha = cJSON_GetObjectItem(hdr, "model_sha256")->valuestring;
    CHECK(!strcmp(sha, info->weights_sha256),
          "goldens were made with weights %s, the model has %s: regenerate them", sha,
          info->weights_sha256);

    struct sbert_encode_params ep = sbert_encode_default_params();
    ep.n_threads = argc > 3 ? atoi(argv[3]) : 2;
    float *out = malloc(count * (size_t)dim * sizeof *out);
    size_t bad = 0;
    rc = sbert_encode(m, (const char *const *)texts, lens, count, out, &ep, NULL, &bad);
    CHECK(rc == 0, "encode: %s (text %zu)", sbert_strerror(rc), bad);

    double worst_cos = 2, worst_abs = 0;
    size_t worst_cos_i = 0, worst_abs_i = 0, fails = 0;
    for (size_t i = 0; i < count; i++) {
        const float *a = out + i * (size_t)dim, *b = ref + i * (size_t)dim;
        double ab = 0, aa = 0, bb = 0, mx = 0;
        for (int j = 0; j < dim; j++) {
            ab += (double)a[j] * b[j];
            aa += (double)a[j] * a[j];
            bb += (double)b[j] * b[j];
            double d = fabs((double)a[j] - b[j]);
            mx = d > mx ? d : mx;
        }
        double cos = ab / sqrt(aa * bb);
        if (!(cos >= 0.99999) || !(mx <= 1e-4)) {
            if (fails++ < 10)
                fprintf(stderr, "text %zu: cosine %.8f, max |diff| %.3g: \"%.60s\"\n", i, cos, mx,
                        texts[i]);
        }
        if (!(cos >= worst_cos)) {
            worst_cos = cos;
            worst_cos_i = i;
        }
        if (!(mx <= worst_abs)) {
            worst_abs = mx;
            worst_abs_i = i;
        }
    }
    printf("%zu texts, %d threads: worst cosine %.9f (1 - cos = %.2g, text %zu), worst |diff| %.3g "
           "(text %zu)\n",
           count, ep.n_threads, worst_cos, 1 - worst_cos, worst_cos_i, worst_abs, worst_abs_i);
    CHECK(fails == 0, "%zu of %zu embeddings differ from sentence-transformers", fails, count);

    for (size_t i = 0; i < count; i++)
        free(texts[i]);
    free(texts);
    free(lens);
    free(out);
    free(ref);
    free(jl);
    cJSON_Delete(hdr);
    sbert_model_free(m);
    return 0;
}
