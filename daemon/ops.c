/* ops.c — the op table (proto/PROTOCOL.md section 4): each op's members, its batch-bounded list,
 * whether it writes, and its handlers (ops_documents.c, ops_search.c, ops_admin.c). */
#include "ops_common.h"

#include <string.h>

static const char *const m_none[] = {NULL};
static const char *const m_add[] = {"documents", NULL};
static const char *const m_ids[] = {"ids", NULL};
static const char *const m_get[] = {"ids", "include", NULL};
static const char *const m_query[] = {"text",      "vector",  "k", "filter",
                                      "min_score", "include", NULL};
static const char *const m_similarity[] = {"a", "b", NULL};
static const char *const m_encode[] = {"texts", NULL};
static const char *const m_pairs[] = {"texts",     "n",       "min_score", "filter",
                                      "per_doc_k", "include", NULL};
static const char *const m_backup[] = {"dir", NULL};

/* One row per op, aligned as a table. */
/* clang-format off */
const struct op sbertd_ops[] = {
    /* name         members        list         write prepare            run                stage */
    {"add",        m_add,        "documents", 1, op_prepare_add,    op_run_add,        op_stage_add},
    {"get",        m_get,        "ids",       0, NULL,              op_run_get,        NULL},
    {"delete",     m_ids,        "ids",       1, op_prepare_delete, op_run_delete,     NULL},
    {"query",      m_query,      NULL,        0, NULL,              op_run_query,      NULL},
    {"similarity", m_similarity, NULL,        0, NULL,              op_run_similarity, NULL},
    {"encode",     m_encode,     "texts",     0, NULL,              op_run_encode,     NULL},
    {"pairs",      m_pairs,      "texts",     0, NULL,              op_run_pairs,      NULL},
    {"stats",      m_none,       NULL,        0, NULL,              op_run_stats,      NULL},
    {"health",     m_none,       NULL,        0, NULL,              op_run_health,     NULL},
    {"backup",     m_backup,     NULL,        1, op_prepare_backup, op_run_backup,     NULL},
    {"reindex",    m_none,       NULL,        1, NULL,              op_run_reindex,    NULL},
};
/* clang-format on */
const size_t sbertd_n_ops = sizeof sbertd_ops / sizeof sbertd_ops[0];

const struct op *sbertd_op_find(const char *name)
{
    for (size_t i = 0; i < sbertd_n_ops; i++)
        if (strcmp(sbertd_ops[i].name, name) == 0) return &sbertd_ops[i];
    return NULL;
}
