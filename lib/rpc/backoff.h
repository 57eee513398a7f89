/* backoff.h - when a failed collector call is tried again, and after how
 * long: exponential backoff with "full jitter" (each wait uniform between 0
 * and an exponentially growing ceiling, so that a fleet of agents cut off by
 * one collector restart does not reconnect in lockstep).
 *
 * Everything here is a pure function of its arguments: no clock, no random
 * source of its own (the caller passes a random 64-bit value), so the policy
 * is tested exactly.  The client (client.h) feeds it the clock and
 * mp_backoff_random(). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#define MP_BACKOFF_DEFAULT_INITIAL_MS 200
#define MP_BACKOFF_DEFAULT_FACTOR 2.0
#define MP_BACKOFF_DEFAULT_MAX_MS 30000

#define MP_RETRY_DEFAULT_ATTEMPTS 5
#define MP_RETRY_DEFAULT_TOTAL_MS 60000
/* Attempts that end in what looks like a TLS handshake failure before the
 * call is given up as a TLS or client-certificate problem (status.h
 * mp_rpc_text_is_tls_failure()).  More than one: a collector restarting
 * mid-handshake looks the same once. */
#define MP_RETRY_DEFAULT_TLS_ATTEMPTS 2

/* Fields <= 0 take the defaults above. */
typedef struct mp_backoff {
        int64_t initial_ms;     /* ceiling of the first wait */
        double factor;          /* growth of the ceiling per retry (>= 1) */
        int64_t max_ms;         /* the ceiling never exceeds this */
} mp_backoff;

typedef struct mp_retry_policy {
        mp_backoff backoff;
        unsigned max_attempts;          /* 0: default; 1: never retry */
        int64_t max_total_ms;           /* time from the first attempt after which no retry starts;
                                         * 0: default; < 0: no limit */
        unsigned max_tls_attempts;      /* 0: default */
} mp_retry_policy;

/* The ceiling of the wait before retry number `retry` (0 = the first retry):
 * min(max_ms, initial_ms * factor^retry), never negative, no overflow. */
int64_t mp_backoff_ceiling_ms(const mp_backoff *b, unsigned retry);

/* The wait before retry number `retry`: uniform over [0, ceiling] as
 * random runs over all 64-bit values; the same random gives the same wait,
 * and a larger random never a shorter one. */
int64_t mp_backoff_delay_ms(const mp_backoff *b, unsigned retry, uint64_t random);

/* A random value for mp_backoff_delay_ms() from the kernel's generator (a
 * clock-and-pid mix if that fails).  Not pure, obviously. */
uint64_t mp_backoff_random(void);

typedef enum mp_retry_verdict {
        MP_RETRY_AGAIN,         /* wait *ret_delay_ms, then try again */
        MP_RETRY_PERMANENT,     /* the code is not retryable (or OK): stop */
        MP_RETRY_TLS,           /* repeated TLS handshake failures: stop, it is configuration */
        MP_RETRY_EXHAUSTED,     /* attempts or time used up: stop */
} mp_retry_verdict;

/* After `attempts` attempts (>= 1), the last ending with code, of which
 * `tls_failures` looked like TLS handshake failures, elapsed_ms after the
 * first began: retry or stop?  A retry whose wait would end past
 * max_total_ms is not started.  p may be NULL (all defaults). */
mp_retry_verdict mp_retry_decide(const mp_retry_policy *p, unsigned attempts, int code, unsigned tls_failures,
                                 int64_t elapsed_ms, uint64_t random, int64_t *ret_delay_ms);

/* What each verdict means, for error messages ("gave up after 5 attempts"). */
const char *mp_retry_verdict_name(mp_retry_verdict v);
