/*
 * config.h — sbertd's settings: defaults, the configuration file (`key = value` lines, '#'
 * comments; docs/sbertd.conf.example lists every key) and command-line flags, which override the
 * file. The keys table in config.c is the single list of keys, their types and defaults.
 *
 * Thread safety: a struct sbertd_config is built by one thread and then read-only; a reload
 * builds a new one. Not a library: errors are returned as messages for main to print.
 */
#ifndef SBERTD_CONFIG_H
#define SBERTD_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define SBERTD_MAX_LISTEN 8

struct sbertd_config {
    char model[4096];
    char data[4096];
    char listen[SBERTD_MAX_LISTEN][1024];
    int n_listen;
    char index_spec[128];        /* "" : the store's recorded spec (Flat for a new store) */
    char precision[8];           /* the encoder's arithmetic: "fp32" (default) or "int8" */
    char keyword_language[64];   /* the keyword index's analyzer (sbert_text.h): "english" */
    int threads;                 /* request worker threads */
    int encode_threads;          /* threads of each sbert_encode() call */
    int log_level;               /* LOG_ERR .. LOG_DEBUG (syslog.h) */
    int allow_remote;            /* tcp:// on a non-loopback address */
    int reindex_on_model_change; /* re-encode a store of another model at start, else refuse */
    char auth_token[1025];       /* "" : no token */
    char http[256];              /* "HOST:PORT" of the HTTP API (http/), "" : off */
    char metrics_textfile[4096]; /* "" : none; else /metrics written there every 15 s */
    int ef_search, nprobe;
    uint64_t snapshot_changes;
    uint32_t snapshot_seconds;
    uint64_t map_size;           /* initial LMDB map size in bytes (it doubles when full) */
    uint64_t embedding_cache_mb; /* bound of the embedding cache (ecache.h) in MiB; 0: off */
    uint64_t max_message_size;
    uint64_t max_batch, max_text_bytes, max_query_text_bytes, max_k, max_pairs, max_matrix,
        max_metadata_bytes;
    uint64_t max_concurrent;
    uint64_t max_inflight_bytes; /* request bytes queued or in progress */
    uint64_t max_reply_bytes;    /* bytes of one reply; above, too_large (checked as it is built) */
    uint64_t watchdog_stall_sec; /* a request running longer withholds the watchdog ping */
    int passage_overlap_tokens;  /* tokens a document's passage shares with the one before */
    double lead_weight;          /* a document's score: lead_weight * its document vector's cosine +
                                    (1 - lead_weight) * its best passage's (sbert_index_query_params) */
    char config_file[4096];      /* "" : none */
};

/* Fills c with the built-in defaults (environment-dependent ones included: $STATE_DIRECTORY,
 * $RUNTIME_DIRECTORY, ./models present or not, the CPU count). */
void sbertd_config_defaults(struct sbertd_config *c);

/* Applies the file at path over c. Returns 0, or -1 with a message (file:line: why) in err. */
int sbertd_config_load_file(struct sbertd_config *c, const char *path, char *err, size_t errlen);

/* Applies one key/value (as from the file or a flag). Returns 0, or -1 with a message. */
int sbertd_config_set(struct sbertd_config *c, const char *key, const char *value, char *err,
                      size_t errlen);

/*
 * Builds the configuration from argv: defaults, then the --config file, then the flags.
 * Returns 0 to run, 1 when --help or --version was handled (printed to stdout), or -1 on a
 * usage error (message in err).
 */
int sbertd_config_from_args(struct sbertd_config *c, int argc, char **argv, char *err,
                            size_t errlen);

/* Checks the listen URLs: tcp:// only on loopback unless allow_remote. Returns 0 or -1 + err. */
int sbertd_config_check(const struct sbertd_config *c, char *err, size_t errlen);

/* Writes "key = value" lines of every setting into buf (for --print-config and the log). */
void sbertd_config_dump(const struct sbertd_config *c, void (*line)(const char *, void *),
                        void *user);

#endif
