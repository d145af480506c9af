/* int8 weight packing, per-row activation quantisation and the choice of kernel (quant.h). */
#define _GNU_SOURCE /* syscall() */
#include "quant.h"
#include "sbert.h"
#include "sbert_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__linux__)
#include <asm/prctl.h>
#include <cpuid.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

/*
 * Written to vectorise: libm's fmaxf and lrintf are calls (NaN and errno rules), which made the
 * quantisers a quarter of an int8 pass. Rounding is half away from zero: any fixed rule would do,
 * every kernel sees the same bytes.
 */
static inline int8_t q8(float v)
{
    v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
    return (int8_t)(int)(v + (v >= 0 ? 0.5f : -0.5f));
}

static float row_quantize(const float *restrict x, const float *restrict mul, int k,
                          int8_t *restrict q)
{
    float mx = 0;
    if (mul) {
#pragma omp simd reduction(max : mx)
        for (int i = 0; i < k; i++) {
            const float a = fabsf(x[i] * mul[i]);
            mx = a > mx ? a : mx;
        }
    } else {
#pragma omp simd reduction(max : mx)
        for (int i = 0; i < k; i++) {
            const float a = fabsf(x[i]);
            mx = a > mx ? a : mx;
        }
    }
    if (!(mx > 0)) {
        memset(q, 0, (size_t)k);
        return 0;
    }
    const float inv = 127.0f / mx;
    if (mul) {
#pragma omp simd
        for (int i = 0; i < k; i++)
            q[i] = q8(x[i] * mul[i] * inv);
    } else {
#pragma omp simd
        for (int i = 0; i < k; i++)
            q[i] = q8(x[i] * inv);
    }
    return mx / 127.0f;
}

float sbert_quantize_row(const float *x, int k, int8_t *q)
{
    return row_quantize(x, NULL, k, q);
}

float sbert_quantize_row_mul(const float *x, const float *mul, int k, int8_t *q)
{
    return row_quantize(x, mul, k, q);
}

/* SmoothQuant's factors (see quant.h): s[kk] multiplies the inputs, 1 / s[kk] the weights. */
static int smooth_factors(const float *w, int n, int k, const float *amax, float **out)
{
    float *s = malloc((size_t)k * sizeof *s);
    if (!s) return SBERT_ENOMEM;
    for (int kk = 0; kk < k; kk++) {
        float wm = 0;
        for (int j = 0; j < n; j++)
            wm = fmaxf(wm, fabsf(w[(size_t)j * k + kk]));
        s[kk] = amax[kk] > 0 && wm > 0 ? sqrtf(wm / amax[kk]) : 1.0f;
    }
    *out = s;
    return 0;
}

int sbert_qweight_init(struct sbert_qweight *q, const float *w, const float *bias, int n, int k,
                       const float *amax)
{
    memset(q, 0, sizeof *q);
    if (n <= 0 || k <= 0 || k % 4) return SBERT_EINVAL;
    if (amax && smooth_factors(w, n, k, amax, &q->smooth)) return SBERT_ENOMEM;
    const int np = (n + SBERT_QPANEL - 1) / SBERT_QPANEL * SBERT_QPANEL;
    const size_t bytes = (size_t)np * (size_t)k;
    q->n = n;
    q->k = k;
    q->np = np;
    q->bias = bias;
    q->w = aligned_alloc(64, (bytes + 63) / 64 * 64);
    q->scale = calloc((size_t)np, sizeof *q->scale);
    q->comp = calloc((size_t)np, sizeof *q->comp);
    int8_t *row = malloc((size_t)k);
    float *ws = q->smooth ? malloc((size_t)k * sizeof *ws) : NULL;
    if (!q->w || !q->scale || !q->comp || !row || (q->smooth && !ws)) {
        free(row);
        free(ws);
        sbert_qweight_free(q);
        return SBERT_ENOMEM;
    }
    memset(q->w, 0, bytes);
    for (int j = 0; j < n; j++) {
        const float *wj = w + (size_t)j * k;
        if (ws) {
            for (int kk = 0; kk < k; kk++)
                ws[kk] = wj[kk] / q->smooth[kk];
            wj = ws;
        }
        q->scale[j] = sbert_quantize_row(wj, k, row);
        int8_t *panel = q->w + (size_t)(j / SBERT_QPANEL) * SBERT_QPANEL * k;
        const int lane = (j % SBERT_QPANEL) * 4;
        int32_t sum = 0;
        for (int kk = 0; kk < k; kk++) {
            panel[(size_t)(kk / 4) * SBERT_QPANEL * 4 + lane + kk % 4] = row[kk];
            sum += row[kk];
        }
        q->comp[j] = 128 * sum;
    }
    free(row);
    free(ws);
    return 0;
}

void sbert_qweight_free(struct sbert_qweight *q)
{
    free(q->w);
    free(q->scale);
    free(q->comp);
    free(q->smooth);
    memset(q, 0, sizeof *q);
}

