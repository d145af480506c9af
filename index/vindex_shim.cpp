// vindex_shim.cpp — see vindex_shim.h: FAISS 1.7.3 features the C API does not expose.
#include "vindex_shim.h"

#include "vindex_hash.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <cstdint>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <sys/mman.h>
#include <unistd.h>
#include <exception>
#include <new>
#include <vector>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVF.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#include <faiss/utils/Heap.h>
#include <faiss/utils/distances.h>
#include <omp.h>

namespace
{

using idx_t = faiss::Index::idx_t;

const faiss::Index *cpp(const FaissIndex *idx)
{
    return reinterpret_cast<const faiss::Index *>(idx);
}

const faiss::IndexIDMap2 *as_idmap(const FaissIndex *idx)
{
    return dynamic_cast<const faiss::IndexIDMap2 *>(cpp(idx));
}

void set_err(char *errbuf, size_t errlen, const char *what, const char *detail)
{
    if (errbuf && errlen > 0) snprintf(errbuf, errlen, "%s: %s", what, detail);
}

bool in_sorted(const int64_t *labels, size_t n, int64_t label)
{
    return std::binary_search(labels, labels + n, label);
}

// Membership over internal positions (IDMap2) or labels (IVF): not dead, and passing the
// caller's filter. FAISS calls is_member from its OpenMP threads.
struct Selector : faiss::IDSelector {
    const idx_t *id_map; // NULL: ids are labels already (IVF)
    const vshim_select *s;

    Selector(const idx_t *id_map, const vshim_select *s) : id_map(id_map), s(s) {}

