/* stream.c - bidirectional streams to the collector (client.h
 * mp_rpc_stream_*), for the agent's Report stream.
 *
 * Each operation is one batch started and waited for at once, so at most one
 * operation of each kind is ever in flight (core's rule).  The final status
 * is requested when the stream opens: whichever operation fails first can
 * then explain the failure with the collector's status.  Core delivers that
 * status only after the messages before it have been read, so a failure
 * seen while sending first reads (and drops) what is left. */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>

#include "rpc/client.h"
#include "rpc/internal.h"

/* After a stream failed, how long its final status may take to arrive. */
#define STATUS_GRACE_MS 10000

enum { TAG_OPEN, TAG_SEND, TAG_RECV, TAG_CLOSE, TAG_STATUS, _TAG_MAX };

struct mp_rpc_stream {
        mp_rpc_client *client;
        const char *label;              /* "collector ADDR", the client's */
        char *method;
        grpc_completion_queue *cq;
        grpc_call *call;
        rpc_metadata md;
        char tags[_TAG_MAX];            /* their addresses are the batch tags */

        bool send_closed;
        grpc_metadata_array initial_md;

        /* The receiving side, which a sending thread may drain (lock). */
        pthread_mutex_t lock;
        bool recv_busy;                 /* a receive batch is in flight */
        bool initial_md_asked;          /* RECV_INITIAL_METADATA went with the first receive */
        bool ended;                     /* the collector closed its side (a receive got no message) */

        /* RECV_STATUS_ON_CLIENT is started at open, so a failure seen by
         * send or receive can always be explained by the status. */
        pthread_mutex_t status_lock;
        bool status_done;
        grpc_metadata_array trailing_md;
        grpc_status_code code;
        grpc_slice details;
        const char *debug;
};

static void *tag_of(mp_rpc_stream *s, int t) {
        return &s->tags[t];
}

/* Runs one batch of ops and waits for it (timeout_ms < 0: unbounded).
 * Returns 0; -EPIPE when the batch failed (the call is over: its status
 * says why); -ETIMEDOUT or -ECANCELED when the wait gave up (the call is
 * cancelled); -EIO with err filled when core refused the batch (nothing
 * started: two sends at once, an operation after close). */
static int stream_batch(mp_rpc_stream *s, const grpc_op *ops, size_t n, int tag, int64_t timeout_ms,
                        mp_error *err) {
        grpc_call_error e = grpc_call_start_batch(s->call, ops, n, tag_of(s, tag), NULL);
        if (e != GRPC_CALL_OK)
                return mp_error_set(err, -EIO, s->label, -1, "%s: gRPC refused the operation: %s", s->method,
                                    grpc_call_error_to_string(e));
        bool success = false;
        int r = rpc_wait_tag(s->client, s->cq, s->call, tag_of(s, tag), timeout_ms, &success);
        if (r < 0)
                return r;
        return success ? 0 : -EPIPE;
}

/* Waits for the final status (cancelling the call after timeout_ms). */
static void stream_wait_status(mp_rpc_stream *s, int64_t timeout_ms) {
        pthread_mutex_lock(&s->status_lock);
        if (!s->status_done) {
                bool success;
                (void) rpc_wait_tag(s->client, s->cq, s->call, tag_of(s, TAG_STATUS), timeout_ms, &success);
                s->status_done = true;
        }
        pthread_mutex_unlock(&s->status_lock);
}

/* The stream's final status in st and, when not OK, as the error. */
static int stream_status(mp_rpc_stream *s, int64_t timeout_ms, mp_rpc_status *st, mp_error *err) {
        stream_wait_status(s, timeout_ms);
        mp_rpc_status local, *p = st ? st : &local;
        *p = (mp_rpc_status) { .attempts = 1 };
        rpc_status_fill(s->client, p, s->code, s->details, s->debug);
        if (p->code == MP_RPC_OK)
                return 0;
        return rpc_status_error(s->client, p, MP_RETRY_PERMANENT, 0, err);
}

/* One receive batch (with the initial metadata the first time): 0 with
 * *ret, NULL once the collector has closed its side; -EPIPE when the call
 * failed, -ETIMEDOUT or -ECANCELED (the call is cancelled); -EBUSY while
 * another thread receives and -EIO when core refused the batch (both with
 * err filled, nothing started). */
