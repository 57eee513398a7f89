/* hit_order.h - the order in which blast radius returns its hits.
 *
 * Exact copies first, then by score (highest first), hostname, host id,
 * path and first_seen: the most certain matches on top, each host's rows
 * together.  A large family has over 150,000 hits, so the sort is built
 * for that: numeric keys (each host ranked once), and parts sorted on
 * several threads, then merged. */
#pragma once

#include <stddef.h>

#include "collector/blast_radius.h"

/* Below this many hits per thread, sorting on another thread costs more
 * than it saves. */
#define MP_HIT_ORDER_PER_THREAD 16384

/* Sorts the n hits of *h into a new array that replaces *h (the old one is
 * freed; the hits' strings move with them).  Uses up to n_threads threads
 * (0 counts as 1), each sorting at least min_per_thread hits (0:
 * MP_HIT_ORDER_PER_THREAD).  The order is total, so the result does not
 * depend on the threads.  Returns 0, or -ENOMEM with *h untouched. */
int mp_blast_hits_sort(mp_blast_hit **h, size_t n, unsigned n_threads, size_t min_per_thread);
