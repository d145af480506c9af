/*
 * sbertctl — the command-line client of sbertd.
 *
 * Each subcommand is one row of the command table below (name, options, handler, default reply
 * timeout, help); the dispatcher, the option parser and --help all read that table. A command
 * is named after the op it sends, whose name, members and write flag come from proto/'s op table
 * (see "requests" below). A handler builds the request of proto/PROTOCOL.md, sends it through
 * conn.c, and prints the reply as an aligned table or, with --json, as one JSON document.
 *
 * Exit codes: 0 success, 1 the daemon replied with an error (or a local input file is bad),
 * 2 usage error, 3 sbertd cannot be reached (no socket, nothing listening, or no reply in time).
 */
#define _GNU_SOURCE
#include "conn.h"
#ifdef SBERTCTL_FILES
#include "files.h"
#include "notify.h"
#endif
#include "input.h"
#include "output.h"
#ifdef SBERTCTL_FILES
#include "restore.h"
#endif
#include "rotate.h"
#ifdef SBERTCTL_FILES
#include "sbert_index.h"
#include "watch.h"
#endif
#include "sbert_proto.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SBERTCTL_VERSION "0.1.0"

enum { EXIT_OK = 0, EXIT_REPLY = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

/* The endpoints tried when neither --socket nor SBERTD_SOCKET is given (see --help). */
#define CHECKOUT_SOCKET_PATH "./var/sbertd.sock"
#define SYSTEM_SOCKET_PATH "/run/sbertd/sbertd.sock"

/* Replies up to this size are accepted. nanomsg drops a larger message silently, so the limit
 * is set explicitly and well above anything the daemon sends (PROTOCOL.md). */
#define MAX_REPLY_BYTES (256u << 20)

/* add --file: documents per request and the request size they may reach, both well under the
 * daemon's default limits (PROTOCOL.md section 3), so that a batch is a short transaction. */
#define ADD_BATCH_DEFAULT 128
#define ADD_BATCH_MAX 1024
#define ADD_BATCH_BYTES (4u << 20)
_Static_assert(ADD_BATCH_MAX <= SBERT_PROTO_DEFAULT_MAX_BATCH, "batch over the daemon's limit");
_Static_assert(ADD_BATCH_BYTES * 2 <= SBERT_PROTO_DEFAULT_MAX_MESSAGE_SIZE, "batch too large");

/* add --file keeps this many batches in flight by default, each on its own connection, so the
 * daemon encodes one while it commits the one before and the next request is already there when
 * it is free (PROTOCOL.md: a REQ socket carries one request at a time). */
#define ADD_IN_FLIGHT_DEFAULT 2
#define ADD_IN_FLIGHT_MAX 8

/* A write that times out is re-sent this many times with the same req_id: the daemon answers a
 * repeated req_id from its reply cache instead of applying the write twice. */
#define WRITE_RETRIES 2

/* ---- options ------------------------------------------------------------------------------ */

struct opt {
    const char *lname; /* --lname */
    char sname;        /* -s, or 0 */
    const char *arg;   /* the value's name in help, NULL for a flag */
    const char *help;
};

#define MAX_OPTS 16

struct args {
    const char *val[MAX_OPTS]; /* per command option: its value, or "" for a set flag */
    char **pos;
    int n_pos;
};

struct ctx;
typedef int (*cmd_fn)(struct ctx *, const struct args *);

struct command {
    enum sbert_proto_op_id op; /* the op it sends, which names the command too */
    const char *usage;         /* after "sbertctl NAME " */
    const char *summary;
    const char *help;       /* more detail, may be NULL */
    const struct opt *opts; /* NULL-terminated by lname */
    int min_pos, max_pos;   /* positional arguments; max -1: unbounded */
    double timeout_s;       /* default reply timeout */
    cmd_fn run;
    const char *name; /* a command that sends several ops (index): its own name; NULL: op's */
};

/* Options every subcommand takes. Indices are fixed: see parse_common(). */
static const struct opt common_opts[] = {
    {"socket", 0, "URL", "sbertd endpoint (default: $SBERTD_SOCKET, else see sbertctl --help)"},
    {"token", 0, "TOKEN", "auth token (default: $SBERTD_TOKEN)"},
    {"timeout", 0, "SECONDS", "reply timeout (default per subcommand)"},
    {"json", 0, NULL, "print one JSON document instead of a table"},
    {"collection", 'c', "NAME",
     "the collection a document command uses (default: $SBERTD_COLLECTION, else \"default\")"},
    {"help", 'h', NULL, "show this help"},
    {NULL, 0, NULL, NULL},
};
enum { CO_SOCKET, CO_TOKEN, CO_TIMEOUT, CO_JSON, CO_COLLECTION, CO_HELP, N_COMMON };

struct ctx {
    const struct command *cmd;
    enum sbert_proto_op_id op; /* the op of the requests made now: the command's, unless it
                                  sends several */
    char url[PATH_MAX + 16];
    const char *token;
    const char *collection; /* -c: sent with every op that takes "collection"; NULL: none */
    double timeout_s;
    int json;
    sbc_conn *conn;
    unsigned long long req_counter;
    char req_prefix[24];
    /* The request holds JSON the user wrote (--filter): its type is the daemon's to judge
     * (bad_filter), so call() checks only the names against the op table. */
    int user_json;
    /* query --file: a too_large reply is not printed, for the caller sends the batch again in
     * halves; last_error is the code of the last error reply (0: none). */
    int quiet_too_large;
    int last_error;
};

static const struct sbert_proto_op *op_of(enum sbert_proto_op_id id)
{
    return &sbert_proto_ops(NULL)[id];
}

static const char *cmd_name(const struct command *cmd)
{
    return cmd->name ? cmd->name : op_of(cmd->op)->name;
}

/* ---- messages ----------------------------------------------------------------------------- */

static void errmsg(const char *fmt, ...)
{
    va_list ap;
    fputs("sbertctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int usage_error(const struct command *cmd, const char *fmt, ...)
{
    va_list ap;
    fputs("sbertctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (cmd)
        fprintf(stderr, "\nusage: sbertctl %s %s\n(sbertctl %s --help for more)\n", cmd_name(cmd),
                cmd->usage, cmd_name(cmd));
    else
        fputs("\n(sbertctl --help for more)\n", stderr);
    return EXIT_USAGE;
}

/* ---- requests ----------------------------------------------------------------------------- */

/* A request id unique to this process and call, so the daemon can tell a re-sent write from a
 * new one. */
static void next_req_id(struct ctx *c, char *buf, size_t len)
{
    if (!c->req_prefix[0]) {
        unsigned long long r = 0;
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || read(fd, &r, sizeof r) != (ssize_t)sizeof r) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            r = (unsigned long long)ts.tv_nsec ^ ((unsigned long long)ts.tv_sec << 20) ^
                (unsigned long long)getpid();
        }
        if (fd >= 0) close(fd);
        snprintf(c->req_prefix, sizeof c->req_prefix, "%016llx", r);
    }
    snprintf(buf, len, "%s-%llu", c->req_prefix, ++c->req_counter);
}

/*
 * Requests follow proto/'s op table (PROTOCOL.md section 4): request_new() starts the request of
 * the command's op, with a fresh req_id when the table says the op writes; req_set() adds a
 * member the op defines; call() checks the finished request against the table
 * (sbert_proto_op_check_request) before it is sent, so a builder that drifts from the protocol
 * fails here with an internal error, not at the daemon with bad_request. NULL when out of memory.
 */
static cJSON *request_new(struct ctx *c)
{
    const struct sbert_proto_op *op = op_of(c->op);
    char req_id[64];
    if (op->writes) next_req_id(c, req_id, sizeof req_id);
    cJSON *req = sbert_proto_request_new(op->name, op->writes ? req_id : NULL, c->token);
    /* every op of a collection names it; the others (encode, stats, ...) have no collection */
    if (req && c->collection && sbert_proto_op_member(op, "collection") &&
        !cJSON_AddStringToObject(req, "collection", c->collection)) {
        cJSON_Delete(req);
        return NULL;
    }
    return req;
}

/* Adds item (taken) to req (may be NULL) as the op's member name and returns it, or NULL when
 * out of memory. The name is taken from the op's descriptor; one the op does not define is added
 * as given, for call() to refuse with its name. */
static cJSON *req_set(const struct ctx *c, cJSON *req, const char *name, cJSON *item)
{
    const struct sbert_proto_member *m = sbert_proto_op_member(op_of(c->op), name);
    if (!req || !item || !cJSON_AddItemToObject(req, m ? m->name : name, item)) {
        cJSON_Delete(item);
        return NULL;
    }
    return item;
}

static int print_json(const cJSON *doc);

static int connect_daemon(struct ctx *c)
{
    if (c->conn) return 0;
    char err[512] = "";
    int r = sbc_conn_open(c->url, (int)(c->timeout_s * 1000), MAX_REPLY_BYTES, &c->conn, err,
                          sizeof err);
    if (r == 0) return 0;
    errmsg("%s", err[0] ? err : sbc_conn_strerror(r));
    return r == SBC_CONN_EINVAL ? EXIT_USAGE : EXIT_UNREACHABLE;
}

/* Sends text and waits for the raw reply, re-sending on a timeout up to retries times. Returns
 * EXIT_OK with *raw (free()) or the exit code, printed. */
static int send_recv(struct ctx *c, const char *text, int retries, char **raw, size_t *raw_len)
{
    for (int attempt = 0;; attempt++) {
        int rc = connect_daemon(c);
        if (rc != EXIT_OK) return rc;
        char err[512] = "";
        int r = sbc_conn_call(c->conn, text, strlen(text), raw, raw_len, err, sizeof err);
        if (r == 0) return EXIT_OK;
        if (r == SBC_CONN_ETIMEOUT && attempt < retries) {
            /* A fresh socket: the old one may still deliver the stale reply. */
            sbc_conn_close(c->conn);
            c->conn = NULL;
            errmsg("%s; retrying (%d of %d)", err, attempt + 1, retries);
            continue;
        }
        errmsg("%s", err[0] ? err : sbc_conn_strerror(r));
        return r == SBC_CONN_ENOMEM ? EXIT_REPLY : EXIT_UNREACHABLE;
    }
}

/* How often, and after how long a first pause (doubling), a "busy" reply is retried: the
 * daemon executed nothing, so any request may be sent again. */
#define BUSY_RETRIES 5
#define BUSY_FIRST_PAUSE_MS 100

/*
 * Sends req (consumed) and parses the reply. Returns EXIT_OK with *reply owned by the caller
 * when the daemon answered {"ok":true}; otherwise prints the reason and returns the exit code.
 * A write (by the op table) that carries a req_id is re-sent on a timeout, up to WRITE_RETRIES
 * times: the daemon applies it once.
 */
static int call(struct ctx *c, cJSON *req, cJSON **reply)
{
    *reply = NULL;
    const struct sbert_proto_op *op = NULL;
    struct sbert_proto_error perr;
    if (req &&
        sbert_proto_op_check_request(req, c->user_json ? 0 : SBERT_PROTO_CHECK_TYPES, &op, &perr)) {
        errmsg("%s: internal error: the request does not follow PROTOCOL.md: %s", cmd_name(c->cmd),
               perr.message);
        cJSON_Delete(req);
        return EXIT_REPLY;
    }
    int retries =
        op && op->writes && cJSON_GetObjectItemCaseSensitive(req, "req_id") ? WRITE_RETRIES : 0;
    char *text = NULL;
    size_t text_len;
    int r = req ? sbert_proto_print(req, &text, &text_len) : SBERT_PROTO_EINTERNAL;
    cJSON_Delete(req);
    if (r < 0) {
        errmsg("out of memory");
        return EXIT_REPLY;
    }
    cJSON *rep = NULL;
    int rc = EXIT_OK;
    for (int busy = 0;; busy++) {
        char *raw;
        size_t raw_len;
        if ((rc = send_recv(c, text, retries, &raw, &raw_len)) != EXIT_OK) break;
        struct sbert_proto_error err;
        r = sbert_proto_reply_parse(raw, raw_len, &rep, &err);
        free(raw);
        if (r == 0) break;
        if (!rep) {
            errmsg("%s: not a protocol v%d reply (is this endpoint sbertd?)", c->url,
                   SBERT_PROTO_VERSION);
            rc = EXIT_REPLY;
            break;
        }
        c->last_error = r;
        if (r == SBERT_PROTO_ETOO_LARGE && c->quiet_too_large) {
            rc = EXIT_REPLY;
            break;
        }
        if (r == SBERT_PROTO_EBUSY && busy < BUSY_RETRIES) {
            struct timespec ts = {0, (long)BUSY_FIRST_PAUSE_MS * 1000000L << busy};
            ts.tv_sec = ts.tv_nsec / 1000000000L;
            ts.tv_nsec %= 1000000000L;
            nanosleep(&ts, NULL);
            cJSON_Delete(rep);
            rep = NULL;
            continue;
        }
        if (c->json) print_json(rep);
        errmsg("%s: %s: %s", cmd_name(c->cmd), err.code_name, err.message);
        rc = EXIT_REPLY;
        break;
    }
    free(text);
    if (rc != EXIT_OK) {
        cJSON_Delete(rep);
        return rc;
    }
    *reply = rep;
    return EXIT_OK;
}

/* The reply's member name, which must have type check (cJSON_Is*); prints and returns NULL if
 * it is missing or of another type. */
static const cJSON *member(const struct ctx *c, const cJSON *obj, const char *name,
                           cJSON_bool (*check)(const cJSON *))
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!m || !check(m)) {
        errmsg("%s: malformed reply from %s: \"%s\" missing or of the wrong type", cmd_name(c->cmd),
               c->url, name);
        return NULL;
    }
    return m;
}

/* Sends req (taken, as by call()) and finds the reply's member name, of the type check accepts
 * and, for an array when want >= 0, of want items. On EXIT_OK *reply is the reply (the caller
 * deletes it) and *m points into it; otherwise the error is printed and *reply is NULL. */
static int call_member(struct ctx *c, cJSON *req, const char *name,
                       cJSON_bool (*check)(const cJSON *), int want, cJSON **reply, const cJSON **m)
{
    int rc = call(c, req, reply);
    if (rc != EXIT_OK) return rc;
    *m = member(c, *reply, name, check);
    if (*m && want >= 0 && cJSON_GetArraySize(*m) != want) {
        errmsg("%s: the reply has %d %s for %d requested", cmd_name(c->cmd), cJSON_GetArraySize(*m),
               name, want);
        *m = NULL;
    }
    if (!*m) {
        cJSON_Delete(*reply);
        *reply = NULL;
        return EXIT_REPLY;
    }
    return EXIT_OK;
}

/* ---- printing ----------------------------------------------------------------------------- */

static int print_json(const cJSON *doc)
{
    char *s = cJSON_PrintUnformatted(doc);
    if (!s) {
        errmsg("out of memory");
        return EXIT_REPLY;
    }
    puts(s);
    free(s);
    return EXIT_OK;
}

static void fmt_score(char *buf, size_t len, double s)
{
    snprintf(buf, len, "%.4f", s);
}

/* Metadata as compact JSON for a table cell; "" when absent. Caller frees. */
static char *meta_cell(const cJSON *m)
{
    if (!m || cJSON_IsNull(m)) return strdup("");
    return cJSON_PrintUnformatted(m);
}

static int print_table(sbc_table *t)
{
    int r = sbc_table_print(t, stdout, sbc_terminal_width(stdout));
    sbc_table_free(t);
    if (r < 0) {
        errmsg("writing the output: %s", sbc_out_strerror(r));
        return EXIT_REPLY;
    }
    return EXIT_OK;
}

