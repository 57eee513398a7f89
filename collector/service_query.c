/* service_query.c - the read-only Query service: hosts, inventory with its
 * history, one model's fingerprint and locations, event history, and the
 * incident question, blast radius.  Every method needs the query token (or
 * the admin token). */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "collector/convert.h"
#include "daemon/log.h"
#include "collector/service.h"
#include "util/macro.h"

#define HISTORY_LIMIT_DEFAULT 1000
#define HISTORY_LIMIT_MAX 100000

static service_ctx *authorized(const rpc_request *req, rpc_reply *reply) {
        service_ctx *ctx = req->thread_ctx;
        return auth_query(req, &ctx->service->secrets, reply) ? ctx : NULL;
}

static const char *optional_string(const char *s) {
        return s && *s ? s : NULL;
}

/* ---- Hosts ---------------------------------------------------------------- */

static void hosts(const rpc_request *req, const uint8_t *body, size_t len, rpc_reply *reply) {
        service_ctx *ctx = authorized(req, reply);
        if (!ctx)
                return;
        SERVICE_UNPACK(Modelprov__V1__HostsRequest, in, modelprov__v1__hosts_request__descriptor,
                       body, len, reply);
        modelprov__v1__hosts_request__free_unpacked(in, NULL);

        mp_store_host *h = NULL;
        size_t n = 0;
        mp_error e = {0};
        int r = mp_store_hosts(ctx->store, &h, &n, &e);
        if (r < 0) {
                service_store_error(reply, r, &e);
                return;
        }

        Modelprov__V1__Host *items = calloc(n ? n : 1, sizeof *items);
        Modelprov__V1__Host **ptrs = calloc(n ? n : 1, sizeof *ptrs);
        if (!items || !ptrs)
                rpc_reply_error(reply, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        else {
                int64_t now = service_now_ms();
                for (size_t i = 0; i < n; i++) {
                        convert_host(&h[i], now, (int64_t) ctx->service->stale_after_s * 1000, &items[i]);
                        ptrs[i] = &items[i];
                }
                Modelprov__V1__HostsResponse out = MODELPROV__V1__HOSTS_RESPONSE__INIT;
                out.n_hosts = n;
                out.hosts = ptrs;
                service_reply_message(reply, &out.base);
        }
        free(ptrs);
        free(items);
        mp_store_hosts_free(h, n);
}

/* ---- Inventory and Model ------------------------------------------------------ */

/* Packs locations as InventoryItems into the repeated field of a reply. */
typedef struct item_array {
        Modelprov__V1__InventoryItem *items;
        Modelprov__V1__InventoryItem **ptrs;
} item_array;

static int item_array_fill(item_array *a, const mp_store_location *l, size_t n) {
        a->items = calloc(n ? n : 1, sizeof *a->items);
        a->ptrs = calloc(n ? n : 1, sizeof *a->ptrs);
        if (!a->items || !a->ptrs)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                convert_location(&l[i], &a->items[i]);
                a->ptrs[i] = &a->items[i];
        }
        return 0;
}

static void item_array_done(item_array *a) {
        free(a->items);
        free(a->ptrs);
}

