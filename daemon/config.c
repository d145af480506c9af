/* config.c — defaults, configuration file and flags. */
#define _GNU_SOURCE
#include "config.h"

#include "log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sbert.h"
#include "sbert_proto.h"
#include "sbert_util.h"

#ifndef SBERTD_DEFAULT_MODEL_DIR
#define SBERTD_DEFAULT_MODEL_DIR "/usr/share/sbertd/models/all-MiniLM-L6-v2"
#endif

enum key_type { K_STR, K_INT, K_U64, K_BOOL, K_LEVEL, K_LISTEN, K_FRAC };

/* Every configuration key: its type, where it lives, its bounds. docs/sbertd.conf.example
 * documents the same keys with their defaults. */
static const struct key {
    const char *name;
    enum key_type type;
    size_t offset;
    size_t size;       /* K_STR: buffer size */
    uint64_t min, max; /* K_INT, K_U64 */
} keys[] = {
#define STR(n, f)                                                                                  \
    {                                                                                              \
        n, K_STR, offsetof(struct sbertd_config, f), sizeof(((struct sbertd_config *)0)->f), 0, 0  \
    }
#define INT(n, f, lo, hi)                                                                          \
    {                                                                                              \
        n, K_INT, offsetof(struct sbertd_config, f), 0, lo, hi                                     \
    }
#define U64(n, f, lo, hi)                                                                          \
    {                                                                                              \
        n, K_U64, offsetof(struct sbertd_config, f), 0, lo, hi                                     \
    }
    STR("model", model),
    STR("data", data),
    {"listen", K_LISTEN, 0, 0, 0, 0},
    STR("index", index_spec),
    STR("precision", precision),
    STR("keyword_language", keyword_language),
    INT("threads", threads, 1, 256),
    INT("encode_threads", encode_threads, 1, 256),
    {"log_level", K_LEVEL, offsetof(struct sbertd_config, log_level), 0, 0, 0},
    {"allow_remote", K_BOOL, offsetof(struct sbertd_config, allow_remote), 0, 0, 0},
    {"reindex_on_model_change", K_BOOL, offsetof(struct sbertd_config, reindex_on_model_change), 0,
     0, 0},
    STR("auth_token", auth_token),
    STR("http", http),
    STR("metrics_textfile", metrics_textfile),
    INT("ef_search", ef_search, 0, 1000000),
    INT("nprobe", nprobe, 0, 1000000),
    U64("snapshot_changes", snapshot_changes, 1, UINT64_MAX),
    U64("snapshot_seconds", snapshot_seconds, 1, UINT32_MAX),
    U64("map_size", map_size, 1u << 20, UINT64_MAX / 4),
    U64("embedding_cache_mb", embedding_cache_mb, 0, 1u << 20),
    U64("max_message_size", max_message_size, 4096, 1u << 30),
    U64("max_batch", max_batch, 1, 1000000),
    U64("max_text_bytes", max_text_bytes, 1, 1u << 30),
    U64("max_query_text_bytes", max_query_text_bytes, 1, 64u << 20),
    U64("max_k", max_k, 1, 10000),
    U64("max_pairs", max_pairs, 1, 10000000),
    U64("max_matrix", max_matrix, 1, 100000000),
    U64("max_metadata_bytes", max_metadata_bytes, 2, 64u << 20),
    U64("max_concurrent", max_concurrent, 1, 1000000),
    U64("max_inflight_bytes", max_inflight_bytes, 4096, UINT64_MAX),
    U64("max_reply_bytes", max_reply_bytes, 4096, 1u << 30),
    U64("watchdog_stall_sec", watchdog_stall_sec, 1, 86400),
    INT("passage_overlap_tokens", passage_overlap_tokens, 0, 100000),
    {"lead_weight", K_FRAC, offsetof(struct sbertd_config, lead_weight), 0, 0, 0},
#undef STR
#undef INT
#undef U64
};
#define N_KEYS (sizeof keys / sizeof keys[0])

