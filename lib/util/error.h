/* error.h - precise, self-contained error reports for libmodelprov.
 *
 * Every fallible lib function returns 0 (or a count) on success and a
 * negative errno on failure, and, when given a non-NULL mp_error, fills it
 * with the file, the byte offset and a human reason.  The caller prints it
 * with mp_error_format(): "FILE: byte OFFSET: REASON".
 *
 * Conventions for the errno values:
 *   -EBADMSG   malformed content (bad magic, bad JSON, inconsistent offsets)
 *   -E2BIG     a declared size exceeds a limit or the real file size
 *   -EOVERFLOW arithmetic on declared sizes would overflow
 *   -ENOTSUP   well-formed but unsupported (unknown dtype, format version)
 *   -ENOENT, -EIO, -ENOMEM, -EACCES ... as the system reported them
 */
#pragma once

#include <stdint.h>
#include <stddef.h>

#define MP_ERROR_FILE_MAX   1024
#define MP_ERROR_REASON_MAX 512

typedef struct mp_error {
        int code;                          /* negative errno, 0 when unset */
        int64_t offset;                    /* byte offset in file, -1 if none */
        char file[MP_ERROR_FILE_MAX];
        char reason[MP_ERROR_REASON_MAX];
} mp_error;

/* Fills err (if non-NULL) and returns code, which must be negative.
 * file may be NULL; offset < 0 means "no particular offset". */
int mp_error_set(mp_error *err, int code, const char *file, int64_t offset,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Resets err to "no error". */
void mp_error_clear(mp_error *err);

/* Writes "FILE: byte OFFSET: REASON" (parts omitted when unknown) into buf. */
void mp_error_format(const mp_error *err, char *buf, size_t size);
