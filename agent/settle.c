/* settle.c - the settle FIFO and its single timer (see settle.h). */
#include "settle.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <time.h>

/* The timer may fire this much late: sd-event's default (accuracy 0) is
 * 250 ms of slack, which would dominate a short settle period. */
#define SETTLE_ACCURACY_USEC 10000

struct settle_queue {
        sd_event_source *timer;
        settle_entry *head, *tail;
        uint64_t settle_usec;
        uint64_t seq;
        uint64_t n;
        settle_expired_t cb;
        void *userdata;
};

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

/* Arms the timer for the head's deadline, or turns it off when empty. */
static void rearm(settle_queue *q) {
        if (!q->head) {
                (void) sd_event_source_set_enabled(q->timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time(q->timer, q->head->deadline);
        (void) sd_event_source_set_enabled(q->timer, SD_EVENT_ONESHOT);
}

static void unlink_entry(settle_queue *q, settle_entry *e) {
        if (e->prev)
                e->prev->next = e->next;
        else
                q->head = e->next;
        if (e->next)
                e->next->prev = e->prev;
        else
                q->tail = e->prev;
        e->prev = e->next = NULL;
        e->queued = false;
        q->n--;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        settle_queue *q = userdata;
        uint64_t now = now_usec(), limit = q->seq;

        /* The head is re-read each round: the callback may touch or remove
         * any entry. */
        while (q->head && q->head->deadline <= now && q->head->seq < limit) {
                settle_entry *e = q->head;
                unlink_entry(q, e);
                q->cb(e, q->userdata);
        }
        rearm(q);
        return 0;
}

int settle_queue_new(sd_event *e, uint64_t settle_usec, settle_expired_t cb, void *userdata,
                     settle_queue **ret) {
        assert(e);
        assert(cb);
        assert(ret);

        settle_queue *q = calloc(1, sizeof *q);
        if (!q)
                return -ENOMEM;
        q->settle_usec = settle_usec;
        q->cb = cb;
        q->userdata = userdata;

        int r = sd_event_add_time(e, &q->timer, CLOCK_MONOTONIC, 0, SETTLE_ACCURACY_USEC, on_timer, q);
        if (r < 0) {
                free(q);
                return r;
        }
        (void) sd_event_source_set_description(q->timer, "agent-settle");
        r = sd_event_source_set_enabled(q->timer, SD_EVENT_OFF);
        if (r < 0) {
                sd_event_source_disable_unref(q->timer);
                free(q);
                return r;
        }
        *ret = q;
        return 0;
}

void settle_queue_free(settle_queue *q) {
        if (!q)
                return;
        /* The entries live in the caller's records: just forget them. */
        for (settle_entry *e = q->head, *next; e; e = next) {
                next = e->next;
                e->prev = e->next = NULL;
                e->queued = false;
        }
        sd_event_source_disable_unref(q->timer);
        free(q);
}

void settle_touch(settle_queue *q, settle_entry *e) {
        assert(q);
        assert(e);

        bool head_changes = !q->head || q->head == e;
        if (e->queued)
                unlink_entry(q, e);

        e->deadline = now_usec() + q->settle_usec;
        e->seq = q->seq++;
        e->prev = q->tail;
        e->next = NULL;
        if (q->tail)
                q->tail->next = e;
        else
                q->head = e;
        q->tail = e;
        e->queued = true;
        q->n++;

        if (head_changes)
                rearm(q);
}

void settle_remove(settle_queue *q, settle_entry *e) {
        assert(q);
        assert(e);

        if (!e->queued)
                return;
        bool was_head = q->head == e;
        unlink_entry(q, e);
        if (was_head)
                rearm(q);
}

uint64_t settle_pending(const settle_queue *q) {
        return q ? q->n : 0;
}