static const char *str_or(const cJSON *obj, const char *name, const char *dflt)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(m) ? m->valuestring : dflt;
}

/* An id as text: ids are strings on the wire, but print an integer id too if one comes. */
static const char *id_text(const cJSON *id, char *buf, size_t len)
{
    if (cJSON_IsString(id)) return id->valuestring;
    if (cJSON_IsNumber(id)) {
        snprintf(buf, len, "%.0f", id->valuedouble);
        return buf;
    }
    return "";
}

/* ---- number parsing ----------------------------------------------------------------------- */

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

/* ---- add ---------------------------------------------------------------------------------- */

struct add_state {
    cJSON *ids; /* every id, in input order, for --json */
    long n_done;
    long n_truncated;
    long n_encoded, n_cached; /* the replies' "encoded" and "cached" (the embedding cache) */
    sbc_table *table;         /* add TEXT...: id and text per row */
};

/* An add request for docs (taken): a fresh req_id, so that a re-send is recognised. NULL when
 * out of memory (printed). */
static cJSON *add_request(struct ctx *c, cJSON *docs)
{
    cJSON *req = request_new(c);
    if (!req_set(c, req, "documents", docs)) {
        cJSON_Delete(req);
        errmsg("out of memory");
        return NULL;
    }
    return req;
}

/* Counts an add's reply (consumed; ids is its "ids" member, checked to hold n_docs items) into
 * st: the ids go after those of the batches before it. */
static void add_count(struct add_state *st, cJSON *rep, const cJSON *ids, int n_docs)
{
    const cJSON *id;
    cJSON_ArrayForEach(id, ids) cJSON_AddItemToArray(st->ids, cJSON_Duplicate(id, 1));
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(rep, "truncated");
    if (cJSON_IsArray(tr)) st->n_truncated += cJSON_GetArraySize(tr);
    const cJSON *enc = cJSON_GetObjectItemCaseSensitive(rep, "encoded");
    const cJSON *cached = cJSON_GetObjectItemCaseSensitive(rep, "cached");
    /* a daemon without the cache's counts encoded every text */
    st->n_encoded += cJSON_IsNumber(enc) ? (long)enc->valuedouble : n_docs;
    st->n_cached += cJSON_IsNumber(cached) ? (long)cached->valuedouble : 0;
    st->n_done += n_docs;
    cJSON_Delete(rep);
}

/* Sends one batch (docs array, consumed) and waits for it. Appends the reply's ids to st. */
static int add_batch(struct ctx *c, cJSON *docs, struct add_state *st)
{
    int n_docs = docs ? cJSON_GetArraySize(docs) : 0;
    cJSON *req = add_request(c, docs);
    if (!req) return EXIT_REPLY;
    cJSON *rep;
    const cJSON *ids;
    int rc = call_member(c, req, "ids", cJSON_IsArray, n_docs, &rep, &ids);
    if (rc != EXIT_OK) return rc;
    add_count(st, rep, ids, n_docs);
    return EXIT_OK;
}

/*
 * add --file's batches in flight. Batch k travels on lane k % n, each lane a thread with its own
 * connection for the time of one call, and replies are taken in batch order, so the ids come out
 * in input order whatever order the replies arrive in. The daemon commits writes in the order it
 * receives them, which across connections need not be the order they were sent: so a batch that
 * names an id also named by a batch still in flight waits for that batch's reply first, and the
 * last line with an id stays the one stored.
 */
struct add_lane {
    struct ctx ctx; /* a copy of the command's context with this lane's connection */
    pthread_t thread;
    cJSON *req; /* taken by the call */
    int n_docs;
    long first; /* the batch's first document, counted from 1 in the input */
    char **ids; /* the batch's given ids, sorted (strcmp), for the overlap check */
    size_t n_ids;
    int rc; /* the call's outcome, valid after the join */
    cJSON *reply;
    const cJSON *reply_ids;
};

struct add_pipe {
    struct add_lane lane[ADD_IN_FLIGHT_MAX];
    int n;           /* lanes */
    long sent, done; /* batches sent and batches whose reply was taken */
    int rc;          /* the first failure, or EXIT_OK */
};

