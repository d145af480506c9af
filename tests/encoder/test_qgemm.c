/*
 * The int8 kernels (encoder/quant.h): the scalar kernel against a plain [n x k] product of the
 * unpacked weights, and every kernel this CPU can run against the scalar one, bit for bit, on
 * random matrices with the extreme values +-127 and every row/column remainder. The AVX2 kernel
 * must be available on x86-64 (CI machines have it), so its arithmetic is always checked.
 * The AVX-VNNI kernel's source is also checked as its EVEX twin (qgemm_avxvnni_evex.c) wherever
 * the CPU has AVX512-VNNI, since few machines that run the tests have AVX-VNNI itself.
 * The AMX kernel's body runs on every machine through a model of the tile instructions
 * (amx_emu.c) over every shape and channel ranges of every panel count and offset, and must write
 * its range and nothing else; the real AMX kernel runs where the CPU has it (among "every kernel
 * this CPU can run"), and the AMX probe must say no on a CPU whose /proc/cpuinfo lacks AMX.
 * Also the row quantiser's contract.
 */
#include "amx_emu.h"
#include "quant.h"
#include "sbert.h"
#include "testutil.h"

#include <math.h>
#include <stdint.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

static uint64_t rng = 88172645463325252ull;
static uint32_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

/* Values in [-127, 127], a quarter of them at the extremes (the int16 saturation case). */
static int8_t val(void)
{
    uint32_t r = next();
    if (r % 4 == 0) return r & 16 ? 127 : -127;
    return (int8_t)((int)(r >> 8) % 255 - 127);
}

/* 1 when /proc/cpuinfo's flags name both AMX-TILE and AMX-INT8; -1 when it cannot be read. */
static int cpuinfo_has_amx(void)
{
    size_t len;
    char *s = read_file("/proc/cpuinfo", &len);
    if (!s) return -1;
    const char *flags = strstr(s, "\nflags");
    const char *eol = flags ? strchr(flags + 1, '\n') : NULL;
    if (eol) s[eol - s] = '\0';
    const int has = flags && strstr(flags, " amx_tile") && strstr(flags, " amx_int8");
    free(s);
    return has;
}

/*
 * The emulated AMX body on channels [n0, n1) of every row of a (m rows): c, of m + 16 rows x ldc,
 * must hold ref's sums in its first n1 - n0 columns of the first m rows and keep its 0x55 bytes
 * everywhere else, and the tiles must be released after.
 */
static void check_amx_emu(const int8_t *a, size_t lda, int m, const struct sbert_qweight *q, int n0,
                          int n1, const int32_t *ref, int32_t *c, int ldc)
{
    const size_t cn = (size_t)(m + 16) * ldc;
    memset(c, 0x55, cn * sizeof *c);
    const long cfgs = amx_emu_ldtilecfg_count();
    amx_emu_qgemm(a, lda, m, q, n0, n1, c, ldc);
    const long ncfg = amx_emu_ldtilecfg_count() - cfgs;
    CHECK(!amx_emu_configured(), "amx: tiles left configured (K=%d m=%d %d..%d)", q->k, m, n0, n1);
    CHECK(
        ncfg <= 2,
        "amx: %ld configurations for one call (K=%d m=%d): one for whole blocks, one for the rest",
        ncfg, q->k, m);
    for (size_t e = 0; e < cn; e++) {
        const int i = (int)(e / (size_t)ldc), j = (int)(e % (size_t)ldc);
        if (i < m && j < n1 - n0)
            CHECK(c[e] == ref[(size_t)i * ldc + n0 + j],
                  "amx (emulated) K=%d N=%d M=%d channels %d..%d (%d,%d): %d, scalar %d", q->k,
                  q->n, m, n0, n1, i, n0 + j, c[e], ref[(size_t)i * ldc + n0 + j]);
        else
            CHECK(c[e] == 0x55555555, "amx (emulated) K=%d N=%d M=%d channels %d..%d wrote (%d,%d)",
                  q->k, q->n, m, n0, n1, i, j);
    }
}

