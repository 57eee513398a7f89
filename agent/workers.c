/* workers.c - the fingerprinting pool (see workers.h). */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "agent/roots.h"
#include "agent/state.h"
#include "agent/workers.h"
#include "catalog/catalog.h"
#include "compare/compare.h"
#include "daemon/log.h"
#include "daemon/options.h"
#include "fingerprint/compute.h"
#include "util/macro.h"
#include "util/rate_limit.h"
#include "util/strutil.h"

/* ioprio_set(2) has no glibc wrapper. */
#define IOPRIO_CLASS_IDLE 3
#define IOPRIO_CLASS_SHIFT 13
#define IOPRIO_WHO_PROCESS 1
#define WORKER_NICE 10
/* How deep below a model root symlinks are checked before it is opened. */
#define LINK_CHECK_DEPTH 8

/* A local scan reports matches at or above this identity score (High
 * Match and better): weaker ones are noise on a fleet scale. */
#define SCAN_REPORT_THRESHOLD 0.5

typedef struct job {
        struct job *next;
        char *root;
        bool force;
} job;

typedef struct result_node {
        struct result_node *next;
        agent_job_result r;
} result_node;

struct agent_workers {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        job *queue_head, *queue_tail;
        result_node *results_head, *results_tail;
        unsigned busy;                  /* queued + running */
        bool stopping;
        volatile sig_atomic_t stop;     /* read by the pass between chunks */
        atomic_uint catalog_generation;

        int efd;
        pthread_t *threads;
        struct worker *workers;         /* one per thread: its state DB handle, its catalog */
        unsigned n_threads, n_started;

        char *state_path;
        char **roots;                   /* as the operator named them; under lock */
        char *catalog_path;
        mp_rate_limit *rate_limit;
};

/* Per-thread resources. */
typedef struct worker {
        agent_workers *pool;
        agent_state *state;
        mp_catalog *catalog;
        unsigned catalog_generation;
} worker;

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Background priority for this thread only: on Linux, both calls take a
 * thread id. */
static void lower_priority(void) {
        pid_t tid = (pid_t) syscall(SYS_gettid);
        if (syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, tid, IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT) < 0)
                log_debug("ioprio_set(idle) failed: %s", strerror(errno));
        if (setpriority(PRIO_PROCESS, (id_t) tid, WORKER_NICE) < 0)
                log_debug("setpriority(%d) failed: %s", WORKER_NICE, strerror(errno));
}

/* Whether path lies under one of the watch roots as the operator named
 * them (paths from the watcher). */
static bool under_roots(agent_workers *w, const char *path) {
        bool inside = false;
        pthread_mutex_lock(&w->lock);
        for (char **r = w->roots; r && *r && !inside; r++)
                inside = mp_path_under(path, *r);
        pthread_mutex_unlock(&w->lock);
        return inside;
}

/* Where the roots lead now (resolved once per job: a root may appear, or
 * move behind a symlink, between jobs).  Roots that do not exist are left
 * out.  NULL on ENOMEM. */
static char **resolve_roots(agent_workers *w) {
        pthread_mutex_lock(&w->lock);
        size_t n = mp_strv_length(w->roots);
        char **real = calloc(n + 1, sizeof(char *));
        for (size_t i = 0, k = 0; real && i < n; i++)
                if ((real[k] = realpath(w->roots[i], NULL)))
                        k++;
        pthread_mutex_unlock(&w->lock);
        return real;
}

/* Whether a resolved path may be read: inside a resolved root, and not a
 * credential. */
static bool may_read(char *const *real_roots, const char *real) {
        if (agent_path_is_secret(real))
                return false;
        for (char *const *r = real_roots; *r; r++)
                if (mp_path_under(real, *r))
                        return true;
        return false;
}

/* A symlink at link may be followed only when it resolves inside the roots
 * and not to a credential; dangling links are left to the readers. */
static bool link_allowed(char *const *real_roots, const char *link) {
        _cleanup_(freep) char *real = realpath(link, NULL);
        return !real || may_read(real_roots, real);
}

/* Checks every symlink below dir (bounded depth) before any reader follows
 * one: opening a model reads headers, and a parse error quoting the first
 * bytes of /root/.cache/huggingface/token must never reach a finding.
 * Returns false with *ret_link set to the first link that leads out. */
