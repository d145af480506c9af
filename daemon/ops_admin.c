/* ops_admin.c — the admin ops: stats, health, backup, reindex (PROTOCOL.md section 4). */
#define _GNU_SOURCE
#include "ops_common.h"

#include "log.h"

#include <stdio.h>
#include <unistd.h>

/* ---- health, stats --------------------------------------------------------------------------- */

int op_run_health(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err)
{
    (void)r;
    uint64_t count = 0;
    int rc = sbert_index_count(sbertd_store(d), &count);
    if (rc) return op_index_error(rc, NULL, -1, err);
    struct sbertd_counters c;
    sbertd_counters_get(d, &c);
    if (!cJSON_AddStringToObject(reply, "status", c.stopping ? "stopping" : "serving") ||
        !cJSON_AddNumberToObject(reply, "uptime_s", c.uptime_s) ||
        !cJSON_AddNumberToObject(reply, "documents", (double)count))
        return op_oom(err);
    return 0;
}

static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, rss = 0;
    if (!f) return 0;
    if (fscanf(f, "%lu %lu", &size, &rss) != 2) rss = 0;
    fclose(f);
    return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* The model, index and memory members of stats. Returns 0 or -1 (out of memory). */
static int stats_store(struct sbertd *d, const struct sbert_index_stats *st, cJSON *reply)
{
    static const char *const pool[] = {"mean", "cls", "max"};
    const struct sbert_model_info *info = sbertd_model_info(d);
    cJSON *model = NULL, *index = NULL, *mem = NULL;
    if (!(model = cJSON_AddObjectToObject(reply, "model")) ||
        !cJSON_AddStringToObject(model, "name", info->name) ||
        !cJSON_AddStringToObject(model, "path", info->path) ||
        !cJSON_AddStringToObject(model, "sha256", info->weights_sha256) ||
        !cJSON_AddNumberToObject(model, "max_seq_length", info->max_seq_length) ||
        !cJSON_AddStringToObject(model, "pooling", pool[info->pooling % 3]) ||
        !cJSON_AddBoolToObject(model, "normalize", info->normalize) ||
        !cJSON_AddStringToObject(model, "precision", sbert_precision_name(info->precision)) ||
        (info->int8_kernel && !cJSON_AddStringToObject(model, "int8_kernel", info->int8_kernel)) ||
        !(index = cJSON_AddObjectToObject(reply, "index")) ||
        !cJSON_AddStringToObject(index, "spec", st->index_spec) ||
        !cJSON_AddBoolToObject(index, "trained", st->index_trained) ||
        !cJSON_AddNumberToObject(index, "count", (double)st->index_count) ||
        (st->scan_kernel[0] && !cJSON_AddStringToObject(index, "scan_kernel", st->scan_kernel)) ||
        !cJSON_AddNumberToObject(index, "change", (double)st->change) ||
        !cJSON_AddNumberToObject(index, "snapshot_change", (double)st->snapshot_change) ||
        !cJSON_AddNumberToObject(index, "snapshot_time", (double)st->snapshot_time) ||
        !(mem = cJSON_AddObjectToObject(reply, "memory")) ||
        !cJSON_AddNumberToObject(mem, "rss_bytes", (double)rss_bytes()) ||
        !cJSON_AddNumberToObject(mem, "index_bytes", (double)st->index_bytes) ||
        !cJSON_AddNumberToObject(mem, "map_size", (double)st->map_size) ||
        !cJSON_AddNumberToObject(mem, "map_used", (double)st->map_used))
        return -1;
    if (!st->keyword_language[0]) return cJSON_AddNullToObject(reply, "keyword") ? 0 : -1;
    cJSON *kw = cJSON_AddObjectToObject(reply, "keyword");
    return !kw || !cJSON_AddStringToObject(kw, "language", st->keyword_language) ||
                   !cJSON_AddNumberToObject(kw, "documents", (double)st->keyword_docs) ||
                   !cJSON_AddNumberToObject(kw, "postings", (double)st->keyword_postings) ||
                   !cJSON_AddNumberToObject(kw, "bytes", (double)st->keyword_bytes)
               ? -1
               : 0;
}

/* sbertd_op_stats_each's callback: one member of "ops". */
static int stats_op(void *user, const char *name, const struct sbertd_op_figures *f)
{
    cJSON *o = cJSON_AddObjectToObject(user, name);
    return !o || !cJSON_AddNumberToObject(o, "count", (double)f->count) ||
           !cJSON_AddNumberToObject(o, "errors", (double)f->errors) ||
           !cJSON_AddNumberToObject(o, "p50_ms", f->p50_ms) ||
           !cJSON_AddNumberToObject(o, "p90_ms", f->p90_ms) ||
           !cJSON_AddNumberToObject(o, "p99_ms", f->p99_ms) ||
           !cJSON_AddNumberToObject(o, "max_ms", f->max_ms);
}