/* The scalar kernel with one sum off by one: what sbert_qgemm_agrees() must catch. */
static void off_by_one(const int8_t *a, size_t lda, int m, const struct sbert_qweight *w, int n0,
                       int n1, int32_t *c, int ldc)
{
    sbert_qgemm_scalar(a, lda, m, w, n0, n1, c, ldc);
    c[(size_t)(m - 1) * ldc + (n1 - n0 - 1)]++;
}

int main(void)
{
#if defined(__x86_64__)
    CHECK(sbert_qisa_available(SBERT_QISA_AVX2),
          "this x86-64 CPU has no AVX2: the CI path cannot run");
    /* AVX-VNNI's detection (libgcc's __builtin_cpu_supports) agrees with CPUID leaf 7 subleaf 1,
     * EAX bit 4 (the OS saving YMM state is AVX2's condition, checked above): a detection that
     * always said no would leave the kernel unused without failing anything else */
    unsigned ea, eb, ec, ed;
    const int vnni_bit = __get_cpuid_count(7, 1, &ea, &eb, &ec, &ed) && (ea & bit_AVXVNNI);
    CHECK(sbert_qisa_available(SBERT_QISA_AVXVNNI) == vnni_bit, "avxvnni: detected %d, CPUID %d",
          sbert_qisa_available(SBERT_QISA_AVXVNNI), vnni_bit);
#endif
    /* The AMX probe: no on a CPU without AMX (and no crash); the same answer when asked again. */
    const int amx = sbert_qisa_available(SBERT_QISA_AMX), amx_cpu = cpuinfo_has_amx();
    CHECK(amx == sbert_qisa_available(SBERT_QISA_AMX), "the AMX probe changed its answer");
    CHECK(amx_cpu != 0 || !amx, "AMX reported available, /proc/cpuinfo has no amx_tile/amx_int8");
    printf("AMX: /proc/cpuinfo %s, probe (CPUID, XCR0, arch_prctl permission) %s\n",
           amx_cpu < 0 ? "unreadable"
           : amx_cpu   ? "has amx_tile and amx_int8"
                       : "has no AMX",
           amx ? "available" : "not available");
    CHECK(!strcmp(sbert_qisa_name(SBERT_QISA_AMX), "amx") &&
              sbert_qisa_from_name("amx") == SBERT_QISA_AMX,
          "the AMX kernel's name");

    /* Ms: row remainders for the 4-row kernels, and for the AMX body's 32-row blocks of two
     * 16-row tiles (16, 20 = 16 + 4, 32, 33, 48, 70 = 2 x 32 + 6). */
    const int Ks[] = {4, 12, 64, 384, 1536}, Ns[] = {5, 16, 33, 64, 100, 384},
              Ms[] = {1, 2, 3, 4, 5, 7, 9, 16, 20, 32, 33, 48, 70};
    /* the kernels compared with the scalar one: every ISA's, then the AVX-VNNI source's twin */
    enum { NK = SBERT_QISA_N + 1 };
    const char *kname[NK];
    sbert_qgemm_fn kfn[NK];
    int kavail[NK], checked[NK] = {0}, emulated = 0;
    for (int isa = 0; isa < SBERT_QISA_N; isa++) {
        kname[isa] = sbert_qisa_name(isa);
        kavail[isa] = sbert_qisa_available(isa);
        kfn[isa] = sbert_qgemm_get(isa);
    }
    kname[SBERT_QISA_N] = "avxvnni-evex";
    kavail[SBERT_QISA_N] = 0;
    kfn[SBERT_QISA_N] = NULL;
#if defined(__x86_64__)
    kavail[SBERT_QISA_N] = sbert_qisa_available(SBERT_QISA_AVX512VNNI); /* F, BW, VL, VNNI */
    kfn[SBERT_QISA_N] = sbert_qgemm_avxvnni_evex;
#endif
    for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++)
        for (size_t ni = 0; ni < sizeof Ns / sizeof *Ns; ni++) {
            const int K = Ks[ki], N = Ns[ni];
            float *wf = malloc((size_t)N * K * sizeof *wf);
            for (int i = 0; i < N * K; i++)
                wf[i] = (float)val();
            struct sbert_qweight q;
            CHECK(sbert_qweight_init(&q, wf, NULL, N, K, NULL) == 0, "qweight_init");
            /* Each weight row has a +-127 entry? Not always: recover the s8 weights exactly
             * from the packed bytes instead, then compare the packing with wf up to its scale. */
            for (int j = 0; j < N; j++)
                for (int kk = 0; kk < K; kk++) {
                    const int8_t b = q.w[(size_t)(j / 16) * 16 * K + (size_t)(kk / 4) * 64 +
                                         (j % 16) * 4 + kk % 4];
                    CHECK(fabsf(b * q.scale[j] - wf[(size_t)j * K + kk]) <=
                              0.5f * q.scale[j] + 1e-4f,
                          "packing of w[%d][%d]", j, kk);
                }
            for (size_t mi = 0; mi < sizeof Ms / sizeof *Ms; mi++) {
                const int M = Ms[mi];
                const size_t lda = (size_t)K + 8; /* a stride wider than K, as a sub-matrix */
                int8_t *a = malloc((size_t)M * lda);
                for (size_t i = 0; i < (size_t)M * lda; i++)
                    a[i] = val();
                const int ldc = q.np + 3;
                int32_t *ref = malloc((size_t)M * ldc * sizeof *ref),
                        *c = malloc((size_t)(M + 16) * ldc * sizeof *c);
                sbert_qgemm_scalar(a, lda, M, &q, 0, q.np, ref, ldc);
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++) {
                        int64_t s = 0;
                        for (int kk = 0; kk < K; kk++)
                            s += (int64_t)a[(size_t)i * lda + kk] *
                                 q.w[(size_t)(j / 16) * 16 * K + (size_t)(kk / 4) * 64 +
                                     (j % 16) * 4 + kk % 4];
                        CHECK(ref[(size_t)i * ldc + j] == s, "scalar K=%d N=%d M=%d (%d,%d)", K, N,
                              M, i, j);
                    }
                checked[SBERT_QISA_SCALAR]++;
                for (int isa = 1; isa < NK; isa++) {
                    if (!kavail[isa]) continue;
                    /* the whole width, then a slice that starts past the first panel */
                    for (int part = 0; part < 2; part++) {
                        const int n0 = part && q.np > 16 ? 16 : 0;
                        memset(c, 0x55, (size_t)M * ldc * sizeof *c);
                        kfn[isa](a, lda, M, &q, n0, q.np, c, ldc);
                        for (int i = 0; i < M; i++)
                            for (int j = n0; j < q.np; j++)
                                CHECK(c[(size_t)i * ldc + (j - n0)] == ref[(size_t)i * ldc + j],
                                      "%s K=%d N=%d M=%d n0=%d (%d,%d): %d, scalar %d", kname[isa],
                                      K, N, M, n0, i, j, c[(size_t)i * ldc + (j - n0)],
                                      ref[(size_t)i * ldc + j]);
                    }
                    checked[isa]++;
                }
                /* The emulated AMX body: every range when there are few panels, else whole,
                 * shifted by a panel at either end or both (odd and even panel counts). */
                const int P = q.np / SBERT_QPANEL;
                for (int p0 = 0; p0 < P; p0++)
                    for (int p1 = p0 + 1; p1 <= P; p1++)
                        if (P <= 4 || (p0 <= 1 && p1 >= P - 1))
                            check_amx_emu(a, lda, M, &q, p0 * SBERT_QPANEL, p1 * SBERT_QPANEL, ref,
                                          c, ldc);
                check_amx_emu(a, lda, M, &q, 16, 16, ref, c, ldc);               /* no channels */
                if (mi == 0) check_amx_emu(a, lda, 0, &q, 0, q.np, ref, c, ldc); /* no rows */
                emulated++;
                free(a);
                free(ref);
                free(c);
            }
            sbert_qweight_free(&q);
            free(wf);
        }
    for (int isa = 0; isa < NK; isa++)
        printf("%-12s %s: %d shapes identical to the reference\n", kname[isa],
               kavail[isa] ? "available" : "not on this CPU", checked[isa]);
    printf("amx body on emulated tiles: %d shapes identical to the reference\n", emulated);
    if (!amx)
        printf("amx: the real kernel was not run (this CPU or OS cannot), only its emulation\n");

    /* The load-time check (model.c): every kernel this CPU runs agrees with the scalar one, a
     * kernel with one wrong sum does not. */
    {
        enum { N = 100, K = 384 };
        float *wf = malloc((size_t)N * K * sizeof *wf);
        for (int i = 0; i < N * K; i++)
            wf[i] = (float)val();
        struct sbert_qweight q;
        CHECK(sbert_qweight_init(&q, wf, NULL, N, K, NULL) == 0, "qweight_init");
        for (int isa = 0; isa < SBERT_QISA_N; isa++)
            if (sbert_qisa_available(isa))
                CHECK(sbert_qgemm_agrees(sbert_qgemm_get(isa), &q) == 1, "%s disagrees",
                      sbert_qisa_name(isa));
        CHECK(sbert_qgemm_agrees(off_by_one, &q) == 0, "a wrong kernel passed the check");
        sbert_qweight_free(&q);
        free(wf);
    }

    /* The row quantiser: the largest |x| becomes +-127, an all-zero row has scale 0. */
    float x[6] = {0.5f, -2.0f, 1.0f, 0.0f, 1.99f, -0.01f};
    int8_t qx[6];
    float sc = sbert_quantize_row(x, 6, qx);
    CHECK(fabsf(sc - 2.0f / 127) < 1e-7f && qx[1] == -127 && qx[2] == 64 && qx[3] == 0 &&
              qx[4] == 126 && qx[5] == -1,
          "quantize_row: scale %g q %d %d %d %d %d %d", sc, qx[0], qx[1], qx[2], qx[3], qx[4],
          qx[5]);
    float z[4] = {0};
    CHECK(sbert_quantize_row(z, 4, qx) == 0 && !qx[0] && !qx[3], "zero row");
    float mul[6] = {1, 0.5f, 1, 1, 1, 1};
    sc = sbert_quantize_row_mul(x, mul, 6, qx);
    CHECK(fabsf(sc - 1.99f / 127) < 1e-7f && qx[4] == 127 && qx[1] == -64, "quantize_row_mul");
    CHECK(sbert_qisa_from_name("avx2") == SBERT_QISA_AVX2 &&
              sbert_qisa_from_name("avxvnni") == SBERT_QISA_AVXVNNI &&
              sbert_qisa_from_name("nope") == -1,
          "ISA names");
    /* the preference: AVX-VNNI over AVX2, and AVX512-VNNI (wider) over AVX-VNNI where a CPU has
     * both (Sapphire Rapids) */
    const int best = sbert_qisa_best();
    if (sbert_qisa_available(SBERT_QISA_AVXVNNI))
        CHECK(best != SBERT_QISA_AVX2 && best != SBERT_QISA_SCALAR, "best: %s",
              sbert_qisa_name(best));
    if (sbert_qisa_available(SBERT_QISA_AVX512VNNI))
        CHECK(best != SBERT_QISA_AVXVNNI && best != SBERT_QISA_AVX2, "best: %s",
              sbert_qisa_name(best));
    return 0;
}
