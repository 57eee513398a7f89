/* test_torch.c - unit tests for the zip directory reader, the restricted
 * pickle interpreter and the PyTorch checkpoint reader.
 *
 * Zips and pickles are built here byte by byte (a small zip writer laid out
 * like torch.save: stored entries, data aligned to 64 bytes through local
 * extra fields, zip64 end records), so every offset the readers report can be
 * predicted exactly.  The zoo part checks the two torch.save checkpoints
 * against the safetensors files of the same weights. */
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "formats/model.h"
#include "formats/pickle.h"
#include "formats/torch.h"
#include "formats/zip.h"
#include "util/source.h"

/* ---- byte buffers ---------------------------------------------------------------- */

static void put_s(test_buf *b, const char *s) { put(b, s, strlen(s)); }

static void set_le(test_buf *b, size_t at, uint64_t v, int bytes) {
        CHECK(at + (size_t) bytes <= b->n);
        for (int i = 0; i < bytes; i++)
                b->p[at + (size_t) i] = (uint8_t) (v >> (8 * i));
}

static test_buf copy(const test_buf *b) {
        test_buf c = {0};
        put(&c, b->p, b->n);
        return c;
}

/* ---- pickle writer ---------------------------------------------------------------- */

static size_t op(test_buf *b, uint8_t o) {
        size_t at = b->n;
        put_u8(b, o);
        return at;
}

static size_t pk_str(test_buf *b, const char *s) {           /* BINUNICODE */
        size_t at = op(b, 'X');
        put_u32(b, (uint32_t) strlen(s));
        put_s(b, s);
        return at;
}

static size_t pk_sstr(test_buf *b, const char *s) {          /* SHORT_BINUNICODE */
        size_t at = op(b, 0x8c);
        put_u8(b, (uint8_t) strlen(s));
        put_s(b, s);
        return at;
}

static size_t pk_int(test_buf *b, int64_t v) {
        size_t at = b->n;
        if (v >= 0 && v < 256) {
                op(b, 'K');
                put_u8(b, (uint8_t) v);
        } else if (v >= 0 && v < 65536) {
                op(b, 'M');
                put_u16(b, (uint16_t) v);
        } else if (v >= INT32_MIN && v <= INT32_MAX) {
                op(b, 'J');
                put_u32(b, (uint32_t) (int32_t) v);
        } else {
                op(b, 0x8a);
                put_u8(b, 8);
                put_u64(b, (uint64_t) v);
        }
        return at;
}

static size_t pk_global(test_buf *b, const char *module, const char *name) {
        size_t at = op(b, 'c');
        put_s(b, module);
        put_u8(b, '\n');
        put_s(b, name);
        put_u8(b, '\n');
        return at;
}

static void pk_int_tuple(test_buf *b, uint32_t n, const uint64_t *v) {
        op(b, '(');
        for (uint32_t i = 0; i < n; i++)
                pk_int(b, (int64_t) v[i]);
        op(b, 't');
}

typedef struct tspec {
        const char *storage_type;       /* "HalfStorage" ... */
        const char *key;
        uint64_t numel, offset;
        uint32_t n_dims;
        uint64_t shape[9], stride[9];
} tspec;

/* _rebuild_tensor_v2((storage pid), offset, size, stride, False, OrderedDict())
 * as torch.save writes it (protocol 2, without memo); returns the offset of
 * the final REDUCE. */
static void pk_tensor_args(test_buf *b, const tspec *t) {
        op(b, '(');
        op(b, '(');
        pk_str(b, "storage");
        pk_global(b, "torch", t->storage_type);
        pk_str(b, t->key);
        pk_str(b, "cpu");
        pk_int(b, (int64_t) t->numel);
        op(b, 't');
        op(b, 'Q');
        pk_int(b, (int64_t) t->offset);
        pk_int_tuple(b, t->n_dims, t->shape);
        pk_int_tuple(b, t->n_dims, t->stride);
        op(b, 0x89);
        pk_global(b, "collections", "OrderedDict");
        op(b, ')');
        op(b, 'R');
        op(b, 't');
}

static size_t pk_tensor(test_buf *b, const tspec *t) {
        pk_global(b, "torch._utils", "_rebuild_tensor_v2");
        pk_tensor_args(b, t);
        return op(b, 'R');
}

static void pk_begin(test_buf *b) {
        op(b, 0x80);
        put_u8(b, 2);
}

/* ---- zip writer ------------------------------------------------------------------- */

static uint32_t crc32_ref(const uint8_t *p, size_t n) {
        uint32_t c = UINT32_MAX;
        for (size_t i = 0; i < n; i++) {
                c ^= p[i];
                for (int k = 0; k < 8; k++)
                        c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
        }
        return ~c;
}

typedef struct zent {
        const char *name;
        const void *data;
        size_t len;
        uint16_t method;
} zent;

#define MAXZ 16

typedef struct zlayout {
        size_t lho[MAXZ], data[MAXZ], cde[MAXZ];
        size_t cd, cd_size, eocd64, loc, eocd;
} zlayout;

/* Writes entries like torch.save: local headers with a padding extra field
 * so data starts on 64 bytes, CRCs, a central directory, zip64 end record
 * and locator when zip64, and the classic end record. */
static test_buf zip_build(const zent *e, size_t n, bool zip64, zlayout *l) {
        test_buf b = {0};
        CHECK(n <= MAXZ);
        for (size_t i = 0; i < n; i++) {
                size_t name_len = strlen(e[i].name);
                l->lho[i] = b.n;
                size_t pad = (64 - (b.n + 30 + name_len + 4) % 64) % 64;
                put_u32(&b, 0x04034b50);
                put_u16(&b, 20);
                put_u16(&b, 0);
                put_u16(&b, e[i].method);
                put_u32(&b, 0);
                put_u32(&b, crc32_ref(e[i].data, e[i].len));
                put_u32(&b, (uint32_t) e[i].len);
                put_u32(&b, (uint32_t) e[i].len);
                put_u16(&b, (uint16_t) name_len);
                put_u16(&b, (uint16_t) (4 + pad));
                put_s(&b, e[i].name);
                put_u16(&b, 0x4246);    /* "FB" padding field, as torch */
                put_u16(&b, (uint16_t) pad);
                for (size_t k = 0; k < pad; k++)
                        put_u8(&b, 'Z');
                l->data[i] = b.n;
                CHECK(b.n % 64 == 0);
                put(&b, e[i].data, e[i].len);
        }
        l->cd = b.n;
        for (size_t i = 0; i < n; i++) {
                l->cde[i] = b.n;
                put_u32(&b, 0x02014b50);
                put_u16(&b, 0x031e);
                put_u16(&b, 20);
                put_u16(&b, 0);
                put_u16(&b, e[i].method);
                put_u32(&b, 0);
                put_u32(&b, crc32_ref(e[i].data, e[i].len));
                put_u32(&b, (uint32_t) e[i].len);
                put_u32(&b, (uint32_t) e[i].len);
                put_u16(&b, (uint16_t) strlen(e[i].name));
                put_u16(&b, 0);
                put_u16(&b, 0);
                put_u16(&b, 0);
                put_u16(&b, 0);
                put_u32(&b, 0);
                put_u32(&b, (uint32_t) l->lho[i]);
                put_s(&b, e[i].name);
        }
        l->cd_size = b.n - l->cd;
        if (zip64) {
                l->eocd64 = b.n;
                put_u32(&b, 0x06064b50);
                put_u64(&b, 44);
                put_u16(&b, 0x031e);
                put_u16(&b, 45);
                put_u32(&b, 0);
                put_u32(&b, 0);
                put_u64(&b, n);
                put_u64(&b, n);
                put_u64(&b, l->cd_size);
                put_u64(&b, l->cd);
                l->loc = b.n;
                put_u32(&b, 0x07064b50);
                put_u32(&b, 0);
                put_u64(&b, l->eocd64);
                put_u32(&b, 1);
        }
        l->eocd = b.n;
        put_u32(&b, 0x06054b50);
        put_u16(&b, 0);
        put_u16(&b, 0);
        put_u16(&b, (uint16_t) n);
        put_u16(&b, (uint16_t) n);
        put_u32(&b, (uint32_t) l->cd_size);
        put_u32(&b, (uint32_t) l->cd);
        put_u16(&b, 0);
        return b;
}

/* ---- helpers ---------------------------------------------------------------------- */

static void check_err(const mp_error *e, int r, int code, int64_t offset, const char *label, const char *part,
                      int line) {
        if (r != code || e->code != code || e->offset != offset || strcmp(e->file, label) != 0 ||
            !e->reason[0] || (part && !strstr(e->reason, part))) {
                fprintf(stderr, "line %d: expected %d at %" PRId64 " (\"%s\"), got r=%d code=%d offset=%" PRId64
                        " file=%s reason=%s\n", line, code, offset, part ? part : "", r, e->code, e->offset,
                        e->file, e->reason);
                exit(1);
        }
}

static int zip_open_buf(const test_buf *b, mp_zip *z, mp_error *e) {
        mp_source src;
        mp_source_init_mem(&src, "z.zip", b->p, b->n);
        mp_error_clear(e);
        return mp_zip_open(&src, z, e);
}

static void expect_zip_fail(const test_buf *b, int code, int64_t offset, const char *part, int line) {
        mp_zip z = {0};
        mp_error e;
        int r = zip_open_buf(b, &z, &e);
        check_err(&e, r, code, offset, "z.zip", part, line);
        CHECK(z.entries == NULL);
}

static int pickle_buf(const test_buf *b, mp_pickle_result *res, mp_error *e) {
        mp_error_clear(e);
        return mp_pickle_parse("data.pkl", b->p ? b->p : (const uint8_t *) "", b->n, res, e);
}

static void expect_pickle_fail(const test_buf *b, int code, int64_t offset, const char *part, int line) {
        mp_pickle_result res;
        mp_error e;
        int r = pickle_buf(b, &res, &e);
        check_err(&e, r, code, offset, "data.pkl", part, line);
        CHECK(res.n_tensors == 0 && res.tensors == NULL && res.unsafe == NULL);
}

/* Parses b, which must hold exactly one tensor, named name. */
static void expect_one_tensor(const test_buf *b, const char *name) {
        mp_pickle_result r;
        mp_error e;

        CHECK_EQ(pickle_buf(b, &r, &e), 0);
        CHECK_EQ(r.n_tensors, 1);
        CHECK_STREQ(r.tensors[0].name, name);
        mp_pickle_result_free(&r);
}

static const mp_pickle_tensor *ptensor(const mp_pickle_result *r, const char *name) {
        for (size_t i = 0; i < r->n_tensors; i++)
                if (strcmp(r->tensors[i].name, name) == 0)
                        return &r->tensors[i];
        fprintf(stderr, "tensor %s not found\n", name);
        exit(1);
}

static int torch_buf(const test_buf *b, mp_model **ret, mp_error *e) {
        mp_source src;
        mp_source_init_mem(&src, "ckpt.pt", b->p, b->n);
        mp_error_clear(e);
        *ret = mp_model_new("/tmp");
        CHECK(*ret);
        return mp_torch_load(*ret, 3, &src, e);
}

static void expect_torch_fail(const test_buf *b, int code, int64_t offset, const char *part, int line) {
        mp_model *m;
        mp_error e;
        int r = torch_buf(b, &m, &e);
        check_err(&e, r, code, offset, "ckpt.pt", part, line);
        CHECK_EQ(m->n_tensors, 0);
        mp_model_free(m);
}

