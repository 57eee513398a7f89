/* outbox.c - events waiting for the collector's acknowledgement (see
 * outbox.h): appending, numbering at first send, acknowledging, syncing
 * with the collector's idea of where we are, and compaction.
 *
 * Invariant the numbering relies on: the numbered rows are always a prefix
 * of the queue in id order.  Rows are numbered lowest id first, new rows
 * get higher ids (AUTOINCREMENT), acks delete numbered rows from the front
 * and compaction deletes only unnumbered ones; so sequence numbers follow
 * queue order and stay contiguous from acked_through + 1. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/outbox.h"
#include "agent/state_internal.h"
#include "util/macro.h"
#include "util/strutil.h"

/* A stored event is one packed Event around at most one fingerprint
 * record: anything larger is damage, not ours. */
#define OUTBOX_EVENT_MAX_BYTES (MP_FINGERPRINT_MAX_BYTES + (1u << 20))
/* The collector's limits (collector/store.h MP_STORE_MAX_*). */
#define OUTBOX_PATH_MAX 4096
#define OUTBOX_DETAIL_MAX 4096
#define OUTBOX_IDENT_MAX 256
#define OUTBOX_RECORD_MAX (16u << 20)

static int priority_of(Modelprov__V1__EventKind kind) {
        switch (kind) {
        case MODELPROV__V1__EVENT_KIND__MODEL_ADDED:
        case MODELPROV__V1__EVENT_KIND__MODEL_CHANGED:
        case MODELPROV__V1__EVENT_KIND__MODEL_REMOVED:
                return AGENT_OUTBOX_PRIORITY_MODEL;
        case MODELPROV__V1__EVENT_KIND__FINDING:
                return AGENT_OUTBOX_PRIORITY_FINDING;
        case MODELPROV__V1__EVENT_KIND__SCAN_MATCH:
                return AGENT_OUTBOX_PRIORITY_MATCH;
        default:
                return -EINVAL;
        }
}

/* ---- append ------------------------------------------------------------- */

static const char SQL_APPEND[] =
        "INSERT INTO outbox (kind, path, priority, queued_at, event) VALUES (?1, ?2, ?3, ?4, ?5)";

/* Points *field at a wire-safe copy of itself (NULL counts as ""), owned by
 * *owned.  False on ENOMEM. */
static bool wire_string(char **field, char **owned, size_t max) {
        *owned = mp_utf8_sanitize(*field ? *field : "", max);
        if (!*owned)
                return false;
        *field = *owned;
        return true;
}

