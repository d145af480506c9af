// vindex_shim.cpp — see vindex_shim.h: FAISS 1.7.3 features the C API does not expose.
#include "vindex_shim.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <new>
#include <vector>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIDMap.h>
#include <faiss/IndexIVF.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/utils/Heap.h>
#include <faiss/utils/distances.h>

namespace {

using idx_t = faiss::Index::idx_t;

const faiss::Index *cpp(const FaissIndex *idx) {
    return reinterpret_cast<const faiss::Index *>(idx);
}

const faiss::IndexIDMap2 *as_idmap(const FaissIndex *idx) {
    return dynamic_cast<const faiss::IndexIDMap2 *>(cpp(idx));
}

void set_err(char *errbuf, size_t errlen, const char *what, const char *detail) {
    if (errbuf && errlen > 0) snprintf(errbuf, errlen, "%s: %s", what, detail);
}

bool in_sorted(const int64_t *labels, size_t n, int64_t label) {
    return std::binary_search(labels, labels + n, label);
}

// Membership over internal positions (IDMap2) or labels (IVF): not dead, and passing the
// caller's filter. FAISS calls is_member from its OpenMP threads.
struct Selector : faiss::IDSelector {
    const idx_t *id_map; // NULL: ids are labels already (IVF)
    const vshim_select *s;

    Selector(const idx_t *id_map, const vshim_select *s) : id_map(id_map), s(s) {}

    bool is_member(idx_t id) const override {
        if (id_map && s->dead && (size_t)id < s->dead_len && s->dead[id]) return false;
        const vindex_filter *f = s->filter;
        if (!f) return true;
        int64_t label = id_map ? id_map[id] : id;
        if (f->labels && !in_sorted(f->labels, f->n_labels, label)) return false;
        if (f->keep && !f->keep(label, f->user)) return false;
        return true;
    }
};

bool selects_anything(const vshim_select *s) {
    return s && ((s->dead && s->dead_len) || s->filter);
}

const faiss::IndexFlat *flat_of(const faiss::Index *inner) {
    if (auto f = dynamic_cast<const faiss::IndexFlat *>(inner)) return f;
    if (auto h = dynamic_cast<const faiss::IndexHNSW *>(inner))
        return dynamic_cast<const faiss::IndexFlat *>(h->storage);
    return nullptr;
}

// Exact scan of an IDMap2 over a flat-storage index: every live, selected position (or, when
// the filter has a label list, only those labels' positions).
void exact_idmap(const faiss::IndexIDMap2 *m, const faiss::IndexFlat *flat, const float *q,
                 size_t nq, size_t k, const vshim_select *s, int64_t *labels, float *scores) {
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
        for (size_t j = 0; j < k; j++) I[j] = I[j] < 0 ? -1 : m->id_map[I[j]];
    }
}

} // namespace

extern "C" int vshim_search(const FaissIndex *idx, int layout, const float *q, size_t nq, size_t k,
                            int ef_search, int nprobe, const struct vshim_select *s,
                            int exhaustive, int64_t *labels, float *scores, char *errbuf,
                            size_t errlen) {
    try {
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
                if (hnsw) {
                    faiss::SearchParametersHNSW p;
                    p.efSearch = std::max(ef_search, 1);
                    p.sel = psel;
                    inner->search((idx_t)nq, q, (idx_t)k, scores, labels, &p);
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

extern "C" int64_t vshim_idmap_position(const FaissIndex *idx, int64_t label) {
    auto m = as_idmap(idx);
    if (!m) return -1;
    auto it = m->rev_map.find(label);
    return it == m->rev_map.end() ? -1 : it->second;
}

extern "C" int vshim_labels(const FaissIndex *idx, int layout, int64_t *out, char *errbuf,
                            size_t errlen) {
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

extern "C" const float *vshim_flat_vectors(const FaissIndex *idx) {
    auto m = as_idmap(idx);
    if (!m) return nullptr;
    auto f = dynamic_cast<const faiss::IndexFlat *>(m->index);
    return f ? f->get_xb() : nullptr;
}

extern "C" void vshim_set_hnsw(FaissIndex *idx, int ef_construction, int ef_search) {
    auto m = dynamic_cast<faiss::IndexIDMap2 *>(reinterpret_cast<faiss::Index *>(idx));
    if (!m) return;
    if (auto h = dynamic_cast<faiss::IndexHNSW *>(m->index)) {
        h->hnsw.efConstruction = ef_construction;
        h->hnsw.efSearch = ef_search;
    }
}

extern "C" int vshim_is_hnsw(const FaissIndex *idx) {
    auto m = as_idmap(idx);
    return m && dynamic_cast<const faiss::IndexHNSW *>(m->index) != nullptr;
}

extern "C" size_t vshim_memory_bytes(const FaissIndex *idx) {
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
                                    size_t nsample) {
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
