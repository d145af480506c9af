/*
 * store.h — internal to index/: the LMDB side of the document store. The store files (store.c,
 * store_meta.c, store_docs.c, store_log.c, store_reqs.c) make every LMDB call of the module; the
 * rest of index/ sees a store as an opaque handle and a transaction as an opaque pointer.
 *
 * One environment file (MDB_NOSUBDIR, so a finished reindex can be renamed over it) with seven
 * named databases:
 *   "meta"  string key -> value:  "format" (magic "SBIX" + u32 version), "model" (JSON object:
 *           name, weights_sha256, dim, pooling, normalize, max_seq_length, and "precision":
 *           "int8" for an int8 encoder — absent means fp32, so older stores read unchanged),
 *           "spec" (FAISS factory string), "next_label" (u64), "change" (u64), "uuid" (16 bytes),
 *           "keyword" (the keyword index's state: u32 analyzer version STORE_KW_VERSION (0 while a
 *           build is incomplete), u32 zero, u64 documents indexed, u64 terms in them, u64 the
 *           "change" number it is current with (every write of "change" writes it too), then the
 *           analyzer's language name)
 *   "ids"   id key -> u64 label (little-endian). With L = LMDB's key size limit
 *           (mdb_env_get_maxkeysize: 511 in a default LMDB build, so with ids of at most 512
 *           bytes only a 512-byte id is long): an id of at most L bytes is its own key; a longer
 *           id's key is exactly L bytes: its first L - 16 bytes, then a 128-bit hash of the whole
 *           id as two u64 lanes, each little-endian (id_hash in store_docs.c):
 *             lane 1: 64-bit FNV-1a (basis 0xcbf29ce484222325, prime 0x100000001b3);
 *             lane 2: from 0x84222325cbf29ce4, per byte b = (b ^ byte) * 0x9e3779b97f4a7c15,
 *                     b ^= b >> 29;
 *             then each lane twice x ^= x >> 33, x *= c (c = 0xff51afd7ed558ccd for lane 1,
 *             0xc4ceb9fe1a85ec53 for lane 2).
 *           Not a cryptographic hash: ids sharing such a long prefix sort by hash, not bytes, and
 *           two long ids may share a key, so every lookup compares the record's full id (a put
 *           that collides is refused with SBERT_INDEX_EID).
 *   "docs"  u64 label (MDB_INTEGERKEY) -> record (encoding below). A label's record never changes
 *           once written: an upsert writes a new label and deletes the old one, so a reader may
 *           trust any transaction's copy of a label it found. A document of n passages owns the
 *           n labels L..L+n-1 (its record is keyed by L; the vector index holds passage i's
 *           vector under L+i; no other record is keyed inside that range), so a vector index
 *           label P belongs to the record with the greatest key <= P when P < key + n.
 *   "log"   u64 change number (MDB_INTEGERKEY) -> {u64 label, u8 op} or {u64 label, u8 op,
 *           u32 n}: the change log replayed into the vector index after its snapshot; trimmed up
 *           to the snapshot's change. label is the document's first label and n its number of
 *           passages (labels label..label+n-1); the 9-byte form means n = 1.
 *   "reqs"  req_id -> remembered write (encoding below): the replies of writes sent with a
 *           req_id, written in the same transaction as the write, so a retry after a crash finds
 *           the reply of a write that committed. Kept: the newest `keep` entries younger than
 *           `keep_s` seconds (sbert_index_params), pruned in each write transaction that adds
 *           one.
 *   "reqseq" u64 sequence (MDB_INTEGERKEY) -> req_id: the order of "reqs", oldest first, for
 *           the pruning.
 *   "kwpost" term (UTF-8, as sbert_analyzer_run gives it, at most STORE_KW_MAX_TERM bytes) ->
 *           postings (MDB_DUPSORT | MDB_DUPFIXED, 16 bytes each): u64 label big-endian (so a
 *           term's postings sort by label), u32 the term's count in the document, u32 the
 *           document's length in terms, little-endian. The keyword (BM25) index, written in the
 *           transaction that writes or deletes the document (store_doc_put, store_record_del).
 *   "reqs" and "reqseq" came after format version 1 without changing it: open creates them in a
 *   store that lacks them, and a reader that does not know them ignores them. A reindex starts
 *   a fresh environment without them (its retries then execute again). "kwpost" and the
 *   "keyword" meta record came the same way: a store without the record has its keyword index
 *   built at open (keyword.c), as has one whose analyzer (version or language) differs or whose
 *   change number is not the store's (documents written by an sbertd without keyword indexes).
 *
 * Remembered write, version 1: u8 version (1), u8[7] zero, u64 sequence, u64 Unix time (s),
 *   u64 the caller's fingerprint of the request, then the reply bytes.
 *
 * Record encoding, version 1 (all integers little-endian):
 *   u8 version (1), u8 flags (bit 0: has metadata), u16 id_len, u32 text_len, u32 meta_len,
 *   u32 dim, then float32[dim] vector, id bytes, text bytes, metadata bytes (compact JSON).
 *   One passage: the whole text.
 * Record encoding, version 2 (a document of several passages; one whose only passage is the
 * whole text is written as version 1):
 *   u8 version (2), u8 flags (as version 1), u16 id_len, u32 text_len, u32 meta_len, u32 dim,
 *   u32 n (passages, >= 1), u32 zero, then float32[dim] the document vector (the whole text's,
 *   as the encoder truncates it to its window), float32[n * dim] the passages' vectors (passage
 *   0's first), {u32 start, u32 end}[n] (each passage's bytes text[start..end), start <= end <=
 *   text_len), id bytes, text bytes, metadata bytes.
 *
 * Return codes: functions return 0, a negative SBERT_INDEX_E* code, or — where said — an LMDB
 * code from a failed mdb_* call (positive errno or MDB_*), which store_error() converts.
 *
 * Locking: the store holds a reader-writer lock over the environment. Every transaction is opened
 * and closed under it shared; growing the map (mdb_env_set_mapsize, legal only with no
 * transaction open in the process) takes it exclusively. Write transactions are serialised by the
 * caller. Thread safety: a store may be used from any thread; a transaction belongs to the thread
 * that uses it, except that read transactions may be ended by another thread (MDB_NOTLS).
 */