static const mp_tensor *mtensor(const mp_model *m, const char *name) {
        for (size_t i = 0; i < m->n_tensors; i++)
                if (strcmp(m->tensors[i].name, name) == 0)
                        return &m->tensors[i];
        fprintf(stderr, "tensor %s not found\n", name);
        exit(1);
}

/* ---- zip -------------------------------------------------------------------------- */

static void test_zip_valid(void) {
        const char *d1 = "hello", *d2 = "0123456789abcdef";
        zent e[] = {
                { "arc/data.pkl", d1, 5, 0 },
                { "arc/data/0", d2, 16, 0 },
                { "arc/version", "3\n", 2, 0 },
        };
        for (int zip64 = 0; zip64 <= 1; zip64++) {
                zlayout l;
                test_buf b = zip_build(e, 3, zip64, &l);
                mp_zip z;
                mp_error err;
                CHECK_EQ(zip_open_buf(&b, &z, &err), 0);
                CHECK_EQ(z.n_entries, 3);
                for (size_t i = 0; i < 3; i++) {
                        CHECK_STREQ(z.entries[i].name, e[i].name);
                        CHECK_EQ(z.entries[i].method, 0);
                        CHECK_EQ(z.entries[i].size, e[i].len);
                        CHECK_EQ(z.entries[i].comp_size, e[i].len);
                        CHECK_EQ(z.entries[i].data_offset, l.data[i]);
                        CHECK_EQ(z.entries[i].crc32, crc32_ref(e[i].data, e[i].len));
                        CHECK(memcmp(b.p + z.entries[i].data_offset, e[i].data, e[i].len) == 0);
                }
                CHECK(mp_zip_find(&z, "arc/data/0") == &z.entries[1]);
                CHECK(mp_zip_find(&z, "arc/data/1") == NULL);
                CHECK(mp_zip_find(&z, "arc/data") == NULL);
                mp_zip_free(&z);
                mp_zip_free(&z);        /* idempotent */
                free(b.p);
        }

        /* an empty archive is a valid zip */
        zlayout l;
        test_buf b = zip_build(NULL, 0, false, &l);
        mp_zip z;
        mp_error err;
        CHECK_EQ(zip_open_buf(&b, &z, &err), 0);
        CHECK_EQ(z.n_entries, 0);
        mp_zip_free(&z);
        free(b.p);

        /* a comment after the end record */
        b = zip_build(e, 1, false, &l);
        set_le(&b, l.eocd + 20, 7, 2);
        put_s(&b, "comment");
        CHECK_EQ(zip_open_buf(&b, &z, &err), 0);
        CHECK_EQ(z.n_entries, 1);
        mp_zip_free(&z);
        free(b.p);
}

static void test_zip_duplicates(void) {
        zent e[] = { { "a", "first", 5, 0 }, { "a", "second", 6, 0 } };
        zlayout l;
        test_buf b = zip_build(e, 2, false, &l);
        mp_zip z;
        mp_error err;
        CHECK_EQ(zip_open_buf(&b, &z, &err), 0);
        CHECK_EQ(z.n_entries, 2);
        const mp_zip_entry *f = mp_zip_find(&z, "a");
        CHECK(f == &z.entries[0]);
        CHECK_EQ(f->data_offset, l.data[0]);
        mp_zip_free(&z);
        free(b.p);
}

/* The places in a zip built by zip_build() that a malformed case patches or
 * expects its error at. */
typedef enum zip_anchor {
        Z_START,
        Z_EOCD,
        Z_EOCD64,
        Z_LOC,
        Z_CDE0,
        Z_CDE1,
        Z_LHO1,
} zip_anchor;

static size_t zip_anchor_pos(const zlayout *l, zip_anchor a) {
        switch (a) {
        case Z_START:   return 0;
        case Z_EOCD:    return l->eocd;
        case Z_EOCD64:  return l->eocd64;
        case Z_LOC:     return l->loc;
        case Z_CDE0:    return l->cde[0];
        case Z_CDE1:    return l->cde[1];
        case Z_LHO1:    return l->lho[1];
        }
        abort();
}

/* A good zip with up to four little-endian fields overwritten, and the
 * error that must come of it.  patch[] ends at the first bytes == 0. */
typedef struct zip_case {
        int line;
        bool zip64;
        struct { zip_anchor at; size_t delta; uint64_t value; int bytes; } patch[4];
        int code;
        zip_anchor err_at;
        size_t err_delta;
        const char *reason;
} zip_case;

static const zip_case zip_patches[] = {
        /* a comment length running past the end of the file */
        { __LINE__, false, { { Z_EOCD, 20, 5, 2 } },
          -EBADMSG, Z_START, 0, "no end of central directory" },

        /* more entries than the directory can hold */
        { __LINE__, false, { { Z_EOCD, 8, 1000, 2 }, { Z_EOCD, 10, 1000, 2 } },
          -EBADMSG, Z_EOCD, 10, "cannot fit" },
        /* fewer entries than the directory holds */
        { __LINE__, false, { { Z_EOCD, 8, 1, 2 }, { Z_EOCD, 10, 1, 2 } },
          -EBADMSG, Z_CDE1, 0, "after its 1 declared entries" },
        /* multi-disk */
        { __LINE__, false, { { Z_EOCD, 8, 1, 2 } },
          -ENOTSUP, Z_EOCD, 4, "multi-disk" },

        /* zip64: count over the limit, records that disagree, bad pointers */
        { __LINE__, true, { { Z_EOCD64, 24, 1u << 21, 8 }, { Z_EOCD64, 32, 1u << 21, 8 },
                            { Z_EOCD, 8, 0xFFFF, 2 }, { Z_EOCD, 10, 0xFFFF, 2 } },
          -E2BIG, Z_EOCD64, 32, "limit" },
        { __LINE__, true, { { Z_EOCD, 8, 1, 2 }, { Z_EOCD, 10, 1, 2 } },
          -EBADMSG, Z_EOCD, 10, "disagree" },
        { __LINE__, true, { { Z_LOC, 8, UINT64_MAX - 3, 8 } },
          -EBADMSG, Z_LOC, 8, "not before its locator" },
        { __LINE__, true, { { Z_EOCD64, 4, 1000, 8 } },
          -EBADMSG, Z_EOCD64, 4, "does not reach" },

        /* saturated classic fields without a zip64 locator */
        { __LINE__, false, { { Z_EOCD, 16, UINT32_MAX, 4 } },
          -EBADMSG, Z_EOCD, 0, "zip64" },

        /* entry data outside the file (and past the directory) */
        { __LINE__, false, { { Z_CDE1, 20, 1u << 30, 4 }, { Z_CDE1, 24, 1u << 30, 4 } },
          -EBADMSG, Z_CDE1, 20, "runs past" },
        /* stored entry whose sizes differ */
        { __LINE__, false, { { Z_CDE0, 20, 7, 4 } },
          -EBADMSG, Z_CDE0, 20, "differs from size" },

        /* bad signatures */
        { __LINE__, false, { { Z_LHO1, 0, 'Q', 1 } },
          -EBADMSG, Z_LHO1, 0, "local header signature" },
        { __LINE__, false, { { Z_CDE1, 0, 'Q', 1 } },
          -EBADMSG, Z_CDE1, 0, "central directory entry signature" },

        /* local and central names differ: two readers, two files */
        { __LINE__, false, { { Z_LHO1, 30 + 2, 'Y', 1 } },
          -EBADMSG, Z_LHO1, 30, "name differs" },
        { __LINE__, false, { { Z_LHO1, 8, 8, 2 } },
          -EBADMSG, Z_LHO1, 8, "method" },

        /* names: empty (the directory size kept consistent), with NUL */
        { __LINE__, false, { { Z_CDE0, 28, 0, 2 }, { Z_CDE0, 30, 10, 2 } },
          -EBADMSG, Z_CDE0, 28, "empty name" },
        { __LINE__, false, { { Z_CDE0, 46 + 1, 0, 1 } },
          -EBADMSG, Z_CDE0, 46, "NUL" },

        /* encrypted */
        { __LINE__, false, { { Z_CDE0, 8, 1, 2 } },
          -ENOTSUP, Z_CDE0, 8, "encrypted" },

        /* extra field overrunning its area: name "x/da", extra: 4 bytes "ta/0" */
        { __LINE__, false, { { Z_CDE1, 28, 4, 2 }, { Z_CDE1, 30, 4, 2 } },
          -EBADMSG, Z_CDE1, 0, "extra field" },
};

static void test_zip_malformed(void) {
        zent e[] = { { "x/data.pkl", "abcdefgh", 8, 0 }, { "x/data/0", "0123456789", 10, 0 } };
        zlayout l;
        test_buf good = zip_build(e, 2, false, &l);
        zlayout l64;
        test_buf good64 = zip_build(e, 2, true, &l64);
        test_buf b;

        for (size_t i = 0; i < sizeof(zip_patches) / sizeof(zip_patches[0]); i++) {
                const zip_case *c = &zip_patches[i];
                const zlayout *cl = c->zip64 ? &l64 : &l;

                b = copy(c->zip64 ? &good64 : &good);
                for (size_t k = 0; k < 4 && c->patch[k].bytes > 0; k++)
                        set_le(&b, zip_anchor_pos(cl, c->patch[k].at) + c->patch[k].delta,
                               c->patch[k].value, c->patch[k].bytes);
                expect_zip_fail(&b, c->code, (int64_t) (zip_anchor_pos(cl, c->err_at) + c->err_delta),
                                c->reason, c->line);
                free(b.p);
        }

        /* too small, and no end record at all */
        b = (test_buf) {0};
        put_s(&b, "PK\x03\x04");
        expect_zip_fail(&b, -EBADMSG, 0, "too small", __LINE__);
        free(b.p);
        b = (test_buf) {0};
        for (int i = 0; i < 100; i++)
                put_u8(&b, (uint8_t) i);
        expect_zip_fail(&b, -EBADMSG, 0, "no end of central directory", __LINE__);
        free(b.p);

        /* truncated: the end record is cut off */
        b = copy(&good);
        b.n -= 10;
        expect_zip_fail(&b, -EBADMSG, 0, "no end of central directory", __LINE__);
        free(b.p);

        /* central directory outside the file */
        b = copy(&good);
        set_le(&b, l.eocd + 16, b.n + 100, 4);
        expect_zip_fail(&b, -EBADMSG, (int64_t) l.eocd + 16, "central directory", __LINE__);
        free(b.p);

        /* zip64 end record pointer at something else */
        b = copy(&good64);
        set_le(&b, l64.loc + 8, l64.eocd64 - 8, 8);
        expect_zip_fail(&b, -EBADMSG, (int64_t) l64.eocd64 - 8, "signature", __LINE__);
        free(b.p);

        /* local header offset beyond the directory */
        b = copy(&good);
        set_le(&b, l.cde[1] + 42, l.cd + 4, 4);
        expect_zip_fail(&b, -EBADMSG, (int64_t) l.cde[1] + 42, "local header offset", __LINE__);
        free(b.p);

        /* overlapping entries: the first grows into the second's header */
        b = copy(&good);
        set_le(&b, l.cde[0] + 20, l.lho[1] - l.data[0] + 8, 4);
        set_le(&b, l.cde[0] + 24, l.lho[1] - l.data[0] + 8, 4);
        expect_zip_fail(&b, -EBADMSG, (int64_t) l.lho[1], "overlaps", __LINE__);
        free(b.p);

        free(good.p);
        free(good64.p);
}

