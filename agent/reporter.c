/* reporter.c - the agent's link to the collector (reporter.h): one thread
 * that enrolls, drains the outbox over a pipelined Report stream, sends
 * heartbeats and fetches the fleet's catalog, retrying with backoff.
 *
 * Everything here runs on the reporter thread except start, kick and stop.
 * The thread owns its state DB handle and the gRPC client; the only shared
 * fields are the kick flag (under lock) and the stop flag, which lib/rpc
 * polls so that a wait for the collector ends soon after a stop. */
#include "agent/reporter.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "agent/outbox.h"
#include "agent/state.h"
#include "daemon/log.h"
#include "modelprov.pb-c.h"
#include "util/macro.h"
#include "util/secret.h"
#include "util/source.h"
#include "util/strutil.h"

#define METHOD_ENROLL "/modelprov.v1.Ingest/Enroll"
#define METHOD_REPORT "/modelprov.v1.Ingest/Report"
#define METHOD_HEARTBEAT "/modelprov.v1.Ingest/Heartbeat"
#define METHOD_FETCH_CATALOG "/modelprov.v1.Ingest/FetchCatalog"

#define DEFAULT_HEARTBEAT_S 60
#define DEFAULT_BATCH_EVENTS 256
#define MAX_BATCH_EVENTS 4096           /* the collector refuses larger batches */
/* Packed events per batch, about: far below the collector's 64 MiB message
 * limit, small enough that a resend after a cut stream costs little. */
#define BATCH_MAX_BYTES (4u << 20)
/* Batches sent ahead of their acks: the collector commits one batch while
 * the next ones travel, instead of idling for a round trip each. */
#define PIPELINE_DEPTH 4
/* Idle longer than this: the channel is closed until the next exchange. */
#define IDLE_DISCONNECT_MS 5000
/* A refused event is retried this many times (at the backoff cap) before it
 * is replaced by a finding: a collector bug fixed by an upgrade in between
 * then loses nothing. */
#define REFUSALS_BEFORE_REPLACING 3
#define BACKOFF_INITIAL_MS 1000
#define BACKOFF_MAX_MS 60000
#define BACKOFF_MAX_RETRY 64            /* the ceiling is at the cap long before */
#define IDENT_MAX 256                   /* the collector's limit for hostname, os, versions */
#define HOST_ID_MAX 128
#define OS_RELEASE_MAX (64u << 10)
#define ERROR_TEXT_MAX 1024
#define SHA256_HEX 64

struct agent_reporter {
        agent_reporter_options o;
        mp_rpc_options rpc;             /* o.rpc with our stop flag */
        mp_backoff backoff;
        unsigned heartbeat_s;
        unsigned batch_events;

        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t cond;            /* CLOCK_MONOTONIC */
        bool kicked;                    /* under lock */
        volatile sig_atomic_t stop;     /* set under lock; lib/rpc polls it */

        /* Owned by the reporter thread once it runs. */
        agent_state *state;
        mp_rpc_client *client;
        char *host_id, *host_key;       /* NULL: not enrolled */
        char *hostname, *machine_id, *os;
        char *catalog_wanted;           /* the collector's catalog version at the last heartbeat */

        bool connected;
        char *error;                    /* the failure last logged; NULL after a success */
        unsigned failures;              /* since the last success: the backoff's step */
        int64_t next_heartbeat;         /* CLOCK_MONOTONIC ms; 0: at the next pass */
        uint64_t single_until;          /* send one event per batch until this one is acked */
        uint64_t poison_seq;            /* an event the collector refuses; 0: none */
        unsigned poison_count;          /* how often in a row it was refused */
        bool key_refused;               /* the last -EACCES came from a call with our host key */
        bool link_failed;               /* this pass failed talking to the collector */
        bool refused;                   /* this pass failed on an event the collector refuses */
        bool logged;                    /* ... and logged why at error level */
};

