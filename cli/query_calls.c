/* query_calls.c - Query service calls shared by `query` and `report`
 * (query_calls.h). */
#include "query_calls.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int cli_fetch_hosts(cli_collector *cc, Modelprov__V1__HostsResponse **ret) {
        Modelprov__V1__HostsRequest req = MODELPROV__V1__HOSTS_REQUEST__INIT;
        assert(cc && ret);
        return cli_collector_call(cc, "/modelprov.v1.Query/Hosts", &req.base, &modelprov__v1__hosts_response__descriptor,
                                  (ProtobufCMessage **) ret);
}

int cli_fetch_inventory(cli_collector *cc, const char *host_id, bool include_removed,
                        Modelprov__V1__InventoryResponse **ret) {
        Modelprov__V1__InventoryRequest req = MODELPROV__V1__INVENTORY_REQUEST__INIT;
        assert(cc && ret);
        if (host_id)
                req.host_id = (char *) host_id;
        req.include_removed = include_removed;
        return cli_collector_call(cc, "/modelprov.v1.Query/Inventory", &req.base,
                                  &modelprov__v1__inventory_response__descriptor, (ProtobufCMessage **) ret);
}

int cli_fetch_history(cli_collector *cc, const char *host_id, const char *path, uint64_t limit,
                      Modelprov__V1__HistoryResponse **ret) {
        Modelprov__V1__HistoryRequest req = MODELPROV__V1__HISTORY_REQUEST__INIT;
        assert(cc && ret);
        if (host_id)
                req.host_id = (char *) host_id;
        if (path)
                req.path = (char *) path;
        req.limit = limit;
        return cli_collector_call(cc, "/modelprov.v1.Query/History", &req.base,
                                  &modelprov__v1__history_response__descriptor, (ProtobufCMessage **) ret);
}

int cli_fetch_model(cli_collector *cc, const uint8_t digest[CLI_DIGEST_BYTES], Modelprov__V1__ModelResponse **ret) {
        Modelprov__V1__ModelRequest req = MODELPROV__V1__MODEL_REQUEST__INIT;
        assert(cc && digest && ret);
        req.model_digest = (ProtobufCBinaryData) { CLI_DIGEST_BYTES, (uint8_t *) digest };
        return cli_collector_call(cc, "/modelprov.v1.Query/Model", &req.base, &modelprov__v1__model_response__descriptor,
                                  (ProtobufCMessage **) ret);
}

int cli_fetch_blast_radius(cli_collector *cc, const Modelprov__V1__BlastRadiusRequest *req,
                           Modelprov__V1__BlastRadiusResponse **ret) {
        assert(cc && req && ret);
        return cli_collector_call(cc, "/modelprov.v1.Query/BlastRadius", &req->base,
                                  &modelprov__v1__blast_radius_response__descriptor, (ProtobufCMessage **) ret);
}

void cli_hosts_freep(Modelprov__V1__HostsResponse **p) {
        if (*p)
                modelprov__v1__hosts_response__free_unpacked(*p, NULL);
}

void cli_inventory_freep(Modelprov__V1__InventoryResponse **p) {
        if (*p)
                modelprov__v1__inventory_response__free_unpacked(*p, NULL);
}

void cli_history_freep(Modelprov__V1__HistoryResponse **p) {
        if (*p)
                modelprov__v1__history_response__free_unpacked(*p, NULL);
}

void cli_model_freep(Modelprov__V1__ModelResponse **p) {
        if (*p)
                modelprov__v1__model_response__free_unpacked(*p, NULL);
}

void cli_blast_radius_freep(Modelprov__V1__BlastRadiusResponse **p) {
        if (*p)
                modelprov__v1__blast_radius_response__free_unpacked(*p, NULL);
}

bool cli_parse_digest(const char *s, uint8_t out[CLI_DIGEST_BYTES]) {
        if (strlen(s) != 2 * CLI_DIGEST_BYTES)
                return false;
        for (size_t i = 0; i < CLI_DIGEST_BYTES; i++) {
                unsigned v;
                if (!strchr("0123456789abcdefABCDEF", s[2 * i]) || !strchr("0123456789abcdefABCDEF", s[2 * i + 1]) ||
                    sscanf(s + 2 * i, "%2x", &v) != 1)
                        return false;
                out[i] = (uint8_t) v;
        }
        return true;
}

int cli_blast_target(const char *x, const cli_model_options *mo, Modelprov__V1__BlastRadiusRequest *req,
                     uint8_t digest[CLI_DIGEST_BYTES], mp_fingerprint **ret_fp) {
        struct stat st;
        assert(x && mo && req && digest && ret_fp);

        if (cli_parse_digest(x, digest)) {
                req->model_digest = (ProtobufCBinaryData) { CLI_DIGEST_BYTES, digest };
                return 0;
        }
        if (stat(x, &st) == 0) {
                int r = cli_load_fingerprint(x, mo, NULL, ret_fp);
                if (r < 0)
                        return r;
                req->fingerprint = *ret_fp;
                return 0;
        }
        if (strchr(x, ':'))
                req->host_path = (char *) x;
        else
                req->catalog_entry = (char *) x;
        return 0;
}

static int item_order(const void *a, const void *b) {
        const Modelprov__V1__InventoryItem *x = *(Modelprov__V1__InventoryItem *const *) a,
                                           *y = *(Modelprov__V1__InventoryItem *const *) b;
        int c = strcmp(x->hostname, y->hostname);
        if (c == 0)
                c = strcmp(x->path, y->path);
        if (c == 0)
                c = (x->first_seen > y->first_seen) - (x->first_seen < y->first_seen);
        return c;
}

void cli_sort_items(Modelprov__V1__InventoryItem **items, size_t n) {
        if (n > 1)
                qsort(items, n, sizeof(*items), item_order);
}
