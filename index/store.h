/*
 * store.h — internal to index/: the LMDB side of the document store.
 *
 * One environment file (MDB_NOSUBDIR, so a finished reindex can be renamed over it) with six
 * named databases:
 *   "meta"  string key -> value:  "format" (magic "SBIX" + u32 version), "model" (JSON object),
 *           "spec" (FAISS factory string), "next_label" (u64), "change" (u64), "uuid" (16 bytes)
 *   "ids"   id key -> u64 label.  The id key is the client id itself when it fits LMDB's key size
 *           limit; a longer id is keyed by its first (maxkey - 32) bytes + its SHA-256 (so ids
 *           sharing such a long prefix sort by hash, not bytes; the record holds the full id).
 *   "docs"  u64 label (MDB_INTEGERKEY) -> record (encoding below). A label's record never changes
 *           once written: an upsert writes a new label and deletes the old one, so a reader may
 *           trust any transaction's copy of a label it found.
 *   "log"   u64 change number (MDB_INTEGERKEY) -> {u64 label, u8 op}: the change log replayed
 *           into the vector index after its snapshot; trimmed up to the snapshot's change.
 *   "reqs"  req_id -> remembered write (encoding below): the replies of writes sent with a
 *           req_id, written in the same transaction as the write, so a retry after a crash finds
 *           the reply of a write that committed. Kept: the newest `keep` entries younger than
 *           `keep_s` seconds (sbert_index_params), pruned in each write transaction that adds
 *           one.
 *   "reqseq" u64 sequence (MDB_INTEGERKEY) -> req_id: the order of "reqs", oldest first, for
 *           the pruning.
 *   "reqs" and "reqseq" came after format version 1 without changing it: open creates them in a
 *   store that lacks them, and a reader that does not know them ignores them. A reindex starts
 *   a fresh environment without them (its retries then execute again).
 *
 * Remembered write, version 1: u8 version (1), u8[7] zero, u64 sequence, u64 Unix time (s),
 *   u64 the caller's fingerprint of the request, then the reply bytes.
 *
 * Record encoding, version 1 (all integers little-endian):
 *   u8 version (1), u8 flags (bit 0: has metadata), u16 id_len, u32 text_len, u32 meta_len,
 *   u32 dim, then float32[dim] vector, id bytes, text bytes, metadata bytes (compact JSON).
 *
 * Locking: `lock` is a reader-writer lock over the environment. Every transaction is opened and
 * closed under it shared; growing the map (mdb_env_set_mapsize, legal only with no transaction
 * open in the process) takes it exclusively. Write transactions are serialised by the caller.
 */
#ifndef SBERT_INDEX_STORE_H
#define SBERT_INDEX_STORE_H

#include <lmdb.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "sbert_index.h"

#define STORE_MAGIC "SBIX"
#define STORE_RECORD_VERSION 1
#define STORE_RECORD_HEADER 16
#define STORE_UUID_SIZE 16
#define STORE_REQ_VERSION 1
#define STORE_REQ_HEADER 32

enum { STORE_OP_PUT = 1, STORE_OP_DELETE = 2 };

typedef struct store {
    MDB_env *env;
    MDB_dbi meta, ids, docs, log, reqs, reqseq;
    pthread_rwlock_t lock;
    size_t map_size;
    int unmapped; /* LMDB error that left the environment without a map; then every call fails */
    int max_key;
    char path[4096];
    sbert_index_log_fn logfn;
    void *log_user;
} store;

/* The meta record, decoded. */
struct store_meta {
    uint32_t format;
    char model_name[256];
    char model_sha256[65];
    int dim, pooling, normalize, max_seq_length;
    char spec[128];
    uint64_t next_label;
    uint64_t change;
    uint8_t uuid[STORE_UUID_SIZE];
};

/* A decoded record: pointers into LMDB's map, valid only while its transaction is open. */
struct store_record {
    const float *vector; /* may be unaligned: copy with memcpy */
    uint32_t dim;
    const char *id;
    size_t id_len;
    const char *text;
    size_t text_len;
    const char *meta;    /* NULL when the document has none */
    size_t meta_len;
};

/* Opens (creating when absent) the environment file at path with the initial map size (grown to
 * the file's size when that is larger). nosync: for reindex's scratch environment only. */