static int64_t clock_ms(clockid_t id) {
        struct timespec ts;
        clock_gettime(id, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void) {
        return clock_ms(CLOCK_MONOTONIC);
}

static int64_t unix_ms(void) {
        return clock_ms(CLOCK_REALTIME);
}

/* Frees a secret after overwriting it, so that it does not linger in freed
 * heap memory (core dumps). */
static void secret_free(char *s) {
        if (!s)
                return;
        explicit_bzero(s, strlen(s));
        free(s);
}

static void secret_freep(char **s) {
        secret_free(*s);
}

static bool streq_ptr(const char *a, const char *b) {
        return a && b && strcmp(a, b) == 0;
}

/* A meta value; "" reads as absent too (an operator may blank a key). */
static int meta_get(agent_reporter *r, const char *key, char **ret) {
        char *v = NULL;
        int q = agent_state_get_meta(r->state, key, &v);
        if (q < 0)
                return q;
        if (v && !*v) {
                free(v);
                v = NULL;
        }
        *ret = v;
        return 0;
}

/* Writes meta key = value (NULL: deletes it), logging, not returning, a
 * failure: for bookkeeping (last_error, a refused key) that must not stop
 * the delivery of events. */
static void meta_note(agent_reporter *r, const char *key, const char *value) {
        int q = agent_state_set_meta(r->state, key, value);
        if (q < 0)
                log_warning("state %s: cannot record %s: %s", r->o.state_path, key, strerror(-q));
}

static void note_contact(agent_reporter *r) {
        int q = agent_state_set_meta_u64(r->state, "last_contact", (uint64_t) unix_ms());
        if (q < 0)
                log_warning("state %s: cannot record last_contact: %s", r->o.state_path, strerror(-q));
}

static int state_error(agent_reporter *r, int q, const char *what, mp_error *err) {
        return mp_error_set(err, q, r->o.state_path, -1, "cannot %s: %s", what, strerror(-q));
}

/* ---- who we are ---------------------------------------------------------- */

/* s made fit for a HostInfo field: printable, at most IDENT_MAX - 1 bytes,
 * cut at a UTF-8 boundary (the collector refuses invalid strings). */
static char *ident_dup(const char *s) {
        char buf[IDENT_MAX];
        mp_printable(buf, sizeof buf, s);
        buf[mp_utf8_invalid_at((const uint8_t *) buf, strlen(buf))] = 0;
        return strdup(buf);
}

/* /etc/machine-id when it holds an id (32 hex digits; images ship it
 * empty or "uninitialized"), else NULL. */
static char *machine_id_read(void) {
        _cleanup_(freep) char *buf = NULL;
        size_t n = 0;
        if (mp_read_file_limited("/etc/machine-id", "machine id", 4096, &buf, &n, NULL) < 0)
                return NULL;
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
                buf[--n] = 0;
        if (n != 32)
                return NULL;
        for (size_t i = 0; i < n; i++)
                if (!strchr("0123456789abcdefABCDEF", buf[i]))
                        return NULL;
        return TAKE_PTR(buf);
}

/* A random UUID (version 4) as text. */
static int uuid_random(char out[37]) {
        uint8_t b[16];
        if (getrandom(b, sizeof b, 0) != (ssize_t) sizeof b)
                return -EIO;
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        char hex[33];
        mp_hex(b, sizeof b, hex);
        snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
        return 0;
}

/* The machine id the collector knows us by: /etc/machine-id, else one made
 * up once and kept in meta "machine_id" (so that re-enrolling keeps the
 * host id). */
static int machine_id_load(agent_reporter *r, mp_error *err) {
        r->machine_id = machine_id_read();
        if (r->machine_id)
                return 0;
        int q = meta_get(r, "machine_id", &r->machine_id);
        if (q < 0)
                return state_error(r, q, "read machine_id", err);
        if (r->machine_id)
                return 0;
        char id[37];
        q = uuid_random(id);
        if (q < 0)
                return mp_error_set(err, q, NULL, -1, "cannot make up a machine id: no random bytes");
        q = agent_state_set_meta(r->state, "machine_id", id);
        if (q < 0)
                return state_error(r, q, "record machine_id", err);
        log_info("/etc/machine-id is missing: this host enrolls as %s", id);
        r->machine_id = strdup(id);
        return r->machine_id ? 0 : -ENOMEM;
}

/* PRETTY_NAME of /etc/os-release, unquoted, or NULL. */
static char *os_pretty_name(void) {
        _cleanup_(freep) char *buf = NULL;
        size_t n = 0;
        if (mp_read_file_limited("/etc/os-release", "os-release", OS_RELEASE_MAX, &buf, &n, NULL) < 0)
                return NULL;
        for (char *line = buf, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                if (!mp_has_prefix(line, "PRETTY_NAME="))
                        continue;
                char *v = line + strlen("PRETTY_NAME=");
                size_t k = strlen(v);
                if (k >= 2 && (v[0] == '"' || v[0] == '\'') && v[k - 1] == v[0]) {
                        v[k - 1] = 0;
                        v++;
                }
                return *v ? strdup(v) : NULL;
        }
        return NULL;
}

/* "Debian GNU/Linux 12 (bookworm); Linux 6.1.0-18-amd64", or the kernel
 * alone when there is no os-release. */
static char *os_describe(void) {
        struct utsname u;
        if (uname(&u) < 0)
                strcpy(u.sysname, "unknown");
        else if (!u.release[0])
                strcpy(u.release, "?");
        _cleanup_(freep) char *pretty = os_pretty_name(), *s = NULL;
        int k = pretty ? asprintf(&s, "%s; %s %s", pretty, u.sysname, u.release)
                       : asprintf(&s, "%s %s", u.sysname, u.release);
        if (k < 0)
                return NULL;
        return ident_dup(s);
}

static int identity_load(agent_reporter *r, mp_error *err) {
        char host[HOST_NAME_MAX + 1] = "";
        if (gethostname(host, sizeof host) < 0 || !host[0])
                strcpy(host, "localhost");
        host[HOST_NAME_MAX] = 0;
        r->hostname = ident_dup(host);
        r->os = os_describe();
        if (!r->hostname || !r->os)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        int q = machine_id_load(r, err);
        if (q < 0)
                return q;

        q = meta_get(r, "host_id", &r->host_id);
        if (q >= 0)
                q = meta_get(r, "host_key", &r->host_key);
        if (q < 0)
                return state_error(r, q, "read the host identity", err);
        if (!r->host_id || !r->host_key) {
                free(r->host_id);
                secret_free(r->host_key);
                r->host_id = r->host_key = NULL;
        }
        return 0;
}

/* ---- connection state ---------------------------------------------------- */

/* The collector answered: the link works (told once per change). */
static void reporter_contact(agent_reporter *r) {
        if (r->connected)
                return;
        r->connected = true;
        log_info("connected to collector %s", r->rpc.target);
        if (r->o.on_state)
                r->o.on_state(r->o.userdata, true, "connected");
}

/* A pass went through: everything queued was delivered. */
static void reporter_succeeded(agent_reporter *r) {
        reporter_contact(r);
        r->failures = 0;
        if (!r->error)
                return;
        free(r->error);
        r->error = NULL;
        meta_note(r, "last_error", NULL);
}

/* Records a failed pass in meta last_error, the log and on_state, once per
 * change of connection state or of error text, not at every retry.  Only a
 * failed call counts as a lost link: not a local failure (state DB, catalog
 * file), not a refused event (the collector answered). */
static void reporter_failed(agent_reporter *r, const mp_error *err, bool link_failure) {
        char text[ERROR_TEXT_MAX];
        mp_error_format(err, text, sizeof text);
        if (!text[0])
                snprintf(text, sizeof text, "collector %s: failed", r->rpc.target);

        bool lost = link_failure && r->connected;
        if (link_failure) {
                r->connected = false;
                r->next_heartbeat = 0;  /* heartbeat first after reconnecting */
        }
        bool changed = !streq_ptr(r->error, text);
        if (changed) {
                free(r->error);
                r->error = strdup(text);
                meta_note(r, "last_error", text);
        }
        if (!changed && !lost)
                return;
        if (!r->logged)
                log_warning("%s", text);
        if (r->o.on_state)
                r->o.on_state(r->o.userdata, r->connected, text);
}

/* How long to wait after a failed pass: full jitter with a growing ceiling;
 * while an event is refused, between half the cap and the cap, so that a
 * poison event neither spins nor hides. */
static int64_t reporter_backoff_ms(agent_reporter *r) {
        if (r->poison_seq > 0) {
                int64_t half = r->backoff.max_ms / 2;
                return half + (int64_t) (mp_backoff_random() % (uint64_t) (half + 1));
        }
        unsigned step = r->failures < BACKOFF_MAX_RETRY ? r->failures++ : r->failures;
        return mp_backoff_delay_ms(&r->backoff, step, mp_backoff_random());
}

/* Sleeps ms (<= 0: not at all), until stop, or with wake_on_kick until a
 * kick.  No polling: a condition variable on the monotonic clock. */
static void reporter_wait(agent_reporter *r, int64_t ms, bool wake_on_kick) {
        if (ms < 0)
                ms = 0;
        struct timespec end;
        clock_gettime(CLOCK_MONOTONIC, &end);
        end.tv_sec += ms / 1000;
        end.tv_nsec += (ms % 1000) * 1000000;
        if (end.tv_nsec >= 1000000000) {
                end.tv_sec++;
                end.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&r->lock);
        while (!r->stop && !(wake_on_kick && r->kicked))
                if (pthread_cond_timedwait(&r->cond, &r->lock, &end) == ETIMEDOUT)
                        break;
        pthread_mutex_unlock(&r->lock);
}

/* ---- enroll, heartbeat ---------------------------------------------------- */

static mp_rpc_auth host_auth(const agent_reporter *r) {
        return (mp_rpc_auth) { .token = r->host_key, .host_id = r->host_id };
}

/* Notes the result q of a call to the collector: a failure there is a
 * link failure (unlike a local one: the state DB, the catalog file), and
 * UNAUTHENTICATED (-EACCES) there means our key is refused (unlike an
 * -EACCES of a local file). */
static int rpc_result(agent_reporter *r, int q) {
        if (q < 0 && q != -ECANCELED)
                r->link_failed = true;
        if (q == -EACCES)
                r->key_refused = true;
        return q;
}

/* A host id goes back as a metadata value: a UUID in practice; anything
 * but letters, digits and dashes is refused. */
static bool host_id_valid(const char *s) {
        size_t n = s ? strlen(s) : 0;
        if (n == 0 || n > HOST_ID_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!(s[i] == '-' || (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z') ||
                      (s[i] >= 'A' && s[i] <= 'Z')))
                        return false;
        return true;
}

/* The collector told us where it stands: number on from there, and queue
 * the inventory again if it forgot what it had acknowledged. */
static int reporter_sync(agent_reporter *r, uint64_t collector_acked, mp_error *err) {
        int q = agent_outbox_sync(r->state, collector_acked, unix_ms());
        if (q < 0)
                return state_error(r, q, "record the collector's acknowledged sequence", err);
        if (q == 0)
                return 0;
        log_warning("collector %s acknowledges only up to sequence %llu, less than before (its store was reset?): "
                    "the inventory is queued again",
                    r->rpc.target, (unsigned long long) collector_acked);
        /* The old numbers are gone: so is what was learnt about them. */
        r->poison_seq = 0;
        r->poison_count = 0;
        r->single_until = 0;
        agent_reporter_kick(r);
        return 0;
}

/* Forgets a host key the collector refused: the next pass enrolls again
 * (same machine id: the collector keeps our host id and sequence). */
static void reporter_forget_key(agent_reporter *r) {
        log_warning("collector %s refused the host key of host %s: enrolling again", r->rpc.target, r->host_id);
        secret_free(r->host_key);
        r->host_key = NULL;
        meta_note(r, "host_key", NULL);
}

static void enroll_response_freep(Modelprov__V1__EnrollResponse **p) {
        if (*p)
                modelprov__v1__enroll_response__free_unpacked(*p, NULL);
}

static int reporter_enroll(agent_reporter *r, mp_error *err) {
        _cleanup_(secret_freep) char *secret = NULL;
        int q = mp_secret_read_file(r->o.enroll_secret_file, "enroll secret", &secret, err);
        if (q < 0)
                return q;

        Modelprov__V1__HostInfo info = MODELPROV__V1__HOST_INFO__INIT;
        info.hostname = r->hostname;
        info.machine_id = r->machine_id;
        info.agent_version = (char *) r->o.agent_version;
        info.os = r->os;
        Modelprov__V1__EnrollRequest req = MODELPROV__V1__ENROLL_REQUEST__INIT;
        req.host = &info;
        _cleanup_(enroll_response_freep) Modelprov__V1__EnrollResponse *resp = NULL;
        q = rpc_result(r, mp_rpc_unary(r->client, METHOD_ENROLL, &(mp_rpc_auth) { .token = secret }, &req.base,
                                       &modelprov__v1__enroll_response__descriptor, (ProtobufCMessage **) &resp,
                                       NULL, err));
        if (q < 0)
                return q;

        if (!host_id_valid(resp->host_id))
                return mp_error_set(err, -EBADMSG, NULL, -1, "collector %s: Enroll returned an unusable host id",
                                    r->rpc.target);
        q = mp_secret_check(resp->host_key, "host key", NULL);
        if (q < 0)
                return mp_error_set(err, -EBADMSG, NULL, -1, "collector %s: Enroll returned an unusable host key",
                                    r->rpc.target);

        _cleanup_(freep) char *id = strdup(resp->host_id);
        _cleanup_(secret_freep) char *key = strdup(resp->host_key);
        explicit_bzero(resp->host_key, strlen(resp->host_key));
        if (!id || !key)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        /* The id first: a crash in between leaves no key, so a restart
         * enrolls again instead of using a key without its id. */
        q = agent_state_set_meta(r->state, "host_id", id);
        if (q >= 0)
                q = agent_state_set_meta(r->state, "host_key", key);
        if (q < 0)
                return state_error(r, q, "record the host identity", err);
        free(r->host_id);
        secret_free(r->host_key);
        r->host_id = TAKE_PTR(id);
        r->host_key = TAKE_PTR(key);
        log_info("enrolled with collector %s as host %s (acknowledged through %llu)", r->rpc.target, r->host_id,
                 (unsigned long long) resp->acked_through);
        note_contact(r);
        reporter_contact(r);
        r->next_heartbeat = 0;
        return reporter_sync(r, resp->acked_through, err);
}

static bool catalog_version_valid(const char *v) {
        return v && (!*v || (strlen(v) == SHA256_HEX && mp_is_lower_hex(v, SHA256_HEX)));
}

static void heartbeat_response_freep(Modelprov__V1__HeartbeatResponse **p) {
        if (*p)
                modelprov__v1__heartbeat_response__free_unpacked(*p, NULL);
}

static int reporter_heartbeat(agent_reporter *r, mp_error *err) {
        agent_state_counts counts = {0};
        int q = agent_state_counts_get(r->state, &counts);
        if (q < 0)
                return state_error(r, q, "count models and pending events", err);

        Modelprov__V1__HeartbeatRequest req = MODELPROV__V1__HEARTBEAT_REQUEST__INIT;
        req.agent_version = (char *) r->o.agent_version;
        req.models = counts.models;
        req.outbox_pending = counts.outbox_pending;
        mp_rpc_auth auth = host_auth(r);
        _cleanup_(heartbeat_response_freep) Modelprov__V1__HeartbeatResponse *resp = NULL;
        q = rpc_result(r, mp_rpc_unary(r->client, METHOD_HEARTBEAT, &auth, &req.base,
                                      &modelprov__v1__heartbeat_response__descriptor, (ProtobufCMessage **) &resp,
                                      NULL, err));
        if (q < 0)
                return q;
        note_contact(r);
        reporter_contact(r);
        if (!catalog_version_valid(resp->catalog_version))
                return mp_error_set(err, -EBADMSG, NULL, -1,
                                    "collector %s: Heartbeat returned a catalog version that is not a SHA-256",
                                    r->rpc.target);
        char *v = strdup(resp->catalog_version);
        if (!v)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        free(r->catalog_wanted);
        r->catalog_wanted = v;
        r->next_heartbeat = mono_ms() + (int64_t) r->heartbeat_s * 1000;
        return reporter_sync(r, resp->acked_through, err);
}

/* ---- the Report stream ----------------------------------------------------- */

static void batch_freep(Modelprov__V1__ReportBatch **b) {
        if (*b)
                agent_outbox_batch_free(*b);
}

static uint64_t batch_first(const Modelprov__V1__ReportBatch *b) {
        return b->events[0]->sequence;
}

static uint64_t batch_last(const Modelprov__V1__ReportBatch *b) {
        return b->events[b->n_events - 1]->sequence;
}

/* Batches sent and not yet acknowledged, oldest first. */
typedef struct flight {
        Modelprov__V1__ReportBatch *ring[PIPELINE_DEPTH];
        size_t head, n;
} flight;

static Modelprov__V1__ReportBatch *flight_at(const flight *f, size_t i) {
        return f->ring[(f->head + i) % PIPELINE_DEPTH];
}

static void flight_done(flight *f) {
        for (; f->n > 0; f->n--, f->head = (f->head + 1) % PIPELINE_DEPTH)
                agent_outbox_batch_free(f->ring[f->head]);
}

/* The collector refused one of the batches in flight (INVALID_ARGUMENT, or
 * over its size limit) and ended the stream: nothing of that batch is
 * stored, and resending it as it is fails again.  Which batch is not known
 * (acks of the ones before it may be lost with the stream), so the events
 * in flight are resent one at a time, without pipelining, to find the one
 * it refuses.  That one is logged at error level with its sequence and
 * path, kept, and retried at the backoff's cap: never dropped, never a
 * busy loop. */
static int reporter_refused(agent_reporter *r, const flight *f, int q, mp_error *err) {
        char reason[ERROR_TEXT_MAX];
        mp_error_format(err, reason, sizeof reason);
        r->refused = true;
        const Modelprov__V1__ReportBatch *first = flight_at(f, 0), *last = flight_at(f, f->n - 1);
        if (f->n > 1 || first->n_events > 1) {
                r->single_until = batch_last(last);
                return mp_error_set(err, q, NULL, -1, "%s (in events %llu-%llu): resending them one at a time",
                                    reason, (unsigned long long) batch_first(first),
                                    (unsigned long long) batch_last(last));
        }

        const Modelprov__V1__Event *e = first->events[0];
        char path[512];
        mp_printable(path, sizeof path, e->path ? e->path : "");
        q = mp_error_set(err, q, NULL, -1, "the collector refuses event %llu (%s): %s", (unsigned long long) e->sequence,
                         path, reason);
        if (r->poison_seq != e->sequence) {
                char seq[64], fpath[600];
                snprintf(seq, sizeof seq, "EVENT_SEQUENCE=%llu", (unsigned long long) e->sequence);
                snprintf(fpath, sizeof fpath, "MODEL_PATH=%s", path);
                const char *fields[] = { seq, fpath, NULL };
                log_fields(LOG_LEVEL_ERROR, fields,
                           "%s; it stays queued, and it and the events after it are retried every %.0f s or so",
                           err->reason, (double) r->backoff.max_ms / 1000);
                r->logged = true;
        }
        r->poison_count = r->poison_seq == e->sequence ? r->poison_count + 1 : 1;
        r->poison_seq = e->sequence;
        if (r->single_until < e->sequence)
                r->single_until = e->sequence;
        /* Only INVALID_ARGUMENT is a verdict on the event itself;
         * RESOURCE_EXHAUSTED (-E2BIG) can be a collector short of memory for
         * a while, and the outbox never holds events over the collector's
         * size limits, so those are retried, never replaced. */
        if (q == -EINVAL && r->poison_count >= REFUSALS_BEFORE_REPLACING) {
                /* Keeping it would block every later event for ever (the
                 * collector stores in sequence order). */
                mp_error e2 = {0};
                if (agent_outbox_replace_refused(r->state, e->sequence, reason, &e2) >= 0) {
                        log_error("event %llu (%s) refused %u times: replaced by an event-refused finding",
                                  (unsigned long long) e->sequence, path, r->poison_count);
                        r->poison_seq = 0;
                        r->poison_count = 0;
                } else
                        log_error("cannot replace refused event %llu: %s", (unsigned long long) e->sequence,
                                  e2.reason);
        }
        return q;
}

/* The collector stored everything through acked. */
static int reporter_acked(agent_reporter *r, uint64_t acked, mp_error *err) {
        reporter_contact(r);
        int q = agent_outbox_ack(r->state, acked, unix_ms());
        if (q < 0)
                return state_error(r, q, "delete acknowledged events", err);
        if (r->poison_seq > 0 && acked >= r->poison_seq) {
                log_info("collector %s accepted event %llu at last", r->rpc.target,
                         (unsigned long long) r->poison_seq);
                r->poison_seq = 0;
        }
        if (r->single_until > 0 && acked >= r->single_until)
                r->single_until = 0;
        return 0;
}

static void report_ack_freep(Modelprov__V1__ReportAck **p) {
        if (*p)
                modelprov__v1__report_ack__free_unpacked(*p, NULL);
}

/* Receives the ack of b, the oldest batch in flight, and records it. */
static int reporter_recv_ack(agent_reporter *r, mp_rpc_stream *s, const Modelprov__V1__ReportBatch *b,
                             mp_error *err) {
        _cleanup_(report_ack_freep) Modelprov__V1__ReportAck *ack = NULL;
        uint64_t want = batch_last(b);
        int q = rpc_result(r, mp_rpc_stream_recv(s, &modelprov__v1__report_ack__descriptor, (ProtobufCMessage **) &ack,
                                                0, err));
        if (q == 0)
                return rpc_result(r, mp_error_set(err, -EPIPE, NULL, -1,
                                    "collector %s ended the Report stream before acknowledging event %llu",
                                    r->rpc.target, (unsigned long long) want));
        if (q < 0)
                return q;
        if (ack->duplicates > 0)
                log_debug("collector %s already had %u of events %llu-%llu", r->rpc.target, ack->duplicates,
                          (unsigned long long) batch_first(b), (unsigned long long) want);
        q = reporter_acked(r, ack->acked_through, err);
        if (q < 0)
                return q;
        /* Short of the batch: the collector stopped at a gap in our
         * numbering.  A heartbeat at once syncs it (the regular one could
         * be a minute away). */
        if (ack->acked_through < want) {
                r->next_heartbeat = 0;
                return mp_error_set(err, -EILSEQ, NULL, -1,
                                    "collector %s acknowledged through event %llu of %llu: a gap in the sequence",
                                    r->rpc.target, (unsigned long long) ack->acked_through,
                                    (unsigned long long) want);
        }
        return 0;
}

/* Sends the outbox until it is empty, up to PIPELINE_DEPTH batches ahead of
 * their acks (which arrive in order), then ends the stream: no idle stream
 * stays open.  Rows stay in the outbox until acked, so after a failure
 * anywhere the next stream resends from the oldest unacked row, with the
 * same sequence numbers. */
static int reporter_drain(agent_reporter *r, mp_error *err) {
        _cleanup_(mp_rpc_stream_freep) mp_rpc_stream *s = NULL;
        _cleanup_(flight_done) flight f = { .head = 0 };
        uint64_t sent = 0;              /* the last sequence sent on this stream */

        for (;;) {
                /* Searching for a refused event: one event at a time, one in flight. */
                bool single = r->single_until > 0;
                if (f.n < (single ? 1 : PIPELINE_DEPTH)) {
                        size_t per = single ? 1 : r->batch_events;
                        _cleanup_(batch_freep) Modelprov__V1__ReportBatch *b = NULL;
                        int q = agent_outbox_next_batch_after(r->state, sent, per, BATCH_MAX_BYTES, &b, err);
                        if (q < 0)
                                return q;
                        if (b->n_events > 0) {
                                if (!s) {
                                        mp_rpc_auth auth = host_auth(r);
                                        q = rpc_result(r, mp_rpc_stream_open(r->client, METHOD_REPORT, &auth, 0,
                                                                            &s, err));
                                        if (q < 0)
                                                return q;
                                }
                                sent = batch_last(b);
                                f.ring[(f.head + f.n++) % PIPELINE_DEPTH] = TAKE_PTR(b);
                                q = rpc_result(r, mp_rpc_stream_send(s, &flight_at(&f, f.n - 1)->base, 0, err));
                                if (q == -EINVAL || q == -E2BIG)
                                        return reporter_refused(r, &f, q, err);
                                if (q < 0)
                                        return q;
                                continue;
                        }
                }
                if (f.n == 0)
                        break;
                int q = reporter_recv_ack(r, s, flight_at(&f, 0), err);
                if (q == -EINVAL || q == -E2BIG)
                        return reporter_refused(r, &f, q, err);
                if (q < 0)
                        return q;
                agent_outbox_batch_free(f.ring[f.head]);
                f.head = (f.head + 1) % PIPELINE_DEPTH;
                f.n--;
        }
        if (!s)
                return 0;
        return rpc_result(r, mp_rpc_stream_finish(s, 0, NULL, err));
}

/* ---- the catalog ----------------------------------------------------------- */

static int sha256_hex(const void *data, size_t len, char out[SHA256_HEX + 1]) {
        uint8_t md[32];
        unsigned n = 0;
        if (EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) != 1 || n != sizeof md)
                return -EIO;
        mp_hex(md, sizeof md, out);
        return 0;
}

/* Makes the rename durable: fsync of the directory holding path. */
static int fsync_parent(const char *path) {
        _cleanup_(freep) char *dir = strdup(path);
        if (!dir)
                return -ENOMEM;
        char *slash = strrchr(dir, '/');
        if (!slash)
                strcpy(dir, ".");
        else if (slash == dir)
                slash[1] = 0;
        else
                *slash = 0;
        _cleanup_(closep) int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) < 0)
                return -errno;
        return 0;
}