static bool links_inside_roots(char *const *real_roots, const char *dir, unsigned depth, char **ret_link) {
        if (depth > LINK_CHECK_DEPTH)
                return true;
        _cleanup_(closedirp) DIR *d = opendir(dir);
        if (!d)
                return true;
        for (struct dirent *de; (de = readdir(d));) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                _cleanup_(freep) char *p = mp_path_join(dir, de->d_name);
                struct stat st;
                if (!p || lstat(p, &st) < 0)
                        continue;
                if (S_ISLNK(st.st_mode) && !link_allowed(real_roots, p)) {
                        *ret_link = TAKE_PTR(p);
                        return false;
                }
                if (S_ISDIR(st.st_mode) && !links_inside_roots(real_roots, p, depth + 1, ret_link))
                        return false;
        }
        return true;
}

/* The directories whose links a model at root may follow: the root itself
 * when it is a directory (a model dir, a hub snapshot: its links resolve
 * through blobs/, so a blob that is itself a link out is caught too), and
 * for an Ollama manifest the store's blobs/. */
static bool model_links_inside_roots(char *const *real_roots, const char *root, char **ret_link) {
        struct stat st;
        if (lstat(root, &st) < 0)
                return true;
        if (S_ISDIR(st.st_mode))
                return links_inside_roots(real_roots, root, 0, ret_link);
        const char *m = strstr(root, "/manifests/");
        if (!m)
                return true;
        _cleanup_(freep) char *store = strndup(root, (size_t) (m - root));
        _cleanup_(freep) char *blobs = store ? mp_path_join(store, "blobs") : NULL;
        return !blobs || links_inside_roots(real_roots, blobs, LINK_CHECK_DEPTH, ret_link);
}

/* After opening: every file the readers chose resolves inside the roots
 * (the check above ran before any read; this one covers what the readers
 * resolved themselves, e.g. Ollama blob names from the manifest). */
static bool files_inside_roots(char *const *real_roots, const mp_model *m, char **ret_outside) {
        for (size_t i = 0; i < m->n_files; i++) {
                _cleanup_(freep) char *real = realpath(m->files[i].path, NULL);
                if (!real)
                        continue;       /* vanished: the pass will fail and we retry */
                if (!may_read(real_roots, real)) {
                        *ret_outside = strdup(m->files[i].path);
                        return false;
                }
        }
        return true;
}

/* Marks the files whose content the state DB knows as digested, so the
 * pass does not read them, and records the stat each file had before
 * reading.  Known means: the same path with an identical stat (ctime too),
 * or, for a path the DB has never seen, a row of another path with the
 * same (dev, inode, size, mtime): a rename or a hard link. */
static int prefill_known_files(worker *wk, mp_model *m, agent_file_stat *stats) {
        for (size_t i = 0; i < m->n_files; i++) {
                struct stat st;
                if (stat(m->files[i].path, &st) < 0)
                        return -errno;
                agent_file_stat_from(&stats[i], &st);

                agent_file f = {0};
                bool known = false;
                int r = agent_state_get_file(wk->state, m->files[i].path, &f);
                if (r >= 0)
                        known = agent_file_stat_identical(&f.stat, &stats[i]);
                else if (r == -ENOENT) {
                        r = agent_state_find_file_by_stat(wk->state, &stats[i], &f);
                        known = r >= 0 && agent_file_stat_same(&f.stat, &stats[i]);
                }
                if (r < 0 && r != -ENOENT)
                        return r;
                if (known && f.has_sha256) {
                        m->files[i].digested = true;
                        memcpy(m->files[i].sha256, f.sha256, 32);
                }
                agent_file_done(&f);
        }
        return 0;
}

/* A writer touched the files while we read them: the result is not the
 * content of any moment in time, so it is not committed. */
static bool files_changed_since(const mp_model *m, const agent_file_stat *before) {
        for (size_t i = 0; i < m->n_files; i++) {
                struct stat st;
                agent_file_stat now;
                if (stat(m->files[i].path, &st) < 0)
                        return true;
                agent_file_stat_from(&now, &st);
                if (!agent_file_stat_same(&now, &before[i]))
                        return true;
        }
        return false;
}

static void log_finding(const char *path, const char *kind, const char *detail) {
        char f_path[PATH_MAX + 16], f_kind[64];
        snprintf(f_path, sizeof f_path, "MODEL_PATH=%s", path);
        snprintf(f_kind, sizeof f_kind, "FINDING=%s", kind);
        const char *fields[] = {f_path, f_kind, NULL};
        log_fields(LOG_LEVEL_WARNING, fields, "finding in %s: %s: %s", path, kind, detail);
}

