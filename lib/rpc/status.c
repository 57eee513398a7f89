/* status.c - gRPC status names, errno mapping and retry classes (status.h). */
#include "rpc/status.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "util/macro.h"

static const char *const names[] = {
        [MP_RPC_OK] = "OK",
        [MP_RPC_CANCELLED] = "CANCELLED",
        [MP_RPC_UNKNOWN] = "UNKNOWN",
        [MP_RPC_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
        [MP_RPC_DEADLINE_EXCEEDED] = "DEADLINE_EXCEEDED",
        [MP_RPC_NOT_FOUND] = "NOT_FOUND",
        [MP_RPC_ALREADY_EXISTS] = "ALREADY_EXISTS",
        [MP_RPC_PERMISSION_DENIED] = "PERMISSION_DENIED",
        [MP_RPC_RESOURCE_EXHAUSTED] = "RESOURCE_EXHAUSTED",
        [MP_RPC_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
        [MP_RPC_ABORTED] = "ABORTED",
        [MP_RPC_OUT_OF_RANGE] = "OUT_OF_RANGE",
        [MP_RPC_UNIMPLEMENTED] = "UNIMPLEMENTED",
        [MP_RPC_INTERNAL] = "INTERNAL",
        [MP_RPC_UNAVAILABLE] = "UNAVAILABLE",
        [MP_RPC_DATA_LOSS] = "DATA_LOSS",
        [MP_RPC_UNAUTHENTICATED] = "UNAUTHENTICATED",
};

const char *mp_rpc_status_name(int code) {
        if (code < 0 || (size_t) code >= ELEMENTSOF(names))
                return "INVALID_STATUS_CODE";
        return names[code];
}

int mp_rpc_code_errno(int code) {
        switch (code) {
        case MP_RPC_OK: return 0;
        case MP_RPC_UNAUTHENTICATED: return -EACCES;
        case MP_RPC_PERMISSION_DENIED: return -EPERM;
        case MP_RPC_INVALID_ARGUMENT:
        case MP_RPC_OUT_OF_RANGE:
        case MP_RPC_FAILED_PRECONDITION: return -EINVAL;
        case MP_RPC_NOT_FOUND: return -ENOENT;
        case MP_RPC_ALREADY_EXISTS: return -EEXIST;
        case MP_RPC_DEADLINE_EXCEEDED: return -ETIMEDOUT;
        case MP_RPC_UNAVAILABLE:
        case MP_RPC_ABORTED: return -EAGAIN;
        case MP_RPC_RESOURCE_EXHAUSTED: return -E2BIG;
        case MP_RPC_CANCELLED: return -ECANCELED;
        case MP_RPC_UNIMPLEMENTED: return -EOPNOTSUPP;
        default: return -EIO;
        }
}

bool mp_rpc_code_retryable(int code) {
        return code == MP_RPC_UNAVAILABLE || code == MP_RPC_DEADLINE_EXCEEDED || code == MP_RPC_ABORTED;
}

bool mp_rpc_text_is_tls_failure(const char *text) {
        /* What gRPC core 1.51 and OpenSSL put into the details of a failed
         * connection: "Ssl handshake failed: SSL_ERROR_SSL: ...
         * CERTIFICATE_VERIFY_FAILED", "tlsv13 alert certificate required",
         * "peer did not return a certificate", "Handshake read failed". */
        static const char *const words[] = {
                "handshake", "ssl", "tls", "certificate", "x509",
        };
        if (!text)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(words); i++)
                if (strcasestr(text, words[i]))
                        return true;
        return false;
}

bool mp_rpc_text_is_closed_at_connect(const char *text) {
        if (!text || !strcasestr(text, "failed to connect"))
                return false;
        return strcasestr(text, "socket closed") || strcasestr(text, "connection reset") ||
               strcasestr(text, "broken pipe");
}
