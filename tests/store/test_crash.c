/*
 * test_crash.c — kill -9 in the middle of write batches. A child process writes batches of
 * BATCH documents (ids "r<round>b<batch>-<i>") into a store that starts with a 256 KiB map (so
 * map growth is also interrupted), reporting each batch on a pipe once sbert_index_put() returned
 * 0. The parent SIGKILLs it at a random moment, reopens the store and checks: every batch is
 * there entirely or not at all; every reported batch is there; the vector index agrees with the
 * store. Repeated for several rounds on the same store.
 */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "t.h"

#define BATCH 1500
#define ROUNDS 6
#define MAX_BATCHES 100000

static int child(const char *dir, int round, int fd)
{
    struct sbert_index_params p = t_params("Flat");
    p.map_size = 256 * 1024;
    p.snapshot_changes = 4000; /* snapshots (and log trims) happen while being killed too */
    sbert_index *idx = NULL;
    if (sbert_index_open(dir, &p, &idx, NULL, 0)) return 2;
    struct sbert_index_put_item *it = calloc(BATCH, sizeof *it);
    char(*ids)[32] = calloc(BATCH, 32);
    char text[200];
    memset(text, 't', sizeof text);
    float *vecs = malloc((size_t)BATCH * T_DIM * sizeof *vecs);
    for (int b = 0; b < MAX_BATCHES; b++) {
        for (int i = 0; i < BATCH; i++) {
            snprintf(ids[i], 32, "r%db%05d-%05d", round, b, i);
            t_vec((uint64_t)round * 100000000u + (uint64_t)b * BATCH + (uint64_t)i,
                  vecs + (size_t)i * T_DIM, T_DIM);
            it[i] = (struct sbert_index_put_item){.id = ids[i],
                                                  .id_len = strlen(ids[i]),
                                                  .text = text,
                                                  .text_len = sizeof text,
                                                  .metadata = "{\"x\":1}",
                                                  .metadata_len = 7,
                                                  .vector = vecs + (size_t)i * T_DIM};
        }
        if (sbert_index_put(idx, it, BATCH, NULL, NULL, 0)) return 3;
        if (write(fd, &b, sizeof b) != sizeof b) return 4;
    }
    return 0;
}

struct tally {
    int round;
    int *count; /* per batch of this round */
    size_t total;
};

static int tally_cb(const struct sbert_index_doc *d, void *user)
{
    struct tally *t = user;
    t->total++;
    int r, b, i;
    if (sscanf(d->id, "r%db%d-%d", &r, &b, &i) == 3 && r == t->round && b >= 0 && b < MAX_BATCHES)
        t->count[b]++;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--child") == 0)
        _exit(child(argv[2], atoi(argv[3]), atoi(argv[4])));
    char dir[4200], root[4096];
    t_tmpdir(root, sizeof root, "crash");
    snprintf(dir, sizeof dir, "%s/s", root);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    size_t expected_total = 0;
    for (int round = 0; round < ROUNDS; round++) {
        int fds[2];
        if (pipe(fds)) return 99;
        /* The writer is a fresh exec of this program: libgomp does not survive a fork once the
         * parent ran FAISS. */
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            char r[16], fd[16];
            snprintf(r, sizeof r, "%d", round);
            snprintf(fd, sizeof fd, "%d", fds[1]);
            execl("/proc/self/exe", "store_test_crash", "--child", dir, r, fd, (char *)NULL);
            _exit(127);
        }
        close(fds[1]);
        /* Kill somewhere between 30 ms and 1.2 s into the writing. */
        struct timespec ts = {0, (30 + rand() % 1170) * 1000000L};
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec = 1;
            ts.tv_nsec -= 1000000000L;
        }
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
            fprintf(stderr, "round %d: the writer exited by itself (status %d)\n", round, status);
            t_failures++;
        }
        int reported = 0, b;
        while (read(fds[0], &b, sizeof b) == sizeof b)
            reported = b + 1;
        close(fds[0]);

        struct sbert_index_params p = t_params("Flat");
        sbert_index *idx = NULL;
        char err[512] = "";
        int rc = sbert_index_open(dir, &p, &idx, err, sizeof err);
        if (rc) {
            fprintf(stderr, "round %d: reopen failed: %s\n", round, err);
            t_failures++;
            break;
        }
        struct tally t = {round, calloc(MAX_BATCHES, sizeof(int)), 0};
        CHECK_RC(sbert_index_iterate(idx, NULL, 0, 0, tally_cb, &t), 0);
        int full = 0, partial = 0;
        for (int i = 0; i < MAX_BATCHES; i++) {
            if (t.count[i] == BATCH)
                full++;
            else if (t.count[i] != 0) {
                fprintf(stderr, "round %d: batch %d has %d of %d documents\n", round, i, t.count[i],
                        BATCH);
                partial++;
            }
        }
        for (int i = 0; i < reported; i++)
            if (t.count[i] != BATCH) {
                fprintf(stderr, "round %d: reported batch %d is missing\n", round, i);
                t_failures++;
                break;
            }
        /* full batches are a prefix: the reported ones and at most one in flight */
        CHECK(partial == 0);
        CHECK(full == reported || full == reported + 1);
        expected_total += (size_t)full * BATCH;
        CHECK(t.total == expected_total);
        struct sbert_index_stats st;
        CHECK_RC(sbert_index_stats(idx, &st), 0);
        CHECK(st.count == expected_total && st.index_count == expected_total);
        fprintf(stderr, "round %d: %d batches reported, %d stored, %zu documents, map %llu\n",
                round, reported, full, t.total, (unsigned long long)st.map_size);
        /* every stored document of this round is found by its own vector */
        for (int i = 0; i < full; i += 3) {
            float v[T_DIM];
            int k = i * BATCH + (i * 37) % BATCH;
            t_vec((uint64_t)round * 100000000u + (uint64_t)k, v, T_DIM);
            struct sbert_index_query_params q = sbert_index_query_default_params();
            q.k = 1;
            struct sbert_index_results *r;
            CHECK_RC(sbert_index_query(idx, v, &q, &r), 0);
            char want[32];
            snprintf(want, sizeof want, "r%db%05d-%05d", round, i, (i * 37) % BATCH);
            CHECK(r->n == 1 && strcmp(r->docs[0].id, want) == 0);
            sbert_index_results_free(r);
        }
        free(t.count);
        sbert_index_close(idx);
    }
    if (!t_failures)
        t_rmrf(root);
    else
        fprintf(stderr, "test_crash: %d failure(s); store kept in %s\n", t_failures, dir);
    return t_failures ? 1 : 0;
}
