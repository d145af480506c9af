/*
 * store_meta.c — the store's "meta" database (store.h): the format, model, index spec, uuid and
 * counters of a store, written and read as one record.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sbert_util.h"
#include "store_impl.h"

static int meta_put(MDB_txn *txn, MDB_dbi dbi, const char *key, const void *v, size_t len)
{
    MDB_val k = {strlen(key), (void *)key}, d = {len, (void *)v};
    return mdb_put(txn, dbi, &k, &d, 0);
}

static int meta_get(MDB_txn *txn, MDB_dbi dbi, const char *key, MDB_val *d)
{
    MDB_val k = {strlen(key), (void *)key};
    return mdb_get(txn, dbi, &k, d);
}

int store_meta_put_counters(store *s, MDB_txn *txn, uint64_t next_label, uint64_t change)
{
    unsigned char b[8];
    store_put_u64(b, next_label);
    int rc = meta_put(txn, s->meta, "next_label", b, 8);
    if (rc) return rc;
    store_put_u64(b, change);
    rc = meta_put(txn, s->meta, "change", b, 8);
    /* the keyword index says which change it is current with: an sbertd without keyword
     * indexes that writes the store leaves it behind, and the next open rebuilds it */
    return rc ? rc : store_kw_note_change(s, txn, change);
}

int store_meta_put(store *s, MDB_txn *txn, const struct store_meta *m)
{
    unsigned char fmt[8];
    memcpy(fmt, STORE_MAGIC, 4);
    store_put_u32(fmt + 4, m->format);
    cJSON *j = cJSON_CreateObject();
    if (!j) return SBERT_INDEX_ENOMEM;
    /* Each member is checked: a model entry missing one would make the store unreadable. */
    int ok = cJSON_AddStringToObject(j, "name", m->model_name) &&
             cJSON_AddStringToObject(j, "weights_sha256", m->model_sha256) &&
             cJSON_AddNumberToObject(j, "dim", m->dim) &&
             cJSON_AddNumberToObject(j, "pooling", m->pooling) &&
             cJSON_AddNumberToObject(j, "normalize", m->normalize) &&
             cJSON_AddNumberToObject(j, "max_seq_length", m->max_seq_length) &&
             (m->precision != SBERT_INDEX_PRECISION_INT8 ||
              cJSON_AddStringToObject(j, "precision", "int8"));
    char *model = ok ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!model) return SBERT_INDEX_ENOMEM;
    int rc = meta_put(txn, s->meta, "format", fmt, 8);
    if (!rc) rc = meta_put(txn, s->meta, "model", model, strlen(model));
    free(model);
    if (!rc) rc = meta_put(txn, s->meta, "spec", m->spec, strlen(m->spec));
    if (!rc) rc = meta_put(txn, s->meta, "uuid", m->uuid, STORE_UUID_SIZE);
    if (!rc) rc = store_meta_put_counters(s, txn, m->next_label, m->change);
    return rc;
}

static int json_int(const cJSON *o, const char *key, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) return -1;
    *out = v->valueint;
    return 0;
}

static int json_str(const cJSON *o, const char *key, char *out, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap) return -1;
    strcpy(out, v->valuestring);
    return 0;
}

int store_meta_get(store *s, MDB_txn *txn, struct store_meta *m, char *errbuf, size_t errlen)
{
    memset(m, 0, sizeof *m);
    MDB_val d;
    int rc = meta_get(txn, s->meta, "format", &d);
    if (rc == MDB_NOTFOUND) return SBERT_INDEX_ENOTFOUND;
    if (rc) return store_error(rc, "reading the meta record", errbuf, errlen);
    if (d.mv_size != 8 || memcmp(d.mv_data, STORE_MAGIC, 4) != 0) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "%s is not an sbertd store (bad magic in the meta record)",
                     s->path);
        return SBERT_INDEX_EFORMAT;
    }
    m->format = store_get_u32((const unsigned char *)d.mv_data + 4);
    if (m->format != SBERT_INDEX_FORMAT_VERSION) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "%s has store format version %u; this build reads %d", s->path,
                     m->format, SBERT_INDEX_FORMAT_VERSION);
        return SBERT_INDEX_EFORMAT;
    }
    const char *bad = NULL;
    if ((rc = meta_get(txn, s->meta, "model", &d)) == 0) {
        cJSON *j = cJSON_ParseWithLength(d.mv_data, d.mv_size);
        if (!j && sbert_util_json_valid(d.mv_data, d.mv_size, NULL))
            return SBERT_INDEX_ENOMEM; /* sound JSON that cJSON could not allocate for */
        if (!j || json_str(j, "name", m->model_name, sizeof m->model_name) ||
            json_str(j, "weights_sha256", m->model_sha256, sizeof m->model_sha256) ||
            json_int(j, "dim", &m->dim) || json_int(j, "pooling", &m->pooling) ||
            json_int(j, "normalize", &m->normalize) ||
            json_int(j, "max_seq_length", &m->max_seq_length))
            bad = "model";
        const cJSON *prec = j ? cJSON_GetObjectItemCaseSensitive(j, "precision") : NULL;
        m->precision = SBERT_INDEX_PRECISION_FP32;
        if (prec && cJSON_IsString(prec) && strcmp(prec->valuestring, "int8") == 0)
            m->precision = SBERT_INDEX_PRECISION_INT8;
        else if (prec && !(cJSON_IsString(prec) && strcmp(prec->valuestring, "fp32") == 0))
            bad = "model";
        cJSON_Delete(j);
    } else
        bad = "model";
    if (!bad && (rc = meta_get(txn, s->meta, "spec", &d)) == 0 && d.mv_size < sizeof m->spec) {
        memcpy(m->spec, d.mv_data, d.mv_size);
        m->spec[d.mv_size] = 0;
    } else if (!bad)
        bad = "spec";
    if (!bad && (rc = meta_get(txn, s->meta, "uuid", &d)) == 0 && d.mv_size == STORE_UUID_SIZE)
        memcpy(m->uuid, d.mv_data, STORE_UUID_SIZE);
    else if (!bad)
        bad = "uuid";
    if (!bad && (rc = meta_get(txn, s->meta, "next_label", &d)) == 0 && d.mv_size == 8)
        m->next_label = store_get_u64(d.mv_data);
    else if (!bad)
        bad = "next_label";
    if (!bad && (rc = meta_get(txn, s->meta, "change", &d)) == 0 && d.mv_size == 8)
        m->change = store_get_u64(d.mv_data);
    else if (!bad)
        bad = "change";
    /* An entry that could not be read (rc: LMDB's error) is not a damaged one. */
    if (bad && rc != 0 && rc != MDB_NOTFOUND)
        return store_error(rc, "reading the meta record", errbuf, errlen);
    if (bad) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "%s: the meta record's \"%s\" entry is missing or damaged",
                     s->path, bad);
        return SBERT_INDEX_EFORMAT;
    }
    return 0;
}