/* Replaces path with data: written to path.tmp, synced, renamed over path,
 * so a reader (or a crash) sees the old file or the new one, never half. */
static int write_file_atomic(const char *path, const void *data, size_t len, mp_error *err) {
        _cleanup_(freep) char *tmp = NULL;
        if (asprintf(&tmp, "%s.tmp", path) < 0)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return mp_error_set(err, -errno, tmp, -1, "cannot create: %s", strerror(errno));
        int q = mp_write_all(fd, data, len);
        if (q >= 0 && fsync(fd) < 0)
                q = -errno;
        if (close(fd) < 0 && q >= 0)
                q = -errno;
        if (q >= 0 && rename(tmp, path) < 0)
                q = -errno;
        if (q < 0) {
                (void) unlink(tmp);
                return mp_error_set(err, q, tmp, -1, "cannot write the catalog: %s", strerror(-q));
        }
        q = fsync_parent(path);
        if (q < 0)
                log_warning("%s: cannot sync its directory: %s", path, strerror(-q));
        return 0;
}

static void fetch_catalog_response_freep(Modelprov__V1__FetchCatalogResponse **p) {
        if (*p)
                modelprov__v1__fetch_catalog_response__free_unpacked(*p, NULL);
}

/* Fetches the fleet's catalog when the collector's version (at the last
 * heartbeat) is not ours, or our file is gone. */
