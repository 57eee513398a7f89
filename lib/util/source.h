/* source.h - a bounds-checked byte source: a file or a memory buffer.
 *
 * Format readers never touch a file descriptor directly; they read through
 * mp_source so that (1) every read is checked against the real size before it
 * happens and (2) fuzz targets can feed the same readers from memory. */
#pragma once

#include <stdint.h>
#include <stddef.h>

#include "util/error.h"

typedef struct mp_source {
        const char *label;      /* name used in error messages (not owned) */
        int fd;                 /* -1 for memory sources */
        const uint8_t *mem;     /* NULL for file sources */
        uint64_t size;          /* real size, from fstat or the buffer */
} mp_source;

/* Opens path read-only (O_CLOEXEC|O_NOCTTY), requires a regular file, and
 * records its size.  label must outlive the source. */
int mp_source_open(mp_source *src, const char *path, const char *label, mp_error *err);

/* Wraps a buffer; nothing is copied, mem must outlive the source. */
void mp_source_init_mem(mp_source *src, const char *label, const void *mem, size_t size);

/* Reads exactly len bytes at offset.  Fails with -E2BIG/-EBADMSG naming the
 * offset when [offset, offset+len) is not inside the source ("truncated"). */
int mp_source_pread(const mp_source *src, void *buf, size_t len, uint64_t offset, mp_error *err);

/* Reads [offset, offset+len) into a new NUL-terminated buffer (len+1 bytes).
 * Refuses len > max with -E2BIG. */
int mp_source_read_alloc(const mp_source *src, uint64_t offset, uint64_t len, uint64_t max,
                         char **ret, mp_error *err);

/* Closes the file of a file source; safe to call twice. */
void mp_source_close(mp_source *src);

/* Reads a whole small file (config, tokenizer, manifest) into a
 * NUL-terminated buffer.  Refuses files larger than max. */
int mp_read_file_limited(const char *path, const char *label, uint64_t max, char **ret,
                         size_t *ret_len, mp_error *err);

/* Writes all len bytes to fd, going on after short writes and EINTR;
 * 0 or a negative errno. */
int mp_write_all(int fd, const void *buf, size_t len);
