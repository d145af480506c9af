/*
 * fuzz_loader.c — libFuzzer target for the model loader: config.json and the other
 * sentence-transformers JSON files (encoder/model.c), vocab.txt and special_tokens_map.json
 * (encoder/tokenizer.c) and model.safetensors (encoder/safetensors.c).
 *
 * An input is up to eight files separated by the line "====" (SEP below), in the order of
 * files[]; a missing or empty part means the file is absent. They are written to a private
 * temporary directory (on /dev/shm when there is one) and loaded with sbert_model_load(), the
 * daemon's entry. A model that loads is then used: its info is checked against its config and one
 * text is tokenized and encoded (random weights: only the sanitizers judge the numbers). The seed
 * corpus (tests/fuzz/make_corpus.py) holds tiny valid models, so mutations start from files that
 * get past the first checks.
 */
#define _GNU_SOURCE
#include "sbert.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_common.h"

#define SEP "\n====\n"

static const char *const files[] = {
    "config.json",
    "modules.json",
    "1_Pooling/config.json",
    "tokenizer_config.json",
    "sentence_bert_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "model.safetensors",
};
#define N_FILES (sizeof files / sizeof files[0])

static char dir[256];

static void remove_dir(void)
{
    char path[512];
    for (size_t i = 0; i < N_FILES; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/1_Pooling", dir);
    rmdir(path);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/sbert-fuzz-loader-XXXXXX", base ? base : "/tmp");
    char sub[512];
    if (!mkdtemp(dir) || (snprintf(sub, sizeof sub, "%s/1_Pooling", dir), mkdir(sub, 0700))) {
        fprintf(stderr, "fuzz_loader: cannot create %s: %s\n", dir, strerror(errno));
        exit(2);
    }
    atexit(remove_dir);
    return 0;
}

static void write_part(const char *name, const uint8_t *p, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (len == 0) {
        FUZZ_ASSERT(unlink(path) == 0 || errno == ENOENT);
        return;
    }
    FILE *f = fopen(path, "wb");
    FUZZ_ASSERT(f && fwrite(p, 1, len, f) == len && fclose(f) == 0);
}

static void use_model(const sbert_model *m)
{
    const struct sbert_model_info *in = sbert_model_info(m);
    FUZZ_ASSERT(in->dim >= 1 && in->n_layers >= 1 && in->n_heads >= 1);
    FUZZ_ASSERT(in->dim % in->n_heads == 0);
    FUZZ_ASSERT(in->max_seq_length >= 2);
    FUZZ_ASSERT(strlen(in->weights_sha256) == 64);
    /* Bounded work per input: the loader accepts large configs only with weights to match. */
    if ((long long)in->dim * in->max_seq_length > (1 << 20)) return;
    static const char text[] = "hello world, hello [MASK] worlds";
    int32_t ids[64];
    size_t n;
    int trunc;
    int rc = sbert_tokenize(m, text, sizeof text - 1, ids, 64, &n, &trunc);
    FUZZ_ASSERT(rc == 0 && n >= 2 && n <= 64);
    for (size_t i = 0; i < n; i++)
        FUZZ_ASSERT(ids[i] >= 0 && ids[i] < in->vocab_size);
    float *out = malloc((size_t)in->dim * sizeof *out);
    FUZZ_ASSERT(out);
    const char *texts[] = {text};
    size_t bad;
    FUZZ_ASSERT(sbert_encode(m, texts, NULL, 1, out, NULL, NULL, &bad) == 0);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    for (size_t i = 0; i < N_FILES; i++) {
        const uint8_t *q = p < end ? memmem(p, (size_t)(end - p), SEP, strlen(SEP)) : NULL;
        size_t len = p < end ? (size_t)((q ? q : end) - p) : 0;
        write_part(files[i], p, len);
        p = q ? q + strlen(SEP) : end;
    }
    char errbuf[1024];
    sbert_model *m = NULL;
    int rc = sbert_model_load(dir, NULL, &m, errbuf, sizeof errbuf);
    if (rc) {
        FUZZ_ASSERT(m == NULL && rc < 0);
        FUZZ_ASSERT(errbuf[0] != '\0' || rc == SBERT_ENOMEM);
        FUZZ_ASSERT(strlen(errbuf) < sizeof errbuf);
        return 0;
    }
    FUZZ_ASSERT(m != NULL);
    use_model(m);
    sbert_model_free(m);
    return 0;
}
