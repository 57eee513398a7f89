/* gguf.c - reader for GGUF v2/v3 files (llama.cpp, Ollama, LM Studio).
 *
 * The header (key/value metadata and tensor infos) is parsed through a small
 * buffered reader over mp_source: a 64 KiB window, so that a header with a
 * large vocabulary costs few syscalls and the data section (many GiB) is
 * never read here.  Every count and length from the file is checked against
 * a limit and against the bytes actually left in the file before anything is
 * allocated or skipped.
 *
 * Parsing fills a private gguf_file first; the model is only touched once the
 * whole header has been validated (tensor ranges, alignment, overlaps,
 * duplicates), so a malformed file leaves nothing half-added. */
#include "formats/gguf.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/gguf_names.h"
#include "util/macro.h"

#define GGUF_MAGIC              0x46554747u     /* "GGUF" read as a little-endian u32 */
#define GGUF_DEFAULT_ALIGNMENT  32u
#define READER_WINDOW           (64u * 1024)
/* Keys and tensor names are identifiers (ggml caps tensor names at 64
 * bytes); a longer one is hostile, not a model. */
#define MAX_NAME                4096u
/* Metadata strings longer than this (chat templates, licenses) are not kept:
 * the metadata record shows "[string of N bytes]" instead. */
#define MAX_KEPT_STRING         4096u

/* Smallest encodings, used to check counts against the bytes left before
 * looping or allocating: a kv is key length (the key may be empty) + type +
 * 1 byte of value; a tensor info is name length + n_dims + type + offset. */
#define MIN_KV_BYTES            (8u + 4u + 1u)
#define MIN_TENSOR_INFO_BYTES   (8u + 4u + 4u + 8u)

enum {
        GGUF_UINT8 = 0, GGUF_INT8, GGUF_UINT16, GGUF_INT16, GGUF_UINT32, GGUF_INT32,
        GGUF_FLOAT32, GGUF_BOOL, GGUF_STRING, GGUF_ARRAY, GGUF_UINT64, GGUF_INT64,
        GGUF_FLOAT64, _GGUF_TYPE_MAX,
};

static const struct {
        const char *name;
        uint8_t size;           /* encoded bytes of a scalar; 0 for string/array */
} value_types[_GGUF_TYPE_MAX] = {
        [GGUF_UINT8]   = { "UINT8", 1 },   [GGUF_INT8]    = { "INT8", 1 },
        [GGUF_UINT16]  = { "UINT16", 2 },  [GGUF_INT16]   = { "INT16", 2 },
        [GGUF_UINT32]  = { "UINT32", 4 },  [GGUF_INT32]   = { "INT32", 4 },
        [GGUF_FLOAT32] = { "FLOAT32", 4 }, [GGUF_BOOL]    = { "BOOL", 1 },
        [GGUF_STRING]  = { "STRING", 0 },  [GGUF_ARRAY]   = { "ARRAY", 0 },
        [GGUF_UINT64]  = { "UINT64", 8 },  [GGUF_INT64]   = { "INT64", 8 },
        [GGUF_FLOAT64] = { "FLOAT64", 8 },
};

/* Bytes an element of type t takes at least (strings: their length field;
 * arrays: element type + count). */
static uint64_t min_value_bytes(uint32_t t) {
        if (t == GGUF_STRING)
                return 8;
        if (t == GGUF_ARRAY)
                return 12;
        return value_types[t].size;
}

mp_dtype mp_gguf_type_to_dtype(uint32_t ggml_type) {
        switch (ggml_type) {
        case 0:  return MP_DTYPE_F32;
        case 1:  return MP_DTYPE_F16;
        case 2:  return MP_DTYPE_Q4_0;
        case 3:  return MP_DTYPE_Q4_1;
        case 6:  return MP_DTYPE_Q5_0;
        case 7:  return MP_DTYPE_Q5_1;
        case 8:  return MP_DTYPE_Q8_0;
        case 9:  return MP_DTYPE_Q8_1;
        case 10: return MP_DTYPE_Q2_K;
        case 11: return MP_DTYPE_Q3_K;
        case 12: return MP_DTYPE_Q4_K;
        case 13: return MP_DTYPE_Q5_K;
        case 14: return MP_DTYPE_Q6_K;
        case 15: return MP_DTYPE_Q8_K;
        case 24: return MP_DTYPE_I8;
        case 25: return MP_DTYPE_I16;
        case 26: return MP_DTYPE_I32;
        case 27: return MP_DTYPE_I64;
        case 28: return MP_DTYPE_F64;
        case 16: return MP_DTYPE_IQ2_XXS;
        case 17: return MP_DTYPE_IQ2_XS;
        case 18: return MP_DTYPE_IQ3_XXS;
        case 19: return MP_DTYPE_IQ1_S;
        case 20: return MP_DTYPE_IQ4_NL;
        case 21: return MP_DTYPE_IQ3_S;
        case 22: return MP_DTYPE_IQ2_S;
        case 23: return MP_DTYPE_IQ4_XS;
        case 29: return MP_DTYPE_IQ1_M;
        case 30: return MP_DTYPE_BF16;
        case 34: return MP_DTYPE_TQ1_0;
        case 35: return MP_DTYPE_TQ2_0;
        case 39: return MP_DTYPE_MXFP4;
        default: return MP_DTYPE_INVALID;      /* 4, 5 were removed from ggml */
        }
}

/* ---- buffered reader ---------------------------------------------------- */

typedef struct reader {
        const mp_source *src;
        mp_error *err;
        uint64_t pos;           /* file offset of the next byte to read */
        uint8_t *win;           /* READER_WINDOW bytes */
        uint64_t win_start;     /* file offset of win[0] */
        size_t win_len;         /* valid bytes in win */
} reader;

static int64_t off64(uint64_t o) {
        return o > INT64_MAX ? INT64_MAX : (int64_t) o;
}

