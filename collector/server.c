/* server.c - gRPC core server plumbing for the collector (see server.h).
 *
 * gRPC core hands out work as tags on a completion queue.  Each call gets a
 * state with one tag per kind of batch; a call's state is freed when no
 * batch of it is in flight any more.  The rules of the C API this file
 * follows (see docs in grpc/grpc.h):
 *   - at most one batch of each op type in flight per call;
 *   - initial metadata is sent before (or with) the status, else the call
 *     hangs until the client's deadline;
 *   - one outstanding request_registered_call per method, renewed as soon as
 *     a call arrives, so new calls never wait for a handler. */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "daemon/log.h"
#include "collector/server.h"
#include "rpc/status.h"
#include "util/address.h"
#include "util/macro.h"
#include "util/source.h"

#define PEM_MAX (1u << 20)

/* rpc_server_stop(): how long the calls that cancel_all ended may take to
 * be freed before the server is torn down anyway (and they are reported). */
#define CALLS_DRAIN_MS 10000

enum tag_kind {
        TAG_NEW,                /* a call arrived */
        TAG_UNARY_DONE,         /* the single reply batch of a unary call */
        TAG_RECV,               /* stream: a client message (or its end) */
        TAG_SEND,               /* stream: our reply message went out */
        TAG_STATUS,             /* stream: our status went out */
        TAG_CLOSE,              /* stream: the call is over */
        TAG_SHUTDOWN,           /* the server finished shutting down */
};

struct call;
struct tag {
        struct call *call;
        enum tag_kind kind;
};

struct registered {
        const rpc_method *method;
        void *handle;           /* from grpc_server_register_method; NULL: any other method */
};

/* Calls to methods nobody registered arrive through a generic request and
 * are answered UNIMPLEMENTED; without it gRPC core leaves them hanging
 * until the client's deadline. */
static const rpc_method unknown_method = {.path = "(unknown method)"};

struct call {
        pthread_mutex_t lock;
        rpc_server *server;
        const struct registered *reg;
        grpc_call *call;
        gpr_timespec deadline;
        grpc_metadata_array metadata;
        grpc_call_details call_details; /* unknown methods: the path asked for */
        grpc_byte_buffer *payload;      /* unary request */
        grpc_byte_buffer *recv_buf;     /* stream: message being received */
        grpc_byte_buffer *send_buf;     /* reply being sent */
        grpc_slice details;
        bool has_details;
        int cancelled;
        unsigned pending;               /* batches in flight */
        bool stream_open;
        void *stream_state;
        char *peer;
        struct tag t_new, t_unary_done, t_recv, t_send, t_status, t_close;
};

struct worker {
        rpc_server *server;
        pthread_t thread;
        bool started;
        void *ctx;
};

struct rpc_server {
        rpc_server_options opts;
        grpc_server *grpc;
        grpc_completion_queue *cq;
        struct registered *regs;
        struct registered unknown;
        struct worker *workers;
        atomic_bool stopping;
        atomic_long live_calls;
        struct tag t_shutdown;
        pthread_mutex_t shutdown_lock;
        pthread_cond_t shutdown_cond;
        bool shutdown_done;
};

void rpc_reply_error(rpc_reply *reply, grpc_status_code code, const char *fmt, ...) {
        assert(reply);
        assert(code != GRPC_STATUS_OK);

        va_list ap;
        va_start(ap, fmt);
        vsnprintf(reply->details, sizeof reply->details, fmt, ap);
        va_end(ap);
        reply->code = code;
        free(reply->body);
        reply->body = NULL;
        reply->body_len = 0;
}

/* ---- call states ---------------------------------------------------------- */

static struct call *call_new(rpc_server *s, const struct registered *reg) {
        struct call *c = calloc(1, sizeof *c);
        if (!c)
                return NULL;