static int stream_recv_batch(mp_rpc_stream *s, int64_t timeout_ms, grpc_byte_buffer **ret, mp_error *err) {
        *ret = NULL;
        pthread_mutex_lock(&s->lock);
        bool busy = s->recv_busy, ended = s->ended, ask_md = !s->initial_md_asked;
        if (!busy && !ended)
                s->recv_busy = true;
        pthread_mutex_unlock(&s->lock);
        if (busy)
                return mp_error_set(err, -EBUSY, s->label, -1, "%s: another thread is receiving", s->method);
        if (ended)
                return 0;

        grpc_byte_buffer *bb = NULL;
        grpc_op ops[2];
        size_t n = 0;
        memset(ops, 0, sizeof(ops));
        /* Core hands out messages only after the initial metadata. */
        if (ask_md) {
                ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
                ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->initial_md;
        }
        ops[n].op = GRPC_OP_RECV_MESSAGE;
        ops[n++].data.recv_message.recv_message = &bb;
        int r = stream_batch(s, ops, n, TAG_RECV, timeout_ms, err);

        pthread_mutex_lock(&s->lock);
        s->recv_busy = false;
        if (r != -EIO)
                s->initial_md_asked = true;
        if (r == 0 && !bb)
                s->ended = true;
        pthread_mutex_unlock(&s->lock);
        if (r < 0) {
                grpc_byte_buffer_destroy(bb);
                return r;
        }
        *ret = bb;
        return 0;
}

/* Reads and drops what the collector still sends until it closes its side
 * or the call fails, at most timeout_ms: the final status waits for that.
 * Nothing to do while another thread receives: its receive ends alike. */
static void stream_drain(mp_rpc_stream *s, int64_t timeout_ms) {
        int64_t end = rpc_now_ms(CLOCK_MONOTONIC) + timeout_ms;
        for (;;) {
                int64_t left = end - rpc_now_ms(CLOCK_MONOTONIC);
                grpc_byte_buffer *bb = NULL;
                if (left <= 0 || stream_recv_batch(s, left, &bb, NULL) < 0 || !bb)
                        return;
                grpc_byte_buffer_destroy(bb);
        }
}

/* After a failed or given-up operation: the error the status explains, or
 * for a timeout or stop the reason we cancelled. */
static int stream_failure(mp_rpc_stream *s, int r, const char *what, mp_error *err) {
        mp_rpc_status st;
        stream_drain(s, STATUS_GRACE_MS);
        int q = stream_status(s, STATUS_GRACE_MS, &st, err);
        if (r == -ETIMEDOUT)
                return mp_error_set(err, r, s->label, -1, "%s: no answer in time while %s", s->method, what);
        if (r == -ECANCELED)
                return mp_error_set(err, r, s->label, -1, "%s: stopped while %s", s->method, what);
        if (q < 0)
                return q;
        /* OK, but the operation failed: the collector ended the stream
         * before taking our message. */
        return mp_error_set(err, -EPIPE, s->label, -1, "%s: the stream ended while %s", s->method, what);
}

static int64_t op_timeout(const mp_rpc_stream *s, int64_t timeout_ms) {
        return timeout_ms > 0 ? timeout_ms : s->client->deadline_ms;
}

int mp_rpc_stream_open(mp_rpc_client *c, const char *method, const mp_rpc_auth *auth, int64_t deadline_ms,
                       mp_rpc_stream **ret, mp_error *err) {
        assert(c);
        assert(method && method[0] == '/');
        assert(ret);

        mp_rpc_stream *s = calloc(1, sizeof(*s));
        if (!s)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        s->client = c;
        s->label = c->label;
        s->details = grpc_empty_slice();
        grpc_metadata_array_init(&s->initial_md);
        grpc_metadata_array_init(&s->trailing_md);
        pthread_mutex_init(&s->status_lock, NULL);
        pthread_mutex_init(&s->lock, NULL);
        s->status_done = true;          /* until the status batch runs */
        s->method = strdup(method);
        s->cq = grpc_completion_queue_create_for_pluck(NULL);
        if (!s->method) {
                mp_rpc_stream_free(s);
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        }
        int r = rpc_metadata_build(c, auth, &s->md, err);
        if (r < 0) {
                mp_rpc_stream_free(s);
                return r;
        }

        grpc_slice m = grpc_slice_from_copied_string(method);
        s->call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq, m, NULL,
                                           deadline_ms > 0 ? rpc_after_ms(deadline_ms)
                                                           : gpr_inf_future(GPR_CLOCK_MONOTONIC),
                                           NULL);
        grpc_slice_unref(m);

        grpc_op status_op = { .op = GRPC_OP_RECV_STATUS_ON_CLIENT };
        status_op.data.recv_status_on_client.trailing_metadata = &s->trailing_md;
        status_op.data.recv_status_on_client.status = &s->code;
        status_op.data.recv_status_on_client.status_details = &s->details;
        status_op.data.recv_status_on_client.error_string = &s->debug;
        grpc_call_error e = grpc_call_start_batch(s->call, &status_op, 1, tag_of(s, TAG_STATUS), NULL);
        if (e != GRPC_CALL_OK) {
                mp_rpc_stream_free(s);
                return mp_error_set(err, -EIO, c->label, -1, "%s: gRPC refused the stream: %s", method,
                                    grpc_call_error_to_string(e));
        }
        s->status_done = false;

        grpc_op open_op = { .op = GRPC_OP_SEND_INITIAL_METADATA };
        open_op.data.send_initial_metadata.count = s->md.n;
        open_op.data.send_initial_metadata.metadata = s->md.md;
        r = stream_batch(s, &open_op, 1, TAG_OPEN, c->deadline_ms, err);
        if (r < 0) {
                if (r != -EIO)
                        r = stream_failure(s, r, "opening the stream", err);
                mp_rpc_stream_free(s);
                return r;
        }
        *ret = s;
        return 0;
}

