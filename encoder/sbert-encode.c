/* sbert-encode: embeddings for stdin lines, one output row per input line. */
#include "sbert.h"

#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { EXIT_USAGE = 2, EXIT_MODEL = 3, EXIT_INPUT = 4 };

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: sbert-encode --model DIR [--format jsonl|f32] [--batch N] [--threads N]\n"
        "                    [--precision fp32|int8] [--stats]\n"
        "\n"
        "Reads one text per line (UTF-8, '\\n'-terminated; a trailing '\\r' is whitespace and\n"
        "is stripped with the rest) from stdin and writes one embedding per line, in order:\n"
        "  jsonl  one JSON array of floats per line (default)\n"
        "  f32    raw little-endian float32 rows of the model's dimension, no header\n"
        "  --batch N    texts per encoder call (default 32)\n"
        "  --threads N  encoder threads (default 1)\n"
        "  --precision fp32|int8  the dense layers' arithmetic (default fp32; int8 is faster,\n"
        "               its vectors have cosine ~0.999 to fp32's; SBERT_INT8_ISA forces a kernel)\n"
        "  --stats      print texts, tokens, seconds and rates on stderr at the end\n"
        "\n"
        "Exit status: 0 success, 1 runtime error (I/O, memory), 2 usage, 3 the model could not\n"
        "be loaded, 4 an input line is not valid UTF-8 (nothing is written for it or after it).\n");
}

static void log_stderr(int level, const char *msg, void *user)
{
    (void)user;
    if (level <= SBERT_LOG_WARN) fprintf(stderr, "sbert-encode: %s\n", msg);
}