    bool is_member(idx_t id) const override
    {
        if (id_map && s->dead && (size_t)id < s->dead_len && s->dead[id]) return false;
        const vindex_filter *f = s->filter;
        if (!f) return true;
        int64_t label = id_map ? id_map[id] : id;
        if (f->labels && !in_sorted(f->labels, f->n_labels, label)) return false;
        if (f->keep && !f->keep(label, f->user)) return false;
        return true;
    }
};

bool selects_anything(const vshim_select *s)
{
    return s && ((s->dead && s->dead_len) || s->filter);
}

const faiss::IndexFlat *flat_of(const faiss::Index *inner)
{
    if (auto f = dynamic_cast<const faiss::IndexFlat *>(inner)) return f;
    if (auto h = dynamic_cast<const faiss::IndexHNSW *>(inner))
        return dynamic_cast<const faiss::IndexFlat *>(h->storage);
    return nullptr;
}

// The calling thread's OpenMP team size for a scope (an ICV of that thread only).
struct OmpThreads {
    int prev;
    explicit OmpThreads(int n) : prev(omp_get_max_threads())
    {
        omp_set_num_threads(n);
    }
    ~OmpThreads()
    {
        omp_set_num_threads(prev);
    }
};

// One or a few unfiltered queries over a large Flat index: a scan is bound by one core's memory
// bandwidth (measured here, 110k x 384 with AVX2 FAISS: 21 ms on one thread, 12.5 ms with the
// vectors split in two halves on two), so the vectors are split into parts scanned by the OpenMP
// threads, and each query keeps the k best of the parts' top-k. Writes positions, not labels.
void split_scan(const faiss::IndexFlat *flat, const float *q, size_t nq, size_t k, int parts,
                float *scores, idx_t *labels)
{
    const size_t n = (size_t)flat->ntotal, d = (size_t)flat->d, per = (n + parts - 1) / parts;
    const float *xb = flat->get_xb();
    std::vector<float> ps((size_t)parts * nq * k);
    std::vector<idx_t> pl((size_t)parts * nq * k);
    int failed = 0;
#pragma omp parallel for num_threads(parts) schedule(static, 1)
    for (int t = 0; t < parts; t++) {
        const size_t a = (size_t)t * per, b = std::min(n, a + per);
        float *D = ps.data() + (size_t)t * nq * k;
        idx_t *I = pl.data() + (size_t)t * nq * k;
        try {
            faiss::knn_inner_product(q, xb + a * d, d, nq, b - a, k, D, I, nullptr);
        } catch (...) {
#pragma omp atomic write
            failed = 1;
        }
        for (size_t i = 0; i < nq * k; i++)
            if (I[i] >= 0) I[i] += (idx_t)a;
    }
    if (failed) throw std::bad_alloc();
    for (size_t qi = 0; qi < nq; qi++) {
        float *D = scores + qi * k;
        idx_t *I = labels + qi * k;
        faiss::minheap_heapify(k, D, I);
        for (int t = 0; t < parts; t++)
            for (size_t j = 0; j < k; j++) {
                const size_t at = ((size_t)t * nq + qi) * k + j;
                if (pl[at] >= 0 && ps[at] > D[0])
                    faiss::minheap_replace_top(k, D, I, ps[at], pl[at]);
            }
        faiss::minheap_reorder(k, D, I);
    }
}

// Exact scan of an IDMap2 over a flat-storage index: every live, selected position (or, when
// the filter has a label list, only those labels' positions).
void exact_idmap(const faiss::IndexIDMap2 *m, const faiss::IndexFlat *flat, const float *q,
                 size_t nq, size_t k, const vshim_select *s, int64_t *labels, float *scores)
{
    const float *xb = flat->get_xb();
    const size_t d = m->d;
    const Selector sel(m->id_map.data(), s ? s : nullptr);
    const vindex_filter *f = s ? s->filter : nullptr;
    std::vector<idx_t> cand;
    if (f && f->labels) {
        cand.reserve(f->n_labels);
        for (size_t i = 0; i < f->n_labels; i++) {
            auto it = m->rev_map.find(f->labels[i]);
            if (it != m->rev_map.end()) cand.push_back(it->second);
        }
    }
    const bool use_cand = f && f->labels;
    const idx_t ncand = use_cand ? (idx_t)cand.size() : m->ntotal;
#pragma omp parallel for if (nq > 1)
    for (size_t qi = 0; qi < nq; qi++) {
        float *D = scores + qi * k;
        idx_t *I = labels + qi * k;
        faiss::minheap_heapify(k, D, I);
        for (idx_t c = 0; c < ncand; c++) {
            idx_t pos = use_cand ? cand[c] : c;
            if (s && !sel.is_member(pos)) continue;
            float ip = faiss::fvec_inner_product(q + qi * d, xb + (size_t)pos * d, d);
            if (ip > D[0]) faiss::minheap_replace_top(k, D, I, ip, pos);
        }
        faiss::minheap_reorder(k, D, I);
        for (size_t j = 0; j < k; j++)
            I[j] = I[j] < 0 ? -1 : m->id_map[I[j]];
    }
}

// FAISS reads the snapshot body through this: every byte is checked against its block's hash
// (vshim_body_copy) before FAISS sees it.
struct VerifiedReader : faiss::IOReader {
    vshim_body *b;
    size_t len; // bytes FAISS may read (the index part of the body)
    size_t pos = 0;

    VerifiedReader(vshim_body *b, size_t len) : b(b), len(len) {}

    size_t operator()(void *ptr, size_t size, size_t nitems) override
    {
        if (size == 0) return 0;
        size_t n = std::min(nitems, (len - pos) / size);
        if (vshim_body_copy(b, ptr, pos, n * size) != 0) return 0;
        pos += n * size;
        return n;
    }
};

// ---- HNSW distances --------------------------------------------------------------------------
//
// FAISS 1.7.3 builds and searches HNSW with one fvec_inner_product call per distance, and that
// function sums into a single vector register: each of its d / 8 multiply-adds waits for the
// previous one. Measured here (perf, 30k x 384, efConstruction 40): 87% of the add time in it,
// and 2x the CPU time per added vector of faiss-cpu 1.15. The storage below is FAISS's own
// IndexFlat (same data, same file format) whose distance computer uses four independent sums,
// with AVX2+FMA picked at run time where the CPU has it, also when FAISS itself was built for
// the x86-64 baseline (Debian's libfaiss.a).

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) float ip_avx2(const float *x, const float *y, size_t d)
{
    // y is a stored vector, usually not in cache (the graph walk jumps around): ask for all its
    // lines at once rather than as the loop reaches them.
    for (size_t i = 0; i < d; i += 16)
        _mm_prefetch(reinterpret_cast<const char *>(y + i), _MM_HINT_T0);
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= d; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), s3);
    }
    for (; i + 8 <= d; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
    __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    float r = _mm_cvtss_f32(h);
    for (; i < d; i++)
        r += x[i] * y[i];
    return r;
}
#endif