/* A zip64 extra field moves sizes and offsets beyond 32 bits. */
static void test_zip64_extra(void) {
        zent e[] = { { "a/b", "payload", 7, 0 } };
        zlayout l;
        test_buf b = zip_build(e, 1, true, &l);

        /* rebuild the central entry with saturated fields and a zip64 extra */
        test_buf c = {0};
        put(&c, b.p, l.cd);
        size_t cde = c.n;
        put(&c, b.p + l.cde[0], 46);
        set_le(&c, cde + 20, UINT32_MAX, 4);
        set_le(&c, cde + 24, UINT32_MAX, 4);
        set_le(&c, cde + 42, UINT32_MAX, 4);
        set_le(&c, cde + 30, 4 + 24 + 8, 2);
        put_s(&c, "a/b");
        put_u16(&c, 0x1234);    /* an unrelated extra field first */
        put_u16(&c, 4);
        put_u32(&c, 0);
        put_u16(&c, 0x0001);
        put_u16(&c, 24);
        put_u64(&c, 7);
        put_u64(&c, 7);
        put_u64(&c, l.lho[0]);
        size_t cd_size = c.n - l.cd;
        size_t eocd64 = c.n;
        put_u32(&c, 0x06064b50);
        put_u64(&c, 44);
        put_u16(&c, 0x031e);
        put_u16(&c, 45);
        put_u32(&c, 0);
        put_u32(&c, 0);
        put_u64(&c, 1);
        put_u64(&c, 1);
        put_u64(&c, cd_size);
        put_u64(&c, l.cd);
        put_u32(&c, 0x07064b50);
        put_u32(&c, 0);
        put_u64(&c, eocd64);
        put_u32(&c, 1);
        put_u32(&c, 0x06054b50);
        put_u16(&c, 0);
        put_u16(&c, 0);
        put_u16(&c, 0xFFFF);
        put_u16(&c, 0xFFFF);
        put_u32(&c, UINT32_MAX);
        put_u32(&c, UINT32_MAX);
        put_u16(&c, 0);

        mp_zip z;
        mp_error err;
        CHECK_EQ(zip_open_buf(&c, &z, &err), 0);
        CHECK_EQ(z.n_entries, 1);
        CHECK_EQ(z.entries[0].size, 7);
        CHECK_EQ(z.entries[0].comp_size, 7);
        CHECK_EQ(z.entries[0].data_offset, l.data[0]);
        mp_zip_free(&z);

        /* the zip64 field cut short */
        set_le(&c, cde + 46 + 3 + 8 + 2, 16, 2);
        expect_zip_fail(&c, -EBADMSG, (int64_t) cde, "zip64 extra field too short", __LINE__);
        free(c.p);
        free(b.p);
}

/* ---- pickle ----------------------------------------------------------------------- */

/* A state dict the way torch.save writes one, with the parts that vary:
 * OrderedDict with _metadata BUILD, a Parameter, nested dicts, lists, views. */
static void test_pickle_state_dict(void) {
        test_buf b = {0};
        pk_begin(&b);
        pk_global(&b, "collections", "OrderedDict");
        op(&b, ')');
        op(&b, 'R');
        op(&b, 'q'); put_u8(&b, 0);
        op(&b, '(');
        pk_str(&b, "w");
        tspec w = { "HalfStorage", "0", 6, 0, 2, { 2, 3 }, { 3, 1 } };
        pk_tensor(&b, &w);
        op(&b, 'q'); put_u8(&b, 1);
        pk_str(&b, "p");
        /* _rebuild_parameter(tensor, True, OrderedDict()) */
        pk_global(&b, "torch._utils", "_rebuild_parameter");
        op(&b, '(');
        tspec pt = { "FloatStorage", "1", 10, 2, 1, { 8 }, { 1 } };
        pk_tensor(&b, &pt);
        op(&b, 0x88);
        pk_global(&b, "collections", "OrderedDict");
        op(&b, ')');
        op(&b, 'R');
        op(&b, 't');
        op(&b, 'R');
        pk_str(&b, "tied");
        op(&b, 'h'); put_u8(&b, 1);     /* the same tensor under another key */
        pk_str(&b, "sub");
        op(&b, '}');
        op(&b, '(');
        pk_str(&b, "bf");
        tspec bf = { "BFloat16Storage", "2", 4, 0, 2, { 2, 2 }, { 1, 2 } };
        pk_tensor(&b, &bf);
        pk_str(&b, "ints");
        tspec i64 = { "LongStorage", "3", 3, 0, 1, { 3 }, { 1 } };
        pk_tensor(&b, &i64);
        op(&b, 'u');
        pk_str(&b, "list");
        op(&b, ']');
        op(&b, '(');
        tspec bo = { "BoolStorage", "4", 5, 0, 0, { 0 }, { 0 } };
        pk_tensor(&b, &bo);
        op(&b, 'N');
        pk_int(&b, 7);
        op(&b, 'e');
        pk_str(&b, "epoch");
        pk_int(&b, 3);
        op(&b, 'u');
        /* the _metadata attribute: not items of the dict */
        op(&b, '}');
        pk_str(&b, "_metadata");
        op(&b, '}');
        pk_str(&b, "");
        op(&b, '}');
        pk_str(&b, "version");
        pk_int(&b, 1);
        op(&b, 's');
        op(&b, 's');
        op(&b, 's');
        op(&b, 'b');
        op(&b, '.');

        mp_pickle_result r;
        mp_error e;
        CHECK_EQ(pickle_buf(&b, &r, &e), 0);
        CHECK_EQ(r.n_unsafe, 0);
        CHECK_EQ(r.n_tensors, 6);
        const char *order[] = { "w", "p", "tied", "sub.bf", "sub.ints", "list.0" };
        for (size_t i = 0; i < 6; i++)
                CHECK_STREQ(r.tensors[i].name, order[i]);

        const mp_pickle_tensor *t = ptensor(&r, "w");
        CHECK_EQ(t->dtype, MP_DTYPE_F16);
        CHECK_STREQ(t->storage_key, "0");
        CHECK_EQ(t->n_dims, 2);
        CHECK_EQ(t->shape[0], 2);
        CHECK_EQ(t->shape[1], 3);
        CHECK_EQ(t->stride[0], 3);
        CHECK_EQ(t->stride[1], 1);
        CHECK_EQ(t->storage_offset, 0);
        CHECK_EQ(t->storage_numel, 6);
        t = ptensor(&r, "p");
        CHECK_EQ(t->dtype, MP_DTYPE_F32);
        CHECK_STREQ(t->storage_key, "1");
        CHECK_EQ(t->storage_offset, 2);
        CHECK_EQ(t->storage_numel, 10);
        CHECK_EQ(t->shape[0], 8);
        CHECK_STREQ(ptensor(&r, "tied")->storage_key, "0");
        t = ptensor(&r, "sub.bf");
        CHECK_EQ(t->dtype, MP_DTYPE_BF16);
        CHECK_EQ(t->stride[0], 1);
        CHECK_EQ(t->stride[1], 2);
        CHECK_EQ(ptensor(&r, "sub.ints")->dtype, MP_DTYPE_I64);
        t = ptensor(&r, "list.0");
        CHECK_EQ(t->dtype, MP_DTYPE_BOOL);
        CHECK_EQ(t->n_dims, 0);
        mp_pickle_result_free(&r);
        mp_pickle_result_free(&r);
        free(b.p);
}

/* Protocol 0: text opcodes only. */
static void test_pickle_protocol0(void) {
        static const char text[] =
                "ccollections\nOrderedDict\np0\n(tRp1\n"
                "Vw\\u00e9ight\np2\n"
                "ctorch._utils\n_rebuild_tensor\np3\n"
                "((S'storage'\nctorch\nFloatStorage\nS'12'\nS\"cpu\"\nL6L\ntQ"
                "I1\n(I2\nI2\nt(I2\nI1\ntt"
                "R"
                "s"
                "V\\u00e9\n"
                "(lp9\nI01\naF1.5\naS'a\\x41\\n'\naL-12345678901234567890123L\naI00\nag3\na"
                "s"
                "S'\\'\\\\\\\"\\a\\b\\f\\n\\r\\t\\v\\101\\x41\\qZ'\n"
                "g3\n((S'storage'\nctorch\nHalfStorage\nVk\\U0001F600\\\\u\xe9\nS'cpu'\nI0\ntQI0\n(t(ttR"
                "s.";
        /* the storage reference needs BINPERSID, which an unpickler
         * accepts in any protocol */
        test_buf b = {0};
        put(&b, text, strlen(text));
        mp_pickle_result r;
        mp_error e;
        CHECK_EQ(pickle_buf(&b, &r, &e), 0);
        CHECK_EQ(r.n_tensors, 2);
        CHECK_STREQ(r.tensors[0].name, "w\xc3\xa9ight");
        /* STRING escapes: \' \\ \" \a \b \f \n \r \t \v octal hex, unknown kept */
        CHECK_STREQ(r.tensors[1].name, "'\\\"\a\b\f\n\r\t\vAA\\qZ");
        /* raw-unicode-escape: \U escape, an escaped backslash, Latin-1 */
        CHECK_STREQ(r.tensors[1].storage_key, "k\xf0\x9f\x98\x80\\\\u\xc3\xa9");
        CHECK_EQ(r.tensors[1].n_dims, 0);
        CHECK_STREQ(r.tensors[0].storage_key, "12");
        CHECK_EQ(r.tensors[0].dtype, MP_DTYPE_F32);
        CHECK_EQ(r.tensors[0].storage_offset, 1);
        CHECK_EQ(r.tensors[0].shape[0], 2);
        CHECK_EQ(r.tensors[0].stride[1], 1);
        CHECK_EQ(r.n_unsafe, 0);
        mp_pickle_result_free(&r);
        free(b.p);
}

