/* server.h - the collector's gRPC server: listening, TLS, worker threads and
 * the per-call state machines of gRPC core's C API.  It knows method paths
 * and bytes, not protobuf types: the services (service_*.c) get a request's
 * bytes and metadata and hand back reply bytes or a status.
 *
 * Threads: every worker thread waits on one completion queue, so a slow
 * request (a blast radius over a big fleet) occupies one worker while the
 * others keep serving.  Each worker has its own context (the services put
 * their store handle there), made by thread_init before the workers start
 * and used only by that worker.  The
 * events of one call are serialised by a lock in its state, so a handler
 * never runs twice at once for the same call. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <grpc/grpc.h>

#include "util/error.h"

typedef struct rpc_server rpc_server;

/* What a handler answers: OK with body (malloc'd packed response, freed by
 * the server; NULL/0 is an empty message) or an error code with details. */
typedef struct rpc_reply {
        grpc_status_code code;
        char details[512];
        uint8_t *body;
        size_t body_len;
} rpc_reply;

/* Sets reply to an error status with a printf-style detail sentence. */
void rpc_reply_error(rpc_reply *reply, grpc_status_code code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* The request as a handler sees it; metadata slices stay valid during the
 * call. */
typedef struct rpc_request {
        void *thread_ctx;               /* from thread_init, this worker's */
        const grpc_metadata_array *metadata;
        const char *peer;               /* "ipv4:127.0.0.1:5555", for logs */
} rpc_request;

/* A unary method: reply to one request message. */
typedef void (*rpc_unary_fn)(const rpc_request *req, const uint8_t *body, size_t len, rpc_reply *reply);

/* A bidirectional stream answered message by message (ping-pong):
 *   open:    once, before any message: authenticate; set *state, or set an
 *            error in reply to refuse the stream;
 *   message: per client message; an OK reply's body is sent back, an error
 *            ends the stream with that status;
 *   close:   once, when the call is over (whatever happened), frees state.
 * When the client half-closes, the stream ends with OK. */
typedef struct rpc_stream_ops {
        void (*open)(const rpc_request *req, void **state, rpc_reply *reply);
        void (*message)(const rpc_request *req, void *state, const uint8_t *body, size_t len, rpc_reply *reply);
        void (*close)(void *state);
} rpc_stream_ops;

typedef struct rpc_method {
        const char *path;               /* "/modelprov.v1.Ingest/Enroll" */
        rpc_unary_fn unary;             /* exactly one of unary and stream */
        const rpc_stream_ops *stream;
} rpc_method;

typedef struct rpc_server_options {
        const char *listen;             /* "HOST:PORT"; port 0 picks a free one */
        const char *tls_cert_file;      /* NULL: plaintext (the caller checked loopback) */
        const char *tls_key_file;
        const char *tls_client_ca_file; /* NULL: no client certificates */
        size_t max_message;             /* receive limit in bytes */
        unsigned threads;
        const rpc_method *methods;      /* must outlive the server */
        size_t n_methods;
        /* Per-worker context, made for each worker before serving starts
         * and freed after the workers are joined.  thread_init returns a
         * negative errno to fail the start. */
        int (*thread_init)(void *userdata, void **ctx, mp_error *err);
        void (*thread_done)(void *ctx);
        void *userdata;
} rpc_server_options;

/* Binds, starts the workers and serves.  bound receives the address really
 * listened on (the free port filled in).  Calls grpc_init(). */
int rpc_server_start(const rpc_server_options *o, rpc_server **ret, char *bound, size_t bound_size,
                     mp_error *err);

/* Stops serving: open calls are cancelled (streams see CANCELLED, agents
 * resend what was not acknowledged), workers joined, everything freed,
 * grpc_shutdown() called.  Returns the number of call states still alive
 * afterwards (0 unless there is a leak: tests check it). */
long rpc_server_stop(rpc_server *s);