int op_run_stats(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err)
{
    (void)r;
    struct sbert_index_stats st;
    int rc = sbert_index_stats(sbertd_store(d), &st);
    if (rc) return op_index_error(rc, NULL, -1, err);
    struct sbertd_counters c;
    sbertd_counters_get(d, &c); /* this request is in progress too */
    cJSON *thr = NULL, *lim = NULL, *req = NULL, *enc = NULL, *ops = NULL, *ec = NULL;
    if (!cJSON_AddStringToObject(reply, "version", SBERTD_VERSION) ||
        !cJSON_AddNumberToObject(reply, "protocol", SBERT_PROTO_VERSION) ||
        !cJSON_AddNumberToObject(reply, "uptime_s", c.uptime_s) ||
        !cJSON_AddNumberToObject(reply, "documents", (double)st.count) ||
        !cJSON_AddNumberToObject(reply, "passages", (double)st.index_count) ||
        !cJSON_AddNumberToObject(reply, "dim", st.dim) || stats_store(d, &st, reply) ||
        !(thr = cJSON_AddObjectToObject(reply, "threads")) ||
        !cJSON_AddNumberToObject(thr, "workers", c.workers) ||
        !cJSON_AddNumberToObject(thr, "encode", c.encode_threads) ||
        !(lim = cJSON_AddObjectToObject(reply, "limits")))
        return op_oom(err);
    for (int i = 0; i < SBERTD_N_LIMITS; i++)
        if (!cJSON_AddNumberToObject(lim, sbertd_limit_name(i), (double)sbertd_limit(d, i)))
            return op_oom(err);
    if (!(req = cJSON_AddObjectToObject(reply, "requests")) ||
        !cJSON_AddNumberToObject(req, "in_progress", (double)c.in_progress) ||
        !cJSON_AddNumberToObject(req, "total", (double)c.total) ||
        !cJSON_AddNumberToObject(req, "errors", (double)c.errors) ||
        !(enc = cJSON_AddObjectToObject(reply, "encoder")) ||
        !cJSON_AddNumberToObject(enc, "texts", (double)c.encoded_texts) ||
        !cJSON_AddNumberToObject(enc, "tokens", (double)c.encoded_tokens) ||
        !cJSON_AddNumberToObject(enc, "seconds", c.encode_s) ||
        !(ec = cJSON_AddObjectToObject(reply, "embedding_cache")) ||
        !cJSON_AddBoolToObject(ec, "enabled", c.cache_enabled) ||
        !cJSON_AddNumberToObject(ec, "entries", (double)c.cache_entries) ||
        !cJSON_AddNumberToObject(ec, "bytes", (double)c.cache_bytes) ||
        !cJSON_AddNumberToObject(ec, "max_bytes", (double)c.cache_max_bytes) ||
        !cJSON_AddNumberToObject(ec, "hits", (double)c.cache_hits) ||
        !cJSON_AddNumberToObject(ec, "misses", (double)c.cache_misses) ||
        !cJSON_AddNumberToObject(ec, "evictions", (double)c.cache_evictions) ||
        !cJSON_AddNumberToObject(reply, "collections", (double)sbertd_collections_count(d)) ||
        !(ops = cJSON_AddObjectToObject(reply, "ops")))
        return op_oom(err);
    return sbertd_op_stats_each(d, stats_op, ops) ? op_oom(err) : 0;
}

/* ---- backup, reindex ------------------------------------------------------------------------- */

int op_prepare_backup(struct sbertd *d, struct request *r, struct sbert_proto_error *err)
{
    (void)d;
    const char *dir = NULL;
    int rc = sbert_proto_get_string(sbertd_req_root(r), "dir", 1, 4000, &dir, err);
    if (rc) return rc;
    if (dir[0] != '/')
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "\"dir\" must be an absolute path on the daemon's machine");
    return 0;
}

int op_run_backup(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err)
{
    (void)d;
    const char *dir = cJSON_GetObjectItemCaseSensitive(sbertd_req_root(r), "dir")->valuestring;
    char why[512] = "";
    int irc = sbert_index_backup(sbertd_req_store(r), dir, why, sizeof why);
    if (irc) return op_index_error(irc, why, -1, err);
    uint64_t count = 0;
    sbert_index_count(sbertd_req_store(r), &count);
    sbertd_log(LOG_INFO, "backup written to %s (%llu documents)", dir, (unsigned long long)count);
    if (!cJSON_AddStringToObject(reply, "dir", dir) ||
        !cJSON_AddNumberToObject(reply, "documents", (double)count))
        return op_oom(err);
    return 0;
}

int op_run_reindex(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err)
{
    char why[512] = "";
    sbertd_log(LOG_INFO, "reindex: re-encoding every stored text");
    /* sbertd_reindex_encode feeds the watchdog as the pieces go by: a reindex may take longer
     * than watchdog_stall_sec */
    int irc = sbert_index_reindex(sbertd_req_store(r), sbertd_model_identity(d),
                                  sbertd_reindex_encode, d, why, sizeof why);
    if (irc) return op_index_error(irc, why, -1, err);
    uint64_t count = 0;
    sbert_index_count(sbertd_req_store(r), &count);
    sbertd_log(LOG_INFO, "reindex: done, %llu documents", (unsigned long long)count);
    if (!cJSON_AddNumberToObject(reply, "documents", (double)count)) return op_oom(err);
    return 0;
}
