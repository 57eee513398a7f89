/* backoff.c - exponential backoff with full jitter and the retry decision
 * (backoff.h).  Pure except for mp_backoff_random(). */
#include "rpc/backoff.h"

#include <assert.h>
#include <stddef.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "rpc/status.h"

static mp_backoff backoff_effective(const mp_backoff *b) {
        mp_backoff e = b ? *b : (mp_backoff) {0};
        if (e.initial_ms <= 0)
                e.initial_ms = MP_BACKOFF_DEFAULT_INITIAL_MS;
        /* NaN fails every comparison, so test for the good range. */
        if (!(e.factor >= 1.0 && e.factor <= 1e6))
                e.factor = MP_BACKOFF_DEFAULT_FACTOR;
        if (e.max_ms <= 0)
                e.max_ms = MP_BACKOFF_DEFAULT_MAX_MS;
        if (e.initial_ms > e.max_ms)
                e.initial_ms = e.max_ms;
        return e;
}

int64_t mp_backoff_ceiling_ms(const mp_backoff *b, unsigned retry) {
        mp_backoff e = backoff_effective(b);

        /* Multiply step by step and stop at the cap: pow() of a large retry
         * count would leave the range of int64_t long before the loop ends. */
        double ceiling = (double) e.initial_ms;
        for (unsigned i = 0; i < retry && ceiling < (double) e.max_ms; i++)
                ceiling *= e.factor;
        return ceiling >= (double) e.max_ms ? e.max_ms : (int64_t) ceiling;
}

int64_t mp_backoff_delay_ms(const mp_backoff *b, unsigned retry, uint64_t random) {
        uint64_t span = (uint64_t) mp_backoff_ceiling_ms(b, retry) + 1;
        /* random * span / 2^64: uniform over [0, span) up to a bias of
         * span / 2^64, and monotone in random (modulo would be neither). */
        return (int64_t) (((unsigned __int128) random * span) >> 64);
}

uint64_t mp_backoff_random(void) {
        uint64_t v;
        if (getrandom(&v, sizeof(v), GRND_NONBLOCK) == (ssize_t) sizeof(v))
                return v;

        /* No entropy yet (early boot): jitter only has to differ between
         * hosts and processes, not be unpredictable. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = (uint64_t) ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t) ts.tv_sec ^ ((uint64_t) getpid() << 32);
        v ^= v >> 31;
        v *= 0xbf58476d1ce4e5b9ull;
        return v ^ (v >> 29);
}

mp_retry_verdict mp_retry_decide(const mp_retry_policy *p, unsigned attempts, int code, unsigned tls_failures,
                                 int64_t elapsed_ms, uint64_t random, int64_t *ret_delay_ms) {
        assert(attempts >= 1);
        assert(ret_delay_ms);

        mp_retry_policy e = p ? *p : (mp_retry_policy) {0};
        unsigned max_attempts = e.max_attempts ? e.max_attempts : MP_RETRY_DEFAULT_ATTEMPTS;
        unsigned max_tls = e.max_tls_attempts ? e.max_tls_attempts : MP_RETRY_DEFAULT_TLS_ATTEMPTS;
        int64_t max_total = e.max_total_ms ? e.max_total_ms : MP_RETRY_DEFAULT_TOTAL_MS;

        *ret_delay_ms = 0;
        if (!mp_rpc_code_retryable(code))
                return MP_RETRY_PERMANENT;
        if (tls_failures >= max_tls)
                return MP_RETRY_TLS;
        if (attempts >= max_attempts)
                return MP_RETRY_EXHAUSTED;

        int64_t delay = mp_backoff_delay_ms(&e.backoff, attempts - 1, random);
        if (max_total > 0 && (elapsed_ms >= max_total || delay > max_total - elapsed_ms))
                return MP_RETRY_EXHAUSTED;
        *ret_delay_ms = delay;
        return MP_RETRY_AGAIN;
}

const char *mp_retry_verdict_name(mp_retry_verdict v) {
        switch (v) {
        case MP_RETRY_AGAIN: return "retrying";
        case MP_RETRY_PERMANENT: return "not retryable";
        case MP_RETRY_TLS: return "TLS handshake failed";
        case MP_RETRY_EXHAUSTED: return "retries exhausted";
        }
        return "?";
}
