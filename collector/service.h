/* service.h - the collector's two gRPC services on top of server.h: Ingest
 * (service_ingest.c: enroll, report stream, heartbeat, catalog) and Query
 * (service_query.c: hosts, inventory, blast radius, model, history).
 *
 * Handlers run on server worker threads; each worker owns one store handle
 * (service_ctx).  Writes to the store are serialised in-process by
 * write_lock: SQLite admits one writer at a time anyway, and waiting on a
 * mutex is far cheaper than SQLite's sleep-and-retry busy handler when many
 * agents report at once.  Reads run in parallel (WAL). */
#pragma once

#include <pthread.h>

#include <protobuf-c/protobuf-c.h>

#include "collector/auth.h"
#include "collector/server.h"
#include "collector/store.h"
#include "modelprov.pb-c.h"

typedef struct collector_service {
        const char *store_url;
        auth_secrets secrets;
        unsigned stale_after_s;
        pthread_mutex_t write_lock;
} collector_service;

/* One per worker thread. */
typedef struct service_ctx {
        collector_service *service;
        mp_store *store;
} service_ctx;

/* rpc_server_options.thread_init / thread_done: open / close a store handle. */
int service_thread_init(void *userdata, void **ctx, mp_error *err);
void service_thread_done(void *ctx);

extern const rpc_method ingest_methods[];
extern const size_t ingest_methods_count;
extern const rpc_method query_methods[];
extern const size_t query_methods_count;

/* Maps a store error (negative errno) to a reply status: bad input is
 * INVALID_ARGUMENT, unknown things NOT_FOUND, a busy or failing store
 * UNAVAILABLE (the client retries), anything else INTERNAL. */
void service_store_error(rpc_reply *reply, int r, const mp_error *e);

/* Packs m into reply->body (status OK). */
void service_reply_message(rpc_reply *reply, const ProtobufCMessage *m);

/* Milliseconds since the Unix epoch. */
int64_t service_now_ms(void);

/* Declares `type *var` unpacked from a request body with descriptor desc;
 * on failure replies INVALID_ARGUMENT naming the message type and returns
 * from the (void) handler. */
#define SERVICE_UNPACK(type, var, desc, body, len, reply)                                                   \
        type *var = (type *) protobuf_c_message_unpack(&(desc), NULL, len, body);                          \
        if (!var) {                                                                                         \
                rpc_reply_error(reply, GRPC_STATUS_INVALID_ARGUMENT, "request does not parse as %s",       \
                                (desc).name);                                                               \
                return;                                                                                     \
        }

/* The BlastRadius answer (service_blast.c): resolves the request's target
 * and runs the blast-radius engine on this worker's store. */
void service_blast_radius(service_ctx *ctx, const Modelprov__V1__BlastRadiusRequest *in, rpc_reply *reply);
