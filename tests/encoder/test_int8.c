/*
 * int8 precision on the goldens (sentence-transformers' fp32 vectors):
 *  - fidelity: cosine to fp32 mean >= 0.995 and minimum >= 0.98 (issue 14's targets);
 *  - every kernel this CPU has (SBERT_INT8_ISA) gives the default kernel's vectors bit for bit
 *    (on 300 texts; the slow scalar reference on 32), and AVX2 is always among them on x86-64;
 *    where the CPU has AMX it is the default kernel, so the scalar run checks it (its batches
 *    mix tile products of 32+ rows and AVX512-VNNI ones below); elsewhere amx is skipped;
 *  - one text's vector is the same bit for bit whatever batch it is encoded in and whatever the
 *    thread count;
 *  - the model reports its precision and kernel.
 * usage: test_int8 MODEL_DIR GOLDEN_DIR
 */
#include "cosstats.h"
#include "sbert.h"
#include "testutil.h"

#include <cjson/cJSON.h>
#include <string.h>

enum { SUBSET = 300 }; /* texts for the repeated encodings */

static sbert_model *load(const char *dir, const char *isa)
{
    if (isa)
        setenv("SBERT_INT8_ISA", isa, 1);
    else
        unsetenv("SBERT_INT8_ISA");
    struct sbert_model_params mp = sbert_model_default_params();
    mp.precision = SBERT_PRECISION_INT8;
    mp.n_threads = 2;
    sbert_model *m = NULL;
    char err[512];
    int rc = sbert_model_load(dir, &mp, &m, err, sizeof err);
    if (rc == SBERT_EUNSUPPORTED && isa) return NULL; /* the CPU lacks it */
    CHECK(rc == 0, "load int8 (%s): %s", isa ? isa : "default", err);
    return m;
}

static void encode(sbert_model *m, char **texts, size_t *lens, size_t n, float *out, int threads)
{
    struct sbert_encode_params ep = sbert_encode_default_params();
    ep.n_threads = threads;
    size_t bad = 0;
    int rc = sbert_encode(m, (const char *const *)texts, lens, n, out, &ep, NULL, &bad);
    CHECK(rc == 0, "encode: %s (text %zu)", sbert_strerror(rc), bad);
}

