/* secret.c - secret files and constant-time comparison (see secret.h). */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "util/macro.h"
#include "util/secret.h"

int mp_secret_check(const char *s, const char *what, mp_error *err) {
        assert(s);
        assert(what);

        size_t n = strlen(s);
        if (n < MP_SECRET_MIN)
                return mp_error_set(err, -EBADMSG, NULL, -1, "%s is too short (%zu characters, at least %d)",
                                    what, n, MP_SECRET_MIN);
        if (n > MP_SECRET_MAX)
                return mp_error_set(err, -EBADMSG, NULL, -1, "%s is too long (over %d characters)", what,
                                    MP_SECRET_MAX);
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] < 0x21 || (unsigned char) s[i] > 0x7e)
                        return mp_error_set(err, -EBADMSG, NULL, -1,
                                            "%s holds a blank or non-printable character at position %zu",
                                            what, i);
        return 0;
}

int mp_secret_read_file(const char *path, const char *what, char **ret, mp_error *err) {
        assert(path);
        assert(what);
        assert(ret);

        _cleanup_(closep) int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return mp_error_set(err, -errno, path, -1, "cannot open %s: %s", what, strerror(errno));

        struct stat st;
        if (fstat(fd, &st) < 0)
                return mp_error_set(err, -errno, path, -1, "cannot stat %s: %s", what, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return mp_error_set(err, -EBADMSG, path, -1, "%s is not a regular file", what);
        if (st.st_mode & 077)
                return mp_error_set(err, -EACCES, path, -1,
                                    "%s file is accessible to group or others (mode %04o); chmod 600 it",
                                    what, (unsigned) (st.st_mode & 07777));

        /* One line plus a newline; anything longer is not a secret. */
        char buf[MP_SECRET_MAX + 3];
        ssize_t k = read(fd, buf, sizeof buf - 1);
        if (k < 0)
                return mp_error_set(err, -errno, path, -1, "cannot read %s: %s", what, strerror(errno));
        buf[k] = '\0';
        if (k > 0 && buf[k - 1] == '\n')
                buf[--k] = '\0';
        if (k > 0 && buf[k - 1] == '\r')
                buf[--k] = '\0';
        if (memchr(buf, '\0', (size_t) k))
                return mp_error_set(err, -EBADMSG, path, -1, "%s holds a NUL byte", what);

        mp_error e = {0};
        int r = mp_secret_check(buf, what, &e);
        if (r < 0)
                return mp_error_set(err, r, path, -1, "%s", e.reason);

        char *s = strdup(buf);
        OPENSSL_cleanse(buf, sizeof buf);
        if (!s)
                return mp_error_set(err, -ENOMEM, path, -1, "out of memory");
        *ret = s;
        return 0;
}

bool mp_secret_equal(const char *a, const char *b) {
        assert(a);
        assert(b);

        size_t na = strlen(a), nb = strlen(b);
        if (na != nb)
                return false;
        return CRYPTO_memcmp(a, b, na) == 0;
}