#ifndef SBERT_INDEX_STORE_H
#define SBERT_INDEX_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "sbert_index.h"

#define STORE_MAGIC "SBIX"
#define STORE_RECORD_VERSION 1 /* a one-passage document */
#define STORE_RECORD_HEADER 16
#define STORE_RECORD_VERSION_PASSAGES 2
#define STORE_RECORD_HEADER_PASSAGES 24
#define STORE_UUID_SIZE 16
#define STORE_REQ_VERSION 1
#define STORE_REQ_HEADER 32
/* Room for any id key (LMDB's key size limit is 511 unless LMDB is built otherwise). */
#define STORE_KEY_MAX 1024

enum { STORE_OP_PUT = 1, STORE_OP_DELETE = 2 };

/* A scan callback's answer: stop after this item (0 goes on; a negative code aborts). */
#define STORE_SCAN_STOP 1

typedef struct store store;
typedef struct MDB_txn MDB_txn; /* LMDB's, opaque outside the store files */

/* The meta record, decoded. */
struct store_meta {
    uint32_t format;
    char model_name[256];
    char model_sha256[65];
    int dim, pooling, normalize, max_seq_length;
    int precision; /* SBERT_INDEX_PRECISION_*; a store written before precisions existed is fp32 */
    char spec[128];
    uint64_t next_label;
    uint64_t change;
    uint8_t uuid[STORE_UUID_SIZE];
};

/* A decoded record: pointers into LMDB's map, valid only while its transaction is open. */
struct store_record {
    const float *vector;     /* n_passages * dim floats, passage 0's first; may be unaligned:
                                copy with memcpy (so is doc_vector) */
    const float *doc_vector; /* dim floats, the document's vector (get's, pairs', MMR's and the
                                score's lead): version 2's stored one; version 1's is its one
                                passage's (doc_vector == vector) */
    uint32_t dim;
    uint32_t n_passages;        /* >= 1; the record owns labels key..key+n_passages-1 */
    const unsigned char *spans; /* version 2: n_passages {u32 start, u32 end}; NULL (version 1):
                                   one passage, the whole text. Read with store_record_span() */
    const char *id;
    size_t id_len;
    const char *text;
    size_t text_len;
    const char *meta; /* NULL when the document has none */
    size_t meta_len;
};

