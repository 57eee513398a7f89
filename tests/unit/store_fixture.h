/* store_fixture.h - opening a collector store in a test (test_store.c,
 * test_blast_radius.c): a SQLite store at path, or the test fails with the
 * store's error. */
#pragma once

#include <stdio.h>
#include <stdlib.h>

#include "collector/store.h"
#include "test.h"

static inline mp_store *open_store(const char *path) {
        char *url = NULL;
        CHECK(asprintf(&url, "sqlite:%s", path) > 0);
        mp_store *s = NULL;
        mp_error err;
        int r = mp_store_open(url, &s, &err);
        if (r < 0)
                fprintf(stderr, "%s: %s\n", err.file, err.reason);
        CHECK(r == 0);
        free(url);
        return s;
}