static uint64_t rd_left(const reader *r) {
        return r->pos < r->src->size ? r->src->size - r->pos : 0;
}

static int rd_bytes(reader *r, void *dst, size_t n, const char *what) {
        int k;

        if (n > rd_left(r))
                return mp_error_set(r->err, -EBADMSG, r->src->label, off64(r->pos),
                                    "truncated: %s needs %zu bytes, %" PRIu64 " left in the file",
                                    what, n, rd_left(r));
        if (n > READER_WINDOW) {        /* large strings: read directly */
                k = mp_source_pread(r->src, dst, n, r->pos, r->err);
                if (k < 0)
                        return k;
                r->pos += n;
                return 0;
        }
        if (r->pos < r->win_start || r->pos + n > r->win_start + r->win_len) {
                uint64_t left = rd_left(r);
                size_t len = left < READER_WINDOW ? (size_t) left : READER_WINDOW;
                k = mp_source_pread(r->src, r->win, len, r->pos, r->err);
                if (k < 0)
                        return k;
                r->win_start = r->pos;
                r->win_len = len;
        }
        memcpy(dst, r->win + (r->pos - r->win_start), n);
        r->pos += n;
        return 0;
}

static int rd_skip(reader *r, uint64_t n, const char *what) {
        if (n > rd_left(r))
                return mp_error_set(r->err, -EBADMSG, r->src->label, off64(r->pos),
                                    "truncated: %s needs %" PRIu64 " bytes, %" PRIu64 " left in the file",
                                    what, n, rd_left(r));
        r->pos += n;
        return 0;
}

static int rd_u32(reader *r, uint32_t *ret, const char *what) {
        uint8_t b[4];
        int k = rd_bytes(r, b, sizeof(b), what);
        if (k < 0)
                return k;
        *ret = (uint32_t) b[0] | ((uint32_t) b[1] << 8) | ((uint32_t) b[2] << 16) | ((uint32_t) b[3] << 24);
        return 0;
}

static int rd_u64(reader *r, uint64_t *ret, const char *what) {
        uint8_t b[8];
        int k = rd_bytes(r, b, sizeof(b), what);
        if (k < 0)
                return k;
        *ret = 0;
        for (int i = 7; i >= 0; i--)
                *ret = (*ret << 8) | b[i];
        return 0;
}

/* Reads a GGUF string (u64 length + bytes, no NUL).  Lengths above max are
 * refused; the bytes are returned NUL-terminated in *ret when ret is
 * non-NULL and len <= keep_max, skipped otherwise (*ret = NULL). */
static int rd_string(reader *r, uint64_t max, uint64_t keep_max, char **ret, uint64_t *ret_len,
                     const char *what) {
        uint64_t at = r->pos, len;
        int k;

        k = rd_u64(r, &len, what);
        if (k < 0)
                return k;
        if (len > max)
                return mp_error_set(r->err, -E2BIG, r->src->label, off64(at),
                                    "%s: string length %" PRIu64 " exceeds the limit %" PRIu64, what, len, max);
        if (len > rd_left(r))
                return mp_error_set(r->err, -E2BIG, r->src->label, off64(at),
                                    "%s: string length %" PRIu64 " runs past the end of the file (%" PRIu64 " bytes left)",
                                    what, len, rd_left(r));
        if (ret_len)
                *ret_len = len;
        if (!ret || len > keep_max) {
                if (ret)
                        *ret = NULL;
                return rd_skip(r, len, what);
        }

        _cleanup_(freep) char *s = malloc((size_t) len + 1);
        if (!s)
                return mp_error_set(r->err, -ENOMEM, r->src->label, -1, "out of memory");
        k = rd_bytes(r, s, (size_t) len, what);
        if (k < 0)
                return k;
        s[len] = 0;
        *ret = TAKE_PTR(s);
        return 0;
}

/* Reads a key or tensor name: bounded, and without NUL bytes, because it
 * becomes a C string and two names differing after a NUL would collide. */
static int rd_name(reader *r, char **ret, const char *what) {
        uint64_t at = r->pos, len;
        _cleanup_(freep) char *s = NULL;

        int k = rd_string(r, MAX_NAME, MAX_NAME, &s, &len, what);
        if (k < 0)
                return k;
        if (strlen(s) != len)
                return mp_error_set(r->err, -EBADMSG, r->src->label, off64(at), "%s contains a NUL byte", what);
        *ret = TAKE_PTR(s);
        return 0;
}

/* ---- parsed header -------------------------------------------------------- */

typedef struct gguf_kv {
        char *key;
        uint64_t key_offset;
        uint64_t value_offset;  /* first byte of the value, after its type */
        uint32_t type;
        union {
                uint64_t u;     /* unsigned integers and bool */
                int64_t i;      /* signed integers */
                double f;       /* floats */
        } v;
        char *str;              /* STRING of at most MAX_KEPT_STRING bytes, else NULL */
        uint64_t len;           /* STRING: bytes; ARRAY: elements */
        uint32_t elem_type;     /* ARRAY */
} gguf_kv;

typedef struct gguf_tensor {
        mp_tensor t;            /* name (HF) and source_name (GGUF) owned */
        uint64_t rel_offset;    /* offset relative to the data section */
        uint64_t name_offset, type_offset, offset_offset;
} gguf_tensor;

typedef struct gguf_file {
        gguf_kv *kvs;           size_t n_kvs, kvs_allocated;
        gguf_tensor *tensors;   size_t n_tensors, tensors_allocated;
        mp_tokenizer *tok;      /* from tokenizer.ggml.tokens, when wanted */
        mp_tokenizer_merges merges;     /* from tokenizer.ggml.merges, when wanted */
        bool want_tokenizer;
        bool have_tokens;
        uint64_t n_tokens;      /* length of tokenizer.ggml.tokens */
        uint32_t alignment;
        uint64_t data_start;
} gguf_file;

