/* service_ingest.c - the Ingest service: agents enroll, stream their event
 * batches (each acknowledged once stored), send heartbeats and fetch the
 * fleet's reference catalog; administrators push that catalog.
 *
 * Idempotence lives in the store: an agent resends everything after its
 * last ack, duplicates are acknowledged again and not stored, so a lost ack,
 * a killed collector or a reconnecting agent never loses nor doubles an
 * event. */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "catalog/catalog.h"
#include "collector/catalog_file.h"
#include "collector/convert.h"
#include "daemon/log.h"
#include "collector/service.h"
#include "util/macro.h"

static service_ctx *ctx_of(const rpc_request *req) {
        return req->thread_ctx;
}

/* The host's last stored sequence (0 for a new host). */
static int acked_through(mp_store *store, const char *host_id, uint64_t *ret, mp_error *err) {
        mp_store_host *h = NULL;
        int r = mp_store_get_host(store, host_id, &h, err);
        if (r < 0)
                return r;
        *ret = h->last_sequence;
        mp_store_hosts_free(h, 1);
        return 0;
}

/* ---- Enroll --------------------------------------------------------------- */

static void enroll(const rpc_request *req, const uint8_t *body, size_t len, rpc_reply *reply) {
        service_ctx *ctx = ctx_of(req);
        if (!auth_bearer_is(req, ctx->service->secrets.enroll_secret, "enroll secret", reply))
                return;

        SERVICE_UNPACK(Modelprov__V1__EnrollRequest, in, modelprov__v1__enroll_request__descriptor,
                       body, len, reply);
        if (!in->host) {
                rpc_reply_error(reply, GRPC_STATUS_INVALID_ARGUMENT, "enroll request without host information");
                goto out;
        }

        char key[AUTH_HOST_KEY_SIZE], host_id[MP_STORE_HOST_ID_SIZE];
        uint8_t hash[MP_STORE_DIGEST_SIZE];
        int r = auth_new_host_key(key, hash);
        if (r < 0) {
                rpc_reply_error(reply, GRPC_STATUS_INTERNAL, "cannot make a host key: %s", strerror(-r));
                goto out;
        }

        mp_host_info info = {
                .hostname = in->host->hostname,
                .machine_id = in->host->machine_id,
                .agent_version = in->host->agent_version,
                .os = in->host->os,
        };
        mp_error e = {0};
        uint64_t acked = 0;
        pthread_mutex_lock(&ctx->service->write_lock);
        r = mp_store_enroll(ctx->store, &info, hash, host_id, &e);
        pthread_mutex_unlock(&ctx->service->write_lock);
        if (r >= 0)
                r = acked_through(ctx->store, host_id, &acked, &e);
        if (r < 0) {
                service_store_error(reply, r, &e);
                goto out;
        }
        log_info("enrolled host %s (%s) from %s", host_id, info.hostname, req->peer);

        Modelprov__V1__EnrollResponse out = MODELPROV__V1__ENROLL_RESPONSE__INIT;
        out.host_id = host_id;
        out.host_key = key;
        out.acked_through = acked;
        service_reply_message(reply, &out.base);
out:
        modelprov__v1__enroll_request__free_unpacked(in, NULL);
}

/* ---- Report --------------------------------------------------------------- */

typedef struct report_stream {
        char host_id[MP_STORE_HOST_ID_SIZE];
        uint64_t batches;
} report_stream;