        pthread_mutex_init(&c->lock, NULL);
        c->server = s;
        c->reg = reg;
        grpc_metadata_array_init(&c->metadata);
        grpc_call_details_init(&c->call_details);
        struct tag *tags[] = {&c->t_new, &c->t_unary_done, &c->t_recv, &c->t_send, &c->t_status, &c->t_close};
        enum tag_kind kinds[] = {TAG_NEW, TAG_UNARY_DONE, TAG_RECV, TAG_SEND, TAG_STATUS, TAG_CLOSE};
        for (size_t i = 0; i < ELEMENTSOF(tags); i++)
                *tags[i] = (struct tag) {.call = c, .kind = kinds[i]};
        atomic_fetch_add(&s->live_calls, 1);
        return c;
}

static void call_free(struct call *c) {
        if (c->stream_open && c->reg->method->stream->close)
                c->reg->method->stream->close(c->stream_state);
        grpc_metadata_array_destroy(&c->metadata);
        grpc_call_details_destroy(&c->call_details);
        if (c->payload)
                grpc_byte_buffer_destroy(c->payload);
        if (c->recv_buf)
                grpc_byte_buffer_destroy(c->recv_buf);
        if (c->send_buf)
                grpc_byte_buffer_destroy(c->send_buf);
        if (c->has_details)
                grpc_slice_unref(c->details);
        if (c->call)
                grpc_call_unref(c->call);
        if (c->peer)
                gpr_free(c->peer);
        pthread_mutex_destroy(&c->lock);
        atomic_fetch_sub(&c->server->live_calls, 1);
        free(c);
}

static void request_call(rpc_server *s, const struct registered *reg) {
        if (atomic_load(&s->stopping))
                return;

        struct call *c = call_new(s, reg);
        if (!c) {
                log_error("out of memory: %s stops accepting calls", reg->method->path);
                return;
        }
        grpc_call_error e =
                reg->handle ? grpc_server_request_registered_call(s->grpc, reg->handle, &c->call, &c->deadline,
                                                                  &c->metadata, reg->method->unary ? &c->payload : NULL,
                                                                  s->cq, s->cq, &c->t_new)
                            : grpc_server_request_call(s->grpc, &c->call, &c->call_details, &c->metadata, s->cq, s->cq,
                                                       &c->t_new);
        if (e != GRPC_CALL_OK) {
                log_error("cannot wait for %s calls: %s", reg->method->path, grpc_call_error_to_string(e));
                call_free(c);
        }
}

/* Starts a batch; a refusal is a bug in this file's state machine, which
 * must not take the server down: the call is cancelled instead. */
static void start_batch(struct call *c, const grpc_op *ops, size_t n, struct tag *t) {
        grpc_call_error e = grpc_call_start_batch(c->call, ops, n, t, NULL);
        if (e != GRPC_CALL_OK) {
                log_error("%s: cannot start batch %d: %s", c->reg->method->path, t->kind,
                          grpc_call_error_to_string(e));
                grpc_call_cancel(c->call, NULL);
                return;
        }
        c->pending++;
}

/* The message bytes of buf as one slice (owned by the caller). */
static grpc_slice buffer_slice(grpc_byte_buffer *buf) {
        grpc_byte_buffer_reader r;
        if (!grpc_byte_buffer_reader_init(&r, buf))
                return grpc_empty_slice();
        grpc_slice sl = grpc_byte_buffer_reader_readall(&r);
        grpc_byte_buffer_reader_destroy(&r);
        return sl;
}

/* Takes over reply->body as a byte buffer for SEND_MESSAGE. */
static grpc_byte_buffer *reply_buffer(rpc_reply *reply) {
        grpc_slice sl = reply->body ? grpc_slice_new(reply->body, reply->body_len, free) : grpc_empty_slice();
        reply->body = NULL;
        grpc_byte_buffer *buf = grpc_raw_byte_buffer_create(&sl, 1);
        grpc_slice_unref(sl);
        return buf;
}

static void set_details(struct call *c, const rpc_reply *reply) {
        if (c->has_details)
                grpc_slice_unref(c->details);
        c->details = grpc_slice_from_copied_string(reply->details);
        c->has_details = true;
}

static void fill_status_op(struct call *c, grpc_op *op, const rpc_reply *reply) {
        set_details(c, reply);
        op->op = GRPC_OP_SEND_STATUS_FROM_SERVER;
        op->data.send_status_from_server.status = reply->code;
        op->data.send_status_from_server.status_details = &c->details;
}