static void gguf_file_done(gguf_file *g) {
        for (size_t i = 0; i < g->n_kvs; i++) {
                free(g->kvs[i].key);
                free(g->kvs[i].str);
        }
        free(g->kvs);
        for (size_t i = 0; i < g->n_tensors; i++) {
                free(g->tensors[i].t.name);
                free(g->tensors[i].t.source_name);
        }
        free(g->tensors);
        mp_tokenizer_free(g->tok);
        mp_tokenizer_merges_clear(&g->merges);
}

static const gguf_kv *kv_find(const gguf_file *g, const char *key) {
        for (size_t i = 0; i < g->n_kvs; i++)
                if (strcmp(g->kvs[i].key, key) == 0)
                        return &g->kvs[i];
        return NULL;
}

static bool kv_is_unsigned(uint32_t t) {
        return t == GGUF_UINT8 || t == GGUF_UINT16 || t == GGUF_UINT32 || t == GGUF_UINT64;
}

static bool kv_is_signed(uint32_t t) {
        return t == GGUF_INT8 || t == GGUF_INT16 || t == GGUF_INT32 || t == GGUF_INT64;
}

/* A non-negative integer value, whatever its integer width. */
static bool kv_uint(const gguf_kv *kv, uint64_t *ret) {
        if (!kv)
                return false;
        if (kv_is_unsigned(kv->type)) {
                *ret = kv->v.u;
                return true;
        }
        if (kv_is_signed(kv->type) && kv->v.i >= 0) {
                *ret = (uint64_t) kv->v.i;
                return true;
        }
        return false;
}

static bool kv_double(const gguf_kv *kv, double *ret) {
        uint64_t u;

        if (!kv)
                return false;
        if (kv->type == GGUF_FLOAT32 || kv->type == GGUF_FLOAT64) {
                *ret = kv->v.f;
                return true;
        }
        if (kv_uint(kv, &u)) {
                *ret = (double) u;
                return true;
        }
        return false;
}

static const char *kv_string(const gguf_kv *kv) {
        return kv && kv->type == GGUF_STRING ? kv->str : NULL;
}

/* ---- values ----------------------------------------------------------------- */

static int read_scalar(reader *r, uint32_t type, gguf_kv *kv) {
        uint8_t b[8] = { 0 };
        uint64_t u = 0;
        int k = rd_bytes(r, b, value_types[type].size, "value");
        if (k < 0)
                return k;
        for (int i = value_types[type].size - 1; i >= 0; i--)
                u = (u << 8) | b[i];

        switch (type) {
        case GGUF_INT8:    kv->v.i = (int8_t) u; break;
        case GGUF_INT16:   kv->v.i = (int16_t) u; break;
        case GGUF_INT32:   kv->v.i = (int32_t) u; break;
        case GGUF_INT64:   kv->v.i = (int64_t) u; break;
        case GGUF_FLOAT32: {
                uint32_t bits = (uint32_t) u;
                float f;
                memcpy(&f, &bits, sizeof(f));
                kv->v.f = f;
                break;
        }
        case GGUF_FLOAT64:
                memcpy(&kv->v.f, &u, sizeof(kv->v.f));
                break;
        case GGUF_BOOL:    kv->v.u = u != 0; break;
        default:           kv->v.u = u; break;
        }
        return 0;
}

/* Reads an array header (element type, count) and validates it against the
 * nesting depth, the limits and the bytes left. */
static int read_array_header(reader *r, unsigned depth, uint32_t *ret_type, uint64_t *ret_count) {
        uint64_t type_at = r->pos, count_at, count, need;
        uint32_t type;
        int k;

        if (depth > MP_GGUF_MAX_DEPTH)
                return mp_error_set(r->err, -EBADMSG, r->src->label, off64(type_at),
                                    "arrays nested deeper than %d levels", MP_GGUF_MAX_DEPTH);
        k = rd_u32(r, &type, "array element type");
        if (k < 0)
                return k;
        if (type >= _GGUF_TYPE_MAX)
                return mp_error_set(r->err, -EBADMSG, r->src->label, off64(type_at),
                                    "unknown array element type %" PRIu32, type);
        count_at = r->pos;
        k = rd_u64(r, &count, "array length");
        if (k < 0)
                return k;
        if (count > MP_GGUF_MAX_ARRAY)
                return mp_error_set(r->err, -E2BIG, r->src->label, off64(count_at),
                                    "array of %" PRIu64 " elements exceeds the limit %u", count, MP_GGUF_MAX_ARRAY);
        /* count <= 2^24 and min size <= 12: no overflow */
        need = count * min_value_bytes(type);
        if (need > rd_left(r))
                return mp_error_set(r->err, -E2BIG, r->src->label, off64(count_at),
                                    "array of %" PRIu64 " %s elements needs at least %" PRIu64
                                    " bytes, %" PRIu64 " left in the file",
                                    count, value_types[type].name, need, rd_left(r));
        *ret_type = type;
        *ret_count = count;
        return 0;
}

/* Skips count array elements of type type (validated). */
static int skip_array_body(reader *r, uint32_t type, uint64_t count, unsigned depth) {
        int k;

        if (type != GGUF_STRING && type != GGUF_ARRAY)
                return rd_skip(r, count * value_types[type].size, "array");

        for (uint64_t i = 0; i < count; i++) {
                if (type == GGUF_STRING)
                        k = rd_string(r, MP_GGUF_MAX_STRING, 0, NULL, NULL, "array element");
                else {
                        uint32_t et;
                        uint64_t n;
                        k = read_array_header(r, depth + 1, &et, &n);
                        if (k >= 0)
                                k = skip_array_body(r, et, n, depth + 1);
                }
                if (k < 0)
                        return k;
        }
        return 0;
}

