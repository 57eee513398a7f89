/* main.c - modelprovd: the host agent's event loop.
 *
 * One sd-event loop owns the watcher (watch.h), the set of models waiting
 * to be fingerprinted, signals, the watchdog and sd_notify.  Fingerprinting
 * runs in the worker pool (workers.h), delivery to the collector on the
 * reporter thread (reporter.h); both talk to the loop through the state DB
 * and an eventfd, never by calling into sd-event from another thread.
 *
 * Flow: watcher says a path is ready or gone → group.h maps it to model
 * roots → each root is queued once (a root changing again while a worker
 * has it is queued again after) → the worker commits the result and its
 * outbox events → the reporter is kicked. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <search.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "agent/config.h"
#include "agent/group.h"
#include "agent/outbox.h"
#include "agent/reporter.h"
#include "agent/roots.h"
#include "agent/state.h"
#include "agent/watch.h"
#include "agent/workers.h"
#include "daemon/log.h"
#include "daemon/options.h"
#include "formats/model.h"
#include "util/macro.h"
#include "util/strutil.h"

/* Retries of a model that changed while it was read or still looks like a
 * download in progress; after the last one it is committed as it is. */
#define RETRY_MAX 5
#define RETRY_BASE_MS 1000
#define RETRY_LONG_SHIFT 6
#define STATUS_INTERVAL_US 1000000

typedef struct pending {
        char *root;
        size_t slot;                    /* index in agent.pending */
        bool queued;                    /* waiting for dispatch */
        bool running;                   /* a worker has it */
        bool again;                     /* changed while running */
        unsigned retries;
        uint64_t retry_at_us;           /* CLOCK_MONOTONIC; 0: none */
} pending;

typedef struct agent {
        agent_config config;
        int argc;
        char **argv;
        char **roots;
        char *state_path;
        char *catalog_path;

        sd_event *event;
        sd_event_source *dispatch_source;       /* defer: submit queued roots */
        sd_event_source *retry_source;          /* timer: earliest retry */
        sd_event_source *workers_source;        /* io on the workers' eventfd */
        sd_event_source *status_source;         /* timer: STATUS= and the outbox bound, at most 1/s */
        agent_state *state;
        agent_watch *watch;
        agent_workers *workers;
        agent_reporter *reporter;

        pending **pending;              /* for dispatch and retries, in no order */
        size_t n_pending, pending_allocated;
        void *pending_index;            /* tsearch(3) tree by root, for lookups */

        uint64_t jobs_done;
        uint64_t bytes_read;
        uint64_t start_us;
        bool ready_sent;

        pthread_mutex_t link_lock;              /* the reporter's last state text */
        char link_text[256];
} agent;

static uint64_t now_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

/* ---- progress ------------------------------------------------------- */

static void update_status(agent *a) {
        agent_watch_stats ws = {0};
        agent_state_counts sc = {0};
        if (a->watch)
                agent_watch_get_stats(a->watch, &ws);
        (void) agent_state_counts_get(a->state, &sc);

        char link[sizeof a->link_text];
        pthread_mutex_lock(&a->link_lock);
        memcpy(link, a->link_text, sizeof link);
        pthread_mutex_unlock(&a->link_lock);

        double secs = (double) (now_us() - a->start_us) / 1e6;
        sd_notifyf(0,
                   "STATUS=watching %" PRIu64 " dirs%s, %" PRIu64 " models; queued %u, done %" PRIu64
                   ", read %.1f MB (%.1f MB/s); outbox %" PRIu64 "; %s",
                   ws.watched, ws.unwatched ? " (some unwatched: raise fs.inotify.max_user_watches)" : "",
                   sc.models, a->workers ? agent_workers_busy(a->workers) : 0, a->jobs_done, a->bytes_read / 1e6,
                   secs > 0 ? a->bytes_read / 1e6 / secs : 0.0, sc.outbox_pending, link[0] ? link : "no collector");
}