static int reporter_catalog(agent_reporter *r, mp_error *err) {
        if (!r->o.catalog_path || !r->catalog_wanted || !*r->catalog_wanted)
                return 0;
        _cleanup_(freep) char *have = NULL;
        int q = meta_get(r, "catalog_version", &have);
        if (q < 0)
                return state_error(r, q, "read catalog_version", err);
        if (have && access(r->o.catalog_path, F_OK) < 0) {
                free(have);
                have = NULL;
        }
        if (streq_ptr(have, r->catalog_wanted))
                return 0;

        Modelprov__V1__FetchCatalogRequest req = MODELPROV__V1__FETCH_CATALOG_REQUEST__INIT;
        req.have_version = have ? have : "";
        mp_rpc_auth auth = host_auth(r);
        _cleanup_(fetch_catalog_response_freep) Modelprov__V1__FetchCatalogResponse *resp = NULL;
        q = rpc_result(r, mp_rpc_unary(r->client, METHOD_FETCH_CATALOG, &auth, &req.base,
                                      &modelprov__v1__fetch_catalog_response__descriptor, (ProtobufCMessage **) &resp,
                                      NULL, err));
        if (q < 0)
                return q;
        note_contact(r);
        if (resp->unchanged) {
                /* Ours is current after all (the catalog changed back
                 * since the heartbeat): nothing to do until the next one. */
                if (!have)
                        return mp_error_set(err, -EBADMSG, NULL, -1,
                                            "collector %s: FetchCatalog says unchanged, but we have no catalog",
                                            r->rpc.target);
                free(r->catalog_wanted);
                r->catalog_wanted = TAKE_PTR(have);
                return 0;
        }

        /* The version is the SHA-256 of the bytes: check what arrived. */
        char got[SHA256_HEX + 1];
        if (!catalog_version_valid(resp->version) || !*resp->version)
                return mp_error_set(err, -EBADMSG, NULL, -1,
                                    "collector %s: FetchCatalog returned a version that is not a SHA-256",
                                    r->rpc.target);
        q = sha256_hex(resp->catalog.data, resp->catalog.len, got);
        if (q < 0)
                return mp_error_set(err, q, NULL, -1, "cannot hash the catalog");
        if (strcmp(got, resp->version) != 0)
                return mp_error_set(err, -EBADMSG, NULL, -1,
                                    "collector %s: the catalog's bytes do not match its version %.12s...",
                                    r->rpc.target, resp->version);

        q = write_file_atomic(r->o.catalog_path, resp->catalog.data, resp->catalog.len, err);
        if (q < 0)
                return q;
        q = agent_state_set_meta(r->state, "catalog_version", resp->version);
        if (q < 0)
                return state_error(r, q, "record catalog_version", err);
        log_info("catalog %.12s... (%zu bytes) fetched from collector %s into %s", resp->version,
                 resp->catalog.len, r->rpc.target, r->o.catalog_path);
        char *v = strdup(resp->version);
        if (v) {
                free(r->catalog_wanted);
                r->catalog_wanted = v;
        }
        if (r->o.on_catalog)
                r->o.on_catalog(r->o.userdata);
        return 0;
}