static rpc_request make_request(struct call *c, void *thread_ctx) {
        if (!c->peer)
                c->peer = grpc_call_get_peer(c->call);
        return (rpc_request) {.thread_ctx = thread_ctx, .metadata = &c->metadata, .peer = c->peer};
}

static void log_failure(const struct call *c, const rpc_reply *reply) {
        if (reply->code == GRPC_STATUS_OK)
                return;
        int level = reply->code == GRPC_STATUS_INTERNAL || reply->code == GRPC_STATUS_UNAVAILABLE
                            ? LOG_LEVEL_ERROR
                            : LOG_LEVEL_INFO;
        log_at(level, "%s from %s: %s: %s", c->reg->method->path, c->peer ? c->peer : "?",
               mp_rpc_status_name(reply->code), reply->details);
}

/* ---- unary calls ---------------------------------------------------------- */

/* One batch answers everything: initial metadata, the reply (when OK), the
 * status, and the close notification. */
static void unary_start(struct call *c, void *thread_ctx) {
        rpc_reply reply = {.code = GRPC_STATUS_OK};
        rpc_request req = make_request(c, thread_ctx);

        if (!c->payload)
                rpc_reply_error(&reply, GRPC_STATUS_INVALID_ARGUMENT, "no request message");
        else {
                grpc_slice body = buffer_slice(c->payload);
                c->reg->method->unary(&req, GRPC_SLICE_START_PTR(body), GRPC_SLICE_LENGTH(body), &reply);
                grpc_slice_unref(body);
        }
        log_failure(c, &reply);

        grpc_op ops[4] = {};
        size_t n = 0;
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        if (reply.code == GRPC_STATUS_OK) {
                c->send_buf = reply_buffer(&reply);
                ops[n].op = GRPC_OP_SEND_MESSAGE;
                ops[n++].data.send_message.send_message = c->send_buf;
        }
        fill_status_op(c, &ops[n++], &reply);
        ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
        start_batch(c, ops, n, &c->t_unary_done);
        free(reply.body);
}

/* Answers a call to a method this server does not have. */
static void unknown_start(struct call *c) {
        rpc_reply reply = {};
        char *path = grpc_slice_to_c_string(c->call_details.method);
        rpc_reply_error(&reply, GRPC_STATUS_UNIMPLEMENTED, "no method %s on this collector", path);
        gpr_free(path);
        log_failure(c, &reply);

        grpc_op ops[3] = {};
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
        fill_status_op(c, &ops[1], &reply);
        ops[2].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
        ops[2].data.recv_close_on_server.cancelled = &c->cancelled;
        start_batch(c, ops, ELEMENTSOF(ops), &c->t_unary_done);
}

/* ---- streams -------------------------------------------------------------- */

static void stream_recv(struct call *c, bool with_initial_metadata) {
        grpc_op ops[2] = {};
        size_t n = 0;
        if (with_initial_metadata)
                ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[n].op = GRPC_OP_RECV_MESSAGE;
        ops[n++].data.recv_message.recv_message = &c->recv_buf;
        start_batch(c, ops, n, &c->t_recv);
}

static void stream_status(struct call *c, const rpc_reply *reply, bool with_initial_metadata) {
        grpc_op ops[2] = {};
        size_t n = 0;
        if (with_initial_metadata)
                ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        fill_status_op(c, &ops[n++], reply);
        start_batch(c, ops, n, &c->t_status);
}

static void stream_start(struct call *c, void *thread_ctx) {
        /* The close batch completes when the call is over, however it ends:
         * it keeps the state alive until then. */
        grpc_op op = {.op = GRPC_OP_RECV_CLOSE_ON_SERVER};
        op.data.recv_close_on_server.cancelled = &c->cancelled;
        start_batch(c, &op, 1, &c->t_close);

        rpc_reply reply = {.code = GRPC_STATUS_OK};
        rpc_request req = make_request(c, thread_ctx);
        c->reg->method->stream->open(&req, &c->stream_state, &reply);
        if (reply.code != GRPC_STATUS_OK) {
                log_failure(c, &reply);
                stream_status(c, &reply, true);
                return;
        }
        c->stream_open = true;
        stream_recv(c, true);
}