/* STATUS= and the outbox bound cost a few queries over the state DB; with
 * thousands of small models finishing per second they would keep the loop
 * busy (and inotify unread), so they run at most once a second, and only
 * when something happened. */
static void request_status(agent *a) {
        int enabled = SD_EVENT_OFF;
        sd_event_source_get_enabled(a->status_source, &enabled);
        if (enabled != SD_EVENT_OFF)
                return;
        sd_event_source_set_time_relative(a->status_source, STATUS_INTERVAL_US);
        sd_event_source_set_enabled(a->status_source, SD_EVENT_ONESHOT);
}

/* ---- the set of roots waiting for a worker ------------------------------ */

static int compare_pending(const void *a, const void *b) {
        return strcmp(((const pending *) a)->root, ((const pending *) b)->root);
}

static pending *find_pending(agent *a, const char *root) {
        pending key = {.root = (char *) root};
        pending **found = tfind(&key, &a->pending_index, compare_pending);
        return found ? *found : NULL;
}

static void drop_pending(agent *a, pending *p) {
        tdelete(p, &a->pending_index, compare_pending);
        pending *last = a->pending[--a->n_pending];
        a->pending[p->slot] = last;
        last->slot = p->slot;
        free(p->root);
        free(p);
}

static pending *add_pending(agent *a, const char *root) {
        if (a->n_pending == a->pending_allocated) {
                size_t n = a->pending_allocated ? a->pending_allocated * 2 : 64;
                pending **np = realloc(a->pending, n * sizeof(pending *));
                if (!np)
                        return NULL;
                a->pending = np;
                a->pending_allocated = n;
        }
        pending *p = calloc(1, sizeof(pending));
        if (!p || !(p->root = strdup(root)) || !tsearch(p, &a->pending_index, compare_pending)) {
                if (p)
                        free(p->root);
                free(p);
                return NULL;
        }
        p->slot = a->n_pending;
        a->pending[a->n_pending++] = p;
        return p;
}

static void arm_retry_timer(agent *a);

/* Queues root for a worker, after delay_us (0: at once).  A delay is used
 * for removals: an `rm -rf` in progress must not be fingerprinted half
 * gone, so the model is looked at once the settle time passed. */
static void mark_dirty_after(agent *a, const char *root, uint64_t delay_us) {
        pending *p = find_pending(a, root);
        if (!p) {
                p = add_pending(a, root);
                if (!p) {
                        log_error("out of memory: %s not queued (the next rescan finds it)", root);
                        return;
                }
        }
        if (p->running) {
                p->again = true;
                return;
        }
        p->queued = true;
        p->retry_at_us = delay_us ? now_us() + delay_us : 0;
        if (delay_us)
                arm_retry_timer(a);
        else
                sd_event_source_set_enabled(a->dispatch_source, SD_EVENT_ONESHOT);
}

static void mark_dirty(agent *a, const char *root) {
        mark_dirty_after(a, root, 0);
}

static uint64_t removal_delay_us(const agent *a) {
        return (uint64_t) a->config.settle_ms * 1000;
}

static void dirty_roots(agent *a, char **roots, uint64_t delay_us) {
        for (char **r = roots; r && *r; r++)
                mark_dirty_after(a, *r, delay_us);
}

static int on_dispatch(sd_event_source *s, void *userdata) {
        agent *a = userdata;
        (void) s;
        for (size_t i = 0; i < a->n_pending; i++) {
                pending *p = a->pending[i];
                if (!p->queued || p->running || p->retry_at_us)
                        continue;
                if (agent_workers_submit(a->workers, p->root, p->retries >= RETRY_MAX) < 0)
                        continue;
                p->queued = false;
                p->running = true;
        }
        request_status(a);
        return 0;
}

