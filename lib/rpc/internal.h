/* internal.h - what client.c (channel, unary calls) shares with stream.c
 * (bidirectional streams): the client's state and the call plumbing on gRPC
 * core.  Not installed, not for callers of client.h. */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <grpc/grpc.h>

#include "rpc/client.h"

struct mp_rpc_client {
        char *target;
        char *label;                    /* "collector TARGET": err->file of every error */
        bool tls;
        int64_t deadline_ms;
        mp_retry_policy retry;
        const volatile sig_atomic_t *stop;
        grpc_channel *channel;
        bool grpc_ref;                  /* holds a grpc_init() reference */
};

/* MODELPROV_DEBUG is set: trace retries and gRPC's debug strings. */
extern bool rpc_debug;

int64_t rpc_now_ms(clockid_t clock);
/* The absolute gRPC deadline ms from now. */
gpr_timespec rpc_after_ms(int64_t ms);

/* Waits for tag on cq for at most timeout_ms (< 0: as long as it takes).
 * When time runs out or the client's stop flag is set, cancels call (with
 * DEADLINE_EXCEEDED or CANCELLED) and still waits for the tag: core
 * completes every batch it accepted and writes into its buffers until then.
 * Returns 0 (*ret_success: the event's success), -ETIMEDOUT or -ECANCELED. */
int rpc_wait_tag(const mp_rpc_client *c, grpc_completion_queue *cq, grpc_call *call, void *tag,
                 int64_t timeout_ms, bool *ret_success);

/* Shuts down a pluck queue whose batches have all completed, and frees it. */
void rpc_drain_and_destroy_cq(grpc_completion_queue *cq);

/* The request metadata of mp_rpc_auth, checked (token: util/secret.h rules;
 * host id: hex digits and dashes). */
typedef struct rpc_metadata {
        grpc_metadata md[2];
        size_t n;
} rpc_metadata;

int rpc_metadata_build(const mp_rpc_client *c, const mp_rpc_auth *auth, rpc_metadata *m, mp_error *err);
void rpc_metadata_done(rpc_metadata *m);

int rpc_pack_message(const mp_rpc_client *c, const ProtobufCMessage *msg, grpc_slice *ret, mp_error *err);
/* -EBADMSG when bb does not parse as type. */
int rpc_unpack_message(const mp_rpc_client *c, grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *type,
                       ProtobufCMessage **ret, mp_error *err);

/* Fills st from a call's final status (details made printable; debug, core's
 * error string, stands in for empty details and feeds the TLS check). */
void rpc_status_fill(const mp_rpc_client *c, mp_rpc_status *st, grpc_status_code code, grpc_slice details,
                     const char *debug);

/* The error for a call that ended with st (not OK) after the retry verdict
 * v: "collector ADDR: CODE: details", with what the retries did. */
int rpc_status_error(const mp_rpc_client *c, const mp_rpc_status *st, mp_retry_verdict v, int64_t elapsed_ms,
                     mp_error *err);
