/* convert.c - wire messages <-> store structs (see convert.h). */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "collector/convert.h"
#include "util/macro.h"

/* "" on the wire means "not given": proto3 strings have no null. */
static const char *optional_string(const char *s) {
        return s && *s ? s : NULL;
}

static int convert_event(const Modelprov__V1__Event *in, size_t index, mp_store_event *out, mp_error *err) {
        if (in->kind <= MODELPROV__V1__EVENT_KIND__EVENT_KIND_UNSPECIFIED ||
            in->kind >= (int) _MP_STORE_EVENT_KIND_MAX)
                return mp_error_set(err, -EINVAL, NULL, -1, "event %zu: unknown event kind %d", index, (int) in->kind);
        if (in->model_digest.len != 0 && in->model_digest.len != MP_STORE_DIGEST_SIZE)
                return mp_error_set(err, -EINVAL, NULL, -1, "event %zu: model digest of %zu bytes (expected %d)", index,
                                    in->model_digest.len, MP_STORE_DIGEST_SIZE);

        *out = (mp_store_event) {
                .sequence = in->sequence,
                .kind = (mp_store_event_kind) in->kind,
                .observed_at = in->observed_at,
                .path = in->path,
        };
        if (in->model_digest.len)
                memcpy(out->model_digest, in->model_digest.data, MP_STORE_DIGEST_SIZE);
        if (in->finding) {
                out->finding_kind = in->finding->kind;
                out->finding_detail = optional_string(in->finding->detail);
                out->finding_file = optional_string(in->finding->file);
        }
        if (in->match) {
                out->match_entry = in->match->catalog_entry;
                out->match_verdict = in->match->verdict;
                out->match_relation = optional_string(in->match->relation);
                out->match_score = in->match->score;
        }
        if (in->fingerprint) {
                size_t n = protobuf_c_message_get_packed_size(&in->fingerprint->base);
                if (n > MP_STORE_MAX_RECORD)
                        return mp_error_set(err, -EINVAL, NULL, -1, "event %zu: fingerprint of %zu bytes exceeds the limit",
                                            index, n);
                uint8_t *rec = malloc(n ? n : 1);
                if (!rec)
                        return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
                protobuf_c_message_pack(&in->fingerprint->base, rec);
                out->record = rec;
                out->record_len = n;
                out->fingerprint = in->fingerprint;    /* spares the store a second unpack */
                if (n == 0) {
                        free(rec);
                        return mp_error_set(err, -EINVAL, NULL, -1, "event %zu: empty fingerprint", index);
                }
        }
        return 0;
}

int convert_events(const Modelprov__V1__ReportBatch *batch, mp_store_event **ret, mp_error *err) {
        assert(batch);
        assert(ret);

        if (batch->n_events == 0)
                return mp_error_set(err, -EINVAL, NULL, -1, "empty report batch");
        if (batch->n_events > MP_STORE_MAX_BATCH)
                return mp_error_set(err, -EINVAL, NULL, -1, "a batch of %zu events exceeds the limit of %u",
                                    batch->n_events, MP_STORE_MAX_BATCH);

        mp_store_event *events = calloc(batch->n_events, sizeof *events);
        if (!events)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
        for (size_t i = 0; i < batch->n_events; i++) {
                int r = convert_event(batch->events[i], i, &events[i], err);
                if (r < 0) {
                        convert_events_free(events, batch->n_events);
                        return r;
                }
        }
        *ret = events;
        return 0;
}

void convert_events_free(mp_store_event *events, size_t n) {
        if (!events)
                return;
        for (size_t i = 0; i < n; i++)
                free((void *) events[i].record);
        free(events);
}

void convert_location(const mp_store_location *l, Modelprov__V1__InventoryItem *item) {
        modelprov__v1__inventory_item__init(item);
        item->host_id = (char *) l->host_id;
        item->hostname = l->hostname;
        item->path = l->path;
        item->model_digest = (ProtobufCBinaryData) {MP_STORE_DIGEST_SIZE, (uint8_t *) l->model_digest};
        item->model_name = l->model_name ? l->model_name : (char *) "";
        item->first_seen = l->first_seen;
        item->last_seen = l->last_seen;
        item->present = l->present;
}

void convert_host(const mp_store_host *h, int64_t now_ms, int64_t stale_after_ms, Modelprov__V1__Host *host) {
        modelprov__v1__host__init(host);
        host->host_id = (char *) h->id;
        host->hostname = h->hostname;
        host->agent_version = h->agent_version;
        host->enrolled_at = h->enrolled_at;
        host->last_seen = h->last_seen;
        host->acked_through = h->last_sequence;
        host->models = h->model_count;
        host->stale = now_ms - h->last_seen > stale_after_ms;
}

void convert_history(const mp_store_history_entry *h, Modelprov__V1__HistoryEvent *out, Modelprov__V1__Event *ev,
                     Modelprov__V1__Finding *finding, Modelprov__V1__ScanMatch *match) {
        modelprov__v1__history_event__init(out);
        modelprov__v1__event__init(ev);
        out->host_id = (char *) h->host_id;
        out->event = ev;
        ev->sequence = h->sequence;
        ev->kind = (Modelprov__V1__EventKind) h->kind;
        ev->observed_at = h->observed_at;
        ev->path = h->path;
        if (h->has_digest)
                ev->model_digest = (ProtobufCBinaryData) {MP_STORE_DIGEST_SIZE, (uint8_t *) h->model_digest};
        if (h->finding_kind) {
                modelprov__v1__finding__init(finding);
                finding->kind = h->finding_kind;
                finding->detail = h->finding_detail ? h->finding_detail : (char *) "";
                finding->file = h->finding_file ? h->finding_file : (char *) "";
                finding->offset = -1;
                ev->finding = finding;
        }
        if (h->match_entry) {
                modelprov__v1__scan_match__init(match);
                match->catalog_entry = h->match_entry;
                match->verdict = h->match_verdict ? h->match_verdict : (char *) "";
                match->relation = h->match_relation ? h->match_relation : (char *) "";
                match->score = h->match_score;
                ev->match = match;
        }
}
