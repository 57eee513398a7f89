/* convert.h - between the wire messages (modelprov.v1, protobuf-c) and the
 * store's structs.  Requests are checked here only for what the store cannot
 * see (enum ranges, byte lengths); the store checks the rest.  Replies
 * borrow the store's strings: free the protobuf message's arrays, never its
 * strings, and free the store results after packing. */
#pragma once

#include "collector/store.h"
#include "modelprov.pb-c.h"
#include "util/error.h"

/* The events of a report batch as store events.  Fingerprints are packed
 * back into record bytes (the store keeps the packed form).  The events
 * borrow the batch's strings; free them with convert_events_free() before
 * the batch.  -EINVAL with err filled on a malformed event. */
int convert_events(const Modelprov__V1__ReportBatch *batch, mp_store_event **ret, mp_error *err);
void convert_events_free(mp_store_event *events, size_t n);

/* Fills item from l; item borrows l's strings. */
void convert_location(const mp_store_location *l, Modelprov__V1__InventoryItem *item);

/* Fills host from h; host borrows h's strings.  now_ms and stale_after_ms
 * decide the stale flag. */
void convert_host(const mp_store_host *h, int64_t now_ms, int64_t stale_after_ms, Modelprov__V1__Host *host);

/* Fills ev (and its sub-messages, which the caller provides) from a stored
 * history entry; everything is borrowed. */
void convert_history(const mp_store_history_entry *h, Modelprov__V1__HistoryEvent *out, Modelprov__V1__Event *ev,
                     Modelprov__V1__Finding *finding, Modelprov__V1__ScanMatch *match);
