/* test.c - helpers for the C unit tests (see test.h). */
#include "test.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

const char *test_zoo(void) {
        const char *z = getenv("MODELPROV_ZOO");
        struct stat st;

        if (z && stat(z, &st) == 0 && S_ISDIR(st.st_mode))
                return z;

        fprintf(stderr, "zoo missing: %s does not exist (expected ../shared/zoo beside the checkout)\n",
                z ? z : "$MODELPROV_ZOO");
        const char *req = getenv("MODELPROV_REQUIRE_ZOO");
        if (req && strcmp(req, "1") == 0) {
                fprintf(stderr, "MODELPROV_REQUIRE_ZOO=1: failing\n");
                exit(1);
        }
        return NULL;
}

char *test_tmpdir(void) {
        const char *base = getenv("TMPDIR");
        char *t = NULL;
        if (asprintf(&t, "%s/modelprov-test-XXXXXX", base ? base : "/tmp") < 0 || !mkdtemp(t)) {
                perror("mkdtemp");
                abort();
        }
        return t;
}

char *test_write(const char *dir, const char *name, const void *buf, size_t len) {
        char *p = NULL;
        if (asprintf(&p, "%s/%s", dir, name) < 0)
                abort();
        FILE *f = fopen(p, "wb");
        if (!f || (len && fwrite(buf, 1, len, f) != len) || fclose(f) != 0) {
                perror(p);
                abort();
        }
        return p;
}

char *test_read(const char *path, size_t *len) {
        FILE *f = fopen(path, "rb");
        if (!f) {
                perror(path);
                abort();
        }
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        char *b = malloc((size_t) n + 1);
        if (!b || fread(b, 1, (size_t) n, f) != (size_t) n)
                abort();
        b[n] = 0;
        fclose(f);
        if (len)
                *len = (size_t) n;
        return b;
}