/* tokenizer.ggml.tokens: the id-ordered vocabulary. */
static int read_tokens(reader *r, gguf_file *g, uint64_t count, uint64_t count_at) {
        _cleanup_(mp_tokenizer_freep) mp_tokenizer *tok = NULL;
        int k;

        if (count > MP_TOKENIZER_MAX_TOKENS)
                return mp_error_set(r->err, -E2BIG, r->src->label, off64(count_at),
                                    "vocabulary of %" PRIu64 " tokens exceeds the limit %u",
                                    count, MP_TOKENIZER_MAX_TOKENS);
        if (g->want_tokenizer) {
                tok = mp_tokenizer_new(MP_TOK_GGUF_OTHER, r->src->label);
                if (!tok)
                        return mp_error_set(r->err, -ENOMEM, r->src->label, -1, "out of memory");
        }

        for (uint64_t id = 0; id < count; id++) {
                uint64_t at = r->pos, len;
                _cleanup_(freep) char *s = NULL;

                k = rd_string(r, MP_TOKENIZER_MAX_TOKEN_LEN, MP_TOKENIZER_MAX_TOKEN_LEN,
                              tok ? &s : NULL, &len, "token");
                if (k < 0)
                        return k;
                if (!tok)
                        continue;
                /* A NUL cannot be stored in the C-string vocabulary: keep the
                 * part before it (no real vocabulary has one). */
                k = mp_tokenizer_set_token(tok, (size_t) id, s, strnlen(s, (size_t) len));
                if (k < 0)
                        return mp_error_set(r->err, k, r->src->label, off64(at), "cannot store token %" PRIu64, id);
        }
        g->have_tokens = true;
        g->n_tokens = count;
        mp_tokenizer_free(g->tok);
        g->tok = TAKE_PTR(tok);
        return 0;
}

/* tokenizer.ggml.merges: "A B" strings in rank order.  They may come before
 * or after the tokens, so they are kept apart until apply_tokenizer(). */
static int read_merges(reader *r, gguf_file *g, uint64_t count) {
        int k;

        bool keep = g->want_tokenizer;

        mp_tokenizer_merges_clear(&g->merges);
        for (uint64_t i = 0; i < count; i++) {
                uint64_t at = r->pos, len;
                _cleanup_(freep) char *s = NULL;

                k = rd_string(r, MP_GGUF_MAX_STRING, MP_TOKENIZER_MAX_TOKEN_LEN * 2 + 1, keep ? &s : NULL, &len,
                              "merge");
                if (k < 0)
                        return k;
                if (!keep)
                        continue;
                if (!s) {
                        /* Longer than two tokens can be: not a real merge
                         * list.  Keep reading the file, but no merges. */
                        mp_tokenizer_merges_clear(&g->merges);
                        keep = false;
                        continue;
                }
                /* Merges are "A B"; one without a space is kept whole, as
                 * the reference's string merges are. */
                size_t n = strnlen(s, (size_t) len);
                const char *sp = memchr(s, ' ', n);
                size_t alen = sp ? (size_t) (sp - s) : n;
                k = sp ? mp_tokenizer_merges_add(&g->merges, s, alen, sp + 1, n - alen - 1)
                       : mp_tokenizer_merges_add(&g->merges, s, n, NULL, 0);
                if (k < 0)
                        return mp_error_set(r->err, k, r->src->label, off64(at), "cannot store merge %" PRIu64, i);
        }
        return 0;
}

static int read_kv(reader *r, gguf_file *g) {
        gguf_kv kv = { .key_offset = r->pos };
        uint64_t type_at;
        int k;

        k = rd_name(r, &kv.key, "key");
        if (k < 0)
                return k;

        type_at = r->pos;
        k = rd_u32(r, &kv.type, "value type");
        if (k < 0)
                goto fail;
        if (kv.type >= _GGUF_TYPE_MAX) {
                k = mp_error_set(r->err, -EBADMSG, r->src->label, off64(type_at),
                                 "key '%s': unknown value type %" PRIu32, kv.key, kv.type);
                goto fail;
        }
        kv.value_offset = r->pos;

        if (kv.type == GGUF_STRING)
                k = rd_string(r, MP_GGUF_MAX_STRING, MAX_KEPT_STRING, &kv.str, &kv.len, "string value");
        else if (kv.type == GGUF_ARRAY) {
                uint64_t count_at = r->pos + 4;
                k = read_array_header(r, 1, &kv.elem_type, &kv.len);
                if (k >= 0) {
                        if (kv.elem_type == GGUF_STRING && strcmp(kv.key, "tokenizer.ggml.tokens") == 0)
                                k = read_tokens(r, g, kv.len, count_at);
                        else if (kv.elem_type == GGUF_STRING && strcmp(kv.key, "tokenizer.ggml.merges") == 0)
                                k = read_merges(r, g, kv.len);
                        else
                                k = skip_array_body(r, kv.elem_type, kv.len, 1);
                }
        } else
                k = read_scalar(r, kv.type, &kv);
        if (k < 0)
                goto fail;

        if (MP_GROW(g->kvs, g->kvs_allocated, g->n_kvs + 1) < 0) {
                k = mp_error_set(r->err, -ENOMEM, r->src->label, -1, "out of memory");
                goto fail;
        }
        g->kvs[g->n_kvs++] = kv;
        return 0;

fail:
        free(kv.key);
        free(kv.str);
        return k;
}

/* ---- checks across entries ------------------------------------------------ */

/* The checks below sort pointers to the entries rather than the entries
 * themselves: the arrays stay in file order (the model lists them that way)
 * and the pointers are cheap to move.  The comparators get pointers to the
 * const void * slots of that array. */
typedef int (*ref_order_fn)(const void *a, const void *b);

/* Returns a newly allocated array of pointers to the n elements of base (each
 * size bytes), sorted by order, or NULL when out of memory. */