static void arm_retry_timer(agent *a) {
        uint64_t next = 0;
        for (size_t i = 0; i < a->n_pending; i++)
                if (a->pending[i]->retry_at_us && (!next || a->pending[i]->retry_at_us < next))
                        next = a->pending[i]->retry_at_us;
        if (!next) {
                sd_event_source_set_enabled(a->retry_source, SD_EVENT_OFF);
                return;
        }
        sd_event_source_set_time(a->retry_source, next);
        sd_event_source_set_enabled(a->retry_source, SD_EVENT_ONESHOT);
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        agent *a = userdata;
        (void) s;
        for (size_t i = 0; i < a->n_pending; i++)
                if (a->pending[i]->retry_at_us && a->pending[i]->retry_at_us <= usec) {
                        a->pending[i]->retry_at_us = 0;
                        a->pending[i]->queued = true;
                }
        sd_event_source_set_enabled(a->dispatch_source, SD_EVENT_ONESHOT);
        arm_retry_timer(a);
        return 0;
}

static void on_job_result(void *userdata, const agent_job_result *r) {
        agent *a = userdata;
        pending *p = find_pending(a, r->root);

        a->jobs_done++;
        a->bytes_read += r->bytes_read;
        if (!p)
                return;
        p->running = false;
        /* A failed job (state DB busy past its timeout, out of file
         * descriptors) is retried like a model that was changing: the
         * rescans only offer files whose stat moved, so nothing else would
         * bring it back. */
        if ((r->outcome == AGENT_JOB_RETRY || r->outcome == AGENT_JOB_FAILED) && !p->again) {
                p->retries++;
                /* 1, 2, 4, 8, 16 s, then every 64 s for a file that never
                 * stops changing (the periodic rescan is not needed for it). */
                unsigned shift = p->retries <= RETRY_MAX ? p->retries - 1 : RETRY_LONG_SHIFT;
                uint64_t delay_ms = (uint64_t) RETRY_BASE_MS << shift;
                p->retry_at_us = now_us() + delay_ms * 1000;
                log_debug("%s: changing or incomplete, retry %u in %" PRIu64 " ms", r->root, p->retries, delay_ms);
                arm_retry_timer(a);
                return;
        }
        if (p->again || r->outcome == AGENT_JOB_CANCELLED) {
                p->again = false;
                p->queued = true;
                p->retries = 0;
                sd_event_source_set_enabled(a->dispatch_source, SD_EVENT_ONESHOT);
                return;
        }
        drop_pending(a, p);
        if (a->reporter && r->outcome != AGENT_JOB_UNCHANGED && r->outcome != AGENT_JOB_NOT_MODEL)
                agent_reporter_kick(a->reporter);
}

/* The outbox is bounded: while the collector is away it only grows, so the
 * bound is enforced as events are added, not only at start. */
static void enforce_outbox_bound(agent *a) {
        uint64_t events, bytes;
        if (agent_outbox_pending(a->state, &events, &bytes) < 0)
                return;
        if (events <= a->config.outbox_max_events && bytes <= AGENT_OUTBOX_MAX_BYTES_DEFAULT)
                return;
        int dropped = agent_outbox_compact(a->state, a->config.outbox_max_events, AGENT_OUTBOX_MAX_BYTES_DEFAULT);
        if (dropped > 0)
                log_warning("outbox over its bound (%" PRIu64 " events): %d superseded or low-priority events "
                            "dropped", events, dropped);
}

static int on_workers(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        agent *a = userdata;
        (void) s, (void) fd, (void) revents;
        agent_workers_drain(a->workers, on_job_result, a);
        request_status(a);
        return 0;
}

static int on_status_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        agent *a = userdata;
        (void) s, (void) usec;
        enforce_outbox_bound(a);
        update_status(a);
        return 0;
}

/* ---- watcher callbacks ------------------------------------------------ */

static const char *root_of(agent *a, const char *path) {
        const char *best = NULL;
        for (char **r = a->roots; r && *r; r++) {
                if (mp_path_under(path, *r) && (!best || strlen(*r) > strlen(best)))
                        best = *r;
        }
        return best;
}