static int ncpu(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (n > 64 ? 64 : (int)n);
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* First entry of a systemd directory variable ("a:b" when several directories are named). */
static int env_dir(const char *var, char *out, size_t cap)
{
    const char *v = getenv(var);
    if (!v || !*v) return 0;
    size_t n = strcspn(v, ":");
    if (n >= cap) return 0;
    memcpy(out, v, n);
    out[n] = '\0';
    return 1;
}

void sbertd_config_defaults(struct sbertd_config *c)
{
    memset(c, 0, sizeof *c);
    if (is_dir("./models/all-MiniLM-L6-v2"))
        snprintf(c->model, sizeof c->model, "./models/all-MiniLM-L6-v2");
    else
        snprintf(c->model, sizeof c->model, "%s", SBERTD_DEFAULT_MODEL_DIR);
    snprintf(c->precision, sizeof c->precision, "fp32");
    snprintf(c->keyword_language, sizeof c->keyword_language, "english");
    if (!env_dir("STATE_DIRECTORY", c->data, sizeof c->data))
        snprintf(c->data, sizeof c->data, "./var/data");
    char rt[900];
    if (env_dir("RUNTIME_DIRECTORY", rt, sizeof rt))
        snprintf(c->listen[0], sizeof c->listen[0], "ipc://%s/sbertd.sock", rt);
    else
        snprintf(c->listen[0], sizeof c->listen[0], "ipc://./var/sbertd.sock");
    c->n_listen = 1;
    /* workers mostly wait for the shared encoder, the shared search or the store: more of them
     * than CPUs lets concurrent queries meet in one encode batch and one search. Measured with 16
     * clients on 2 CPUs and 100k documents (Flat): 8 workers, p50 236 ms and 67 queries/s; 16,
     * 142 ms and 107/s; 32, no better (145 ms, 102/s). */
    c->threads = 4 * ncpu() < 16 ? 16 : 4 * ncpu();
    c->encode_threads = ncpu();
    c->log_level = LOG_INFO;
    c->snapshot_changes = 100000;
    c->snapshot_seconds = 300;
    c->map_size = 1ull << 30;
    /* an entry of a 384-dim model is 1.6 KB (2 KiB of LMDB page): 256 MiB keeps the vectors of
     * about 130,000 passages, a 10,000-file tree of 3 KB documents several times over, on disk
     * (the kernel's page cache decides what stays in memory) */
    c->embedding_cache_mb = 256;
    c->max_message_size = SBERT_PROTO_DEFAULT_MAX_MESSAGE_SIZE;
    c->max_batch = SBERT_PROTO_DEFAULT_MAX_BATCH;
    c->max_text_bytes = SBERT_PROTO_DEFAULT_MAX_TEXT_BYTES;
    c->max_query_text_bytes = SBERT_PROTO_DEFAULT_MAX_QUERY_TEXT_BYTES;
    c->max_k = SBERT_PROTO_DEFAULT_MAX_K;
    c->max_pairs = SBERT_PROTO_DEFAULT_MAX_PAIRS;
    c->max_matrix = SBERT_PROTO_DEFAULT_MAX_MATRIX;
    c->max_metadata_bytes = SBERT_PROTO_DEFAULT_MAX_METADATA_BYTES;
    c->max_concurrent = SBERT_PROTO_DEFAULT_MAX_CONCURRENT;
    c->max_inflight_bytes = 0; /* 4 x max_message_size, resolved once the file and flags are read */
    /* = the default max_message_size; sbertctl accepts replies up to 256 MiB */
    c->max_reply_bytes = SBERT_PROTO_DEFAULT_MAX_MESSAGE_SIZE;
    c->watchdog_stall_sec = 600;
    /* about a quarter of all-MiniLM-L6-v2's 254-token window; a window no larger than it gets
     * an overlap of a quarter of its own size (main.c) */
    c->passage_overlap_tokens = 64;
    c->lead_weight = 0.3;
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (!isdigit((unsigned char)*s)) return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    uint64_t mult = 1;
    /* size suffixes for the byte limits: 64M, 1G, 512K */
    if (*end == 'K' || *end == 'k')
        mult = 1024, end++;
    else if (*end == 'M' || *end == 'm')
        mult = 1024 * 1024, end++;
    else if (*end == 'G' || *end == 'g')
        mult = 1024 * 1024 * 1024, end++;
    if (errno || *end || (mult > 1 && v > UINT64_MAX / mult)) return -1;
    *out = v * mult;
    return 0;
}

int sbertd_config_set(struct sbertd_config *c, const char *key, const char *value, char *err,
                      size_t errlen)
{
    const struct key *k = NULL;
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].name, key) == 0) k = &keys[i];
    if (!k) return sbert_util_errf(err, errlen, -1, "unknown key \"%s\"", key);
    char *base = (char *)c;
    uint64_t u;
    switch (k->type) {
    case K_STR:
        if (strlen(value) >= k->size)
            return sbert_util_errf(err, errlen, -1, "%s: value longer than %zu bytes", key,
                                   k->size - 1);
        snprintf(base + k->offset, k->size, "%s", value);
        return 0;
    case K_INT:
    case K_U64:
        if (parse_u64(value, &u) || u < k->min || u > k->max)
            return sbert_util_errf(err, errlen, -1, "%s: \"%s\" is not a number in %llu..%llu", key,
                                   value, (unsigned long long)k->min, (unsigned long long)k->max);
        if (k->type == K_INT)
            *(int *)(base + k->offset) = (int)u;
        else if (strcmp(key, "snapshot_seconds") == 0)
            *(uint32_t *)(base + k->offset) = (uint32_t)u;
        else
            *(uint64_t *)(base + k->offset) = u;
        return 0;
    case K_BOOL:
        if (!strcmp(value, "yes") || !strcmp(value, "true") || !strcmp(value, "1"))
            *(int *)(base + k->offset) = 1;
        else if (!strcmp(value, "no") || !strcmp(value, "false") || !strcmp(value, "0"))
            *(int *)(base + k->offset) = 0;
        else
            return sbert_util_errf(err, errlen, -1, "%s: \"%s\" is not yes or no", key, value);
        return 0;
    case K_LEVEL: {
        int l = sbertd_log_level_parse(value);
        if (l < 0)
            return sbert_util_errf(err, errlen, -1,
                                   "%s: \"%s\" is not error, warning, notice, info or debug", key,
                                   value);
        *(int *)(base + k->offset) = l;
        return 0;
    }
    case K_FRAC: {
        char *end;
        errno = 0;
        double v = strtod(value, &end);
        if (errno || end == value || *end || !(v >= 0 && v <= 1))
            return sbert_util_errf(err, errlen, -1, "%s: \"%s\" is not a number in 0..1", key,
                                   value);
        *(double *)(base + k->offset) = v;
        return 0;
    }
    case K_LISTEN:
        /* a file or flag list replaces the default: the first "listen" clears it */
        return sbert_util_errf(err, errlen, -1, "listen is handled by the caller");
    }
    return sbert_util_errf(err, errlen, -1, "%s: unhandled key type", key);
}