/* ---- the thread ------------------------------------------------------------ */

/* Heartbeat when due (or first after a failure), drain, catalog. */
static int reporter_exchange(agent_reporter *r, mp_error *err) {
        int q;
        if (!r->connected || r->next_heartbeat == 0 || mono_ms() >= r->next_heartbeat) {
                q = reporter_heartbeat(r, err);
                if (q < 0)
                        return q;
        }
        q = reporter_drain(r, err);
        if (q < 0)
                return q;
        return reporter_catalog(r, err);
}

static void reporter_disconnect(agent_reporter *r) {
        if (r->client)
                mp_rpc_client_free(r->client);
        r->client = NULL;
}

/* The channel, created again after an idle disconnect. */
static int reporter_connect(agent_reporter *r, mp_error *err) {
        if (r->client)
                return 0;
        return mp_rpc_client_new(&r->rpc, &r->client, err);
}

/* One pass: enroll if needed, then exchange.  A host key the collector
 * refuses is forgotten and the pass enrolls again at once, once. */
static int reporter_pass(agent_reporter *r, mp_error *err) {
        pthread_mutex_lock(&r->lock);
        r->kicked = false;
        pthread_mutex_unlock(&r->lock);
        r->refused = r->logged = r->link_failed = false;
        int q0 = reporter_connect(r, err);
        if (q0 < 0)
                return q0;

        for (unsigned attempt = 0;; attempt++) {
                bool enrolled = false;
                if (!r->host_key) {
                        int q = reporter_enroll(r, err);
                        if (q < 0)
                                return q;
                        enrolled = true;
                }
                mp_error_clear(err);
                r->key_refused = false;
                int q = reporter_exchange(r, err);
                if (q != -EACCES || !r->key_refused || r->stop)
                        return q;
                reporter_forget_key(r);
                if (enrolled || attempt > 0)
                        return q;
        }
}