/* ---- environment (store.c) ------------------------------------------------------------------- */

/* Opens (creating when absent) the environment file at path with the initial map size (grown to
 * the file's size when that is larger). nosync: for reindex's scratch environment only. logfn
 * (may be NULL) receives the store's messages. On success *out is owned by the caller, who
 * releases it with store_close(). */
int store_open(const char *path, size_t map_size, int nosync, sbert_index_log_fn logfn,
               void *log_user, store **out, char *errbuf, size_t errlen);
/* Closes s (NULL: nothing); no transaction of s may be open. */
void store_close(store *s);

/* Maps an LMDB or errno code to SBERT_INDEX_E* and writes "what: text" into errbuf. A negative
 * SBERT_INDEX_E* code is returned as is, with nothing written. */
int store_error(int rc, const char *what, char *errbuf, size_t errlen);

/*
 * Runs fn inside one write transaction and commits it (durably unless opened nosync). fn returns
 * 0, a negative SBERT_INDEX_E* code (abort, returned as is) or an LMDB code from a failed store
 * call (converted). When the map is full, the transaction is aborted, the map doubled under the
 * exclusive lock and fn run again from scratch: fn must keep no state outside the transaction
 * except what it resets at its start.
 */
typedef int (*store_txn_fn)(store *s, MDB_txn *txn, void *user);
int store_write(store *s, store_txn_fn fn, void *user, char *errbuf, size_t errlen);

/* A read transaction under the shared lock. store_read_end() must follow on the same thread. */
int store_read_begin(store *s, MDB_txn **txn);
void store_read_end(store *s, MDB_txn *txn);

/* A read transaction that does not take the lock, for threads working for a caller that holds a
 * store_read_begin() transaction (so the lock) until every such transaction has been ended with
 * store_read_abort(), from any thread. Returns 0 or an LMDB code. */
int store_read_begin_nolock(store *s, MDB_txn **txn);
void store_read_abort(MDB_txn *txn);

/* Map size and bytes in use. */
void store_map_info(store *s, uint64_t *map_size, uint64_t *used);

/* Writes a compacted copy of the environment to the file path (mdb_env_copy2), under the shared
 * lock. Returns 0 or an SBERT_INDEX_E* code with "what: text" in errbuf. */
int store_copy(store *s, const char *path, char *errbuf, size_t errlen);

/* Flushes the environment to disk (for one opened nosync). Returns 0 or an LMDB code. */
int store_sync(store *s);

/* ---- meta record (store_meta.c) -------------------------------------------------------------- */

/* store_meta_get returns SBERT_INDEX_ENOTFOUND for a fresh environment and SBERT_INDEX_EFORMAT
 * for a foreign or newer one. */
int store_meta_get(store *s, MDB_txn *txn, struct store_meta *m, char *errbuf, size_t errlen);
/* Return 0, SBERT_INDEX_ENOMEM or an LMDB code. */
int store_meta_put(store *s, MDB_txn *txn, const struct store_meta *m);
/* Only next_label and change: the per-batch update. */
int store_meta_put_counters(store *s, MDB_txn *txn, uint64_t next_label, uint64_t change);

/* ---- ids and documents (store_docs.c) -------------------------------------------------------- */

/* The key under which id is stored in "ids" (see above) into key (STORE_KEY_MAX bytes); returns
 * its length. */
size_t store_id_key(const store *s, const char *id, size_t id_len, unsigned char *key);

/* Finds id's label. Returns 0, SBERT_INDEX_ENOTFOUND, SBERT_INDEX_EFORMAT or an LMDB code. */
int store_id_lookup(store *s, MDB_txn *txn, const char *id, size_t id_len, uint64_t *label);

/* Removes id's entry from "ids". Returns 0 or an LMDB code (MDB_NOTFOUND when absent). */
int store_id_del(store *s, MDB_txn *txn, const char *id, size_t id_len);

/* Reads and decodes label's record. Returns 0, SBERT_INDEX_ENOTFOUND, SBERT_INDEX_EFORMAT or an
 * LMDB code. */