static int add_listen(struct sbertd_config *c, const char *url, int *replaced, char *err,
                      size_t errlen)
{
    if (!*replaced) {
        c->n_listen = 0;
        *replaced = 1;
    }
    if (c->n_listen >= SBERTD_MAX_LISTEN)
        return sbert_util_errf(err, errlen, -1, "at most %d listen URLs", SBERTD_MAX_LISTEN);
    if (strlen(url) >= sizeof c->listen[0])
        return sbert_util_errf(err, errlen, -1, "listen URL too long");
    if (strncmp(url, "ipc://", 6) != 0 && strncmp(url, "tcp://", 6) != 0)
        return sbert_util_errf(err, errlen, -1,
                               "listen \"%s\": only ipc:// and tcp:// are supported", url);
    snprintf(c->listen[c->n_listen++], sizeof c->listen[0], "%s", url);
    return 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

int sbertd_config_load_file(struct sbertd_config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) return sbert_util_errf(err, errlen, -1, "%s: %s", path, strerror(errno));
    char line[8192];
    int lineno = 0, listen_replaced = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *s = trim(line);
        if (*s == '\0' || *s == '#') continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = sbert_util_errf(err, errlen, -1, "%s:%d: expected \"key = value\"", path, lineno);
            break;
        }
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        char why[512];
        int r;
        if (strcmp(key, "listen") == 0)
            r = add_listen(c, value, &listen_replaced, why, sizeof why);
        else
            r = sbertd_config_set(c, key, value, why, sizeof why);
        if (r) {
            rc = sbert_util_errf(err, errlen, -1, "%s:%d: %s", path, lineno, why);
            break;
        }
    }
    if (!rc && ferror(f)) rc = sbert_util_errf(err, errlen, -1, "%s: read error", path);
    fclose(f);
    if (!rc) snprintf(c->config_file, sizeof c->config_file, "%s", path);
    return rc;
}

