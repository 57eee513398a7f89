/* service.c - what both services share: worker store handles, store error
 * mapping, reply packing (see service.h). */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "collector/service.h"

int service_thread_init(void *userdata, void **ret, mp_error *err) {
        collector_service *svc = userdata;

        service_ctx *ctx = calloc(1, sizeof *ctx);
        if (!ctx)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        ctx->service = svc;
        int r = mp_store_open(svc->store_url, &ctx->store, err);
        if (r < 0) {
                free(ctx);
                return r;
        }
        *ret = ctx;
        return 0;
}

void service_thread_done(void *p) {
        service_ctx *ctx = p;
        if (!ctx)
                return;
        mp_store_close(ctx->store);
        free(ctx);
}

void service_store_error(rpc_reply *reply, int r, const mp_error *e) {
        assert(r < 0);
        const char *why = e && e->reason[0] ? e->reason : "store error";

        switch (-r) {
        case EINVAL:
        case EBADMSG:
        case E2BIG:
        case EOVERFLOW:
                rpc_reply_error(reply, GRPC_STATUS_INVALID_ARGUMENT, "%s", why);
                break;
        case ENOENT:
                rpc_reply_error(reply, GRPC_STATUS_NOT_FOUND, "%s", why);
                break;
        case EBUSY:
        case EIO:
        case EROFS:             /* a PostgreSQL standby after a failover */
        case ENOSPC:
        case EAGAIN:
                rpc_reply_error(reply, GRPC_STATUS_UNAVAILABLE, "%s", why);
                break;
        case ENOMEM:
                rpc_reply_error(reply, GRPC_STATUS_RESOURCE_EXHAUSTED, "%s", why);
                break;
        default:
                rpc_reply_error(reply, GRPC_STATUS_INTERNAL, "%s", why);
        }
}

void service_reply_message(rpc_reply *reply, const ProtobufCMessage *m) {
        size_t n = protobuf_c_message_get_packed_size(m);
        uint8_t *body = malloc(n ? n : 1);
        if (!body) {
                rpc_reply_error(reply, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for a %zu-byte reply", n);
                return;
        }
        protobuf_c_message_pack(m, body);
        free(reply->body);
        reply->code = GRPC_STATUS_OK;
        reply->body = body;
        reply->body_len = n;
}

int64_t service_now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