int store_record_get(store *s, MDB_txn *txn, uint64_t label, struct store_record *r);

/* Passage i's bytes text[*start..*end) of r (i < r->n_passages). */
void store_record_span(const struct store_record *r, size_t i, size_t *start, size_t *end);

/* The document that owns vector index label label (the record with the greatest key <= label
 * whose passages cover it): its key in *doc and its record in *r. Returns 0,
 * SBERT_INDEX_ENOTFOUND (no live document owns label), SBERT_INDEX_EFORMAT or an LMDB code. */
int store_record_owner(store *s, MDB_txn *txn, uint64_t label, uint64_t *doc,
                       struct store_record *r);

/* Removes label's record from "docs" (not its id's entry); *n_passages (may be NULL) receives its
 * number of passages. Returns 0 or an LMDB code (MDB_NOTFOUND when absent). */
int store_record_del(store *s, MDB_txn *txn, uint64_t label, uint32_t *n_passages);

/* Stores a document of n_passages passages under label (so labels label..label+n_passages-1),
 * which must be above every stored label (the record is appended), and points its id at it in
 * "ids" (replacing an older entry), and adds its text to the keyword index when s keeps one.
 * vectors holds n_passages * dim floats; spans 2 * n_passages offsets {start, end} (each within
 * the text), or NULL for one passage that is the whole text. doc_vector: with spans, dim floats,
 * the document vector (version 2); without, NULL (the one passage's vector is the document's).
 * metadata may be NULL (none).
 * Returns 0, a negative SBERT_INDEX_E* code (the keyword index's) or an LMDB code. */
int store_doc_put(store *s, MDB_txn *txn, uint64_t label, const float *doc_vector,
                  const float *vectors, size_t dim, size_t n_passages, const uint32_t *spans,
                  const char *id, size_t id_len, const char *text, size_t text_len,
                  const char *meta, size_t meta_len);

/* The number of stored documents. Returns 0 or an LMDB code. */
int store_doc_count(store *s, MDB_txn *txn, uint64_t *n);

/* A scan's callback: one document, r valid only during the call. Returns 0 to go on,
 * STORE_SCAN_STOP to stop after this document, or a negative SBERT_INDEX_E* code to abort. */
typedef int (*store_doc_fn)(uint64_t label, const struct store_record *r, void *user);

/*
 * One chunk of a scan of "docs" in label order within txn: hands fn the documents with labels
 * >= *next, at most max of them, and sets *next past each one handed over. *end is set to 1 when
 * the scan reached the last document, else 0. Returns 0 (also after STORE_SCAN_STOP), fn's
 * negative code, SBERT_INDEX_EFORMAT (an undecodable record) or an LMDB code.
 */
int store_docs_scan(store *s, MDB_txn *txn, uint64_t *next, size_t max, store_doc_fn fn, void *user,
                    int *end);

/*
 * One chunk of a scan of "ids" in key order (so in id byte order, see above) within txn: hands fn
 * the documents whose id keys come after key[0..*key_len) (*key_len 0: from the first), at most
 * max of them; after each one handed over, key holds its id key (key has STORE_KEY_MAX bytes).
 * *end as for store_docs_scan. Returns 0, fn's negative code, the code of reading a document's
 * record (SBERT_INDEX_ENOTFOUND for an id whose record is missing) or an LMDB code.
 */
int store_ids_scan(store *s, MDB_txn *txn, unsigned char *key, size_t *key_len, size_t max,
                   store_doc_fn fn, void *user, int *end);

/* ---- change log (store_log.c) ---------------------------------------------------------------- */

/* Appends {label, op, n} (a document of n passages) to the change log under change number seq.
 * Returns 0 or an LMDB code. */
int store_log_append(store *s, MDB_txn *txn, uint64_t seq, uint64_t label, int op, uint32_t n);

/* Deletes the change log entries numbered up to and including upto. Returns 0 or an LMDB
 * code. */
int store_log_trim(store *s, MDB_txn *txn, uint64_t upto);

/* The change log's callback: one entry (n: the document's passages). Returns 0 to go on or a
 * negative code to abort. */
typedef int (*store_log_fn)(uint64_t seq, uint64_t label, int op, uint32_t n, void *user);

