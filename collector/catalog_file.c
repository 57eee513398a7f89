/* catalog_file.c - catalog bytes from the store as an open catalog (see
 * catalog_file.h). */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collector/catalog_file.h"
#include "util/macro.h"
#include "util/source.h"

struct catalog_file {
        char dir[256];
        char path[300];
        mp_catalog *catalog;
};

void catalog_file_close(catalog_file *f) {
        if (!f)
                return;
        mp_catalog_close(f->catalog);
        if (f->path[0]) {
                /* SQLite may have left a -wal or -shm beside it. */
                static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
                for (size_t i = 0; i < ELEMENTSOF(suffixes); i++) {
                        char p[sizeof f->path + 16];
                        snprintf(p, sizeof p, "%s%s", f->path, suffixes[i]);
                        (void) unlink(p);
                }
        }
        if (f->dir[0])
                (void) rmdir(f->dir);
        free(f);
}

int catalog_file_open(const uint8_t *bytes, size_t len, catalog_file **ret, mp_error *err) {
        assert(bytes || len == 0);
        assert(ret);

        _cleanup_(catalog_file_closep) catalog_file *f = calloc(1, sizeof *f);
        if (!f)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");

        const char *tmp = getenv("TMPDIR");
        if (!tmp || !*tmp || strlen(tmp) > 200)
                tmp = "/tmp";
        snprintf(f->dir, sizeof f->dir, "%s/modelprov-catalog-XXXXXX", tmp);
        if (!mkdtemp(f->dir)) {
                int r = -errno;
                f->dir[0] = '\0';
                return mp_error_set(err, r, tmp, -1, "cannot make a temporary directory: %s", strerror(-r));
        }
        snprintf(f->path, sizeof f->path, "%s/catalog.db", f->dir);

        _cleanup_(closep) int fd = open(f->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
                return mp_error_set(err, -errno, f->path, -1, "cannot create: %s", strerror(errno));
        int r = mp_write_all(fd, bytes, len);
        if (r < 0)
                return mp_error_set(err, r, f->path, -1, "cannot write: %s", strerror(-r));

        mp_error e = {0};
        r = mp_catalog_open(f->path, false, &f->catalog, &e);
        if (r < 0)
                return mp_error_set(err, r == -ENOMEM ? r : -EBADMSG, NULL, -1, "%s", e.reason);
        *ret = TAKE_PTR(f);
        return 0;
}

mp_catalog *catalog_file_catalog(catalog_file *f) {
        assert(f);
        return f->catalog;
}

int catalog_file_count_entries(const uint8_t *bytes, size_t len, size_t *ret, mp_error *err) {
        _cleanup_(catalog_file_closep) catalog_file *f = NULL;
        int r = catalog_file_open(bytes, len, &f, err);
        if (r < 0)
                return r;
        mp_error e = {0};
        r = mp_catalog_count(f->catalog, ret, &e);
        if (r < 0)
                return mp_error_set(err, -EBADMSG, NULL, -1, "%s", e.reason);
        return 0;
}
