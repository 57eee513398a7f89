/* bump.h - a bump allocator for short-lived trees of small allocations.
 *
 * Unpacking a fingerprint record makes a thousand small allocations; a scan
 * unpacks one record per catalog entry and drops it right after comparing.
 * Taking them from a reused block and dropping them all with one reset
 * removes most of a scan's malloc/free work.  Also usable as protobuf-c's
 * allocator (mp_bump_protobuf_allocator). */
#pragma once

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

typedef struct mp_bump_chunk mp_bump_chunk;

typedef struct mp_bump {
        mp_bump_chunk *chunks;  /* newest first */
        size_t used_total;      /* bytes handed out since the last reset */
} mp_bump;

/* 16-byte aligned memory, valid until the next reset; NULL on ENOMEM. */
void *mp_bump_alloc(mp_bump *b, size_t size);
/* Forgets every allocation; keeps one block big enough for what the last
 * round used, so a steady workload stops calling malloc. */
void mp_bump_reset(mp_bump *b);
void mp_bump_free(mp_bump *b);

/* A protobuf-c allocator drawing from b (its free is a no-op). */
ProtobufCAllocator mp_bump_protobuf_allocator(mp_bump *b);
