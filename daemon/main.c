/* main.c — sbertd: configuration, start-up (model, store, sockets), signals, shutdown. */
#define _GNU_SOURCE
#include "config.h"
#include "log.h"
#include "sd.h"
#include "server.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static void log_config_line(const char *line, void *user)
{
    (void)user;
    sbertd_log(LOG_DEBUG, "config: %s", line);
}

static void sd_log(void *ctx, int level, const char *msg)
{
    (void)ctx;
    sbertd_log(level, "watchdog: %s", msg);
}

static void sd_check(int rc, const char *what)
{
    if (rc) sbertd_log(LOG_WARNING, "sd_notify %s: %s", what, sbertd_sd_strerror(rc));
}

/* Creates the missing parent directories of path (mode 0750), as `mkdir -p $(dirname path)`. */
static void make_parents(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0750) != 0 && errno != EEXIST) return;
        *p = '/';
    }
}

static void apply_limits(struct sbertd *d, struct sbertd_config *c)
{
    for (int i = 0; i < SBERTD_N_LIMITS; i++)
        atomic_store(&d->limits[i], *sbertd_config_limit(c, i));
}

/* SIGHUP: re-reads the configuration (file, then the same flags) and applies what can change
 * while running: the log level and the limits. The rest is reported as needing a restart. */
static void reload(struct sbertd *d, int argc, char **argv)
{
    sd_check(sbertd_sd_reloading(), "RELOADING");
    struct sbertd_config *c = malloc(sizeof *c);
    char err[1024];
    int changed = 0;
    if (!c || sbertd_config_from_args(c, argc, argv, err, sizeof err) != 0) {
        sbertd_log(LOG_ERR, "reload failed, keeping the current settings: %s",
                   c ? err : "out of memory");
        free(c);
        sd_check(sbertd_sd_reloaded("reload failed: settings unchanged"), "RELOADED");
        return;
    }
    if (c->log_level != d->cfg.log_level) {
        sbertd_log(LOG_INFO, "log_level: %s -> %s", sbertd_log_level_name(d->cfg.log_level),
                   sbertd_log_level_name(c->log_level));
        sbertd_log_set_level(c->log_level);
        d->cfg.log_level = c->log_level;
        changed++;
    }
    for (int i = 0; i < SBERTD_N_LIMITS; i++)
        if (*sbertd_config_limit(c, i) != *sbertd_config_limit(&d->cfg, i)) {
            sbertd_log(LOG_INFO, "%s: %llu -> %llu", sbertd_limit_name(i),
                       (unsigned long long)*sbertd_config_limit(&d->cfg, i),
                       (unsigned long long)*sbertd_config_limit(c, i));
            changed++;
        }
    apply_limits(d, c);
    /* max_message_size above the bound the socket was opened with is cut by nanomsg: say so */
    if (c->max_message_size > d->cfg.max_message_size)
        sbertd_log(LOG_WARNING,
                   "max_message_size grew: messages above %llu bytes are still "
                   "dropped by the socket until a restart",
                   (unsigned long long)(2 * d->cfg.max_message_size));
    for (int i = 0; i < SBERTD_N_LIMITS; i++)
        *sbertd_config_limit(&d->cfg, i) = *sbertd_config_limit(c, i);
    static const struct {
        const char *name;
        size_t off, size;
    } restart_keys[] = {
        {"model", offsetof(struct sbertd_config, model), sizeof c->model},
        {"data", offsetof(struct sbertd_config, data), sizeof c->data},
        {"listen", offsetof(struct sbertd_config, listen), sizeof c->listen},
        {"index", offsetof(struct sbertd_config, index_spec), sizeof c->index_spec},
        {"keyword_language", offsetof(struct sbertd_config, keyword_language),
         sizeof c->keyword_language},
        {"threads", offsetof(struct sbertd_config, threads), sizeof c->threads},
        {"encode_threads", offsetof(struct sbertd_config, encode_threads),
         sizeof c->encode_threads},
        {"auth_token", offsetof(struct sbertd_config, auth_token), sizeof c->auth_token},
        {"allow_remote", offsetof(struct sbertd_config, allow_remote), sizeof c->allow_remote},
        {"map_size", offsetof(struct sbertd_config, map_size), sizeof c->map_size},
        {"embedding_cache_mb", offsetof(struct sbertd_config, embedding_cache_mb),
         sizeof c->embedding_cache_mb},
    };
    for (size_t i = 0; i < sizeof restart_keys / sizeof restart_keys[0]; i++)
        if (memcmp((char *)c + restart_keys[i].off, (char *)&d->cfg + restart_keys[i].off,
                   restart_keys[i].size) != 0)
            sbertd_log(LOG_NOTICE, "%s changed; needs a restart to take effect",
                       restart_keys[i].name);
    free(c);
    char status[96];
    snprintf(status, sizeof status, "reloaded: %d setting(s) changed", changed);
    sbertd_log(LOG_INFO, "%s", status);
    sd_check(sbertd_sd_reloaded(status), "RELOADED");
}