/* Protocol 4/5: framing, memoize, STACK_GLOBAL, sets, bytes, NEWOBJ. */
static void test_pickle_protocol4(void) {
        test_buf b = {0};
        op(&b, 0x80); put_u8(&b, 4);
        size_t frame = op(&b, 0x95);
        put_u64(&b, 0);
        size_t body = b.n;
        pk_sstr(&b, "collections"); op(&b, 0x94);               /* memo 0 */
        pk_sstr(&b, "OrderedDict"); op(&b, 0x94);               /* memo 1 */
        op(&b, 0x93); op(&b, 0x94);                             /* memo 2 */
        op(&b, ')');
        op(&b, 0x81);                                           /* NEWOBJ: an empty OrderedDict */
        op(&b, 0x94);
        op(&b, '(');
        pk_sstr(&b, "emb");
        pk_sstr(&b, "torch._utils");
        pk_sstr(&b, "_rebuild_tensor_v3");
        op(&b, 0x93);
        op(&b, '(');
        op(&b, '(');
        pk_sstr(&b, "storage");
        pk_sstr(&b, "torch");
        pk_sstr(&b, "UntypedStorage");
        op(&b, 0x93);
        pk_sstr(&b, "7");
        pk_sstr(&b, "cuda:0");
        pk_int(&b, 24);                                         /* bytes */
        op(&b, 't');
        op(&b, 'Q');
        pk_int(&b, 4);
        pk_int(&b, 4); pk_int(&b, 5); op(&b, 0x86);
        pk_int(&b, 5); pk_int(&b, 1); op(&b, 0x86);
        op(&b, 0x89);
        op(&b, '}');
        pk_sstr(&b, "torch"); pk_sstr(&b, "float8_e4m3fn"); op(&b, 0x93);
        op(&b, 't');
        op(&b, 'R');
        pk_sstr(&b, "misc");
        op(&b, 0x8f);                                           /* a set */
        op(&b, '('); pk_int(&b, 1); pk_int(&b, 2); op(&b, 0x90);
        op(&b, '('); pk_int(&b, 3); op(&b, 0x91);               /* frozenset */
        op(&b, 'C'); put_u8(&b, 3); put_s(&b, "abc");
        op(&b, 0x8e); put_u64(&b, 2); put_s(&b, "xy");
        op(&b, 0x96); put_u64(&b, 1); put_s(&b, "z");
        op(&b, 0x98);                                           /* READONLY_BUFFER on bytes */
        op(&b, 0x8d); put_u64(&b, 1); put_s(&b, "u");
        op(&b, 'G'); put_u64(&b, 0);
        op(&b, 0x87);
        op(&b, 0x87);
        op(&b, 'u');
        op(&b, '.');
        set_le(&b, frame + 1, b.n - body, 8);

        mp_pickle_result r;
        mp_error e;
        CHECK_EQ(pickle_buf(&b, &r, &e), 0);
        CHECK_EQ(r.n_tensors, 1);
        CHECK_EQ(r.n_unsafe, 0);
        const mp_pickle_tensor *t = &r.tensors[0];
        CHECK_STREQ(t->name, "emb");
        CHECK_EQ(t->dtype, MP_DTYPE_F8_E4M3);
        CHECK_STREQ(t->storage_key, "7");
        CHECK_EQ(t->storage_numel, 24);
        CHECK_EQ(t->storage_offset, 4);
        CHECK_EQ(t->shape[1], 5);
        mp_pickle_result_free(&r);
        free(b.p);
}

/* Globals outside the allow-list are listed, never fatal, and whatever is
 * built from them stays inert. */
static void test_pickle_unsafe(void) {
        test_buf b = {0};
        pk_begin(&b);
        op(&b, '}');
        op(&b, '(');
        pk_str(&b, "pwn");
        size_t g1 = pk_global(&b, "os", "system");
        op(&b, '(');
        pk_str(&b, "touch /tmp/pwned");
        op(&b, 't');
        op(&b, 'R');
        op(&b, '}');                    /* BUILD on the result */
        op(&b, 'b');
        pk_int(&b, 1);
        op(&b, 'a');                    /* APPEND to it */
        pk_str(&b, "k");
        pk_int(&b, 2);
        op(&b, 's');                    /* SETITEM on it */
        pk_str(&b, "eval");
        pk_sstr(&b, "builtins");
        pk_sstr(&b, "eval");
        size_t g2 = op(&b, 0x93);
        op(&b, '(');
        pk_str(&b, "1+1");
        op(&b, 't');
        op(&b, 'R');
        pk_str(&b, "popen");
        op(&b, '(');
        pk_str(&b, "ls");
        size_t g3 = op(&b, 'i');
        put_s(&b, "subprocess\nPopen\n");
        pk_str(&b, "ext");
        size_t g4 = op(&b, 0x82);
        put_u8(&b, 42);
        pk_str(&b, "nul");
        size_t g5 = pk_global(&b, "torch._utils\x01", "_rebuild_tensor_v2");
        pk_str(&b, "obj");
        op(&b, '(');
        size_t g6 = pk_global(&b, "__main__", "Evil");
        pk_int(&b, 1);
        op(&b, 'o');                    /* OBJ */
        pk_str(&b, "newobj");
        size_t g7 = pk_global(&b, "copyreg", "_reconstructor");
        op(&b, ')');
        op(&b, 0x81);
        pk_str(&b, "weight");
        tspec w = { "HalfStorage", "0", 4, 0, 1, { 4 }, { 1 } };
        pk_tensor(&b, &w);
        /* a tensor whose storage type is not allowed: opaque, not an error */
        pk_str(&b, "odd");
        tspec odd = { "EvilStorage", "1", 4, 0, 1, { 4 }, { 1 } };
        size_t odd_at = b.n;
        pk_tensor(&b, &odd);
        op(&b, 'u');
        op(&b, '.');

        mp_pickle_result r;
        mp_error e;
        CHECK_EQ(pickle_buf(&b, &r, &e), 0);
        CHECK_EQ(r.n_tensors, 1);
        CHECK_STREQ(r.tensors[0].name, "weight");
        CHECK_EQ(r.n_unsafe, 8);
        const struct { const char *m, *n; size_t at; } want[] = {
                { "os", "system", g1 }, { "builtins", "eval", g2 }, { "subprocess", "Popen", g3 },
                { "copyreg", "_extension_registry[42]", g4 }, { "torch._utils?", "_rebuild_tensor_v2", g5 },
                { "__main__", "Evil", g6 }, { "copyreg", "_reconstructor", g7 },
                { "torch", "EvilStorage", 0 },
        };
        for (size_t i = 0; i < 8; i++) {
                CHECK_STREQ(r.unsafe[i].module, want[i].m);
                CHECK_STREQ(r.unsafe[i].name, want[i].n);
                if (i < 7)
                        CHECK_EQ(r.unsafe[i].offset, want[i].at);
        }
        /* the EvilStorage GLOBAL: after the rebuild global, MARK, MARK and 'storage' */
        CHECK_EQ(r.unsafe[7].offset, odd_at + 33 + 2 + 12);
        mp_pickle_result_free(&r);
        free(b.p);
}

/* Long module names are cut for the report. */
static void test_pickle_long_global(void) {
        char mod[600];
        memset(mod, 'm', sizeof(mod) - 1);
        mod[sizeof(mod) - 1] = 0;
        test_buf b = {0};
        pk_begin(&b);
        pk_global(&b, mod, "x");
        op(&b, '.');
        mp_pickle_result r;
        mp_error e;
        CHECK_EQ(pickle_buf(&b, &r, &e), 0);
        CHECK_EQ(r.n_unsafe, 1);
        CHECK(strlen(r.unsafe[0].module) < 260);
        CHECK(strstr(r.unsafe[0].module, "...") != NULL);
        mp_pickle_result_free(&r);
        free(b.p);
}

/* Dotted names through nested containers; duplicate keys keep the first
 * position with the last value, as a Python dict does. */
static void test_pickle_names(void) {
        test_buf b = {0};
        tspec t = { "FloatStorage", "0", 4, 0, 1, { 4 }, { 1 } };
        pk_begin(&b);
        op(&b, '}');
        pk_str(&b, "model");
        op(&b, '}');
        pk_str(&b, "a");
        tspec t1 = t;
        t1.key = "1";
        pk_tensor(&b, &t1);
        op(&b, 's');
        pk_str(&b, "b");
        tspec t2 = t;
        t2.key = "2";
        pk_tensor(&b, &t2);
        op(&b, 's');
        pk_str(&b, "a");                /* again: replaces the value of "a" */
        tspec t3 = t;
        t3.key = "3";
        pk_tensor(&b, &t3);
        op(&b, 's');
        op(&b, 's');
        pk_int(&b, 5);                  /* an int key */
        op(&b, '(');
        pk_tensor(&b, &t);
        op(&b, 'N');
        pk_tensor(&b, &t);
        op(&b, 't');
        op(&b, 's');
        op(&b, 0x88);                   /* a bool key */
        pk_tensor(&b, &t);
        op(&b, 's');
        op(&b, '.');

        mp_pickle_result r;
        mp_error e;
        CHECK_EQ(pickle_buf(&b, &r, &e), 0);
        CHECK_EQ(r.n_tensors, 5);
        CHECK_STREQ(r.tensors[0].name, "model.a");
        CHECK_STREQ(r.tensors[0].storage_key, "3");
        CHECK_STREQ(r.tensors[1].name, "model.b");
        CHECK_STREQ(r.tensors[2].name, "5.0");
        CHECK_STREQ(r.tensors[3].name, "5.2");
        CHECK_STREQ(r.tensors[4].name, "True");
        mp_pickle_result_free(&r);
        free(b.p);

        /* a bare tensor: an empty name */
        b = (test_buf) {0};
        pk_begin(&b);
        pk_tensor(&b, &t);
        op(&b, '.');
        expect_one_tensor(&b, "");
        free(b.p);
}

/* A pickled nn.Module (torch.save(model)): the class is reported, and the
 * tensors in its state are found under module-style names. */
static void test_pickle_module(void) {
        tspec t = { "FloatStorage", "0", 4, 0, 1, { 4 }, { 1 } };
        test_buf b = {0};
        pk_begin(&b);
        pk_global(&b, "copyreg", "_reconstructor");
        op(&b, 'q'); put_u8(&b, 0);
        op(&b, '(');
        pk_global(&b, "mymodel", "Net");
        pk_global(&b, "builtins", "object");
        op(&b, 'N');
        op(&b, 't');
        op(&b, 'R');
        op(&b, '}');
        op(&b, '(');
        pk_str(&b, "training");
        op(&b, 0x88);
        pk_str(&b, "_parameters");
        op(&b, '}');
        pk_str(&b, "weight");
        pk_tensor(&b, &t);
        op(&b, 's');
        pk_str(&b, "_modules");
        op(&b, '}');
        pk_str(&b, "fc");
        op(&b, 'h'); put_u8(&b, 0);
        op(&b, '(');
        pk_global(&b, "torch.nn.modules.linear", "Linear");
        pk_global(&b, "builtins", "object");
        op(&b, 'N');
        op(&b, 't');
        op(&b, 'R');
        op(&b, '}');
        pk_str(&b, "_buffers");
        op(&b, '}');
        pk_str(&b, "bias");
        tspec t2 = t;
        t2.key = "1";
        pk_tensor(&b, &t2);
        op(&b, 's');
        op(&b, 's');
        op(&b, 'b');
        op(&b, 's');
        op(&b, 'u');
        op(&b, 'b');
        op(&b, '.');

        mp_pickle_result r;
        mp_error e;
        CHECK_EQ(pickle_buf(&b, &r, &e), 0);
        CHECK_EQ(r.n_tensors, 2);
        CHECK_STREQ(r.tensors[0].name, "weight");
        CHECK_STREQ(r.tensors[1].name, "fc.bias");
        CHECK_EQ(r.n_unsafe, 5);
        CHECK_STREQ(r.unsafe[1].module, "mymodel");
        CHECK_STREQ(r.unsafe[3].module, "torch.nn.modules.linear");
        mp_pickle_result_free(&r);
        free(b.p);
}

/* Tensors with Python attributes: _rebuild_from_type_v2(func, type, args,
 * state).  torch.Tensor as the type is a tensor; another class is reported
 * and the value stays opaque. */
