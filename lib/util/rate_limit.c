/* rate_limit.c - the shared read-rate cap (see rate_limit.h). */
#include "util/rate_limit.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#define NSEC_PER_SEC 1000000000ull
/* Longest single sleep, so that a stop request is seen quickly. */
#define MAX_SLEEP_NSEC (100ull * 1000 * 1000)

struct mp_rate_limit {
        pthread_mutex_t lock;   /* guards everything below */
        uint64_t rate;          /* bytes per second, 0 = unlimited */
        uint64_t paid_until;    /* CLOCK_MONOTONIC ns at which all grants are paid for */
};

static uint64_t now_nsec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * NSEC_PER_SEC + (uint64_t) ts.tv_nsec;
}

int mp_rate_limit_new(uint64_t bytes_per_sec, mp_rate_limit **ret) {
        assert(ret);
        mp_rate_limit *rl = calloc(1, sizeof(*rl));
        if (!rl)
                return -ENOMEM;
        int r = pthread_mutex_init(&rl->lock, NULL);
        if (r != 0) {
                free(rl);
                return -r;
        }
        rl->rate = bytes_per_sec;
        *ret = rl;
        return 0;
}

void mp_rate_limit_free(mp_rate_limit *rl) {
        if (!rl)
                return;
        pthread_mutex_destroy(&rl->lock);
        free(rl);
}

void mp_rate_limit_set(mp_rate_limit *rl, uint64_t bytes_per_sec) {
        assert(rl);
        pthread_mutex_lock(&rl->lock);
        rl->rate = bytes_per_sec;
        pthread_mutex_unlock(&rl->lock);
}

uint64_t mp_rate_limit_get(mp_rate_limit *rl) {
        assert(rl);
        pthread_mutex_lock(&rl->lock);
        uint64_t rate = rl->rate;
        pthread_mutex_unlock(&rl->lock);
        return rate;
}

/* Charges n bytes and returns the time at which they are paid for (0 when
 * unlimited). */
static uint64_t charge(mp_rate_limit *rl, uint64_t n) {
        pthread_mutex_lock(&rl->lock);
        uint64_t deadline = 0;
        if (rl->rate > 0) {
                uint64_t now = now_nsec();
                /* No credit for idle time: the clock never lags behind now. */
                if (rl->paid_until < now)
                        rl->paid_until = now;
                unsigned __int128 cost = (unsigned __int128) n * NSEC_PER_SEC / rl->rate;
                rl->paid_until = cost > UINT64_MAX - rl->paid_until ? UINT64_MAX : rl->paid_until + (uint64_t) cost;
                deadline = rl->paid_until;
        }
        pthread_mutex_unlock(&rl->lock);
        return deadline;
}

int mp_rate_limit_take(mp_rate_limit *rl, uint64_t n, const volatile sig_atomic_t *stop) {
        assert(rl);
        uint64_t deadline = charge(rl, n);

        for (;;) {
                if (stop && *stop)
                        return -ECANCELED;
                uint64_t now = now_nsec();
                if (now >= deadline)
                        return 0;
                uint64_t until = deadline - now > MAX_SLEEP_NSEC ? now + MAX_SLEEP_NSEC : deadline;
                struct timespec ts = { .tv_sec = (time_t) (until / NSEC_PER_SEC),
                                       .tv_nsec = (long) (until % NSEC_PER_SEC) };
                /* EINTR: loop, which re-checks the stop flag a signal may have set. */
                (void) clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        }
}