int agent_outbox_append_full(agent_state *s, const Modelprov__V1__Event *ev, mp_error *err) {
        assert(s && ev);
        const char *what = "queueing an event";
        int priority = priority_of(ev->kind);
        if (priority < 0 || !ev->path)
                return mp_error_set(err, -EINVAL, s->path, -1, "%s: event of kind %d without a path", what,
                                    (int) ev->kind);

        /* Stored without its sequence number: that is assigned at the first
         * send (outbox.h).  Strings are made wire-safe here, once: Linux
         * paths and details quoted from hostile files are bytes, the
         * protocol wants UTF-8 within the collector's limits, and an event
         * the collector refuses would block every event behind it. */
        Modelprov__V1__Event copy = *ev;
        Modelprov__V1__Finding finding;
        Modelprov__V1__ScanMatch match;
        copy.sequence = 0;
        _cleanup_(freep) char *path = NULL;
        _cleanup_(freep) char *f_kind = NULL, *f_file = NULL, *f_detail = NULL;
        _cleanup_(freep) char *m_entry = NULL, *m_verdict = NULL, *m_relation = NULL;
        bool ok = wire_string(&copy.path, &path, OUTBOX_PATH_MAX);
        if (ev->finding) {
                finding = *ev->finding;
                ok = ok && wire_string(&finding.kind, &f_kind, OUTBOX_IDENT_MAX) &&
                     wire_string(&finding.file, &f_file, OUTBOX_PATH_MAX) &&
                     wire_string(&finding.detail, &f_detail, OUTBOX_DETAIL_MAX);
                copy.finding = &finding;
        }
        if (ev->match) {
                match = *ev->match;
                ok = ok && wire_string(&match.catalog_entry, &m_entry, OUTBOX_IDENT_MAX) &&
                     wire_string(&match.verdict, &m_verdict, OUTBOX_IDENT_MAX) &&
                     wire_string(&match.relation, &m_relation, OUTBOX_IDENT_MAX);
                copy.match = &match;
        }
        if (!ok)
                return mp_error_set(err, -ENOMEM, s->path, -1, "out of memory");
        /* A record over the collector's limit would be refused for ever;
         * the event goes without it (the record is optional in the
         * protocol: the collector keeps the digest and the path). */
        if (copy.fingerprint && modelprov__v1__fingerprint__get_packed_size(copy.fingerprint) > OUTBOX_RECORD_MAX)
                copy.fingerprint = NULL;
        size_t n = modelprov__v1__event__get_packed_size(&copy);
        if (n > OUTBOX_EVENT_MAX_BYTES)
                return mp_error_set(err, -E2BIG, s->path, -1, "%s: event of %zu bytes is too large", what, n);
        _cleanup_(freep) uint8_t *buf = malloc(n ? n : 1);
        if (!buf)
                return mp_error_set(err, -ENOMEM, s->path, -1, "out of memory");
        modelprov__v1__event__pack(&copy, buf);

        sqlite3_stmt *st;
        int r = agent_state_stmt(s, SQL_APPEND, &st, what, err);
        if (r < 0)
                return r;
        sqlite3_bind_int(st, 1, (int) ev->kind);
        sqlite3_bind_text(st, 2, copy.path, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, priority);
        sqlite3_bind_int64(st, 4, ev->observed_at);
        sqlite3_bind_blob(st, 5, buf, (int) n, SQLITE_STATIC);
        return agent_state_step_done(s, st, what, err);
}

int agent_outbox_append(agent_state *s, const ModelprovV1__Event *ev) {
        return agent_outbox_append_full(s, ev, NULL);
}

/* ---- meta counters ------------------------------------------------------ */

/* acked_through and sent_through, read inside the caller's transaction.
 * sent_through never lags behind a number in the table (a hand-edited or
 * damaged meta row must not make numbers repeat). */
static const char SQL_MAX_SEQ[] = "SELECT coalesce(max(seq), 0) FROM outbox";

static int read_counters(agent_state *s, uint64_t *acked, uint64_t *sent, const char *what, mp_error *err) {
        int r = agent_state_get_meta_u64(s, AGENT_META_ACKED_THROUGH, acked);
        if (r >= 0)
                r = agent_state_get_meta_u64(s, AGENT_META_SENT_THROUGH, sent);
        if (r < 0)
                return mp_error_set(err, r, s->path, -1, "%s: cannot read the sequence numbers in meta", what);

        sqlite3_stmt *st;
        r = agent_state_stmt(s, SQL_MAX_SEQ, &st, what, err);
        if (r < 0)
                return r;
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                int64_t m = sqlite3_column_int64(st, 0);
                if (m > 0 && (uint64_t) m > *sent)
                        *sent = (uint64_t) m;
        } else
                r = agent_state_sql_error(s, rc, what, err);
        sqlite3_reset(st);
        if (*acked > *sent)
                *sent = *acked;
        return r;
}

static int write_counters(agent_state *s, uint64_t acked, uint64_t sent, const char *what, mp_error *err) {
        int r = agent_state_set_meta_u64(s, AGENT_META_ACKED_THROUGH, acked);
        if (r >= 0)
                r = agent_state_set_meta_u64(s, AGENT_META_SENT_THROUGH, sent);
        return r < 0 ? mp_error_set(err, r, s->path, -1, "%s: cannot write the sequence numbers in meta", what) : 0;
}

/* ---- next batch --------------------------------------------------------- */

static const char SQL_BATCH[] =
        "SELECT id, seq, kind, path, event FROM outbox WHERE seq IS NULL OR seq > ?1"
        " ORDER BY seq IS NULL, seq, id LIMIT ?2";
static const char SQL_NUMBER[] = "UPDATE outbox SET seq = ?2 WHERE id = ?1";
static const char SQL_DELETE_ID[] = "DELETE FROM outbox WHERE id = ?1";

/* ---- events the collector refuses ------------------------------------- */

