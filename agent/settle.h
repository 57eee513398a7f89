/* settle.h - the settle queue of the watcher (internal to agent/watch.c).
 *
 * A file is handed on only after it was quiet for the settle period.  The
 * period is a constant, so deadlines are ordered by last activity: one FIFO
 * (touch = move to the tail, O(1)) and ONE sd-event timer armed for the
 * head's deadline, disabled while the queue is empty, so an idle watcher
 * has no timer armed.  A per-file timer would cost ~300 bytes and one loop
 * iteration per expiry (measured in the issue-5 spike).
 *
 * Entries are embedded in the caller's records; the queue never allocates
 * or frees them.  The expiry callback gets each due entry after it was taken
 * off the queue; it may touch it (or any other entry) again: an entry touched
 * during a dispatch waits for a later one, so a callback that re-queues
 * cannot keep the dispatch spinning (even with a settle period of 0). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

typedef struct settle_entry {
        struct settle_entry *prev, *next;
        uint64_t deadline;              /* CLOCK_MONOTONIC, µs */
        uint64_t seq;                   /* touch number, bounds one dispatch */
        bool queued;
} settle_entry;

typedef struct settle_queue settle_queue;

typedef void (*settle_expired_t)(settle_entry *e, void *userdata);

/* Creates the queue and its (disabled) timer on e.  -errno. */
int settle_queue_new(sd_event *e, uint64_t settle_usec, settle_expired_t cb, void *userdata,
                     settle_queue **ret);
/* Disables the timer; the entries are the caller's and are left alone. */
void settle_queue_free(settle_queue *q);

/* Activity on e: (re)starts its quiet period (queued at the tail). */
void settle_touch(settle_queue *q, settle_entry *e);
/* Takes e off the queue if it is queued (a writer is active, or the file
 * is gone). */
void settle_remove(settle_queue *q, settle_entry *e);

/* Entries waiting. */
uint64_t settle_pending(const settle_queue *q);
