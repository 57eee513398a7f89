/* client.h - talking to modelprov-collector: one gRPC channel (TLS, or
 * plaintext on loopback only), unary calls with deadlines and retries, and
 * bidirectional streams, on gRPC core's C API with protobuf-c messages.
 * `modelprov query` and `modelprov catalog push` make unary calls; the agent
 * also keeps a long-lived Report stream (send a batch, receive its ack).
 *
 * Credentials travel as request metadata (proto/modelprov.proto):
 * mp_rpc_auth.token becomes "authorization: Bearer <token>" and
 * mp_rpc_auth.host_id "modelprov-host-id: <host id>".
 *
 * Errors: every function returns 0 (or a documented positive value) or a
 * negative errno, and fills err with a sentence that names the collector and
 * the gRPC status, "collector 127.0.0.1:5000: UNAUTHENTICATED: wrong query
 * token" (err->file is "collector ADDR", err->reason the rest).  The errno
 * of each status is listed at mp_rpc_code_errno() (status.h); a call given
 * up over TLS handshake failures returns -EPROTO.
 *
 * gRPC core's own log lines are dropped unless MODELPROV_DEBUG is set in the
 * environment (then they go to stderr): a CLI must not print core's
 * "Handshake failed" noise beside its own clear error.
 *
 * Threads: a client may be used by several threads at once (each call has
 * its own completion queue).  A stream is driven by one thread, except that
 * one thread may send while another receives (pipelined batches and acks);
 * it is freed once neither is inside a call, and before its client. */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "rpc/backoff.h"
#include "rpc/status.h"
#include "util/error.h"

#define MP_RPC_DEFAULT_DEADLINE_MS 30000
#define MP_RPC_DEFAULT_KEEPALIVE_MS 60000
#define MP_RPC_DEFAULT_KEEPALIVE_TIMEOUT_MS 20000
#define MP_RPC_TARGET_MAX 1024
#define MP_RPC_DETAILS_MAX 512

typedef struct mp_rpc_options {
        /* "host:port", "[v6 address]:port", or "unix:/path". */
        const char *target;

        /* Transport: TLS unless insecure_loopback. */
        const char *ca_file;            /* PEM roots that verify the collector; NULL: the system's */
        bool insecure_loopback;         /* plaintext; refused unless target is loopback or unix: */
        const char *cert_file;          /* client certificate chain (PEM) for mutual TLS ... */
        const char *key_file;           /* ... and its key: both or neither */
        const char *server_name;        /* verify the certificate for this name, not target's host */

        int64_t deadline_ms;            /* per attempt of a unary call and for opening a stream;
                                         * 0: MP_RPC_DEFAULT_DEADLINE_MS */
        int64_t keepalive_ms;           /* ping an idle connection this often; 0: default; < 0: never */
        int64_t keepalive_timeout_ms;   /* drop it when a ping is not answered in time; 0: default */
        int64_t max_receive_bytes;      /* largest answer accepted; 0: unlimited */
        mp_retry_policy retry;          /* unary calls; zeroes: defaults; max_attempts 1: no retries */

        /* When this becomes non-zero (a signal handler sets it), waits for
         * a retry or for a stream message end early and the call fails with
         * -ECANCELED.  NULL: never. */
        const volatile sig_atomic_t *stop;
} mp_rpc_options;

typedef struct mp_rpc_auth {
        const char *token;              /* bearer token (a secret, util/secret.h); NULL: none */
        const char *host_id;            /* the agent's host id; NULL: none */
} mp_rpc_auth;

/* How a call ended.  details is the status message of the collector (or of
 * gRPC for transport failures), made printable. */
typedef struct mp_rpc_status {
        mp_rpc_code code;
        char details[MP_RPC_DETAILS_MAX];
        unsigned attempts;              /* unary: attempts made (retries + 1) */
        bool tls_failure;               /* the failure looked like a TLS handshake failure */
} mp_rpc_status;

typedef struct mp_rpc_client mp_rpc_client;
typedef struct mp_rpc_stream mp_rpc_stream;

/* Checks o without touching files or the network: a target of the form
 * above with a port (1..65535), plaintext only towards loopback
 * (util/address.h mp_address_is_loopback(): 127.0.0.0/8, ::1, localhost,
 * unix:), no CA or client certificate with plaintext, cert and key
 * together, sane numbers.  -EINVAL with the reason in err. */