static const void **sorted_refs(const void *base, size_t n, size_t size, ref_order_fn order) {
        const void **v = calloc(n, sizeof(*v));
        if (!v)
                return NULL;
        for (size_t i = 0; i < n; i++)
                v[i] = (const char *) base + i * size;
        qsort(v, n, sizeof(*v), order);
        return v;
}

/* Looks for two elements that same() calls equal.  order must sort equal
 * elements next to each other and break ties by file offset, so that the
 * first pair found is reported at the later of the two entries, whatever
 * qsort does with equal keys.  Returns 1 with the pair in *ret_prev (earlier
 * in the file) and *ret_dup (later), 0 if all differ, -ENOMEM. */
static int find_sorted_duplicate(const void *base, size_t n, size_t size,
                                 ref_order_fn order,
                                 bool (*same)(const void *a, const void *b),
                                 const void **ret_prev, const void **ret_dup) {
        if (n < 2)
                return 0;
        _cleanup_(freep) const void **v = sorted_refs(base, n, size, order);
        if (!v)
                return -ENOMEM;
        for (size_t i = 1; i < n; i++)
                if (same(v[i - 1], v[i])) {
                        *ret_prev = v[i - 1];
                        *ret_dup = v[i];
                        return 1;
                }
        return 0;
}

static int cmp_kv_key(const void *a, const void *b) {
        const gguf_kv *x = *(const void *const *) a, *y = *(const void *const *) b;
        int c = strcmp(x->key, y->key);
        return c != 0 ? c : (x->key_offset > y->key_offset) - (x->key_offset < y->key_offset);
}

static bool same_kv_key(const void *a, const void *b) {
        const gguf_kv *x = a, *y = b;
        return strcmp(x->key, y->key) == 0;
}

static int check_duplicate_keys(const gguf_file *g, const mp_source *src, mp_error *err) {
        const void *prev, *dup;
        int k = find_sorted_duplicate(g->kvs, g->n_kvs, sizeof(g->kvs[0]), cmp_kv_key, same_kv_key,
                                      &prev, &dup);
        if (k < 0)
                return mp_error_set(err, k, src->label, -1, "out of memory");
        if (k > 0) {
                const gguf_kv *kv = dup;
                return mp_error_set(err, -EBADMSG, src->label, off64(kv->key_offset),
                                    "duplicate key '%s'", kv->key);
        }
        return 0;
}

static int cmp_tensor_name(const void *a, const void *b) {
        const gguf_tensor *x = *(const void *const *) a, *y = *(const void *const *) b;
        int c = strcmp(x->t.name, y->t.name);
        return c != 0 ? c : (x->name_offset > y->name_offset) - (x->name_offset < y->name_offset);
}

static bool same_tensor_name(const void *a, const void *b) {
        const gguf_tensor *x = a, *y = b;
        return strcmp(x->t.name, y->t.name) == 0;
}

static int cmp_tensor_offset(const void *a, const void *b) {
        const gguf_tensor *x = *(const void *const *) a, *y = *(const void *const *) b;
        if (x->t.offset != y->t.offset)
                return x->t.offset < y->t.offset ? -1 : 1;
        if (x->t.length != y->t.length)
                return x->t.length < y->t.length ? -1 : 1;
        return (x->name_offset > y->name_offset) - (x->name_offset < y->name_offset);
}

/* Two tensors with the same HF name would make the directory ambiguous:
 * either the GGUF names repeat (ggml refuses that too) or two GGUF names map
 * to one HF name. */
static int check_duplicate_tensors(const gguf_file *g, const mp_source *src, mp_error *err) {
        const void *prev, *dup;
        int k = find_sorted_duplicate(g->tensors, g->n_tensors, sizeof(g->tensors[0]),
                                      cmp_tensor_name, same_tensor_name, &prev, &dup);
        if (k < 0)
                return mp_error_set(err, k, src->label, -1, "out of memory");
        if (k > 0) {
                const gguf_tensor *a = prev, *b = dup;
                if (strcmp(a->t.source_name, b->t.source_name) == 0)
                        return mp_error_set(err, -EBADMSG, src->label, off64(b->name_offset),
                                            "duplicate tensor name '%s'", b->t.source_name);
                return mp_error_set(err, -EBADMSG, src->label, off64(b->name_offset),
                                    "tensors '%s' and '%s' both map to '%s'",
                                    a->t.source_name, b->t.source_name, b->t.name);
        }
        return 0;
}

/* Places every tensor in the data section: inside the file, and no two
 * tensors sharing a byte.  Reports the offset field of the offending
 * tensor info (for an overlap: the later of the two infos). */
static int place_tensors(gguf_file *g, const mp_source *src, mp_error *err) {
        for (size_t i = 0; i < g->n_tensors; i++) {
                gguf_tensor *gt = &g->tensors[i];
                uint64_t abs, end;

                if (add_overflow_u64(g->data_start, gt->rel_offset, &abs) ||
                    add_overflow_u64(abs, gt->t.length, &end) || end > src->size)
                        return mp_error_set(err, -EBADMSG, src->label, off64(gt->offset_offset),
                                            "tensor '%s': data at offset %" PRIu64 " (+%" PRIu64 " bytes) "
                                            "of the data section at %" PRIu64 " lies outside the file (%" PRIu64 " bytes)",
                                            gt->t.source_name, gt->rel_offset, gt->t.length, g->data_start, src->size);
                gt->t.offset = abs;

                int k = mp_tensor_check(&gt->t, g->data_start, src->size, src->label, err);
                if (k < 0) {
                        if (err)        /* point at the tensor info, not its data */
                                err->offset = off64(gt->offset_offset);
                        return k;
                }
        }

        if (g->n_tensors < 2)
                return 0;
        _cleanup_(freep) const void **v = sorted_refs(g->tensors, g->n_tensors, sizeof(g->tensors[0]),
                                                      cmp_tensor_offset);
        if (!v)
                return mp_error_set(err, -ENOMEM, src->label, -1, "out of memory");
        /* After sorting by start, any overlap shows between a tensor and the
         * furthest-reaching one before it. */
        const gguf_tensor *reach = v[0];
        for (size_t i = 1; i < g->n_tensors; i++) {
                const gguf_tensor *cur = v[i];

                if (cur->t.offset < reach->t.offset + reach->t.length) {
                        const gguf_tensor *later = cur->offset_offset > reach->offset_offset ? cur : reach;
                        return mp_error_set(err, -EBADMSG, src->label, off64(later->offset_offset),
                                            "tensor '%s' overlaps tensor '%s'",
                                            later->t.source_name,
                                            later == cur ? reach->t.source_name : cur->t.source_name);
                }
                if (cur->t.offset + cur->t.length > reach->t.offset + reach->t.length)
                        reach = cur;
        }
        return 0;
}