static void record_finding(worker *wk, const char *path, mp_finding_kind kind, const char *detail) {
        mp_error err = {0};
        int r = agent_state_add_finding(wk->state, path, kind, detail, now_ms(), &err);
        if (r < 0)
                log_error("%s: cannot record finding: %s", path, err.reason);
        else if (r > 0)
                log_finding(path, mp_finding_kind_name(kind), detail);
}

/* Reopens the catalog when it changed on disk (or first use). */
static mp_catalog *worker_catalog(worker *wk) {
        agent_workers *w = wk->pool;
        unsigned gen = atomic_load(&w->catalog_generation);
        if (wk->catalog && gen == wk->catalog_generation)
                return wk->catalog;
        mp_catalog_close(wk->catalog);
        wk->catalog = NULL;
        wk->catalog_generation = gen;
        if (!w->catalog_path || access(w->catalog_path, R_OK) < 0)
                return NULL;
        mp_error err = {0};
        if (mp_catalog_open(w->catalog_path, false, &wk->catalog, &err) < 0)
                log_warning("catalog %s: %s (local scans off until it changes)", w->catalog_path, err.reason);
        return wk->catalog;
}

static void scan_locally(worker *wk, const char *root, const mp_fingerprint *fp, const uint8_t digest[32]) {
        mp_catalog *c = worker_catalog(wk);
        if (!c)
                return;

        mp_scan_options so = {.top_k = 3, .threshold = SCAN_REPORT_THRESHOLD};
        mp_scan_result res = {0};
        mp_error err = {0};
        if (mp_catalog_scan(c, fp, &so, &res, &err) < 0) {
                log_warning("%s: local scan failed: %s", root, err.reason);
                return;
        }
        for (size_t i = 0; i < res.n_matches; i++) {
                const mp_scan_match *m = &res.matches[i];
                if (!m->has_weights)
                        continue;       /* metadata alone never decides */
                const char *verdict = mp_verdict_name(m->cmp.verdict);
                int r = agent_state_add_scan_match(wk->state, root, digest, m->name, verdict, m->score,
                                                   m->cmp.relation, now_ms(), &err);
                if (r <= 0)
                        continue;
                char hex[65], f_digest[96], f_path[PATH_MAX + 16], f_verdict[96], f_entry[300];
                mp_hex(digest, 32, hex);
                snprintf(f_digest, sizeof f_digest, "MODEL_DIGEST=%s", hex);
                snprintf(f_path, sizeof f_path, "MODEL_PATH=%s", root);
                snprintf(f_verdict, sizeof f_verdict, "VERDICT=%s", verdict);
                snprintf(f_entry, sizeof f_entry, "CATALOG_ENTRY=%s", m->name);
                const char *fields[] = {f_digest, f_path, f_verdict, f_entry, NULL};
                log_fields(LOG_LEVEL_NOTICE, fields, "%s matches catalog entry %s: %s (%.2f, %s)", root, m->name,
                           verdict, m->score, m->cmp.relation);
        }
        mp_scan_result_free(&res);
}

static agent_job_outcome remove_model(worker *wk, const char *root) {
        mp_error err = {0};
        int r = agent_state_remove_model(wk->state, root, now_ms(), &err);
        if (r == -ENOENT)
                return AGENT_JOB_NOT_MODEL;
        if (r < 0) {
                log_error("%s: cannot record removal: %s", root, err.reason);
                return AGENT_JOB_FAILED;
        }
        const char *fields[] = {NULL, NULL};
        char f_path[PATH_MAX + 16];
        snprintf(f_path, sizeof f_path, "MODEL_PATH=%s", root);
        fields[0] = f_path;
        log_fields(LOG_LEVEL_INFO, fields, "model removed: %s", root);
        return AGENT_JOB_REMOVED;
}

/* A model open failure: a vanished path is a removal, a download still in
 * progress is retried, anything else is a finding about a hostile or
 * broken file. */
static agent_job_outcome open_failed(worker *wk, const char *root, int r, const mp_error *err) {
        struct stat st;
        /* -ENOENT also means "a directory without weights (yet)": not a
         * model, and not a finding either. */
        if (lstat(root, &st) < 0 || r == -ENOENT)
                return remove_model(wk, root);
        if (r == -EAGAIN)
                return AGENT_JOB_RETRY;
        if (r == -ENOMEM || r == -EIO || r == -EMFILE || r == -ENFILE) {
                log_error("%s: %s", root, err->reason);
                return AGENT_JOB_FAILED;
        }
        record_finding(wk, err->file[0] ? err->file : root, MP_FINDING_UNPARSEABLE, err->reason);
        (void) remove_model(wk, root);
        return AGENT_JOB_FINDING;
}