float ip_plain(const float *x, const float *y, size_t d)
{
    float s[4] = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 4 <= d; i += 4)
        for (int j = 0; j < 4; j++)
            s[j] += x[i + j] * y[i + j];
    for (; i < d; i++)
        s[0] += x[i] * y[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

using ip_fn = float (*)(const float *, const float *, size_t);

ip_fn pick_ip()
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return ip_avx2;
#endif
    return ip_plain;
}

const ip_fn fast_ip = pick_ip();

struct FastIPDis : faiss::FlatCodesDistanceComputer {
    size_t d;
    const float *xb;
    const float *q = nullptr;

    explicit FastIPDis(const faiss::IndexFlat &s)
        : FlatCodesDistanceComputer(s.codes.data(), s.code_size), d(s.d), xb(s.get_xb())
    {
    }
    void set_query(const float *x) override
    {
        q = x;
    }
    float distance_to_code(const uint8_t *code) override
    {
        return fast_ip(q, reinterpret_cast<const float *>(code), d);
    }
    float symmetric_dis(idx_t i, idx_t j) override
    {
        return fast_ip(xb + i * d, xb + j * d, d);
    }
};

struct FastIPFlat : faiss::IndexFlat {
    explicit FastIPFlat(int d) : IndexFlat(d, faiss::METRIC_INNER_PRODUCT) {}
    faiss::FlatCodesDistanceComputer *get_FlatCodesDistanceComputer() const override
    {
        return new FastIPDis(*this);
    }
};

} // namespace

extern "C" int vshim_body_check(struct vshim_body *b, size_t end)
{
    while (!b->bad && b->checked * b->block < end) {
        size_t off = b->checked * b->block, n = std::min(b->block, b->len - off);
        if (vindex_hash64(b->body + off, n) != b->hashes[b->checked])
            b->bad = 1;
        else
            b->checked++;
    }
    return b->bad ? VINDEX_ECORRUPT : VINDEX_OK;
}

extern "C" int vshim_body_copy(struct vshim_body *b, void *dst, size_t off, size_t len)
{
    if (off > b->len || len > b->len - off) return VINDEX_ECORRUPT;
    unsigned char *out = static_cast<unsigned char *>(dst);
    // Block by block, so each block is copied right after its check, from cache: the body is
    // read from memory once.
    for (size_t done = 0; done < len;) {
        size_t n = std::min(len - done, b->block - (off + done) % b->block);
        if (vshim_body_check(b, off + done + n) != 0) return VINDEX_ECORRUPT;
        std::memcpy(out + done, b->body + off + done, n);
        done += n;
    }
    return VINDEX_OK;
}

extern "C" int vshim_read_index(struct vshim_body *b, size_t index_len, FaissIndex **out,
                                char *errbuf, size_t errlen)
{
    *out = nullptr;
    VerifiedReader r(b, index_len);
    faiss::Index *idx = nullptr;
    try {
        idx = faiss::read_index(&r, 0);
    } catch (const std::bad_alloc &) {
        if (!b->bad) {
            set_err(errbuf, errlen, "FAISS read_index", "out of memory");
            return VINDEX_ENOMEM;
        }
    } catch (const std::exception &e) {
        if (!b->bad) {
            set_err(errbuf, errlen, "FAISS read_index", e.what());
            return VINDEX_EFAISS;
        }
    }
    if (b->bad || r.pos != index_len) {
        delete idx;
        set_err(errbuf, errlen, "snapshot",
                b->bad ? "a block of the body fails its checksum"
                       : "FAISS read fewer bytes than the index part holds");
        return VINDEX_ECORRUPT;
    }
    *out = reinterpret_cast<FaissIndex *>(idx);
    return VINDEX_OK;
}

