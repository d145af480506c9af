/*
 * http_testserver.c — sbert_http with a fake daemon behind it, for test_http.py and
 * test_http_page.py. The fake handle() parses every request with the protocol's own parser (so a
 * request the HTTP layer built wrongly fails as it would in sbertd) and answers:
 *   health      {"status":"serving",...}
 *   query       three fixed hits, one with a passage; text "slow" waits 50 ms (concurrency)
 *   stats       echoes the request it received as "received" and the most requests it ever had
 *               in progress at once as "max_inflight"
 *   encode      an error reply whose code is texts[0] ("busy", "no_space", ...)
 *   add         no reply at all (handle() fails)
 *   other ops   {"v":1,"ok":true}
 * A token given with --token is checked in the request like sbertd's auth_token.
 *
 *   http_testserver [--address A] [--fd] [--allow-remote] [--token T] [--max-body N]
 *                   [--timeout S] [--deadline S] [--threads N] [--no-metrics]
 * Prints "PORT <n>" once serving, then serves until stdin closes; exit status 0, or 2 when
 * sbert_http_start() failed (its message on stderr, "ERROR <code> <message>").
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sbert_http.h"
#include "sbert_proto.h"

static const char *g_token;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static int g_inflight, g_max_inflight;

static int reply_json(cJSON *r, char **reply, size_t *reply_len)
{
    int rc = sbert_proto_print(r, reply, reply_len);
    cJSON_Delete(r);
    return rc;
}

static int reply_error(int code, const char *msg, const char *req_id, char **reply,
                       size_t *reply_len)
{
    struct sbert_proto_error e;
    sbert_proto_error_set(&e, code, -1, "%s", msg);
    return reply_json(sbert_proto_reply_error(&e, req_id), reply, reply_len);
}

static void add_hit(cJSON *results, const char *id, double score, const char *text,
                    const char *passage, const char *lang)
{
    cJSON *h = cJSON_CreateObject();
    cJSON_AddStringToObject(h, "id", id);
    cJSON_AddNumberToObject(h, "score", score);
    cJSON_AddStringToObject(h, "text", text);
    if (passage) cJSON_AddStringToObject(h, "passage", passage);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(h, "metadata"), "lang", lang);
    cJSON_AddItemToArray(results, h);
}

static int answer(const struct sbert_proto_request *req, const char *json, size_t len, char **reply,
                  size_t *reply_len)
{
    if (g_token && (!req->token || strcmp(req->token, g_token) != 0))
        return reply_error(SBERT_PROTO_EUNAUTHORIZED, "token missing or wrong", req->req_id, reply,
                           reply_len);
    const struct sbert_proto_op *op = sbert_proto_op_find(req->op);
    if (!op)
        return reply_error(SBERT_PROTO_EUNKNOWN_OP, "unknown op", req->req_id, reply, reply_len);
    cJSON *r = sbert_proto_reply_new(req->req_id);
    switch (op->id) {
    case SBERT_PROTO_OP_HEALTH:
        cJSON_AddStringToObject(r, "status", "serving");
        cJSON_AddNumberToObject(r, "uptime_s", 1.5);
        cJSON_AddNumberToObject(r, "documents", 3);
        break;
    case SBERT_PROTO_OP_QUERY: {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(req->root, "text");
        if (cJSON_IsString(t) && strcmp(t->valuestring, "slow") == 0) usleep(50 * 1000);
        const cJSON *coll = cJSON_GetObjectItemCaseSensitive(req->root, "collection");
        if (coll) { /* as sbertd does until collections exist */
            cJSON_Delete(r);
            return reply_error(SBERT_PROTO_EBAD_REQUEST, "query has no member \"collection\"",
                               req->req_id, reply, reply_len);
        }
        cJSON *res = cJSON_AddArrayToObject(r, "results");
        add_hit(res, "cat", 0.712345612, "The cat sits outside", NULL, "en");
        add_hit(res, "report-7", 0.5234, "Annual report 2025",
                "Revenue grew because the cat café opened a second shop.", "en");
        add_hit(res, "c2", 0.41234, "Le chat joue dans le jardin <b>&amp;</b>", NULL, "fr");
        cJSON_AddBoolToObject(r, "truncated", 0);
        break;
    }
    case SBERT_PROTO_OP_STATS:
        cJSON_AddItemToObject(r, "received", cJSON_CreateString(json));
        cJSON_AddNumberToObject(r, "received_len", (double)len);
        pthread_mutex_lock(&g_mu);
        cJSON_AddNumberToObject(r, "max_inflight", g_max_inflight);
        pthread_mutex_unlock(&g_mu);
        break;
    case SBERT_PROTO_OP_ENCODE: {
        const cJSON *texts = cJSON_GetObjectItemCaseSensitive(req->root, "texts");
        const cJSON *first = cJSON_GetArrayItem(texts, 0);
        cJSON_Delete(r);
        int code = cJSON_IsString(first) ? sbert_proto_code_from_name(first->valuestring)
                                         : SBERT_PROTO_EINTERNAL;
        if (code == SBERT_PROTO_EUNKNOWN_CODE) { /* a code of a later version */
            const char *future = "{\"v\":1,\"ok\":false,\"error\":{\"code\":\"new_code\","
                                 "\"message\":\"from the future\"}}";
            *reply = strdup(future);
            *reply_len = strlen(future);
            return *reply ? 0 : -1;
        }
        return reply_error(code, "as asked", req->req_id, reply, reply_len);
    }
    case SBERT_PROTO_OP_ADD:
        cJSON_Delete(r);
        return -1;
    default:
        break;
    }
    return reply_json(r, reply, reply_len);
}