static void stream_on_recv(struct call *c, bool ok, void *thread_ctx) {
        if (!ok)
                return;         /* cancelled or broken: the close tag follows */

        rpc_reply reply = {.code = GRPC_STATUS_OK};
        if (!c->recv_buf) {
                /* The client half-closed: everything it sent was answered. */
                stream_status(c, &reply, false);
                return;
        }

        grpc_slice body = buffer_slice(c->recv_buf);
        grpc_byte_buffer_destroy(c->recv_buf);
        c->recv_buf = NULL;
        rpc_request req = make_request(c, thread_ctx);
        c->reg->method->stream->message(&req, c->stream_state, GRPC_SLICE_START_PTR(body), GRPC_SLICE_LENGTH(body),
                                        &reply);
        grpc_slice_unref(body);

        if (reply.code != GRPC_STATUS_OK) {
                log_failure(c, &reply);
                stream_status(c, &reply, false);
                return;
        }
        c->send_buf = reply_buffer(&reply);
        grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};
        op.data.send_message.send_message = c->send_buf;
        start_batch(c, &op, 1, &c->t_send);
}

static void stream_on_send(struct call *c, bool ok) {
        grpc_byte_buffer_destroy(c->send_buf);
        c->send_buf = NULL;
        if (ok)
                stream_recv(c, false);
}

/* ---- dispatch ------------------------------------------------------------- */

static void on_event(struct worker *w, struct tag *t, bool ok) {
        struct call *c = t->call;

        if (t->kind == TAG_NEW) {
                if (!ok) {      /* shutting down: the request was never used */
                        call_free(c);
                        return;
                }
                request_call(w->server, c->reg);
                pthread_mutex_lock(&c->lock);
                if (!c->reg->handle) {
                        (void) make_request(c, NULL);   /* the peer, for the log line */
                        unknown_start(c);
                } else if (c->reg->method->unary)
                        unary_start(c, w->ctx);
                else
                        stream_start(c, w->ctx);
        } else {
                pthread_mutex_lock(&c->lock);
                assert(c->pending > 0);
                c->pending--;
                switch (t->kind) {
                case TAG_RECV:
                        stream_on_recv(c, ok, w->ctx);
                        break;
                case TAG_SEND:
                        stream_on_send(c, ok);
                        break;
                case TAG_CLOSE:
                        if (c->cancelled)
                                log_debug("%s from %s: cancelled by the client or the network",
                                          c->reg->method->path, c->peer ? c->peer : "?");
                        break;
                default:
                        break;
                }
        }

        bool done = c->pending == 0;
        pthread_mutex_unlock(&c->lock);
        if (done)
                call_free(c);
}

static void *worker_main(void *userdata) {
        struct worker *w = userdata;
        rpc_server *s = w->server;

        for (;;) {
                grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
                if (ev.type == GRPC_QUEUE_SHUTDOWN)
                        break;
                if (ev.type != GRPC_OP_COMPLETE)
                        continue;

                struct tag *t = ev.tag;
                if (t->kind == TAG_SHUTDOWN) {
                        /* The server holds no calls any more; rpc_server_stop()
                         * may destroy it once its own cancel returned. */
                        pthread_mutex_lock(&s->shutdown_lock);
                        s->shutdown_done = true;
                        pthread_cond_signal(&s->shutdown_cond);
                        pthread_mutex_unlock(&s->shutdown_lock);
                        continue;
                }
                on_event(w, t, ev.success);
        }
        return NULL;
}

/* ---- setup ---------------------------------------------------------------- */