namespace
{

// Appends body bytes [off, off + len) to v, checking each block just before its bytes are copied.
// Appending into reserved capacity writes each byte once; resize() then a copy would zero-fill
// first (for 1.5 GB of vectors: a second pass, page fault by page fault).
// Maps the pages of a fresh allocation in one call (MADV_POPULATE_WRITE, Linux 5.14) rather than
// one page fault at a time while they are filled: at 1M x 384 the faults were ~half the CPU time
// of a load. Advisory: a kernel without it fails the call and the faults happen as before.
void populate(void *p, size_t len)
{
#ifdef MADV_POPULATE_WRITE
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + page - 1) & ~(page - 1), e = ((uintptr_t)p + len) & ~(page - 1);
    if (e > a) madvise((void *)a, e - a, MADV_POPULATE_WRITE);
#else
    (void)p;
    (void)len;
#endif
}

bool append_checked(vshim_body *b, std::vector<uint8_t> &v, size_t off, size_t len)
{
    if (off > b->len || len > b->len - off) return false;
    for (size_t done = 0; done < len;) {
        size_t k = std::min(len - done, b->block - (off + done) % b->block);
        if (vshim_body_check(b, off + done + k) != 0) return false;
        v.insert(v.end(), b->body + off + done, b->body + off + done + k);
        done += k;
    }
    return true;
}

} // namespace

extern "C" int vshim_flat_read(int d, size_t n, struct vshim_body *b, size_t off, FaissIndex **out,
                               char *errbuf, size_t errlen)
{
    *out = nullptr;
    faiss::IndexFlatIP *flat = nullptr;
    faiss::IndexIDMap2 *m = nullptr;
    bool sound = true;
    try {
        flat = new faiss::IndexFlatIP(d);
        m = new faiss::IndexIDMap2(flat);
        m->own_fields = true;
        m->id_map.resize(n);
        flat->codes.reserve(n * (size_t)d * sizeof(float));
        populate(flat->codes.data(), flat->codes.capacity());
        sound =
            vshim_body_copy(b, m->id_map.data(), off, n * sizeof(idx_t)) == 0 &&
            append_checked(b, flat->codes, off + n * sizeof(idx_t), n * (size_t)d * sizeof(float));
        if (sound) {
            flat->ntotal = (idx_t)n;
            m->ntotal = (idx_t)n;
            // construct_rev_map() without the rehashes of growing from empty.
            m->rev_map.reserve(n);
            for (size_t i = 0; i < n; i++)
                m->rev_map[m->id_map[i]] = (idx_t)i;
        }
    } catch (const std::bad_alloc &) {
        delete (m ? static_cast<faiss::Index *>(m) : flat);
        set_err(errbuf, errlen, "snapshot", "out of memory for the flat index");
        return VINDEX_ENOMEM;
    } catch (const std::exception &e) {
        delete (m ? static_cast<faiss::Index *>(m) : flat);
        set_err(errbuf, errlen, "FAISS IndexIDMap2(IndexFlatIP)", e.what());
        return VINDEX_EFAISS;
    }
    if (!sound) {
        delete m;
        set_err(errbuf, errlen, "snapshot", "a block of the body fails its checksum");
        return VINDEX_ECORRUPT;
    }
    *out = reinterpret_cast<FaissIndex *>(m);
    return VINDEX_OK;
}

