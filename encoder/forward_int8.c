/*
 * The transformer layers with int8 dense layers (sbert.h, SBERT_PRECISION_INT8; quant.h).
 *
 * Each dense layer's input is held twice: fp32 where the fp32 ops need it and s8 with one scale
 * per row, written by the op that finishes the row (embeddings and LayerNorm quantise their own
 * output row; the attention context and the GELU output are quantised row by row once complete).
 * A dense layer's int32 sums for a tile of SBERT_QTILE_ROWS x SBERT_QTILE_COLS go to a per-thread
 * buffer that stays in L1, and are turned at once into fp32 with the row's and channel's scales
 * plus the bias (and GELU, or the residual add), so the tile is read once while hot. That
 * epilogue is plain C shared by every kernel: the kernels' int32 sums being exact, the whole
 * pass is bit-identical whichever kernel runs.
 *
 * Scheduling follows forward.c. With at least as many sequences as threads, each thread runs
 * whole groups of sequences with no synchronisation. With fewer (a query), the pass is a fixed
 * list of steps, each cut into chunks numbered across the whole pass and claimed from one
 * counter; a chunk waits only until every chunk of the earlier steps is done. A dense step's
 * chunks are tiles (row block x column block), so one text's layer is shared by the threads.
 * Every chunk's arithmetic is the same whichever thread runs it, and a row's results depend only
 * on that row (and its sequence's rows in attention): results do not depend on the thread count
 * or the batch.
 */
#include "model.h"

#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

enum { RB = SBERT_QTILE_ROWS, CB = SBERT_QTILE_COLS, ROWS = 8 };
enum { ST_QKV, ST_ATT, ST_QCTX, ST_AO, ST_LN1, ST_IN, ST_QIN, ST_OUT, ST_LN2, ST_N };
enum { EPI_STORE, EPI_RESIDUAL, EPI_GELU }; /* what a dense tile does with its sums */
enum { MAX_GROUPS = 64 };                   /* sequence groups of a pass (on the stack) */

struct pass {
    const struct sbert_model *m;
    struct sbert_fwd_scratch *s;
    const int32_t *ids;
    const int *lens;
    int s0, r0;       /* the pass's first sequence and its first row in the packed matrix */
    int nseq, M, nrb; /* sequences, token rows, row blocks of RB */
    atomic_int next, done;
    int n_emb;         /* embedding chunks, before the first layer */
    int cnt[ST_N];     /* chunks of each step of a layer */
    int off[ST_N + 1]; /* first chunk of each step within a layer; off[ST_N] per layer */
    int total;
};

static int ceil_div(int a, int b)
{
    return (a + b - 1) / b;
}

/* Waits until `done` reaches need; yields the core soon, since the chunk it waits for may belong
 * to a thread that is not running. */
static void wait_done(atomic_int *done, int need)
{
    for (int spin = 0; atomic_load_explicit(done, memory_order_acquire) < need; spin++)
        if (spin >= 64) sched_yield();
}

/*
 * Tile c of a dense layer: rows of row block c / (column blocks), columns of the rest, of
 * y = dequant(a * W^T) + bias, then stored, added to y (the residual stream) or put through GELU.
 */
static void dense_tile(const struct pass *p, int t, const struct sbert_qweight *w, const int8_t *a,
                       const float *as, int c, float *y, int ldy, int epi)
{
    const int ncb = ceil_div(w->n, CB);
    const int r0 = p->r0 + c / ncb * RB, r1 = r0 + RB < p->r0 + p->M ? r0 + RB : p->r0 + p->M;
    const int c0 = c % ncb * CB, c1 = c0 + CB < w->n ? c0 + CB : w->n;
    const int c1p = c0 + CB < w->np ? c0 + CB : w->np;
    int32_t *tile = p->s->tile + (size_t)t * RB * CB;
    p->m->qgemm(a + (size_t)r0 * w->k, (size_t)w->k, r1 - r0, w, c0, c1p, tile, CB);
    const float *ws = w->scale + c0, *b = w->bias + c0;
    const int n = c1 - c0;
    for (int r = r0; r < r1; r++) {
        const int32_t *acc = tile + (size_t)(r - r0) * CB;
        float *yr = y + (size_t)r * ldy + c0;
        const float sa = as[r];
        if (epi == EPI_RESIDUAL) {
#pragma omp simd
            for (int j = 0; j < n; j++)
                yr[j] += (float)acc[j] * (sa * ws[j]) + b[j];
        } else {
#pragma omp simd
            for (int j = 0; j < n; j++)
                yr[j] = (float)acc[j] * (sa * ws[j]) + b[j];
            if (epi == EPI_GELU) sbert_gelu(yr, n, p->m->act);
        }
    }
}