static void group_and_dirty(agent *a, const char *path, uint64_t delay_us) {
        const char *root = root_of(a, path);
        if (!root)
                return;
        char **roots = NULL;
        if (agent_group_roots(root, path, &roots) < 0)
                log_error("out of memory grouping %s", path);
        dirty_roots(a, roots, delay_us);
        mp_strv_free(roots);
}

/* Files that can never matter are "unchanged": a README, a credential. */
static bool ignorable(const char *path) {
        const char *base = mp_base_name(path);
        mp_file_role role;
        mp_format format;
        if (agent_path_is_secret(path))
                return true;
        /* Hub and Ollama blobs have hash names, Ollama manifests have tag
         * names ("latest", "7b"): all of them are material. */
        if (strstr(path, "/blobs/") || strstr(path, "/manifests/"))
                return false;
        return !mp_classify_file_name(base, &role, &format);
}

static bool on_is_unchanged(void *userdata, const char *path, const struct stat *st) {
        agent *a = userdata;
        if (ignorable(path))
                return true;

        agent_file_stat fs;
        agent_file f = {0};
        if (S_ISLNK(st->st_mode)) {
                /* A hub snapshot link: unchanged when its blob is, and the blob
                 * belongs to this snapshot's model. */
                _cleanup_(freep) char *target = realpath(path, NULL);
                struct stat tst;
                if (!target || stat(target, &tst) < 0 || agent_state_get_file(a->state, target, &f) < 0)
                        return false;
                agent_file_stat_from(&fs, &tst);
                bool same = agent_file_stat_identical(&fs, &f.stat) && f.model_root &&
                            strncmp(path, f.model_root, strlen(f.model_root)) == 0;
                agent_file_done(&f);
                return same;
        }
        if (agent_state_get_file(a->state, path, &f) < 0)
                return false;
        agent_file_stat_from(&fs, st);
        bool same = agent_file_stat_identical(&fs, &f.stat) && f.model_root;
        agent_file_done(&f);
        return same;
}

static void on_ready(void *userdata, const char *path, const struct stat *st) {
        agent *a = userdata;
        (void) st;
        if (ignorable(path) && !strstr(path, "/models--"))
                return;
        log_debug("ready: %s", path);
        group_and_dirty(a, path, 0);
}

static void on_removed(void *userdata, const char *path) {
        agent *a = userdata;
        log_debug("removed: %s", path);
        agent_file f = {0};
        if (agent_state_get_file(a->state, path, &f) >= 0 && f.model_root)
                mark_dirty_after(a, f.model_root, removal_delay_us(a));
        agent_file_done(&f);
        group_and_dirty(a, path, removal_delay_us(a));
}

static void on_dir_removed(void *userdata, const char *dir) {
        agent *a = userdata;
        char **roots = NULL;
        size_t n = 0;
        log_debug("directory removed: %s", dir);
        if (agent_state_models_under(a->state, dir, &roots, &n) < 0) {
                log_error("state DB: cannot list models under %s", dir);
                return;
        }
        dirty_roots(a, roots, removal_delay_us(a));
        mp_strv_free(roots);
}

/* After a crawl: rows of files that are gone, and models whose root is
 * gone, are what a mark-and-sweep has to catch that the watcher could not
 * tell (changes while the agent was not running). */
static int sweep_file(void *userdata, const agent_file *f) {
        agent *a = userdata;
        struct stat st;
        if (lstat(f->path, &st) == 0)
                return 0;
        if (f->model_root)
                mark_dirty(a, f->model_root);
        return 0;
}

static int sweep_model(void *userdata, const agent_model *m) {
        agent *a = userdata;
        struct stat st;
        if (lstat(m->root, &st) < 0 || !root_of(a, m->root))
                mark_dirty(a, m->root);
        return 0;
}

