/* service_blast.c - Query/BlastRadius: the incident question.  Resolves the
 * request's one target (digest, fingerprint, catalog entry or host:path)
 * and answers with the blast-radius engine's hits (blast_radius.h). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "collector/blast_radius.h"
#include "collector/convert.h"
#include "daemon/log.h"
#include "collector/service.h"
#include "util/macro.h"

static int resolve_target(service_ctx *ctx, const Modelprov__V1__BlastRadiusRequest *in, mp_blast_target **ret,
                          mp_error *err) {
        unsigned given = (in->model_digest.len > 0) + (in->fingerprint != NULL) +
                         (in->catalog_entry && *in->catalog_entry) + (in->host_path && *in->host_path);
        if (given != 1)
                return mp_error_set(err, -EINVAL, NULL, -1,
                                    "give exactly one target: model_digest, fingerprint, catalog_entry or host_path "
                                    "(got %u)", given);

        if (in->model_digest.len > 0) {
                if (in->model_digest.len != MP_STORE_DIGEST_SIZE)
                        return mp_error_set(err, -EINVAL, NULL, -1, "model digest must be %d bytes, got %zu",
                                            MP_STORE_DIGEST_SIZE, in->model_digest.len);
                return mp_blast_target_from_digest(ctx->store, in->model_digest.data, ret, err);
        }
        if (in->fingerprint)
                return mp_blast_target_from_fingerprint(in->fingerprint, ret, err);
        if (in->catalog_entry && *in->catalog_entry)
                return mp_blast_target_from_catalog_entry(ctx->store, in->catalog_entry, ret, err);
        return mp_blast_target_from_host_path(ctx->store, in->host_path, ret, err);
}

static void reply_hits(rpc_reply *reply, const mp_blast_hit *hits, size_t n, const mp_blast_stats *stats) {
        Modelprov__V1__BlastRadiusHit *out = calloc(n ? n : 1, sizeof *out);
        Modelprov__V1__BlastRadiusHit **ptrs = calloc(n ? n : 1, sizeof *ptrs);
        Modelprov__V1__InventoryItem *items = calloc(n ? n : 1, sizeof *items);
        if (!out || !ptrs || !items)
                rpc_reply_error(reply, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        else {
                for (size_t i = 0; i < n; i++) {
                        modelprov__v1__blast_radius_hit__init(&out[i]);
                        convert_location(&hits[i].loc, &items[i]);
                        out[i].item = &items[i];
                        out[i].relation = (char *) hits[i].relation;
                        out[i].verdict = (char *) mp_verdict_name(hits[i].verdict);
                        out[i].score = hits[i].score;
                        ptrs[i] = &out[i];
                }
                Modelprov__V1__BlastRadiusResponse resp = MODELPROV__V1__BLAST_RADIUS_RESPONSE__INIT;
                resp.n_hits = n;
                resp.hits = ptrs;
                resp.fingerprints_considered = stats->considered;
                resp.fingerprints_scored = stats->scored;
                service_reply_message(reply, &resp.base);
        }
        free(out);
        free(ptrs);
        free(items);
}

void service_blast_radius(service_ctx *ctx, const Modelprov__V1__BlastRadiusRequest *in, rpc_reply *reply) {
        if (!isfinite(in->threshold) || in->threshold < 0 || in->threshold > 1) {
                rpc_reply_error(reply, GRPC_STATUS_INVALID_ARGUMENT, "threshold must be between 0 and 1");
                return;
        }

        _cleanup_(mp_blast_target_freep) mp_blast_target *target = NULL;
        mp_error e = {0};
        int r = resolve_target(ctx, in, &target, &e);
        if (r < 0) {
                service_store_error(reply, r, &e);
                return;
        }

        mp_blast_options o = {.threshold = in->threshold, .include_removed = in->include_removed};
        mp_blast_hit *hits = NULL;
        size_t n = 0;
        mp_blast_stats stats = {};
        r = mp_blast_radius(ctx->store, target, &o, &hits, &n, &stats, &e);
        if (r < 0) {
                service_store_error(reply, r, &e);
                return;
        }
        log_info("blast radius of %s: %zu locations of %" PRIu64 " models (%" PRIu64 " fingerprints considered, %" PRIu64
                 " scored)",
                 target->label, n, stats.models, stats.considered, stats.scored);
        reply_hits(reply, hits, n, &stats);
        mp_blast_hits_free(hits, n);
}