static void *reporter_main(void *userdata) {
        agent_reporter *r = userdata;
        meta_note(r, "collector", r->rpc.target);
        while (!r->stop) {
                mp_error err;
                mp_error_clear(&err);
                int q = reporter_pass(r, &err);
                if (r->stop)
                        break;
                if (q < 0) {
                        reporter_failed(r, &err, r->link_failed && !r->refused);
                        reporter_wait(r, reporter_backoff_ms(r), false);
                        continue;
                }
                reporter_succeeded(r);
                /* Idle until the next heartbeat or kick: without a channel,
                 * gRPC core's threads and timers stop too (grpc_shutdown at
                 * the last client), which is most of an idle agent's CPU. */
                int64_t idle_ms = r->next_heartbeat - mono_ms();
                if (idle_ms >= IDLE_DISCONNECT_MS)
                        reporter_disconnect(r);
                reporter_wait(r, idle_ms, true);
        }
        return NULL;
}

/* ---- start, kick, stop -------------------------------------------------------- */

static void reporter_free(agent_reporter *r) {
        if (!r)
                return;
        reporter_disconnect(r);
        if (r->state)
                agent_state_close(r->state);
        free(r->host_id);
        secret_free(r->host_key);
        free(r->hostname);
        free(r->machine_id);
        free(r->os);
        free(r->catalog_wanted);
        free(r->error);
        pthread_cond_destroy(&r->cond);
        pthread_mutex_destroy(&r->lock);
        free(r);
}