/* Opened, but nothing to fingerprint (every snapshot link dangles or
 * loops, say): not a model, and its findings say why.  Committing it would
 * give every such model the digest of nothing. */
static agent_job_outcome no_weights(worker *wk, const char *root, const mp_model *m) {
        for (size_t i = 0; i < m->n_findings; i++)
                record_finding(wk, m->findings[i].file ? m->findings[i].file : root, m->findings[i].kind,
                               m->findings[i].detail);
        agent_job_outcome removed = remove_model(wk, root);
        if (removed == AGENT_JOB_FAILED)
                return removed;
        return m->n_findings > 0 ? AGENT_JOB_FINDING : AGENT_JOB_NOT_MODEL;
}

static bool has_incomplete(const mp_model *m) {
        for (size_t i = 0; i < m->n_findings; i++)
                if (m->findings[i].kind == MP_FINDING_INCOMPLETE)
                        return true;
        return false;
}

/* The job, once its root is known to be watched; real_roots: where the
 * roots lead, for the symlink checks. */
static agent_job_outcome fingerprint_checked(worker *wk, const char *root, bool force, char *const *real_roots,
                                             agent_job_result *res) {
        _cleanup_(freep) char *outside = NULL;
        if (!model_links_inside_roots(real_roots, root, &outside)) {
                record_finding(wk, outside ? outside : root, MP_FINDING_SUSPICIOUS,
                               "a link leads outside the watched roots or to credentials: the model is not read");
                (void) remove_model(wk, root);
                return AGENT_JOB_FINDING;
        }

        _cleanup_(mp_model_freep) mp_model *m = NULL;
        mp_error err = {0};
        int r = mp_model_open(root, NULL, &m, &err);
        if (r < 0)
                return open_failed(wk, root, r, &err);

        if (!files_inside_roots(real_roots, m, &outside)) {
                record_finding(wk, outside ? outside : root, MP_FINDING_SUSPICIOUS,
                               "a file resolves outside the watched roots or to credentials: the model is not read");
                (void) remove_model(wk, root);
                return AGENT_JOB_FINDING;
        }
        if (m->n_tensors == 0)
                return no_weights(wk, root, m);

        _cleanup_(freep) agent_file_stat *stats = calloc(m->n_files ? m->n_files : 1, sizeof(agent_file_stat));
        if (!stats)
                return AGENT_JOB_FAILED;
        r = prefill_known_files(wk, m, stats);
        if (r < 0)
                return r == -ENOENT ? AGENT_JOB_RETRY : AGENT_JOB_FAILED;
        for (size_t i = 0; i < m->n_files; i++)
                res->bytes_total += m->files[i].size;

        _cleanup_(mp_fingerprint_freep) mp_fingerprint *previous = NULL;
        agent_model prev_row = {0};
        r = agent_state_get_model(wk->state, root, &prev_row, &previous);
        agent_model_done(&prev_row);
        if (r < 0 && r != -ENOENT)
                return AGENT_JOB_FAILED;

        mp_pass_options po = {.jobs = 1, .stop = &wk->pool->stop, .rate_limit = wk->pool->rate_limit};
        _cleanup_(mp_fingerprint_freep) mp_fingerprint *fp = NULL;
        r = mp_fingerprint_compute_incremental(m, &po, previous, &fp, &res->bytes_read, &err);
        if (r == -ECANCELED)
                return AGENT_JOB_CANCELLED;
        if (r < 0) {
                if (files_changed_since(m, stats))
                        return AGENT_JOB_RETRY;
                return open_failed(wk, root, r, &err);
        }
        if (files_changed_since(m, stats))
                return AGENT_JOB_RETRY;
        if (has_incomplete(m) && !force)
                return AGENT_JOB_RETRY;         /* a download in progress; reported if it stays so */

        agent_model_result mr = {.root = root, .model = m, .fingerprint = fp, .file_stats = stats,
                                 .observed_at = now_ms()};
        int kind;
        r = agent_state_commit_model(wk->state, &mr, &kind, &err);
        if (r < 0) {
                log_error("%s: cannot store fingerprint: %s", root, err.reason);
                return AGENT_JOB_FAILED;
        }
        if (kind == AGENT_MODEL_UNCHANGED)
                return AGENT_JOB_UNCHANGED;     /* its findings were logged when they were new */
        for (size_t i = 0; i < m->n_findings; i++)
                log_finding(m->findings[i].file ? m->findings[i].file : root,
                            mp_finding_kind_name(m->findings[i].kind), m->findings[i].detail);

        char hex[65], f_digest[96], f_path[PATH_MAX + 16];
        mp_hex(fp->model_digest.data, 32, hex);
        snprintf(f_digest, sizeof f_digest, "MODEL_DIGEST=%s", hex);
        snprintf(f_path, sizeof f_path, "MODEL_PATH=%s", root);
        const char *fields[] = {f_digest, f_path, NULL};
        log_fields(LOG_LEVEL_INFO, fields, "model %s: %s (%s), read %" PRIu64 " of %" PRIu64 " bytes",
                   kind == AGENT_MODEL_ADDED ? "added" : "changed", root, m->name ? m->name : "?", res->bytes_read,
                   res->bytes_total);
        scan_locally(wk, root, fp, fp->model_digest.data);
        return kind == AGENT_MODEL_ADDED ? AGENT_JOB_ADDED : AGENT_JOB_CHANGED;
}