/* ---- header ------------------------------------------------------------------ */

static int read_header(reader *r, uint64_t *ret_n_tensors, uint64_t *ret_n_kv) {
        uint32_t magic, version;
        uint64_t n_tensors, n_kv;
        int k;

        k = rd_u32(r, &magic, "magic");
        if (k < 0)
                return k;
        if (magic != GGUF_MAGIC)
                return mp_error_set(r->err, -EBADMSG, r->src->label, 0, "not a GGUF file (bad magic)");

        k = rd_u32(r, &version, "version");
        if (k < 0)
                return k;
        if (version == 1)
                return mp_error_set(r->err, -ENOTSUP, r->src->label, 4,
                                    "GGUF version 1 is not supported (only versions 2 and 3)");
        if (version == 0x02000000u || version == 0x03000000u)
                return mp_error_set(r->err, -ENOTSUP, r->src->label, 4, "big-endian GGUF is not supported");
        if (version != 2 && version != 3)
                return mp_error_set(r->err, -ENOTSUP, r->src->label, 4,
                                    "unsupported GGUF version %" PRIu32 " (only versions 2 and 3)", version);

        k = rd_u64(r, &n_tensors, "tensor count");
        if (k < 0)
                return k;
        k = rd_u64(r, &n_kv, "metadata count");
        if (k < 0)
                return k;

        if (n_tensors > MP_GGUF_MAX_TENSORS || n_tensors > rd_left(r) / MIN_TENSOR_INFO_BYTES)
                return mp_error_set(r->err, -E2BIG, r->src->label, 8,
                                    "tensor count %" PRIu64 " exceeds the limit %u or the file size",
                                    n_tensors, MP_GGUF_MAX_TENSORS);
        if (n_kv > MP_GGUF_MAX_KV || n_kv > rd_left(r) / MIN_KV_BYTES)
                return mp_error_set(r->err, -E2BIG, r->src->label, 16,
                                    "metadata count %" PRIu64 " exceeds the limit %u or the file size",
                                    n_kv, MP_GGUF_MAX_KV);
        *ret_n_tensors = n_tensors;
        *ret_n_kv = n_kv;
        return 0;
}

static int read_alignment(gguf_file *g, const mp_source *src, mp_error *err) {
        const gguf_kv *kv = kv_find(g, "general.alignment");
        uint64_t a;

        g->alignment = GGUF_DEFAULT_ALIGNMENT;
        if (!kv)
                return 0;
        if (!kv_uint(kv, &a))
                return mp_error_set(err, -EBADMSG, src->label, off64(kv->value_offset),
                                    "general.alignment must be an unsigned integer (type %s)",
                                    value_types[kv->type].name);
        if (a == 0 || a > UINT32_MAX || (a & (a - 1)) != 0)
                return mp_error_set(err, -EBADMSG, src->label, off64(kv->value_offset),
                                    "general.alignment %" PRIu64 " is not a power of two", a);
        g->alignment = (uint32_t) a;
        return 0;
}