static int fake_handle(const char *json, size_t len, char **reply, size_t *reply_len, void *user)
{
    (void)user;
    pthread_mutex_lock(&g_mu);
    if (++g_inflight > g_max_inflight) g_max_inflight = g_inflight;
    pthread_mutex_unlock(&g_mu);
    struct sbert_proto_request req;
    struct sbert_proto_error err;
    char *req_id = NULL;
    int rc = sbert_proto_request_parse(json, len, &req, &req_id, &err);
    if (rc != 0)
        rc = reply_error(rc, err.message, req_id, reply, reply_len);
    else
        rc = answer(&req, json, len, reply, reply_len);
    free(req_id);
    sbert_proto_request_clear(&req);
    pthread_mutex_lock(&g_mu);
    g_inflight--;
    pthread_mutex_unlock(&g_mu);
    return rc;
}

static int fake_metrics(char **text, void *user)
{
    (void)user;
    *text = strdup("# HELP sbertd_requests_total Requests answered.\n"
                   "# TYPE sbertd_requests_total counter\n"
                   "sbertd_requests_total{op=\"query\"} 3\n");
    return *text ? 0 : -1;
}

static void fake_log(int level, const char *msg, void *user)
{
    (void)user;
    fprintf(stderr, "http_testserver log %d: %s\n", level, msg);
}

int main(int argc, char **argv)
{
    struct sbert_http_params p = sbert_http_default_params();
    p.address = "127.0.0.1:0";
    p.handle = fake_handle;
    p.metrics = fake_metrics;
    p.log = fake_log;
    int use_fd = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--address") == 0 && v)
            p.address = argv[++i];
        else if (strcmp(a, "--fd") == 0)
            use_fd = 1;
        else if (strcmp(a, "--allow-remote") == 0)
            p.allow_remote = 1;
        else if (strcmp(a, "--token") == 0 && v)
            p.token = g_token = argv[++i];
        else if (strcmp(a, "--max-body") == 0 && v)
            p.max_body_bytes = strtoull(argv[++i], NULL, 10);
        else if (strcmp(a, "--timeout") == 0 && v)
            p.timeout_s = (unsigned)atoi(argv[++i]);
        else if (strcmp(a, "--deadline") == 0 && v)
            p.header_deadline_s = (unsigned)atoi(argv[++i]);
        else if (strcmp(a, "--threads") == 0 && v)
            p.threads = (unsigned)atoi(argv[++i]);
        else if (strcmp(a, "--no-metrics") == 0)
            p.metrics = NULL;
        else {
            fprintf(stderr, "http_testserver: bad argument %s\n", a);
            return 64;
        }
    }
    if (use_fd) { /* what systemd hands over: a bound, listening socket */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 16) != 0) {
            perror("http_testserver: socket");
            return 1;
        }
        p.listen_fd = fd;
    }
    struct sbert_http *h;
    char err[256];
    int rc = sbert_http_start(&p, &h, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "ERROR %d %s (%s)\n", rc, err, sbert_http_strerror(rc));
        return 2;
    }
    printf("PORT %u\n", sbert_http_port(h));
    fflush(stdout);
    char buf[64];
    while (fread(buf, 1, sizeof buf, stdin) > 0) {
    }
    sbert_http_stop(h);
    return 0;
}