extern "C" int vshim_search(const FaissIndex *idx, int layout, const float *q, size_t nq, size_t k,
                            int ef_search, int nprobe, const struct vshim_select *s, int exhaustive,
                            int64_t *labels, float *scores, char *errbuf, size_t errlen)
{
    try {
        if (cpp(idx)->ntotal == 0) {
            // FAISS 1.7.3's BLAS path (exhaustive_inner_product_blas, from
            // distance_compute_blas_threshold queries: 4 here) returns at once for an empty
            // index without writing any result, which left the caller's buffers as they were.
            std::fill(labels, labels + nq * k, (int64_t)-1);
            std::fill(scores, scores + nq * k, -INFINITY);
            return VINDEX_OK;
        }
        if (layout == VSHIM_IVF) {
            auto ivf = dynamic_cast<const faiss::IndexIVF *>(cpp(idx));
            if (!ivf) {
                set_err(errbuf, errlen, "vindex shim", "index is not an IndexIVF");
                return VINDEX_EFAISS;
            }
            Selector sel(nullptr, s);
            faiss::SearchParametersIVF p;
            p.nprobe = exhaustive ? ivf->nlist : (size_t)std::max(1, nprobe);
            p.sel = (s && s->filter) ? &sel : nullptr;
            ivf->search((idx_t)nq, q, (idx_t)k, scores, labels, &p);
        } else {
            auto m = as_idmap(idx);
            if (!m) {
                set_err(errbuf, errlen, "vindex shim", "index is not an IndexIDMap2");
                return VINDEX_EFAISS;
            }
            const faiss::Index *inner = m->index;
            auto hnsw = dynamic_cast<const faiss::IndexHNSW *>(inner);
            const faiss::IndexFlat *flat = flat_of(inner);
            const bool short_list = s && s->filter && s->filter->labels &&
                                    (!hnsw || s->filter->n_labels <= VSHIM_SHORT_LIST);
            if (exhaustive || (flat && short_list)) {
                // A label list is answered from the list directly: for Flat cheaper than a scan
                // that binary-searches the list at every position, for HNSW (short lists) exact
                // and cheaper than a graph walk that passes mostly non-members.
                if (!flat) {
                    set_err(errbuf, errlen, "vindex shim", "no flat storage for an exact scan");
                    return VINDEX_EFAISS;
                }
                exact_idmap(m, flat, q, nq, k, s, labels, scores);
            } else {
                Selector sel(m->id_map.data(), s);
                faiss::IDSelector *psel = selects_anything(s) ? &sel : nullptr;
                const int parts = flat ? (int)std::min<idx_t>(omp_get_max_threads(),
                                                              flat->ntotal / VSHIM_SPLIT_MIN_PART)
                                       : 1;
                if (hnsw) {
                    faiss::SearchParametersHNSW p;
                    p.efSearch = std::max(ef_search, 1);
                    p.sel = psel;
                    inner->search((idx_t)nq, q, (idx_t)k, scores, labels, &p);
                } else if (!psel && nq >= VSHIM_BLAS_MIN_QUERIES) {
                    // Several queries over a Flat index: one matrix product per block of stored
                    // vectors reads them once for all queries. FAISS 1.7.3 does that only from
                    // distance_compute_blas_threshold (20) queries; below it every query scans
                    // all vectors. Measured here on 110k x 384 (AVX2 FAISS, OpenBLAS Zen, one
                    // thread), per query: 16.3-18.9 ms scanning; 11.4 ms at 4 queries, 6.6 at 8,
                    // 4.2 at 16 with BLAS (a lone query: 18.3 ms scanning, 45.9 with BLAS).
                    // One OpenMP thread: the BLAS path forks a team for every block of 1024
                    // vectors, and with the encoder busy on the other core those barriers made a
                    // 16-query search 1.7 s instead of 66 ms.
                    static const bool blas_set =
                        (faiss::distance_compute_blas_threshold = VSHIM_BLAS_MIN_QUERIES, true);
                    (void)blas_set;
                    OmpThreads one(1);
                    inner->search((idx_t)nq, q, (idx_t)k, scores, labels);
                } else if (!psel && flat && parts > 1) {
                    split_scan(flat, q, nq, k, parts, scores, labels);
                } else {
                    faiss::SearchParameters p;
                    p.sel = psel;
                    inner->search((idx_t)nq, q, (idx_t)k, scores, labels, psel ? &p : nullptr);
                }
                for (size_t i = 0; i < nq * k; i++)
                    labels[i] = labels[i] < 0 ? -1 : m->id_map[labels[i]];
            }
        }
        for (size_t i = 0; i < nq * k; i++)
            if (labels[i] < 0) scores[i] = -INFINITY;
        return VINDEX_OK;
    } catch (const std::bad_alloc &) {
        set_err(errbuf, errlen, "FAISS search", "out of memory");
        return VINDEX_ENOMEM;
    } catch (const std::exception &e) {
        set_err(errbuf, errlen, "FAISS search", e.what());
        return VINDEX_EFAISS;
    }
}