static const char SQL_REPLACE_SEQ[] =
        "UPDATE outbox SET kind = ?2, priority = ?3, event = ?4 WHERE seq = ?1";
static const char SQL_PATH_OF_SEQ[] = "SELECT path FROM outbox WHERE seq = ?1";

int agent_outbox_replace_refused(agent_state *s, uint64_t seq, const char *reason, mp_error *err) {
        assert(s && reason);
        const char *what = "replacing a refused event";

        sqlite3_stmt *st;
        int r = agent_state_stmt(s, SQL_PATH_OF_SEQ, &st, what, err);
        if (r < 0)
                return r;
        sqlite3_bind_int64(st, 1, (int64_t) seq);
        int rc = sqlite3_step(st);
        _cleanup_(freep) char *path = rc == SQLITE_ROW ? strdup((const char *) sqlite3_column_text(st, 0)) : NULL;
        sqlite3_reset(st);
        if (rc != SQLITE_ROW)
                return rc == SQLITE_DONE ? mp_error_set(err, -ENOENT, s->path, -1, "%s: no event %llu", what,
                                                        (unsigned long long) seq)
                                         : agent_state_sql_error(s, rc, what, err);
        if (!path)
                return mp_error_set(err, -ENOMEM, s->path, -1, "out of memory");

        /* The same number goes out, so the collector sees no gap, and what
         * happened is on record at the collector instead of lost. */
        _cleanup_(freep) char *detail = NULL;
        if (asprintf(&detail, "the collector refused this host's event %llu: %s", (unsigned long long) seq,
                     reason) < 0)
                return mp_error_set(err, -ENOMEM, s->path, -1, "out of memory");
        _cleanup_(freep) char *clean_detail = mp_utf8_sanitize(detail, OUTBOX_DETAIL_MAX);
        if (!clean_detail)
                return mp_error_set(err, -ENOMEM, s->path, -1, "out of memory");
        Modelprov__V1__Finding f = MODELPROV__V1__FINDING__INIT;
        f.kind = (char *) "event-refused";
        f.file = path;
        f.offset = -1;
        f.detail = clean_detail;
        Modelprov__V1__Event ev = MODELPROV__V1__EVENT__INIT;
        ev.kind = MODELPROV__V1__EVENT_KIND__FINDING;
        ev.path = path;
        ev.finding = &f;
        size_t n = modelprov__v1__event__get_packed_size(&ev);
        _cleanup_(freep) uint8_t *buf = malloc(n ? n : 1);
        if (!buf)
                return mp_error_set(err, -ENOMEM, s->path, -1, "out of memory");
        modelprov__v1__event__pack(&ev, buf);

        r = agent_state_stmt(s, SQL_REPLACE_SEQ, &st, what, err);
        if (r < 0)
                return r;
        sqlite3_bind_int64(st, 1, (int64_t) seq);
        sqlite3_bind_int(st, 2, (int) ev.kind);
        sqlite3_bind_int(st, 3, priority_of(ev.kind));
        sqlite3_bind_blob(st, 4, buf, (int) n, SQLITE_STATIC);
        return agent_state_step_done(s, st, what, err);
}

/* An Event in the batch for a numbered row whose bytes do not unpack: its
 * number must still go out (the collector stops at a gap), so it goes out
 * as a finding about the damage. */
static Modelprov__V1__Event *damaged_event(const char *path, int64_t id) {
        char detail[96];
        snprintf(detail, sizeof(detail), "outbox row %lld of the agent's state DB does not unpack", (long long) id);
        Modelprov__V1__Finding f = MODELPROV__V1__FINDING__INIT;
        f.kind = (char *) "agent-state-damaged";
        f.file = (char *) path;
        f.offset = -1;
        f.detail = detail;
        Modelprov__V1__Event ev = MODELPROV__V1__EVENT__INIT;
        ev.kind = MODELPROV__V1__EVENT_KIND__FINDING;
        ev.path = (char *) path;
        ev.finding = &f;
        /* Packed and unpacked again, so that every event of a batch is
         * freed the same way. */
        size_t n = modelprov__v1__event__get_packed_size(&ev);
        _cleanup_(freep) uint8_t *buf = malloc(n ? n : 1);
        if (!buf)
                return NULL;
        modelprov__v1__event__pack(&ev, buf);
        return modelprov__v1__event__unpack(NULL, n, buf);
}

