/* test_rpc_collector.c - lib/rpc against a real modelprov-collector on
 * loopback ($MODELPROV_COLLECTOR_BIN): unary calls (Enroll, Heartbeat) and
 * the bidirectional Report stream the agent relies on, in lock step and
 * pipelined from two threads; the stream's error paths (a wrong host key, a
 * bad batch, a receive timeout, a stop request) and a collector killed with
 * SIGKILL mid-stream and restarted on the same port and store, after which
 * a new stream carries on from the acknowledged sequence. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../unit/test.h"
#include "collector_proc.h"
#include "modelprov.pb-c.h"
#include "rpc/client.h"
#include "util/macro.h"
#include "util/strutil.h"

#define REPORT "/modelprov.v1.Ingest/Report"

/* RUN() for tests that take arguments. */
typedef struct host {
        char *id;
        char *key;
} host;

static void enroll(mp_rpc_client *cl, host *h, uint64_t *ret_acked) {
        Modelprov__V1__HostInfo info = MODELPROV__V1__HOST_INFO__INIT;
        info.hostname = "rpc-test-host";
        info.machine_id = "00112233445566778899aabbccddeeff";
        info.agent_version = "test_rpc_collector";
        Modelprov__V1__EnrollRequest req = MODELPROV__V1__ENROLL_REQUEST__INIT;
        req.host = &info;
        Modelprov__V1__EnrollResponse *resp = NULL;
        mp_rpc_status st;
        mp_error err;
        mp_error_clear(&err);
        int r = mp_rpc_unary(cl, "/modelprov.v1.Ingest/Enroll", &(mp_rpc_auth) { .token = TEST_ENROLL_SECRET },
                             &req.base, &modelprov__v1__enroll_response__descriptor, (ProtobufCMessage **) &resp, &st,
                             &err);
        if (r < 0)
                fprintf(stderr, "enroll: %s\n", err.reason);
        CHECK_EQ(r, 0);
        CHECK_EQ(st.code, MP_RPC_OK);
        CHECK_EQ(st.attempts, 1);
        free(h->id);
        free(h->key);
        h->id = strdup(resp->host_id);
        h->key = strdup(resp->host_key);
        *ret_acked = resp->acked_through;
        modelprov__v1__enroll_response__free_unpacked(resp, NULL);
}

/* A batch of MODEL_ADDED events first..last (no fingerprint bodies). */
typedef struct batch {
        Modelprov__V1__ReportBatch msg;
        Modelprov__V1__Event ev[64];
        Modelprov__V1__Event *ptr[64];
        uint8_t digest[64][32];
        char path[64][32];
} batch;

static void batch_make(batch *b, uint64_t first, uint64_t last) {
        CHECK(last >= first && last - first < 64);
        b->msg = (Modelprov__V1__ReportBatch) MODELPROV__V1__REPORT_BATCH__INIT;
        b->msg.n_events = (size_t) (last - first + 1);
        b->msg.events = b->ptr;
        for (size_t i = 0; i < b->msg.n_events; i++) {
                uint64_t seq = first + i;
                b->ev[i] = (Modelprov__V1__Event) MODELPROV__V1__EVENT__INIT;
                b->ev[i].sequence = seq;
                b->ev[i].kind = MODELPROV__V1__EVENT_KIND__MODEL_ADDED;
                b->ev[i].observed_at = 1767225600000 + (int64_t) seq;
                snprintf(b->path[i], sizeof(b->path[i]), "/models/m%llu", (unsigned long long) seq);
                b->ev[i].path = b->path[i];
                memset(b->digest[i], (int) (seq & 0xff), 32);
                b->digest[i][0] = 0xd1;
                b->ev[i].model_digest = (ProtobufCBinaryData) { 32, b->digest[i] };
                b->ptr[i] = &b->ev[i];
        }
}

static mp_rpc_stream *report_open(mp_rpc_client *cl, const host *h) {
        mp_rpc_stream *s = NULL;
        mp_error err;
        mp_error_clear(&err);
        int r = mp_rpc_stream_open(cl, REPORT, &(mp_rpc_auth) { .token = h->key, .host_id = h->id }, 0, &s, &err);
        if (r < 0)
                fprintf(stderr, "open: %s\n", err.reason);
        CHECK_EQ(r, 0);
        return s;
}