extern "C" int64_t vshim_idmap_position(const FaissIndex *idx, int64_t label)
{
    auto m = as_idmap(idx);
    if (!m) return -1;
    auto it = m->rev_map.find(label);
    return it == m->rev_map.end() ? -1 : it->second;
}

extern "C" int vshim_labels(const FaissIndex *idx, int layout, int64_t *out, char *errbuf,
                            size_t errlen)
{
    try {
        if (layout == VSHIM_IDMAP) {
            auto m = as_idmap(idx);
            if (!m) {
                set_err(errbuf, errlen, "vindex shim", "index is not an IndexIDMap2");
                return VINDEX_EFAISS;
            }
            std::copy(m->id_map.begin(), m->id_map.end(), out);
            return VINDEX_OK;
        }
        auto ivf = dynamic_cast<const faiss::IndexIVF *>(cpp(idx));
        if (!ivf) {
            set_err(errbuf, errlen, "vindex shim", "index is not an IndexIVF");
            return VINDEX_EFAISS;
        }
        size_t o = 0;
        for (size_t l = 0; l < ivf->nlist; l++) {
            size_t n = ivf->invlists->list_size(l);
            faiss::InvertedLists::ScopedIds ids(ivf->invlists, l);
            std::copy(ids.get(), ids.get() + n, out + o);
            o += n;
        }
        return VINDEX_OK;
    } catch (const std::exception &e) {
        set_err(errbuf, errlen, "FAISS labels", e.what());
        return VINDEX_EFAISS;
    }
}

extern "C" int vshim_flat_remove(FaissIndex *idx, const int64_t *labels, size_t n, size_t *removed,
                                 char *errbuf, size_t errlen)
{
    *removed = 0;
    // FAISS 1.7.3's IndexIDMap2::remove_ids compacts the whole vector array and id_map (O(ntotal)
    // per call: 1.5 GB moved at 1M x 384) and rebuilds rev_map; here each label costs one vector
    // copy and three map updates.
    auto m = dynamic_cast<faiss::IndexIDMap2 *>(reinterpret_cast<faiss::Index *>(idx));
    auto flat = m ? dynamic_cast<faiss::IndexFlat *>(m->index) : nullptr;
    if (!flat || flat->ntotal != m->ntotal) {
        set_err(errbuf, errlen, "vindex shim", "index is not an IndexIDMap2 over an IndexFlat");
        return VINDEX_EFAISS;
    }
    const size_t cs = flat->code_size;
    size_t nr = 0;
    for (size_t i = 0; i < n; i++) {
        auto it = m->rev_map.find(labels[i]);
        if (it == m->rev_map.end()) continue;
        const idx_t pos = it->second, last = m->ntotal - 1;
        if (pos != last) {
            auto mv = m->rev_map.find(m->id_map[last]);
            if (mv == m->rev_map.end()) { // FAISS keeps the maps in step; checked before any change
                set_err(errbuf, errlen, "vindex shim", "id_map and rev_map disagree");
                *removed = nr;
                return VINDEX_EFAISS;
            }
            std::memcpy(flat->codes.data() + (size_t)pos * cs,
                        flat->codes.data() + (size_t)last * cs, cs);
            mv->second = pos;
            m->id_map[pos] = m->id_map[last];
        }
        m->rev_map.erase(it);
        m->id_map.pop_back();
        flat->codes.resize((size_t)last * cs); // shrinking: no allocation, capacity kept
        m->ntotal = last;
        flat->ntotal = last;
        nr++;
    }
    *removed = nr;
    return VINDEX_OK;
}

extern "C" const float *vshim_flat_vectors(const FaissIndex *idx)
{
    auto m = as_idmap(idx);
    if (!m) return nullptr;
    auto f = dynamic_cast<const faiss::IndexFlat *>(m->index);
    return f ? f->get_xb() : nullptr;
}

