/* pipeline.c — the two-stage write pipeline (server.h): the writer stages writes that need no
 * store state (the adds' encode), the committer runs them one at a time in arrival order and
 * answers a repeated req_id. */
#define _GNU_SOURCE
#include "server.h"

#include "log.h"

#include <stdlib.h>
#include <string.h>

/* Answers from the cache, or else from the replies the store remembers (add and delete, written
 * with their batch: these survive a crash). */
int sbertd_pipeline_answer_repeat(struct sbertd *d, struct request *r)
{
    if (!r->req.req_id) return 0;
    uint64_t hash = 0;
    const char *cached = NULL;
    char *stored = NULL;
    size_t len = 0;
    const char *where = "the reply cache";
    int in_cache = sbertd_cache_find(d, r->req.req_id, &hash, &cached, &len);
    if (!in_cache) {
        int rc = sbert_index_req_find(r->store ? r->store : d->index, r->req.req_id,
                                      strlen(r->req.req_id), &hash, &stored, &len);
        if (rc == SBERT_INDEX_ENOTFOUND) return 0;
        if (rc) {
            /* without the lookup a retry could execute twice: refuse rather than guess */
            struct sbert_proto_error err;
            sbert_proto_error_set(&err, SBERT_PROTO_EINTERNAL, -1,
                                  "req_id lookup in the store failed: %s",
                                  sbert_index_strerror(rc));
            sbertd_finish(d, r, NULL, &err);
            return 1;
        }
        where = "the store's remembered replies";
    }
    if (hash != r->hash) {
        struct sbert_proto_error err;
        sbert_proto_error_set(&err, SBERT_PROTO_EREQ_ID_REUSED, -1,
                              "req_id \"%.64s\" was used by a different request in the last "
                              "%d %s",
                              r->req.req_id, in_cache ? 10 : SBERT_INDEX_REQ_KEEP_SECONDS / 3600,
                              in_cache ? "minutes" : "hours");
        free(stored);
        sbertd_finish(d, r, NULL, &err);
        return 1;
    }
    sbertd_log(LOG_INFO, "repeated %s req_id %s answered from %s", r->op->name, r->req.req_id,
               where);
    sbertd_finish_text(d, r, in_cache ? cached : stored, len, 0, "ok");
    free(stored);
    return 1;
}

/* The most consecutive queued writes of one op that the writer stages together. */
#define STAGE_GROUP_MAX 64

/* The first stage: stages consecutive queued requests of an op with a stage_group (one encode
 * for several adds) and hands every write on to the committer in the order it came. It holds no
 * lock while it works. */
static void *writer_main(void *arg)
{
    struct sbertd *d = arg;
    int w = d->n_workers;
    sbertd_server_bind_slot(w);
    struct request *r;
    while ((r = queue_pop(&d->writes))) {
        uint64_t t = sbertd_now_us();
        atomic_store(&d->busy_since[w], t);
        atomic_store(&d->busy_op[w], r->op_index);
        struct request *group[STAGE_GROUP_MAX];
        size_t n = 0;
        group[n++] = r;
        if (r->op->stage_group) {
            struct request *next;
            while (n < STAGE_GROUP_MAX && (next = queue_pop_if(&d->writes, r->op)))
                group[n++] = next;
            for (size_t i = 0; i < n; i++)
                group[i]->t_stage_us = t;
            r->op->stage_group(d, group, n);
        } else {
            r->t_stage_us = t;
        }
        t = sbertd_now_us();
        for (size_t i = 0; i < n; i++) {
            group[i]->t_staged_us = t;
            queue_push(&d->commits, group[i]);
        }
        atomic_store(&d->busy_since[w], 0);
    }
    queue_close(&d->commits);
    return NULL;
}

/* The second stage: runs the writes one at a time, in arrival order, each answered after its
 * commit. A repeated req_id is looked up only here, so a re-sent write that arrives while its
 * first copy is still in the pipeline finds that copy's reply (sbertd_run_one asks). */
static void *committer_main(void *arg)
{
    struct sbertd *d = arg;
    int w = d->n_workers + 1;
    sbertd_server_bind_slot(w);
    struct request *r;
    while ((r = queue_pop(&d->commits))) {
        r->t_run_us = sbertd_now_us();
        atomic_store(&d->busy_since[w], r->t_run_us);
        atomic_store(&d->busy_op[w], r->op_index);
        sbertd_run_one(d, r);
        atomic_store(&d->busy_since[w], 0);
    }
    return NULL;
}

int sbertd_pipeline_start(struct sbertd *d)
{
    queue_init(&d->writes);
    queue_init(&d->commits);
    if (pthread_create(&d->committer, NULL, committer_main, d)) return -1;
    if (pthread_create(&d->writer, NULL, writer_main, d)) return -1;
    return 0;
}

void sbertd_pipeline_submit(struct sbertd *d, struct request *r)
{
    r->t_valid_us = sbertd_now_us();
    queue_push(&d->writes, r);
}

void sbertd_pipeline_stop(struct sbertd *d)
{
    queue_close(&d->writes);
    pthread_join(d->writer, NULL); /* it closes commits when it has handed on its last write */
    pthread_join(d->committer, NULL);
    queue_destroy(&d->writes);
    queue_destroy(&d->commits);
}