/*
 * Rows r0..r1 of x (width k) quantised for dense layer `which` of layer l (with its smoothing, if
 * any); nothing when l is past the last layer (its output has no int8 consumer). While the model is
 * being calibrated (m->calib, one thread), records the largest |x| of each channel in the
 * consumer's slot.
 */
static void quantize_rows(const struct sbert_model *m, int l, int which, const float *x, int k,
                          int r0, int r1, int8_t *q, float *qs)
{
    if (l >= m->layers) return;
    const struct sbert_layer_weights *lw = &m->layer[l];
    const struct sbert_qweight *to = which == SBERT_Q_QKV  ? &lw->q_qkv
                                     : which == SBERT_Q_AO ? &lw->q_ao
                                     : which == SBERT_Q_IN ? &lw->q_in
                                                           : &lw->q_out;
    if (m->calib) {
        float *amax = m->calib + ((size_t)l * SBERT_Q_N + (size_t)which) * (size_t)m->calib_width;
        for (int r = r0; r < r1; r++)
            for (int i = 0; i < k; i++)
                amax[i] = fmaxf(amax[i], fabsf(x[(size_t)r * k + i]));
    }
    for (int r = r0; r < r1; r++)
        qs[r] = sbert_quantize_row_mul(x + (size_t)r * k, to->smooth, k, q + (size_t)r * k);
}

static void run_chunk(const struct pass *p, int t, int g)
{
    const struct sbert_model *m = p->m;
    struct sbert_fwd_scratch *s = p->s;
    const int H = m->hidden, NI = m->inter, nh = m->heads, dh = H / nh, H3 = 3 * H, M = p->M;
    if (g < p->n_emb) {
        const int r0 = p->r0 + g * ROWS, r1 = r0 + ROWS < p->r0 + M ? r0 + ROWS : p->r0 + M;
        sbert_embed_rows(m, p->ids, s->pos, s->x, r0, r1);
        quantize_rows(m, 0, SBERT_Q_QKV, s->x, H, r0, r1, s->xq, s->xs);
        return;
    }
    const int l = (g - p->n_emb) / p->off[ST_N], in_l = (g - p->n_emb) % p->off[ST_N];
    int k = 0;
    while (in_l >= p->off[k + 1])
        k++;
    const int c = in_l - p->off[k];
    wait_done((atomic_int *)&p->done, p->n_emb + l * p->off[ST_N] + p->off[k]);

    const struct sbert_layer_weights *w = &m->layer[l];
    const int r0 = p->r0 + c * ROWS, r1 = r0 + ROWS < p->r0 + M ? r0 + ROWS : p->r0 + M;
    switch (k) {
    case ST_QKV:
        dense_tile(p, t, &w->q_qkv, s->xq, s->xs, c, s->qkv, H3, EPI_STORE);
        break;
    case ST_ATT: {
        const int sq = p->s0 + c / nh, h = c % nh;
        const float *base = s->qkv + (size_t)s->start[sq] * H3 + h * dh;
        float *kt = s->scores + (size_t)t * s->max_len * (dh + 1),
              *srow = kt + (size_t)s->max_len * dh;
        sbert_attend(base, base + H, base + 2 * H, H3, p->lens[sq], dh, 1.0f / sqrtf((float)dh),
                     s->ctx + (size_t)s->start[sq] * H + h * dh, H, kt, srow);
        break;
    }
    case ST_QCTX:
        quantize_rows(m, l, SBERT_Q_AO, s->ctx, H, r0, r1, s->ctxq, s->ctxs);
        break;
    case ST_AO:
        dense_tile(p, t, &w->q_ao, s->ctxq, s->ctxs, c, s->x, H, EPI_RESIDUAL);
        break;
    case ST_IN:
        dense_tile(p, t, &w->q_in, s->xq, s->xs, c, s->inter, NI, EPI_GELU);
        break;
    case ST_QIN:
        quantize_rows(m, l, SBERT_Q_OUT, s->inter, NI, r0, r1, s->inq, s->ins);
        break;
    case ST_OUT:
        dense_tile(p, t, &w->q_out, s->inq, s->ins, c, s->x, H, EPI_RESIDUAL);
        break;
    default: /* ST_LN1, ST_LN2: LayerNorm, then the s8 copy for the next dense layer */
        for (int r = r0; r < r1; r++)
            sbert_layer_norm(s->x + (size_t)r * H, H, k == ST_LN1 ? w->ln1_g : w->ln2_g,
                             k == ST_LN1 ? w->ln1_b : w->ln2_b, m->ln_eps);
        if (k == ST_LN1)
            quantize_rows(m, l, SBERT_Q_IN, s->x, H, r0, r1, s->xq, s->xs);
        else
            quantize_rows(m, l + 1, SBERT_Q_QKV, s->x, H, r0, r1, s->xq, s->xs);
        break;
    }
}

