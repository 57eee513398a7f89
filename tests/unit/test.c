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

const mp_tensor *test_find_tensor(const mp_model *m, const char *name) {
        for (size_t i = 0; i < m->n_tensors; i++)
                if (strcmp(m->tensors[i].name, name) == 0)
                        return &m->tensors[i];
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

char *test_path(const char *dir, const char *rel) {
        char *p = NULL;
        CHECK(asprintf(&p, "%s/%s", dir, rel) > 0);
        return p;
}

char *test_write(const char *dir, const char *name, const void *buf, size_t len) {
        char *p = test_path(dir, name);
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

void put(test_buf *b, const void *d, size_t n) {
        if (b->n + n > b->cap) {
                size_t cap = b->cap ? b->cap : 256;
                while (cap < b->n + n)
                        cap *= 2;
                b->p = realloc(b->p, cap);
                CHECK(b->p);
                b->cap = cap;
        }
        if (n)
                memcpy(b->p + b->n, d, n);
        b->n += n;
}

void put_le(test_buf *b, uint64_t v, int bytes) {
        uint8_t t[8];

        CHECK(bytes >= 0 && bytes <= 8);
        for (int i = 0; i < bytes; i++)
                t[i] = (uint8_t) (v >> (8 * i));
        put(b, t, (size_t) bytes);
}

void put_u8(test_buf *b, uint8_t v)   { put_le(b, v, 1); }
void put_u16(test_buf *b, uint16_t v) { put_le(b, v, 2); }
void put_u32(test_buf *b, uint32_t v) { put_le(b, v, 4); }
void put_u64(test_buf *b, uint64_t v) { put_le(b, v, 8); }

char *test_write_safetensors(test_buf *header, test_buf *data) {
        put(header, "}", 1);
        while (header->n % 8)
                put(header, " ", 1);
        test_buf f = {0};
        put_u64(&f, header->n);
        put(&f, header->p, header->n);
        put(&f, data->p, data->n);
        char *dir = test_tmpdir();
        char *path = test_write(dir, "model.safetensors", f.p, f.n);
        free(dir);
        free(header->p);
        free(data->p);
        free(f.p);
        *header = *data = (test_buf) {0};
        return path;
}

float test_value(unsigned seed, uint64_t tensor, uint64_t i) {
        uint64_t x = ((uint64_t) seed << 40) ^ (tensor << 32) ^ i;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
        x ^= x >> 31;
        return (float) ((double) (x >> 11) / (double) (1ULL << 53) * 2 - 1);
}
