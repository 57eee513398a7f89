/* test_agent_reporter.c - the agent's reporter thread (agent/reporter.c)
 * against a real modelprov-collector on loopback, with real state DB files:
 * events queued in the outbox reach the collector exactly once (checked
 * with Query/History) when it is up from the start, when it comes up late,
 * and when it is killed with SIGKILL mid-stream and restarted on the same
 * store; a wrong enroll secret leaves the outbox intact and says why; a
 * refused host key is replaced by enrolling again; an event the collector
 * refuses is found, reported and kept without blocking what came before
 * it; stop() returns promptly while the collector is unreachable or hung;
 * a pushed catalog arrives at catalog_path byte for byte. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../unit/test.h"
#include "agent/outbox.h"
#include "agent/reporter.h"
#include "agent/state.h"
#include "catalog/catalog.h"
#include "collector_proc.h"
#include "daemon/log.h"
#include "modelprov.pb-c.h"
#include "util/macro.h"
#include "util/strutil.h"

#define WRONG_SECRET "not-the-enroll-secret-0123456789"
#define WRONG_KEY "this-is-not-our-host-key-0123456789"

/* RUN() for tests that take arguments. */
/* What the reporter told its callbacks. */
typedef struct observed {
        pthread_mutex_t lock;
        int connected, disconnected, catalogs;
        bool is_connected;
} observed;

static void on_state(void *userdata, bool connected, const char *text) {
        observed *o = userdata;
        CHECK(text && *text);
        pthread_mutex_lock(&o->lock);
        if (connected)
                o->connected++;
        else
                o->disconnected++;
        o->is_connected = connected;
        pthread_mutex_unlock(&o->lock);
}

static void on_catalog(void *userdata) {
        observed *o = userdata;
        pthread_mutex_lock(&o->lock);
        o->catalogs++;
        pthread_mutex_unlock(&o->lock);
}

static observed observed_get(observed *o) {
        pthread_mutex_lock(&o->lock);
        observed copy = *o;
        pthread_mutex_unlock(&o->lock);
        return copy;
}

/* One agent: a state DB, its enroll secret, and a reporter when started.
 * The test reads and writes the state DB through a handle of its own, as
 * the agent's other threads do. */
typedef struct agent {
        char *dir, *state_path, *secret_file, *catalog_path;
        agent_state *st;
        agent_reporter *rep;
        observed obs;
        char target[64];
} agent;