/* The step list of a pass over sequences s0 .. s0 + nseq - 1 (their rows are contiguous). */
static void pass_init(struct pass *p, const struct sbert_model *m, struct sbert_fwd_scratch *s,
                      const int32_t *ids, const int *lens, int s0, int nseq)
{
    const int H = m->hidden, NI = m->inter;
    memset(p, 0, sizeof *p);
    p->m = m;
    p->s = s;
    p->ids = ids;
    p->lens = lens;
    p->s0 = s0;
    p->r0 = s->start[s0];
    p->nseq = nseq;
    p->M = s->start[s0 + nseq] - p->r0;
    p->nrb = ceil_div(p->M, RB);
    p->n_emb = ceil_div(p->M, ROWS);
    atomic_init(&p->next, 0);
    atomic_init(&p->done, 0);
    p->cnt[ST_QKV] = p->nrb * ceil_div(3 * H, CB);
    p->cnt[ST_ATT] = nseq * m->heads;
    p->cnt[ST_AO] = p->cnt[ST_OUT] = p->nrb * ceil_div(H, CB);
    p->cnt[ST_IN] = p->nrb * ceil_div(NI, CB);
    p->cnt[ST_QCTX] = p->cnt[ST_LN1] = p->cnt[ST_QIN] = p->cnt[ST_LN2] = ceil_div(p->M, ROWS);
    for (int k = 0; k < ST_N; k++)
        p->off[k + 1] = p->off[k] + p->cnt[k];
    p->total = p->n_emb + m->layers * p->off[ST_N];
}

static void run_pass(struct pass *p, int t)
{
    for (int g; (g = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed)) < p->total;) {
        run_chunk(p, t, g);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

static void worker_shared(void *arg, int t, int n)
{
    (void)n;
    run_pass(arg, t);
}

/* At least as many sequences as threads: groups of whole sequences, one thread each at a time,
 * as forward.c's forward_groups, so the threads never wait for each other (on shared cores a
 * descheduled thread would hold up every step of a shared pass). Groups are claimed from a
 * counter, so fewer threads than groups still run them all. */
struct groups {
    struct pass *pass; /* one per group */
    int n;
    atomic_int next;
};

static void worker_groups(void *arg, int t, int n)
{
    (void)n;
    struct groups *gr = arg;
    for (int g; (g = atomic_fetch_add_explicit(&gr->next, 1, memory_order_relaxed)) < gr->n;)
        run_pass(&gr->pass[g], t);
}

void sbert_forward_int8(const struct sbert_model *m, struct sbert_fwd_scratch *s,
                        const int32_t *ids, const int *lens, int nseq)
{
    const int nt = s->n_threads < MAX_GROUPS ? s->n_threads : MAX_GROUPS;
    if (nseq < nt || nt == 1) {
        struct pass p;
        pass_init(&p, m, s, ids, lens, 0, nseq);
        sbert_pool_run(m->pool, nt, worker_shared, &p);
        return;
    }
    /* Groups of about equal cost (dense layers grow with L, attention with L^2). */
    const int H = m->hidden, NI = m->inter;
    const double per_tok = 8.0 * H * H + 4.0 * H * NI, per_pair = 4.0 * H;
    double total = 0;
    for (int i = 0; i < nseq; i++)
        total += lens[i] * (per_tok + per_pair * lens[i]);
    int *gstart = s->gstart;
    gstart[0] = 0;
    for (int g = 1; g <= nt; g++)
        gstart[g] = nseq;
    double acc = 0;
    for (int i = 0, g = 1; i < nseq && g < nt; i++) {
        acc += lens[i] * (per_tok + per_pair * lens[i]);
        if (acc >= total * g / nt) gstart[g++] = i + 1;
    }
    struct pass passes[nt];
    struct groups gr = {.pass = passes, .n = 0};
    atomic_init(&gr.next, 0);
    for (int g = 0; g < nt; g++)
        if (gstart[g + 1] > gstart[g])
            pass_init(&passes[gr.n++], m, s, ids, lens, gstart[g], gstart[g + 1] - gstart[g]);
    sbert_pool_run(m->pool, nt, worker_groups, &gr);
}
