/* rate_limit.h - a read-rate cap shared by threads.
 *
 * One limiter may serve all threads of a pass and several passes at once
 * (the agent's worker pool shares one, so its read-rate cap holds for the
 * whole host agent).  A reader asks for n bytes *before* reading them and
 * sleeps until the budget allows it.
 *
 * The limiter keeps a virtual clock: the time at which everything granted so
 * far is paid for at the configured rate.  Taking n bytes moves it on by
 * n / rate and the caller sleeps until it.  An idle limiter gives no credit
 * (no burst), so any run of reads through it takes at least bytes / rate
 * seconds: gentle on the host, and a lower bound callers may rely on.
 *
 * Thread-safe; the rate may be changed while readers use it (config
 * reload).  Sleeps poll the stop flag at least every 100 ms. */
#pragma once

#include <signal.h>
#include <stdint.h>

typedef struct mp_rate_limit mp_rate_limit;

/* bytes_per_sec 0 = unlimited (take() returns at once). */
int mp_rate_limit_new(uint64_t bytes_per_sec, mp_rate_limit **ret);
void mp_rate_limit_free(mp_rate_limit *rl);
static inline void mp_rate_limit_freep(mp_rate_limit **rl) { mp_rate_limit_free(*rl); }

/* Changes the rate for requests from now on (0 = unlimited). */
void mp_rate_limit_set(mp_rate_limit *rl, uint64_t bytes_per_sec);
uint64_t mp_rate_limit_get(mp_rate_limit *rl);

/* Waits until n more bytes may be read.  Returns 0, or -ECANCELED as soon
 * as *stop (may be NULL) is non-zero; the bytes then stay charged. */
int mp_rate_limit_take(mp_rate_limit *rl, uint64_t n, const volatile sig_atomic_t *stop);
