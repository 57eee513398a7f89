/* error.c - filling and rendering mp_error records. */
#include "util/error.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int mp_error_set(mp_error *err, int code, const char *file, int64_t offset,
                 const char *fmt, ...) {
        assert(code < 0);
        if (!err)
                return code;

        err->code = code;
        err->offset = offset < 0 ? -1 : offset;
        snprintf(err->file, sizeof(err->file), "%s", file ? file : "");

        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->reason, sizeof(err->reason), fmt, ap);
        va_end(ap);
        return code;
}

void mp_error_clear(mp_error *err) {
        if (!err)
                return;
        memset(err, 0, sizeof(*err));
        err->offset = -1;
}

void mp_error_format(const mp_error *err, char *buf, size_t size) {
        assert(err);
        assert(buf && size > 0);

        const char *reason = err->reason[0] ? err->reason : strerror(err->code < 0 ? -err->code : err->code);
        if (err->file[0] && err->offset >= 0)
                snprintf(buf, size, "%s: byte %" PRId64 ": %s", err->file, err->offset, reason);
        else if (err->file[0])
                snprintf(buf, size, "%s: %s", err->file, reason);
        else
                snprintf(buf, size, "%s", reason);

        /* Names and strings in reasons come from hostile files: a newline or
         * an escape sequence must not forge log lines or drive a terminal. */
        for (char *p = buf; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        *p = '?';
}