int mp_rpc_stream_send(mp_rpc_stream *s, const ProtobufCMessage *msg, int64_t timeout_ms, mp_error *err) {
        assert(s);
        assert(msg);
        assert(!s->send_closed);

        grpc_slice payload;
        int r = rpc_pack_message(s->client, msg, &payload, err);
        if (r < 0)
                return r;
        grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&payload, 1);
        grpc_slice_unref(payload);

        grpc_op op = { .op = GRPC_OP_SEND_MESSAGE };
        op.data.send_message.send_message = bb;
        r = stream_batch(s, &op, 1, TAG_SEND, op_timeout(s, timeout_ms), err);
        grpc_byte_buffer_destroy(bb);
        if (r < 0 && r != -EIO)
                return stream_failure(s, r, "sending", err);
        return r;
}

/* Receives the next message as a byte buffer: 1 with *ret, 0 at the end of
 * an OK stream, or the error. */
static int stream_recv_raw(mp_rpc_stream *s, int64_t timeout_ms, grpc_byte_buffer **ret, mp_error *err) {
        int r = stream_recv_batch(s, timeout_ms, ret, err);
        if (r == -EIO)
                return r;
        if (r < 0 && r != -EBUSY)
                return stream_failure(s, r, "receiving", err);
        /* Busy: the sending thread drains a failed stream; ended: the
         * collector closed its side.  Either way the status says how. */
        if (r == -EBUSY || !*ret) {
                /* The collector closed its side: the status says how. */
                r = stream_status(s, STATUS_GRACE_MS, NULL, err);
                return r < 0 ? r : 0;
        }
        return 1;
}

int mp_rpc_stream_recv(mp_rpc_stream *s, const ProtobufCMessageDescriptor *type, ProtobufCMessage **ret,
                       int64_t timeout_ms, mp_error *err) {
        assert(s);
        assert(type);
        assert(ret);

        *ret = NULL;
        grpc_byte_buffer *bb = NULL;
        int r = stream_recv_raw(s, op_timeout(s, timeout_ms), &bb, err);
        if (r <= 0)
                return r;
        r = rpc_unpack_message(s->client, bb, type, ret, err);
        grpc_byte_buffer_destroy(bb);
        return r < 0 ? r : 1;
}

int mp_rpc_stream_close_send(mp_rpc_stream *s, mp_error *err) {
        assert(s);
        if (s->send_closed)
                return 0;
        grpc_op op = { .op = GRPC_OP_SEND_CLOSE_FROM_CLIENT };
        int r = stream_batch(s, &op, 1, TAG_CLOSE, s->client->deadline_ms, err);
        s->send_closed = true;
        if (r < 0 && r != -EIO)
                return stream_failure(s, r, "closing the stream", err);
        return r;
}

int mp_rpc_stream_finish(mp_rpc_stream *s, int64_t timeout_ms, mp_rpc_status *status, mp_error *err) {
        assert(s);

        int64_t end = rpc_now_ms(CLOCK_MONOTONIC) + op_timeout(s, timeout_ms);
        if (!s->send_closed)
                (void) mp_rpc_stream_close_send(s, NULL);     /* a dead stream: its status tells */

        /* Messages the caller did not read stand between us and the status. */
        stream_drain(s, end - rpc_now_ms(CLOCK_MONOTONIC));
        int64_t left = end - rpc_now_ms(CLOCK_MONOTONIC);
        return stream_status(s, left > 0 ? left : 1, status, err);
}

void mp_rpc_stream_free(mp_rpc_stream *s) {
        if (!s)
                return;
        if (s->call) {
                if (!s->status_done)
                        grpc_call_cancel(s->call, NULL);
                stream_wait_status(s, -1);
                grpc_call_unref(s->call);
        }
        rpc_drain_and_destroy_cq(s->cq);
        rpc_metadata_done(&s->md);
        grpc_metadata_array_destroy(&s->initial_md);
        grpc_metadata_array_destroy(&s->trailing_md);
        grpc_slice_unref(s->details);
        gpr_free((void *) s->debug);
        pthread_mutex_destroy(&s->status_lock);
        pthread_mutex_destroy(&s->lock);
        free(s->method);
        free(s);
}