static void test_pickle_from_type(void) {
        tspec t = { "FloatStorage", "0", 4, 0, 1, { 4 }, { 1 } };
        test_buf b = {0};
        pk_begin(&b);
        op(&b, '}');
        op(&b, '(');
        for (int i = 0; i < 3; i++) {
                static const char *const keys[] = { "plain", "param", "custom" };
                static const char *const types[][2] = {
                        { "torch._tensor", "Tensor" }, { "torch.nn.parameter", "Parameter" }, { "mylib", "QTensor" },
                };
                pk_str(&b, keys[i]);
                pk_global(&b, "torch._tensor", "_rebuild_from_type_v2");
                op(&b, '(');
                pk_global(&b, "torch._utils", "_rebuild_tensor_v2");
                pk_global(&b, types[i][0], types[i][1]);
                pk_tensor_args(&b, &t);
                op(&b, '}');
                pk_str(&b, "attr");
                pk_int(&b, 1);
                op(&b, 's');
                op(&b, 't');
                op(&b, 'R');
        }
        op(&b, 'u');
        op(&b, '.');
        mp_pickle_result r;
        mp_error e;
        CHECK_EQ(pickle_buf(&b, &r, &e), 0);
        CHECK_EQ(r.n_tensors, 2);
        CHECK_STREQ(r.tensors[0].name, "plain");
        CHECK_STREQ(r.tensors[1].name, "param");
        CHECK_EQ(r.n_unsafe, 1);
        CHECK_STREQ(r.unsafe[0].module, "mylib");
        mp_pickle_result_free(&r);
        free(b.p);

        /* a function that is not a rebuild function */
        b = (test_buf) {0};
        pk_begin(&b);
        pk_global(&b, "torch._tensor", "_rebuild_from_type_v2");
        op(&b, '(');
        pk_global(&b, "collections", "OrderedDict");
        pk_global(&b, "torch", "Tensor");
        op(&b, ')');
        op(&b, '}');
        op(&b, 't');
        size_t q = op(&b, 'R');
        op(&b, '.');
        expect_pickle_fail(&b, -EBADMSG, (int64_t) q, "not a tensor rebuild function", __LINE__);
        free(b.p);
}

/* A dict subclass of an unknown class: reported, and its items keep their
 * keys (a list subclass its indices). */
static void test_pickle_dict_subclass(void) {
        tspec t = { "FloatStorage", "0", 4, 0, 1, { 4 }, { 1 } };
        test_buf b = {0};
        pk_begin(&b);
        op(&b, '}');
        pk_str(&b, "cfg");
        pk_global(&b, "mylib", "AttrDict");
        op(&b, ')');
        op(&b, 0x81);                   /* NEWOBJ */
        op(&b, '(');
        pk_str(&b, "a");
        pk_tensor(&b, &t);
        pk_str(&b, "b");
        pk_tensor(&b, &t);
        op(&b, 'u');
        pk_str(&b, "c");
        pk_tensor(&b, &t);
        op(&b, 's');
        op(&b, 's');
        pk_str(&b, "seq");
        pk_global(&b, "mylib", "TensorList");
        op(&b, ')');
        op(&b, 'R');
        op(&b, '(');
        op(&b, 'N');
        pk_tensor(&b, &t);
        op(&b, 'e');
        op(&b, 's');
        op(&b, '.');
        mp_pickle_result r;
        mp_error e;
        CHECK_EQ(pickle_buf(&b, &r, &e), 0);
        CHECK_EQ(r.n_unsafe, 2);
        CHECK_EQ(r.n_tensors, 4);
        CHECK_STREQ(r.tensors[0].name, "cfg.a");
        CHECK_STREQ(r.tensors[1].name, "cfg.b");
        CHECK_STREQ(r.tensors[2].name, "cfg.c");
        CHECK_STREQ(r.tensors[3].name, "seq.1");
        mp_pickle_result_free(&r);
        free(b.p);
}

/* Cycles built through the memo do not hang the walk. */
static void test_pickle_cycle(void) {
        tspec t = { "FloatStorage", "0", 4, 0, 1, { 4 }, { 1 } };
        test_buf b = {0};
        pk_begin(&b);
        op(&b, ']');
        op(&b, 'q'); put_u8(&b, 0);
        op(&b, 'h'); put_u8(&b, 0);
        op(&b, 'a');                    /* L.append(L) */
        pk_tensor(&b, &t);
        op(&b, 'a');
        op(&b, '}');                    /* D = {"x": D} */
        op(&b, 'q'); put_u8(&b, 1);
        pk_str(&b, "x");
        op(&b, 'h'); put_u8(&b, 1);
        op(&b, 's');
        op(&b, 'a');
        op(&b, '.');
        expect_one_tensor(&b, "1");
        free(b.p);
}

/* Integer encodings: LONG1 negative and beyond 64 bits, BININT negative. */
static void test_pickle_ints(void) {
        tspec t = { "FloatStorage", "0", 300, 0, 1, { 4 }, { 1 } };
        test_buf b = {0};
        pk_begin(&b);
        pk_global(&b, "torch._utils", "_rebuild_tensor");
        op(&b, '(');
        op(&b, '(');
        pk_str(&b, "storage");
        pk_global(&b, "torch", t.storage_type);
        op(&b, 'M'); put_u16(&b, 77);          /* an int key */
        pk_str(&b, "cpu");
        op(&b, 0x8a); put_u8(&b, 2); put_u16(&b, 300);
        op(&b, 't');
        op(&b, 'Q');
        op(&b, 0x8a); put_u8(&b, 12);           /* 12-byte LONG1 = 5 */
        put_u8(&b, 5);
        for (int i = 0; i < 11; i++)
                put_u8(&b, 0);
        op(&b, '('); op(&b, 0x8b); put_u32(&b, 1); put_u8(&b, 4); op(&b, 't');
        op(&b, '('); op(&b, 0x8a); put_u8(&b, 0); op(&b, 't');     /* LONG1 of 0 bytes = 0 */
        op(&b, 't');
        op(&b, 'R');
        op(&b, '.');
        mp_pickle_result r;
        mp_error e;
        CHECK_EQ(pickle_buf(&b, &r, &e), 0);
        CHECK_EQ(r.n_tensors, 1);
        CHECK_STREQ(r.tensors[0].storage_key, "77");
        CHECK_EQ(r.tensors[0].storage_numel, 300);
        CHECK_EQ(r.tensors[0].storage_offset, 5);
        CHECK_EQ(r.tensors[0].shape[0], 4);
        CHECK_EQ(r.tensors[0].stride[0], 0);
        mp_pickle_result_free(&r);
        free(b.p);
}

/* A malformed pickle small enough to spell out byte by byte, with the error
 * it must give: code, offset of the offending opcode, part of the reason. */
typedef struct pickle_case {
        int line;
        const char *pickle;
        size_t len;
        int code;
        int64_t offset;
        const char *reason;
} pickle_case;

#define PICKLE(s) __LINE__, s, sizeof(s) - 1
#define P2 "\x80\x02"                  /* pk_begin(): PROTO 2 */

static const pickle_case short_pickles[] = {
        /* nothing, no STOP */
        { PICKLE(""),                   -EBADMSG, 0, "no STOP" },
        { PICKLE(P2 "}"),               -EBADMSG, 3, "no STOP" },

        /* stack underflow: POP on empty, STOP on empty, below a MARK */
        { PICKLE(P2 "0"),               -EBADMSG, 2, "stack underflow" },
        { PICKLE(P2 "."),               -EBADMSG, 2, "STOP: stack underflow" },
        { PICKLE(P2 "](Na"),            -EBADMSG, 5, "stack underflow" },  /* the list is below the mark */
        { PICKLE(P2 "NR"),              -EBADMSG, 3, "stack underflow" },

        /* memo index not defined, too large, negative */
        { PICKLE(P2 "Nh\x05"),                          -EBADMSG, 3, "memo index 5" },
        { PICKLE(P2 "Nr\x00\x00\x20\x00"),              -E2BIG,   3, "memo index" },  /* 1 << 21 */
        { PICKLE("Np-1\n"),                             -EBADMSG, 1, "negative" },
        { PICKLE("Ng99999999999999999999999\n"),        -E2BIG,   1, "memo index" },

        /* lengths beyond the data */
        { PICKLE(P2 "X\xff\xff\xff\xff" "abc"),                  -EBADMSG, 2, "4294967295 bytes" },
        { PICKLE(P2 "\x8d\xff\xff\xff\xff\xff\xff\xff\xff" "abc"),  -EBADMSG, 2, "BINUNICODE8" },
        { PICKLE(P2 "T\x00\x00\x00\x80"),                        -EBADMSG, 2, "negative length" },
        { PICKLE(P2 "\x8b\xff\xff\xff\xff"),                     -EBADMSG, 2, "negative byte count" },
        { PICKLE(P2 "J\x01\x00"),                                -EBADMSG, 2, "truncated" },
        /* PROTO 4, a FRAME of 100 bytes holding only "N." */
        { PICKLE("\x80\x04" "\x95\x64\x00\x00\x00\x00\x00\x00\x00" "N."), -EBADMSG, 2, "frame" },

        /* text arguments */
        { PICKLE("I12x\n."),           -EBADMSG, 0, "integer" },
        { PICKLE("Fnope\n."),          -EBADMSG, 0, "float" },
        { PICKLE("S'abc\n."),          -EBADMSG, 0, "quoted" },
        { PICKLE("S'\\x4'\n."),        -EBADMSG, 0, "\\x" },
        { PICKLE("V\\u12\n."),         -EBADMSG, 0, "\\u" },
        { PICKLE("V\\ud800\n."),       -EBADMSG, 0, "scalar" },
        { PICKLE("cos\nsystem"),       -EBADMSG, 0, "newline" },
        { PICKLE("cos\xff\nsystem\n."), -EBADMSG, 0, "UTF-8" },
        { PICKLE("P0\n."),             -EBADMSG, 0, "persistent id" },

        /* opcodes */
        { PICKLE(P2 "\xff"),            -EBADMSG, 2, "unknown opcode 0xff" },
        { PICKLE("\x80\x06"),           -ENOTSUP, 0, "protocol 6" },
        { PICKLE(P2 "(Nd"),             -EBADMSG, 4, "odd number" },
        { PICKLE(P2 "}(Nu"),            -EBADMSG, 5, "odd number" },
        { PICKLE(P2 "Nt"),              -EBADMSG, 3, "no MARK" },
        { PICKLE(P2 "(o"),              -EBADMSG, 3, "without a class" },
        { PICKLE(P2 "\x97"),            -EBADMSG, 2, "out-of-band" },
        { PICKLE(P2 "N\x98"),           -EBADMSG, 3, "READONLY_BUFFER" },
        { PICKLE(P2 "\x82\x00"),        -EBADMSG, 2, "not positive" },
        { PICKLE(P2 "K\x01" "K\x02" "\x93"), -EBADMSG, 6, "requires str" },   /* pk_int(1), pk_int(2) */
        { PICKLE(P2 "K\x01" ")R"),      -EBADMSG, 5, "not callable" },
        { PICKLE(P2 "}Na"),             -EBADMSG, 4, "cannot add items to a dict" },
        { PICKLE(P2 "X\x02\x00\x00\x00" "\xc3\x28"),     -EBADMSG, 2, "UTF-8" },
        { PICKLE(P2 "X\x03\x00\x00\x00" "\xe0\x80\xaf"), -EBADMSG, 2, "UTF-8" },    /* overlong */

        /* persistent ids: pk_str("storage") is "X" + u32 7 + "storage" */
        { PICKLE(P2 "X\x07\x00\x00\x00" "storage" "Q"), -EBADMSG, 14, "not a ('storage'" },
        { PICKLE(P2 "(" "X\x07\x00\x00\x00" "storage" "X\x01\x00\x00\x00" "x" "tQ"), -EBADMSG, 22, "2 fields" },
};