static pthread_t main_thread;

/* Threads started before main() blocked the signals (OpenBLAS starts its workers in a library
 * constructor) still have them unblocked: a signal the kernel hands to one of them comes here and
 * is passed on to the main thread, where it waits, blocked, for sigwait(). pthread_kill() is
 * async-signal-safe. */
static void forward_signal(int sig)
{
    pthread_kill(main_thread, sig);
}

/* Progress of the default collection's long jobs: at start-up (sbert_index_open's rebuild or
 * re-encode), written by the opening thread and read by the extender, which sends STATUS=; once
 * serving (a reindex op), sent as STATUS= from here, at most once a second. */
struct open_progress {
    _Atomic uint64_t done, total;
    _Atomic(const char *) phase;
    atomic_int serving;
    _Atomic uint64_t last_status_us;
};

static void open_progress_note(void *user, const char *phase, uint64_t done, uint64_t total)
{
    struct open_progress *p = user;
    if (atomic_exchange(&p->phase, phase) != phase)
        sbertd_log(LOG_NOTICE, "index: %s of %llu documents", phase, (unsigned long long)total);
    atomic_store(&p->done, done);
    atomic_store(&p->total, total);
    if (!atomic_load(&p->serving)) return;
    uint64_t now = sbertd_now_us();
    if (done < total && now - atomic_load(&p->last_status_us) < 1000000) return;
    atomic_store(&p->last_status_us, now);
    if (done < total)
        sd_check(sbertd_sd_status("serving; %s: %llu/%llu documents", phase,
                                  (unsigned long long)done, (unsigned long long)total),
                 "STATUS");
    else
        sd_check(sbertd_sd_status("serving; %s of %llu documents done", phase,
                                  (unsigned long long)total),
                 "STATUS");
}

/* The default collection's progress (open_progress_note); the store reports through it for its
 * whole life. */
static struct open_progress store_progress;

static void open_progress_read(void *ctx, uint64_t *done, uint64_t *total)
{
    struct open_progress *p = ctx;
    *done = atomic_load(&p->done);
    *total = atomic_load(&p->total);
}

/* Every client connection holds a descriptor, and systemd's default soft limit is 1024: a few
 * hundred idle connections would lock everyone else out. nanomsg polls with epoll, so nothing
 * here needs descriptors below FD_SETSIZE: raise the soft limit to the hard one, as systemd
 * advises services that need many descriptors to do. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max) return;
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
        sbertd_log(LOG_INFO, "open files limit raised from %llu to %llu", (unsigned long long)was,
                   (unsigned long long)rl.rlim_max);
    else
        sbertd_log(LOG_WARNING, "open files limit stays at %llu: %s", (unsigned long long)was,
                   strerror(errno));
}

/* Signals are taken synchronously by the main thread (sigwait); every other thread inherits the
 * mask set here. SIGPIPE is ignored: a vanished client is nanomsg's business, not a reason to
 * die. */