static void inventory(const rpc_request *req, const uint8_t *body, size_t len, rpc_reply *reply) {
        service_ctx *ctx = authorized(req, reply);
        if (!ctx)
                return;
        SERVICE_UNPACK(Modelprov__V1__InventoryRequest, in, modelprov__v1__inventory_request__descriptor,
                       body, len, reply);

        mp_store_location *l = NULL;
        size_t n = 0;
        mp_error e = {0};
        int r = mp_store_inventory(ctx->store, optional_string(in->host_id), !in->include_removed, &l, &n, &e);
        if (r < 0)
                service_store_error(reply, r, &e);
        else {
                _cleanup_(item_array_done) item_array a = {};
                if (item_array_fill(&a, l, n) < 0)
                        rpc_reply_error(reply, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                else {
                        Modelprov__V1__InventoryResponse out = MODELPROV__V1__INVENTORY_RESPONSE__INIT;
                        out.n_items = n;
                        out.items = a.ptrs;
                        service_reply_message(reply, &out.base);
                }
        }
        mp_store_locations_free(l, n);
        modelprov__v1__inventory_request__free_unpacked(in, NULL);
}

static void model(const rpc_request *req, const uint8_t *body, size_t len, rpc_reply *reply) {
        service_ctx *ctx = authorized(req, reply);
        if (!ctx)
                return;
        SERVICE_UNPACK(Modelprov__V1__ModelRequest, in, modelprov__v1__model_request__descriptor,
                       body, len, reply);

        _cleanup_(freep) uint8_t *record = NULL;
        _cleanup_(item_array_done) item_array a = {};
        size_t record_len = 0, n = 0;
        mp_store_location *l = NULL;
        Modelprov__V1__Fingerprint *fp = NULL;
        mp_error e = {0};
        int r = 0;

        if (in->model_digest.len != MP_STORE_DIGEST_SIZE) {
                rpc_reply_error(reply, GRPC_STATUS_INVALID_ARGUMENT, "model digest must be %d bytes, got %zu",
                                MP_STORE_DIGEST_SIZE, in->model_digest.len);
                goto out;
        }
        r = mp_store_fingerprint(ctx->store, in->model_digest.data, &record, &record_len, &e);
        if (r < 0 && r != -ENOENT)
                goto fail;
        r = mp_store_locations(ctx->store, in->model_digest.data, &l, &n, &e);
        if (r < 0)
                goto fail;
        if (!record && n == 0) {
                rpc_reply_error(reply, GRPC_STATUS_NOT_FOUND, "no host ever reported this model digest");
                goto out;
        }
        if (record) {
                /* The store checked the record when it was ingested. */
                fp = modelprov__v1__fingerprint__unpack(NULL, record_len, record);
                if (!fp) {
                        rpc_reply_error(reply, GRPC_STATUS_INTERNAL, "stored fingerprint does not parse");
                        goto out;
                }
        }

        if (item_array_fill(&a, l, n) < 0) {
                rpc_reply_error(reply, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                goto out;
        }
        Modelprov__V1__ModelResponse outm = MODELPROV__V1__MODEL_RESPONSE__INIT;
        outm.fingerprint = fp;
        outm.n_locations = n;
        outm.locations = a.ptrs;
        service_reply_message(reply, &outm.base);
        goto out;
fail:
        service_store_error(reply, r, &e);
out:
        if (fp)
                modelprov__v1__fingerprint__free_unpacked(fp, NULL);
        mp_store_locations_free(l, n);
        modelprov__v1__model_request__free_unpacked(in, NULL);
}

/* ---- History -------------------------------------------------------------- */

static void history(const rpc_request *req, const uint8_t *body, size_t len, rpc_reply *reply) {
        service_ctx *ctx = authorized(req, reply);
        if (!ctx)
                return;
        SERVICE_UNPACK(Modelprov__V1__HistoryRequest, in, modelprov__v1__history_request__descriptor,
                       body, len, reply);

        uint64_t limit = in->limit ? in->limit : HISTORY_LIMIT_DEFAULT;
        if (limit > HISTORY_LIMIT_MAX) {
                rpc_reply_error(reply, GRPC_STATUS_INVALID_ARGUMENT, "history limit %" PRIu64 " exceeds %d",
                                in->limit, HISTORY_LIMIT_MAX);
                modelprov__v1__history_request__free_unpacked(in, NULL);
                return;
        }

        mp_store_history_entry *h = NULL;
        size_t n = 0;
        mp_error e = {0};
        int r = mp_store_history(ctx->store, optional_string(in->host_id), optional_string(in->path), &h, &n, &e);
        if (r < 0)
                service_store_error(reply, r, &e);
        else {
                /* The most recent ones: the tail of the (host, sequence) order. */
                size_t first = n > limit ? n - (size_t) limit : 0, m = n - first;
                Modelprov__V1__HistoryEvent *hev = calloc(m ? m : 1, sizeof *hev);
                Modelprov__V1__HistoryEvent **ptrs = calloc(m ? m : 1, sizeof *ptrs);
                Modelprov__V1__Event *ev = calloc(m ? m : 1, sizeof *ev);
                Modelprov__V1__Finding *fi = calloc(m ? m : 1, sizeof *fi);
                Modelprov__V1__ScanMatch *ma = calloc(m ? m : 1, sizeof *ma);
                if (!hev || !ptrs || !ev || !fi || !ma)
                        rpc_reply_error(reply, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
                else {
                        for (size_t i = 0; i < m; i++) {
                                convert_history(&h[first + i], &hev[i], &ev[i], &fi[i], &ma[i]);
                                ptrs[i] = &hev[i];
                        }
                        Modelprov__V1__HistoryResponse out = MODELPROV__V1__HISTORY_RESPONSE__INIT;
                        out.n_events = m;
                        out.events = ptrs;
                        service_reply_message(reply, &out.base);
                }
                free(hev);
                free(ptrs);
                free(ev);
                free(fi);
                free(ma);
        }
        mp_store_history_free(h, n);
        modelprov__v1__history_request__free_unpacked(in, NULL);
}

/* ---- BlastRadius ---------------------------------------------------------- */

static void blast_radius(const rpc_request *req, const uint8_t *body, size_t len, rpc_reply *reply) {
        service_ctx *ctx = authorized(req, reply);
        if (!ctx)
                return;
        SERVICE_UNPACK(Modelprov__V1__BlastRadiusRequest, in, modelprov__v1__blast_radius_request__descriptor,
                       body, len, reply);
        service_blast_radius(ctx, in, reply);
        modelprov__v1__blast_radius_request__free_unpacked(in, NULL);
}

const rpc_method query_methods[] = {
        {.path = "/modelprov.v1.Query/Hosts", .unary = hosts},
        {.path = "/modelprov.v1.Query/Inventory", .unary = inventory},
        {.path = "/modelprov.v1.Query/BlastRadius", .unary = blast_radius},
        {.path = "/modelprov.v1.Query/Model", .unary = model},
        {.path = "/modelprov.v1.Query/History", .unary = history},
};
const size_t query_methods_count = ELEMENTSOF(query_methods);
