/* record.h - the fingerprint record: built from an opened model and its
 * pass, serialised as the protobuf message modelprov.v1.Fingerprint
 * (proto/modelprov.proto), read back from disk.
 *
 * Every mp_fingerprint handed out by this API is an unpacked protobuf-c
 * message, so there is one way to free it: mp_fingerprint_free(). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "formats/model.h"
#include "modelprov.pb-c.h"
#include "pass/pass.h"
#include "util/error.h"

typedef Modelprov__V1__Fingerprint mp_fingerprint;

#define MP_FINGERPRINT_RECORD_VERSION 1
/* Refuse to unpack records larger than this (hostile files, bad peers). */
#define MP_FINGERPRINT_MAX_BYTES (64u * 1024 * 1024)

int mp_fingerprint_build(const mp_model *m, const mp_pass_result *res, mp_fingerprint **ret, mp_error *err);
int mp_fingerprint_pack(const mp_fingerprint *fp, uint8_t **ret, size_t *ret_len);
int mp_fingerprint_unpack(const char *label, const uint8_t *buf, size_t len, mp_fingerprint **ret,
                          mp_error *err);
/* The same with protobuf-c allocator alloc (NULL = malloc).  A record
 * unpacked with an allocator other than malloc must not go to
 * mp_fingerprint_free(): its memory goes with the allocator's (e.g. a
 * util/bump.h reset). */
int mp_fingerprint_unpack_with(const char *label, const uint8_t *buf, size_t len, ProtobufCAllocator *alloc,
                               mp_fingerprint **ret, mp_error *err);
void mp_fingerprint_free(mp_fingerprint *fp);
static inline void mp_fingerprint_freep(mp_fingerprint **fp) { mp_fingerprint_free(*fp); }

/* Writes the binary record atomically (temporary file, fsync, rename). */
int mp_fingerprint_write(const mp_fingerprint *fp, const char *path, mp_error *err);
int mp_fingerprint_read(const char *path, mp_fingerprint **ret, mp_error *err);