int mp_rpc_options_check(const mp_rpc_options *o, mp_error *err);

/* Checks o, reads the PEM files and sets up the channel.  Does not connect:
 * the first call does (so an unreachable collector is reported by the
 * call).  Initialises gRPC (reference counted). */
int mp_rpc_client_new(const mp_rpc_options *o, mp_rpc_client **ret, mp_error *err);
void mp_rpc_client_free(mp_rpc_client *c);
static inline void mp_rpc_client_freep(mp_rpc_client **c) {
        if (*c)
                mp_rpc_client_free(*c);
}

/* The target, as given (for messages). */
const char *mp_rpc_client_target(const mp_rpc_client *c);

/* One unary call to method ("/modelprov.v1.Query/Hosts"), retried with
 * backoff under the client's policy while the status is retryable (and the
 * failures do not look like TLS failures, see backoff.h).  On MP_RPC_OK,
 * *ret_response receives the answer, unpacked as response_type; free it
 * with protobuf_c_message_free_unpacked(m, NULL).  status (may be NULL)
 * receives how the last attempt ended, also on failure.  Returns 0, or the
 * status's errno (-EPROTO for TLS failures), -EBADMSG for an answer that
 * does not parse, -ECANCELED when stopped, -EINVAL/-ENOMEM locally. */
int mp_rpc_unary(mp_rpc_client *c, const char *method, const mp_rpc_auth *auth,
                 const ProtobufCMessage *request, const ProtobufCMessageDescriptor *response_type,
                 ProtobufCMessage **ret_response, mp_rpc_status *status, mp_error *err);

/* A bidirectional stream (Ingest/Report).  open sends the request metadata
 * and waits up to the client's deadline for the collector to take the call;
 * deadline_ms bounds the whole stream (0: none: a long-lived stream relies on
 * keepalive and on the timeouts of send and recv).  Not retried: the caller
 * reopens the stream and resends from the last acknowledged point. */
int mp_rpc_stream_open(mp_rpc_client *c, const char *method, const mp_rpc_auth *auth, int64_t deadline_ms,
                       mp_rpc_stream **ret, mp_error *err);

/* Sends one message; waits until gRPC has taken it (flow control), at most
 * timeout_ms (0: the client's deadline).  A stream the collector ended or a
 * timeout fails with the stream's final status (timeouts cancel the stream:
 * -ETIMEDOUT); after any failure only mp_rpc_stream_free() is useful.  A send
 * can still succeed after the collector ended the stream (core often learns
 * of the end only by receiving): the next receive reports it. */
int mp_rpc_stream_send(mp_rpc_stream *s, const ProtobufCMessage *msg, int64_t timeout_ms, mp_error *err);

/* Receives one message as type into *ret (free with
 * protobuf_c_message_free_unpacked(m, NULL)), waiting at most timeout_ms (0:
 * the client's deadline).  Returns 1 with a message, 0 when the collector
 * ended the stream with OK (no more messages), or a negative errno for the
 * stream's error status, a timeout (-ETIMEDOUT, the stream is cancelled),
 * -EBADMSG for a message that does not parse. */
int mp_rpc_stream_recv(mp_rpc_stream *s, const ProtobufCMessageDescriptor *type, ProtobufCMessage **ret,
                       int64_t timeout_ms, mp_error *err);

/* Tells the collector that no more messages follow (half-close). */
int mp_rpc_stream_close_send(mp_rpc_stream *s, mp_error *err);

/* Half-closes if not done yet, drops messages not received yet, and waits
 * (at most timeout_ms, 0: the client's deadline) for the final status.
 * Returns 0 when it is OK, otherwise its errno with err filled; status (may
 * be NULL) receives it either way. */
int mp_rpc_stream_finish(mp_rpc_stream *s, int64_t timeout_ms, mp_rpc_status *status, mp_error *err);

/* Cancels the stream if it has not finished, and frees it. */
void mp_rpc_stream_free(mp_rpc_stream *s);
static inline void mp_rpc_stream_freep(mp_rpc_stream **s) {
        if (*s)
                mp_rpc_stream_free(*s);
}