extern "C" const int64_t *vshim_idmap_ids(const FaissIndex *idx)
{
    static_assert(sizeof(idx_t) == sizeof(int64_t), "FAISS labels are 64-bit");
    auto m = as_idmap(idx);
    return m ? reinterpret_cast<const int64_t *>(m->id_map.data()) : nullptr;
}

extern "C" float vshim_inner_product(const float *a, const float *b, size_t d)
{
    return faiss::fvec_inner_product(a, b, d);
}

extern "C" int vshim_set_hnsw(FaissIndex *idx, int ef_construction, int ef_search, char *errbuf,
                              size_t errlen)
{
    auto m = dynamic_cast<faiss::IndexIDMap2 *>(reinterpret_cast<faiss::Index *>(idx));
    auto h = m ? dynamic_cast<faiss::IndexHNSW *>(m->index) : nullptr;
    if (!h) return VINDEX_OK;
    h->hnsw.efConstruction = ef_construction;
    h->hnsw.efSearch = ef_search;
    auto f = dynamic_cast<faiss::IndexFlat *>(h->storage);
    if (!f || dynamic_cast<FastIPFlat *>(f) || f->metric_type != faiss::METRIC_INNER_PRODUCT)
        return VINDEX_OK;
    try {
        auto fast = new FastIPFlat((int)f->d);
        fast->codes.swap(f->codes);
        fast->ntotal = f->ntotal;
        if (h->own_fields) delete f;
        h->storage = fast;
        h->own_fields = true;
    } catch (const std::bad_alloc &) {
        set_err(errbuf, errlen, "vindex shim", "out of memory");
        return VINDEX_ENOMEM;
    }
    return VINDEX_OK;
}

extern "C" int vshim_is_hnsw(const FaissIndex *idx)
{
    auto m = as_idmap(idx);
    return m && dynamic_cast<const faiss::IndexHNSW *>(m->index) != nullptr;
}

extern "C" size_t vshim_memory_bytes(const FaissIndex *idx)
{
    const faiss::Index *ix = cpp(idx);
    size_t bytes = 0;
    if (auto m = dynamic_cast<const faiss::IndexIDMap2 *>(ix)) {
        // id_map entry + an unordered_map node (key, value, next pointer, hash) and bucket
        bytes += m->id_map.size() * (8 + 40);
        ix = m->index;
    }
    if (auto h = dynamic_cast<const faiss::IndexHNSW *>(ix)) {
        bytes += h->hnsw.neighbors.size() * sizeof(faiss::HNSW::storage_idx_t) +
                 h->hnsw.levels.size() * sizeof(int) + h->hnsw.offsets.size() * sizeof(size_t);
        ix = h->storage;
    }
    if (auto f = dynamic_cast<const faiss::IndexFlatCodes *>(ix)) {
        bytes += f->codes.size();
    } else if (auto ivf = dynamic_cast<const faiss::IndexIVF *>(ix)) {
        for (size_t l = 0; l < ivf->nlist; l++)
            bytes += ivf->invlists->list_size(l) * (ivf->code_size + sizeof(idx_t));
        bytes += (size_t)ivf->quantizer->ntotal * ivf->d * sizeof(float);
    }
    return bytes;
}

extern "C" double vshim_selectivity(const FaissIndex *idx, const struct vshim_select *s,
                                    size_t nsample)
{
    auto m = as_idmap(idx);
    if (!m || m->ntotal == 0 || !s || !s->filter) return 1.0;
    const Selector sel(m->id_map.data(), s);
    const size_t n = (size_t)m->ntotal;
    const size_t step = n > nsample ? n / nsample : 1;
    size_t seen = 0, pass = 0;
    for (size_t pos = step / 2; pos < n; pos += step) {
        if (s->dead && pos < s->dead_len && s->dead[pos]) continue;
        seen++;
        pass += sel.is_member((idx_t)pos);
    }
    return seen ? (double)pass / (double)seen : 1.0;
}
