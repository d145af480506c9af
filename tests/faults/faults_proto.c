/*
 * faults_proto.c — fault loops over the wire protocol (proto/): for each message of the fuzz
 * corpus given (every op's request from the op table, tests/fuzz/corpus/fuzz_proto/table_*.json,
 * and the replies reply_*.json), allocation N = 1, 2, ... of handling it fails until handling
 * it reaches no allocation N:
 *   requests: sbert_proto_request_parse, sbert_proto_op_check_request, then a reply built with
 *             sbert_proto_reply_new and sbert_proto_add_floats, and both printed;
 *   replies:  sbert_proto_reply_parse.
 * A failure must be SBERT_PROTO_EINTERNAL (the daemon's answer to no memory), never another code
 * (which would blame the client's message), and must leak nothing; with faults off the same
 * message then gives the reference result.
 *
 *   faults_proto <corpus dir>
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faults.h"
#include "sbert_proto.h"

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* Handles a request; on success *out is the parsed request and the reply, printed. */
static int handle_request(const char *buf, size_t len, char **out)
{
    *out = NULL;
    struct sbert_proto_request req;
    struct sbert_proto_error err;
    char *rid = NULL;
    int rc = sbert_proto_request_parse(buf, len, &req, &rid, &err);
    free(rid);
    if (rc) return rc;
    const struct sbert_proto_op *op;
    char *a = NULL, *b = NULL;
    size_t la, lb;
    cJSON *reply = NULL;
    const float v[4] = {0.25f, -1.5f, 3.0f, 1e-7f};
    if ((rc = sbert_proto_op_check_request(req.root, SBERT_PROTO_CHECK_TYPES, &op, &err)) == 0 &&
        (rc = sbert_proto_print(req.root, &a, &la)) == 0) {
        reply = sbert_proto_reply_new(req.req_id);
        rc = reply ? sbert_proto_add_floats(reply, "vector", v, 4) : SBERT_PROTO_EINTERNAL;
        if (rc == 0) rc = sbert_proto_add_float(reply, "score", 0.5f);
        if (rc == 0) rc = sbert_proto_print(reply, &b, &lb);
    }
    if (rc == 0) {
        *out = malloc(la + lb + 2);
        if (*out)
            snprintf(*out, la + lb + 2, "%s\n%s", a, b);
        else
            rc = SBERT_PROTO_EINTERNAL;
    }
    free(a);
    free(b);
    cJSON_Delete(reply);
    sbert_proto_request_clear(&req);
    return rc;
}

/* Handles a reply; on success (or an error reply) *out is the tree printed. */
static int handle_reply(const char *buf, size_t len, char **out)
{
    *out = NULL;
    cJSON *root = NULL;
    struct sbert_proto_error err;
    int rc = sbert_proto_reply_parse(buf, len, &root, &err);
    if (root) {
        size_t n;
        int prc = sbert_proto_print(root, out, &n);
        if (prc) rc = prc;
        cJSON_Delete(root);
    }
    return rc;
}

static int loop(const char *path, int is_reply)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char buf[65536];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    int (*handle)(const char *, size_t, char **) = is_reply ? handle_reply : handle_request;
    char *want = NULL;
    int want_rc = handle(buf, len, &want);
    CHECK(want != NULL);
    int n = 1;
    for (;; n++) {
        char *got = NULL;
        sbert_fault_arm(SBERT_FAULT_ALLOC, (uint64_t)n);
        int rc = handle(buf, len, &got);
        sbert_fault_disarm();
        if (sbert_fault_fired() == 0) {
            CHECK(rc == want_rc && got && want && strcmp(got, want) == 0);
            free(got);
            break;
        }
        if (rc != want_rc && rc != SBERT_PROTO_EINTERNAL) {
            fprintf(stderr, "%s: allocation %d failed: returned %d (%s), wanted %d or internal\n",
                    path, n, rc, sbert_proto_code_name(rc), want_rc);
            failures++;
        }
        if (rc == want_rc) CHECK(got && want && strcmp(got, want) == 0);
        free(got);
        /* faults off: the same message gives the reference result */
        rc = handle(buf, len, &got);
        CHECK(rc == want_rc && got && want && strcmp(got, want) == 0);
        free(got);
    }
    free(want);
    return n - 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: faults_proto <corpus dir>\n");
        return 2;
    }
    DIR *d = opendir(argv[1]);
    if (!d) return 2;
    struct dirent *e;
    int total = 0, messages = 0;
    while ((e = readdir(d))) {
        int is_reply = strncmp(e->d_name, "reply_", 6) == 0;
        if (!is_reply && strncmp(e->d_name, "table_", 6) != 0) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[1], e->d_name);
        int n = loop(path, is_reply);
        CHECK(n > 0);
        printf("%s: %d injection points\n", e->d_name, n);
        total += n;
        messages++;
    }
    closedir(d);
    printf("proto: %d messages, %d injection points\n", messages, total);
    CHECK(messages >= 10);
    return failures ? 1 : 0;
}