static void *add_lane_main(void *arg)
{
    struct add_lane *l = arg;
    l->rc = call_member(&l->ctx, l->req, "ids", cJSON_IsArray, l->n_docs, &l->reply, &l->reply_ids);
    l->req = NULL;
    return NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_ids(char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

/* Takes the reply of the oldest batch in flight into st. */
static void add_pipe_take(struct add_pipe *p, struct add_state *st)
{
    struct add_lane *l = &p->lane[p->done++ % p->n];
    pthread_join(l->thread, NULL);
    if (l->rc == EXIT_OK)
        add_count(st, l->reply, l->reply_ids, l->n_docs);
    else {
        errmsg("the batch of documents %ld to %ld failed", l->first, l->first + l->n_docs - 1);
        if (p->rc == EXIT_OK) p->rc = l->rc;
    }
    l->reply = NULL;
    free_ids(l->ids, l->n_ids);
    l->ids = NULL;
    l->n_ids = 0;
}

/* Whether the batch in flight on l names one of ids[0..n). */
static int add_lane_overlaps(const struct add_lane *l, char *const *ids, size_t n)
{
    for (size_t i = 0; i < n && l->n_ids; i++)
        if (bsearch(&ids[i], l->ids, l->n_ids, sizeof *l->ids, cmp_str)) return 1;
    return 0;
}

/* Sends docs (consumed; ids, its given ids, taken too) as the next batch, first taking the
 * replies it must wait for. Returns p->rc: once a batch has failed nothing more is sent. */
static int add_pipe_send(struct add_pipe *p, struct ctx *c, cJSON *docs, char **ids, size_t n_ids,
                         long first, struct add_state *st)
{
    qsort(ids, n_ids, sizeof *ids, cmp_str);
    while (p->sent - p->done >= p->n)
        add_pipe_take(p, st);
    for (long b = p->sent - 1; b >= p->done; b--)
        if (add_lane_overlaps(&p->lane[b % p->n], ids, n_ids)) {
            while (p->done <= b)
                add_pipe_take(p, st);
            break;
        }
    if (p->rc != EXIT_OK) {
        cJSON_Delete(docs);
        free_ids(ids, n_ids);
        return p->rc;
    }
    struct add_lane *l = &p->lane[p->sent % p->n];
    l->n_docs = docs ? cJSON_GetArraySize(docs) : 0;
    l->req = add_request(c, docs);
    l->first = first;
    l->ids = ids;
    l->n_ids = n_ids;
    if (!l->req || pthread_create(&l->thread, NULL, add_lane_main, l)) {
        if (l->req) errmsg("cannot start a thread");
        cJSON_Delete(l->req);
        l->req = NULL;
        free_ids(ids, n_ids);
        l->ids = NULL;
        l->n_ids = 0;
        return p->rc = EXIT_REPLY;
    }
    p->sent++;
    return EXIT_OK;
}

/* One document of an add request. jsonl's integer ids travel as their decimal text, which the
 * daemon treats the same (PROTOCOL.md: ids are strings). */
static cJSON *doc_json(const char *id, const char *text, size_t text_len, const char *metadata_json)
{
    cJSON *d = cJSON_CreateObject();
    if (!d) return NULL;
    if (id) cJSON_AddStringToObject(d, "id", id);
    char *t = strndup(text, text_len);
    if (!t) {
        cJSON_Delete(d);
        return NULL;
    }
    cJSON_AddStringToObject(d, "text", t);
    free(t);
    if (metadata_json) {
        cJSON *m = cJSON_Parse(metadata_json);
        if (!m) {
            cJSON_Delete(d);
            return NULL;
        }
        cJSON_AddItemToObject(d, "metadata", m);
    }
    return d;
}

static const struct opt add_opts[] = {
    {"file", 'f', "FILE", "read documents from FILE (\"-\": standard input)"},
    {"format", 0, "FMT", "txt | jsonl | csv (default: by FILE's extension, else txt)"},
    {"text-column", 0, "COL", "csv: the column holding the text (header name or 1-based number)"},
    {"id-column", 0, "COL", "csv: the column holding the id (default: the daemon assigns ids)"},
    {"batch", 0, "N", "documents per request (default 128, at most 1024)"},
    {"metadata", 'm', "JSON", "add TEXT...: a metadata object given to every text"},
    {"no-progress", 0, NULL, "no progress bar, even on a terminal"},
    {"in-flight", 0, "N", "--file: batches sent ahead of the replies (default 2, at most 8)"},
    {NULL, 0, NULL, NULL},
};
enum {
    ADD_FILE,
    ADD_FORMAT,
    ADD_TEXTCOL,
    ADD_IDCOL,
    ADD_BATCH,
    ADD_META,
    ADD_NOPROGRESS,
    ADD_INFLIGHT
};

static int cmd_add_texts(struct ctx *c, const struct args *a, struct add_state *st)
{
    if (a->val[ADD_META]) {
        cJSON *m = cJSON_Parse(a->val[ADD_META]);
        int is_obj = cJSON_IsObject(m);
        cJSON_Delete(m);
        if (!is_obj)
            return usage_error(c->cmd, "--metadata: not a JSON object: %s", a->val[ADD_META]);
    }
    cJSON *docs = cJSON_CreateArray();
    for (int i = 0; i < a->n_pos; i++) {
        cJSON *d = doc_json(NULL, a->pos[i], strlen(a->pos[i]), a->val[ADD_META]);
        if (!d || !docs) {
            cJSON_Delete(d);
            cJSON_Delete(docs);
            errmsg("out of memory");
            return EXIT_REPLY;
        }
        cJSON_AddItemToArray(docs, d);
    }
    int rc = add_batch(c, docs, st);
    if (rc != EXIT_OK || c->json) return rc;
    struct sbc_column cols[] = {{"ID", 0}, {"TEXT", SBC_COL_SHRINK}};
    if (sbc_table_create(cols, 2, &st->table) < 0) {
        errmsg("out of memory");
        return EXIT_REPLY;
    }
    for (int i = 0; i < a->n_pos; i++) {
        char nb[32];
        const char *row[2] = {id_text(cJSON_GetArrayItem(st->ids, i), nb, sizeof nb), a->pos[i]};
        sbc_table_add_row(st->table, row);
    }
    return EXIT_OK;
}

static int cmd_add_file(struct ctx *c, const struct args *a, struct add_state *st)
{
    const char *path = a->val[ADD_FILE];
    enum sbc_input_format fmt = sbc_input_format_guess(path);
    if (a->val[ADD_FORMAT] && sbc_input_format_parse(a->val[ADD_FORMAT], &fmt) < 0)
        return usage_error(c->cmd, "--format: expected txt, jsonl or csv, not \"%s\"",
                           a->val[ADD_FORMAT]);
    if (fmt == SBC_FORMAT_CSV && !a->val[ADD_TEXTCOL])
        return usage_error(c->cmd, "csv input needs --text-column");
    if (fmt != SBC_FORMAT_CSV && (a->val[ADD_TEXTCOL] || a->val[ADD_IDCOL]))
        return usage_error(c->cmd, "--text-column and --id-column are for csv input");
    if (a->val[ADD_META])
        return usage_error(c->cmd, "--metadata is for add TEXT...; files carry their own");
    long batch = ADD_BATCH_DEFAULT;
    if (a->val[ADD_BATCH] && parse_int(a->val[ADD_BATCH], 1, ADD_BATCH_MAX, &batch) < 0)
        return usage_error(c->cmd, "--batch: expected 1..%d", ADD_BATCH_MAX);
    long in_flight = ADD_IN_FLIGHT_DEFAULT;
    if (a->val[ADD_INFLIGHT] &&
        parse_int(a->val[ADD_INFLIGHT], 1, ADD_IN_FLIGHT_MAX, &in_flight) < 0)
        return usage_error(c->cmd, "--in-flight: expected 1..%d", ADD_IN_FLIGHT_MAX);

    char err[512];
    sbc_input *in;
    int r = sbc_input_open(path, fmt, a->val[ADD_TEXTCOL], a->val[ADD_IDCOL], &in, err, sizeof err);
    if (r < 0) {
        errmsg("%s", err[0] ? err : sbc_input_strerror(r));
        return EXIT_REPLY;
    }
    /* Connect before reading: an unreachable daemon is reported before a long count. */
    int rc = connect_daemon(c);
    if (rc != EXIT_OK) {
        sbc_input_close(in);
        return rc;
    }
    sbc_progress *bar = NULL;
    if (!a->val[ADD_NOPROGRESS] && isatty(STDERR_FILENO)) {
        long total = sbc_input_count(path, fmt, a->val[ADD_TEXTCOL], a->val[ADD_IDCOL]);
        sbc_progress_create(stderr, total, "docs", &bar);
    }
    struct add_pipe pipe = {.n = (int)in_flight};
    for (int i = 0; i < pipe.n; i++) {
        pipe.lane[i].ctx = *c;
        pipe.lane[i].ctx.conn = NULL; /* connected by the lane's first call */
    }
    pipe.lane[0].ctx.conn = c->conn;
    c->conn = NULL;
    cJSON *docs = NULL;
    char **ids = NULL; /* the given ids of docs */
    size_t n_ids = 0, bytes = 0;
    long n_read = 0, first = 1;
    int input_failed = 0;
    struct sbc_doc doc;
    for (;;) {
        r = sbc_input_next(in, &doc, err, sizeof err);
        if (r < 0) {
            input_failed = 1;
            break;
        }
        if (r == 1) {
            if (!docs && (!(docs = cJSON_CreateArray()) || !(ids = malloc(batch * sizeof *ids)))) {
                errmsg("out of memory");
                rc = EXIT_REPLY;
                break;
            }
            cJSON *d = doc_json(doc.id, doc.text, doc.text_len, doc.metadata_json);
            char *id = doc.id ? strdup(doc.id) : NULL;
            if (!d || (doc.id && !id)) {
                cJSON_Delete(d);
                free(id);
                errmsg("out of memory");
                rc = EXIT_REPLY;
                break;
            }
            cJSON_AddItemToArray(docs, d);
            if (id) ids[n_ids++] = id;
            n_read++;
            bytes += doc.text_len + (doc.metadata_json ? strlen(doc.metadata_json) : 0) +
                     (doc.id ? strlen(doc.id) : 0) + 32;
        }
        if (docs && (r == 0 || cJSON_GetArraySize(docs) >= batch || bytes >= ADD_BATCH_BYTES)) {
            rc = add_pipe_send(&pipe, c, docs, ids, n_ids, first, st);
            first = n_read + 1;
            docs = NULL;
            ids = NULL;
            n_ids = 0;
            bytes = 0;
            sbc_progress_update(bar, st->n_done);
            if (rc != EXIT_OK) break;
        }
        if (r == 0) break;
    }
    while (pipe.done < pipe.sent)
        add_pipe_take(&pipe, st);
    sbc_progress_update(bar, st->n_done);
    sbc_progress_finish(bar);
    if (input_failed) {
        errmsg("%s (%ld documents were added before it)", err, st->n_done);
        rc = EXIT_REPLY;
    } else if (pipe.rc != EXIT_OK) {
        rc = pipe.rc;
        if (st->n_done) errmsg("%ld documents were added", st->n_done);
    }
    c->conn = pipe.lane[0].ctx.conn;
    for (int i = 1; i < pipe.n; i++)
        sbc_conn_close(pipe.lane[i].ctx.conn);
    cJSON_Delete(docs);
    free_ids(ids, n_ids);
    sbc_input_close(in);
    return rc;
}

static int cmd_add(struct ctx *c, const struct args *a)
{
    if (!a->val[ADD_FILE] && a->n_pos == 0)
        return usage_error(c->cmd, "give TEXT... or --file FILE");
    if (a->val[ADD_FILE] && a->n_pos > 0)
        return usage_error(c->cmd, "give TEXT... or --file FILE, not both");
    struct add_state st = {.ids = cJSON_CreateArray()};
    if (!st.ids) {
        errmsg("out of memory");
        return EXIT_REPLY;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = a->val[ADD_FILE] ? cmd_add_file(c, a, &st) : cmd_add_texts(c, a, &st);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (st.n_truncated)
        fprintf(stderr,
                "sbertctl: note: %ld text(s) exceeded the model's max_seq_length and were "
                "encoded from their first tokens only\n",
                st.n_truncated);
    if (rc == EXIT_OK) {
        if (c->json) {
            cJSON *out = cJSON_CreateObject();
            cJSON_AddItemToObject(out, "ids", st.ids);
            st.ids = NULL;
            rc = print_json(out);
            cJSON_Delete(out);
        } else if (st.table) {
            rc = print_table(st.table);
            st.table = NULL;
        } else {
            double el = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
            printf("added %ld document%s in %.1f s (%.0f docs/s)\n", st.n_done,
                   st.n_done == 1 ? "" : "s", el, el > 0 ? (double)st.n_done / el : 0.0);
        }
    }
    sbc_table_free(st.table);
    cJSON_Delete(st.ids);
    return rc;
}

/* A number member of the daemon's stats limits, or fallback. */
static double stats_limit(const cJSON *stats, const char *name, double fallback)
{
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(stats, "limits");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(l, name);
    return cJSON_IsNumber(v) && v->valuedouble > 0 ? v->valuedouble : fallback;
}

/* ---- query -------------------------------------------------------------------------------- */

static const struct opt query_opts[] = {
    {"k", 'k', "N", "number of results (default 10)"},
    {"filter", 0, "JSON", "metadata filter (see PROTOCOL.md), e.g. '{\"lang\":\"en\"}'"},
    {"min-score", 0, "S", "only results with cosine similarity >= S"},
    {"file", 'f', "FILE", "one query text a line (\"-\": standard input), sent in batches"},
    {"mode", 'm', "MODE", "dense (the vectors, default), keyword (BM25) or hybrid (both, fused)"},
    {"fusion", 0, "F", "hybrid: rrf (reciprocal rank, default) or weighted"},
    {"weight", 0, "W", "weighted fusion: the dense side's weight, 0..1 (default 0.5)"},
    {"diversity", 0, "D", "0..1: pick results by maximal marginal relevance (0: off)"},
    {NULL, 0, NULL, NULL},
};
enum { Q_K, Q_FILTER, Q_MINSCORE, Q_FILE, Q_MODE, Q_FUSION, Q_WEIGHT, Q_DIVERSITY };

/* query --file: the texts of one request take at most about this many bytes. The encoding work
 * grows with them: 4096 sentences fit, while a batch of long passages (~256 of 1 KB, a few
 * seconds to encode) stays well within the default reply timeout. */
#define QUERY_BATCH_BYTES (256u << 10)

/* What every query request of the command asks besides its texts. */
struct query_args {
    long k;
    double min_score;
    int has_min_score;
    cJSON *filter;             /* owned; NULL: none */
    const char *mode, *fusion; /* NULL: the daemon's default */
    double weight, diversity;
    int has_weight, has_diversity;
};

/* A query request for item (taken) as member "text" or "texts", with the command's k, filter,
 * min_score and include; NULL when out of memory. */
static cJSON *query_request(struct ctx *c, const struct query_args *q, const char *member,
                            cJSON *item)
{
    cJSON *req = request_new(c);
    req_set(c, req, member, item);
    req_set(c, req, "k", cJSON_CreateNumber((double)q->k));
    if (q->filter) {
        c->user_json = 1;
        req_set(c, req, "filter", cJSON_Duplicate(q->filter, 1));
    }
    if (q->has_min_score) req_set(c, req, "min_score", cJSON_CreateNumber(q->min_score));
    if (q->mode) req_set(c, req, "mode", cJSON_CreateString(q->mode));
    if (q->fusion) req_set(c, req, "fusion", cJSON_CreateString(q->fusion));
    if (q->has_weight) req_set(c, req, "weight", cJSON_CreateNumber(q->weight));
    if (q->has_diversity) req_set(c, req, "diversity", cJSON_CreateNumber(q->diversity));
    cJSON *inc = req_set(c, req, "include", cJSON_CreateArray());
    cJSON_AddItemToArray(inc, cJSON_CreateString("text"));
    cJSON_AddItemToArray(inc, cJSON_CreateString("metadata"));
    if (inc) return req;
    cJSON_Delete(req);
    return NULL;
}

/* Prints one query's results: --json one line {"query"?,"results":[...]} (query: its text, for
 * --file), else a table, after a header line naming the query when text is given (--file: its
 * number n and line). */
/* The TEXT cell of a hit: the passage that matched when it is part of a longer document (the
 * document's text would hide it), else the text. */
static const char *hit_text(const cJSON *r)
{
    const char *text = str_or(r, "text", NULL);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(r, "passage");
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(p, "start");
    const cJSON *pe = cJSON_GetObjectItemCaseSensitive(p, "end");
    const char *pt = str_or(p, "text", NULL);
    if (pt && cJSON_IsNumber(ps) && cJSON_IsNumber(pe) &&
        (!text || ps->valuedouble > 0 || pe->valuedouble < (double)strlen(text)))
        return pt;
    return text ? text : "";
}

static int query_print(struct ctx *c, const cJSON *results, const char *text, long n, long line)
{
    if (c->json) {
        cJSON *out = cJSON_CreateObject();
        if (text) cJSON_AddStringToObject(out, "query", text);
        cJSON *arr = cJSON_AddArrayToObject(out, "results");
        const cJSON *r;
        cJSON_ArrayForEach(r, results)
        {
            cJSON *o = cJSON_CreateObject();
            const cJSON *f;
            /* dense_score .. keyword_rank only in keyword and hybrid mode, passage in the
             * others */
            static const char *const keys[] = {
                "id",         "score",        "text",    "metadata", "dense_score", "keyword_score",
                "dense_rank", "keyword_rank", "passage", "passages"};
            for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
                if ((f = cJSON_GetObjectItemCaseSensitive(r, keys[i])))
                    cJSON_AddItemToObject(o, keys[i], cJSON_Duplicate(f, 1));
                else if (i >= 2 && i < 4)
                    cJSON_AddItemToObject(o, keys[i], cJSON_CreateNull());
            cJSON_AddItemToArray(arr, o);
        }
        int rc = print_json(out);
        cJSON_Delete(out);
        return rc;
    }
    if (text) printf("%squery %ld (line %ld): %s\n", n > 1 ? "\n" : "", n, line, text);
    /* The METADATA column only when some result has metadata. */
    size_t n_cols = 3;
    const cJSON *r;
    cJSON_ArrayForEach(r, results)
    {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(r, "metadata");
        if (m && !cJSON_IsNull(m)) n_cols = 4;
    }
    struct sbc_column cols[] = {{"SCORE", SBC_COL_RIGHT},
                                {"ID", 0},
                                {"TEXT", SBC_COL_SHRINK},
                                {"METADATA", SBC_COL_SHRINK}};
    sbc_table *t;
    if (sbc_table_create(cols, n_cols, &t) < 0) {
        errmsg("out of memory");
        return EXIT_REPLY;
    }
    cJSON_ArrayForEach(r, results)
    {
        char sc[32], nb[32];
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(r, "score");
        fmt_score(sc, sizeof sc, cJSON_IsNumber(s) ? s->valuedouble : NAN);
        char *meta = meta_cell(cJSON_GetObjectItemCaseSensitive(r, "metadata"));
        const char *row[4] = {sc, id_text(cJSON_GetObjectItemCaseSensitive(r, "id"), nb, sizeof nb),
                              hit_text(r), meta};
        sbc_table_add_row(t, row);
        free(meta);
    }
    return print_table(t);
}

/* query --file's queries read and not yet answered. */
struct query_batch {
    char **texts; /* owned */
    long *lines;
    size_t n, bytes;
    long first; /* the number of texts[0], counted from 1 in the input */
};

static void query_batch_clear(struct query_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->texts[i]);
    b->first += (long)b->n;
    b->n = b->bytes = 0;
}

/*
 * Sends texts[0..n) of b as one batch query and prints each query's results in order. A batch
 * whose reply would exceed the daemon's max_reply_bytes (which its queries share) is sent again
 * in two halves, down to single queries, whose too_large is an error as for one query.
 */
static int query_send(struct ctx *c, const struct query_args *q, const struct query_batch *b,
                      size_t at, size_t n)
{
    cJSON *texts = cJSON_CreateArray();
    for (size_t i = 0; texts && i < n; i++)
        if (!cJSON_AddItemToArray(texts, cJSON_CreateString(b->texts[at + i]))) {
            cJSON_Delete(texts);
            texts = NULL;
        }
    cJSON *req = texts ? query_request(c, q, "texts", texts) : NULL;
    if (!req) {
        errmsg("out of memory");
        return EXIT_REPLY;
    }
    cJSON *rep;
    const cJSON *lists;
    c->quiet_too_large = n > 1;
    c->last_error = 0;
    int rc = call_member(c, req, "results", cJSON_IsArray, (int)n, &rep, &lists);
    c->quiet_too_large = 0;
    if (rc == EXIT_REPLY && n > 1 && c->last_error == SBERT_PROTO_ETOO_LARGE) {
        if ((rc = query_send(c, q, b, at, n / 2)) != EXIT_OK) return rc;
        return query_send(c, q, b, at + n / 2, n - n / 2);
    }
    if (rc != EXIT_OK) return rc;
    const cJSON *results;
    size_t i = 0;
    cJSON_ArrayForEach(results, lists)
    {
        if (!cJSON_IsArray(results)) {
            errmsg("query: malformed reply from %s: \"results\"[%zu] is not a list", c->url, i);
            rc = EXIT_REPLY;
            break;
        }
        if ((rc = query_print(c, results, b->texts[at + i], b->first + (long)(at + i),
                              b->lines[at + i])) != EXIT_OK)
            break;
        i++;
    }
    cJSON_Delete(rep);
    return rc;
}

/* The daemon's max_batch (its stats), which bounds the texts of one batch query. */
static int query_max_batch(struct ctx *c, size_t *max_batch)
{
    c->op = SBERT_PROTO_OP_STATS;
    cJSON *stats;
    int rc = call(c, request_new(c), &stats);
    c->op = SBERT_PROTO_OP_QUERY;
    if (rc != EXIT_OK) return rc;
    *max_batch = (size_t)stats_limit(stats, "max_batch", SBERT_PROTO_DEFAULT_MAX_BATCH);
    cJSON_Delete(stats);
    return EXIT_OK;
}

/* query --file: one query a line, sent max_batch at a time (or fewer, up to QUERY_BATCH_BYTES). */
static int cmd_query_file(struct ctx *c, const struct query_args *q, const char *path)
{
    char err[512];
    sbc_input *in;
    int r = sbc_input_open(path, SBC_FORMAT_TXT, NULL, NULL, &in, err, sizeof err);
    if (r < 0) {
        errmsg("%s", err[0] ? err : sbc_input_strerror(r));
        return EXIT_REPLY;
    }
    size_t max_batch = 0;
    int rc = query_max_batch(c, &max_batch);
    struct query_batch b = {.first = 1};
    if (rc == EXIT_OK && (!(b.texts = malloc(max_batch * sizeof *b.texts)) ||
                          !(b.lines = malloc(max_batch * sizeof *b.lines)))) {
        errmsg("out of memory");
        rc = EXIT_REPLY;
    }
    while (rc == EXIT_OK) {
        struct sbc_doc doc;
        r = sbc_input_next(in, &doc, err, sizeof err);
        if (r < 0) {
            errmsg("%s", err);
            rc = EXIT_REPLY;
            break;
        }
        if (r == 1) {
            if (!(b.texts[b.n] = strndup(doc.text, doc.text_len))) {
                errmsg("out of memory");
                rc = EXIT_REPLY;
                break;
            }
            b.lines[b.n++] = doc.line;
            b.bytes += doc.text_len + 8;
        }
        if (b.n && (r == 0 || b.n == max_batch || b.bytes >= QUERY_BATCH_BYTES)) {
            rc = query_send(c, q, &b, 0, b.n);
            query_batch_clear(&b);
        }
        if (r == 0) break;
    }
    query_batch_clear(&b);
    free(b.texts);
    free(b.lines);
    sbc_input_close(in);
    return rc;
}

static int cmd_query(struct ctx *c, const struct args *a)
{
    struct query_args q = {.k = 10};
    if (a->val[Q_FILE] ? a->n_pos != 0 : a->n_pos != 1)
        return usage_error(c->cmd, "give one TEXT or --file FILE");
    if (a->val[Q_K] && parse_int(a->val[Q_K], 1, INT_MAX, &q.k) < 0)
        return usage_error(c->cmd, "-k: expected a positive integer, not \"%s\"", a->val[Q_K]);
    if (a->val[Q_MINSCORE] && parse_double(a->val[Q_MINSCORE], &q.min_score) < 0)
        return usage_error(c->cmd, "--min-score: expected a number, not \"%s\"",
                           a->val[Q_MINSCORE]);
    q.has_min_score = a->val[Q_MINSCORE] != NULL;
    q.mode = a->val[Q_MODE];
    q.fusion = a->val[Q_FUSION];
    if ((q.has_weight = a->val[Q_WEIGHT] != NULL) && parse_double(a->val[Q_WEIGHT], &q.weight) < 0)
        return usage_error(c->cmd, "--weight: expected a number, not \"%s\"", a->val[Q_WEIGHT]);
    if ((q.has_diversity = a->val[Q_DIVERSITY] != NULL) &&
        parse_double(a->val[Q_DIVERSITY], &q.diversity) < 0)
        return usage_error(c->cmd, "--diversity: expected a number, not \"%s\"",
                           a->val[Q_DIVERSITY]);
    if (a->val[Q_FILTER] && !(q.filter = cJSON_Parse(a->val[Q_FILTER])))
        return usage_error(c->cmd, "--filter: not valid JSON: %s", a->val[Q_FILTER]);
    int rc;
    if (a->val[Q_FILE])
        rc = cmd_query_file(c, &q, a->val[Q_FILE]);
    else {
        cJSON *req = query_request(c, &q, "text", cJSON_CreateString(a->pos[0]));
        cJSON *rep;
        const cJSON *results;
        rc = call_member(c, req, "results", cJSON_IsArray, -1, &rep, &results);
        if (rc == EXIT_OK) {
            rc = query_print(c, results, NULL, 0, 0);
            cJSON_Delete(rep);
        }
    }
    cJSON_Delete(q.filter);
    return rc;
}

/* ---- get / delete ------------------------------------------------------------------------- */

static int cmd_get(struct ctx *c, const struct args *a)
{
    cJSON *req = request_new(c);
    cJSON *ids = req_set(c, req, "ids", cJSON_CreateArray());
    cJSON_AddItemToArray(ids, cJSON_CreateString(a->pos[0]));
    cJSON *rep;
    int rc = call(c, req, &rep);
    if (rc != EXIT_OK) return rc;
    const cJSON *docs = member(c, rep, "documents", cJSON_IsArray);
    const cJSON *doc = docs ? cJSON_GetArrayItem(docs, 0) : NULL;
    if (!doc) {
        if (docs) errmsg("get: malformed reply from %s: no document", c->url);
        cJSON_Delete(rep);
        return EXIT_REPLY;
    }
    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "found"))) {
        errmsg("get: no document with id %s", a->pos[0]);
        cJSON_Delete(rep);
        return EXIT_REPLY;
    }
    if (c->json) {
        cJSON *out = cJSON_CreateObject();
        static const char *const keys[] = {"id", "text", "metadata"};
        for (size_t i = 0; i < 3; i++) {
            const cJSON *f = cJSON_GetObjectItemCaseSensitive(doc, keys[i]);
            cJSON_AddItemToObject(out, keys[i], f ? cJSON_Duplicate(f, 1) : cJSON_CreateNull());
        }
        rc = print_json(out);
        cJSON_Delete(out);
    } else {
        char nb[32];
        char *meta = meta_cell(cJSON_GetObjectItemCaseSensitive(doc, "metadata"));
        printf("id:       %s\ntext:     %s\n",
               id_text(cJSON_GetObjectItemCaseSensitive(doc, "id"), nb, sizeof nb),
               str_or(doc, "text", ""));
        if (meta && *meta) printf("metadata: %s\n", meta);
        free(meta);
    }
    cJSON_Delete(rep);
    return rc;
}