static agent_job_outcome fingerprint_model(worker *wk, const char *root, bool force, agent_job_result *res) {
        agent_workers *w = wk->pool;
        struct stat st;
        if (lstat(root, &st) < 0)
                return remove_model(wk, root);
        if (S_ISLNK(st.st_mode))
                return AGENT_JOB_NOT_MODEL;     /* never followed: a link can point anywhere */

        /* A root no longer watched (SIGHUP dropped it): gone from our view,
         * not suspicious. */
        if (!under_roots(w, root))
                return remove_model(wk, root);
        char **real_roots = resolve_roots(w);
        if (!real_roots)
                return AGENT_JOB_FAILED;
        agent_job_outcome o = fingerprint_checked(wk, root, force, real_roots, res);
        mp_strv_free(real_roots);
        return o;
}

static void post_result(agent_workers *w, result_node *n) {
        pthread_mutex_lock(&w->lock);
        if (w->results_tail)
                w->results_tail->next = n;
        else
                w->results_head = n;
        w->results_tail = n;
        pthread_mutex_unlock(&w->lock);
        uint64_t one = 1;
        (void) !write(w->efd, &one, sizeof one);
}

static job *take_job(agent_workers *w) {
        pthread_mutex_lock(&w->lock);
        while (!w->queue_head && !w->stopping)
                pthread_cond_wait(&w->cond, &w->lock);
        job *j = NULL;
        if (!w->stopping) {
                j = w->queue_head;
                w->queue_head = j->next;
                if (!w->queue_head)
                        w->queue_tail = NULL;
        }
        pthread_mutex_unlock(&w->lock);
        return j;
}

static void *worker_main(void *userdata) {
        worker *wk = userdata;
        agent_workers *w = wk->pool;

        lower_priority();
        for (job *j; (j = take_job(w));) {
                result_node *n = calloc(1, sizeof *n);
                if (!n) {
                        free(j->root);
                        free(j);
                        continue;
                }
                n->r.root = j->root;
                n->r.outcome = fingerprint_model(wk, j->root, j->force, &n->r);
                free(j);
                post_result(w, n);
        }
        return NULL;
}

