/* torch.c - reader for PyTorch zip checkpoints (torch.save since 1.6).
 *
 * A checkpoint is a zip: ARCHIVE/data.pkl is the pickled object (a state
 * dict), ARCHIVE/data/KEY are the raw storages, stored uncompressed so they
 * can be mapped in place; ARCHIVE/byteorder says "little" when present.
 * data.pkl goes through the restricted interpreter of pickle.c, which never
 * runs anything; here its tensor references are resolved against the zip
 * (entry present, stored, of the size the pickle declares, the view inside
 * the storage) and its unsafe global references become findings with their
 * absolute offset in the file. */
#include "formats/torch.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/pickle.h"
#include "formats/zip.h"
#include "util/macro.h"
#include "util/strutil.h"

#define PICKLE_MAX      (256u << 20)
#define BYTEORDER_MAX   16u
#define TEXT_MAX        160u    /* bytes of a name quoted in a message */

/* torch.save before 1.6 wrote a pickle stream starting with this magic
 * number (0x1950a86a20f9469cfc6c) as a LONG1. */
static const uint8_t legacy_magic[] = { 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19 };

static int64_t off64(uint64_t v) {
        return v > INT64_MAX ? INT64_MAX : (int64_t) v;
}

/* Names from the file quoted in messages and findings: like mp_printable()
 * (control characters become '?', long text is cut), and as findings end up
 * in JSON, bytes that are not valid UTF-8 become '?' too. */
typedef struct text { char s[TEXT_MAX + 4]; } text;

