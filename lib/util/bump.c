/* bump.c - bump allocator (see bump.h). */
#include "util/bump.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>

#define BUMP_ALIGN 16
#define BUMP_MIN_CHUNK (64u * 1024)

struct mp_bump_chunk {
        mp_bump_chunk *next;
        size_t size, used;
        _Alignas(BUMP_ALIGN) unsigned char data[];
};

static mp_bump_chunk *chunk_new(size_t size) {
        mp_bump_chunk *c = malloc(sizeof(*c) + size);
        if (c)
                *c = (mp_bump_chunk) { .size = size };
        return c;
}

void *mp_bump_alloc(mp_bump *b, size_t size) {
        assert(b);
        if (size > SIZE_MAX / 2)
                return NULL;
        size = (size + BUMP_ALIGN - 1) & ~(size_t) (BUMP_ALIGN - 1);
        mp_bump_chunk *c = b->chunks;
        if (!c || c->size - c->used < size) {
                size_t want = size > BUMP_MIN_CHUNK ? size : BUMP_MIN_CHUNK;
                if (c && want < 2 * c->size)
                        want = 2 * c->size;
                mp_bump_chunk *n = chunk_new(want);
                if (!n)
                        return NULL;
                n->next = c;
                b->chunks = c = n;
        }
        void *p = c->data + c->used;
        c->used += size;
        b->used_total += size;
        return p;
}

void mp_bump_reset(mp_bump *b) {
        assert(b);
        mp_bump_chunk *keep = b->chunks;
        if (keep && keep->next) {
                /* several blocks were needed: replace them by one that fits */
                size_t want = b->used_total;
                mp_bump_free(b);
                keep = chunk_new(want);
                b->chunks = keep;
        }
        if (keep)
                keep->used = 0;
        b->used_total = 0;
}

void mp_bump_free(mp_bump *b) {
        while (b->chunks) {
                mp_bump_chunk *n = b->chunks->next;
                free(b->chunks);
                b->chunks = n;
        }
        b->used_total = 0;
}

static void *pb_alloc(void *data, size_t size) {
        return mp_bump_alloc(data, size);
}

static void pb_free(void *data, void *p) {
        (void) data;
        (void) p;
}

ProtobufCAllocator mp_bump_protobuf_allocator(mp_bump *b) {
        return (ProtobufCAllocator) { .alloc = pb_alloc, .free = pb_free, .allocator_data = b };
}