int agent_workers_new(const agent_workers_options *o, agent_workers **ret, mp_error *err) {
        assert(o);
        assert(o->n_threads > 0);
        assert(ret);

        agent_workers *w = calloc(1, sizeof *w);
        if (!w)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->cond, NULL);
        w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        w->state_path = strdup(o->state_path);
        w->catalog_path = o->catalog_path ? strdup(o->catalog_path) : NULL;
        w->threads = calloc(o->n_threads, sizeof(pthread_t));
        int r = 0;
        if (w->efd < 0)
                r = mp_error_set(err, -errno, NULL, -1, "eventfd: %s", strerror(errno));
        else if (!w->state_path || (o->catalog_path && !w->catalog_path) || !w->threads ||
                 agent_workers_set_roots(w, o->roots) < 0)
                r = mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        else if (o->read_rate_bytes > 0 && (r = mp_rate_limit_new(o->read_rate_bytes, &w->rate_limit)) < 0)
                mp_error_set(err, r, NULL, -1, "rate limit: %s", strerror(-r));
        if (r < 0) {
                agent_workers_free(w);
                return r;
        }

        /* The state DB handles are opened here, so that a worker that could
         * not open one fails the start instead of leaving its jobs queued
         * for ever (SQLite's default serialized mode lets a handle move to
         * another thread). */
        w->n_threads = o->n_threads;
        w->workers = calloc(o->n_threads, sizeof(worker));
        if (!w->workers) {
                agent_workers_free(w);
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        }
        for (unsigned i = 0; i < o->n_threads; i++) {
                w->workers[i].pool = w;
                r = agent_state_open(w->state_path, &w->workers[i].state, err);
                if (r < 0) {
                        agent_workers_free(w);
                        return r;
                }
        }
        for (unsigned i = 0; i < o->n_threads; i++) {
                r = -pthread_create(&w->threads[i], NULL, worker_main, &w->workers[i]);
                if (r < 0) {
                        agent_workers_free(w);
                        return mp_error_set(err, r, NULL, -1, "cannot start worker: %s", strerror(-r));
                }
                w->n_started++;
        }
        *ret = w;
        return 0;
}

void agent_workers_free(agent_workers *w) {
        if (!w)
                return;
        pthread_mutex_lock(&w->lock);
        w->stopping = true;
        w->stop = 1;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
        for (unsigned i = 0; i < w->n_started; i++)
                pthread_join(w->threads[i], NULL);
        for (unsigned i = 0; w->workers && i < w->n_threads; i++) {
                mp_catalog_close(w->workers[i].catalog);
                if (w->workers[i].state)
                        agent_state_close(w->workers[i].state);
        }
        free(w->workers);

        for (job *j = w->queue_head, *next; j; j = next) {
                next = j->next;
                free(j->root);
                free(j);
        }
        for (result_node *n = w->results_head, *next; n; n = next) {
                next = n->next;
                free(n->r.root);
                free(n);
        }
        if (w->efd >= 0)
                close(w->efd);
        mp_rate_limit_free(w->rate_limit);
        mp_strv_free(w->roots);
        free(w->threads);
        free(w->state_path);
        free(w->catalog_path);
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        free(w);
}

int agent_workers_fd(const agent_workers *w) {
        return w->efd;
}

int agent_workers_submit(agent_workers *w, const char *root, bool force) {
        job *j = calloc(1, sizeof *j);
        if (!j || !(j->root = strdup(root))) {
                free(j);
                return -ENOMEM;
        }
        j->force = force;
        pthread_mutex_lock(&w->lock);
        if (w->queue_tail)
                w->queue_tail->next = j;
        else
                w->queue_head = j;
        w->queue_tail = j;
        w->busy++;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
        return 0;
}

void agent_workers_drain(agent_workers *w, void (*cb)(void *userdata, const agent_job_result *r), void *userdata) {
        uint64_t count;
        (void) !read(w->efd, &count, sizeof count);

        pthread_mutex_lock(&w->lock);
        result_node *n = w->results_head;
        w->results_head = w->results_tail = NULL;
        pthread_mutex_unlock(&w->lock);

        while (n) {
                result_node *next = n->next;
                pthread_mutex_lock(&w->lock);
                w->busy--;
                pthread_mutex_unlock(&w->lock);
                cb(userdata, &n->r);
                free(n->r.root);
                free(n);
                n = next;
        }
}

unsigned agent_workers_busy(const agent_workers *w) {
        return w->busy;         /* a snapshot for STATUS=; read without the lock on purpose */
}

void agent_workers_catalog_changed(agent_workers *w) {
        atomic_fetch_add(&w->catalog_generation, 1);
}

int agent_workers_set_roots(agent_workers *w, const char *const *roots) {
        /* Kept as given (the watcher reports paths under these strings);
         * where they lead is resolved at each check, so a root that
         * appears later, or moves behind a symlink, is judged as it is. */
        size_t n = mp_strv_length((char *const *) roots);
        char **copy = calloc(n + 1, sizeof(char *));
        if (!copy)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (!(copy[i] = strdup(roots[i]))) {
                        mp_strv_free(copy);
                        return -ENOMEM;
                }
        pthread_mutex_lock(&w->lock);
        char **old = w->roots;
        w->roots = copy;
        pthread_mutex_unlock(&w->lock);
        mp_strv_free(old);
        return 0;
}