static void on_crawl_done(void *userdata, agent_crawl_kind kind, uint64_t files, uint64_t dirs, uint64_t usec) {
        agent *a = userdata;
        static const char *const names[] = {"initial", "overflow", "rescan"};
        log_info("%s crawl: %" PRIu64 " files in %" PRIu64 " dirs in %.3f s", names[kind], files, dirs,
                 usec / 1e6);
        (void) agent_state_foreach_file(a->state, sweep_file, a);
        (void) agent_state_foreach_model(a->state, sweep_model, a);
}

/* ---- reporter callbacks (reporter thread) --------------------------- */

static void on_link_state(void *userdata, bool connected, const char *text) {
        agent *a = userdata;
        pthread_mutex_lock(&a->link_lock);
        snprintf(a->link_text, sizeof a->link_text, "collector: %s", text);
        pthread_mutex_unlock(&a->link_lock);
        if (connected)
                log_info("collector: %s", text);
        else
                log_warning("collector: %s", text);
}

static void on_catalog(void *userdata) {
        agent *a = userdata;
        log_info("reference catalog updated from the collector");
        agent_workers_catalog_changed(a->workers);
}

/* ---- signals ------------------------------------------------------------ */

static int load_roots(agent *a) {
        mp_strv_free(a->roots);
        a->roots = NULL;
        if (a->config.watch) {
                size_t n = mp_strv_length(a->config.watch);
                a->roots = calloc(n + 1, sizeof(char *));
                if (!a->roots)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++) {
                        /* Canonical when it exists, so paths match what the watcher
                         * reports; otherwise as given without trailing slashes
                         * (the workers resolve it again when it appears). */
                        a->roots[i] = realpath(a->config.watch[i], NULL);
                        if (!a->roots[i] && !(a->roots[i] = strdup(a->config.watch[i])))
                                return -ENOMEM;
                        for (size_t l = strlen(a->roots[i]); l > 1 && a->roots[i][l - 1] == '/'; l--)
                                a->roots[i][l - 1] = '\0';
                }
        } else {
                int r = agent_roots_discover(&a->roots);
                if (r < 0)
                        return r;
                if (!a->roots[0])
                        log_warning("no model caches found (HF hub cache, Ollama, /models, /opt/models): "
                                    "nothing to watch; set --watch");
        }
        for (char **r = a->roots; *r; r++)
                log_info("watch root: %s", *r);
        return 0;
}

/* Records the roots and whether each exists, for `modelprov status`. */
static void record_roots(agent *a) {
        size_t n = mp_strv_length(a->roots);
        _cleanup_(freep) bool *exists = calloc(n + 1, sizeof(bool));
        if (!exists)
                return;
        for (size_t i = 0; i < n; i++) {
                struct stat st;
                exists[i] = stat(a->roots[i], &st) == 0 && S_ISDIR(st.st_mode);
        }
        if (agent_state_set_roots(a->state, (const char *const *) a->roots, exists) < 0)
                log_warning("state DB: cannot record the watch roots");
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        agent *a = userdata;
        (void) s, (void) si;
        sd_notify(0, "RELOADING=1");
        agent_config fresh;
        agent_action action;
        mp_error err = {0};
        if (agent_config_load(a->argc, a->argv, &fresh, &action, &err) < 0) {
                agent_config_done(&fresh);
                log_error("reload refused, keeping the running config: %s", err.reason);
                sd_notify(0, "READY=1");
                return 0;
        }
        char **old_watch = a->config.watch;
        a->config.watch = fresh.watch;
        fresh.watch = old_watch;
        agent_config_done(&fresh);
        log_info("reloading watch roots (other settings apply at restart)");
        if (load_roots(a) < 0 || agent_watch_set_roots(a->watch, (const char *const *) a->roots, &err) < 0 ||
            agent_workers_set_roots(a->workers, (const char *const *) a->roots) < 0)
                log_error("reload: %s", err.reason[0] ? err.reason : "out of memory");
        record_roots(a);
        sd_notify(0, "READY=1");
        update_status(a);
        return 0;
}

static int on_sigusr1(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        agent *a = userdata;
        (void) s, (void) si;
        log_info("rescan requested");
        agent_watch_rescan(a->watch);
        return 0;
}