/* Sends first..last and checks the ack. */
static void report(mp_rpc_stream *s, uint64_t first, uint64_t last, uint64_t want_acked, uint32_t want_stored,
                   uint32_t want_dups) {
        _cleanup_(freep) batch *b = calloc(1, sizeof(*b));
        CHECK(b);
        batch_make(b, first, last);
        mp_error err;
        mp_error_clear(&err);
        CHECK_EQ(mp_rpc_stream_send(s, &b->msg.base, 5000, &err), 0);
        Modelprov__V1__ReportAck *ack = NULL;
        int r = mp_rpc_stream_recv(s, &modelprov__v1__report_ack__descriptor, (ProtobufCMessage **) &ack, 5000, &err);
        if (r != 1)
                fprintf(stderr, "recv: %d %s\n", r, err.reason);
        CHECK_EQ(r, 1);
        CHECK_EQ(ack->acked_through, want_acked);
        CHECK_EQ(ack->stored, want_stored);
        CHECK_EQ(ack->duplicates, want_dups);
        modelprov__v1__report_ack__free_unpacked(ack, NULL);
}

static uint64_t heartbeat(mp_rpc_client *cl, const host *h) {
        Modelprov__V1__HeartbeatRequest req = MODELPROV__V1__HEARTBEAT_REQUEST__INIT;
        req.agent_version = "test_rpc_collector";
        Modelprov__V1__HeartbeatResponse *resp = NULL;
        mp_error err;
        mp_error_clear(&err);
        int r = mp_rpc_unary(cl, "/modelprov.v1.Ingest/Heartbeat", &(mp_rpc_auth) { .token = h->key, .host_id = h->id },
                             &req.base, &modelprov__v1__heartbeat_response__descriptor, (ProtobufCMessage **) &resp,
                             NULL, &err);
        if (r < 0)
                fprintf(stderr, "heartbeat: %s\n", err.reason);
        CHECK_EQ(r, 0);
        uint64_t acked = resp->acked_through;
        modelprov__v1__heartbeat_response__free_unpacked(resp, NULL);
        return acked;
}

static void test_unary(test_collector *c, host *h) {
        _cleanup_(mp_rpc_client_freep) mp_rpc_client *cl = test_client_new(c->target, NULL);
        uint64_t acked = 99;
        enroll(cl, h, &acked);
        CHECK_EQ(acked, 0);
        CHECK_EQ(strlen(h->id), 36);

        /* A wrong secret: UNAUTHENTICATED at once, never retried. */
        Modelprov__V1__HostInfo info = MODELPROV__V1__HOST_INFO__INIT;
        info.hostname = "x";
        info.machine_id = "ffeeddccbbaa99887766554433221100";
        Modelprov__V1__EnrollRequest req = MODELPROV__V1__ENROLL_REQUEST__INIT;
        req.host = &info;
        ProtobufCMessage *resp = NULL;
        mp_rpc_status st;
        mp_error err;
        mp_error_clear(&err);
        int r = mp_rpc_unary(cl, "/modelprov.v1.Ingest/Enroll", &(mp_rpc_auth) { .token = "not-the-enroll-secret" },
                             &req.base, &modelprov__v1__enroll_response__descriptor, &resp, &st, &err);
        CHECK_EQ(r, -EACCES);
        CHECK(!resp);
        CHECK_EQ(st.code, MP_RPC_UNAUTHENTICATED);
        CHECK_EQ(st.attempts, 1);
        char want[128];
        snprintf(want, sizeof(want), "collector %s", c->target);
        CHECK_STREQ(err.file, want);
        CHECK(mp_has_prefix(err.reason, "UNAUTHENTICATED: "));

}

static void test_stream_lockstep(test_collector *c, const host *h) {
        _cleanup_(mp_rpc_client_freep) mp_rpc_client *cl = test_client_new(c->target, NULL);
        _cleanup_(mp_rpc_stream_freep) mp_rpc_stream *s = report_open(cl, h);

        report(s, 1, 3, 3, 3, 0);
        report(s, 2, 5, 5, 2, 2);              /* a replay of 2, 3 and two new */
        report(s, 7, 8, 5, 0, 0);              /* a gap: nothing past 5 is stored */
        report(s, 6, 8, 8, 3, 0);

        mp_rpc_status st;
        mp_error err;
        mp_error_clear(&err);
        CHECK_EQ(mp_rpc_stream_close_send(s, &err), 0);
        CHECK_EQ(mp_rpc_stream_finish(s, 5000, &st, &err), 0);
        CHECK_EQ(st.code, MP_RPC_OK);
        CHECK_EQ(heartbeat(cl, h), 8);
}