static int server_credentials(const rpc_server_options *o, grpc_server_credentials **ret, mp_error *err) {
        if (!o->tls_cert_file) {
                *ret = grpc_insecure_server_credentials_create();
                return 0;
        }

        _cleanup_(freep) char *cert = NULL, *key = NULL, *ca = NULL;
        int r = mp_read_file_limited(o->tls_cert_file, "TLS certificate", PEM_MAX, &cert, NULL, err);
        if (r < 0)
                return r;
        r = mp_read_file_limited(o->tls_key_file, "TLS key", PEM_MAX, &key, NULL, err);
        if (r < 0)
                return r;
        if (o->tls_client_ca_file) {
                r = mp_read_file_limited(o->tls_client_ca_file, "client CA", PEM_MAX, &ca, NULL, err);
                if (r < 0)
                        return r;
        }

        grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
        *ret = grpc_ssl_server_credentials_create_ex(
                ca, &pair, 1,
                ca ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
                NULL);
        if (!*ret)
                return mp_error_set(err, -EINVAL, o->tls_cert_file, -1, "TLS certificate or key not usable");
        return 0;
}

/* "HOST:0" with the port really bound. */
static int bound_address(const char *listen, int port, char *out, size_t size, mp_error *err) {
        char host[256];
        unsigned want;
        if (mp_address_split(listen, host, sizeof host, &want) < 0)
                return mp_error_set(err, -EINVAL, NULL, -1, "cannot parse listen address \"%s\" (HOST:PORT)",
                                    listen);
        snprintf(out, size, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
        return 0;
}

static void server_free(rpc_server *s) {
        if (!s)
                return;
        if (s->workers && s->opts.thread_done)
                for (unsigned i = 0; i < s->opts.threads; i++)
                        if (s->workers[i].ctx)
                                s->opts.thread_done(s->workers[i].ctx);
        free(s->workers);
        free(s->regs);
        pthread_mutex_destroy(&s->shutdown_lock);
        pthread_cond_destroy(&s->shutdown_cond);
        free(s);
}

int rpc_server_start(const rpc_server_options *o, rpc_server **ret, char *bound, size_t bound_size,
                     mp_error *err) {
        assert(o);
        assert(o->threads > 0);
        assert(ret);

        char host[256];
        unsigned port;
        if (mp_address_split(o->listen, host, sizeof host, &port) < 0)
                return mp_error_set(err, -EINVAL, NULL, -1, "cannot parse listen address \"%s\" (HOST:PORT)",
                                    o->listen);

        rpc_server *s = calloc(1, sizeof *s);
        if (!s)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        s->opts = *o;
        s->t_shutdown.kind = TAG_SHUTDOWN;
        pthread_mutex_init(&s->shutdown_lock, NULL);
        pthread_cond_init(&s->shutdown_cond, NULL);
        s->regs = calloc(o->n_methods, sizeof *s->regs);
        s->workers = calloc(o->threads, sizeof *s->workers);
        if (!s->regs || !s->workers) {
                server_free(s);
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        }
        for (unsigned i = 0; i < o->threads; i++) {
                s->workers[i].server = s;
                int r = o->thread_init ? o->thread_init(o->userdata, &s->workers[i].ctx, err) : 0;
                if (r < 0) {
                        server_free(s);
                        return r;
                }
        }

        grpc_server_credentials *creds = NULL;
        int r = server_credentials(o, &creds, err);
        if (r < 0) {
                server_free(s);
                return r;
        }

        grpc_init();
        /* Keepalive pings find agents that vanished without closing their
         * stream; clients may ping us every 10 s even when idle. */
        grpc_arg args[] = {
                {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                 .value.integer = (int) o->max_message},
                {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_TIME_MS, .value.integer = 120 * 1000},
                {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS, .value.integer = 20 * 1000},
                {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                 .value.integer = 10 * 1000},
                {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, .value.integer = 1},
        };
        grpc_channel_args chargs = {.num_args = ELEMENTSOF(args), .args = args};
        s->cq = grpc_completion_queue_create_for_next(NULL);
        s->grpc = grpc_server_create(&chargs, NULL);
        grpc_server_register_completion_queue(s->grpc, s->cq, NULL);
        for (size_t i = 0; i < o->n_methods; i++) {
                const rpc_method *m = &o->methods[i];
                assert(!!m->unary != !!m->stream);
                s->regs[i].method = m;
                s->regs[i].handle = grpc_server_register_method(
                        s->grpc, m->path, NULL,
                        m->unary ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER : GRPC_SRM_PAYLOAD_NONE, 0);
        }

        int bound_port = grpc_server_add_http2_port(s->grpc, o->listen, creds);
        grpc_server_credentials_release(creds);
        if (bound_port == 0) {
                r = mp_error_set(err, -EADDRNOTAVAIL, NULL, -1,
                                 "cannot listen on %s (address in use or not local?)", o->listen);
                goto fail;
        }
        r = bound_address(o->listen, bound_port, bound, bound_size, err);
        if (r < 0)
                goto fail;

        grpc_server_start(s->grpc);
        for (size_t i = 0; i < o->n_methods; i++)
                request_call(s, &s->regs[i]);
        s->unknown = (struct registered) {.method = &unknown_method};
        request_call(s, &s->unknown);
        for (unsigned i = 0; i < o->threads; i++) {
                r = -pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]);
                if (r < 0) {
                        mp_error_set(err, r, NULL, -1, "cannot start worker threads: %s", strerror(-r));
                        rpc_server_stop(s);
                        return r;
                }
                s->workers[i].started = true;
        }
        *ret = s;
        return 0;