void agent_outbox_batch_free(ModelprovV1__ReportBatch *b) {
        if (!b)
                return;
        for (size_t i = 0; i < b->n_events; i++)
                if (b->events[i])
                        modelprov__v1__event__free_unpacked(b->events[i], NULL);
        free(b->events);
        free(b);
}

static void batch_freep(Modelprov__V1__ReportBatch **b) {
        agent_outbox_batch_free(*b);
}

/* One row of the batch while it is collected. */
typedef struct batch_row {
        int64_t id;
        uint64_t seq;           /* 0: not numbered yet */
} batch_row;

/* Reads up to max_events rows (max_bytes, at least one) into b and *rows
 * (grown together); unnumbered rows that do not unpack are deleted on the
 * way. */
static int collect_rows(agent_state *s, uint64_t after_seq, size_t max_events, size_t max_bytes,
                        Modelprov__V1__ReportBatch *b, batch_row **rows, const char *what, mp_error *err) {
        size_t rows_allocated = 0, events_allocated = 0;
        sqlite3_stmt *st;
        int r = agent_state_stmt(s, SQL_BATCH, &st, what, err);
        if (r < 0)
                return r;
        sqlite3_bind_int64(st, 1, after_seq > INT64_MAX ? INT64_MAX : (int64_t) after_seq);
        sqlite3_bind_int64(st, 2, (int64_t) max_events);

        int64_t damaged[64];
        size_t n_damaged = 0, bytes = 0;
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                int64_t id = sqlite3_column_int64(st, 0);
                int64_t seq = sqlite3_column_type(st, 1) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 1);
                const void *data = sqlite3_column_blob(st, 4);
                size_t len = (size_t) sqlite3_column_bytes(st, 4);
                if (b->n_events > 0 && bytes + len > max_bytes)
                        break;

                Modelprov__V1__Event *ev = NULL;
                if (data && len <= OUTBOX_EVENT_MAX_BYTES)
                        ev = modelprov__v1__event__unpack(NULL, len, data);
                if (ev && priority_of(ev->kind) < 0) {
                        modelprov__v1__event__free_unpacked(ev, NULL);
                        ev = NULL;
                }
                if (!ev && seq <= 0) {
                        /* Never sent: dropping it leaves no gap. */
                        if (n_damaged < ELEMENTSOF(damaged))
                                damaged[n_damaged++] = id;
                        continue;
                }
                if (!ev && !(ev = damaged_event((const char *) sqlite3_column_text(st, 3), id))) {
                        r = -ENOMEM;
                        break;
                }
                if (MP_GROW(*rows, rows_allocated, b->n_events + 1) < 0 ||
                    MP_GROW(b->events, events_allocated, b->n_events + 1) < 0) {
                        modelprov__v1__event__free_unpacked(ev, NULL);
                        r = -ENOMEM;
                        break;
                }
                (*rows)[b->n_events] = (batch_row) { .id = id, .seq = seq > 0 ? (uint64_t) seq : 0 };
                b->events[b->n_events++] = ev;
                bytes += len;
        }
        if (r >= 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
                r = agent_state_sql_error(s, rc, what, err);
        sqlite3_reset(st);
        if (r == -ENOMEM)
                return mp_error_set(err, r, s->path, -1, "out of memory");

        for (size_t i = 0; r >= 0 && i < n_damaged; i++) {
                r = agent_state_stmt(s, SQL_DELETE_ID, &st, what, err);
                if (r < 0)
                        break;
                sqlite3_bind_int64(st, 1, damaged[i]);
                r = agent_state_step_done(s, st, what, err);
        }
        return r;
}

/* Numbers the rows of the batch that have no number yet, from
 * sent_through + 1, and sets every event's sequence. */