static size_t utf8_len(const uint8_t *s) {
        uint8_t c = s[0];
        size_t len;
        uint32_t cp, min;

        if ((c & 0xE0) == 0xC0)
                len = 2, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0)
                len = 3, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0)
                len = 4, cp = c & 0x07, min = 0x10000;
        else
                return 0;
        for (size_t k = 1; k < len; k++) {
                if ((s[k] & 0xC0) != 0x80)      /* also stops at the NUL */
                        return 0;
                cp = (cp << 6) | (s[k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                return 0;
        return len;
}

static text quote(const char *name) {
        const uint8_t *s = (const uint8_t *) name;
        text t;
        size_t o = 0;

        while (*s && o < TEXT_MAX) {
                if (*s < 0x80) {
                        t.s[o++] = (*s < 0x20 || *s == 0x7f) ? '?' : (char) *s;
                        s++;
                        continue;
                }
                size_t len = utf8_len(s);
                if (len == 0 || o + len > TEXT_MAX) {
                        t.s[o++] = '?';
                        s += len == 0 ? 1 : len;
                        continue;
                }
                memcpy(t.s + o, s, len);
                o += len;
                s += len;
        }
        if (*s) {
                memcpy(t.s + o, "...", 3);
                o += 3;
        }
        t.s[o] = 0;
        return t;
}

static uint32_t crc32_of(const uint8_t *buf, size_t len) {
        uint32_t table[256];

        for (uint32_t i = 0; i < 256; i++) {
                uint32_t c = i;
                for (int k = 0; k < 8; k++)
                        c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
                table[i] = c;
        }
        uint32_t crc = UINT32_MAX;
        for (size_t i = 0; i < len; i++)
                crc = table[(crc ^ buf[i]) & 0xFF] ^ (crc >> 8);
        return crc ^ UINT32_MAX;
}

/* Files that are pickles rather than zips: the legacy format, or a bare
 * pickle.  Neither can be located tensor by tensor, so both are refused. */
static int check_pickle_file(const mp_source *src, mp_error *err) {
        uint8_t h[32];
        size_t n = src->size < sizeof(h) ? (size_t) src->size : sizeof(h);
        int r = mp_source_pread(src, h, n, 0, err);
        if (r < 0)
                return r;
        if (n < 2 || h[0] != 0x80 || h[1] > 5)
                return 0;

        size_t i = 2;
        if (n >= i + 9 && h[i] == 0x95)        /* FRAME */
                i += 9;
        if (n >= i + sizeof(legacy_magic) && memcmp(h + i, legacy_magic, sizeof(legacy_magic)) == 0)
                return mp_error_set(err, -ENOTSUP, src->label, 0,
                                    "legacy torch serialization (before torch 1.6) not supported");
        return mp_error_set(err, -ENOTSUP, src->label, 0,
                            "a bare pickle, not a torch.save zip checkpoint: not supported");
}

/* ---- a sorted view of the zip, for lookups and duplicate detection ---- */

static int entry_cmp(const void *a, const void *b) {
        const mp_zip_entry *x = *(const mp_zip_entry *const *) a, *y = *(const mp_zip_entry *const *) b;
        int c = strcmp(x->name, y->name);
        if (c != 0)
                return c;
        return x < y ? -1 : x > y;      /* the first in the directory first */
}

typedef struct zip_index {
        const mp_zip_entry **sorted;
        size_t n;
} zip_index;

static const mp_zip_entry *index_find(const zip_index *ix, const char *name) {
        size_t lo = 0, hi = ix->n;

        while (lo < hi) {       /* the first entry >= name */
                size_t mid = lo + (hi - lo) / 2;
                if (strcmp(ix->sorted[mid]->name, name) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo < ix->n && strcmp(ix->sorted[lo]->name, name) == 0 ? ix->sorted[lo] : NULL;
}

/* Zip readers disagree on which copy of a duplicated name they return (the
 * first here and in mp_zip_find; the last in Python's zipfile): a way to show
 * one content to a scanner and another to a loader. */
static int report_duplicates(mp_model *m, const mp_source *src, const zip_index *ix, mp_error *err) {
        for (size_t i = 1; i < ix->n; i++) {
                if (strcmp(ix->sorted[i]->name, ix->sorted[i - 1]->name) != 0)
                        continue;
                if (i >= 2 && strcmp(ix->sorted[i]->name, ix->sorted[i - 2]->name) == 0)
                        continue;       /* once per name */
                if (mp_model_add_finding(m, MP_FINDING_SUSPICIOUS, src->label, off64(ix->sorted[i]->data_offset),
                                         "zip entry '%s' appears more than once; the first copy was read, "
                                         "other zip readers may load another", quote(ix->sorted[i]->name).s) < 0)
                        return mp_error_set(err, -ENOMEM, src->label, -1, "out of memory");
        }
        return 0;
}

/* The single ARCHIVE/data.pkl (ARCHIVE without '/'); sets *prefix_len. */
static int find_data_pkl(const mp_source *src, const mp_zip *z, const mp_zip_entry **ret, size_t *prefix_len,
                         mp_error *err) {
        static const char suffix[] = "/data.pkl";
        const mp_zip_entry *found = NULL;

        for (size_t i = 0; i < z->n_entries; i++) {
                const char *name = z->entries[i].name;
                size_t n = strlen(name);
                if (n <= strlen(suffix) || !mp_has_suffix(name, suffix) || memchr(name, '/', n - strlen(suffix)))
                        continue;
                if (found && strcmp(found->name, name) == 0)
                        continue;       /* a duplicate: reported as such */
                if (found)
                        return mp_error_set(err, -EBADMSG, src->label, off64(z->entries[i].data_offset),
                                            "two pickles in one checkpoint: '%s' and '%s'", quote(found->name).s,
                                            quote(name).s);
                found = &z->entries[i];
        }
        if (!found)
                return mp_error_set(err, -EBADMSG, src->label, 0,
                                    "zip archive without ARCHIVE/data.pkl: not a torch.save checkpoint");
        *ret = found;
        *prefix_len = strlen(found->name) - strlen(suffix);
        return 0;
}

static int check_byteorder(const mp_source *src, const zip_index *ix, const char *prefix, mp_error *err) {
        _cleanup_(freep) char *name = NULL;
        if (asprintf(&name, "%s/byteorder", prefix) < 0)
                return mp_error_set(err, -ENOMEM, src->label, -1, "out of memory");
        const mp_zip_entry *e = index_find(ix, name);
        if (!e)
                return 0;       /* older torch: little-endian implied */

        if (e->method != 0)
                return mp_error_set(err, -ENOTSUP, src->label, off64(e->data_offset),
                                    "'%s' is compressed (method %u)", quote(name).s, e->method);
        if (e->size > BYTEORDER_MAX)
                return mp_error_set(err, -EBADMSG, src->label, off64(e->data_offset),
                                    "'%s' is %" PRIu64 " bytes", quote(name).s, e->size);
        _cleanup_(freep) char *v = NULL;
        int r = mp_source_read_alloc(src, e->data_offset, e->size, BYTEORDER_MAX, &v, err);
        if (r < 0)
                return r;
        if (e->size == 6 && memcmp(v, "little", 6) == 0)
                return 0;
        if (e->size == 3 && memcmp(v, "big", 3) == 0)
                return mp_error_set(err, -ENOTSUP, src->label, off64(e->data_offset),
                                    "big-endian checkpoint not supported");
        return mp_error_set(err, -EBADMSG, src->label, off64(e->data_offset), "'%s' is neither 'little' nor 'big'",
                            quote(name).s);
}

static int read_pickle(const mp_source *src, const mp_zip_entry *e, uint8_t **ret, mp_error *err) {
        if (e->method != 0)
                return mp_error_set(err, -ENOTSUP, src->label, off64(e->data_offset),
                                    "'%s' is compressed (method %u); torch.save stores it", quote(e->name).s, e->method);
        if (e->size > PICKLE_MAX)
                return mp_error_set(err, -E2BIG, src->label, off64(e->data_offset),
                                    "'%s' is %" PRIu64 " bytes (limit %u MiB)", quote(e->name).s, e->size,
                                    PICKLE_MAX >> 20);
        char *buf = NULL;
        int r = mp_source_read_alloc(src, e->data_offset, e->size, PICKLE_MAX, &buf, err);
        if (r < 0)
                return r;
        /* A reader that checks CRCs (torch's does) refuses a mismatch; a zero
         * CRC is left alone, as some writers skip computing it. */
        if (e->crc32 != 0 && crc32_of((const uint8_t *) buf, (size_t) e->size) != e->crc32) {
                free(buf);
                return mp_error_set(err, -EBADMSG, src->label, off64(e->data_offset), "'%s': CRC-32 mismatch",
                                    quote(e->name).s);
        }
        *ret = (uint8_t *) buf;
        return 0;
}

/* ---- tensors ---- */

typedef struct tensor_ctx {
        const mp_source *src;
        const zip_index *ix;
        const char *prefix;
        uint64_t pkl_offset;    /* where data.pkl starts: errors without a better place */
        size_t file_index;
} tensor_ctx;

/* The end (in elements) of the storage region a view touches:
 * storage_offset + 1 + sum((size - 1) * stride), or storage_offset if empty. */
static int view_end(const mp_pickle_tensor *pt, uint64_t n_elements, uint64_t *ret) {
        uint64_t extent = 0;

        if (n_elements > 0) {
                extent = 1;
                for (uint32_t d = 0; d < pt->n_dims; d++) {
                        uint64_t x;
                        if (mul_overflow_u64(pt->shape[d] - 1, pt->stride[d], &x) ||
                            add_overflow_u64(extent, x, &extent))
                                return -EOVERFLOW;
                }
        }
        if (add_overflow_u64(pt->storage_offset, extent, ret))
                return -EOVERFLOW;
        return 0;
}

/* Row-major strides, ignoring dimensions of size 1 as torch does. */
static bool is_contiguous(const mp_pickle_tensor *pt, uint64_t n_elements) {
        uint64_t expected = 1;

        if (n_elements == 0)
                return true;
        for (uint32_t d = pt->n_dims; d-- > 0;) {
                if (pt->shape[d] != 1 && pt->stride[d] != expected)
                        return false;
                expected *= pt->shape[d];       /* <= n_elements: no overflow */
        }
        return true;
}

static int locate_tensor(const tensor_ctx *c, const mp_pickle_tensor *pt, mp_tensor *t, mp_error *err) {
        const char *label = c->src->label;
        _cleanup_(freep) char *entry = NULL;
        int r;

        if (asprintf(&entry, "%s/data/%s", c->prefix, pt->storage_key) < 0)
                return mp_error_set(err, -ENOMEM, label, -1, "out of memory");
        const mp_zip_entry *e = index_find(c->ix, entry);
        if (!e)
                return mp_error_set(err, -EBADMSG, label, off64(c->pkl_offset),
                                    "tensor '%s': storage '%s' is missing from the archive", quote(pt->name).s,
                                    quote(entry).s);
        if (e->method != 0)
                return mp_error_set(err, -ENOTSUP, label, off64(e->data_offset),
                                    "tensor '%s': storage '%s' is compressed (method %u); only stored storages are supported",
                                    quote(pt->name).s, quote(entry).s, e->method);

        uint64_t elsize, storage_bytes;
        r = mp_dtype_bytes(pt->dtype, 1, &elsize);
        if (r < 0)
                return mp_error_set(err, -ENOTSUP, label, off64(c->pkl_offset), "tensor '%s': unsupported dtype",
                                    quote(pt->name).s);
        if (mul_overflow_u64(pt->storage_numel, elsize, &storage_bytes) || storage_bytes != e->size)
                return mp_error_set(err, -EBADMSG, label, off64(e->data_offset),
                                    "storage '%s' holds %" PRIu64 " bytes, the pickle declares %" PRIu64
                                    " elements of %s", quote(entry).s, e->size, pt->storage_numel,
                                    mp_dtype_name(pt->dtype));

        uint64_t n = 1, end;
        for (uint32_t d = 0; d < pt->n_dims; d++)
                if (mul_overflow_u64(n, pt->shape[d], &n))
                        return mp_error_set(err, -EOVERFLOW, label, off64(e->data_offset),
                                            "tensor '%s': shape product overflows", quote(pt->name).s);
        if (view_end(pt, n, &end) < 0 || end > pt->storage_numel)
                return mp_error_set(err, -EBADMSG, label, off64(e->data_offset),
                                    "tensor '%s' (offset %" PRIu64 ", %" PRIu64 " elements) reaches past the end of "
                                    "storage '%s' (%" PRIu64 " elements)", quote(pt->name).s, pt->storage_offset, n,
                                    quote(entry).s, pt->storage_numel);

        *t = (mp_tensor) {
                .name = pt->name, .dtype = pt->dtype, .n_dims = pt->n_dims, .n_elements = n,
                .file_index = c->file_index,
        };
        memcpy(t->shape, pt->shape, sizeof(uint64_t) * pt->n_dims);

        if (is_contiguous(pt, n)) {
                t->offset = e->data_offset + pt->storage_offset * elsize;      /* <= data end: checked */
                t->length = n * elsize;
                return mp_tensor_check(t, e->data_offset, e->data_offset + e->size, label, err);
        }
        /* A strided view cannot be streamed as is: point at the storage,
         * up to the last element the view touches. */
        t->flags = MP_TENSOR_NONCONTIGUOUS;
        t->offset = e->data_offset;
        t->length = end * elsize;
        return 0;
}

static int name_cmp(const void *a, const void *b) {
        return strcmp((*(const mp_tensor *const *) a)->name, (*(const mp_tensor *const *) b)->name);
}

/* Dotted names can collide ({"a.b": x} and {"a": {"b": y}}); a directory
 * with two tensors of one name would be ambiguous. */
static int check_unique_names(const tensor_ctx *c, mp_tensor *ts, size_t n, mp_error *err) {
        if (n < 2)
                return 0;
        _cleanup_(freep) const mp_tensor **v = calloc(n, sizeof(*v));
        if (!v)
                return mp_error_set(err, -ENOMEM, c->src->label, -1, "out of memory");
        for (size_t i = 0; i < n; i++)
                v[i] = &ts[i];
        qsort(v, n, sizeof(*v), name_cmp);
        for (size_t i = 1; i < n; i++)
                if (strcmp(v[i]->name, v[i - 1]->name) == 0)
                        return mp_error_set(err, -EBADMSG, c->src->label, off64(c->pkl_offset),
                                            "two tensors are named '%s'", quote(v[i]->name).s);
        return 0;
}

static int add_tensors(mp_model *m, const tensor_ctx *c, const mp_pickle_result *pr, mp_error *err) {
        _cleanup_(freep) mp_tensor *ts = NULL;
        int r;

        if (pr->n_tensors == 0)
                return 0;
        ts = calloc(pr->n_tensors, sizeof(mp_tensor));
        if (!ts)
                return mp_error_set(err, -ENOMEM, c->src->label, -1, "out of memory");

        /* Everything is validated before the model is touched. */
        for (size_t i = 0; i < pr->n_tensors; i++) {
                r = locate_tensor(c, &pr->tensors[i], &ts[i], err);
                if (r < 0)
                        return r;
        }
        r = check_unique_names(c, ts, pr->n_tensors, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < pr->n_tensors; i++)
                if (mp_model_add_tensor(m, &ts[i]) < 0)
                        return mp_error_set(err, -ENOMEM, c->src->label, -1, "out of memory");
        return 0;
}

static int add_findings(mp_model *m, const mp_source *src, const mp_pickle_result *pr, uint64_t pkl_offset,
                        mp_error *err) {
        for (size_t i = 0; i < pr->n_unsafe; i++) {
                const mp_pickle_global *g = &pr->unsafe[i];
                if (mp_model_add_finding(m, MP_FINDING_UNSAFE_PICKLE, src->label, off64(pkl_offset + g->offset),
                                         "pickle references %s.%s (not executed)", quote(g->module).s,
                                         quote(g->name).s) < 0)
                        return mp_error_set(err, -ENOMEM, src->label, -1, "out of memory");
        }
        return 0;
}

static void zip_index_free(zip_index *ix) {
        free(ix->sorted);
}

int mp_torch_load(mp_model *m, size_t file_index, const mp_source *src, mp_error *err) {
        assert(m);
        assert(src);

        int r = check_pickle_file(src, err);
        if (r < 0)
                return r;

        _cleanup_(mp_zip_free) mp_zip z = {0};
        r = mp_zip_open(src, &z, err);
        if (r < 0)
                return r;

        _cleanup_(zip_index_free) zip_index ix = { .n = z.n_entries };
        if (z.n_entries > 0) {
                ix.sorted = calloc(z.n_entries, sizeof(*ix.sorted));
                if (!ix.sorted)
                        return mp_error_set(err, -ENOMEM, src->label, -1, "out of memory");
                for (size_t i = 0; i < z.n_entries; i++)
                        ix.sorted[i] = &z.entries[i];
                qsort(ix.sorted, z.n_entries, sizeof(*ix.sorted), entry_cmp);
        }
        r = report_duplicates(m, src, &ix, err);
        if (r < 0)
                return r;

        const mp_zip_entry *pkl = NULL;
        size_t prefix_len = 0;
        r = find_data_pkl(src, &z, &pkl, &prefix_len, err);
        if (r < 0)
                return r;
        _cleanup_(freep) char *prefix = strndup(pkl->name, prefix_len);
        if (!prefix)
                return mp_error_set(err, -ENOMEM, src->label, -1, "out of memory");
        r = check_byteorder(src, &ix, prefix, err);
        if (r < 0)
                return r;

        _cleanup_(freep) uint8_t *buf = NULL;
        r = read_pickle(src, pkl, &buf, err);
        if (r < 0)
                return r;

        /* The interpreter reports offsets inside data.pkl; make them file
         * offsets. */
        _cleanup_(mp_pickle_result_free) mp_pickle_result pr = {0};
        mp_error perr;
        mp_error_clear(&perr);
        r = mp_pickle_parse(src->label, buf, (size_t) pkl->size, &pr, &perr);
        if (r < 0) {
                if (perr.offset >= 0)
                        perr.offset = off64(pkl->data_offset + (uint64_t) perr.offset);
                if (err)
                        *err = perr;
                return r;
        }

        r = add_findings(m, src, &pr, pkl->data_offset, err);
        if (r < 0)
                return r;

        tensor_ctx c = {
                .src = src, .ix = &ix, .prefix = prefix, .pkl_offset = pkl->data_offset, .file_index = file_index,
        };
        return add_tensors(m, &c, &pr, err);
}
