/* test.h - the tiny harness shared by the C unit tests.
 *
 * A test program is a main() calling test functions; CHECK() failures print
 * file:line and the expression and exit 1.  Meson's runner collects the exit
 * codes (77 = skipped, used only when the zoo is absent on a newcomer's
 * clone; CI sets MODELPROV_REQUIRE_ZOO=1 so that a missing zoo fails). */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/model.h"

#define CHECK(cond)                                                              \
        do {                                                                     \
                if (!(cond)) {                                                   \
                        fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
                        exit(1);                                                 \
                }                                                                \
        } while (0)

#define CHECK_EQ(a, b)                                                           \
        do {                                                                     \
                long long _a = (long long) (a), _b = (long long) (b);            \
                if (_a != _b) {                                                  \
                        fprintf(stderr, "%s:%d: CHECK_EQ failed: %s = %lld, %s = %lld\n", \
                                __FILE__, __LINE__, #a, _a, #b, _b);             \
                        exit(1);                                                 \
                }                                                                \
        } while (0)

#define CHECK_STREQ(a, b)                                                        \
        do {                                                                     \
                const char *_a = (a), *_b = (b);                                 \
                if (!_a || !_b || strcmp(_a, _b) != 0) {                         \
                        fprintf(stderr, "%s:%d: CHECK_STREQ failed: %s = \"%s\", %s = \"%s\"\n", \
                                __FILE__, __LINE__, #a, _a ? _a : "(null)", #b, _b ? _b : "(null)"); \
                        exit(1);                                                 \
                }                                                                \
        } while (0)

/* Runs one test function and prints its name. */
#define RUN(fn)                                                                  \
        do {                                                                     \
                fprintf(stderr, "== %s\n", #fn);                                 \
                fn();                                                            \
        } while (0)

/* RUN for a test that takes arguments (a shared fixture). */
#define RUN_WITH(fn, ...)                                                        \
        do {                                                                     \
                fprintf(stderr, "== %s\n", #fn);                                 \
                fn(__VA_ARGS__);                                                 \
        } while (0)

/* The zoo directory ($MODELPROV_ZOO, set by meson), or NULL after printing
 * "zoo missing" when it does not exist.  With MODELPROV_REQUIRE_ZOO=1 a
 * missing zoo is a failure (exit 1), not a skip. */
const char *test_zoo(void);

/* The tensor of m named name, or NULL. */
const mp_tensor *test_find_tensor(const mp_model *m, const char *name);

/* Exit code for "skipped" in meson. */
#define TEST_SKIP 77

/* A fresh temporary directory (removed by nobody: meson's build dir is
 * scratch).  Never NULL: aborts on failure. */
char *test_tmpdir(void);

/* dir + "/" + rel, malloc'd.  Never NULL: aborts on failure. */
char *test_path(const char *dir, const char *rel);

/* Writes len bytes to dir/name; returns the malloc'd full path. */
char *test_write(const char *dir, const char *name, const void *buf, size_t len);

/* Reads a whole file; aborts on failure.  *len receives its size. */
char *test_read(const char *path, size_t *len);

/* A growable byte buffer for the files the tests build by hand (GGUF
 * headers, zips, pickles, protobuf messages).  Start from {0}; free p.
 * put() appends n bytes (d may be NULL when n is 0), put_le() the low
 * `bytes` bytes of v in little-endian order, which is how every format here
 * stores its integers.  All abort on ENOMEM. */
typedef struct test_buf {
        uint8_t *p;
        size_t n, cap;
} test_buf;

void put(test_buf *b, const void *d, size_t n);
void put_le(test_buf *b, uint64_t v, int bytes);
void put_u8(test_buf *b, uint8_t v);
void put_u16(test_buf *b, uint16_t v);
void put_u32(test_buf *b, uint32_t v);
void put_u64(test_buf *b, uint64_t v);

/* Finishes a safetensors file whose header holds "{" and the tensor
 * entries: closes the object, pads it to 8 bytes, writes header length,
 * header and data as model.safetensors in a new temporary directory, and
 * frees both buffers.  Returns the file's path (malloc'd). */
char *test_write_safetensors(test_buf *header, test_buf *data);

/* Deterministic pseudo-random values in [-1, 1): seed picks the "training
 * run", tensor and i the value within it. */
float test_value(unsigned seed, uint64_t tensor, uint64_t i);
