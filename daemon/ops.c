/* ops.c — the daemon's op table: proto's op table (name, members, whether it writes: PROTOCOL.md
 * section 4) joined with each op's batch-bounded list and its handlers (ops_documents.c,
 * ops_manage.c, ops_search.c, ops_admin.c, ops_collections.c). */
#include "ops_common.h"

#include "sbert_util.h"

#include <string.h>

/* One row per op of the protocol, keyed by its id, aligned as a table. */
/* clang-format off */
static const struct op_handlers handlers[SBERT_PROTO_N_OPS] = {
    /*                          list         prepare            run                stage */
    [SBERT_PROTO_OP_ADD]        = {"documents", op_prepare_add,    op_run_add,        op_stage_add},
    [SBERT_PROTO_OP_GET]        = {"ids",       NULL,              op_run_get,        NULL},
    [SBERT_PROTO_OP_DELETE]     = {"ids",       op_prepare_delete, op_run_delete,     NULL},
    [SBERT_PROTO_OP_QUERY]      = {NULL,        NULL,              op_run_query,      NULL},
    [SBERT_PROTO_OP_SIMILARITY] = {NULL,        NULL,              op_run_similarity, NULL},
    [SBERT_PROTO_OP_ENCODE]     = {"texts",     NULL,              op_run_encode,     NULL},
    [SBERT_PROTO_OP_PAIRS]      = {"texts",     NULL,              op_run_pairs,      NULL},
    [SBERT_PROTO_OP_STATS]      = {NULL,        NULL,              op_run_stats,      NULL},
    [SBERT_PROTO_OP_HEALTH]     = {NULL,        NULL,              op_run_health,     NULL},
    [SBERT_PROTO_OP_BACKUP]     = {NULL,        op_prepare_backup, op_run_backup,     NULL},
    [SBERT_PROTO_OP_REINDEX]    = {NULL,        NULL,              op_run_reindex,    NULL},
    [SBERT_PROTO_OP_LIST]       = {NULL,        NULL,              op_run_list,       NULL},
    [SBERT_PROTO_OP_COUNT]      = {NULL,        NULL,              op_run_count,      NULL},
    [SBERT_PROTO_OP_PATCH]      = {"documents", op_prepare_patch,  op_run_patch,      NULL},
    [SBERT_PROTO_OP_CREATE_COLLECTION]   = {NULL, op_prepare_create_collection,
                                            op_run_create_collection, NULL},
    [SBERT_PROTO_OP_LIST_COLLECTIONS]    = {NULL, NULL, op_run_list_collections, NULL},
    [SBERT_PROTO_OP_DESCRIBE_COLLECTION] = {NULL, NULL, op_run_describe_collection, NULL},
    [SBERT_PROTO_OP_DROP_COLLECTION]     = {NULL, op_prepare_drop_collection,
                                            op_run_drop_collection, NULL},
};
/* clang-format on */

/* Filled by sbertd_ops_init, read-only afterwards. */
static struct op table[SBERT_PROTO_N_OPS];
const size_t sbertd_n_ops = SBERT_PROTO_N_OPS;

/* Checks that op p and its handlers h agree. */
static int join_check(const struct sbert_proto_op *p, const struct op_handlers *h, char *why,
                      size_t whylen)
{
    if (!h->run)
        return sbert_util_errf(why, whylen, -1, "the protocol's op \"%s\" has no handler", p->name);
    if (h->list && !sbert_proto_op_member(p, h->list))
        return sbert_util_errf(why, whylen, -1, "op \"%s\": its list \"%s\" is not its member",
                               p->name, h->list);
    if (h->stage_group && !p->writes)
        return sbert_util_errf(why, whylen, -1, "op \"%s\" has a write stage but does not write",
                               p->name);
    return 0;
}

int sbertd_ops_init(char *why, size_t whylen)
{
    size_t n = 0;
    const struct sbert_proto_op *p = sbert_proto_ops(&n);
    /* every handler an op of the protocol: a row of handlers[] beyond the protocol's ops, or a
     * protocol whose ids are not its order, would pair a handler with the wrong op */
    if (n != SBERT_PROTO_N_OPS)
        return sbert_util_errf(why, whylen, -1,
                               "the protocol has %zu ops, the daemon's table %d handlers", n,
                               SBERT_PROTO_N_OPS);
    for (size_t i = 0; i < n; i++) {
        if ((size_t)p[i].id != i)
            return sbert_util_errf(why, whylen, -1, "the protocol's op \"%s\" has id %d at %zu",
                                   p[i].name, (int)p[i].id, i);
        const struct op_handlers *h = &handlers[i];
        if (join_check(&p[i], h, why, whylen)) return -1;
        table[i] = (struct op){.name = p[i].name,
                               .is_write = p[i].writes,
                               .proto = &p[i],
                               .index = (int)i,
                               .list = h->list,
                               .prepare = h->prepare,
                               .run = h->run,
                               .stage_group = h->stage_group};
    }
    return 0;
}

const struct op *sbertd_op_at(size_t i)
{
    return &table[i];
}

const struct op *sbertd_op_find(const char *name)
{
    for (size_t i = 0; i < sbertd_n_ops; i++)
        if (strcmp(table[i].name, name) == 0) return &table[i];
    return NULL;
}