static void report_open(const rpc_request *req, void **state, rpc_reply *reply) {
        report_stream *st = calloc(1, sizeof *st);
        if (!st) {
                rpc_reply_error(reply, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                return;
        }
        if (!auth_host(req, ctx_of(req)->store, st->host_id, reply)) {
                free(st);
                return;
        }
        *state = st;
}

static void report_message(const rpc_request *req, void *state, const uint8_t *body, size_t len, rpc_reply *reply) {
        service_ctx *ctx = ctx_of(req);
        report_stream *st = state;

        SERVICE_UNPACK(Modelprov__V1__ReportBatch, in, modelprov__v1__report_batch__descriptor,
                       body, len, reply);
        mp_store_event *events = NULL;
        mp_error e = {0};
        int r = convert_events(in, &events, &e);
        if (r < 0) {
                service_store_error(reply, r, &e);
                goto out;
        }

        uint64_t acked = 0;
        size_t stored = 0, duplicates = 0;
        pthread_mutex_lock(&ctx->service->write_lock);
        r = mp_store_ingest(ctx->store, st->host_id, events, in->n_events, &acked, &stored, &duplicates, &e);
        pthread_mutex_unlock(&ctx->service->write_lock);
        if (r < 0) {
                service_store_error(reply, r, &e);
                goto out;
        }
        st->batches++;

        Modelprov__V1__ReportAck ack = MODELPROV__V1__REPORT_ACK__INIT;
        ack.acked_through = acked;
        ack.stored = (uint32_t) stored;
        ack.duplicates = (uint32_t) duplicates;
        service_reply_message(reply, &ack.base);
out:
        convert_events_free(events, in->n_events);
        modelprov__v1__report_batch__free_unpacked(in, NULL);
}

static void report_close(void *state) {
        free(state);
}

static const rpc_stream_ops report_ops = {
        .open = report_open,
        .message = report_message,
        .close = report_close,
};

/* ---- Heartbeat ------------------------------------------------------------ */

static void heartbeat(const rpc_request *req, const uint8_t *body, size_t len, rpc_reply *reply) {
        service_ctx *ctx = ctx_of(req);
        char host_id[MP_STORE_HOST_ID_SIZE];
        if (!auth_host(req, ctx->store, host_id, reply))
                return;

        SERVICE_UNPACK(Modelprov__V1__HeartbeatRequest, in, modelprov__v1__heartbeat_request__descriptor,
                       body, len, reply);
        int64_t now = service_now_ms();
        mp_error e = {0};
        uint64_t acked = 0;
        char version[MP_STORE_CATALOG_VERSION_SIZE] = "";

        pthread_mutex_lock(&ctx->service->write_lock);
        int r = mp_store_heartbeat(ctx->store, host_id, in->agent_version, now, &e);
        pthread_mutex_unlock(&ctx->service->write_lock);
        if (r >= 0)
                r = acked_through(ctx->store, host_id, &acked, &e);
        if (r >= 0) {
                r = mp_store_get_catalog(ctx->store, NULL, NULL, version, &e);
                if (r == -ENOENT)
                        r = 0;
        }
        if (r < 0) {
                service_store_error(reply, r, &e);
                goto out;
        }

        Modelprov__V1__HeartbeatResponse out = MODELPROV__V1__HEARTBEAT_RESPONSE__INIT;
        out.server_time = now;
        out.acked_through = acked;
        out.catalog_version = version;
        service_reply_message(reply, &out.base);
out:
        modelprov__v1__heartbeat_request__free_unpacked(in, NULL);
}

/* ---- Catalog -------------------------------------------------------------- */

static void fetch_catalog(const rpc_request *req, const uint8_t *body, size_t len, rpc_reply *reply) {
        service_ctx *ctx = ctx_of(req);
        char host_id[MP_STORE_HOST_ID_SIZE];
        if (!auth_host(req, ctx->store, host_id, reply))
                return;

        SERVICE_UNPACK(Modelprov__V1__FetchCatalogRequest, in, modelprov__v1__fetch_catalog_request__descriptor,
                       body, len, reply);
        _cleanup_(freep) uint8_t *bytes = NULL;
        size_t n = 0;
        char version[MP_STORE_CATALOG_VERSION_SIZE];
        mp_error e = {0};
        int r = mp_store_get_catalog(ctx->store, NULL, NULL, version, &e);
        bool unchanged = r >= 0 && strcmp(version, in->have_version) == 0;
        if (r >= 0 && !unchanged)
                r = mp_store_get_catalog(ctx->store, &bytes, &n, version, &e);
        if (r == -ENOENT)
                rpc_reply_error(reply, GRPC_STATUS_NOT_FOUND, "no reference catalog was pushed to this collector");
        else if (r < 0)
                service_store_error(reply, r, &e);
        else {
                Modelprov__V1__FetchCatalogResponse out = MODELPROV__V1__FETCH_CATALOG_RESPONSE__INIT;
                out.version = version;
                out.unchanged = unchanged;
                out.catalog = (ProtobufCBinaryData) {n, bytes};
                service_reply_message(reply, &out.base);
        }
        modelprov__v1__fetch_catalog_request__free_unpacked(in, NULL);
}

static void push_catalog(const rpc_request *req, const uint8_t *body, size_t len, rpc_reply *reply) {
        service_ctx *ctx = ctx_of(req);
        if (!ctx->service->secrets.admin_token) {
                rpc_reply_error(reply, GRPC_STATUS_PERMISSION_DENIED,
                                "catalog push is disabled on this collector (no admin token configured)");
                return;
        }
        if (!auth_bearer_is(req, ctx->service->secrets.admin_token, "admin token", reply))
                return;

        SERVICE_UNPACK(Modelprov__V1__PushCatalogRequest, in, modelprov__v1__push_catalog_request__descriptor,
                       body, len, reply);
        /* Open it as a catalog before it replaces the fleet's: agents would
         * otherwise all fetch a file they cannot use. */
        mp_error e = {0};
        size_t entries = 0;
        int r = catalog_file_count_entries(in->catalog.data, in->catalog.len, &entries, &e);
        if (r < 0) {
                rpc_reply_error(reply, GRPC_STATUS_INVALID_ARGUMENT, "not a usable modelprov catalog: %s", e.reason);
                goto out;
        }

        char version[MP_STORE_CATALOG_VERSION_SIZE];
        pthread_mutex_lock(&ctx->service->write_lock);
        r = mp_store_put_catalog(ctx->store, in->catalog.data, in->catalog.len, version, &e);
        pthread_mutex_unlock(&ctx->service->write_lock);
        if (r < 0) {
                service_store_error(reply, r, &e);
                goto out;
        }
        log_info("reference catalog %.12s (%zu entries, %zu bytes) pushed from %s", version, entries,
                 in->catalog.len, req->peer);

        Modelprov__V1__PushCatalogResponse out = MODELPROV__V1__PUSH_CATALOG_RESPONSE__INIT;
        out.version = version;
        out.entries = entries;
        service_reply_message(reply, &out.base);
out:
        modelprov__v1__push_catalog_request__free_unpacked(in, NULL);
}

const rpc_method ingest_methods[] = {
        {.path = "/modelprov.v1.Ingest/Enroll", .unary = enroll},
        {.path = "/modelprov.v1.Ingest/Report", .stream = &report_ops},
        {.path = "/modelprov.v1.Ingest/Heartbeat", .unary = heartbeat},
        {.path = "/modelprov.v1.Ingest/FetchCatalog", .unary = fetch_catalog},
        {.path = "/modelprov.v1.Ingest/PushCatalog", .unary = push_catalog},
};
const size_t ingest_methods_count = ELEMENTSOF(ingest_methods);
