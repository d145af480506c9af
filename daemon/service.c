/* service.c — op.h for the handlers: the request, the limits, the model, the store and the
 * counters, read from the server's private state. (Encoding and searching are batcher.c's, the
 * per-op statistics reply.c's.) */
#include "server.h"

#include <stddef.h>
#include <string.h>

const cJSON *sbertd_req_root(const struct request *r)
{
    return r->req.root;
}

const char *sbertd_req_id(const struct request *r)
{
    return r->req.req_id;
}

uint64_t sbertd_req_hash(const struct request *r)
{
    return r->hash;
}

void *sbertd_req_prep(const struct request *r)
{
    return r->prep;
}

void sbertd_req_set_prep(struct request *r, void *prep, void (*prep_free)(void *))
{
    r->prep = prep;
    r->prep_free = prep_free;
}

/* Each live limit: its configuration key and where the configuration keeps it. */
#define LIMIT(e, key) [e] = {#key, offsetof(struct sbertd_config, key)}
static const struct {
    const char *name;
    size_t off;
} limit_keys[SBERTD_N_LIMITS] = {
    LIMIT(SBERTD_LIMIT_MAX_MESSAGE_SIZE, max_message_size),
    LIMIT(SBERTD_LIMIT_MAX_BATCH, max_batch),
    LIMIT(SBERTD_LIMIT_MAX_TEXT_BYTES, max_text_bytes),
    LIMIT(SBERTD_LIMIT_MAX_QUERY_TEXT_BYTES, max_query_text_bytes),
    LIMIT(SBERTD_LIMIT_MAX_K, max_k),
    LIMIT(SBERTD_LIMIT_MAX_PAIRS, max_pairs),
    LIMIT(SBERTD_LIMIT_MAX_MATRIX, max_matrix),
    LIMIT(SBERTD_LIMIT_MAX_METADATA_BYTES, max_metadata_bytes),
    LIMIT(SBERTD_LIMIT_MAX_CONCURRENT, max_concurrent),
    LIMIT(SBERTD_LIMIT_MAX_INFLIGHT_BYTES, max_inflight_bytes),
    LIMIT(SBERTD_LIMIT_MAX_REPLY_BYTES, max_reply_bytes),
};
#undef LIMIT

const char *sbertd_limit_name(enum sbertd_limit which)
{
    return limit_keys[which].name;
}

uint64_t *sbertd_config_limit(struct sbertd_config *c, enum sbertd_limit which)
{
    return (uint64_t *)((char *)c + limit_keys[which].off);
}

uint64_t sbertd_limit(const struct sbertd *d, enum sbertd_limit which)
{
    return atomic_load(&d->limits[which]);
}

const struct sbert_model_info *sbertd_model_info(const struct sbertd *d)
{
    return d->info;
}

float sbertd_lead_weight(const struct sbertd *d)
{
    return (float)d->cfg.lead_weight;
}

void sbertd_request_progress(struct sbertd *d)
{
    sbertd_server_progress(d);
}

const struct sbert_index_model *sbertd_model_identity(const struct sbertd *d)
{
    return &d->identity;
}

sbert_index *sbertd_store(const struct sbertd *d)
{
    return d->index;
}

void sbertd_counters_get(const struct sbertd *d, struct sbertd_counters *out)
{
    out->uptime_s = (double)(sbertd_now_us() - d->start_us) / 1e6;
    out->stopping = atomic_load(&d->stopping);
    out->in_progress = atomic_load(&d->in_flight);
    out->total = atomic_load(&d->total);
    out->errors = atomic_load(&d->total_errors);
    out->workers = d->n_workers;
    out->encode_threads = d->cfg.encode_threads;
    out->encoded_texts = atomic_load(&d->enc_texts);
    out->encoded_tokens = atomic_load(&d->enc_tokens);
    out->encode_s = (double)atomic_load(&d->enc_us) / 1e6;
    struct sbertd_ecache_stats st = {0};
    if (d->ecache) sbertd_ecache_stats(d->ecache, &st);
    out->cache_enabled = st.open;
    out->cache_entries = st.entries;
    out->cache_bytes = st.bytes;
    out->cache_max_bytes = st.max_bytes;
    out->cache_hits = st.hits;
    out->cache_misses = st.misses;
    out->cache_evictions = st.evictions;
}

void sbertd_progress(struct sbertd *d)
{
    sbertd_server_progress(d);
}