static const struct opt delete_opts[] = {
    {"filter", 0, "JSON", "delete every document the filter accepts (no IDs then)"},
    {NULL, 0, NULL, NULL},
};
enum { DEL_FILTER };

/* delete --filter: one request, which the daemon runs in chunks. */
static int cmd_delete_filter(struct ctx *c, const struct args *a)
{
    cJSON *filter = cJSON_Parse(a->val[DEL_FILTER]);
    if (!filter) return usage_error(c->cmd, "--filter: not valid JSON: %s", a->val[DEL_FILTER]);
    cJSON *req = request_new(c);
    c->user_json = 1;
    req_set(c, req, "filter", filter);
    cJSON *rep;
    const cJSON *n;
    int rc = call_member(c, req, "deleted", cJSON_IsNumber, -1, &rep, &n);
    if (rc != EXIT_OK) return rc;
    if (c->json) {
        cJSON *out = cJSON_CreateObject();
        cJSON_AddNumberToObject(out, "deleted", n->valuedouble);
        rc = print_json(out);
        cJSON_Delete(out);
    } else
        printf("deleted %.0f\n", n->valuedouble);
    cJSON_Delete(rep);
    return rc;
}

static int cmd_delete(struct ctx *c, const struct args *a)
{
    if (a->val[DEL_FILTER]) {
        if (a->n_pos) return usage_error(c->cmd, "give IDs or --filter, not both");
        return cmd_delete_filter(c, a);
    }
    if (a->n_pos == 0) return usage_error(c->cmd, "give IDs or --filter");
    cJSON *req = request_new(c);
    cJSON *ids = req_set(c, req, "ids", cJSON_CreateArray());
    for (int i = 0; ids && i < a->n_pos; i++)
        cJSON_AddItemToArray(ids, cJSON_CreateString(a->pos[i]));
    cJSON *rep;
    const cJSON *existed;
    int rc = call_member(c, req, "existed", cJSON_IsArray, a->n_pos, &rep, &existed);
    if (rc != EXIT_OK) return rc;
    cJSON *out = cJSON_CreateObject();
    cJSON *deleted = cJSON_AddArrayToObject(out, "deleted");
    cJSON *missing = cJSON_AddArrayToObject(out, "not_found");
    for (int i = 0; i < a->n_pos; i++)
        cJSON_AddItemToArray(cJSON_IsTrue(cJSON_GetArrayItem(existed, i)) ? deleted : missing,
                             cJSON_CreateString(a->pos[i]));
    if (c->json) {
        rc = print_json(out);
    } else {
        printf("deleted %d of %d\n", cJSON_GetArraySize(deleted), a->n_pos);
        const cJSON *m;
        cJSON_ArrayForEach(m, missing)
            fprintf(stderr, "sbertctl: delete: no document with id %s\n", m->valuestring);
    }
    cJSON_Delete(out);
    cJSON_Delete(rep);
    return rc;
}

/* ---- list / count / patch ----------------------------------------------------------------- */

static const struct opt list_opts[] = {
    {"filter", 0, "JSON", "only documents the metadata filter accepts"},
    {"limit", 'n', "N", "documents per page (default 100)"},
    {"cursor", 0, "C", "go on where a previous page ended"},
    {"all", 0, NULL, "every page, to the end (with --json: an export add --file reads back)"},
    {NULL, 0, NULL, NULL},
};
enum { L_FILTER, L_LIMIT, L_CURSOR, L_ALL };

/* A listed document as the object add --file reads back: {"id","text","metadata"}. */
static cJSON *list_doc(const cJSON *d)
{
    cJSON *o = cJSON_CreateObject();
    static const char *const keys[] = {"id", "text", "metadata"};
    for (size_t i = 0; o && i < 3; i++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(d, keys[i]);
        cJSON_AddItemToObject(o, keys[i], f ? cJSON_Duplicate(f, 1) : cJSON_CreateNull());
    }
    return o;
}

/* One page: the request with cursor (NULL: the first), its documents printed as JSON Lines or
 * added to table t. *next gets a malloc'd copy of the reply's cursor, or NULL at the end. */
static int list_page(struct ctx *c, const struct args *a, long limit, const char *cursor,
                     sbc_table *t, char **next)
{
    *next = NULL;
    cJSON *req = request_new(c);
    if (a->val[L_FILTER]) {
        cJSON *filter = cJSON_Parse(a->val[L_FILTER]);
        if (!filter) {
            cJSON_Delete(req);
            return usage_error(c->cmd, "--filter: not valid JSON: %s", a->val[L_FILTER]);
        }
        c->user_json = 1;
        req_set(c, req, "filter", filter);
    }
    req_set(c, req, "limit", cJSON_CreateNumber((double)limit));
    if (cursor) req_set(c, req, "cursor", cJSON_CreateString(cursor));
    cJSON *inc = req_set(c, req, "include", cJSON_CreateArray());
    cJSON_AddItemToArray(inc, cJSON_CreateString("text"));
    cJSON_AddItemToArray(inc, cJSON_CreateString("metadata"));
    cJSON *rep;
    const cJSON *docs, *d;
    int rc = call_member(c, req, "documents", cJSON_IsArray, -1, &rep, &docs);
    if (rc != EXIT_OK) return rc;
    cJSON_ArrayForEach(d, docs)
    {
        if (c->json) {
            cJSON *o = list_doc(d);
            rc = o ? print_json(o) : EXIT_REPLY;
            cJSON_Delete(o);
        } else {
            char nb[32];
            char *meta = meta_cell(cJSON_GetObjectItemCaseSensitive(d, "metadata"));
            const char *row[3] = {id_text(cJSON_GetObjectItemCaseSensitive(d, "id"), nb, sizeof nb),
                                  str_or(d, "text", ""), meta ? meta : ""};
            sbc_table_add_row(t, row);
            free(meta);
        }
        if (rc != EXIT_OK) break;
    }
    const char *cur = str_or(rep, "cursor", NULL);
    if (rc == EXIT_OK && cur && !(*next = strdup(cur))) rc = EXIT_REPLY;
    cJSON_Delete(rep);
    return rc;
}

static int cmd_list(struct ctx *c, const struct args *a)
{
    long limit = 100;
    if (a->val[L_LIMIT] && parse_int(a->val[L_LIMIT], 1, INT_MAX, &limit) < 0)
        return usage_error(c->cmd, "--limit: expected a positive integer, not \"%s\"",
                           a->val[L_LIMIT]);
    struct sbc_column cols[] = {{"ID", 0}, {"TEXT", SBC_COL_SHRINK}, {"METADATA", SBC_COL_SHRINK}};
    sbc_table *t = NULL;
    if (!c->json && sbc_table_create(cols, 3, &t) < 0) return EXIT_REPLY;
    char *cursor = a->val[L_CURSOR] ? strdup(a->val[L_CURSOR]) : NULL, *next = NULL;
    int rc;
    for (;;) {
        rc = list_page(c, a, limit, cursor, t, &next);
        free(cursor);
        cursor = next;
        if (rc != EXIT_OK || !cursor || !a->val[L_ALL]) break;
    }
    if (rc == EXIT_OK && cursor && c->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "cursor", cursor);
        rc = print_json(o);
        cJSON_Delete(o);
    }
    if (t && rc == EXIT_OK) {
        rc = print_table(t);
        t = NULL;
        if (rc == EXIT_OK && cursor)
            fprintf(stderr, "sbertctl: list: more remain: sbertctl list --cursor %s\n", cursor);
    }
    sbc_table_free(t);
    free(cursor);
    return rc;
}

static const struct opt count_opts[] = {
    {"filter", 0, "JSON", "count only the documents the metadata filter accepts"},
    {NULL, 0, NULL, NULL},
};

static int cmd_count(struct ctx *c, const struct args *a)
{
    cJSON *req = request_new(c);
    if (a->val[0]) {
        cJSON *filter = cJSON_Parse(a->val[0]);
        if (!filter) {
            cJSON_Delete(req);
            return usage_error(c->cmd, "--filter: not valid JSON: %s", a->val[0]);
        }
        c->user_json = 1;
        req_set(c, req, "filter", filter);
    }
    cJSON *rep;
    const cJSON *n;
    int rc = call_member(c, req, "count", cJSON_IsNumber, -1, &rep, &n);
    if (rc != EXIT_OK) return rc;
    if (c->json) {
        cJSON *out = cJSON_CreateObject();
        cJSON_AddNumberToObject(out, "count", n->valuedouble);
        rc = print_json(out);
        cJSON_Delete(out);
    } else
        printf("%.0f\n", n->valuedouble);
    cJSON_Delete(rep);
    return rc;
}

static const struct opt patch_opts[] = {
    {"set", 0, "JSON", "an object of keys to set (besides KEY=VALUE arguments)"},
    {"unset", 0, "KEYS", "comma-separated keys to remove"},
    {NULL, 0, NULL, NULL},
};
enum { P_SET, P_UNSET };

/* KEY=VALUE: VALUE as JSON when it parses (3, true, "x", [1]), else as a string. */
static int patch_pair(cJSON *set, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) return -1;
    char *key = strndup(arg, (size_t)(eq - arg));
    cJSON *v = cJSON_Parse(eq + 1);
    if (!v) v = cJSON_CreateString(eq + 1);
    cJSON_DeleteItemFromObjectCaseSensitive(set, key);
    int rc = key && v && cJSON_AddItemToObject(set, key, v) ? 0 : -1;
    if (rc) cJSON_Delete(v);
    free(key);
    return rc;
}

/* The patch object {"id","set"?,"unset"?} of the command line, or NULL after a usage error. */
static cJSON *patch_item(struct ctx *c, const struct args *a, int *rc)
{
    cJSON *set = a->val[P_SET] ? cJSON_Parse(a->val[P_SET]) : cJSON_CreateObject();
    if (!cJSON_IsObject(set)) {
        cJSON_Delete(set);
        *rc = usage_error(c->cmd, "--set: not a JSON object: %s", a->val[P_SET]);
        return NULL;
    }
    for (int i = 1; i < a->n_pos; i++)
        if (patch_pair(set, a->pos[i]) < 0) {
            cJSON_Delete(set);
            *rc = usage_error(c->cmd, "expected KEY=VALUE, not \"%s\"", a->pos[i]);
            return NULL;
        }
    cJSON *item = cJSON_CreateObject();
    cJSON_AddStringToObject(item, "id", a->pos[0]);
    if (set->child)
        cJSON_AddItemToObject(item, "set", set);
    else
        cJSON_Delete(set);
    if (a->val[P_UNSET]) {
        cJSON *un = cJSON_AddArrayToObject(item, "unset");
        char *keys = strdup(a->val[P_UNSET]), *save = NULL;
        for (char *k = keys ? strtok_r(keys, ",", &save) : NULL; k; k = strtok_r(NULL, ",", &save))
            cJSON_AddItemToArray(un, cJSON_CreateString(k));
        free(keys);
    }
    if (!cJSON_HasObjectItem(item, "set") && !cJSON_HasObjectItem(item, "unset")) {
        cJSON_Delete(item);
        *rc = usage_error(c->cmd, "nothing to change: give KEY=VALUE, --set or --unset");
        return NULL;
    }
    return item;
}

static int cmd_patch(struct ctx *c, const struct args *a)
{
    int rc = EXIT_OK;
    cJSON *item = patch_item(c, a, &rc);
    if (!item) return rc;
    cJSON *req = request_new(c);
    c->user_json = 1;
    cJSON *docs = req_set(c, req, "documents", cJSON_CreateArray());
    if (docs)
        cJSON_AddItemToArray(docs, item);
    else
        cJSON_Delete(item);
    cJSON *rep;
    const cJSON *found;
    rc = call_member(c, req, "found", cJSON_IsArray, 1, &rep, &found);
    if (rc != EXIT_OK) return rc;
    int ok = cJSON_IsTrue(cJSON_GetArrayItem(found, 0));
    if (c->json) {
        cJSON *out = cJSON_CreateObject();
        cJSON_AddStringToObject(out, "id", a->pos[0]);
        cJSON_AddBoolToObject(out, "found", ok);
        rc = print_json(out);
        cJSON_Delete(out);
    } else if (ok)
        printf("patched %s\n", a->pos[0]);
    if (!ok) {
        errmsg("patch: no document with id %s", a->pos[0]);
        rc = EXIT_REPLY;
    }
    cJSON_Delete(rep);
    return rc;
}

/* ---- similarity / encode ------------------------------------------------------------------ */

static int cmd_similarity(struct ctx *c, const struct args *a)
{
    cJSON *req = request_new(c);
    req_set(c, req, "a", cJSON_CreateString(a->pos[0]));
    req_set(c, req, "b", cJSON_CreateString(a->pos[1]));
    cJSON *rep;
    int rc = call(c, req, &rep);
    if (rc != EXIT_OK) return rc;
    const cJSON *s = member(c, rep, "score", cJSON_IsNumber);
    if (!s) {
        rc = EXIT_REPLY;
    } else if (c->json) {
        cJSON *out = cJSON_CreateObject();
        cJSON_AddNumberToObject(out, "score", s->valuedouble);
        rc = print_json(out);
        cJSON_Delete(out);
    } else {
        printf("%.4f\n", s->valuedouble);
    }
    cJSON_Delete(rep);
    return rc;
}

static int cmd_encode(struct ctx *c, const struct args *a)
{
    cJSON *req = request_new(c);
    cJSON *texts = req_set(c, req, "texts", cJSON_CreateArray());
    for (int i = 0; texts && i < a->n_pos; i++)
        cJSON_AddItemToArray(texts, cJSON_CreateString(a->pos[i]));
    cJSON *rep;
    const cJSON *emb;
    int rc = call_member(c, req, "embeddings", cJSON_IsArray, a->n_pos, &rep, &emb);
    if (rc != EXIT_OK) return rc;
    if (c->json) {
        cJSON *out = cJSON_CreateObject();
        cJSON_AddItemToObject(out, "embeddings", cJSON_Duplicate(emb, 1));
        rc = print_json(out);
        cJSON_Delete(out);
    } else {
        /* Like the seed's print(embedding): the text, then its vector, eight numbers a line. */
        const cJSON *row;
        int i = 0;
        cJSON_ArrayForEach(row, emb)
        {
            printf("%s%s  (%d dimensions)\n[", i ? "\n" : "", a->pos[i], cJSON_GetArraySize(row));
            const cJSON *x;
            int j = 0;
            cJSON_ArrayForEach(x, row)
            {
                printf("%s% .8f", j == 0 ? "" : (j % 8 == 0 ? "\n " : " "), x->valuedouble);
                j++;
            }
            puts("]");
            i++;
        }
    }
    cJSON_Delete(rep);
    return rc;
}