#undef P2
#undef PICKLE

static void test_pickle_malformed(void) {
        test_buf b = {0};
        size_t q;
        tspec t = { "FloatStorage", "0", 4, 0, 1, { 4 }, { 1 } };

        /* Each case from a heap copy of exactly its bytes, so that ASan sees
         * a read past the end (the literal's NUL would hide it). */
        for (size_t i = 0; i < sizeof(short_pickles) / sizeof(short_pickles[0]); i++) {
                const pickle_case *c = &short_pickles[i];

                b = (test_buf) {0};
                put(&b, c->pickle, c->len);
                expect_pickle_fail(&b, c->code, c->offset, c->reason, c->line);
                free(b.p);
        }

        /* 10000 nested lists */
        b = (test_buf) {0};
        for (int i = 0; i < 10000; i++)
                op(&b, ']');
        for (int i = 0; i < 9999; i++)
                op(&b, 'a');
        op(&b, '.');
        expect_pickle_fail(&b, -EBADMSG, 10000 + 64, "nested deeper", __LINE__);
        free(b.p);
        /* 10000 nested tuples through marks */
        b = (test_buf) {0};
        for (int i = 0; i < 10000; i++)
                op(&b, '(');
        for (int i = 0; i < 10000; i++)
                op(&b, 't');
        op(&b, '.');
        expect_pickle_fail(&b, -EBADMSG, 10000 + 65, "nested deeper", __LINE__);
        free(b.p);
        /* nesting grown after the fact (append into an already nested
         * list) is caught by the walk */
        b = (test_buf) {0};
        op(&b, ']');
        op(&b, 'q'); put_u8(&b, 0);             /* inner */
        for (int i = 0; i < 60; i++)
                op(&b, 0x85);                   /* wrap in 60 tuples */
        op(&b, 'h'); put_u8(&b, 0);
        size_t l5 = 0;
        for (int i = 0; i < 10; i++) {
                if (i == 4)
                        l5 = b.n;       /* L5: at walk depth 65 */
                op(&b, ']');
                op(&b, 'q'); put_u8(&b, (uint8_t) (i + 1));
                op(&b, 'a');                    /* prev.append(new) */
                op(&b, '0');
                op(&b, 'h'); put_u8(&b, (uint8_t) (i + 1));
        }
        op(&b, '0');
        op(&b, '.');
        expect_pickle_fail(&b, -EBADMSG, (int64_t) l5, "nested deeper", __LINE__);
        free(b.p);
        /* marks beyond the limit */
        b = (test_buf) {0};
        for (int i = 0; i < 70000; i++)
                op(&b, '(');
        expect_pickle_fail(&b, -E2BIG, 65536, "marks", __LINE__);
        free(b.p);
        /* stack beyond the limit */
        b = (test_buf) {0};
        pk_begin(&b);
        for (int i = 0; i < 70000; i++)
                op(&b, 'N');
        expect_pickle_fail(&b, -E2BIG, 2 + 65536, "stack deeper", __LINE__);
        free(b.p);

        /* REDUCE with arguments that are not a tuple */
        b = (test_buf) {0};
        pk_begin(&b);
        pk_global(&b, "collections", "OrderedDict"); op(&b, 'N');
        q = op(&b, 'R');
        expect_pickle_fail(&b, -EBADMSG, (int64_t) q, "not a tuple", __LINE__);
        free(b.p);

        /* persistent ids, the offending opcode found by position */
        b = (test_buf) {0};
        pk_begin(&b);
        op(&b, '('); pk_str(&b, "storage"); pk_str(&b, "x"); pk_str(&b, "0"); pk_str(&b, "cpu"); pk_int(&b, 1);
        op(&b, 't');
        q = op(&b, 'Q');
        expect_pickle_fail(&b, -EBADMSG, (int64_t) q, "not a torch storage class", __LINE__);
        free(b.p);
        b = (test_buf) {0};
        pk_begin(&b);
        op(&b, '('); pk_str(&b, "storage"); pk_global(&b, "torch", "FloatStorage"); pk_str(&b, "0\n");
        pk_str(&b, "cpu"); pk_int(&b, 1); op(&b, 't');
        q = op(&b, 'Q');
        expect_pickle_fail(&b, -EBADMSG, (int64_t) q, "control", __LINE__);
        free(b.p);
        b = (test_buf) {0};
        pk_begin(&b);
        op(&b, '('); pk_str(&b, "storage"); pk_global(&b, "torch", "FloatStorage"); pk_str(&b, "0");
        pk_str(&b, "cpu"); pk_int(&b, -1); op(&b, 't');
        q = op(&b, 'Q');
        expect_pickle_fail(&b, -EBADMSG, (int64_t) q, "storage size", __LINE__);
        free(b.p);

        /* tensor arguments */
        b = (test_buf) {0};
        pk_begin(&b);
        pk_global(&b, "torch._utils", "_rebuild_tensor_v2");
        op(&b, '('); pk_int(&b, 1); op(&b, 't');
        q = op(&b, 'R');
        expect_pickle_fail(&b, -EBADMSG, (int64_t) q, "1 arguments", __LINE__);
        free(b.p);
        b = (test_buf) {0};
        pk_begin(&b);
        tspec t9 = { "FloatStorage", "0", 512, 0, 9, { 2, 2, 2, 2, 2, 2, 2, 2, 2 },
                     { 256, 128, 64, 32, 16, 8, 4, 2, 1 } };
        q = pk_tensor(&b, &t9);
        expect_pickle_fail(&b, -ENOTSUP, (int64_t) q, "9 dimensions", __LINE__);
        free(b.p);
        b = (test_buf) {0};
        pk_begin(&b);
        tspec neg = t;
        neg.stride[0] = (uint64_t) -1;
        q = pk_tensor(&b, &neg);
        expect_pickle_fail(&b, -EBADMSG, (int64_t) q, "stride[0]", __LINE__);
        free(b.p);
        b = (test_buf) {0};
        pk_begin(&b);
        tspec cplx = t;
        cplx.storage_type = "ComplexFloatStorage";
        q = pk_tensor(&b, &cplx);
        expect_pickle_fail(&b, -ENOTSUP, (int64_t) q, "ComplexFloatStorage", __LINE__);
        free(b.p);
        b = (test_buf) {0};
        pk_begin(&b);
        pk_global(&b, "torch._utils", "_rebuild_parameter");
        op(&b, '('); pk_int(&b, 1); op(&b, 0x88); op(&b, 'N'); op(&b, 't');
        q = op(&b, 'R');
        expect_pickle_fail(&b, -EBADMSG, (int64_t) q, "not a tensor", __LINE__);
        free(b.p);

        /* a NUL inside a state dict key */
        b = (test_buf) {0};
        pk_begin(&b);
        op(&b, '}');
        size_t k = op(&b, 'X');
        put_u32(&b, 3);
        put(&b, "a\0b", 3);
        pk_tensor(&b, &t);
        op(&b, 's');
        op(&b, '.');
        expect_pickle_fail(&b, -EBADMSG, (int64_t) k, "NUL", __LINE__);
        free(b.p);
}

/* The limits on what a pickle may make the interpreter allocate. */
static void test_pickle_limits(void) {
        test_buf b = {0};

        /* a list grown by 8M appends of one memoized value: its item array
         * alone would need 128 MiB more when it doubles past 8M items, which
         * exceeds the 256 MiB budget */
        op(&b, ']');
        op(&b, 'N');
        op(&b, 'q'); put_u8(&b, 0);
        op(&b, 'a');
        size_t fail_at = 0;
        for (size_t k = 0; k < (1u << 23); k++) {
                op(&b, 'h'); put_u8(&b, 0);
                size_t a = op(&b, 'a');
                if (k + 2 == (1u << 23) + 1)
                        fail_at = a;
        }
        op(&b, '.');
        expect_pickle_fail(&b, -E2BIG, (int64_t) fail_at, "MiB", __LINE__);
        free(b.p);

        /* a malformed pickle names what it references before the error */
        b = (test_buf) {0};
        pk_begin(&b);
        pk_global(&b, "os", "system");
        op(&b, 'N');
        op(&b, 0x85);
        op(&b, 'R');
        size_t bad = op(&b, 'h');
        put_u8(&b, 3);
        expect_pickle_fail(&b, -EBADMSG, (int64_t) bad, "memo index 3 is not defined (before that, it references os.system",
                           __LINE__);
        free(b.p);

        /* more unsafe references than are recorded */
        b = (test_buf) {0};
        size_t at = 0;
        for (unsigned i = 0; i <= 4096; i++) {
                at = pk_global(&b, "os", "system");
                op(&b, '0');
        }
        op(&b, 'N');
        op(&b, '.');
        expect_pickle_fail(&b, -E2BIG, (int64_t) at, "4096 references to globals outside the allow-list (before that, "
                           "it references os.system and 4095 more", __LINE__);
        free(b.p);

        /* integers beyond 64 bits are values, not sizes */
        b = (test_buf) {0};
        put_s(&b, "ctorch._utils\n_rebuild_tensor\n((S'storage'\nctorch\nFloatStorage\nS'0'\nS'cpu'\nI4\ntQ"
                  "L123456789012345678901234567890L\n(I4\nt(I1\nt");
        size_t q = b.n;
        put_s(&b, "tR.");
        expect_pickle_fail(&b, -EBADMSG, (int64_t) q + 1, "storage offset", __LINE__);
        free(b.p);
        b = (test_buf) {0};
        pk_begin(&b);
        op(&b, 0x8a); put_u8(&b, 9);            /* 2^64: does not fit */
        for (int i = 0; i < 8; i++)
                put_u8(&b, 0);
        put_u8(&b, 1);
        op(&b, 0x8a); put_u8(&b, 9);            /* -1 in 9 bytes: fits */
        for (int i = 0; i < 9; i++)
                put_u8(&b, 0xff);
        op(&b, 0x86);
        op(&b, '.');
        mp_pickle_result r;
        mp_error e;
        CHECK_EQ(pickle_buf(&b, &r, &e), 0);
        mp_pickle_result_free(&r);
        free(b.p);
}

/* ---- torch checkpoints ------------------------------------------------------------ */

typedef struct ckpt {
        test_buf pkl;
        const char *prefix;
        zent extra[MAXZ];
        size_t n_extra;
} ckpt;

static test_buf ckpt_build(const ckpt *c, zlayout *l) {
        zent e[MAXZ];
        char name[64];
        size_t n = 0;
        snprintf(name, sizeof(name), "%s/data.pkl", c->prefix);
        e[n++] = (zent) { name, c->pkl.p, c->pkl.n, 0 };
        for (size_t i = 0; i < c->n_extra; i++)
                e[n++] = c->extra[i];
        return zip_build(e, n, true, l);
}

