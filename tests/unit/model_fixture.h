/* model_fixture.h - opening a model in a test (test_model.c,
 * test_incremental.c): the model at path, or the test fails with the
 * reader's error. */
#pragma once

#include <stdio.h>

#include "formats/model.h"
#include "test.h"

static inline mp_model *open_ok(const char *path) {
        mp_model *m = NULL;
        mp_error e;
        mp_error_clear(&e);
        int r = mp_model_open(path, NULL, &m, &e);
        if (r < 0) {
                char buf[2048];
                mp_error_format(&e, buf, sizeof(buf));
                fprintf(stderr, "open %s: %s\n", path, buf);
        }
        CHECK_EQ(r, 0);
        return m;
}