/* ---- pairs -------------------------------------------------------------------------------- */

static const struct opt pairs_opts[] = {
    {"n", 'n', "N", "the N most similar pairs (default 10)"},
    {"min-score", 0, "S", "only pairs with cosine similarity >= S"},
    {NULL, 0, NULL, NULL},
};
enum { P_N, P_MINSCORE };

static int cmd_pairs(struct ctx *c, const struct args *a)
{
    long n = 10;
    double min_score = 0;
    if (a->val[P_N] && parse_int(a->val[P_N], 1, INT_MAX, &n) < 0)
        return usage_error(c->cmd, "-n: expected a positive integer, not \"%s\"", a->val[P_N]);
    if (a->val[P_MINSCORE] && parse_double(a->val[P_MINSCORE], &min_score) < 0)
        return usage_error(c->cmd, "--min-score: expected a number, not \"%s\"",
                           a->val[P_MINSCORE]);
    if (a->n_pos == 1) return usage_error(c->cmd, "pairs within a list need at least two texts");
    cJSON *req = request_new(c);
    req_set(c, req, "n", cJSON_CreateNumber((double)n));
    if (a->val[P_MINSCORE]) req_set(c, req, "min_score", cJSON_CreateNumber(min_score));
    cJSON *texts = a->n_pos ? req_set(c, req, "texts", cJSON_CreateArray()) : NULL;
    for (int i = 0; texts && i < a->n_pos; i++)
        cJSON_AddItemToArray(texts, cJSON_CreateString(a->pos[i]));
    cJSON *rep;
    const cJSON *pairs;
    int rc = call_member(c, req, "pairs", cJSON_IsArray, -1, &rep, &pairs);
    if (rc != EXIT_OK) return rc;
    if (c->json) {
        cJSON *out = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(out, "pairs");
        const cJSON *p;
        cJSON_ArrayForEach(p, pairs)
        {
            cJSON *o = cJSON_CreateObject();
            static const char *const sides[] = {"a", "b"};
            for (size_t s = 0; s < 2; s++) {
                const cJSON *side = cJSON_GetObjectItemCaseSensitive(p, sides[s]);
                cJSON *so = cJSON_AddObjectToObject(o, sides[s]);
                const cJSON *id = cJSON_GetObjectItemCaseSensitive(side, "id");
                const cJSON *tx = cJSON_GetObjectItemCaseSensitive(side, "text");
                cJSON_AddItemToObject(so, "id", id ? cJSON_Duplicate(id, 1) : cJSON_CreateNull());
                cJSON_AddItemToObject(so, "text", tx ? cJSON_Duplicate(tx, 1) : cJSON_CreateNull());
            }
            const cJSON *s = cJSON_GetObjectItemCaseSensitive(p, "score");
            cJSON_AddItemToObject(o, "score", s ? cJSON_Duplicate(s, 1) : cJSON_CreateNull());
            cJSON_AddItemToArray(arr, o);
        }
        rc = print_json(out);
        cJSON_Delete(out);
        cJSON_Delete(rep);
        return rc;
    }
    struct sbc_column cols[] = {
        {"A", SBC_COL_SHRINK}, {"B", SBC_COL_SHRINK}, {"SCORE", SBC_COL_RIGHT}};
    sbc_table *t;
    if (sbc_table_create(cols, 3, &t) < 0) {
        cJSON_Delete(rep);
        return EXIT_REPLY;
    }
    const cJSON *p;
    cJSON_ArrayForEach(p, pairs)
    {
        char sc[32];
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(p, "score");
        fmt_score(sc, sizeof sc, cJSON_IsNumber(s) ? s->valuedouble : NAN);
        const char *row[3] = {str_or(cJSON_GetObjectItemCaseSensitive(p, "a"), "text", ""),
                              str_or(cJSON_GetObjectItemCaseSensitive(p, "b"), "text", ""), sc};
        sbc_table_add_row(t, row);
    }
    cJSON_Delete(rep);
    return print_table(t);
}

/* ---- index / sync ------------------------------------------------------------------------- */

static const struct opt index_opts[] = {
    {"batch", 0, "N", "files per request (default 32, at most 1024)"},
    {"max-file-bytes", 0, "N", "skip files larger than N bytes (default 268435456)"},
    {"no-progress", 0, NULL, "no progress bar, even on a terminal"},
    {NULL, 0, NULL, NULL},
};
/* index's options in the same places (IX_*), then --watch */
static const struct opt sync_opts[] = {
    {"batch", 0, "N", "files per request (default 32, at most 1024)"},
    {"max-file-bytes", 0, "N", "skip files larger than N bytes (default 268435456)"},
    {"no-progress", 0, NULL, "no progress bar, even on a terminal"},
    {"watch", 0, NULL, "after the first sync, follow DIR (inotify) until SIGINT or SIGTERM"},
    {NULL, 0, NULL, NULL},
};
enum { IX_BATCH, IX_MAXFILE, IX_NOPROGRESS, SY_WATCH };

#ifdef SBERTCTL_FILES
struct index_file {
    char *path, *rel, *root;
    int64_t size, mtime_ns;
};

/* What a run does and found. The walk's ids go to seen (sync: every id it named, files skipped
 * too) and its unlistable directories to unknown, so that sync deletes only what is gone. */
struct index_run {
    struct index_file *v;
    size_t n, cap;
    char **seen, **unknown;
    size_t n_seen, cap_seen, n_unknown, cap_unknown;
    const char *name; /* the command, for messages */
    int track;        /* fill seen and unknown */
    int stopped;      /* sync --watch: SIGINT or SIGTERM came, the run stopped between batches */
    long skipped, unchanged, indexed, failed, deleted;
    /* passages of the documents sent (the daemon's counts): those it encoded and those its
     * embedding cache served */
    long passages, encoded, cached;
};

/* Limits and options of a run. */
struct index_cfg {
    size_t batch, max_file, max_text, max_bytes, max_ids;
    int progress;
    const char *what;   /* "index" or "sync DIR", for STATUS= */
    sbc_notify *notify; /* $NOTIFY_SOCKET's, or NULL */
};

static int push_str(char ***v, size_t *n, size_t *cap, const char *s)
{
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 256;
        char **nv = realloc(*v, c * sizeof *nv);
        if (!nv) return -1;
        *v = nv;
        *cap = c;
    }
    if (!((*v)[*n] = strdup(s))) return -1;
    (*n)++;
    return 0;
}

static int index_collect(const struct sbc_file *f, const char *why, void *user)
{
    struct index_run *r = user;
    if (r->track && (push_str(&r->seen, &r->n_seen, &r->cap_seen, f->rel) ||
                     (f->dir && push_str(&r->unknown, &r->n_unknown, &r->cap_unknown, f->rel))))
        return -1;
    if (why) {
        errmsg("%s: skipped %s: %s", r->name, f->path, why);
        r->skipped++;
        return 0;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 256;
        struct index_file *v = realloc(r->v, cap * sizeof *v);
        if (!v) return -1;
        r->v = v;
        r->cap = cap;
    }
    struct index_file *x = &r->v[r->n];
    x->path = strdup(f->path);
    x->rel = strdup(f->rel);
    x->root = strdup(f->root);
    if (!x->path || !x->rel || !x->root) {
        free(x->path);
        free(x->rel);
        free(x->root);
        return -1;
    }
    x->size = f->size;
    x->mtime_ns = f->mtime_ns;
    r->n++;
    return 0;
}

/* What the collection holds for files[0..n): their stored metadata objects (NULL: not stored),
 * from one get. */
static int index_stored(struct ctx *c, const struct index_file *files, size_t n, cJSON **reply,
                        const cJSON **docs)
{
    c->op = SBERT_PROTO_OP_GET;
    cJSON *req = request_new(c), *ids = cJSON_CreateArray(), *inc = cJSON_CreateArray();
    for (size_t i = 0; ids && i < n; i++)
        cJSON_AddItemToArray(ids, cJSON_CreateString(files[i].rel));
    if (inc) cJSON_AddItemToArray(inc, cJSON_CreateString("metadata"));
    req_set(c, req, "ids", ids);
    req_set(c, req, "include", inc);
    return call_member(c, req, "documents", cJSON_IsArray, (int)n, reply, docs);
}

/* 1 when the stored metadata says the file is as it was: same size and modification time. */
static int index_same_stat(const cJSON *meta, const struct index_file *f)
{
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(meta, "size");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(meta, "mtime");
    const cJSON *ns = cJSON_GetObjectItemCaseSensitive(meta, "mtime_nsec");
    return cJSON_IsNumber(size) && cJSON_IsNumber(mt) && cJSON_IsNumber(ns) &&
           size->valuedouble == (double)f->size &&
           mt->valuedouble == (double)(f->mtime_ns / 1000000000) &&
           ns->valuedouble == (double)(f->mtime_ns % 1000000000);
}

/* One batch of files: the unchanged skipped by size and time (or, read, by hash), the rest
 * extracted and added in requests of at most max_bytes of text. A document stored from another
 * root (or by an index that did not record one) is added again, so that it carries this root. */
static int index_batch(struct ctx *c, struct index_run *r, const struct index_file *files, size_t n,
                       const struct index_cfg *cfg)
{
    cJSON *stored;
    const cJSON *docs;
    int rc = index_stored(c, files, n, &stored, &docs);
    if (rc != EXIT_OK) return rc;
    struct add_state st = {.ids = cJSON_CreateArray()};
    cJSON *batch = NULL;
    size_t bytes = 0;
    long in_batch = 0;
    for (size_t i = 0; rc == EXIT_OK && i <= n; i++) {
        struct sbc_file_doc d = {0};
        int made = -2;
        if (i < n) {
            const cJSON *doc = cJSON_GetArrayItem(docs, (int)i);
            const cJSON *found = cJSON_GetObjectItemCaseSensitive(doc, "found");
            const cJSON *meta =
                cJSON_IsTrue(found) ? cJSON_GetObjectItemCaseSensitive(doc, "metadata") : NULL;
            const cJSON *sha = cJSON_GetObjectItemCaseSensitive(meta, "sha256");
            const cJSON *root = cJSON_GetObjectItemCaseSensitive(meta, "root");
            int same_root = cJSON_IsString(root) && !strcmp(root->valuestring, files[i].root);
            if (same_root && index_same_stat(meta, &files[i])) {
                r->unchanged++;
                continue;
            }
            struct sbc_file f = {files[i].path, files[i].rel,      files[i].root,
                                 files[i].size, files[i].mtime_ns, 0};
            char why[512];
            made = sbc_file_doc_make(&f, cfg->max_file, cfg->max_text,
                                     same_root && cJSON_IsString(sha) ? sha->valuestring : NULL, &d,
                                     why, sizeof why);
            if (made == 1) {
                r->unchanged++;
                continue;
            }
            if (made < 0) {
                errmsg("%s: skipped %s: %s", r->name, files[i].path, why);
                r->skipped++;
                continue;
            }
        }
        /* flush before a document that would pass the request's size, and at the end */
        if (batch && (made != 0 || bytes + 2 * d.len > cfg->max_bytes)) {
            c->op = SBERT_PROTO_OP_ADD;
            rc = add_batch(c, batch, &st);
            batch = NULL;
            if (rc == EXIT_OK)
                r->indexed += in_batch;
            else {
                r->failed += in_batch;
                errmsg("%s: %ld files before %s were not indexed", r->name, in_batch,
                       i < n ? files[i].path : "the end");
            }
            bytes = 0;
            in_batch = 0;
        }
        if (made != 0) continue;
        cJSON *doc = doc_json(files[i].rel, d.text, d.len, d.metadata_json);
        sbc_file_doc_free(&d);
        if (!batch) batch = cJSON_CreateArray();
        if (!doc || !batch) {
            cJSON_Delete(doc);
            errmsg("out of memory");
            rc = EXIT_REPLY;
            break;
        }
        cJSON_AddItemToArray(batch, doc);
        bytes +=
            2 * (size_t)strlen(cJSON_GetObjectItemCaseSensitive(doc, "text")->valuestring) + 4096;
        in_batch++;
    }
    r->passages += st.n_encoded + st.n_cached;
    r->encoded += st.n_encoded;
    r->cached += st.n_cached;
    cJSON_Delete(batch);
    cJSON_Delete(st.ids);
    cJSON_Delete(stored);
    return rc;
}

/* Whether SIGINT or SIGTERM waits: sync --watch blocks them, and stops between batches. */
static int stop_pending(void)
{
    sigset_t p;
    return sigpending(&p) == 0 && (sigismember(&p, SIGINT) == 1 || sigismember(&p, SIGTERM) == 1);
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* STATUS= for systemd while a run goes (at most once a second): where it is, its rates, ETA. */
static void index_notify(const struct index_cfg *cfg, const struct index_run *r, size_t done,
                         double t0)
{
    if (!cfg->notify) return;
    double el = mono_s() - t0, rate = el > 0 ? (double)done / el : 0;
    long eta = rate > 0 ? (long)((double)(r->n - done) / rate + 0.5) : -1;
    char etas[32] = "";
    if (eta >= 0) snprintf(etas, sizeof etas, ", ETA %ld:%02ld", eta / 60, eta % 60);
    sbc_notify_status(
        cfg->notify, 0,
        "%s: %zu/%zu files, %ld passages (%ld encoded, %ld from cache), %.0f files/s, "
        "%.0f passages/s%s",
        cfg->what, done, r->n, r->passages, r->encoded, r->cached, rate,
        el > 0 ? (double)r->passages / el : 0, etas);
}

/* The files the walk collected, batch by batch, with a progress bar on a terminal (files/s,
 * passages/s, ETA) and STATUS= lines under systemd. */
static int index_files(struct ctx *c, struct index_run *r, const struct index_cfg *cfg)
{
    int rc = EXIT_OK;
    sbc_progress *bar = NULL;
    if (cfg->progress && isatty(STDERR_FILENO))
        sbc_progress_create(stderr, (long)r->n, "files", &bar);
    double t0 = mono_s();
    for (size_t i = 0; rc == EXIT_OK && i < r->n; i += cfg->batch) {
        if (stop_pending()) {
            r->stopped = 1;
            break;
        }
        size_t n = r->n - i < cfg->batch ? r->n - i : cfg->batch;
        rc = index_batch(c, r, r->v + i, n, cfg);
        sbc_progress_count(bar, "passages", r->passages);
        sbc_progress_update(bar, (long)(i + n));
        index_notify(cfg, r, i + n, t0);
    }
    sbc_progress_finish(bar);
    return rc;
}

static void index_run_free(struct index_run *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].path);
        free(r->v[i].rel);
        free(r->v[i].root);
    }
    free(r->v);
    for (size_t i = 0; i < r->n_seen; i++)
        free(r->seen[i]);
    free(r->seen);
    for (size_t i = 0; i < r->n_unknown; i++)
        free(r->unknown[i]);
    free(r->unknown);
    memset(r, 0, sizeof *r);
}

/* The options and the daemon's limits: a file's text must fit one document, a request one
 * message, a list of ids max_batch. */