static void agent_init(agent *a, const char *secret) {
        *a = (agent) { .dir = test_tmpdir() };
        pthread_mutex_init(&a->obs.lock, NULL);
        a->state_path = test_path(a->dir, "state.db");
        a->catalog_path = test_path(a->dir, "catalog.db");
        a->secret_file = test_path(a->dir, "enroll.secret");
        int fd = open(a->secret_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        CHECK(fd >= 0);
        CHECK(write(fd, secret, strlen(secret)) == (ssize_t) strlen(secret));
        close(fd);
        mp_error err;
        mp_error_clear(&err);
        CHECK_EQ(agent_state_open(a->state_path, &a->st, &err), 0);
}

typedef struct agent_params {
        unsigned batch_events;
        unsigned heartbeat_s;
        bool catalog;
} agent_params;

static void agent_start(agent *a, const char *target, agent_params p) {
        CHECK(!a->rep);
        snprintf(a->target, sizeof(a->target), "%s", target);
        agent_reporter_options o = {
                .state_path = a->state_path,
                .rpc = { .target = a->target, .insecure_loopback = true, .deadline_ms = 10000 },
                .enroll_secret_file = a->secret_file,
                .agent_version = "test-agent 1.0",
                .heartbeat_s = p.heartbeat_s ? p.heartbeat_s : 3600,
                .batch_events = p.batch_events,
                .catalog_path = p.catalog ? a->catalog_path : NULL,
                .on_catalog = on_catalog,
                .on_state = on_state,
                .userdata = &a->obs,
                .backoff = { .initial_ms = 50, .max_ms = 300 },
        };
        mp_error err;
        mp_error_clear(&err);
        int r = agent_reporter_start(&o, &a->rep, &err);
        if (r < 0)
                fprintf(stderr, "start: %s\n", err.reason);
        CHECK_EQ(r, 0);
}

/* Stops the reporter; returns how long that took. */
static int64_t agent_stop(agent *a) {
        int64_t t = test_now_ms();
        agent_reporter_stop(a->rep);
        a->rep = NULL;
        return test_now_ms() - t;
}

static void agent_done(agent *a) {
        if (a->rep)
                agent_stop(a);
        agent_state_close(a->st);
        pthread_mutex_destroy(&a->obs.lock);
        free(a->dir);
        free(a->state_path);
        free(a->secret_file);
        free(a->catalog_path);
}

/* Queues MODEL_ADDED for /models/m<first> .. m<first+n-1>. */
static void queue_models(agent *a, unsigned first, unsigned n) {
        for (unsigned i = first; i < first + n; i++) {
                char path[64];
                uint8_t digest[32];
                snprintf(path, sizeof(path), "/models/m%u", i);
                memset(digest, 0, sizeof(digest));
                memcpy(digest, &i, sizeof(i));
                digest[31] = 0xd1;
                Modelprov__V1__Event ev = MODELPROV__V1__EVENT__INIT;
                ev.kind = MODELPROV__V1__EVENT_KIND__MODEL_ADDED;
                ev.observed_at = 1767225600000 + i;
                ev.path = path;
                ev.model_digest = (ProtobufCBinaryData) { 32, digest };
                CHECK_EQ(agent_outbox_append(a->st, &ev), 0);
        }
}

static uint64_t pending(agent *a) {
        uint64_t n = 0, bytes = 0;
        CHECK_EQ(agent_outbox_pending(a->st, &n, &bytes), 0);
        return n;
}

/* The meta value (malloc'd) or NULL. */
static char *meta(agent *a, const char *key) {
        char *v = NULL;
        CHECK_EQ(agent_state_get_meta(a->st, key, &v), 0);
        return v;
}

static bool meta_contains(agent *a, const char *key, const char *needle) {
        _cleanup_(freep) char *v = meta(a, key);
        return v && strstr(v, needle);
}

/* Polls until the outbox holds want rows; fails the test after ms. */
static void wait_pending(agent *a, uint64_t want, int64_t ms) {
        int64_t end = test_now_ms() + ms;
        uint64_t n;
        while ((n = pending(a)) != want) {
                if (test_now_ms() > end) {
                        fprintf(stderr, "outbox holds %llu events, want %llu\n", (unsigned long long) n,
                                (unsigned long long) want);
                        CHECK(!"outbox did not reach the expected size in time");
                }
                usleep(20000);
        }
}

static void wait_meta_contains(agent *a, const char *key, const char *needle, int64_t ms) {
        for (int64_t end = test_now_ms() + ms; !meta_contains(a, key, needle); usleep(20000))
                if (test_now_ms() > end) {
                        _cleanup_(freep) char *v = meta(a, key);
                        fprintf(stderr, "meta %s = \"%s\", want it to contain \"%s\"\n", key, v ? v : "(none)",
                                needle);
                        CHECK(!"meta value did not appear in time");
                }
}

/* last_error is cleared once a pass went through, just after its last ack. */
static void wait_meta_absent(agent *a, const char *key, int64_t ms) {
        for (int64_t end = test_now_ms() + ms;; usleep(20000)) {
                _cleanup_(freep) char *v = meta(a, key);
                if (!v)
                        return;
                if (test_now_ms() > end) {
                        fprintf(stderr, "meta %s = \"%s\", want none\n", key, v);
                        CHECK(!"meta value did not go away in time");
                }
        }
}

static void wait_disconnected(agent *a, int64_t ms) {
        for (int64_t end = test_now_ms() + ms; observed_get(&a->obs).is_connected; usleep(5000))
                CHECK(test_now_ms() < end);
}

static void unary(const char *target, const char *method, const char *token, const ProtobufCMessage *req,
                  const ProtobufCMessageDescriptor *type, ProtobufCMessage **ret) {
        _cleanup_(mp_rpc_client_freep) mp_rpc_client *cl = test_client_new(target, NULL);
        mp_error err;
        mp_error_clear(&err);
        int r = mp_rpc_unary(cl, method, &(mp_rpc_auth) { .token = token }, req, type, ret, NULL, &err);
        if (r < 0)
                fprintf(stderr, "%s: %s\n", method, err.reason);
        CHECK_EQ(r, 0);
}

/* What the collector stored for host_id: every event exactly once, with
 * sequences 1..n and n distinct paths; returns n. */
static size_t history_check(const test_collector *c, const char *host_id) {
        Modelprov__V1__HistoryRequest req = MODELPROV__V1__HISTORY_REQUEST__INIT;
        req.host_id = (char *) host_id;
        req.limit = 100000;
        Modelprov__V1__HistoryResponse *resp = NULL;
        unary(c->target, "/modelprov.v1.Query/History", TEST_QUERY_TOKEN, &req.base,
              &modelprov__v1__history_response__descriptor, (ProtobufCMessage **) &resp);
        size_t n = resp->n_events;
        _cleanup_(freep) uint8_t *seen = calloc(n + 1, 1);
        CHECK(seen);
        for (size_t i = 0; i < n; i++) {
                const Modelprov__V1__Event *e = resp->events[i]->event;
                CHECK(e);
                CHECK_STREQ(resp->events[i]->host_id, host_id);
                CHECK(e->sequence >= 1 && e->sequence <= n);
                CHECK(!seen[e->sequence]);      /* none twice */
                seen[e->sequence] = 1;
                for (size_t j = 0; j < i; j++)
                        CHECK(strcmp(resp->events[j]->event->path, e->path) != 0);
        }
        modelprov__v1__history_response__free_unpacked(resp, NULL);
        return n;
}

static size_t hosts_count(const test_collector *c) {
        Modelprov__V1__HostsRequest req = MODELPROV__V1__HOSTS_REQUEST__INIT;
        Modelprov__V1__HostsResponse *resp = NULL;
        unary(c->target, "/modelprov.v1.Query/Hosts", TEST_QUERY_TOKEN, &req.base,
              &modelprov__v1__hosts_response__descriptor, (ProtobufCMessage **) &resp);
        size_t n = resp->n_hosts;
        for (size_t i = 0; i < n; i++)
                CHECK_STREQ(resp->hosts[i]->agent_version, "test-agent 1.0");
        modelprov__v1__hosts_response__free_unpacked(resp, NULL);
        return n;
}

/* Everything queued arrives once; a kick sends new rows without waiting for
 * the heartbeat; the callbacks hear "connected" once. */
static void test_delivery(test_collector *c, agent *a) {
        queue_models(a, 1, 100);
        mp_error err;
        mp_error_clear(&err);
        CHECK_EQ(agent_state_add_finding(a->st, "/models/broken.pt", MP_FINDING_UNSAFE_PICKLE, "os.system",
                                         1767225600000, &err),
                 1);
        CHECK_EQ(pending(a), 101);
        agent_start(a, c->target, (agent_params) { .batch_events = 7 });
        wait_pending(a, 0, 30000);

        _cleanup_(freep) char *host_id = meta(a, "host_id");
        CHECK(host_id && strlen(host_id) == 36);
        CHECK_EQ(history_check(c, host_id), 101);
        CHECK_EQ(hosts_count(c), 1);
        uint64_t contact = 0;
        CHECK_EQ(agent_state_get_meta_u64(a->st, "last_contact", &contact), 0);
        CHECK(contact > 1767225600000ull);
        _cleanup_(freep) char *collector = meta(a, "collector");
        CHECK_STREQ(collector, c->target);
        _cleanup_(freep) char *error = meta(a, "last_error");
        CHECK(!error);

        /* Idle now (the heartbeat is an hour away): only a kick sends. */
        queue_models(a, 101, 5);
        agent_reporter_kick(a->rep);
        wait_pending(a, 0, 10000);
        CHECK_EQ(history_check(c, host_id), 106);

        observed o = observed_get(&a->obs);
        CHECK_EQ(o.connected, 1);
        CHECK_EQ(o.disconnected, 0);
        CHECK(agent_stop(a) < 3000);
}

/* The collector refuses our stored key (rotated, or the host re-enrolled
 * elsewhere): the reporter enrolls again, keeps its host id and delivers. */
static void test_key_refused(test_collector *c, agent *a) {
        _cleanup_(freep) char *host_id = meta(a, "host_id");
        CHECK(host_id);
        CHECK_EQ(agent_state_set_meta(a->st, "host_key", WRONG_KEY), 0);
        queue_models(a, 106, 3);
        agent_start(a, c->target, (agent_params) { .batch_events = 7 });
        wait_pending(a, 0, 30000);

        _cleanup_(freep) char *id2 = meta(a, "host_id"), *key = meta(a, "host_key");
        CHECK_STREQ(id2, host_id);
        CHECK(key && strcmp(key, WRONG_KEY) != 0);
        CHECK_EQ(hosts_count(c), 1);
        CHECK_EQ(history_check(c, host_id), 109);
        CHECK(agent_stop(a) < 3000);
}

/* A wrong enroll secret: no host id, nothing sent, the outbox intact,
 * last_error says why, and the failure is told once, not at every retry. */
static void test_wrong_secret(test_collector *c) {
        agent a;
        agent_init(&a, WRONG_SECRET);
        queue_models(&a, 1, 10);
        agent_start(&a, c->target, (agent_params) {});
        wait_meta_contains(&a, "last_error", "UNAUTHENTICATED", 10000);
        usleep(1500 * 1000);            /* several retries at the test's backoff */
        CHECK_EQ(pending(&a), 10);
        _cleanup_(freep) char *host_id = meta(&a, "host_id");
        CHECK(!host_id);
        observed o = observed_get(&a.obs);
        CHECK_EQ(o.connected, 0);
        CHECK_EQ(o.disconnected, 1);
        CHECK(agent_stop(&a) < 3000);
        agent_done(&a);
}

/* Nothing listens: the reporter keeps trying, and stop() still returns at
 * once; the same with a collector that accepted the connection and hangs
 * (SIGSTOP), where the call waits for an answer. */
static void test_stop_unreachable(void) {
        agent a;
        agent_init(&a, TEST_ENROLL_SECRET);
        queue_models(&a, 1, 10);
        char target[64];
        snprintf(target, sizeof(target), "127.0.0.1:%d", test_free_port());
        agent_start(&a, target, (agent_params) {});
        wait_meta_contains(&a, "last_error", target, 10000);
        CHECK_EQ(pending(&a), 10);
        int64_t took = agent_stop(&a);
        fprintf(stderr, "stop while unreachable: %lld ms\n", (long long) took);
        CHECK(took < 3000);

        test_collector hung;
        test_collector_init(&hung);
        test_collector_start(&hung, 0);
        CHECK_EQ(kill(hung.pid, SIGSTOP), 0);
        agent_start(&a, hung.target, (agent_params) {});
        usleep(500 * 1000);             /* inside Enroll, waiting for an answer */
        took = agent_stop(&a);
        fprintf(stderr, "stop while the collector hangs: %lld ms\n", (long long) took);
        CHECK(took < 3000);
        CHECK_EQ(pending(&a), 10);
        CHECK_EQ(kill(hung.pid, SIGCONT), 0);
        test_collector_done(&hung);
        agent_done(&a);
}

/* Events queued while the collector is not there yet: all arrive once it
 * starts, exactly once. */
static void test_late_collector(void) {
        test_collector c;
        test_collector_init(&c);
        int port = test_free_port();
        char target[64];
        snprintf(target, sizeof(target), "127.0.0.1:%d", port);

        agent a;
        agent_init(&a, TEST_ENROLL_SECRET);
        queue_models(&a, 1, 30);
        agent_start(&a, target, (agent_params) { .batch_events = 8 });
        wait_meta_contains(&a, "last_error", target, 10000);
        queue_models(&a, 31, 20);
        CHECK_EQ(pending(&a), 50);
        CHECK_EQ(observed_get(&a.obs).disconnected, 1);

        test_collector_start(&c, port);
        wait_pending(&a, 0, 30000);
        wait_meta_absent(&a, "last_error", 10000);
        _cleanup_(freep) char *host_id = meta(&a, "host_id");
        CHECK(host_id);
        CHECK_EQ(history_check(&c, host_id), 50);
        observed o = observed_get(&a.obs);
        CHECK(o.is_connected);
        CHECK_EQ(o.connected, 1);
        CHECK(agent_stop(&a) < 3000);
        agent_done(&a);
        test_collector_done(&c);
}

/* SIGKILL mid-stream, more events while it is down, a restart on the same
 * port and store: nothing lost, nothing twice. */
static void test_collector_killed(void) {
        test_collector c;
        test_collector_init(&c);
        test_collector_start(&c, 0);
        agent a;
        agent_init(&a, TEST_ENROLL_SECRET);
        const unsigned n = 3000;
        queue_models(&a, 1, n);
        agent_start(&a, c.target, (agent_params) { .batch_events = 4 });

        /* Some acked, not all: kill it mid-way. */
        for (int64_t end = test_now_ms() + 30000; pending(&a) > n - 40; usleep(1000))
                CHECK(test_now_ms() < end);
        CHECK(WIFSIGNALED(test_collector_stop(&c, SIGKILL)));
        /* Acks that were on their way are recorded before the stream fails. */
        wait_disconnected(&a, 30000);
        uint64_t left = pending(&a);
        fprintf(stderr, "collector killed with %llu of %u events pending\n", (unsigned long long) left, n);
        queue_models(&a, n + 1, 100);
        usleep(300 * 1000);
        CHECK_EQ(pending(&a), left + 100);

        test_collector_start(&c, c.port);
        wait_pending(&a, 0, 60000);
        _cleanup_(freep) char *host_id = meta(&a, "host_id");
        CHECK_EQ(history_check(&c, host_id), n + 100);
        CHECK(agent_stop(&a) < 3000);
        agent_done(&a);
        test_collector_done(&c);
}

/* An event the collector refuses (INVALID_ARGUMENT: a 31-byte digest): the
 * events before it are delivered (the batch is split to find it), last_error
 * says so, and after a few refusals it is replaced by an "event-refused"
 * finding under its number, so what follows is delivered too. */
static void test_refused_event(void) {
        test_collector c;
        test_collector_init(&c);
        test_collector_start(&c, 0);
        agent a;
        agent_init(&a, TEST_ENROLL_SECRET);
        queue_models(&a, 1, 10);
        uint8_t digest[31] = { 0 };
        Modelprov__V1__Event ev = MODELPROV__V1__EVENT__INIT;
        ev.kind = MODELPROV__V1__EVENT_KIND__MODEL_ADDED;
        ev.path = "/models/poison";
        ev.model_digest = (ProtobufCBinaryData) { sizeof(digest), digest };
        CHECK_EQ(agent_outbox_append(a.st, &ev), 0);
        queue_models(&a, 11, 5);

        agent_start(&a, c.target, (agent_params) { .batch_events = 16 });
        wait_pending(&a, 6, 30000);
        wait_meta_contains(&a, "last_error", "INVALID_ARGUMENT", 10000);
        _cleanup_(freep) char *host_id = meta(&a, "host_id");
        CHECK_EQ(history_check(&c, host_id), 10);
        /* Retried a few times, then replaced by a finding under the same
         * number, so that the five behind it go out too. */
        wait_pending(&a, 0, 30000);
        CHECK_EQ(history_check(&c, host_id), 16);
        Modelprov__V1__HistoryRequest req = MODELPROV__V1__HISTORY_REQUEST__INIT;
        req.host_id = host_id;
        req.limit = 100;
        Modelprov__V1__HistoryResponse *resp = NULL;
        unary(c.target, "/modelprov.v1.Query/History", TEST_QUERY_TOKEN, &req.base,
              &modelprov__v1__history_response__descriptor, (ProtobufCMessage **) &resp);
        bool found = false;
        for (size_t i = 0; i < resp->n_events; i++) {
                const Modelprov__V1__Event *e = resp->events[i]->event;
                if (e->sequence != 11)
                        continue;
                CHECK_EQ(e->kind, MODELPROV__V1__EVENT_KIND__FINDING);
                CHECK_STREQ(e->path, "/models/poison");
                CHECK(e->finding && strcmp(e->finding->kind, "event-refused") == 0);
                CHECK(strstr(e->finding->detail, "INVALID_ARGUMENT"));
                found = true;
        }
        CHECK(found);
        modelprov__v1__history_response__free_unpacked(resp, NULL);
        CHECK(agent_stop(&a) < 3000);
        agent_done(&a);
        test_collector_done(&c);
}

static char *push_catalog(const test_collector *c, const void *bytes, size_t len) {
        Modelprov__V1__PushCatalogRequest req = MODELPROV__V1__PUSH_CATALOG_REQUEST__INIT;
        req.catalog = (ProtobufCBinaryData) { len, (uint8_t *) bytes };
        Modelprov__V1__PushCatalogResponse *resp = NULL;
        unary(c->target, "/modelprov.v1.Ingest/PushCatalog", TEST_ADMIN_TOKEN, &req.base,
              &modelprov__v1__push_catalog_response__descriptor, (ProtobufCMessage **) &resp);
        char *version = strdup(resp->version);
        CHECK(version);
        modelprov__v1__push_catalog_response__free_unpacked(resp, NULL);
        return version;
}

static void wait_catalogs(agent *a, int want, int64_t ms) {
        for (int64_t end = test_now_ms() + ms; observed_get(&a->obs).catalogs < want; usleep(20000))
                CHECK(test_now_ms() < end);
}

/* A pushed catalog lands at catalog_path with its bytes; it is fetched
 * again when the file is gone, and not again while it is current. */
static void test_catalog(test_collector *c) {
        _cleanup_(freep) char *dir = test_tmpdir();
        _cleanup_(freep) char *src = test_path(dir, "fleet.catalog");
        mp_catalog *cat = NULL;
        mp_error err;
        mp_error_clear(&err);
        CHECK_EQ(mp_catalog_open(src, true, &cat, &err), 0);
        mp_catalog_close(cat);
        size_t len;
        _cleanup_(freep) char *bytes = test_read(src, &len);
        CHECK(len > 0);
        _cleanup_(freep) char *version = push_catalog(c, bytes, len);

        agent a;
        agent_init(&a, TEST_ENROLL_SECRET);
        agent_start(&a, c->target, (agent_params) { .heartbeat_s = 1, .catalog = true });
        wait_catalogs(&a, 1, 10000);
        size_t got_len;
        _cleanup_(freep) char *got = test_read(a.catalog_path, &got_len);
        CHECK_EQ(got_len, len);
        CHECK(memcmp(got, bytes, len) == 0);
        _cleanup_(freep) char *have = meta(&a, "catalog_version");
        CHECK_STREQ(have, version);
        _cleanup_(freep) char *tmp = NULL;
        CHECK(asprintf(&tmp, "%s.tmp", a.catalog_path) > 0);
        CHECK(access(tmp, F_OK) < 0 && errno == ENOENT);

        /* Current: the next heartbeats fetch nothing. */
        usleep(2500 * 1000);
        CHECK_EQ(observed_get(&a.obs).catalogs, 1);

        /* Gone: fetched again at the next heartbeat. */
        CHECK_EQ(unlink(a.catalog_path), 0);
        wait_catalogs(&a, 2, 10000);
        _cleanup_(freep) char *again = test_read(a.catalog_path, &got_len);
        CHECK_EQ(got_len, len);
        CHECK(memcmp(again, bytes, len) == 0);
        CHECK(agent_stop(&a) < 3000);
        agent_done(&a);
}

int main(void) {
        if (!getenv("MODELPROV_COLLECTOR_BIN")) {
                fprintf(stderr, "MODELPROV_COLLECTOR_BIN is not set (meson sets it)\n");
                return 1;
        }
        log_setup("test_agent_reporter", getenv("MODELPROV_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO);
        signal(SIGPIPE, SIG_IGN);

        test_collector c;
        test_collector_init(&c);
        test_collector_start(&c, 0);
        agent a;
        agent_init(&a, TEST_ENROLL_SECRET);
        RUN_WITH(test_delivery, &c, &a);
        RUN_WITH(test_key_refused, &c, &a);
        agent_done(&a);
        RUN_WITH(test_wrong_secret, &c);
        RUN_WITH(test_catalog, &c);
        RUN(test_stop_unreachable);
        RUN(test_late_collector);
        RUN(test_collector_killed);
        RUN(test_refused_event);

        int status = test_collector_stop(&c, SIGTERM);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                size_t n;
                _cleanup_(freep) char *log = test_read(c.log, &n);
                fprintf(stderr, "collector exit status %d; its log:\n%s\n", status, log);
                return 1;
        }
        test_collector_done(&c);
        return 0;
}