static int number_rows(agent_state *s, Modelprov__V1__ReportBatch *b, batch_row *rows, const char *what,
                       mp_error *err) {
        uint64_t acked, sent;
        int r = read_counters(s, &acked, &sent, what, err);
        bool numbered = false;
        for (size_t i = 0; r >= 0 && i < b->n_events; i++) {
                if (rows[i].seq == 0) {
                        sqlite3_stmt *st;
                        rows[i].seq = ++sent;
                        numbered = true;
                        r = agent_state_stmt(s, SQL_NUMBER, &st, what, err);
                        if (r < 0)
                                break;
                        sqlite3_bind_int64(st, 1, rows[i].id);
                        sqlite3_bind_int64(st, 2, (int64_t) rows[i].seq);
                        r = agent_state_step_done(s, st, what, err);
                }
                b->events[i]->sequence = rows[i].seq;
        }
        if (r >= 0 && numbered)
                r = write_counters(s, acked, sent, what, err);
        return r;
}

int agent_outbox_next_batch_after(agent_state *s, uint64_t after_seq, size_t max_events, size_t max_bytes,
                                  ModelprovV1__ReportBatch **ret_batch, mp_error *err) {
        assert(s && ret_batch);
        const char *what = "taking events from the outbox";
        if (max_events == 0)
                max_events = 1;
        if (max_events > INT64_MAX)
                max_events = INT64_MAX;

        _cleanup_(batch_freep) Modelprov__V1__ReportBatch *b = calloc(1, sizeof(*b));
        if (!b)
                return mp_error_set(err, -ENOMEM, s->path, -1, "out of memory");
        modelprov__v1__report_batch__init(b);
        _cleanup_(freep) batch_row *rows = NULL;

        int r = agent_state_begin(s, what, err);
        if (r < 0)
                return r;
        r = collect_rows(s, after_seq, max_events, max_bytes, b, &rows, what, err);
        if (r >= 0)
                r = number_rows(s, b, rows, what, err);
        r = agent_state_end(s, r, what, err);
        if (r < 0)
                return r;
        *ret_batch = TAKE_PTR(b);
        return 0;
}

int agent_outbox_next_batch(agent_state *s, size_t max_events, size_t max_bytes, ModelprovV1__ReportBatch **ret_batch,
                            mp_error *err) {
        return agent_outbox_next_batch_after(s, 0, max_events, max_bytes, ret_batch, err);
}

/* ---- ack and sync ------------------------------------------------------- */

static const char SQL_DELETE_ACKED[] = "DELETE FROM outbox WHERE seq IS NOT NULL AND seq <= ?1";
static const char SQL_UNNUMBER[] = "UPDATE outbox SET seq = NULL WHERE seq IS NOT NULL";

static int delete_acked(agent_state *s, uint64_t through, const char *what) {
        sqlite3_stmt *st;
        int r = agent_state_stmt(s, SQL_DELETE_ACKED, &st, what, NULL);
        if (r < 0)
                return r;
        sqlite3_bind_int64(st, 1, through > INT64_MAX ? INT64_MAX : (int64_t) through);
        return agent_state_step_done(s, st, what, NULL);
}

int agent_outbox_ack(agent_state *s, uint64_t acked_through, int64_t now_ms) {
        assert(s);
        const char *what = "acknowledging events";
        if (acked_through > INT64_MAX)
                return -ERANGE;
        uint64_t acked, sent;
        int r = agent_state_begin(s, what, NULL);
        if (r < 0)
                return r;
        r = read_counters(s, &acked, &sent, what, NULL);
        if (r >= 0)
                r = delete_acked(s, acked_through, what);
        /* Acks only move forward (a late ack of an earlier batch arrives
         * after a later one); one beyond what we sent means the collector
         * knows numbers we have not used, which must not be reused. */
        if (r >= 0 && acked_through > acked)
                r = write_counters(s, acked_through, acked_through > sent ? acked_through : sent, what, NULL);
        if (r >= 0)
                r = agent_state_set_meta_u64(s, AGENT_META_LAST_CONTACT, now_ms > 0 ? (uint64_t) now_ms : 0);
        return agent_state_end(s, r, what, NULL);
}

/* ---- inventory ---------------------------------------------------------- */

static const char SQL_MODELS_RECORDS[] = "SELECT root, digest, record FROM models ORDER BY root";