static int index_config(struct ctx *c, const struct args *a, struct index_cfg *cfg)
{
    long batch = 32, max_file = 256L << 20;
    if (a->val[IX_BATCH] && parse_int(a->val[IX_BATCH], 1, 1024, &batch) < 0)
        return usage_error(c->cmd, "--batch: expected 1..1024");
    if (a->val[IX_MAXFILE] && parse_int(a->val[IX_MAXFILE], 1, LONG_MAX, &max_file) < 0)
        return usage_error(c->cmd, "--max-file-bytes: expected a positive integer");
    c->op = SBERT_PROTO_OP_STATS;
    cJSON *stats;
    int rc = call(c, request_new(c), &stats);
    if (rc != EXIT_OK) return rc;
    cfg->batch = (size_t)batch;
    cfg->max_file = (size_t)max_file;
    cfg->max_text = (size_t)stats_limit(stats, "max_text_bytes", 65536);
    cfg->max_bytes = (size_t)stats_limit(stats, "max_message_size", 64 << 20) / 2;
    cfg->max_ids = (size_t)stats_limit(stats, "max_batch", ADD_BATCH_MAX);
    if (cfg->max_ids > ADD_BATCH_MAX) cfg->max_ids = ADD_BATCH_MAX;
    cfg->progress = !a->val[IX_NOPROGRESS];
    cfg->what = "index"; /* sync names its directory */
    cfg->notify = NULL;
    cJSON_Delete(stats);
    int nrc = sbc_notify_open(&cfg->notify);
    if (nrc) errmsg("no STATUS= for systemd: %s", sbc_notify_strerror(nrc));
    return EXIT_OK;
}

/* The summary line of the issue, on stdout and (the run's last STATUS=) to systemd: passages
 * are the daemon's, encoded plus served by its embedding cache. */
static void index_summary(const struct ctx *c, const struct index_cfg *cfg,
                          const struct index_run *r)
{
    char line[256];
    snprintf(line, sizeof line,
             "indexed %ld files, %ld passages (%ld encoded, %ld from cache), skipped %ld, "
             "deleted %ld",
             r->indexed, r->passages, r->encoded, r->cached, r->skipped + r->unchanged, r->deleted);
    if (c->json)
        printf("{\"indexed\":%ld,\"passages\":%ld,\"encoded\":%ld,\"cached\":%ld,\"skipped\":%ld,"
               "\"deleted\":%ld,\"unchanged\":%ld,\"failed\":%ld}\n",
               r->indexed, r->passages, r->encoded, r->cached, r->skipped + r->unchanged,
               r->deleted, r->unchanged, r->failed);
    else
        printf("%s\n", line);
    fflush(stdout);
    sbc_notify_status(cfg->notify, 1, "%s: %s", cfg->what, line);
}

static int cmd_index(struct ctx *c, const struct args *a)
{
    struct index_cfg cfg;
    int rc = index_config(c, a, &cfg);
    if (rc != EXIT_OK) return rc;
    struct index_run r = {.name = "index"};
    for (int i = 0; i < a->n_pos && rc == EXIT_OK; i++) {
        char err[PATH_MAX + 256];
        int w = sbc_files_walk(a->pos[i], index_collect, &r, err, sizeof err);
        if (w < 0 && err[0]) {
            errmsg("index: %s", err);
            rc = EXIT_USAGE;
        } else if (w) {
            errmsg("out of memory");
            rc = EXIT_REPLY;
        }
    }
    if (rc == EXIT_OK) rc = index_files(c, &r, &cfg);
    if (rc == EXIT_OK) index_summary(c, &cfg, &r);
    if (rc == EXIT_OK && r.failed) rc = EXIT_REPLY;
    index_run_free(&r);
    sbc_notify_free(cfg.notify);
    return rc;
}

/*
 * sync DIR: the documents whose metadata "root" is DIR's absolute path (the ones index and sync
 * made from files under it) are made equal to DIR's files. First every file is indexed as index
 * does (the walk names each id it meets, skipped ones too); then the documents of that root are
 * listed, and those whose id the walk did not name, and that do not lie under a directory it
 * could not list, are deleted by id. A file that cannot be read or parsed is therefore kept as
 * it was stored, and a document of another root, or added otherwise, is never listed. Each step
 * is an idempotent write, so a sync interrupted anywhere is finished by the next.
 */
/* Whether the walk named id, or could not list a directory above it. */
static int sync_known(const struct index_run *r, const char *id)
{
    if (r->n_seen && bsearch(&id, r->seen, r->n_seen, sizeof *r->seen, cmp_str)) return 1;
    for (size_t i = 0; i < r->n_unknown; i++) {
        size_t len = strlen(r->unknown[i]);
        if (!len || (!strncmp(id, r->unknown[i], len) && id[len] == '/')) return 1;
    }
    return 0;
}

/* Deletes the ids of gone (an array of strings, consumed) in requests of max_ids. */
static int sync_delete(struct ctx *c, struct index_run *r, cJSON *gone, size_t max_ids)
{
    int rc = EXIT_OK;
    const cJSON *next = gone ? gone->child : NULL;
    while (rc == EXIT_OK && next) {
        cJSON *ids = cJSON_CreateArray();
        int n = 0;
        for (; ids && next && (size_t)n < max_ids; next = next->next, n++)
            cJSON_AddItemToArray(ids, cJSON_CreateString(next->valuestring));
        c->op = SBERT_PROTO_OP_DELETE;
        cJSON *req = request_new(c), *rep;
        req_set(c, req, "ids", ids);
        const cJSON *existed, *e;
        rc = call_member(c, req, "existed", cJSON_IsArray, n, &rep, &existed);
        if (rc != EXIT_OK) break;
        cJSON_ArrayForEach(e, existed) r->deleted += cJSON_IsTrue(e);
        cJSON_Delete(rep);
    }
    cJSON_Delete(gone);
    return rc;
}

/* The documents of root that the walk did not name, listed page by page, then deleted. */
static int sync_prune(struct ctx *c, struct index_run *r, const char *root,
                      const struct index_cfg *cfg)
{
    cJSON *gone = cJSON_CreateArray();
    char *cursor = NULL;
    int rc = gone ? EXIT_OK : EXIT_REPLY;
    do {
        c->op = SBERT_PROTO_OP_LIST;
        cJSON *req = request_new(c), *filter = cJSON_CreateObject(), *rep;
        cJSON_AddStringToObject(filter, "root", root);
        req_set(c, req, "filter", filter);
        req_set(c, req, "limit", cJSON_CreateNumber((double)cfg->max_ids));
        if (cursor) req_set(c, req, "cursor", cJSON_CreateString(cursor));
        cJSON *inc = req_set(c, req, "include", cJSON_CreateArray());
        cJSON_AddItemToArray(inc, cJSON_CreateString("metadata"));
        free(cursor);
        cursor = NULL;
        const cJSON *docs, *d;
        rc = call_member(c, req, "documents", cJSON_IsArray, -1, &rep, &docs);
        if (rc != EXIT_OK) break;
        cJSON_ArrayForEach(d, docs)
        {
            const char *id = str_or(d, "id", NULL);
            if (id && !sync_known(r, id)) cJSON_AddItemToArray(gone, cJSON_CreateString(id));
        }
        const char *cur = str_or(rep, "cursor", NULL);
        if (cur && !(cursor = strdup(cur))) rc = EXIT_REPLY;
        cJSON_Delete(rep);
    } while (rc == EXIT_OK && cursor);
    free(cursor);
    /* a tree that holds nothing at all while documents came from it is more likely unmounted or
     * replaced than emptied: deleting would cost re-encoding everything when it is back */
    int n_gone = cJSON_GetArraySize(gone);
    if (rc == EXIT_OK && n_gone > 0 && r->n_seen == 0) {
        errmsg("sync: %s holds no files, but %d document%s came from it: not deleting them (is "
               "it unmounted? if it was emptied on purpose: sbertctl delete --filter "
               "'{\"root\":\"%s\"}')",
               root, n_gone, n_gone == 1 ? "" : "s", root);
        rc = EXIT_REPLY;
    }
    if (rc != EXIT_OK) {
        cJSON_Delete(gone);
        return rc;
    }
    return sync_delete(c, r, gone, cfg->max_ids);
}

/* One sync of dir (a directory; root its resolved path) into r (reset first). */
static int sync_round(struct ctx *c, const struct index_cfg *cfg, const char *dir, const char *root,
                      struct index_run *r)
{
    index_run_free(r);
    r->name = "sync";
    r->track = 1;
    sbc_notify_status(cfg->notify, 1, "%s: walking the tree", cfg->what);
    char err[PATH_MAX + 256];
    int w = sbc_files_walk(dir, index_collect, r, err, sizeof err);
    if (w) {
        errmsg("%s", w < 0 && err[0] ? err : "out of memory");
        return EXIT_REPLY;
    }
    if (r->n_seen) qsort(r->seen, r->n_seen, sizeof *r->seen, cmp_str); /* NULL when empty */
    int rc = index_files(c, r, cfg);
    if (rc == EXIT_OK && !r->stopped) rc = sync_prune(c, r, root, cfg);
    return rc == EXIT_OK && r->failed ? EXIT_REPLY : rc;
}

/* A handler, so that SIGINT and SIGTERM interrupt sync --watch's wait instead of ending it. */
static void on_stop(int sig)
{
    (void)sig;
}

/* sync --watch after the first round: a round per burst of changes (500 ms quiet, at most 5 s),
 * and 30 s after a round that failed, until SIGINT or SIGTERM. */
static int sync_watch(struct ctx *c, const struct index_cfg *cfg, const char *dir, const char *root,
                      sbc_watch *w, const sigset_t *waitmask, struct index_run *r, int rc)
{
    for (;;) {
        char err[PATH_MAX + 256];
        int ev =
            sbc_watch_wait(w, rc == EXIT_OK ? -1 : 30000, 500, 5000, waitmask, err, sizeof err);
        if (ev == SBC_WATCH_SIGNAL) return EXIT_OK;
        if (ev < 0) {
            errmsg("sync: %s", err);
            return EXIT_REPLY;
        }
        long unwatched = sbc_watch_unwatched(w, err, sizeof err);
        if (unwatched) errmsg("sync: %ld directories not followed, the first %s", unwatched, err);
        rc = sync_round(c, cfg, dir, root, r);
        index_summary(c, cfg, r);
    }
}

static int cmd_sync(struct ctx *c, const struct args *a)
{
    const char *dir = a->pos[0];
    struct stat st;
    if (stat(dir, &st) != 0) return usage_error(c->cmd, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return usage_error(c->cmd, "%s: not a directory", dir);
    char *root = realpath(dir, NULL);
    if (!root) {
        errmsg("sync: %s: %s", dir, strerror(errno));
        return EXIT_REPLY;
    }
    sbc_watch *w = NULL;
    sigset_t waitmask;
    int rc = EXIT_OK;
    if (a->val[SY_WATCH]) {
        /* SIGINT and SIGTERM are blocked but for the wait, so that a signal never cuts a request
         * short; from before the first connection, so that no thread started for it takes them */
        sigset_t stop;
        sigemptyset(&stop);
        sigaddset(&stop, SIGINT);
        sigaddset(&stop, SIGTERM);
        sigprocmask(SIG_BLOCK, &stop, &waitmask);
        sigdelset(&waitmask, SIGINT);
        sigdelset(&waitmask, SIGTERM);
        struct sigaction sa = {.sa_handler = on_stop};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        char err[PATH_MAX + 256];
        long unwatched;
        if (sbc_watch_open(root, &w, err, sizeof err)) {
            errmsg("sync: %s", err);
            rc = EXIT_REPLY;
        } else if ((unwatched = sbc_watch_unwatched(w, err, sizeof err))) {
            errmsg("sync: %ld directories not followed, the first %s", unwatched, err);
        }
    }
    struct index_cfg cfg = {0};
    if (rc == EXIT_OK) rc = index_config(c, a, &cfg);
    struct index_run r = {0};
    char *what = NULL;
    if (rc == EXIT_OK && asprintf(&what, "sync %s", root) < 0) {
        what = NULL;
        errmsg("out of memory");
        rc = EXIT_REPLY;
    }
    if (rc == EXIT_OK) {
        cfg.what = what;
        rc = sync_round(c, &cfg, dir, root, &r);
        /* as index: a run that failed prints no summary, unless rounds follow */
        if (rc == EXIT_OK || w) index_summary(c, &cfg, &r);
        /* Type=notify (docs/sync.md): the first round is done; --watch follows from here */
        if (sbc_notify_send(cfg.notify, "READY=1"))
            errmsg("sync: cannot send READY=1 to NOTIFY_SOCKET: %s", strerror(errno));
        if (w) rc = sync_watch(c, &cfg, dir, root, w, &waitmask, &r, rc);
    }
    sbc_notify_free(cfg.notify);
    free(what);
    sbc_watch_free(w);
    index_run_free(&r);
    free(root);
    return rc;
}
#endif

/* ---- stats / health / backup / reindex ---------------------------------------------------- */

/* Flattens obj into KEY VALUE rows, nested keys joined with '.'. */
static void flatten(sbc_table *t, const char *prefix, const cJSON *obj)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, obj)
    {
        if (!prefix[0] && (strcmp(m->string, "v") == 0 || strcmp(m->string, "ok") == 0)) continue;
        char key[256];
        snprintf(key, sizeof key, "%s%s%s", prefix, prefix[0] ? "." : "", m->string);
        if (cJSON_IsObject(m) && cJSON_GetArraySize(m) > 0) {
            flatten(t, key, m);
            continue;
        }
        char *val;
        if (cJSON_IsString(m))
            val = strdup(m->valuestring);
        else if (cJSON_IsNumber(m) && m->valuedouble == (double)(long long)m->valuedouble)
            val = asprintf(&val, "%lld", (long long)m->valuedouble) < 0 ? NULL : val;
        else if (cJSON_IsNumber(m))
            val = asprintf(&val, "%.4g", m->valuedouble) < 0 ? NULL : val;
        else
            val = cJSON_PrintUnformatted(m);
        const char *row[2] = {key, val ? val : ""};
        sbc_table_add_row(t, row);
        free(val);
    }
}

/* Prints a reply object as KEY VALUE rows, or, with --json, as it came without the envelope
 * ("v", "ok", and the req_id sbertctl chose). */
static int print_object(struct ctx *c, cJSON *rep)
{
    int rc;
    cJSON_DeleteItemFromObjectCaseSensitive(rep, "req_id");
    if (c->json) {
        cJSON_DeleteItemFromObjectCaseSensitive(rep, "v");
        cJSON_DeleteItemFromObjectCaseSensitive(rep, "ok");
        rc = print_json(rep);
    } else {
        struct sbc_column cols[] = {{"KEY", 0}, {"VALUE", SBC_COL_SHRINK}};
        sbc_table *t;
        if (sbc_table_create(cols, 2, &t) < 0) {
            cJSON_Delete(rep);
            return EXIT_REPLY;
        }
        flatten(t, "", rep);
        rc = print_table(t);
    }
    cJSON_Delete(rep);
    return rc;
}

/* An op without members (stats, reindex): its reply as a key/value table. */
static int cmd_simple(struct ctx *c)
{
    cJSON *rep;
    int rc = call(c, request_new(c), &rep);
    if (rc != EXIT_OK) return rc;
    return print_object(c, rep);
}

static int cmd_stats(struct ctx *c, const struct args *a)
{
    (void)a;
    return cmd_simple(c);
}

static int cmd_health(struct ctx *c, const struct args *a)
{
    (void)a;
    cJSON *rep;
    int rc = call(c, request_new(c), &rep);
    if (rc != EXIT_OK) return rc;
    const char *status = str_or(rep, "status", "?");
    /* Only "serving" is healthy: a stopping daemon answers, but takes no new work. */
    int healthy = strcmp(status, "serving") == 0;
    if (c->json) {
        rc = print_object(c, rep);
    } else {
        const cJSON *docs = cJSON_GetObjectItemCaseSensitive(rep, "documents");
        const cJSON *up = cJSON_GetObjectItemCaseSensitive(rep, "uptime_s");
        printf("%s: %s, %.0f documents, up %.1f s\n", c->url, status,
               cJSON_IsNumber(docs) ? docs->valuedouble : 0.0,
               cJSON_IsNumber(up) ? up->valuedouble : 0.0);
        cJSON_Delete(rep);
    }
    if (rc == EXIT_OK && !healthy) {
        errmsg("health: sbertd at %s is %s", c->url, status);
        rc = EXIT_REPLY;
    }
    return rc;
}

