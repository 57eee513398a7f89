/* reporter.h - the agent's link to the collector, on its own thread.
 *
 * The reporter owns a state DB handle of its own and loops:
 *   1. enrolled?  If meta has no host_id/host_key, Enroll with the enroll
 *      secret (HostInfo: hostname, /etc/machine-id, agent version, OS) and
 *      store host_id and host_key; agent_outbox_sync() with the collector's
 *      acked_through.
 *   2. while the outbox has events: open a Report stream, send batches from
 *      agent_outbox_next_batch(), and for each ReportAck agent_outbox_ack().
 *      Batches are pipelined a few deep; the stream is finished when the
 *      outbox is empty (no idle stream is kept open).
 *   3. idle: wait until agent_reporter_kick() (new outbox rows) or the
 *      heartbeat interval; Heartbeat (models, outbox_pending), sync, and when
 *      the catalog version changed and a catalog path is configured,
 *      FetchCatalog and replace the file atomically (then on_catalog()).
 * Failures (collector down, TLS, UNAVAILABLE) are logged once per change of
 * error, recorded in meta (last_error), and retried with full-jitter
 * exponential backoff (rpc/backoff.h) without losing anything: the outbox
 * rows stay until acked.  UNAUTHENTICATED on Report/Heartbeat (the
 * collector forgot or rotated our key) leads to a re-enroll.
 *
 * A batch the collector refuses (INVALID_ARGUMENT, or over its size limit)
 * is resent one event at a time to find the event it refuses; that event is
 * logged at error level (EVENT_SEQUENCE=, MODEL_PATH=) and, like every
 * event after it (the collector stores in sequence order), stays queued and
 * is retried at the backoff's cap: nothing is dropped, nothing spins.
 *
 * Meta written here: host_id, host_key (never logged), machine_id (only
 * when /etc/machine-id is missing: a random UUID, kept so that re-enrolling
 * keeps the host id), collector (the target), last_contact (unix ms, each
 * answer), last_error (deleted after a pass that delivered everything),
 * catalog_version.
 *
 * No polling: an idle reporter sleeps on a condition variable until the
 * next heartbeat.  agent_reporter_stop() wakes it and interrupts waits for
 * the collector; it returns within about a second. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "rpc/client.h"
#include "util/error.h"

typedef struct agent_reporter agent_reporter;

typedef struct agent_reporter_options {
        const char *state_path;         /* state DB file (the reporter opens its own handle) */
        mp_rpc_options rpc;             /* target, TLS (stop is set by the reporter; a zero
                                         * retry.max_attempts becomes 1: the reporter retries
                                         * with its own backoff and reports each failure) */
        const char *enroll_secret_file; /* read at start and at each re-enroll */
        const char *agent_version;
        unsigned heartbeat_s;           /* 0: 60 */
        unsigned batch_events;          /* events per batch; 0: 256; at most 4096 (the collector's limit) */
        const char *catalog_path;       /* where a fetched catalog goes; NULL: do not fetch */
        /* Called on the reporter thread after a new catalog replaced
         * catalog_path (the agent then reloads it on its loop thread). */
        void (*on_catalog)(void *userdata);
        /* Called on the reporter thread after each change of connection
         * state or of the error text, with a short text ("connected", the
         * error) for STATUS= and the log.  A refused event is reported with
         * connected true: the collector answers. */
        void (*on_state)(void *userdata, bool connected, const char *text);
        void *userdata;
        /* Waits between failed attempts (full jitter); zeroes: 1 s growing to
         * 60 s, reset after a success.  Tests make it short. */
        mp_backoff backoff;
} agent_reporter_options;

/* Opens the state DB, loads the identity, checks the enroll secret file
 * (when not enrolled yet) and the TLS files, and starts the thread.  The
 * options' strings must outlive the reporter.  Fails only for bad options
 * (an unusable state DB or secret file included) or out of memory; an
 * unreachable collector is not an error here.  The thread blocks every
 * signal: they belong to the event loop. */
int agent_reporter_start(const agent_reporter_options *o, agent_reporter **ret, mp_error *err);

/* New rows are in the outbox: send soon.  Thread-safe, cheap. */
void agent_reporter_kick(agent_reporter *r);

/* Stops and joins the thread; frees r. */
void agent_reporter_stop(agent_reporter *r);