static void test_torch_valid(void) {
        static const uint16_t s0[6] = { 1, 2, 3, 4, 5, 6 };
        static const float s1[10] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 };
        static const float s2[4] = { 1, 2, 3, 4 };
        static const int64_t s3[2] = { -1, 7 };
        ckpt c = { .prefix = "archive" };
        pk_begin(&c.pkl);
        op(&c.pkl, '}');
        op(&c.pkl, '(');
        pk_str(&c.pkl, "a");
        tspec a = { "HalfStorage", "0", 6, 0, 2, { 2, 3 }, { 3, 1 } };
        pk_tensor(&c.pkl, &a);
        pk_str(&c.pkl, "view");                 /* a contiguous view inside a bigger storage */
        tspec v = { "FloatStorage", "1", 10, 3, 2, { 2, 2 }, { 2, 1 } };
        pk_tensor(&c.pkl, &v);
        pk_str(&c.pkl, "t");                    /* a transpose: strided */
        tspec t = { "FloatStorage", "2", 4, 0, 2, { 2, 2 }, { 1, 2 } };
        pk_tensor(&c.pkl, &t);
        pk_str(&c.pkl, "row");                  /* size-1 dims do not break contiguity */
        tspec row = { "FloatStorage", "1", 10, 4, 3, { 1, 1, 5 }, { 99, 7, 1 } };
        pk_tensor(&c.pkl, &row);
        pk_str(&c.pkl, "scalar");
        tspec sc = { "LongStorage", "3", 2, 1, 0, { 0 }, { 0 } };
        pk_tensor(&c.pkl, &sc);
        pk_str(&c.pkl, "empty");
        tspec em = { "LongStorage", "3", 2, 2, 2, { 0, 5 }, { 5, 1 } };
        pk_tensor(&c.pkl, &em);
        op(&c.pkl, 'u');
        op(&c.pkl, '.');
        c.extra[c.n_extra++] = (zent) { "archive/data/0", s0, sizeof(s0), 0 };
        c.extra[c.n_extra++] = (zent) { "archive/data/1", s1, sizeof(s1), 0 };
        c.extra[c.n_extra++] = (zent) { "archive/data/2", s2, sizeof(s2), 0 };
        c.extra[c.n_extra++] = (zent) { "archive/data/3", s3, sizeof(s3), 0 };
        c.extra[c.n_extra++] = (zent) { "archive/byteorder", "little", 6, 0 };
        c.extra[c.n_extra++] = (zent) { "archive/version", "3\n", 2, 0 };
        zlayout l;
        test_buf b = ckpt_build(&c, &l);

        mp_model *m;
        mp_error e;
        CHECK_EQ(torch_buf(&b, &m, &e), 0);
        CHECK_EQ(m->n_findings, 0);
        CHECK_EQ(m->n_tensors, 6);
        const char *order[] = { "a", "view", "t", "row", "scalar", "empty" };
        for (size_t i = 0; i < 6; i++) {
                CHECK_STREQ(m->tensors[i].name, order[i]);
                CHECK(m->tensors[i].source_name == NULL);
                CHECK_EQ(m->tensors[i].file_index, 3);
        }
        const mp_tensor *x = mtensor(m, "a");
        CHECK_EQ(x->dtype, MP_DTYPE_F16);
        CHECK_EQ(x->n_dims, 2);
        CHECK_EQ(x->shape[0], 2);
        CHECK_EQ(x->shape[1], 3);
        CHECK_EQ(x->n_elements, 6);
        CHECK_EQ(x->offset, l.data[1]);
        CHECK_EQ(x->length, 12);
        CHECK_EQ(x->flags, 0);
        CHECK(memcmp(b.p + x->offset, s0, 12) == 0);
        x = mtensor(m, "view");
        CHECK_EQ(x->dtype, MP_DTYPE_F32);
        CHECK_EQ(x->offset, l.data[2] + 12);
        CHECK_EQ(x->length, 16);
        CHECK_EQ(x->flags, 0);
        float f;
        memcpy(&f, b.p + x->offset, 4);
        CHECK(f == 3.0f);
        x = mtensor(m, "t");
        CHECK_EQ(x->flags, MP_TENSOR_NONCONTIGUOUS);
        CHECK_EQ(x->offset, l.data[3]);
        CHECK_EQ(x->length, 16);
        CHECK_EQ(x->n_elements, 4);
        x = mtensor(m, "row");
        CHECK_EQ(x->flags, 0);
        CHECK_EQ(x->n_dims, 3);
        CHECK_EQ(x->offset, l.data[2] + 16);
        CHECK_EQ(x->length, 20);
        x = mtensor(m, "scalar");
        CHECK_EQ(x->dtype, MP_DTYPE_I64);
        CHECK_EQ(x->n_dims, 0);
        CHECK_EQ(x->n_elements, 1);
        CHECK_EQ(x->offset, l.data[4] + 8);
        CHECK_EQ(x->length, 8);
        x = mtensor(m, "empty");
        CHECK_EQ(x->n_elements, 0);
        CHECK_EQ(x->length, 0);
        CHECK_EQ(x->offset, l.data[4] + 16);
        mp_model_free(m);
        free(b.p);
        free(c.pkl.p);
}

static void test_torch_findings(void) {
        static const uint16_t s0[4] = { 1, 2, 3, 4 };
        ckpt c = { .prefix = "evil" };
        pk_begin(&c.pkl);
        op(&c.pkl, '}');
        op(&c.pkl, '(');
        pk_str(&c.pkl, "weight");
        tspec w = { "HalfStorage", "0", 4, 0, 1, { 4 }, { 1 } };
        pk_tensor(&c.pkl, &w);
        pk_str(&c.pkl, "x");
        size_t g = pk_global(&c.pkl, "os", "system");
        op(&c.pkl, '(');
        pk_str(&c.pkl, "echo pwned\x1b[2J");
        op(&c.pkl, 't');
        op(&c.pkl, 'R');
        op(&c.pkl, 'u');
        op(&c.pkl, '.');
        c.extra[c.n_extra++] = (zent) { "evil/data/0", s0, sizeof(s0), 0 };
        c.extra[c.n_extra++] = (zent) { "evil/data/0", s0, 2, 0 };      /* a duplicate name */
        c.extra[c.n_extra++] = (zent) { "evil/data/0", s0, 4, 0 };      /* reported once */
        zlayout l;
        test_buf b = ckpt_build(&c, &l);

        mp_model *m;
        mp_error e;
        CHECK_EQ(torch_buf(&b, &m, &e), 0);
        CHECK_EQ(m->n_tensors, 1);
        CHECK_EQ(m->tensors[0].offset, l.data[1]);      /* the first copy */
        CHECK_EQ(m->n_findings, 2);
        const mp_finding *f = &m->findings[0];
        CHECK_EQ(f->kind, MP_FINDING_SUSPICIOUS);
        CHECK(strstr(f->detail, "evil/data/0") != NULL);
        CHECK_EQ(f->offset, l.data[2]);
        f = &m->findings[1];
        CHECK_EQ(f->kind, MP_FINDING_UNSAFE_PICKLE);
        CHECK_STREQ(f->file, "ckpt.pt");
        CHECK_EQ(f->offset, l.data[0] + g);
        CHECK_STREQ(f->detail, "pickle references os.system (not executed)");
        CHECK_STREQ(mp_finding_kind_name(f->kind), "unsafe-pickle-global");
        mp_model_free(m);
        free(b.p);
        free(c.pkl.p);
}

