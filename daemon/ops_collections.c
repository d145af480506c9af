/* ops_collections.c — create_collection, list_collections, describe_collection and
 * drop_collection (PROTOCOL.md section 4); the table itself is the server's (op.h). */
#define _GNU_SOURCE
#include "ops_common.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* The "name" member: a valid collection name. */
static int get_name(const cJSON *root, const char **name, struct sbert_proto_error *err)
{
    int rc = sbert_proto_get_string(root, "name", 1, SBERTD_COLLECTION_NAME_MAX + 1, name, err);
    return rc ? rc : sbertd_collection_name_check(*name, "name", err);
}

int op_prepare_create_collection(struct sbertd *d, struct request *r, struct sbert_proto_error *err)
{
    (void)d;
    const cJSON *root = sbertd_req_root(r);
    const char *name = NULL, *spec = NULL, *lang = NULL;
    long long ef = 0, nprobe = 0;
    struct sbertd_collection_params p;
    int rc = get_name(root, &name, err);
    if (!rc) rc = sbert_proto_get_string(root, "index", 0, sizeof p.index - 1, &spec, err);
    if (!rc)
        rc = sbert_proto_get_string(root, "keyword_language", 0, sizeof p.keyword_language - 1,
                                    &lang, err);
    if (!rc)
        rc = sbert_proto_get_int(root, "ef_search", 0, 0, 1 << 20, SBERT_PROTO_EBAD_REQUEST, &ef,
                                 err);
    if (!rc)
        rc = sbert_proto_get_int(root, "nprobe", 0, 0, 1 << 20, SBERT_PROTO_EBAD_REQUEST, &nprobe,
                                 err);
    return rc;
}

int op_run_create_collection(struct sbertd *d, struct request *r, cJSON *reply,
                             struct sbert_proto_error *err)
{
    const cJSON *root = sbertd_req_root(r);
    struct sbertd_collection_params p;
    sbertd_collection_defaults(d, &p);
    const cJSON *x;
    const char *name = cJSON_GetObjectItemCaseSensitive(root, "name")->valuestring;
    if ((x = cJSON_GetObjectItemCaseSensitive(root, "index")))
        snprintf(p.index, sizeof p.index, "%s", x->valuestring);
    if ((x = cJSON_GetObjectItemCaseSensitive(root, "keyword_language")))
        snprintf(p.keyword_language, sizeof p.keyword_language, "%s", x->valuestring);
    if ((x = cJSON_GetObjectItemCaseSensitive(root, "ef_search"))) p.ef_search = x->valueint;
    if ((x = cJSON_GetObjectItemCaseSensitive(root, "nprobe"))) p.nprobe = x->valueint;
    int rc = sbertd_collection_create(d, name, &p, err);
    if (rc) return rc;
    if (!cJSON_AddStringToObject(reply, "name", name) ||
        !cJSON_AddStringToObject(reply, "index", p.index))
        return op_oom(err);
    return 0;
}

int op_prepare_drop_collection(struct sbertd *d, struct request *r, struct sbert_proto_error *err)
{
    (void)d;
    const char *name = NULL;
    return get_name(sbertd_req_root(r), &name, err);
}

int op_run_drop_collection(struct sbertd *d, struct request *r, cJSON *reply,
                           struct sbert_proto_error *err)
{
    const char *name = cJSON_GetObjectItemCaseSensitive(sbertd_req_root(r), "name")->valuestring;
    uint64_t documents = 0;
    int rc = sbertd_collection_drop(d, name, &documents, err);
    if (rc) return rc;
    if (!cJSON_AddStringToObject(reply, "name", name) ||
        !cJSON_AddNumberToObject(reply, "documents", (double)documents))
        return op_oom(err);
    return 0;
}

/* The bytes the regular files directly in dir take on the disk (a collection's store files; the
 * default collection's subdirectory collections/ is not counted). */
static uint64_t dir_bytes(const char *dir)
{
    DIR *dd = opendir(dir);
    if (!dd) return 0;
    uint64_t total = 0;
    struct dirent *e;
    struct stat st;
    while ((e = readdir(dd)))
        if (fstatat(dirfd(dd), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
            total += (uint64_t)st.st_blocks * 512u;
    closedir(dd);
    return total;
}

struct describe {
    struct sbertd *d;
    cJSON *out; /* the array to append to (list), or the reply (describe) */
    int full;
    struct sbert_proto_error *err;
};

/* A collection's members into o: its name, documents, index spec, dim and model; with full,
 * describe's too. Returns 0 or a SBERT_PROTO_E* code. */
static int describe_one(void *user, const struct sbertd_collection_view *c)
{
    struct describe *w = user;
    struct sbert_index_stats st;
    int irc = sbert_index_stats(c->store, &st);
    if (irc) return op_index_error(irc, NULL, -1, w->err);
    cJSON *o = w->full ? w->out : cJSON_CreateObject();
    if (!o || (!w->full && !cJSON_AddItemToArray(w->out, o))) {
        cJSON_Delete(o);
        return op_oom(w->err);
    }
    if (!cJSON_AddStringToObject(o, "name", c->name) ||
        !cJSON_AddNumberToObject(o, "documents", (double)st.count) ||
        !cJSON_AddStringToObject(o, "index", st.index_spec) ||
        !cJSON_AddNumberToObject(o, "dim", st.dim) ||
        !cJSON_AddStringToObject(o, "model", sbertd_model_info(w->d)->name))
        return op_oom(w->err);
    if (!w->full) return 0;
    if (!cJSON_AddBoolToObject(o, "trained", st.index_trained) ||
        !(st.keyword_language[0]
              ? cJSON_AddStringToObject(o, "keyword_language", st.keyword_language)
              : cJSON_AddStringToObject(o, "keyword_language", "off")) ||
        (c->params && (!cJSON_AddNumberToObject(o, "ef_search", c->params->ef_search) ||
                       !cJSON_AddNumberToObject(o, "nprobe", c->params->nprobe))) ||
        !cJSON_AddNumberToObject(o, "bytes", (double)dir_bytes(c->dir)) ||
        !cJSON_AddNumberToObject(o, "snapshot_time", (double)st.snapshot_time))
        return op_oom(w->err);
    return 0;
}

int op_run_list_collections(struct sbertd *d, struct request *r, cJSON *reply,
                            struct sbert_proto_error *err)
{
    (void)r;
    cJSON *arr = cJSON_AddArrayToObject(reply, "collections");
    if (!arr) return op_oom(err);
    struct describe w = {d, arr, 0, err};
    return sbertd_collections_each(d, NULL, describe_one, &w, err);
}

int op_run_describe_collection(struct sbertd *d, struct request *r, cJSON *reply,
                               struct sbert_proto_error *err)
{
    const char *name = NULL;
    int rc = get_name(sbertd_req_root(r), &name, err);
    if (rc) return rc;
    struct describe w = {d, reply, 1, err};
    return sbertd_collections_each(d, name, describe_one, &w, err);
}