static int read_tensor_info(reader *r, gguf_file *g, const char *arch) {
        gguf_tensor gt = { .name_offset = r->pos };
        mp_tensor *t = &gt.t;
        uint64_t ne[MP_MAX_DIMS], ne_at[MP_MAX_DIMS], n = 1, ndims_at;
        uint32_t n_dims, ggml_type, flags = 0;
        int k;

        k = rd_name(r, &t->source_name, "tensor name");
        if (k < 0)
                return k;

        ndims_at = r->pos;
        k = rd_u32(r, &n_dims, "tensor dimension count");
        if (k < 0)
                goto fail;
        if (n_dims > MP_MAX_DIMS) {
                k = mp_error_set(r->err, -EBADMSG, r->src->label, off64(ndims_at),
                                 "tensor '%s': %" PRIu32 " dimensions (limit %d)", t->source_name, n_dims, MP_MAX_DIMS);
                goto fail;
        }
        for (uint32_t d = 0; d < n_dims; d++) {
                ne_at[d] = r->pos;
                k = rd_u64(r, &ne[d], "tensor dimension");
                if (k < 0)
                        goto fail;
                if (mul_overflow_u64(n, ne[d], &n)) {
                        k = mp_error_set(r->err, -EOVERFLOW, r->src->label, off64(ne_at[d]),
                                         "tensor '%s': element count overflows", t->source_name);
                        goto fail;
                }
        }

        gt.type_offset = r->pos;
        k = rd_u32(r, &ggml_type, "tensor type");
        if (k < 0)
                goto fail;
        t->dtype = mp_gguf_type_to_dtype(ggml_type);
        if (t->dtype == MP_DTYPE_INVALID) {
                k = mp_error_set(r->err, -ENOTSUP, r->src->label, off64(gt.type_offset),
                                 "tensor '%s': unsupported ggml type %" PRIu32, t->source_name, ggml_type);
                goto fail;
        }

        /* ggml quantizes rows: a block never spans two rows. */
        const mp_dtype_info *info = mp_dtype_get(t->dtype);
        uint64_t row = n_dims > 0 ? ne[0] : 1;
        if (row % info->block_elems != 0) {
                k = mp_error_set(r->err, -EBADMSG, r->src->label, off64(n_dims > 0 ? ne_at[0] : gt.type_offset),
                                 "tensor '%s': row length %" PRIu64 " is not a multiple of the %s block size %" PRIu32,
                                 t->source_name, row, info->name, info->block_elems);
                goto fail;
        }
        k = mp_dtype_bytes(t->dtype, n, &t->length);
        if (k < 0) {
                k = mp_error_set(r->err, -EOVERFLOW, r->src->label, off64(gt.type_offset),
                                 "tensor '%s': byte size overflows", t->source_name);
                goto fail;
        }

        gt.offset_offset = r->pos;
        k = rd_u64(r, &gt.rel_offset, "tensor data offset");
        if (k < 0)
                goto fail;
        if (gt.rel_offset % g->alignment != 0) {
                k = mp_error_set(r->err, -EBADMSG, r->src->label, off64(gt.offset_offset),
                                 "tensor '%s': data offset %" PRIu64 " is not a multiple of the alignment %" PRIu32,
                                 t->source_name, gt.rel_offset, g->alignment);
                goto fail;
        }

        /* HF order: outermost dimension first, i.e. ne reversed. */
        t->n_dims = n_dims;
        for (uint32_t d = 0; d < n_dims; d++)
                t->shape[d] = ne[n_dims - 1 - d];
        t->n_elements = n;
        t->name = mp_gguf_hf_name(arch, t->source_name, &flags);
        if (!t->name) {
                k = mp_error_set(r->err, -ENOMEM, r->src->label, -1, "out of memory");
                goto fail;
        }
        t->flags = flags;

        if (MP_GROW(g->tensors, g->tensors_allocated, g->n_tensors + 1) < 0) {
                k = mp_error_set(r->err, -ENOMEM, r->src->label, -1, "out of memory");
                goto fail;
        }
        g->tensors[g->n_tensors++] = gt;
        return 0;

fail:
        free(t->name);
        free(t->source_name);
        return k;
}

static int gguf_parse(gguf_file *g, const mp_source *src, mp_error *err) {
        _cleanup_(freep) uint8_t *win = malloc(READER_WINDOW);
        reader r = { .src = src, .err = err, .win = win };
        uint64_t n_tensors = 0, n_kv = 0;
        int k;

        if (!win)
                return mp_error_set(err, -ENOMEM, src->label, -1, "out of memory");

        k = read_header(&r, &n_tensors, &n_kv);
        if (k < 0)
                return k;

        for (uint64_t i = 0; i < n_kv; i++) {
                k = read_kv(&r, g);
                if (k < 0)
                        return k;
        }
        k = check_duplicate_keys(g, src, err);
        if (k < 0)
                return k;
        k = read_alignment(g, src, err);
        if (k < 0)
                return k;

        const char *arch = kv_string(kv_find(g, "general.architecture"));
        for (uint64_t i = 0; i < n_tensors; i++) {
                k = read_tensor_info(&r, g, arch);
                if (k < 0)
                        return k;
        }

        /* The data section starts at the next multiple of the alignment;
         * pos <= size < 2^63 and alignment <= 2^31, so this cannot wrap. */
        g->data_start = (r.pos + g->alignment - 1) / g->alignment * g->alignment;

        k = check_duplicate_tensors(g, src, err);
        if (k < 0)
                return k;
        return place_tensors(g, src, err);
}

/* ---- into the model ---------------------------------------------------------- */

static char *render_value(const gguf_kv *kv) {
        char *s = NULL;
        int k;

        switch (kv->type) {
        case GGUF_UINT8: case GGUF_UINT16: case GGUF_UINT32: case GGUF_UINT64:
                k = asprintf(&s, "%" PRIu64, kv->v.u);
                break;
        case GGUF_INT8: case GGUF_INT16: case GGUF_INT32: case GGUF_INT64:
                k = asprintf(&s, "%" PRId64, kv->v.i);
                break;
        case GGUF_FLOAT32:
                k = asprintf(&s, "%.9g", kv->v.f);
                break;
        case GGUF_FLOAT64:
                k = asprintf(&s, "%.17g", kv->v.f);
                break;
        case GGUF_BOOL:
                k = asprintf(&s, "%s", kv->v.u ? "true" : "false");
                break;
        case GGUF_STRING:
                if (kv->str)
                        k = asprintf(&s, "%s", kv->str);
                else
                        k = asprintf(&s, "[string of %" PRIu64 " bytes]", kv->len);
                break;
        case GGUF_ARRAY:
                k = asprintf(&s, "[array of %" PRIu64 " %s]", kv->len, value_types[kv->elem_type].name);
                break;
        default:
                return NULL;
        }
        return k < 0 ? NULL : s;
}

static int add_metadata(mp_model *m, const gguf_file *g) {
        for (size_t i = 0; i < g->n_kvs; i++) {
                _cleanup_(freep) char *v = render_value(&g->kvs[i]);
                if (!v)
                        return -ENOMEM;
                int k = mp_model_add_metadata(m, g->kvs[i].key, v);
                if (k < 0)
                        return k;
        }
        return 0;
}

static const gguf_kv *arch_kv(const gguf_file *g, const char *arch, const char *suffix) {
        _cleanup_(freep) char *key = NULL;

        if (!arch || asprintf(&key, "%s.%s", arch, suffix) < 0)
                return NULL;
        return kv_find(g, key);
}