int store_open(const char *path, size_t map_size, int nosync, sbert_index_log_fn logfn,
               void *log_user, store **out, char *errbuf, size_t errlen);
void store_close(store *s);

/* Maps an LMDB or errno code to SBERT_INDEX_E* and writes "what: text" into errbuf. */
int store_error(int rc, const char *what, char *errbuf, size_t errlen);

/*
 * Runs fn inside one write transaction and commits it (durably unless opened nosync). fn returns
 * 0, a negative SBERT_INDEX_E* code (abort, returned as is) or an LMDB code from a failed mdb_*
 * call (positive or MDB_*; converted). When the map is full, the transaction is aborted, the map
 * doubled under the exclusive lock and fn run again from scratch: fn must keep no state outside
 * the transaction except what it resets at its start.
 */
typedef int (*store_txn_fn)(store *s, MDB_txn *txn, void *user);
int store_write(store *s, store_txn_fn fn, void *user, char *errbuf, size_t errlen);

/* A read transaction under the shared lock. store_read_end() must follow on the same thread. */
int store_read_begin(store *s, MDB_txn **txn);
void store_read_end(store *s, MDB_txn *txn);

/* Meta record. store_meta_get returns SBERT_INDEX_ENOTFOUND for a fresh environment and
 * SBERT_INDEX_EFORMAT for a foreign or newer one. */
int store_meta_get(store *s, MDB_txn *txn, struct store_meta *m, char *errbuf, size_t errlen);
int store_meta_put(store *s, MDB_txn *txn, const struct store_meta *m);
/* Only next_label and change: the per-batch update. */
int store_meta_put_counters(store *s, MDB_txn *txn, uint64_t next_label, uint64_t change);

/* The key under which id is stored in "ids" (see above); key must hold s->max_key bytes. */
size_t store_id_key(const store *s, const char *id, size_t id_len, unsigned char *key);

/* Finds id's label. Returns 0, SBERT_INDEX_ENOTFOUND, or an LMDB code. */
int store_id_lookup(store *s, MDB_txn *txn, const char *id, size_t id_len, uint64_t *label);

/* Reads and decodes label's record. Returns 0, SBERT_INDEX_ENOTFOUND, SBERT_INDEX_EFORMAT or an
 * LMDB code. */
int store_record_get(store *s, MDB_txn *txn, uint64_t label, struct store_record *r);
int store_record_decode(const MDB_val *v, struct store_record *r);

/* Size of a record, and its encoding into buf (of that size). */
size_t store_record_size(size_t dim, size_t id_len, size_t text_len, size_t meta_len);
void store_record_encode(unsigned char *buf, const float *vector, size_t dim, const char *id,
                         size_t id_len, const char *text, size_t text_len, const char *meta,
                         size_t meta_len);

/* Appends {label, op} to the change log under change number seq. */
int store_log_append(store *s, MDB_txn *txn, uint64_t seq, uint64_t label, int op);

/* Decodes a change log value. Returns 0 or SBERT_INDEX_EFORMAT. */
int store_log_decode(const MDB_val *v, uint64_t *label, int *op);

/* Deletes the change log entries numbered up to and including upto. */
int store_log_trim(store *s, MDB_txn *txn, uint64_t upto);

/* Remembers the reply of a write sent with req_id (1..SBERT_INDEX_REQ_ID_MAX bytes) in txn,
 * replacing an older entry of the same req_id, and prunes "reqs" to the newest keep entries
 * younger than keep_s seconds. now is the Unix time. Returns 0 or an LMDB code. */
int store_req_put(store *s, MDB_txn *txn, const char *req_id, size_t len, uint64_t hash,
                  const char *reply, size_t reply_len, int64_t now, uint64_t keep, int64_t keep_s);

/* Finds req_id's remembered write younger than keep_s seconds at now. Returns 0 with
 * *reply pointing into LMDB's map (valid while txn is open), SBERT_INDEX_ENOTFOUND,
 * SBERT_INDEX_EFORMAT or an LMDB code. */
int store_req_get(store *s, MDB_txn *txn, const char *req_id, size_t len, int64_t now,
                  int64_t keep_s, uint64_t *hash, const char **reply, size_t *reply_len);

/* Map size and bytes in use. */
void store_map_info(store *s, uint64_t *map_size, uint64_t *used);

#endif