int sbert_qgemm_agrees(sbert_qgemm_fn fn, const struct sbert_qweight *w)
{
    enum { M = 40 };
    const int n1 = w->np < 4 * SBERT_QPANEL ? w->np : 4 * SBERT_QPANEL;
    int8_t *a = malloc((size_t)M * w->k);
    int32_t *ref = malloc((size_t)M * n1 * sizeof *ref), *c = malloc((size_t)M * n1 * sizeof *c);
    int rc = SBERT_ENOMEM;
    if (a && ref && c) {
        uint32_t x = 2463534242u; /* the same activations on every run */
        for (size_t i = 0; i < (size_t)M * w->k; i++)
            a[i] = (int8_t)((int)(sbert_util_xorshift32(&x) % 255) - 127);
        sbert_qgemm_scalar(a, (size_t)w->k, M, w, 0, n1, ref, n1);
        fn(a, (size_t)w->k, M, w, 0, n1, c, n1);
        rc = !memcmp(ref, c, (size_t)M * n1 * sizeof *c);
    }
    free(a);
    free(ref);
    free(c);
    return rc;
}

static const char *const names[SBERT_QISA_N] = {"scalar", "avx2", "avxvnni", "avx512vnni", "amx"};

const char *sbert_qisa_name(int isa)
{
    return isa >= 0 && isa < SBERT_QISA_N ? names[isa] : NULL;
}

int sbert_qisa_from_name(const char *name)
{
    for (int i = 0; name && i < SBERT_QISA_N; i++)
        if (!strcmp(name, names[i])) return i;
    return -1;
}

#if defined(__x86_64__) && defined(__linux__)
enum { XFEATURE_XTILECFG = 17, XFEATURE_XTILEDATA = 18 }; /* XCR0 bits (Linux's names) */
/* CPUID bits, spelt here: clang 14's cpuid.h has no bit_AMX_TILE or bit_AMX_INT8. */
#define CPUID1_ECX_OSXSAVE (1u << 27)
#define CPUID7_EDX_AMX_TILE (1u << 24)
#define CPUID7_EDX_AMX_INT8 (1u << 25)

static pthread_once_t amx_once = PTHREAD_ONCE_INIT;
static int amx_granted;

/*
 * AMX is usable when the CPU has AMX-TILE and AMX-INT8 (CPUID.(EAX=7,ECX=0):EDX bits 24 and 25),
 * the OS saves the tile state (XCR0 bits 17 and 18; xgetbv may run once CPUID.1:ECX.OSXSAVE is
 * set), and Linux grants this process the tile data (ARCH_REQ_XCOMP_PERM, Linux 5.16 and later;
 * refused by older kernels, or when some thread's sigaltstack is too small for the larger signal
 * frame). cpuid and xgetbv directly: clang 14 (the fuzz and TSan builds) rejects
 * __builtin_cpu_supports("amx-tile"), which gcc 12 knows, and the permission is ours to ask for.
 */
static void amx_probe(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & CPUID7_EDX_AMX_TILE) ||
        !(d & CPUID7_EDX_AMX_INT8))
        return;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & CPUID1_ECX_OSXSAVE)) return;
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    const uint64_t xcr0 = (uint64_t)hi << 32 | lo,
                   tiles = 1ull << XFEATURE_XTILECFG | 1ull << XFEATURE_XTILEDATA;
    if ((xcr0 & tiles) != tiles) return;
    amx_granted = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}
#endif

/* __builtin_cpu_supports also checks that the OS saves the vector state (XCR0). */
int sbert_qisa_available(int isa)
{
    switch (isa) {
    case SBERT_QISA_SCALAR:
        return 1;
#if defined(__x86_64__)
    case SBERT_QISA_AVX2:
        return __builtin_cpu_supports("avx2");
    case SBERT_QISA_AVXVNNI:
        return sbert_util_cpu_avxvnni();
    case SBERT_QISA_AVX512VNNI:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#endif
#if defined(__x86_64__) && defined(__linux__)
    case SBERT_QISA_AMX: /* it runs the AVX512-VNNI kernel for few rows */
        if (!sbert_qisa_available(SBERT_QISA_AVX512VNNI)) return 0;
        pthread_once(&amx_once, amx_probe);
        return amx_granted;
#endif
    default:
        return 0;
    }
}

int sbert_qisa_best_below(int isa)
{
    for (int i = isa - 1; i > SBERT_QISA_SCALAR; i--)
        if (sbert_qisa_available(i)) return i;
    return SBERT_QISA_SCALAR;
}

int sbert_qisa_best(void)
{
    return sbert_qisa_best_below(SBERT_QISA_N);
}

sbert_qgemm_fn sbert_qgemm_get(int isa)
{
    switch (isa) {
#if defined(__x86_64__)
    case SBERT_QISA_AVX2:
        return sbert_qgemm_avx2;
    case SBERT_QISA_AVXVNNI:
        return sbert_qgemm_avxvnni;
    case SBERT_QISA_AVX512VNNI:
        return sbert_qgemm_avx512vnni;
    case SBERT_QISA_AMX:
        return sbert_qgemm_amx;
#endif
    default:
        return sbert_qgemm_scalar;
    }
}