static const char usage[] =
    "Usage: sbertd [OPTION]...\n"
    "Semantic search daemon: Sentence-BERT embeddings, LMDB + FAISS store, nanomsg REQ/REP.\n"
    "\n"
    "  --config FILE     read settings from FILE (key = value lines); flags override it\n"
    "  --model DIR       sentence-transformers model directory\n"
    "                    (default ./models/all-MiniLM-L6-v2 when present, "
    "else " SBERTD_DEFAULT_MODEL_DIR ")\n"
    "  --data DIR        store directory (default $STATE_DIRECTORY, else ./var/data)\n"
    "  --listen URL      ipc://PATH or tcp://HOST:PORT, repeatable\n"
    "                    (default ipc://$RUNTIME_DIRECTORY/sbertd.sock, else "
    "ipc://./var/sbertd.sock)\n"
    "  --index SPEC      FAISS factory string, e.g. Flat, HNSW32,Flat, IVF1024,SQ8\n"
    "                    (default: the store's, Flat for a new store)\n"
    "  --threads N       request worker threads (default: 4 x CPU count, at least 16)\n"
    "  --log-level L     error, warning, notice, info (default) or debug\n"
    "  --set KEY=VALUE   any configuration key (see docs/sbertd.conf.example)\n"
    "  --help            show this help and exit\n"
    "  --version         show the version and exit\n"
    "\n"
    "Protocol: proto/PROTOCOL.md. Signals: SIGTERM/SIGINT stop cleanly, SIGHUP reloads the "
    "config.\n";

enum {
    O_CONFIG = 256,
    O_MODEL,
    O_DATA,
    O_LISTEN,
    O_INDEX,
    O_THREADS,
    O_LOG,
    O_SET,
    O_HELP,
    O_VERSION
};

static const struct option opts[] = {{"config", required_argument, 0, O_CONFIG},
                                     {"model", required_argument, 0, O_MODEL},
                                     {"data", required_argument, 0, O_DATA},
                                     {"listen", required_argument, 0, O_LISTEN},
                                     {"index", required_argument, 0, O_INDEX},
                                     {"threads", required_argument, 0, O_THREADS},
                                     {"log-level", required_argument, 0, O_LOG},
                                     {"set", required_argument, 0, O_SET},
                                     {"help", no_argument, 0, O_HELP},
                                     {"version", no_argument, 0, O_VERSION},
                                     {0, 0, 0, 0}};

/* The flags that set one key with their value. */
static const struct {
    int opt;
    const char *key;
} flag_keys[] = {
    {O_MODEL, "model"},     {O_DATA, "data"},     {O_INDEX, "index"},
    {O_THREADS, "threads"}, {O_LOG, "log_level"},
};

