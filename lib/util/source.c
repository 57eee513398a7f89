/* source.c - bounds-checked reads from files and memory buffers. */
#include "util/source.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/macro.h"

int mp_source_open(mp_source *src, const char *path, const char *label, mp_error *err) {
        assert(src);
        assert(path);

        *src = (mp_source) { .label = label ? label : path, .fd = -1 };

        _cleanup_(closep) int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return mp_error_set(err, -errno, src->label, -1, "cannot open: %s", strerror(errno));

        struct stat st;
        if (fstat(fd, &st) < 0)
                return mp_error_set(err, -errno, src->label, -1, "cannot stat: %s", strerror(errno));
        if (!S_ISREG(st.st_mode))
                return mp_error_set(err, -EBADMSG, src->label, -1, "not a regular file");

        src->fd = TAKE_FD(fd);
        src->size = (uint64_t) st.st_size;
        return 0;
}

void mp_source_init_mem(mp_source *src, const char *label, const void *mem, size_t size) {
        assert(src);
        *src = (mp_source) { .label = label ? label : "<memory>", .fd = -1, .mem = mem, .size = size };
}

int mp_source_pread(const mp_source *src, void *buf, size_t len, uint64_t offset, mp_error *err) {
        assert(src);
        assert(buf || len == 0);

        uint64_t end;
        if (add_overflow_u64(offset, len, &end) || end > src->size)
                return mp_error_set(err, -EBADMSG, src->label, (int64_t) (offset > INT64_MAX ? INT64_MAX : offset),
                                    "truncated: need %zu bytes at offset %" PRIu64 ", file has %" PRIu64,
                                    len, offset, src->size);
        if (len == 0)
                return 0;

        if (src->mem) {
                memcpy(buf, src->mem + offset, len);
                return 0;
        }

        uint8_t *p = buf;
        while (len > 0) {
                ssize_t n = pread(src->fd, p, len, (off_t) offset);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return mp_error_set(err, -errno, src->label, (int64_t) offset, "read failed: %s",
                                            strerror(errno));
                }
                if (n == 0)     /* file shrank under us */
                        return mp_error_set(err, -EIO, src->label, (int64_t) offset,
                                            "unexpected end of file (file changed while reading?)");
                p += n;
                offset += (uint64_t) n;
                len -= (size_t) n;
        }
        return 0;
}

int mp_source_read_alloc(const mp_source *src, uint64_t offset, uint64_t len, uint64_t max,
                         char **ret, mp_error *err) {
        assert(ret);

        if (len > max)
                return mp_error_set(err, -E2BIG, src->label, (int64_t) (offset > INT64_MAX ? INT64_MAX : offset),
                                    "declared length %" PRIu64 " exceeds limit %" PRIu64, len, max);

        _cleanup_(freep) char *buf = malloc((size_t) len + 1);
        if (!buf)
                return mp_error_set(err, -ENOMEM, src->label, -1, "out of memory");

        int r = mp_source_pread(src, buf, (size_t) len, offset, err);
        if (r < 0)
                return r;
        buf[len] = 0;
        *ret = TAKE_PTR(buf);
        return 0;
}

void mp_source_close(mp_source *src) {
        if (src && src->fd >= 0) {
                close(src->fd);
                src->fd = -1;
        }
}

int mp_read_file_limited(const char *path, const char *label, uint64_t max, char **ret,
                         size_t *ret_len, mp_error *err) {
        mp_source src;
        int r = mp_source_open(&src, path, label, err);
        if (r < 0)
                return r;

        if (src.size > max) {
                r = mp_error_set(err, -E2BIG, src.label, -1, "file is %" PRIu64 " bytes, limit is %" PRIu64,
                                 src.size, max);
                mp_source_close(&src);
                return r;
        }
        r = mp_source_read_alloc(&src, 0, src.size, max, ret, err);
        if (r >= 0 && ret_len)
                *ret_len = (size_t) src.size;
        mp_source_close(&src);
        return r;
}

int mp_write_all(int fd, const void *buf, size_t len) {
        const uint8_t *p = buf;
        while (len > 0) {
                ssize_t k = write(fd, p, len);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                len -= (size_t) k;
        }
        return 0;
}