static int on_terminate(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        (void) userdata;
        log_info("stopping (%s)", strsignal((int) si->ssi_signo));
        sd_notify(0, "STOPPING=1");
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

/* ---- setup -------------------------------------------------------------- */

static int make_state_dir(const char *dir, mp_error *err) {
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return mp_error_set(err, -errno, dir, -1, "cannot create state directory: %s", strerror(errno));
        struct stat st;
        if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
                return mp_error_set(err, -ENOTDIR, dir, -1, "state directory is not a directory");
        return 0;
}

static int start_reporter(agent *a, mp_error *err) {
        if (!a->config.collector) {
                log_warning("no --collector: events stay in the outbox (bounded) until one is configured");
                return 0;
        }
        agent_reporter_options ro = {
                .state_path = a->state_path,
                .rpc = {
                        .target = a->config.collector,
                        .ca_file = a->config.ca_file,
                        .insecure_loopback = a->config.insecure_loopback,
                        .cert_file = a->config.client_cert,
                        .key_file = a->config.client_key,
                        .server_name = a->config.server_name,
                },
                .enroll_secret_file = a->config.enroll_secret_file,
                .agent_version = MODELPROV_VERSION,
                .heartbeat_s = a->config.heartbeat_s,
                .catalog_path = a->config.catalog ? NULL : a->catalog_path,
                .on_catalog = on_catalog,
                .on_state = on_link_state,
                .userdata = a,
        };
        return agent_reporter_start(&ro, &a->reporter, err);
}

static int setup(agent *a, mp_error *err) {
        int r = make_state_dir(a->config.state_dir, err);
        if (r < 0)
                return r;
        if (asprintf(&a->state_path, "%s/%s", a->config.state_dir, AGENT_STATE_FILE) < 0 ||
            (a->config.catalog ? !(a->catalog_path = strdup(a->config.catalog))
                               : asprintf(&a->catalog_path, "%s/catalog.db", a->config.state_dir) < 0))
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");

        r = agent_state_open(a->state_path, &a->state, err);
        if (r < 0)
                return r;
        r = agent_state_check(a->state, err);
        if (r < 0)
                return r;
        (void) agent_state_set_meta(a->state, "agent_version", MODELPROV_VERSION);
        (void) agent_state_set_meta(a->state, "collector", a->config.collector ? a->config.collector : "");
        enforce_outbox_bound(a);

        r = load_roots(a);
        if (r < 0)
                return mp_error_set(err, r, NULL, -1, "cannot list the watch roots: %s", strerror(-r));

        r = sd_event_default(&a->event);
        if (r < 0)
                return mp_error_set(err, r, NULL, -1, "sd_event: %s", strerror(-r));
        if (sd_event_add_signal(a->event, NULL, SIGTERM, on_terminate, a) < 0 ||
            sd_event_add_signal(a->event, NULL, SIGINT, on_terminate, a) < 0 ||
            sd_event_add_signal(a->event, NULL, SIGHUP, on_sighup, a) < 0 ||
            sd_event_add_signal(a->event, NULL, SIGUSR1, on_sigusr1, a) < 0 ||
            sd_event_add_defer(a->event, &a->dispatch_source, on_dispatch, a) < 0 ||
            sd_event_add_time(a->event, &a->retry_source, CLOCK_MONOTONIC, UINT64_MAX, 10000, on_retry, a) < 0 ||
            sd_event_add_time(a->event, &a->status_source, CLOCK_MONOTONIC, UINT64_MAX, 100000, on_status_timer,
                              a) < 0)
                return mp_error_set(err, -ENOMEM, NULL, -1, "cannot set up the event loop");
        sd_event_source_set_enabled(a->dispatch_source, SD_EVENT_OFF);
        sd_event_source_set_enabled(a->retry_source, SD_EVENT_OFF);
        sd_event_source_set_enabled(a->status_source, SD_EVENT_OFF);
        (void) sd_event_set_watchdog(a->event, true);

        agent_workers_options wo = {
                .n_threads = a->config.workers,
                .state_path = a->state_path,
                .roots = (const char *const *) a->roots,
                .read_rate_bytes = (uint64_t) a->config.read_rate_mb * 1000000,
                .catalog_path = a->catalog_path,
        };
        r = agent_workers_new(&wo, &a->workers, err);
        if (r < 0)
                return r;
        if (sd_event_add_io(a->event, &a->workers_source, agent_workers_fd(a->workers), EPOLLIN, on_workers, a) <
            0)
                return mp_error_set(err, -ENOMEM, NULL, -1, "cannot set up the event loop");

        r = start_reporter(a, err);
        if (r < 0)
                return r;

        agent_watch_options wa = {
                .roots = (const char *const *) a->roots,
                .settle_ms = a->config.settle_ms,
                .rescan_s = a->config.rescan_s,
                .cb = {
                        .is_unchanged = on_is_unchanged,
                        .ready = on_ready,
                        .removed = on_removed,
                        .dir_removed = on_dir_removed,
                        .crawl_done = on_crawl_done,
                        .userdata = a,
                },
        };
        return agent_watch_new(a->event, &wa, &a->watch, err);
}

static void teardown(agent *a) {
        /* The reporter first: its catalog callback touches the workers. */
        if (a->reporter)
                agent_reporter_stop(a->reporter);
        /* Then the workers (a job in the middle of a file stops within a
         * chunk), after their eventfd's source is gone. */
        sd_event_source_disable_unref(a->workers_source);
        agent_workers_free(a->workers);
        agent_watch_free(a->watch);
        sd_event_source_disable_unref(a->dispatch_source);
        sd_event_source_disable_unref(a->retry_source);
        sd_event_source_disable_unref(a->status_source);
        sd_event_unref(a->event);
        agent_state_close(a->state);
        while (a->n_pending > 0)
                drop_pending(a, a->pending[a->n_pending - 1]);
        free(a->pending);
        mp_strv_free(a->roots);
        free(a->state_path);
        free(a->catalog_path);
        agent_config_done(&a->config);
        pthread_mutex_destroy(&a->link_lock);
}

int main(int argc, char **argv) {
        agent a = {.argc = argc, .argv = argv, .start_us = now_us()};
        pthread_mutex_init(&a.link_lock, NULL);

        /* Before any thread exists (workers, reporter, gRPC): a signal must
         * reach the loop's signalfd, never a thread's default action. */
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGUSR1);
        sigprocmask(SIG_BLOCK, &mask, NULL);

        agent_action action;
        mp_error err = {0};
        if (agent_config_load(argc, argv, &a.config, &action, &err) < 0) {
                fprintf(stderr, "modelprovd: %s%s%s\n", err.file, err.file[0] ? ": " : "", err.reason);
                agent_config_done(&a.config);
                return 2;
        }
        if (action == AGENT_HELP) {
                agent_config_usage();
                agent_config_done(&a.config);
                return 0;
        }
        if (action == AGENT_VERSION) {
                printf("modelprovd %s\n", MODELPROV_VERSION);
                agent_config_done(&a.config);
                return 0;
        }
        log_setup("modelprovd", a.config.log_level);

        int r = setup(&a, &err);
        if (r < 0) {
                log_error("%s%s%s", err.file, err.file[0] ? ": " : "", err.reason);
                sd_notifyf(0, "STATUS=failed: %s\nERRNO=%d", err.reason, -r);
                teardown(&a);
                return 1;
        }

        record_roots(&a);
        log_info("ready: %s", a.state_path);
        update_status(&a);
        sd_notify(0, "READY=1");
        sd_event_source_set_enabled(a.dispatch_source, SD_EVENT_ONESHOT);

        r = sd_event_loop(a.event);
        if (r < 0)
                log_error("event loop failed: %s", strerror(-r));
        teardown(&a);
        log_info("stopped");
        return r < 0 ? 1 : 0;
}