static void test_stream_errors(test_collector *c, const host *h) {
        _cleanup_(mp_rpc_client_freep) mp_rpc_client *cl = test_client_new(c->target, NULL);
        _cleanup_(freep) batch *b = calloc(1, sizeof(*b));
        CHECK(b);
        ProtobufCMessage *m = NULL;
        mp_rpc_status st;
        mp_error err;

        /* A wrong host key: the stream opens, the first receive says why. */
        const host wrong = { .id = h->id, .key = "this-is-not-the-host-key" };
        mp_rpc_stream *s = report_open(cl, &wrong);
        batch_make(b, 9, 9);
        mp_error_clear(&err);
        /* Taken, or refused with the status when core already knows it
         * (then the stream is drained for the status: no grace wait). */
        int64_t t = test_now_ms();
        int r = mp_rpc_stream_send(s, &b->msg.base, 5000, &err);
        CHECK(r == 0 || r == -EACCES);
        CHECK(test_now_ms() - t < 3000);
        mp_error_clear(&err);
        CHECK_EQ(mp_rpc_stream_recv(s, &modelprov__v1__report_ack__descriptor, &m, 5000, &err), -EACCES);
        CHECK(!m);
        CHECK(mp_has_prefix(err.reason, "UNAUTHENTICATED: "));
        CHECK_EQ(mp_rpc_stream_finish(s, 5000, &st, &err), -EACCES);
        CHECK_EQ(st.code, MP_RPC_UNAUTHENTICATED);
        mp_rpc_stream_free(s);


        /* A bad batch (sequence 0) ends the stream with INVALID_ARGUMENT. */
        s = report_open(cl, h);
        batch_make(b, 9, 9);
        b->ev[0].sequence = 0;
        mp_error_clear(&err);
        CHECK_EQ(mp_rpc_stream_send(s, &b->msg.base, 5000, &err), 0);
        CHECK_EQ(mp_rpc_stream_recv(s, &modelprov__v1__report_ack__descriptor, &m, 5000, &err), -EINVAL);
        CHECK(mp_has_prefix(err.reason, "INVALID_ARGUMENT: "));
        /* Later operations report the same ending. */
        mp_error_clear(&err);
        CHECK_EQ(mp_rpc_stream_send(s, &b->msg.base, 5000, &err), -EINVAL);
        CHECK_EQ(mp_rpc_stream_finish(s, 5000, &st, &err), -EINVAL);
        mp_rpc_stream_free(s);

        /* Nothing to receive: the timeout cancels the stream, promptly. */
        s = report_open(cl, h);
        t = test_now_ms();
        mp_error_clear(&err);
        CHECK_EQ(mp_rpc_stream_recv(s, &modelprov__v1__report_ack__descriptor, &m, 300, &err), -ETIMEDOUT);
        CHECK(test_now_ms() - t < 3000);
        CHECK(strstr(err.reason, "no answer in time"));
        CHECK_EQ(mp_rpc_stream_finish(s, 1000, &st, &err), -ETIMEDOUT);
        CHECK_EQ(st.code, MP_RPC_DEADLINE_EXCEEDED);
        mp_rpc_stream_free(s);

        /* Freed while open: cancelled, nothing stored, nothing leaked. */
        s = report_open(cl, h);
        mp_rpc_stream_free(s);
        CHECK_EQ(heartbeat(cl, h), 8);
}

static volatile sig_atomic_t stop_flag;

static void *set_stop_later(void *arg) {
        (void) arg;
        usleep(200 * 1000);
        stop_flag = 1;
        return NULL;
}

static void test_stream_stop(test_collector *c, const host *h) {
        _cleanup_(mp_rpc_client_freep) mp_rpc_client *cl = test_client_new(c->target, &stop_flag);
        mp_rpc_stream *s = report_open(cl, h);
        pthread_t t;
        CHECK_EQ(pthread_create(&t, NULL, set_stop_later, NULL), 0);
        int64_t start = test_now_ms();
        ProtobufCMessage *m = NULL;
        mp_error err;
        mp_error_clear(&err);
        CHECK_EQ(mp_rpc_stream_recv(s, &modelprov__v1__report_ack__descriptor, &m, 20000, &err), -ECANCELED);
        CHECK(test_now_ms() - start < 5000);
        CHECK(strstr(err.reason, "stopped"));
        pthread_join(t, NULL);
        mp_rpc_stream_free(s);
        stop_flag = 0;
}

/* One thread sends batches back to back while another reads the acks. */
typedef struct pipeline {
        mp_rpc_stream *s;
        uint64_t first;
        int batches;
        int sent;
} pipeline;

