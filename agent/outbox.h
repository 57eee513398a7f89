/* outbox.h - events waiting for the collector's acknowledgement.
 *
 * The outbox is a table of the state DB (state.h).  Rows are appended by
 * the agent_state_commit_*() calls in the same transaction as the state
 * change they describe, and deleted only when the collector acknowledged
 * them.  Each row holds one packed modelprov.v1.Event (proto/modelprov.proto)
 * without its sequence number, plus its kind, path and priority.
 *
 * Sequence numbers (the collector's idempotence key, contiguous per host
 * from 1) are assigned when a row is first *sent*, not when it is queued:
 * agent_outbox_next_batch() numbers rows sent_through+1, +2, ... and
 * records sent_through in meta, in one transaction, before the caller sends
 * them.  A row once numbered is resent with the same number until acked, so
 * the collector's duplicate check makes redelivery harmless ("none twice"),
 * and compaction can only touch rows that were never numbered: those the
 * collector cannot have seen.
 *
 * Bounded: when the unsent rows exceed the limits (events or bytes),
 * agent_outbox_compact() first drops superseded model events (an older
 * ADDED/CHANGED/REMOVED for a path that has a newer one queued), then the
 * oldest findings and scan matches.  Model events that describe current
 * inventory are never dropped, even if the outbox stays over its limit. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/state.h"
#include "modelprov.pb-c.h"

/* protoc-c names the messages Modelprov__V1__*; these are the names this
 * contract was written with. */
typedef Modelprov__V1__Event ModelprovV1__Event;
typedef Modelprov__V1__ReportBatch ModelprovV1__ReportBatch;

#define AGENT_OUTBOX_MAX_EVENTS_DEFAULT 100000
#define AGENT_OUTBOX_MAX_BYTES_DEFAULT (256ull << 20)

/* Appends one event (kind, path, digest, fingerprint/finding/match as in
 * the proto; ev->sequence is ignored).  Called by state.c inside its
 * transactions; exposed for tests. */
int agent_outbox_append(agent_state *s, const ModelprovV1__Event *ev);

/* Up to max_events rows (and about max_bytes of packed events, at least one
 * row) in queue order, numbered and ready to send: already numbered rows
 * first (a resend after reconnect), then new ones numbered from
 * sent_through + 1.  *ret_batch is a ReportBatch whose events the caller
 * frees with agent_outbox_batch_free(); it has no events when the outbox is
 * empty. */
int agent_outbox_next_batch(agent_state *s, size_t max_events, size_t max_bytes, ModelprovV1__ReportBatch **ret_batch,
                            mp_error *err);
void agent_outbox_batch_free(ModelprovV1__ReportBatch *b);
/* The same, for pipelining: numbered rows up to after_seq are in flight
 * already and left out (0: none, as agent_outbox_next_batch()). */
int agent_outbox_next_batch_after(agent_state *s, uint64_t after_seq, size_t max_events, size_t max_bytes,
                                  ModelprovV1__ReportBatch **ret_batch, mp_error *err);

/* The collector stored everything up to acked_through: delete those rows
 * and record acked_through and last_contact (unix ms) in meta. */
int agent_outbox_ack(agent_state *s, uint64_t acked_through, int64_t now_ms);

/* Where the collector stands after (re)enrolling or a heartbeat.  When it
 * acked beyond what we sent (our state DB is older than the collector's
 * memory of us), numbering continues after its value so new events are not
 * mistaken for duplicates.  When it knows less than we had acked (its store
 * was reset), the unacked rows are numbered again after its value and the
 * current inventory is queued again (MODEL_ADDED for every model, observed
 * at now_ms), in the same transaction; returns 1 then, so the caller can
 * say so and send soon. */
int agent_outbox_sync(agent_state *s, uint64_t collector_acked_through, int64_t now_ms);

/* Queues MODEL_ADDED for every model in the models table. */
int agent_outbox_requeue_inventory(agent_state *s, int64_t now_ms);

/* Enforces the bounds described above; returns the number of rows dropped. */
int agent_outbox_compact(agent_state *s, uint64_t max_events, uint64_t max_bytes);

/* The numbered event seq keeps being refused by the collector
 * (INVALID_ARGUMENT): it is replaced, under the same sequence number, by a
 * FINDING "event-refused" for its path with reason in the detail, so that
 * the events behind it are not blocked for ever and the loss is on record
 * at the collector.  -ENOENT when no row has that number. */
int agent_outbox_replace_refused(agent_state *s, uint64_t seq, const char *reason, mp_error *err);

/* Rows not acknowledged yet, and their packed size. */
int agent_outbox_pending(agent_state *s, uint64_t *ret_events, uint64_t *ret_bytes);