static void block_signals(sigset_t *sigs)
{
    sigemptyset(sigs);
    sigaddset(sigs, SIGTERM);
    sigaddset(sigs, SIGINT);
    sigaddset(sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    main_thread = pthread_self();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

/* Loads the model into d (model, info, identity). Returns 0 or -1 (logged). */
static int load_model(struct sbertd *d)
{
    char err[1024];
    sd_check(sbertd_sd_status("loading model %s", d->cfg.model), "STATUS");
    struct sbert_model_params mp = sbert_model_default_params();
    mp.n_threads = d->cfg.encode_threads;
    mp.precision =
        strcmp(d->cfg.precision, "int8") == 0 ? SBERT_PRECISION_INT8 : SBERT_PRECISION_FP32;
    mp.log = sbertd_log_library;
    mp.log_user = "encoder";
    if (sbert_model_load(d->cfg.model, &mp, &d->model, err, sizeof err)) {
        sbertd_log(LOG_ERR, "cannot load the model: %s", err);
        return -1;
    }
    d->info = sbert_model_info(d->model);
    sbertd_log(LOG_INFO, "model %s: dim %d, max_seq_length %d, sha256 %.12s, %s%s%s", d->info->name,
               d->info->dim, d->info->max_seq_length, d->info->weights_sha256,
               sbert_precision_name(d->info->precision), d->info->int8_kernel ? " kernel " : "",
               d->info->int8_kernel ? d->info->int8_kernel : "");
    d->identity.name = d->info->name;
    d->identity.weights_sha256 = d->info->weights_sha256;
    d->identity.dim = d->info->dim;
    d->identity.pooling = d->info->pooling;
    d->identity.normalize = d->info->normalize;
    d->identity.max_seq_length = d->info->max_seq_length;
    d->identity.precision = d->info->precision == SBERT_PRECISION_INT8 ? SBERT_INDEX_PRECISION_INT8
                                                                       : SBERT_INDEX_PRECISION_FP32;
    return 0;
}

/* Opens the embedding cache in DATA/embedding-cache/ (d->ecache), unless embedding_cache_mb is 0;
 * before the store, so that a re-encode at start after a model change goes through it too. The
 * cache only saves work: one that cannot be opened is logged and the daemon runs without. */
static void open_ecache(struct sbertd *d)
{
    if (!d->cfg.embedding_cache_mb) {
        sbertd_log(LOG_INFO, "embedding cache: off (embedding_cache_mb = 0)");
        return;
    }
    char dir[4200], why[1024];
    snprintf(dir, sizeof dir, "%s/embedding-cache", d->cfg.data);
    make_parents(dir);
    struct sbertd_ecache_params p = {
        .dir = dir,
        .max_bytes = d->cfg.embedding_cache_mb << 20,
        .model = {.weights_sha256 = d->info->weights_sha256,
                  .pooling = d->info->pooling,
                  .normalize = d->info->normalize,
                  .max_seq_length = d->info->max_seq_length,
                  .dim = d->info->dim,
                  .precision = sbert_precision_name(d->info->precision),
                  .kernel =
                      d->info->precision == SBERT_PRECISION_INT8 ? d->info->int8_kernel : NULL},
        .log = sbertd_log_library,
        .log_user = "embedding cache"};
    int rc = sbertd_ecache_open(&p, &d->ecache, why, sizeof why);
    if (rc) {
        sbertd_log(LOG_WARNING, "embedding cache: cannot open %s (%s: %s); running without it", dir,
                   sbertd_ecache_strerror(rc), why);
        return;
    }
    struct sbertd_ecache_stats st;
    sbertd_ecache_stats(d->ecache, &st);
    sbertd_log(LOG_INFO, "embedding cache: %s, %llu entries, %llu of %llu MiB", dir,
               (unsigned long long)st.entries, (unsigned long long)(st.bytes >> 20),
               (unsigned long long)d->cfg.embedding_cache_mb);
}

/* Opens the store into d->index, re-encoding it first when the model changed and the
 * configuration allows it. Returns 0 or -1 (logged). */
static int open_store(struct sbertd *d)
{
    char err[1024];
    struct sbert_index_params ip = sbert_index_default_params();
    ip.model = d->identity;
    ip.index_spec = d->cfg.index_spec[0] ? d->cfg.index_spec : NULL;
    ip.ef_search = d->cfg.ef_search;
    ip.nprobe = d->cfg.nprobe;
    ip.snapshot_changes = d->cfg.snapshot_changes;
    ip.snapshot_seconds = d->cfg.snapshot_seconds;
    ip.map_size = (size_t)d->cfg.map_size;
    ip.keyword_language = d->cfg.keyword_language;
    ip.log = sbertd_log_library;
    ip.log_user = "index";
    if (d->cfg.reindex_on_model_change) {
        /* the batcher's encode, run here in the main thread (no server thread exists yet) */
        ip.reindex_on_open = sbertd_reindex_encode;
        ip.reindex_user = d;
    }
    ip.progress = open_progress_note;
    ip.progress_user = &store_progress;
    make_parents(d->cfg.data);
    sd_check(sbertd_sd_status("opening index in %s", d->cfg.data), "STATUS");
    /* A rebuild or a re-encode can outlast TimeoutStartSec=: the extender asks systemd for more
     * time only while the counters advance. */
    sbertd_sd_extender *ex = NULL;
    sd_check(sbertd_sd_extender_start("opening index", open_progress_read, &store_progress,
                                      10000000, &ex),
             "EXTEND_TIMEOUT");
    int rc = sbert_index_open(d->cfg.data, &ip, &d->index, err, sizeof err);
    sbertd_sd_extender_stop(ex);
    if (rc) {
        sbertd_log(LOG_ERR, "cannot open the store in %s: %s", d->cfg.data, err);
        return -1;
    }
    return 0;
}

/* Tells the log and systemd that d serves. */
static void announce_ready(struct sbertd *d)
{
    uint64_t count = 0;
    sbert_index_count(d->index, &count);
    char status[1200];
    snprintf(status, sizeof status, "serving %llu documents on %s", (unsigned long long)count,
             d->cfg.listen[0]);
    sbertd_log(LOG_NOTICE, "sbertd %s ready: %s (%d workers, %d encode threads)", SBERTD_VERSION,
               status, d->cfg.threads, d->cfg.encode_threads);
    sd_check(sbertd_sd_ready(status), "READY");
}

/* Waits for signals: SIGHUP reloads, SIGTERM and SIGINT return. */
static void serve(struct sbertd *d, const sigset_t *sigs, int argc, char **argv)
{
    for (;;) {
        int sig = 0;
        if (sigwait(sigs, &sig) != 0) continue;
        if (sig == SIGHUP) {
            reload(d, argc, argv);
            continue;
        }
        sbertd_log(LOG_NOTICE, "%s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        return;
    }
}

int main(int argc, char **argv)
{
    static struct sbertd d; /* large; lives for the whole process */
    sigset_t sigs;
    block_signals(&sigs);
    char err[1024];
    int rc = sbertd_config_from_args(&d.cfg, argc, argv, err, sizeof err);
    if (rc == 1) return 0;
    if (rc < 0) {
        fprintf(stderr, "sbertd: %s\n", err);
        return 2;
    }
    sbertd_log_set_level(d.cfg.log_level);
    if (sbertd_config_check(&d.cfg, err, sizeof err)) {
        sbertd_log(LOG_ERR, "%s", err);
        return 2;
    }
    sbertd_config_dump(&d.cfg, log_config_line, NULL);
    if (sbertd_ops_init(err, sizeof err)) {
        sbertd_log(LOG_ERR, "the op table: %s", err);
        return 1;
    }
    raise_nofile();

    d.start_us = sbertd_now_us();
    if (load_model(&d)) return 1;
    open_ecache(&d);
    if (open_store(&d)) {
        sbertd_ecache_close(d.ecache);
        sbert_model_free(d.model);
        return 1;
    }
    if (sbertd_collections_open(&d)) {
        sbertd_collections_close(&d);
        sbert_index_close(d.index);
        sbertd_ecache_close(d.ecache);
        sbert_model_free(d.model);
        return 1;
    }
    apply_limits(&d, &d.cfg);
    for (int i = 0; i < d.cfg.n_listen; i++)
        if (strncmp(d.cfg.listen[i], "ipc://", 6) == 0) make_parents(d.cfg.listen[i] + 6);
    if (sbertd_server_start(&d)) {
        sbertd_collections_close(&d);
        sbert_index_close(d.index);
        sbertd_ecache_close(d.ecache);
        sbert_model_free(d.model);
        return 1;
    }
    sbertd_sd_watchdog *wd = NULL;
    uint64_t ivl = 0;
    sd_check(sbertd_sd_watchdog_start(sbertd_server_alive, sd_log, &d, &wd, &ivl), "watchdog");
    announce_ready(&d);
    atomic_store(&store_progress.serving, 1);
    serve(&d, &sigs, argc, argv);

    sd_check(sbertd_sd_stopping("stopping: draining requests"), "STOPPING");
    sbertd_server_stop(&d);
    sd_check(sbertd_sd_status("stopping: writing index snapshot"), "STATUS");
    /* signals stay blocked from here on, so a second SIGTERM during the snapshot waits, unread,
     * and the exit stays clean */
    sbertd_collections_close(&d);
    sbert_index_close(d.index);
    sbertd_sd_watchdog_stop(wd);
    sbertd_server_free(&d);
    sbertd_ecache_close(d.ecache);
    sbert_model_free(d.model);
    sbertd_log(LOG_NOTICE, "stopped");
    return 0;
}