static void test_torch_malformed(void) {
        static const float s0[4] = { 1, 2, 3, 4 };
        tspec w = { "FloatStorage", "0", 4, 0, 1, { 4 }, { 1 } };
        zlayout l;
        test_buf b;
        ckpt c;

#define SIMPLE(pfx) \
        c = (ckpt) { .prefix = pfx }; \
        pk_begin(&c.pkl); op(&c.pkl, '}'); pk_str(&c.pkl, "w"); pk_tensor(&c.pkl, &w); op(&c.pkl, 's'); op(&c.pkl, '.')

        /* storage entry missing */
        SIMPLE("ar");
        b = ckpt_build(&c, &l);
        expect_torch_fail(&b, -EBADMSG, (int64_t) l.data[0], "ar/data/0' is missing", __LINE__);
        free(b.p);

        /* storage smaller than the pickle declares */
        c.extra[c.n_extra++] = (zent) { "ar/data/0", s0, 12, 0 };
        b = ckpt_build(&c, &l);
        expect_torch_fail(&b, -EBADMSG, (int64_t) l.data[1], "holds 12 bytes", __LINE__);
        free(b.p);

        /* compressed storage */
        c.extra[0] = (zent) { "ar/data/0", s0, 16, 8 };
        b = ckpt_build(&c, &l);
        expect_torch_fail(&b, -ENOTSUP, (int64_t) l.data[1], "compressed", __LINE__);
        free(b.p);
        free(c.pkl.p);

        /* Views that their 16-byte storage cannot hold, each reported at
         * the pickle (data[1]; the storage is data[0]). */
        static const struct {
                int line;
                tspec w;
                int code;
                const char *reason;
        } bad_views[] = {
                /* storage too small for the shape */
                { __LINE__, { "FloatStorage", "0", 4, 0, 1, { 5 }, { 1 } },
                  -EBADMSG, "reaches past the end" },
                /* strided, touching element 3 +1: fits, but not from offset 1 */
                { __LINE__, { "FloatStorage", "0", 4, 1, 1, { 2 }, { 3 } },
                  -EBADMSG, "reaches past the end" },
                /* shape product overflow */
                { __LINE__, { "FloatStorage", "0", 4, 0, 2, { 1ull << 40, 1ull << 40 }, { 1, 1 } },
                  -EOVERFLOW, "overflows" },
                /* a view whose extent overflows */
                { __LINE__, { "FloatStorage", "0", 4, 0, 1, { 3 }, { 1ull << 62 } },
                  -EBADMSG, "reaches past the end" },
        };
        for (size_t i = 0; i < sizeof(bad_views) / sizeof(bad_views[0]); i++) {
                w = bad_views[i].w;
                SIMPLE("ar");
                c.extra[c.n_extra++] = (zent) { "ar/data/0", s0, 16, 0 };
                b = ckpt_build(&c, &l);
                expect_torch_fail(&b, bad_views[i].code, (int64_t) l.data[1], bad_views[i].reason,
                                  bad_views[i].line);
                free(b.p);
                free(c.pkl.p);
        }
        w = (tspec) { "FloatStorage", "0", 4, 0, 1, { 4 }, { 1 } };

        /* names from the file are quoted safely in messages */
        c = (ckpt) { .prefix = "ar" };
        pk_begin(&c.pkl);
        op(&c.pkl, '}');
        pk_str(&c.pkl, "w\xc3\xa9\x1b[31m");
        pk_tensor(&c.pkl, &w);
        op(&c.pkl, 's');
        op(&c.pkl, '.');
        b = ckpt_build(&c, &l);
        expect_torch_fail(&b, -EBADMSG, (int64_t) l.data[0], "tensor 'w\xc3\xa9?[31m'", __LINE__);
        free(b.p);
        free(c.pkl.p);

        /* byteorder: its entry is data[2], after the storage and the pickle */
        static const struct {
                int line;
                const char *content;
                size_t len;
                uint16_t method;
                int code;
                const char *reason;
        } byteorders[] = {
                { __LINE__, "big", 3, 0, -ENOTSUP, "big-endian" },
                { __LINE__, "middle", 6, 0, -EBADMSG, "neither" },
                { __LINE__, "little-endian-please", 20, 0, -EBADMSG, "20 bytes" },
                { __LINE__, "little", 6, 8, -ENOTSUP, "compressed" },
        };
        SIMPLE("ar");
        c.extra[c.n_extra++] = (zent) { "ar/data/0", s0, 16, 0 };
        for (size_t i = 0; i < sizeof(byteorders) / sizeof(byteorders[0]); i++) {
                c.extra[1] = (zent) { "ar/byteorder", byteorders[i].content, byteorders[i].len,
                                      byteorders[i].method };
                c.n_extra = 2;
                b = ckpt_build(&c, &l);
                expect_torch_fail(&b, byteorders[i].code, (int64_t) l.data[2], byteorders[i].reason,
                                  byteorders[i].line);
                free(b.p);
        }
        c.n_extra = 1;

        /* data.pkl missing, twice, compressed, CRC mismatch */
        b = zip_build(c.extra, 1, false, &l);
        expect_torch_fail(&b, -EBADMSG, 0, "without ARCHIVE/data.pkl", __LINE__);
        free(b.p);
        c.extra[c.n_extra++] = (zent) { "other/data.pkl", c.pkl.p, c.pkl.n, 0 };
        b = ckpt_build(&c, &l);
        expect_torch_fail(&b, -EBADMSG, (int64_t) l.data[2], "two pickles", __LINE__);
        free(b.p);
        c.n_extra = 1;
        b = ckpt_build(&c, &l);
        set_le(&b, l.lho[0] + 8, 8, 2);
        set_le(&b, l.cde[0] + 10, 8, 2);
        expect_torch_fail(&b, -ENOTSUP, (int64_t) l.data[0], "compressed", __LINE__);
        free(b.p);
        b = ckpt_build(&c, &l);
        b.p[l.data[0] + 3] ^= 1;
        expect_torch_fail(&b, -EBADMSG, (int64_t) l.data[0], "CRC", __LINE__);
        free(b.p);
        b = ckpt_build(&c, &l);         /* a zero CRC is not checked */
        set_le(&b, l.cde[0] + 16, 0, 4);
        mp_model *m;
        mp_error e;
        CHECK_EQ(torch_buf(&b, &m, &e), 0);
        CHECK_EQ(m->n_tensors, 1);
        mp_model_free(m);
        free(b.p);
        free(c.pkl.p);

        /* a pickle error: the offset becomes a file offset */
        c = (ckpt) { .prefix = "ar" };
        pk_begin(&c.pkl);
        op(&c.pkl, '}');
        op(&c.pkl, 'h'); put_u8(&c.pkl, 9);
        op(&c.pkl, '.');
        b = ckpt_build(&c, &l);
        expect_torch_fail(&b, -EBADMSG, (int64_t) l.data[0] + 3, "memo index 9", __LINE__);
        free(b.p);
        free(c.pkl.p);
        c = (ckpt) { .prefix = "ar" };
        pk_begin(&c.pkl);
        op(&c.pkl, '}');
        b = ckpt_build(&c, &l);
        expect_torch_fail(&b, -EBADMSG, (int64_t) l.data[0] + 3, "no STOP", __LINE__);
        free(b.p);
        free(c.pkl.p);

        /* two tensors with one dotted name */
        c = (ckpt) { .prefix = "ar" };
        pk_begin(&c.pkl);
        op(&c.pkl, '}');
        pk_str(&c.pkl, "a.b");
        pk_tensor(&c.pkl, &w);
        op(&c.pkl, 's');
        pk_str(&c.pkl, "a");
        op(&c.pkl, '}');
        pk_str(&c.pkl, "b");
        pk_tensor(&c.pkl, &w);
        op(&c.pkl, 's');
        op(&c.pkl, 's');
        op(&c.pkl, '.');
        c.extra[c.n_extra++] = (zent) { "ar/data/0", s0, 16, 0 };
        b = ckpt_build(&c, &l);
        expect_torch_fail(&b, -EBADMSG, (int64_t) l.data[0], "two tensors are named 'a.b'", __LINE__);
        free(b.p);
        free(c.pkl.p);

        /* not a zip: legacy torch.save, bare pickle, truncated zip */
        b = (test_buf) {0};
        op(&b, 0x80); put_u8(&b, 2);
        put(&b, "\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 12);
        op(&b, '.');
        expect_torch_fail(&b, -ENOTSUP, 0, "legacy torch serialization", __LINE__);
        free(b.p);
        b = (test_buf) {0};
        pk_begin(&b);
        op(&b, 'N');
        op(&b, '.');
        expect_torch_fail(&b, -ENOTSUP, 0, "bare pickle", __LINE__);
        free(b.p);
        SIMPLE("ar");
        c.extra[c.n_extra++] = (zent) { "ar/data/0", s0, 16, 0 };
        b = ckpt_build(&c, &l);
        b.n = l.cd + 10;
        expect_torch_fail(&b, -EBADMSG, 0, "no end of central directory", __LINE__);
        free(b.p);
        free(c.pkl.p);
#undef SIMPLE
}

/* ---- the zoo ---------------------------------------------------------------------- */

static void compare_with_safetensors(const char *zoo, const char *family, size_t expect_n) {
        char *pt = NULL, *st = NULL;
        CHECK(asprintf(&pt, "%s/%s/base-1-pt/pytorch_model.bin", zoo, family) > 0);
        CHECK(asprintf(&st, "%s/%s/base-1/model.safetensors", zoo, family) > 0);

        mp_source src;
        mp_error e;
        mp_error_clear(&e);
        CHECK_EQ(mp_source_open(&src, pt, pt, &e), 0);
        mp_model *m = mp_model_new(NULL);
        CHECK(m);
        int r = mp_torch_load(m, 0, &src, &e);
        if (r < 0)
                fprintf(stderr, "%s: byte %" PRId64 ": %s\n", e.file, e.offset, e.reason);
        CHECK_EQ(r, 0);
        mp_source_close(&src);
        CHECK_EQ(m->n_findings, 0);
        CHECK_EQ(m->n_tensors, expect_n);

        size_t pt_len, st_len;
        char *ptb = test_read(pt, &pt_len);
        char *stb = test_read(st, &st_len);
        CHECK(st_len > 8);
        uint64_t hlen = 0;
        for (int i = 7; i >= 0; i--)
                hlen = (hlen << 8) | (uint8_t) stb[i];
        CHECK(hlen < st_len - 8);
        json_error_t je;
        json_t *h = json_loadb(stb + 8, hlen, 0, &je);
        CHECK(h);
        CHECK_EQ(json_object_size(h) - (json_object_get(h, "__metadata__") ? 1 : 0), expect_n);

        for (size_t i = 0; i < m->n_tensors; i++) {
                const mp_tensor *t = &m->tensors[i];
                json_t *j = json_object_get(h, t->name);
                if (!j)
                        fprintf(stderr, "%s missing from safetensors\n", t->name);
                CHECK(j);
                CHECK_STREQ(json_string_value(json_object_get(j, "dtype")), mp_dtype_name(t->dtype));
                json_t *shape = json_object_get(j, "shape");
                CHECK_EQ(json_array_size(shape), t->n_dims);
                for (uint32_t d = 0; d < t->n_dims; d++)
                        CHECK_EQ(json_integer_value(json_array_get(shape, d)), t->shape[d]);
                json_t *offs = json_object_get(j, "data_offsets");
                uint64_t s = (uint64_t) json_integer_value(json_array_get(offs, 0));
                uint64_t end = (uint64_t) json_integer_value(json_array_get(offs, 1));
                CHECK_EQ(end - s, t->length);
                CHECK_EQ(t->flags, 0);
                CHECK(t->offset + t->length <= pt_len);
                CHECK(8 + hlen + end <= st_len);
                CHECK(memcmp(ptb + t->offset, stb + 8 + hlen + s, t->length) == 0);
                CHECK_EQ(t->offset % 64, 0);    /* torch.save alignment */
        }
        json_decref(h);
        free(ptb);
        free(stb);
        free(pt);
        free(st);
        mp_model_free(m);
}

static void test_zoo_checkpoints(void) {
        const char *zoo = test_zoo();
        if (!zoo) {
                fprintf(stderr, "zoo missing: zoo checkpoints skipped\n");
                return;
        }
        compare_with_safetensors(zoo, "llama", 39);
        compare_with_safetensors(zoo, "gpt2", 52);

        /* the zip layout of a real torch.save: zip64 records, FB padding */
        char *pt = NULL;
        CHECK(asprintf(&pt, "%s/llama/base-1-pt/pytorch_model.bin", zoo) > 0);
        mp_source src;
        mp_error e;
        CHECK_EQ(mp_source_open(&src, pt, pt, &e), 0);
        mp_zip z;
        CHECK_EQ(mp_zip_open(&src, &z, &e), 0);
        CHECK_EQ(z.n_entries, 41);
        const mp_zip_entry *pkl = mp_zip_find(&z, "pytorch_model/data.pkl");
        CHECK(pkl);
        CHECK_EQ(pkl->size, 4084);
        CHECK_EQ(pkl->method, 0);
        const mp_zip_entry *d0 = mp_zip_find(&z, "pytorch_model/data/0");
        CHECK(d0);
        CHECK_EQ(d0->size, 1024000);
        CHECK_EQ(d0->data_offset, 4224);
        mp_zip_free(&z);
        mp_source_close(&src);
        free(pt);
}

/* ---- fuzz regressions ------------------------------------------------------------- */

static void run_one(const uint8_t *d, size_t n) {
        mp_pickle_result r;
        mp_error e;
        if (mp_pickle_parse("fuzz", d, n, &r, &e) >= 0)
                mp_pickle_result_free(&r);
        else
                CHECK(e.reason[0]);

        mp_source src;
        mp_source_init_mem(&src, "fuzz", d, n);
        mp_model *m = mp_model_new(NULL);
        CHECK(m);
        if (mp_torch_load(m, 0, &src, &e) < 0)
                CHECK(e.reason[0]);
        mp_model_free(m);
}

static void test_regressions(void) {
        const char *root = getenv("MODELPROV_SOURCE_ROOT");
        if (!root) {
                fprintf(stderr, "MODELPROV_SOURCE_ROOT unset: regressions skipped\n");
                return;
        }
        char *dir = NULL;
        CHECK(asprintf(&dir, "%s/tests/fuzz/regressions/pickle", root) > 0);
        DIR *d = opendir(dir);
        CHECK(d);
        size_t count = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                char *path = NULL;
                CHECK(asprintf(&path, "%s/%s", dir, de->d_name) > 0);
                size_t n;
                char *data = test_read(path, &n);
                run_one((const uint8_t *) data, n);
                free(data);
                free(path);
                count++;
        }
        closedir(d);
        fprintf(stderr, "%zu regression inputs replayed\n", count);
        CHECK(count > 0);
        free(dir);
}

int main(void) {
        RUN(test_zip_valid);
        RUN(test_zip_duplicates);
        RUN(test_zip_malformed);
        RUN(test_zip64_extra);
        RUN(test_pickle_state_dict);
        RUN(test_pickle_protocol0);
        RUN(test_pickle_protocol4);
        RUN(test_pickle_unsafe);
        RUN(test_pickle_long_global);
        RUN(test_pickle_names);
        RUN(test_pickle_module);
        RUN(test_pickle_from_type);
        RUN(test_pickle_dict_subclass);
        RUN(test_pickle_cycle);
        RUN(test_pickle_ints);
        RUN(test_pickle_malformed);
        RUN(test_pickle_limits);
        RUN(test_torch_valid);
        RUN(test_torch_findings);
        RUN(test_torch_malformed);
        RUN(test_zoo_checkpoints);
        RUN(test_regressions);
        return 0;
}