/* Pass 1 over argv: --config (*config_file), --help, --version and unknown options. Returns 0 to
 * go on, 1 when --help or --version was handled, -1 on a usage error. */
static int args_first_pass(int argc, char **argv, const char **config_file, char *err,
                           size_t errlen)
{
    opterr = 0;
    optind = 1;
    int o;
    while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        if (o == O_CONFIG)
            *config_file = optarg;
        else if (o == O_HELP) {
            fputs(usage, stdout);
            return 1;
        } else if (o == O_VERSION) {
            printf("sbertd %s (protocol %d, encoder %s)\n", SBERTD_VERSION, SBERT_PROTO_VERSION,
                   SBERT_VERSION);
            return 1;
        } else if (o == '?')
            return sbert_util_errf(err, errlen, -1, "unknown option \"%s\" (see --help)",
                                   argv[optind - 1]);
        else if (o == ':')
            return sbert_util_errf(err, errlen, -1, "option \"%s\" needs a value",
                                   argv[optind - 1]);
    }
    if (optind < argc)
        return sbert_util_errf(err, errlen, -1, "unexpected argument \"%s\" (see --help)",
                               argv[optind]);
    return 0;
}

/* --set KEY=VALUE (listen adds a URL as --listen does). Returns 0; -1 with why when the key or
 * value is refused; -2 with err when arg is not KEY=VALUE. */
static int set_flag(struct sbertd_config *c, const char *arg, int *listen_replaced, char *why,
                    size_t whylen, char *err, size_t errlen)
{
    char kv[8192];
    snprintf(kv, sizeof kv, "%s", arg);
    char *eq = strchr(kv, '=');
    if (!eq) return sbert_util_errf(err, errlen, -2, "--set needs KEY=VALUE, got \"%s\"", arg);
    *eq = '\0';
    if (strcmp(trim(kv), "listen") == 0)
        return add_listen(c, trim(eq + 1), listen_replaced, why, whylen);
    return sbertd_config_set(c, trim(kv), trim(eq + 1), why, whylen);
}

/* Pass 2 over argv: the flags, over the file. */
static int args_flags(struct sbertd_config *c, int argc, char **argv, char *err, size_t errlen)
{
    optind = 1;
    int listen_replaced = 0, o;
    char why[512];
    while ((o = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        int r = 0;
        for (size_t i = 0; i < sizeof flag_keys / sizeof flag_keys[0]; i++)
            if (o == flag_keys[i].opt)
                r = sbertd_config_set(c, flag_keys[i].key, optarg, why, sizeof why);
        if (o == O_LISTEN)
            r = add_listen(c, optarg, &listen_replaced, why, sizeof why);
        else if (o == O_SET)
            r = set_flag(c, optarg, &listen_replaced, why, sizeof why, err, errlen);
        if (r == -2) return -1;
        if (r) return sbert_util_errf(err, errlen, -1, "%s", why);
    }
    return 0;
}

/* systemd's LoadCredential=auth_token:FILE (systemd.exec(5)): the token from
 * $CREDENTIALS_DIRECTORY/auth_token when the configuration sets none, so the secret need not sit
 * in a configuration file. A trailing newline is not part of it. */
static int credential_token(struct sbertd_config *c, char *err, size_t errlen)
{
    const char *dir = getenv("CREDENTIALS_DIRECTORY");
    if (!dir || !*dir) return 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/auth_token", dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT) return 0;
        snprintf(err, errlen, "credential %s: %s", path, strerror(errno));
        return -1;
    }
    size_t n = fread(c->auth_token, 1, sizeof c->auth_token - 1, f);
    int more = fgetc(f) != EOF;
    fclose(f);
    c->auth_token[n] = '\0';
    while (n && (c->auth_token[n - 1] == '\n' || c->auth_token[n - 1] == '\r'))
        c->auth_token[--n] = '\0';
    if (more) {
        c->auth_token[0] = '\0';
        snprintf(err, errlen, "credential %s: longer than %zu bytes", path,
                 sizeof c->auth_token - 1);
        return -1;
    }
    return 0;
}

