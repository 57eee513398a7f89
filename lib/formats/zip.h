/* zip.h - a minimal, hostile-input-safe zip directory reader.
 *
 * Only what PyTorch checkpoints need: the end of central directory record
 * (and its zip64 variant), the central directory, and for each entry the
 * absolute offset of its data (after the local header), so stored entries can
 * be streamed in place.  No decompression. */
#pragma once

#include <stdint.h>
#include <stddef.h>

#include "util/source.h"

#define MP_ZIP_MAX_ENTRIES (1u << 20)

typedef struct mp_zip_entry {
        char *name;
        uint16_t method;        /* 0 = stored, 8 = deflate, ... */
        uint64_t data_offset;   /* absolute, validated inside the file */
        uint64_t comp_size;
        uint64_t size;
        uint32_t crc32;
} mp_zip_entry;

typedef struct mp_zip {
        mp_zip_entry *entries;
        size_t n_entries;
} mp_zip;

int mp_zip_open(const mp_source *src, mp_zip *ret, mp_error *err);
void mp_zip_free(mp_zip *z);
/* Finds an entry by exact name; NULL if absent. */
const mp_zip_entry *mp_zip_find(const mp_zip *z, const char *name);