static int parse_pos(const char *s, int *v)
{
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (errno || *end || end == s || x < 1 || x > 1 << 20) return -1;
    *v = (int)x;
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int write_rows(FILE *o, const float *v, size_t n, int dim, int f32)
{
    if (f32) return fwrite(v, sizeof *v, n * (size_t)dim, o) == n * (size_t)dim ? 0 : -1;
    for (size_t i = 0; i < n; i++) {
        fputc('[', o);
        for (int j = 0; j < dim; j++)
            fprintf(o, j ? ",%.9g" : "%.9g", (double)v[i * (size_t)dim + j]);
        fputs("]\n", o);
    }
    return ferror(o) ? -1 : 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},     {"format", required_argument, 0, 'f'},
        {"batch", required_argument, 0, 'b'},     {"threads", required_argument, 0, 't'},
        {"stats", no_argument, 0, 's'},           {"help", no_argument, 0, 'h'},
        {"precision", required_argument, 0, 'p'}, {0, 0, 0, 0},
    };
    const char *dir = NULL;
    int f32 = 0, batch = 32, threads = 1, stats = 0, precision = SBERT_PRECISION_FP32, c;
    while ((c = getopt_long(argc, argv, "m:f:b:t:p:sh", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            dir = optarg;
            break;
        case 'f':
            if (!strcmp(optarg, "f32")) {
                f32 = 1;
            } else if (strcmp(optarg, "jsonl")) {
                fprintf(stderr, "sbert-encode: --format must be jsonl or f32\n");
                return EXIT_USAGE;
            }
            break;
        case 'b':
            if (parse_pos(optarg, &batch)) {
                fprintf(stderr, "sbert-encode: --batch needs a positive integer\n");
                return EXIT_USAGE;
            }
            break;
        case 't':
            if (parse_pos(optarg, &threads)) {
                fprintf(stderr, "sbert-encode: --threads needs a positive integer\n");
                return EXIT_USAGE;
            }
            break;
        case 'p':
            if (!strcmp(optarg, "int8")) {
                precision = SBERT_PRECISION_INT8;
            } else if (strcmp(optarg, "fp32")) {
                fprintf(stderr, "sbert-encode: --precision must be fp32 or int8\n");
                return EXIT_USAGE;
            }
            break;
        case 's':
            stats = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (!dir || optind != argc) {
        if (!dir) fprintf(stderr, "sbert-encode: --model DIR is required\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    struct sbert_model_params mp = sbert_model_default_params();
    mp.n_threads = threads;
    mp.log = log_stderr;
    mp.precision = precision;
    sbert_model *m;
    char err[512];
    int rc = sbert_model_load(dir, &mp, &m, err, sizeof err);
    if (rc) {
        fprintf(stderr, "sbert-encode: %s (%s)\n", err[0] ? err : sbert_strerror(rc),
                sbert_strerror(rc));
        return EXIT_MODEL;
    }
    const int dim = sbert_model_info(m)->dim;
    char **texts = calloc((size_t)batch, sizeof *texts);
    size_t *caps = calloc((size_t)batch, sizeof *caps), *lens = calloc((size_t)batch, sizeof *lens);
    float *out = malloc((size_t)batch * (size_t)dim * sizeof *out);
    int32_t *ids = malloc((size_t)sbert_model_info(m)->max_seq_length * sizeof *ids);
    int status = 0;
    size_t lineno = 0, n_tokens = 0;
    double t_enc = 0;
    if (!texts || !caps || !lens || !out || !ids) {
        fprintf(stderr, "sbert-encode: out of memory\n");
        status = 1;
    }
    for (int eof = 0; !status && !eof;) {
        int n = 0;
        while (n < batch) {
            ssize_t got = getline(&texts[n], &caps[n], stdin);
            if (got < 0) {
                eof = 1;
                break;
            }
            if (got > 0 && texts[n][got - 1] == '\n') got--;
            lens[n++] = (size_t)got;
        }
        if (ferror(stdin)) {
            fprintf(stderr, "sbert-encode: reading stdin: %s\n", strerror(errno));
            status = 1;
            break;
        }
        if (!n) break;
        if (stats)
            for (int i = 0; i < n; i++) {
                size_t k = 0;
                if (!sbert_tokenize(m, texts[i], lens[i], ids,
                                    (size_t)sbert_model_info(m)->max_seq_length, &k, NULL))
                    n_tokens += k;
            }
        size_t bad = 0;
        double t0 = now();
        rc = sbert_encode(m, (const char *const *)texts, lens, (size_t)n, out, NULL, NULL, &bad);
        t_enc += now() - t0;
        if (rc == SBERT_EUTF8) {
            fprintf(stderr, "sbert-encode: line %zu: %s\n", lineno + bad + 1, sbert_strerror(rc));
            status = EXIT_INPUT;
        } else if (rc) {
            fprintf(stderr, "sbert-encode: %s\n", sbert_strerror(rc));
            status = 1;
        } else if (write_rows(stdout, out, (size_t)n, dim, f32)) {
            fprintf(stderr, "sbert-encode: writing stdout: %s\n", strerror(errno));
            status = 1;
        }
        lineno += (size_t)n;
    }
    if (!status && fflush(stdout)) {
        fprintf(stderr, "sbert-encode: writing stdout: %s\n", strerror(errno));
        status = 1;
    }
    if (stats && !status)
        fprintf(stderr,
                "sbert-encode: %zu texts, %zu tokens in %.3f s: %.1f texts/s, %.0f tokens/s "
                "(batch %d, %d threads, %s, %s %s)\n",
                lineno, n_tokens, t_enc, t_enc > 0 ? lineno / t_enc : 0.0,
                t_enc > 0 ? n_tokens / t_enc : 0.0, batch, threads, sbert_precision_name(precision),
                sbert_model_info(m)->int8_kernel ? "int8 kernel" : "OpenBLAS core",
                sbert_model_info(m)->int8_kernel ? sbert_model_info(m)->int8_kernel
                                                 : openblas_get_corename());
    for (int i = 0; i < batch && texts; i++)
        free(texts[i]);
    free(texts);
    free(caps);
    free(lens);
    free(out);
    free(ids);
    sbert_model_free(m);
    return status;
}