int sbertd_config_from_args(struct sbertd_config *c, int argc, char **argv, char *err,
                            size_t errlen)
{
    sbertd_config_defaults(c);
    const char *config_file = NULL;
    int rc = args_first_pass(argc, argv, &config_file, err, errlen);
    if (rc) return rc;
    if (config_file && sbertd_config_load_file(c, config_file, err, errlen)) return -1;
    if (args_flags(c, argc, argv, err, errlen)) return -1;
    if (c->max_inflight_bytes == 0) c->max_inflight_bytes = 4 * c->max_message_size;
    if (!c->auth_token[0] && credential_token(c, err, errlen)) return -1;
    return 0;
}

/* tcp://HOST:PORT with HOST a loopback address or "localhost". nanomsg's "iface;addr" and
 * wildcard forms are not loopback. */
static int tcp_is_loopback(const char *url)
{
    const char *h = url + 6;
    char host[256];
    const char *colon = strrchr(h, ':');
    if (!colon || strchr(h, ';')) return 0;
    size_t n = (size_t)(colon - h);
    if (n == 0 || n >= sizeof host) return 0;
    memcpy(host, h, n);
    host[n] = '\0';
    if (host[0] == '[' && host[n - 1] == ']') {
        memmove(host, host + 1, n - 2);
        host[n - 2] = '\0';
    }
    if (strcmp(host, "localhost") == 0) return 1;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1) return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}

int sbertd_config_check(const struct sbertd_config *c, char *err, size_t errlen)
{
    if (c->n_listen == 0) return sbert_util_errf(err, errlen, -1, "no listen URL");
    if (strcmp(c->precision, "fp32") != 0 && strcmp(c->precision, "int8") != 0)
        return sbert_util_errf(err, errlen, -1, "precision = %s: expected fp32 or int8",
                               c->precision);
    for (int i = 0; i < c->n_listen; i++)
        if (strncmp(c->listen[i], "tcp://", 6) == 0 && !c->allow_remote &&
            !tcp_is_loopback(c->listen[i]))
            return sbert_util_errf(
                err, errlen, -1,
                "refusing to listen on %s: not a loopback address (nanomsg has no TLS "
                "or authentication of its own); set allow_remote = yes to allow it",
                c->listen[i]);
    return 0;
}

void sbertd_config_dump(const struct sbertd_config *c, void (*line)(const char *, void *),
                        void *user)
{
    char buf[5000];
    const char *base = (const char *)c;
    for (size_t i = 0; i < N_KEYS; i++) {
        const struct key *k = &keys[i];
        switch (k->type) {
        case K_STR:
            snprintf(buf, sizeof buf, "%s = %s", k->name,
                     strcmp(k->name, "auth_token") == 0 ? (c->auth_token[0] ? "(set)" : "")
                                                        : base + k->offset);
            break;
        case K_INT:
        case K_BOOL:
            snprintf(buf, sizeof buf, "%s = %d", k->name, *(const int *)(base + k->offset));
            break;
        case K_U64:
            snprintf(buf, sizeof buf, "%s = %llu", k->name,
                     strcmp(k->name, "snapshot_seconds") == 0
                         ? (unsigned long long)*(const uint32_t *)(base + k->offset)
                         : (unsigned long long)*(const uint64_t *)(base + k->offset));
            break;
        case K_LEVEL:
            snprintf(buf, sizeof buf, "%s = %s", k->name,
                     sbertd_log_level_name(*(const int *)(base + k->offset)));
            break;
        case K_FRAC:
            snprintf(buf, sizeof buf, "%s = %g", k->name, *(const double *)(base + k->offset));
            break;
        case K_LISTEN:
            for (int j = 0; j < c->n_listen; j++) {
                snprintf(buf, sizeof buf, "listen = %s", c->listen[j]);
                line(buf, user);
            }
            continue;
        }
        line(buf, user);
    }
}