int main(int argc, char **argv)
{
    CHECK(argc == 3, "usage: test_int8 MODEL_DIR GOLDEN_DIR");
    char path[4096];
    size_t len, flen;
    snprintf(path, sizeof path, "%s/embeddings.jsonl", argv[2]);
    char *jl = read_file(path, &len);
    CHECK(jl, "cannot read %s", path);
    snprintf(path, sizeof path, "%s/embeddings.f32", argv[2]);
    float *ref = (float *)(void *)read_file(path, &flen);
    CHECK(ref, "cannot read %s", path);
    char *save = NULL, *line = strtok_r(jl, "\n", &save);
    cJSON *hdr = cJSON_Parse(line);
    CHECK(hdr, "bad header line");
    const int dim = cJSON_GetObjectItem(hdr, "dim")->valueint;
    const size_t n = (size_t)cJSON_GetObjectItem(hdr, "count")->valuedouble;
    CHECK(flen == n * (size_t)dim * 4, "embeddings.f32 size");
    char **texts = calloc(n, sizeof *texts);
    size_t *lens = calloc(n, sizeof *lens);
    for (size_t i = 0; i < n; i++) {
        line = strtok_r(NULL, "\n", &save);
        CHECK(line && (texts[i] = json_string_decode(line, &lens[i])), "text %zu", i);
    }

    sbert_model *m = load(argv[1], NULL);
    const struct sbert_model_info *info = sbert_model_info(m);
    CHECK(info->precision == SBERT_PRECISION_INT8 && info->int8_kernel, "info: precision/kernel");
    CHECK(info->dim == dim, "dim");
    printf("default int8 kernel: %s\n", info->int8_kernel);
    const size_t bytes = n * (size_t)dim * sizeof(float);
    float *out = malloc(bytes), *o2 = malloc(bytes);

    /* Fidelity against sentence-transformers' fp32 vectors. */
    encode(m, texts, lens, n, out, 2);
    struct cos_stats cs = cos_stats(out, ref, n, dim);
    printf("%zu golden texts, cosine int8 vs fp32: mean %.5f, p5 %.5f, min %.5f (text %zu)\n", n,
           cs.mean, cs.p5, cs.min, cs.argmin);
    CHECK(cs.mean >= 0.995 && cs.min >= 0.98, "int8 too far from fp32: mean %.5f min %.5f", cs.mean,
          cs.min);

    /* The thread count and the batch change no bit. Subsets keep the sanitizer run short: the
     * 1-thread pass takes the groups path, 2 threads share each text's layers (below). */
    const size_t nsub = n < SUBSET ? n : SUBSET;
    encode(m, texts, lens, nsub, o2, 1);
    CHECK(!memcmp(out, o2, nsub * (size_t)dim * sizeof(float)), "1 thread differs from 2 threads");
    size_t alone = 0;
    for (size_t i = 0; i < n; i += 9, alone++) {
        encode(m, texts + i, lens + i, 1, o2, 2);
        CHECK(!memcmp(out + i * dim, o2, (size_t)dim * sizeof(float)),
              "text %zu alone differs from text %zu in the batch of %zu", i, i, n);
    }
    const size_t mid = n / 3; /* a batch of different neighbours, in a different order */
    encode(m, texts + mid, lens + mid, n - mid, o2 + mid * dim, 2);
    CHECK(!memcmp(out + mid * dim, o2 + mid * dim, (n - mid) * (size_t)dim * sizeof(float)),
          "a shifted batch differs");
    printf(
        "batch and thread invariance: bit-identical (%zu texts alone, %zu with 1 vs 2 threads)\n",
        alone, nsub);
    sbert_model_free(m);

    /* Every kernel the CPU has, against the default kernel's vectors. */
    static const char *const isas[] = {"avx2", "avxvnni", "avx512vnni", "amx", "scalar"};
    int ran_avx2 = 0;
    for (size_t k = 0; k < sizeof isas / sizeof *isas; k++) {
        sbert_model *mk = load(argv[1], isas[k]);
        if (!mk) {
            printf("kernel %-10s: not on this CPU%s\n", isas[k],
                   strcmp(isas[k], "amx") ? ""
                                          : " (needs AMX-TILE, AMX-INT8 and the OS's tile "
                                            "permission): skipped");
            continue;
        }
        CHECK(!strcmp(sbert_model_info(mk)->int8_kernel, isas[k]), "forced kernel not used");
        const size_t nk = strcmp(isas[k], "scalar") ? nsub : 32;
        encode(mk, texts, lens, nk, o2, 2);
        CHECK(!memcmp(out, o2, nk * (size_t)dim * sizeof(float)),
              "kernel %s differs from the default kernel", isas[k]);
        printf("kernel %-10s: %zu texts bit-identical\n", isas[k], nk);
        ran_avx2 |= !strcmp(isas[k], "avx2");
        sbert_model_free(mk);
    }
#if defined(__x86_64__)
    CHECK(ran_avx2, "the AVX2 kernel did not run");
#endif
    unsetenv("SBERT_INT8_ISA");
    setenv("SBERT_INT8_ISA", "no-such-isa", 1);
    struct sbert_model_params mp = sbert_model_default_params();
    mp.precision = SBERT_PRECISION_INT8;
    char err[512];
    CHECK(sbert_model_load(argv[1], &mp, &m, err, sizeof err) == SBERT_EUNSUPPORTED && !m,
          "an unknown SBERT_INT8_ISA must fail the load");
    unsetenv("SBERT_INT8_ISA");
    mp.precision = 7;
    CHECK(sbert_model_load(argv[1], &mp, &m, err, sizeof err) == SBERT_EINVAL && !m,
          "an unknown precision must fail the load");

    for (size_t i = 0; i < n; i++)
        free(texts[i]);
    free(texts);
    free(lens);
    free(out);
    free(o2);
    free(ref);
    free(jl);
    cJSON_Delete(hdr);
    return 0;
}