static void reporter_freep(agent_reporter **r) {
        reporter_free(*r);
}

static int options_check(const agent_reporter_options *o, mp_error *err) {
        if (!o->state_path || !*o->state_path)
                return mp_error_set(err, -EINVAL, NULL, -1, "reporter: no state DB path");
        if (!o->enroll_secret_file || !*o->enroll_secret_file)
                return mp_error_set(err, -EINVAL, NULL, -1, "reporter: no enroll secret file");
        if (!o->agent_version || !*o->agent_version || strlen(o->agent_version) >= IDENT_MAX)
                return mp_error_set(err, -EINVAL, NULL, -1, "reporter: no agent version, or a too long one");
        if (o->batch_events > MAX_BATCH_EVENTS)
                return mp_error_set(err, -EINVAL, NULL, -1, "reporter: batches of %u events exceed the collector's %d",
                                    o->batch_events, MAX_BATCH_EVENTS);
        if (o->catalog_path && !*o->catalog_path)
                return mp_error_set(err, -EINVAL, NULL, -1, "reporter: empty catalog path");
        return mp_rpc_options_check(&o->rpc, err);
}

int agent_reporter_start(const agent_reporter_options *o, agent_reporter **ret, mp_error *err) {
        assert(o);
        assert(ret);

        int q = options_check(o, err);
        if (q < 0)
                return q;
        _cleanup_(reporter_freep) agent_reporter *r = calloc(1, sizeof(*r));
        if (!r)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&r->cond, &ca);
        pthread_condattr_destroy(&ca);
        pthread_mutex_init(&r->lock, NULL);

        r->o = *o;
        r->heartbeat_s = o->heartbeat_s > 0 ? o->heartbeat_s : DEFAULT_HEARTBEAT_S;
        r->batch_events = o->batch_events > 0 ? o->batch_events : DEFAULT_BATCH_EVENTS;
        r->backoff = o->backoff;
        if (r->backoff.initial_ms <= 0)
                r->backoff.initial_ms = BACKOFF_INITIAL_MS;
        if (r->backoff.max_ms <= 0)
                r->backoff.max_ms = BACKOFF_MAX_MS;
        r->rpc = o->rpc;
        r->rpc.stop = &r->stop;
        if (r->rpc.retry.max_attempts == 0)
                r->rpc.retry.max_attempts = 1;

        q = agent_state_open(o->state_path, &r->state, err);
        if (q < 0)
                return q;
        q = identity_load(r, err);
        if (q < 0)
                return q;
        /* The secret is needed only to enroll; check it now when we must. */
        if (!r->host_key) {
                _cleanup_(secret_freep) char *secret = NULL;
                q = mp_secret_read_file(o->enroll_secret_file, "enroll secret", &secret, err);
                if (q < 0)
                        return q;
        }
        q = mp_rpc_client_new(&r->rpc, &r->client, err);
        if (q < 0)
                return q;

        /* Signals belong to the event loop's thread (sd-event): none here. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        q = -pthread_create(&r->thread, NULL, reporter_main, r);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (q < 0)
                return mp_error_set(err, q, NULL, -1, "cannot start the reporter thread: %s", strerror(-q));
        *ret = TAKE_PTR(r);
        return 0;
}

void agent_reporter_kick(agent_reporter *r) {
        assert(r);
        pthread_mutex_lock(&r->lock);
        r->kicked = true;
        pthread_cond_signal(&r->cond);
        pthread_mutex_unlock(&r->lock);
}

void agent_reporter_stop(agent_reporter *r) {
        if (!r)
                return;
        pthread_mutex_lock(&r->lock);
        r->stop = 1;
        pthread_cond_signal(&r->cond);
        pthread_mutex_unlock(&r->lock);
        pthread_join(r->thread, NULL);
        reporter_free(r);
}