static void set_u64(uint64_t *field, const gguf_kv *kv) {
        uint64_t v;
        if (*field == 0 && kv_uint(kv, &v))
                *field = v;
}

static void set_double(double *field, const gguf_kv *kv) {
        double v;
        if ((*field == 0 || isnan(*field)) && kv_double(kv, &v))
                *field = v;
}

/* Fills the architecture fields the model does not know yet (a config.json
 * read before, e.g. from an Ollama config layer, wins). */
static int apply_arch(mp_model *m, const gguf_file *g) {
        const char *arch = kv_string(kv_find(g, "general.architecture"));
        mp_arch *a = &m->arch;
        int k;

        if (arch) {
                if (!a->architecture) {
                        k = mp_arch_set_string(&a->architecture, arch);
                        if (k < 0)
                                return k;
                }
                if (!a->model_type) {
                        k = mp_arch_set_string(&a->model_type, mp_gguf_model_type(arch));
                        if (k < 0)
                                return k;
                }
        }

        set_u64(&a->hidden_size, arch_kv(g, arch, "embedding_length"));
        set_u64(&a->num_layers, arch_kv(g, arch, "block_count"));
        set_u64(&a->num_heads, arch_kv(g, arch, "attention.head_count"));
        set_u64(&a->num_kv_heads, arch_kv(g, arch, "attention.head_count_kv"));
        set_u64(&a->intermediate_size, arch_kv(g, arch, "feed_forward_length"));
        set_u64(&a->vocab_size, arch_kv(g, arch, "vocab_size"));
        set_u64(&a->max_positions, arch_kv(g, arch, "context_length"));
        set_u64(&a->head_dim, arch_kv(g, arch, "attention.key_length"));
        set_double(&a->rope_theta, arch_kv(g, arch, "rope.freq_base"));
        set_double(&a->norm_eps, arch_kv(g, arch, "attention.layer_norm_rms_epsilon"));
        set_double(&a->norm_eps, arch_kv(g, arch, "attention.layer_norm_epsilon"));

        /* llama.cpp's defaults when the keys are absent. */
        if (a->num_kv_heads == 0 && arch && !arch_kv(g, arch, "attention.head_count_kv"))
                a->num_kv_heads = a->num_heads;
        if (a->vocab_size == 0 && g->have_tokens)
                a->vocab_size = g->n_tokens;
        if (a->head_dim == 0 && a->hidden_size > 0 && a->num_heads > 0)
                a->head_dim = a->hidden_size / a->num_heads;
        return 0;
}

static int set_special(mp_tokenizer *t, char **field, const gguf_kv *kv) {
        uint64_t id;

        if (*field || !kv_uint(kv, &id) || id >= t->n_tokens || !t->tokens[id])
                return 0;
        return mp_arch_set_string(field, t->tokens[id]);
}

static int apply_tokenizer(mp_model *m, gguf_file *g) {
        const char *model = kv_string(kv_find(g, "tokenizer.ggml.model"));
        const char *pre = kv_string(kv_find(g, "tokenizer.ggml.pre"));
        const gguf_kv *merges = kv_find(g, "tokenizer.ggml.merges");
        mp_tokenizer *t = g->tok;
        int k;

        if (!t || m->tokenizer)
                return 0;

        if (model && strcmp(model, "llama") == 0)
                t->kind = MP_TOK_GGUF_LLAMA;
        else if (model && strcmp(model, "gpt2") == 0)
                t->kind = MP_TOK_GGUF_GPT2;
        else
                t->kind = MP_TOK_GGUF_OTHER;
        k = mp_arch_set_string(&t->model_name, model);
        if (k < 0)
                return k;
        k = mp_arch_set_string(&t->pre_tokenizer, pre);
        if (k < 0)
                return k;
        if (merges && merges->type == GGUF_ARRAY)
                t->n_merges = (size_t) merges->len;
        if (g->merges.n > 0) {
                k = mp_tokenizer_merges_finish(&g->merges);
                if (k < 0)
                        return k;
                mp_tokenizer_merges_clear(&t->merges);
                t->merges = g->merges;
                g->merges = (mp_tokenizer_merges) {};
        }

        k = set_special(t, &t->bos_token, kv_find(g, "tokenizer.ggml.bos_token_id"));
        if (k >= 0)
                k = set_special(t, &t->eos_token, kv_find(g, "tokenizer.ggml.eos_token_id"));
        if (k >= 0)
                k = set_special(t, &t->unk_token, kv_find(g, "tokenizer.ggml.unknown_token_id"));
        if (k >= 0)
                k = set_special(t, &t->pad_token, kv_find(g, "tokenizer.ggml.padding_token_id"));
        if (k < 0)
                return k;

        m->tokenizer = TAKE_PTR(g->tok);
        return 0;
}

static int gguf_commit(mp_model *m, size_t file_index, gguf_file *g) {
        int k;

        for (size_t i = 0; i < g->n_tensors; i++) {
                g->tensors[i].t.file_index = file_index;
                k = mp_model_add_tensor(m, &g->tensors[i].t);
                if (k < 0)
                        return k;
        }
        k = add_metadata(m, g);
        if (k < 0)
                return k;
        k = apply_arch(m, g);
        if (k < 0)
                return k;
        return apply_tokenizer(m, g);
}

int mp_gguf_load(mp_model *m, size_t file_index, const mp_source *src, mp_error *err) {
        gguf_file g = { .want_tokenizer = !m->tokenizer, .alignment = GGUF_DEFAULT_ALIGNMENT };
        int k;

        assert(m);
        assert(src);

        k = gguf_parse(&g, src, err);
        if (k >= 0) {
                k = gguf_commit(m, file_index, &g);
                if (k < 0)
                        k = mp_error_set(err, k, src->label, -1, "cannot add the GGUF header to the model: %s",
                                         strerror(-k));
        }
        gguf_file_done(&g);
        return k;
}