static int cmd_reindex(struct ctx *c, const struct args *a)
{
    (void)a;
    return cmd_simple(c);
}

static const struct opt backup_opts[] = {
    {"rotate", 0, NULL, "DIR is a folder of dated backups: add one, prune the oldest"},
    {"keep", 0, "N", "with --rotate: how many backups to keep (default 7)"},
    {NULL, 0, NULL, NULL},
};
enum { B_ROTATE, B_KEEP };

/* --rotate after a backup: the oldest beyond --keep go; an object member names them. */
static int prune_backups(struct ctx *c, const char *root, long keep, cJSON *rep)
{
    char **removed, err[PATH_MAX + 256];
    size_t n;
    int rc = sbc_rotate_prune(root, (int)keep, &removed, &n, err, sizeof err);
    cJSON *list = cJSON_AddArrayToObject(rep, "removed");
    for (size_t i = 0; i < n; i++) {
        if (list) cJSON_AddItemToArray(list, cJSON_CreateString(removed[i]));
        free(removed[i]);
    }
    free(removed);
    if (rc < 0) {
        errmsg("%s: the backup was written, but pruning failed: %s", cmd_name(c->cmd), err);
        return EXIT_REPLY;
    }
    return EXIT_OK;
}

static int cmd_backup(struct ctx *c, const struct args *a)
{
    /* The daemon resolves paths against its own working directory, which is rarely ours: send
     * an absolute path. */
    char abs[PATH_MAX];
    const char *dir = a->pos[0];
    int rotate = a->val[B_ROTATE] != NULL;
    long keep = 7;
    if (a->val[B_KEEP] && (!rotate || parse_int(a->val[B_KEEP], 1, 100000, &keep) < 0))
        return usage_error(c->cmd,
                           rotate ? "--keep: expected a positive integer, not \"%s\""
                                  : "--keep needs --rotate",
                           a->val[B_KEEP]);
    if (dir[0] != '/') {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd) ||
            snprintf(abs, sizeof abs, "%s/%s", cwd, dir) >= (int)sizeof abs) {
            errmsg("backup: cannot make %s absolute", dir);
            return EXIT_USAGE;
        }
        dir = abs;
    }
    /* --rotate: a new dated folder under DIR (this host's view of it: run it on the daemon's
     * host, as the backup timer does) */
    char target[PATH_MAX], name[64], err[PATH_MAX + 64];
    if (rotate) {
        if (sbc_rotate_next(dir, time(NULL), name, sizeof name, err, sizeof err) < 0) {
            errmsg("backup: %s", err);
            return EXIT_USAGE;
        }
        if (snprintf(target, sizeof target, "%s/%s", dir, name) >= (int)sizeof target) {
            errmsg("backup: %s: path too long", dir);
            return EXIT_USAGE;
        }
    }
    cJSON *req = request_new(c);
    req_set(c, req, "dir", cJSON_CreateString(rotate ? target : dir));
    cJSON *rep;
    int rc = call(c, req, &rep);
    if (rc != EXIT_OK) return rc;
    if (rotate && (rc = prune_backups(c, dir, keep, rep)) != EXIT_OK) {
        cJSON_Delete(rep);
        return rc;
    }
    return print_object(c, rep);
}

/* ---- restore ------------------------------------------------------------------------------- */

static const struct opt restore_opts[] = {
    {"data", 0, "DIR", "the store directory to replace (default /var/lib/sbertd)"},
    {NULL, 0, NULL, NULL},
};
enum { R_DATA };

#ifdef SBERTCTL_FILES
/* The checked store as a JSON object, for printing. */
static cJSON *verify_json(const char *dir, const struct sbert_index_verify_report *v)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "dir", dir);
    cJSON_AddNumberToObject(o, "documents", (double)v->documents);
    cJSON_AddStringToObject(o, "model", v->model_name);
    cJSON_AddStringToObject(o, "model_sha256", v->weights_sha256);
    cJSON_AddNumberToObject(o, "dim", v->dim);
    cJSON_AddStringToObject(o, "index", v->spec);
    cJSON_AddBoolToObject(o, "snapshot", v->snapshot);
    return o;
}

/* Needs no daemon: the service is stopped. The backup is checked whole before anything moves,
 * and the restored directory again after the copy. */
static int cmd_restore(struct ctx *c, const struct args *a)
{
    const char *backup = a->pos[0];
    const char *data = a->val[R_DATA] ? a->val[R_DATA] : "/var/lib/sbertd";
    struct sbert_index_verify_report v;
    char err[PATH_MAX + 512];
    int rc = sbert_index_verify(backup, &v, err, sizeof err);
    if (rc) {
        errmsg("restore: %s is not a sound backup, nothing was changed: %s", backup, err);
        return EXIT_REPLY;
    }
    char aside[PATH_MAX + 64];
    if (sbc_restore(backup, data, aside, sizeof aside, err, sizeof err) < 0) {
        errmsg("restore: %s", err);
        return EXIT_REPLY;
    }
    struct sbert_index_verify_report after;
    if ((rc = sbert_index_verify(data, &after, err, sizeof err)) ||
        after.documents != v.documents) {
        errmsg("restore: the copy in %s does not check out: %s%s%s", data,
               rc ? err : "its document count differs from the backup's",
               aside[0] ? "; the previous store is in " : "", aside);
        return EXIT_REPLY;
    }
    cJSON *o = verify_json(data, &after);
    cJSON_AddStringToObject(o, "backup", backup);
    if (aside[0])
        cJSON_AddStringToObject(o, "previous", aside);
    else
        cJSON_AddNullToObject(o, "previous");
    return print_object(c, o);
}
#else
/*
 * index and restore live in sbertctl-files, the same program built with extract/ (libxml2,
 * poppler, glib: ~50 shared libraries) and index/: loading those cost every sbertctl process
 * ~10 ms (1.3 ms -> 11 ms for `sbertctl --help`), which a script running sbertctl query in a loop
 * pays for nothing. This sbertctl runs it from beside itself with the same arguments.
 */
static char **g_argv;

static int exec_files(struct ctx *c, const struct args *a)
{
    (void)a;
    char self[PATH_MAX], path[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        errmsg("%s: cannot find this program's path: %s", cmd_name(c->cmd), strerror(errno));
        return EXIT_REPLY;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash) *slash = '\0';
    snprintf(path, sizeof path, "%s/sbertctl-files", self);
    execv(path, g_argv);
    errmsg("%s: cannot run %s: %s", cmd_name(c->cmd), path, strerror(errno));
    return EXIT_REPLY;
}
#define cmd_index exec_files
#define cmd_sync exec_files
#define cmd_restore exec_files
#endif

/* ---- collection --------------------------------------------------------------------------- */

static const struct opt collection_opts[] = {
    {"index", 0, "SPEC", "create: the vector index (FAISS factory string, e.g. HNSW32,Flat)"},
    {"ef-search", 0, "N", "create: HNSW search depth"},
    {"nprobe", 0, "N", "create: IVF lists probed per query"},
    {"keyword-language", 0, "LANG", "create: the keyword index's language, or off"},
    {NULL, 0, NULL, NULL},
};
enum { CL_INDEX, CL_EF_SEARCH, CL_NPROBE, CL_KEYWORD_LANGUAGE };

/* collection list: one row per collection, or the reply with --json. */
static int collection_list(struct ctx *c)
{
    cJSON *rep;
    int rc = call(c, request_new(c), &rep);
    if (rc != EXIT_OK || c->json) return rc == EXIT_OK ? print_object(c, rep) : rc;
    struct sbc_column cols[] = {
        {"NAME", 0}, {"DOCUMENTS", 0}, {"INDEX", 0}, {"DIM", 0}, {"MODEL", SBC_COL_SHRINK}};
    sbc_table *t;
    if (sbc_table_create(cols, 5, &t) < 0) {
        cJSON_Delete(rep);
        return EXIT_REPLY;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(rep, "collections"))
    {
        char docs[32], dim[16];
        snprintf(docs, sizeof docs, "%.0f",
                 cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(e, "documents")));
        snprintf(dim, sizeof dim, "%.0f",
                 cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(e, "dim")));
        const char *row[5] = {str_or(e, "name", "?"), docs, str_or(e, "index", "?"), dim,
                              str_or(e, "model", "?")};
        sbc_table_add_row(t, row);
    }
    cJSON_Delete(rep);
    return print_table(t);
}

/* collection create NAME: the options as the op's members. */
static int collection_create(struct ctx *c, const struct args *a, cJSON *req)
{
    if (a->val[CL_INDEX]) req_set(c, req, "index", cJSON_CreateString(a->val[CL_INDEX]));
    if (a->val[CL_KEYWORD_LANGUAGE])
        req_set(c, req, "keyword_language", cJSON_CreateString(a->val[CL_KEYWORD_LANGUAGE]));
    static const struct {
        int opt;
        const char *member;
    } ints[] = {{CL_EF_SEARCH, "ef_search"}, {CL_NPROBE, "nprobe"}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        long v;
        if (!a->val[ints[i].opt]) continue;
        if (parse_int(a->val[ints[i].opt], 0, 1 << 20, &v) < 0) {
            cJSON_Delete(req);
            return usage_error(c->cmd, "--%s: expected an integer in 0..%d, not \"%s\"",
                               collection_opts[ints[i].opt].lname, 1 << 20, a->val[ints[i].opt]);
        }
        req_set(c, req, ints[i].member, cJSON_CreateNumber((double)v));
    }
    cJSON *rep;
    int rc = call(c, req, &rep);
    return rc == EXIT_OK ? print_object(c, rep) : rc;
}

static int cmd_collection(struct ctx *c, const struct args *a)
{
    static const struct {
        const char *name;
        enum sbert_proto_op_id op;
        int takes_name;
    } subs[] = {
        {"create", SBERT_PROTO_OP_CREATE_COLLECTION, 1},
        {"list", SBERT_PROTO_OP_LIST_COLLECTIONS, 0},
        {"describe", SBERT_PROTO_OP_DESCRIBE_COLLECTION, 1},
        {"drop", SBERT_PROTO_OP_DROP_COLLECTION, 1},
    };
    size_t k = 0;
    while (k < sizeof subs / sizeof subs[0] && strcmp(subs[k].name, a->pos[0]) != 0)
        k++;
    if (k == sizeof subs / sizeof subs[0])
        return usage_error(c->cmd, "unknown collection command \"%s\"", a->pos[0]);
    if (a->n_pos != 1 + subs[k].takes_name)
        return usage_error(c->cmd, "collection %s %s", subs[k].name,
                           subs[k].takes_name ? "needs NAME" : "takes no NAME");
    for (int i = CL_INDEX; i <= CL_KEYWORD_LANGUAGE; i++)
        if (a->val[i] && subs[k].op != SBERT_PROTO_OP_CREATE_COLLECTION)
            return usage_error(c->cmd, "--%s is an option of collection create",
                               collection_opts[i].lname);
    c->op = subs[k].op;
    if (subs[k].op == SBERT_PROTO_OP_LIST_COLLECTIONS) return collection_list(c);
    cJSON *req = request_new(c);
    req_set(c, req, "name", cJSON_CreateString(a->pos[1]));
    if (subs[k].op == SBERT_PROTO_OP_CREATE_COLLECTION) return collection_create(c, a, req);
    cJSON *rep;
    int rc = call(c, req, &rep);
    return rc == EXIT_OK ? print_object(c, rep) : rc;
}

/* ---- the command table -------------------------------------------------------------------- */

static const struct opt no_opts[] = {{NULL, 0, NULL, NULL}};