fail:
        grpc_server_destroy(s->grpc);
        grpc_completion_queue_shutdown(s->cq);
        while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
               GRPC_QUEUE_SHUTDOWN)
                ;
        grpc_completion_queue_destroy(s->cq);
        grpc_shutdown();
        server_free(s);
        return r;
}

/* Waits until every call is freed, at most CALLS_DRAIN_MS.  The workers
 * serve the queue meanwhile; without them, this thread does. */
static void drain_calls(rpc_server *s, bool any_worker) {
        struct worker w = {.server = s};
        for (unsigned waited = 0; atomic_load(&s->live_calls) > 0 && waited < CALLS_DRAIN_MS; waited += 10) {
                gpr_timespec deadline = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                                     gpr_time_from_millis(10, GPR_TIMESPAN));
                if (any_worker) {
                        gpr_sleep_until(deadline);
                        continue;
                }
                grpc_event ev = grpc_completion_queue_next(s->cq, deadline, NULL);
                if (ev.type == GRPC_OP_COMPLETE && ((struct tag *) ev.tag)->kind != TAG_SHUTDOWN)
                        on_event(&w, ev.tag, ev.success);
        }
}

long rpc_server_stop(rpc_server *s) {
        if (!s)
                return 0;

        atomic_store(&s->stopping, true);
        grpc_server_shutdown_and_notify(s->grpc, s->cq, &s->t_shutdown);
        grpc_server_cancel_all_calls(s->grpc);

        bool any_worker = false;
        for (unsigned i = 0; i < s->opts.threads; i++)
                any_worker = any_worker || s->workers[i].started;
        if (any_worker) {
                pthread_mutex_lock(&s->shutdown_lock);
                while (!s->shutdown_done)
                        pthread_cond_wait(&s->shutdown_cond, &s->shutdown_lock);
                pthread_mutex_unlock(&s->shutdown_lock);
        } else {
                /* No worker ever ran (start failed): serve the queue here
                 * until the server is shut down. */
                struct worker w = {.server = s};
                for (;;) {
                        grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
                        if (ev.type != GRPC_OP_COMPLETE)
                                continue;
                        if (((struct tag *) ev.tag)->kind == TAG_SHUTDOWN)
                                break;
                        on_event(&w, ev.tag, ev.success);
                }
        }

        /* Destroy only after the shutdown tag and our cancel both returned,
         * and the calls cancel_all ended are freed: until then a worker may
         * still start a call's last batch (its status), which the queue must
         * accept — gRPC aborts on a batch for a queue already shut down. */
        drain_calls(s, any_worker);
        grpc_server_destroy(s->grpc);
        grpc_completion_queue_shutdown(s->cq);
        for (unsigned i = 0; i < s->opts.threads; i++)
                if (s->workers[i].started)
                        pthread_join(s->workers[i].thread, NULL);
        if (!any_worker) {
                struct worker w = {.server = s};
                worker_main(&w);        /* drains the queue to its shutdown */
        }
        grpc_completion_queue_destroy(s->cq);
        grpc_shutdown();
        long live = atomic_load(&s->live_calls);
        server_free(s);
        return live;
}
