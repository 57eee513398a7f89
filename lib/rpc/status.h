/* status.h - gRPC status codes as the collector client reports them: names,
 * the errno each maps to, and which ones are worth retrying.
 *
 * The values are gRPC's own (grpc/status.h), so a code read from any gRPC
 * client or server means the same here; this header does not pull in gRPC,
 * so code that only looks at results (the CLI, tests) does not need it. */
#pragma once

#include <stdbool.h>

typedef enum mp_rpc_code {
        MP_RPC_OK = 0,
        MP_RPC_CANCELLED = 1,
        MP_RPC_UNKNOWN = 2,
        MP_RPC_INVALID_ARGUMENT = 3,
        MP_RPC_DEADLINE_EXCEEDED = 4,
        MP_RPC_NOT_FOUND = 5,
        MP_RPC_ALREADY_EXISTS = 6,
        MP_RPC_PERMISSION_DENIED = 7,
        MP_RPC_RESOURCE_EXHAUSTED = 8,
        MP_RPC_FAILED_PRECONDITION = 9,
        MP_RPC_ABORTED = 10,
        MP_RPC_OUT_OF_RANGE = 11,
        MP_RPC_UNIMPLEMENTED = 12,
        MP_RPC_INTERNAL = 13,
        MP_RPC_UNAVAILABLE = 14,
        MP_RPC_DATA_LOSS = 15,
        MP_RPC_UNAUTHENTICATED = 16,
} mp_rpc_code;

/* "UNAUTHENTICATED", ...; "UNKNOWN(99)"-style text is not produced: codes
 * outside 0..16 read "INVALID_STATUS_CODE". */
const char *mp_rpc_status_name(int code);

/* The negative errno a failed call returns for code (0 for MP_RPC_OK):
 *   UNAUTHENTICATED -EACCES, PERMISSION_DENIED -EPERM,
 *   INVALID_ARGUMENT, OUT_OF_RANGE, FAILED_PRECONDITION -EINVAL,
 *   NOT_FOUND -ENOENT, ALREADY_EXISTS -EEXIST, DEADLINE_EXCEEDED -ETIMEDOUT,
 *   UNAVAILABLE, ABORTED -EAGAIN (worth trying again later),
 *   RESOURCE_EXHAUSTED -E2BIG (the message was over a size limit),
 *   CANCELLED -ECANCELED, UNIMPLEMENTED -EOPNOTSUPP, others -EIO.
 * A call given up because of a TLS failure returns -EPROTO instead. */
int mp_rpc_code_errno(int code);

/* True for the codes a retry can cure: UNAVAILABLE (no connection, the
 * collector restarting, its store busy), DEADLINE_EXCEEDED and ABORTED.
 * Never for UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT, NOT_FOUND:
 * the same request gets the same answer.  Not RESOURCE_EXHAUSTED either: in
 * this protocol it means the message is over the receiver's size limit. */
bool mp_rpc_code_retryable(int code);

/* True if text (gRPC's status details or debug string for a failed call)
 * says the TLS handshake failed: a certificate that does not verify, a
 * wrong server name, a client certificate missing or refused, plaintext
 * against TLS.  With mutual TLS such failures arrive as UNAVAILABLE, the
 * retryable code, so the retry policy needs this to stop. */
bool mp_rpc_text_is_tls_failure(const char *text);

/* True if text says the connection was closed or reset while it was being
 * set up ("failed to connect to all addresses; ... Socket closed"), not
 * refused.  On a TLS channel that is how gRPC core 1.51 reports a collector
 * that wants a client certificate and got none it trusts: with TLS 1.3 the
 * client finishes its handshake, then the server hangs up.  On a plaintext
 * channel it is what a TLS collector does. */
bool mp_rpc_text_is_closed_at_connect(const char *text);