static void *sender(void *arg) {
        pipeline *p = arg;
        _cleanup_(freep) batch *b = calloc(1, sizeof(*b));
        CHECK(b);
        for (int i = 0; i < p->batches; i++) {
                uint64_t first = p->first + (uint64_t) i * 4;
                batch_make(b, first, first + 3);
                mp_error err;
                mp_error_clear(&err);
                if (mp_rpc_stream_send(p->s, &b->msg.base, 5000, &err) < 0) {
                        fprintf(stderr, "send: %s\n", err.reason);
                        break;
                }
                p->sent++;
        }
        return NULL;
}

static void test_stream_pipelined(test_collector *c, const host *h) {
        _cleanup_(mp_rpc_client_freep) mp_rpc_client *cl = test_client_new(c->target, NULL);
        pipeline p = { .s = report_open(cl, h), .first = 9, .batches = 25 };
        pthread_t t;
        CHECK_EQ(pthread_create(&t, NULL, sender, &p), 0);
        uint64_t last = 0;
        for (int i = 0; i < p.batches; i++) {
                Modelprov__V1__ReportAck *ack = NULL;
                mp_error err;
                mp_error_clear(&err);
                int r = mp_rpc_stream_recv(p.s, &modelprov__v1__report_ack__descriptor, (ProtobufCMessage **) &ack,
                                           10000, &err);
                if (r != 1)
                        fprintf(stderr, "recv %d: %s\n", i, err.reason);
                CHECK_EQ(r, 1);
                CHECK_EQ(ack->stored, 4);
                CHECK(ack->acked_through > last);
                last = ack->acked_through;
                modelprov__v1__report_ack__free_unpacked(ack, NULL);
        }
        pthread_join(t, NULL);
        CHECK_EQ(p.sent, p.batches);
        CHECK_EQ(last, 8 + 4 * 25);
        mp_error err;
        mp_error_clear(&err);
        CHECK_EQ(mp_rpc_stream_finish(p.s, 5000, NULL, &err), 0);
        mp_rpc_stream_free(p.s);
}

/* The agent's recovery: the collector dies mid-stream; the stream fails
 * with a retryable status; after a restart a new stream goes on from the
 * acknowledged sequence and a replay stores nothing twice. */
static void test_collector_restart(test_collector *c, const host *h) {
        _cleanup_(mp_rpc_client_freep) mp_rpc_client *cl = test_client_new(c->target, NULL);
        mp_rpc_stream *s = report_open(cl, h);
        report(s, 109, 112, 112, 4, 0);
        int status = test_collector_stop(c, SIGKILL);
        CHECK(WIFSIGNALED(status));

        _cleanup_(freep) batch *b = calloc(1, sizeof(*b));
        CHECK(b);
        batch_make(b, 113, 113);
        ProtobufCMessage *m = NULL;
        mp_error err;
        mp_error_clear(&err);
        int r = mp_rpc_stream_send(s, &b->msg.base, 5000, &err);
        if (r == 0)
                r = mp_rpc_stream_recv(s, &modelprov__v1__report_ack__descriptor, &m, 5000, &err);
        CHECK(r < 0);
        CHECK(!m);
        CHECK_EQ(r, -EAGAIN);           /* UNAVAILABLE: worth reconnecting */
        mp_rpc_stream_free(s);

        test_collector_start(c, c->port);
        CHECK_EQ(heartbeat(cl, h), 112);        /* the client's channel reconnects */
        s = report_open(cl, h);
        report(s, 111, 114, 114, 2, 2);
        mp_error_clear(&err);
        CHECK_EQ(mp_rpc_stream_finish(s, 5000, NULL, &err), 0);
        mp_rpc_stream_free(s);
}

int main(void) {
        if (!getenv("MODELPROV_COLLECTOR_BIN")) {
                fprintf(stderr, "MODELPROV_COLLECTOR_BIN is not set (meson sets it)\n");
                return 1;
        }
        test_collector c;
        test_collector_init(&c);
        test_collector_start(&c, 0);

        host h = {0};
        RUN_WITH(test_unary, &c, &h);
        RUN_WITH(test_stream_lockstep, &c, &h);
        RUN_WITH(test_stream_errors, &c, &h);
        RUN_WITH(test_stream_stop, &c, &h);
        RUN_WITH(test_stream_pipelined, &c, &h);
        RUN_WITH(test_collector_restart, &c, &h);

        int status = test_collector_stop(&c, SIGTERM);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                size_t n;
                _cleanup_(freep) char *log = test_read(c.log, &n);
                fprintf(stderr, "collector exit status %d; its log:\n%s\n", status, log);
                return 1;
        }
        free(h.id);
        free(h.key);
        test_collector_done(&c);
        return 0;
}