static int requeue_one(agent_state *s, sqlite3_stmt *st, int64_t now_ms) {
        const char *root = (const char *) sqlite3_column_text(st, 0);
        const void *digest = sqlite3_column_blob(st, 1);
        const void *record = sqlite3_column_blob(st, 2);
        if (!root || !digest || sqlite3_column_bytes(st, 1) != 32 || !record)
                return 0;       /* a damaged row: skipped, the next check rewrites it */

        _cleanup_(mp_fingerprint_freep) mp_fingerprint *fp = NULL;
        if (mp_fingerprint_unpack(s->path, record, (size_t) sqlite3_column_bytes(st, 2), &fp, NULL) < 0)
                return 0;
        Modelprov__V1__Event ev = MODELPROV__V1__EVENT__INIT;
        ev.kind = MODELPROV__V1__EVENT_KIND__MODEL_ADDED;
        ev.observed_at = now_ms;
        ev.path = (char *) root;
        ev.model_digest = (ProtobufCBinaryData) { .len = 32, .data = (uint8_t *) digest };
        ev.fingerprint = fp;
        int r = agent_outbox_append_full(s, &ev, NULL);
        return r < 0 ? r : 1;
}

/* Queues MODEL_ADDED for every model, inside the caller's transaction.
 * Returns the number queued. */
static int requeue_models(agent_state *s, int64_t now_ms, const char *what) {
        sqlite3_stmt *st = NULL;
        int n = 0, rc = SQLITE_DONE;
        int r = agent_state_stmt(s, SQL_MODELS_RECORDS, &st, what, NULL);
        while (r >= 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                r = requeue_one(s, st, now_ms);
                n += r > 0;
        }
        if (r >= 0 && rc != SQLITE_DONE)
                r = agent_state_sql_error(s, rc, what, NULL);
        if (st)
                sqlite3_reset(st);
        return r < 0 ? r : n;
}

int agent_outbox_requeue_inventory(agent_state *s, int64_t now_ms) {
        assert(s);
        const char *what = "queueing the inventory again";
        int r = agent_state_begin(s, what, NULL);
        if (r < 0)
                return r;
        int n = requeue_models(s, now_ms, what);
        r = agent_state_end(s, n < 0 ? n : 0, what, NULL);
        return r < 0 ? r : n;
}

int agent_outbox_sync(agent_state *s, uint64_t collector_acked_through, int64_t now_ms) {
        assert(s);
        const char *what = "syncing the outbox with the collector";
        uint64_t c = collector_acked_through;
        if (c > INT64_MAX)
                return -ERANGE;
        uint64_t acked, sent;
        int r = agent_state_begin(s, what, NULL);
        if (r < 0)
                return r;
        r = read_counters(s, &acked, &sent, what, NULL);
        if (r >= 0 && c < acked) {
                /* The collector forgot events it had acknowledged (its
                 * store was reset).  It expects c + 1 next: the numbered
                 * rows (all > acked) would leave a gap, so they are
                 * numbered again at their next send, and the inventory is
                 * queued again. */
                r = agent_state_run(s, SQL_UNNUMBER, what, NULL);
                if (r >= 0)
                        r = write_counters(s, c, c, what, NULL);
                /* In the same transaction: a crash or a busy DB between the
                 * two would leave the collector without our inventory for
                 * good (the next sync sees nothing to do). */
                if (r >= 0)
                        r = requeue_models(s, now_ms, what);
                if (r >= 0)
                        r = 1;
        } else if (r >= 0) {
                /* It stored up to c: a lost ack, or (c > sent) our state is
                 * older than its memory of us.  Rows numbered up to c were
                 * numbered for the send it stored (numbers are persisted
                 * before sending), so they are done; numbering continues
                 * after c. */
                r = delete_acked(s, c, what);
                if (r >= 0)
                        r = write_counters(s, c, c > sent ? c : sent, what, NULL);
        }
        return agent_state_end(s, r, what, NULL);
}

/* ---- compaction --------------------------------------------------------- */

static const char SQL_UNSENT[] = "SELECT count(*), coalesce(sum(length(event)), 0) FROM outbox WHERE seq IS NULL";
/* An unsent model event with a newer model event for its path. */
static const char SQL_DROP_SUPERSEDED[] =
        "DELETE FROM outbox WHERE seq IS NULL AND priority = ?1 AND EXISTS"
        " (SELECT 1 FROM outbox o WHERE o.path = outbox.path AND o.priority = ?1 AND o.id > outbox.id)";