static const struct command commands[] = {
    {SBERT_PROTO_OP_ADD,
     "TEXT... | --file FILE [--format txt|jsonl|csv] [--text-column C] [--id-column C]",
     "add documents (upsert): texts on the command line, or a file",
     "Files: txt is one document per line; jsonl one object per line with \"text\" and optional\n"
     "\"id\" and \"metadata\"; csv (RFC 4180) has a header, --text-column names the text, "
     "--id-column\n"
     "the id, and every other column becomes a metadata string. FILE \"-\" reads standard input.\n"
     "Documents go in batches with a request id, so a batch re-sent after a timeout is applied\n"
     "once. --in-flight batches are sent before the first reply is awaited, each on its own\n"
     "connection, so sbertd encodes one while it commits another; a batch naming an id that a\n"
     "batch in flight names waits for it, so the last line with an id is the one kept.\n"
     "A progress bar (count, rate, ETA) shows on a terminal. Prints the ids in input order\n"
     "(--json: {\"ids\":[...]}); a document with an existing id replaces it.",
     add_opts, 0, -1, 120, cmd_add, NULL},
    {SBERT_PROTO_OP_QUERY,
     "[-k N] [--filter JSON] [--min-score S] [--mode M] [--diversity D] TEXT | --file FILE",
     "the documents most similar to TEXT, or to each line of a file",
     "--json: {\"results\":[{\"id\",\"score\",\"text\",\"metadata\"}]}\n"
     "--file FILE: one query text a line (blank lines skipped; \"-\" reads standard input), sent\n"
     "as batch queries of up to the daemon's max_batch texts (fewer when the reply would be too\n"
     "large). Prints each query's table after a line \"query N (line L): TEXT\"; --json prints\n"
     "one line per query, {\"query\":TEXT,\"results\":[...]}, in input order.\n"
     "--mode keyword ranks by BM25 over the words (stemmed), hybrid fuses that ranking with the\n"
     "vectors' (names, codes and rare terms the model misses); their --json results also carry\n"
     "dense_score, keyword_score, dense_rank and keyword_rank. --diversity D (0..1) trades\n"
     "relevance for results unlike each other (maximal marginal relevance).",
     query_opts, 0, 1, 30, cmd_query, NULL},
    {SBERT_PROTO_OP_GET, "ID", "show one document", NULL, no_opts, 1, 1, 30, cmd_get, NULL},
    {SBERT_PROTO_OP_DELETE, "ID... | --filter JSON", "delete documents, by id or by filter",
     "Ids that do not exist are named on stderr; the exit status is still 0. --filter deletes\n"
     "every document the filter accepts (in chunks of one transaction each) and prints how many\n"
     "(--json: {\"deleted\":N}); the empty filter {} is refused by sbertd.",
     delete_opts, 0, -1, 3600, cmd_delete, NULL},
    {SBERT_PROTO_OP_LIST, "[--filter JSON] [--limit N] [--cursor C] [--all]",
     "documents in id order, a page at a time",
     "Prints a table of the page and, on stderr, the command for the next page when more remain.\n"
     "--json prints JSON Lines, one {\"id\",\"text\",\"metadata\"} a line, then\n"
     "{\"cursor\":C} when more remain. --all goes on page after page to the end: with --json, an\n"
     "export that `sbertctl add --file F.jsonl` reads back (texts are encoded again).",
     list_opts, 0, 0, 60, cmd_list, NULL},
    {SBERT_PROTO_OP_COUNT, "[--filter JSON]", "the number of documents (a filter accepts)",
     "--json: {\"count\":N}", count_opts, 0, 0, 120, cmd_count, NULL},
    {SBERT_PROTO_OP_PATCH, "ID [KEY=VALUE...] [--set JSON] [--unset KEY,...]",
     "change a document's metadata without encoding it again",
     "KEY=VALUE sets KEY: VALUE is JSON when it parses (3, true, [1,2], \"x\"), else a string.\n"
     "--unset removes keys (before the sets). Exit status 1 when ID does not exist.\n"
     "--json: {\"id\",\"found\"}.",
     patch_opts, 1, -1, 60, cmd_patch, NULL},
    {SBERT_PROTO_OP_SIMILARITY, "A B", "cosine similarity of two texts", "--json: {\"score\":S}",
     no_opts, 2, 2, 30, cmd_similarity, NULL},
    {SBERT_PROTO_OP_ENCODE, "TEXT...", "embeddings of texts (the model's encode())",
     "--json: {\"embeddings\":[[...],...]}", no_opts, 1, -1, 60, cmd_encode, NULL},
    {SBERT_PROTO_OP_PAIRS, "[-n N] [--min-score S] [TEXT...]",
     "the most similar pairs: among the given texts, or in the collection",
     "--json: {\"pairs\":[{\"a\":{\"id\",\"text\"},\"b\":{\"id\",\"text\"},\"score\"}]} (ids are "
     "null "
     "for\ngiven texts).",
     pairs_opts, 0, -1, 120, cmd_pairs, NULL},
    {SBERT_PROTO_OP_STATS, "", "daemon statistics", "--json prints the daemon's object.", no_opts,
     0, 0, 30, cmd_stats, NULL},
    {SBERT_PROTO_OP_HEALTH, "", "check that sbertd serves",
     "Exit status 0 when it answers \"serving\", 1 when it answers anything else (stopping).",
     no_opts, 0, 0, 10, cmd_health, NULL},
    {SBERT_PROTO_OP_BACKUP, "[--rotate [--keep N]] DIR",
     "write a consistent copy of the store and index to DIR on the server",
     "A relative DIR is made absolute against this shell's directory. DIR must not exist or be\n"
     "empty. --rotate: DIR holds dated backups instead; this one goes to\n"
     "DIR/sbertd-YYYYMMDDTHHMMSSZ (UTC), then all but the newest N (default 7) are removed: only\n"
     "folders of that name holding store.mdb and plain files, nothing else in DIR. --rotate reads\n"
     "DIR on this host, so run it where sbertd runs (sbertd-backup.timer does). --json adds\n"
     "\"removed\":[names].",
     backup_opts, 1, 1, 600, cmd_backup, NULL},
    {SBERT_PROTO_OP_REINDEX, "", "rebuild the vector index from the store", NULL, no_opts, 0, 0,
     600, cmd_reindex, NULL},
    {SBERT_PROTO_OP_CREATE_COLLECTION,
     "create NAME [--index SPEC] [--ef-search N] [--nprobe N] [--keyword-language L] | list | "
     "describe NAME | drop NAME",
     "create, list, describe and drop collections",
     "A collection is a document store of its own (documents, vector index, keyword index),\n"
     "named with -c/--collection by every document command (add, query, get, delete, list,\n"
     "count, patch, pairs, backup, reindex, index); without it they use \"default\", the store\n"
     "sbertd always had. NAME: 1..64 of A-Z a-z 0-9 _ -, not starting with -. create's options\n"
     "default to the daemon's settings. list prints NAME, DOCUMENTS, INDEX, DIM and MODEL;\n"
     "describe adds the keyword language, ef_search, nprobe, the bytes on disk and the last\n"
     "snapshot's time; drop deletes the collection and its documents (not \"default\").\n"
     "--json prints the daemon's reply.",
     collection_opts, 1, 2, 600, cmd_collection, "collection"},
    {SBERT_PROTO_OP_BACKUP, "[--data DIR] BACKUP",
     "replace a stopped store with a backup, after checking it",
     "Runs on the server with sbertd stopped (systemctl stop sbertd), as the store's owner or\n"
     "root. BACKUP (a folder `sbertctl backup` wrote) is checked whole first: every record, its\n"
     "vector and id, and the index snapshot's checksums; a damaged one changes nothing. Then DIR\n"
     "(default /var/lib/sbertd) is kept as DIR.pre-restore-YYYYMMDDTHHMMSSZ, the backup is copied\n"
     "into a fresh DIR with DIR's owner and mode, fsynced, and checked again. Refused while a\n"
     "running sbertd holds DIR. --json prints the restored store's object.",
     restore_opts, 1, 1, 30, cmd_restore, "restore"},
    {SBERT_PROTO_OP_ADD, "[--batch N] [--max-file-bytes N] PATH...",
     "index files: text, Markdown, HTML and PDF, by path",
     "Each regular file under each PATH (directories walked in name order, names starting with\n"
     "\".\" and symbolic links skipped) becomes one document whose id is its path relative to\n"
     "PATH, with metadata path, root (the absolute directory path is relative to), title, format,\n"
     "size, mtime, mtime_nsec and sha256. HTML is read with libxml2, PDF with poppler. A file\n"
     "whose size, time and root match what is stored is skipped unread; one whose content hash\n"
     "matches is skipped unencoded. A file that cannot be read or parsed, or whose text is\n"
     "longer than the daemon's max_text_bytes, is named on stderr and skipped; the run goes on.\n"
     "Prints: indexed N files, M passages (K encoded, H from cache), skipped S, deleted D\n"
     "(--json: {\"indexed\",\"passages\",\"encoded\",\"cached\",\"skipped\",\n"
     "\"deleted\",\"unchanged\",\"failed\"}).",
     index_opts, 1, -1, 300, cmd_index, "index"},
    {SBERT_PROTO_OP_ADD, "[--watch] [--batch N] [--max-file-bytes N] DIR",
     "make the documents indexed from DIR equal to its files",
     "Indexes DIR as index does, then deletes the documents indexed from DIR (metadata \"root\":\n"
     "DIR's absolute path) whose file is gone. A file that cannot be read or parsed is named on\n"
     "stderr and skipped, and its document, if any, kept; documents of other roots, and those\n"
     "added otherwise, are never touched. An interrupted sync is finished by the next one. Ids\n"
     "are paths relative to DIR: two trees synced into one store must not hold the same relative\n"
     "paths (each sync would replace the other's document). Run one sync of a DIR at a time.\n"
     "Prints the summary line of index, deleted D counting the documents\n"
     "removed. --watch: after the first sync, follows DIR with inotify and syncs again 500 ms\n"
     "after changes stop (a summary line each time; 30 s after a round that failed) until\n"
     "SIGINT or SIGTERM, which end it with status 0.",
     sync_opts, 1, 1, 300, cmd_sync, "sync"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void print_opts(FILE *f, const struct opt *opts)
{
    for (const struct opt *o = opts; o->lname; o++) {
        char lhs[64], shrt[8] = "    ";
        if (o->sname) snprintf(shrt, sizeof shrt, "-%c, ", o->sname);
        snprintf(lhs, sizeof lhs, "%s--%s%s%s", shrt, o->lname, o->arg ? " " : "",
                 o->arg ? o->arg : "");
        fprintf(f, "  %-26s %s\n", lhs, o->help);
    }
}

static void print_endpoint_help(FILE *f)
{
    fputs("Endpoint: --socket URL, else $SBERTD_SOCKET, else ipc://" CHECKOUT_SOCKET_PATH
          " when that\nsocket exists (a checkout's scripts/run.sh), else ipc://" SYSTEM_SOCKET_PATH
          " when it exists\n(the installed service), else ipc://" CHECKOUT_SOCKET_PATH ".\n",
          f);
}

static void print_main_help(FILE *f)
{
    fputs("usage: sbertctl [OPTIONS] COMMAND [ARGS...]\n\n"
          "The command-line client of sbertd, the Sentence-BERT semantic search daemon.\n\n"
          "Commands:\n",
          f);
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-11s %s\n", cmd_name(&commands[i]), commands[i].summary);
    fputs("\nOptions (before or after COMMAND):\n", f);
    print_opts(f, common_opts);
    fputs("      --version              print the version\n\n", f);
    print_endpoint_help(f);
    fputs("\nExit status: 0 ok, 1 sbertd replied with an error (or an input file is bad),\n"
          "2 usage error, 3 sbertd cannot be reached.\n"
          "sbertctl COMMAND --help describes one command.\n",
          f);
}

static void print_cmd_help(FILE *f, const struct command *cmd)
{
    fprintf(f, "usage: sbertctl %s %s\n\n%s.\n", cmd_name(cmd), cmd->usage, cmd->summary);
    if (cmd->help) fprintf(f, "\n%s\n", cmd->help);
    if (cmd->opts[0].lname) {
        fputs("\nOptions:\n", f);
        print_opts(f, cmd->opts);
    }
    fputs("\nCommon options:\n", f);
    print_opts(f, common_opts);
    fprintf(f, "\nDefault reply timeout: %.0f s.\n", cmd->timeout_s);
    print_endpoint_help(f);
}

/* ---- argument parsing --------------------------------------------------------------------- */

/* Looks up a long (name, len) or short (sname) option in opts; returns its index or -1. */
static int find_opt(const struct opt *opts, const char *name, size_t len, char sname)
{
    for (int i = 0; opts[i].lname; i++)
        if (sname ? opts[i].sname == sname
                  : strlen(opts[i].lname) == len && strncmp(opts[i].lname, name, len) == 0)
            return i;
    return -1;
}

/*
 * Parses argv[from..argc) against the command's options and the common ones. Options and
 * positionals mix freely; "--" ends options; "-" alone is a positional (standard input).
 * Fills a (positionals point into argv) and common[N_COMMON]. Returns 0 or EXIT_USAGE (printed).
 */
static int parse_args(const struct command *cmd, int argc, char **argv, int from, struct args *a,
                      const char **common)
{
    static const struct opt empty[] = {{NULL, 0, NULL, NULL}};
    const struct opt *opts = cmd ? cmd->opts : empty;
    a->pos = calloc((size_t)argc + 1, sizeof *a->pos);
    if (!a->pos) return EXIT_USAGE;
    int only_pos = 0;
    for (int i = from; i < argc; i++) {
        char *s = argv[i];
        if (only_pos || s[0] != '-' || s[1] == '\0') {
            a->pos[a->n_pos++] = s;
            continue;
        }
        if (strcmp(s, "--") == 0) {
            only_pos = 1;
            continue;
        }
        const char *name, *val = NULL;
        size_t len;
        char sname = 0;
        if (s[1] == '-') {
            name = s + 2;
            const char *eq = strchr(name, '=');
            len = eq ? (size_t)(eq - name) : strlen(name);
            if (eq) val = eq + 1;
        } else {
            sname = s[1];
            name = s + 1;
            len = 1;
            if (s[2]) val = s + 2;
        }
        const struct opt *o;
        const char **slot;
        int k = find_opt(opts, name, len, sname);
        if (k >= 0) {
            o = &opts[k];
            slot = &a->val[k];
        } else if ((k = find_opt(common_opts, name, len, sname)) >= 0) {
            o = &common_opts[k];
            slot = &common[k];
        } else {
            return usage_error(cmd, "unknown option %s", s);
        }
        if (o->arg) {
            if (!val) {
                if (i + 1 >= argc) return usage_error(cmd, "%s needs a value (%s)", s, o->arg);
                val = argv[++i];
            }
            *slot = val;
        } else {
            if (val) return usage_error(cmd, "--%s takes no value", o->lname);
            *slot = "";
        }
    }
    return 0;
}

static void resolve_endpoint(struct ctx *c, const char *flag)
{
    const char *env = getenv("SBERTD_SOCKET");
    struct stat st;
    if (flag && *flag)
        snprintf(c->url, sizeof c->url, "%s", flag);
    else if (env && *env)
        snprintf(c->url, sizeof c->url, "%s", env);
    else if (stat(CHECKOUT_SOCKET_PATH, &st) != 0 && stat(SYSTEM_SOCKET_PATH, &st) == 0)
        snprintf(c->url, sizeof c->url, "ipc://%s", SYSTEM_SOCKET_PATH);
    else
        snprintf(c->url, sizeof c->url, "ipc://%s", CHECKOUT_SOCKET_PATH);
}

int main(int argc, char **argv)
{
#ifndef SBERTCTL_FILES
    g_argv = argv;
#endif
    /* Global options may precede the command: find the first argument that is not one of them. */
    const char *common[N_COMMON] = {0};
    int i = 1;
    for (; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--version") == 0) {
            printf("sbertctl %s (protocol v%d)\n", SBERTCTL_VERSION, SBERT_PROTO_VERSION);
            return EXIT_OK;
        }
        if (s[0] != '-') break;
        const char *name = s[1] == '-' ? s + 2 : s + 1;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        int k =
            s[1] == '-' ? find_opt(common_opts, name, len, 0) : find_opt(common_opts, "", 0, s[1]);
        if (k < 0 || (s[1] != '-' && s[2])) return usage_error(NULL, "unknown option %s", s);
        if (common_opts[k].arg) {
            if (eq)
                common[k] = eq + 1;
            else if (i + 1 < argc)
                common[k] = argv[++i];
            else
                return usage_error(NULL, "%s needs a value (%s)", s, common_opts[k].arg);
        } else {
            common[k] = "";
        }
    }
    if (i >= argc) {
        print_main_help(common[CO_HELP] ? stdout : stderr);
        return common[CO_HELP] ? EXIT_OK : EXIT_USAGE;
    }
    if (strcmp(argv[i], "help") == 0) {
        const struct command *cmd = NULL;
        for (size_t k = 0; i + 1 < argc && k < N_COMMANDS; k++)
            if (strcmp(cmd_name(&commands[k]), argv[i + 1]) == 0) cmd = &commands[k];
        if (cmd)
            print_cmd_help(stdout, cmd);
        else
            print_main_help(stdout);
        return EXIT_OK;
    }
    const struct command *cmd = NULL;
    for (size_t k = 0; k < N_COMMANDS; k++)
        if (strcmp(cmd_name(&commands[k]), argv[i]) == 0) cmd = &commands[k];
    if (!cmd) return usage_error(NULL, "unknown command \"%s\"", argv[i]);

    struct args a = {0};
    int rc = parse_args(cmd, argc, argv, i + 1, &a, common);
    if (rc != 0) {
        free(a.pos);
        return rc;
    }
    if (common[CO_HELP]) {
        print_cmd_help(stdout, cmd);
        free(a.pos);
        return EXIT_OK;
    }
    if (a.n_pos < cmd->min_pos || (cmd->max_pos >= 0 && a.n_pos > cmd->max_pos)) {
        free(a.pos);
        return usage_error(cmd, "%s arguments", a.n_pos < cmd->min_pos ? "missing" : "too many");
    }
    struct ctx c = {
        .cmd = cmd, .op = cmd->op, .timeout_s = cmd->timeout_s, .json = common[CO_JSON] != NULL};
    resolve_endpoint(&c, common[CO_SOCKET]);
    c.token = common[CO_TOKEN] ? common[CO_TOKEN] : getenv("SBERTD_TOKEN");
    if (c.token && !*c.token) c.token = NULL;
    c.collection = common[CO_COLLECTION] ? common[CO_COLLECTION] : getenv("SBERTD_COLLECTION");
    if (c.collection && !*c.collection) c.collection = NULL;
    if (common[CO_TIMEOUT] && (parse_double(common[CO_TIMEOUT], &c.timeout_s) < 0 ||
                               c.timeout_s <= 0 || c.timeout_s > 86400)) {
        free(a.pos);
        return usage_error(cmd, "--timeout: expected seconds in (0, 86400], not \"%s\"",
                           common[CO_TIMEOUT]);
    }
    rc = cmd->run(&c, &a);
    sbc_conn_close(c.conn);
    free(a.pos);
    if (fflush(stdout) != 0 && rc == EXIT_OK) {
        errmsg("writing the output: %s", strerror(errno));
        rc = EXIT_REPLY;
    }
    return rc;
}