/* Hands fn every change log entry from number first on, in order, within txn. Returns 0,
 * SBERT_INDEX_ENOTFOUND when the log holds no entry numbered first, fn's code,
 * SBERT_INDEX_EFORMAT (an undecodable entry) or an LMDB code. */
int store_log_scan(store *s, MDB_txn *txn, uint64_t first, store_log_fn fn, void *user);

/* ---- keyword index (store_kw.c) ------------------------------------------------------------- */

#define STORE_KW_VERSION 1    /* the analyzer's rules (sbert_text.h); a change rebuilds the index */
#define STORE_KW_MAX_TERM 255 /* bytes of a term key; the analyzer's terms are shorter */
#define STORE_KW_POSTING 16

/* The "keyword" meta record, decoded. */
struct store_kw_stats {
    uint32_t version;
    uint64_t docs, terms; /* documents indexed and the terms in them (BM25's average length) */
    uint64_t change;      /* the store's change number the index is current with */
    char language[64];
};

/* Gives s an analyzer for language (sbert_text.h's names; NULL: English): from now on every
 * document s writes or deletes updates the keyword index ("off": none, and s keeps no keyword
 * index). Returns 0, SBERT_INDEX_EINVAL (no such language) or SBERT_INDEX_ENOMEM. */
int store_kw_setup(store *s, const char *language);
/* The canonical name of s's analyzer's language, or NULL when s keeps no keyword index. */
const char *store_kw_language(const store *s);

/* Return 0, SBERT_INDEX_ENOTFOUND (no record: a store from before keyword indexes),
 * SBERT_INDEX_EFORMAT or an LMDB code. */
int store_kw_stats_get(store *s, MDB_txn *txn, struct store_kw_stats *st);
int store_kw_stats_put(store *s, MDB_txn *txn, const struct store_kw_stats *st);

/* Empties the keyword index and records s's analyzer with zero documents under version
 * (STORE_KW_VERSION: complete; 0: being built, so incomplete until the build's last transaction
 * sets the version); nothing when s keeps no keyword index. Returns 0 or an LMDB code. */
int store_kw_reset(store *s, MDB_txn *txn, uint32_t version);

/* Records that the keyword index is current with the store's change number change (called by
 * store_meta_put_counters, in the same transaction); nothing when s keeps no keyword index or the
 * store has no complete one. Returns 0 or an LMDB code. */
int store_kw_note_change(store *s, MDB_txn *txn, uint64_t change);

/* Marks a built index complete: version STORE_KW_VERSION and the store's change number. Returns
 * 0, SBERT_INDEX_ENOTFOUND / EFORMAT (no record) or an LMDB code. */
int store_kw_complete(store *s, MDB_txn *txn);

/* Removes the keyword index: its postings and its meta record (keyword_language = off). Returns
 * 0 or an LMDB code. */
int store_kw_drop(store *s, MDB_txn *txn);

/* The number of postings and the keyword index's bytes (see sbert_index_stats). Returns 0 or an
 * LMDB code. */
int store_kw_size(store *s, MDB_txn *txn, uint64_t *postings, uint64_t *bytes);

/* Adds (removes) the postings of a document's text under label; nothing when s keeps no keyword
 * index. Called by store_doc_put and store_record_del, and by open.c's rebuild. Return 0,
 * SBERT_INDEX_ENOMEM, SBERT_INDEX_EFORMAT (no "keyword" record) or an LMDB code. */
int store_kw_add(store *s, MDB_txn *txn, uint64_t label, const char *text, size_t len);
int store_kw_del(store *s, MDB_txn *txn, uint64_t label, const char *text, size_t len);

/* A posting: label holds term tf times and has dl terms; df documents hold the term. Returns 0 to
 * go on or a negative code to stop (returned by store_kw_postings). */
typedef int (*store_kw_fn)(uint64_t label, uint32_t tf, uint32_t dl, uint64_t df, void *user);
/* Hands fn every posting of term[0..len), in label order. Returns 0 (also for an unknown term),
 * fn's code or an LMDB code. */
int store_kw_postings(store *s, MDB_txn *txn, const char *term, size_t len, store_kw_fn fn,
                      void *user);

/* ---- remembered writes (store_reqs.c) -------------------------------------------------------- */

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

#endif