static const char SQL_LOW_PRIORITY[] =
        "SELECT id, length(event) FROM outbox WHERE seq IS NULL AND priority < ?1 ORDER BY priority, id";

static int unsent(agent_state *s, uint64_t *events, uint64_t *bytes, const char *what) {
        sqlite3_stmt *st;
        int r = agent_state_stmt(s, SQL_UNSENT, &st, what, NULL);
        if (r < 0)
                return r;
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                *events = (uint64_t) sqlite3_column_int64(st, 0);
                *bytes = (uint64_t) sqlite3_column_int64(st, 1);
        } else
                r = agent_state_sql_error(s, rc, what, NULL);
        sqlite3_reset(st);
        return r;
}

/* Drops the oldest findings and scan matches (matches first) until the
 * unsent rows fit; returns how many. */
static int drop_low_priority(agent_state *s, uint64_t events, uint64_t bytes, uint64_t max_events,
                             uint64_t max_bytes, const char *what) {
        _cleanup_(freep) int64_t *ids = NULL;
        size_t n = 0, allocated = 0;
        sqlite3_stmt *st;
        int r = agent_state_stmt(s, SQL_LOW_PRIORITY, &st, what, NULL);
        if (r < 0)
                return r;
        sqlite3_bind_int(st, 1, AGENT_OUTBOX_PRIORITY_MODEL);
        int rc = SQLITE_DONE;
        while ((events > max_events || bytes > max_bytes) && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                r = MP_GROW(ids, allocated, n + 1);
                if (r < 0)
                        break;
                ids[n++] = sqlite3_column_int64(st, 0);
                events--;
                bytes -= (uint64_t) sqlite3_column_int64(st, 1);
        }
        if (r >= 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
                r = agent_state_sql_error(s, rc, what, NULL);
        sqlite3_reset(st);

        for (size_t i = 0; r >= 0 && i < n; i++) {
                r = agent_state_stmt(s, SQL_DELETE_ID, &st, what, NULL);
                if (r < 0)
                        break;
                sqlite3_bind_int64(st, 1, ids[i]);
                r = agent_state_step_done(s, st, what, NULL);
        }
        return r < 0 ? r : (int) n;
}

int agent_outbox_compact(agent_state *s, uint64_t max_events, uint64_t max_bytes) {
        assert(s);
        const char *what = "compacting the outbox";
        uint64_t events = 0, bytes = 0;
        int dropped = 0;
        int r = agent_state_begin(s, what, NULL);
        if (r < 0)
                return r;
        r = unsent(s, &events, &bytes, what);
        if (r >= 0 && (events > max_events || bytes > max_bytes)) {
                sqlite3_stmt *st;
                r = agent_state_stmt(s, SQL_DROP_SUPERSEDED, &st, what, NULL);
                if (r >= 0) {
                        sqlite3_bind_int(st, 1, AGENT_OUTBOX_PRIORITY_MODEL);
                        r = agent_state_step_done(s, st, what, NULL);
                }
                if (r >= 0) {
                        dropped = sqlite3_changes(s->db);
                        r = unsent(s, &events, &bytes, what);
                }
                if (r >= 0 && (events > max_events || bytes > max_bytes)) {
                        r = drop_low_priority(s, events, bytes, max_events, max_bytes, what);
                        if (r >= 0)
                                dropped += r;
                }
        }
        r = agent_state_end(s, r, what, NULL);
        return r < 0 ? r : dropped;
}

/* ---- counts ------------------------------------------------------------- */

static const char SQL_PENDING[] = "SELECT count(*), coalesce(sum(length(event)), 0) FROM outbox";

int agent_outbox_pending(agent_state *s, uint64_t *ret_events, uint64_t *ret_bytes) {
        assert(s && ret_events && ret_bytes);
        sqlite3_stmt *st;
        int r = agent_state_stmt(s, SQL_PENDING, &st, "counting the outbox", NULL);
        if (r < 0)
                return r;
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
                *ret_events = (uint64_t) sqlite3_column_int64(st, 0);
                *ret_bytes = (uint64_t) sqlite3_column_int64(st, 1);
        } else
                r = agent_state_sql_error(s, rc, "counting the outbox", NULL);
        sqlite3_reset(st);
        return r;
}
