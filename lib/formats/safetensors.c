/* safetensors.c - reader for safetensors weight files and for the
 * model.safetensors.index.json that lists the shards of a sharded checkpoint.
 *
 * Only the header is read: u64 LE length N, then N bytes of JSON naming every
 * tensor's dtype, shape and [begin, end) inside the data section at 8+N.  The
 * file may come from anywhere, so every number in the header is checked
 * against the real file size before it is stored, and the tensor byte ranges
 * are checked for overlaps (two names aliasing the same bytes would let a
 * file show one weight to one tool and another to the next). */
#include "formats/safetensors.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "util/macro.h"
#include "util/strutil.h"

/* Where the JSON header starts: right after the u64 length. */
#define HEADER_START 8u

/* A 100 MiB header could declare millions of tensors; real checkpoints have
 * at most some tens of thousands per file. */
#define MAX_TENSORS_PER_FILE (1u << 20)
#define MAX_METADATA_PER_FILE 4096u
#define MAX_SHARDS 65536u
#define MAX_SHARD_NAME 255u

static int64_t clamp_offset(uint64_t o) {
        return o > INT64_MAX ? INT64_MAX : (int64_t) o;
}

/* Names from the file end up in one-line error messages: a control
 * character would let a file forge output lines, and a huge name would push
 * the reason out of the message, so both are neutralised. */
#define SAFE_MAX 96
#define SAFE(s) mp_printable((char[SAFE_MAX]) { 0 }, SAFE_MAX, (s))


/* A JSON integer >= 0.  Reals are refused even when integral: the format
 * writes integers, and a float here would be rounded differently by
 * different readers. */
static bool json_get_u64(const json_t *v, uint64_t *ret) {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return false;
        *ret = (uint64_t) json_integer_value(v);
        return true;
}

/* Reads and bounds-checks the header length, then the header bytes. */
static int read_header(const mp_source *src, uint64_t *ret_len, char **ret_buf, mp_error *err) {
        uint8_t le[8];
        uint64_t n = 0;
        int r;

        if (src->size < HEADER_START)
                return mp_error_set(err, -EBADMSG, src->label, 0,
                                    "truncated: %" PRIu64 " bytes, a safetensors file starts with an 8-byte header length",
                                    src->size);
        r = mp_source_pread(src, le, sizeof(le), 0, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < sizeof(le); i++)
                n |= (uint64_t) le[i] << (8 * i);

        if (n > MP_SAFETENSORS_MAX_HEADER)
                return mp_error_set(err, -E2BIG, src->label, 0,
                                    "header length %" PRIu64 " exceeds the limit of %u bytes",
                                    n, MP_SAFETENSORS_MAX_HEADER);
        if (n > src->size - HEADER_START)
                return mp_error_set(err, -E2BIG, src->label, 0,
                                    "header length %" PRIu64 " exceeds the file size %" PRIu64, n, src->size);

        r = mp_source_read_alloc(src, HEADER_START, n, MP_SAFETENSORS_MAX_HEADER, ret_buf, err);
        if (r < 0)
                return r;
        *ret_len = n;
        return 0;
}

static int parse_header_json(const mp_source *src, const char *buf, uint64_t len, json_t **ret,
                             mp_error *err) {
        json_error_t jerr;

        /* Duplicate names are refused: which of the two a reader keeps is
         * exactly the kind of ambiguity an attacker would use. */
        json_t *root = json_loadb(buf, (size_t) len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root)
                return mp_error_set(err, -EBADMSG, src->label,
                                    (int64_t) HEADER_START + (jerr.position > 0 ? jerr.position : 0),
                                    "invalid JSON header: %s", jerr.text);
        if (!json_is_object(root)) {
                json_decref(root);
                return mp_error_set(err, -EBADMSG, src->label, HEADER_START, "JSON header is not an object");
        }
        *ret = root;
        return 0;
}

/* data_offsets: [begin, end] relative to the data section.  Sets *where to
 * the absolute offset of the tensor's bytes, the best position for later
 * error messages about this tensor. */
static int parse_data_offsets(const mp_source *src, const char *name, const json_t *entry,
                              uint64_t data_start, uint64_t *ret_begin, uint64_t *ret_end,
                              int64_t *where, mp_error *err) {
        const json_t *offs = json_object_get(entry, "data_offsets");
        uint64_t begin, end, abs_begin;

        if (!json_is_array(offs) || json_array_size(offs) != 2 ||
            !json_get_u64(json_array_get(offs, 0), &begin) || !json_get_u64(json_array_get(offs, 1), &end))
                return mp_error_set(err, -EBADMSG, src->label, HEADER_START,
                                    "tensor '%s': data_offsets is not a pair of non-negative integers", name);

        if (add_overflow_u64(data_start, begin, &abs_begin))
                return mp_error_set(err, -EOVERFLOW, src->label, HEADER_START,
                                    "tensor '%s': data offset %" PRIu64 " overflows", name, begin);
        *where = clamp_offset(abs_begin);

        if (begin > end)
                return mp_error_set(err, -EBADMSG, src->label, *where,
                                    "tensor '%s': data_offsets begin %" PRIu64 " > end %" PRIu64, name, begin, end);
        *ret_begin = begin;
        *ret_end = end;
        return 0;
}

static int parse_dtype(const mp_source *src, const char *name, const json_t *entry, int64_t where,
                       mp_dtype *ret, mp_error *err) {
        const json_t *d = json_object_get(entry, "dtype");

        if (!json_is_string(d))
                return mp_error_set(err, -EBADMSG, src->label, where, "tensor '%s': dtype is not a string", name);

        mp_dtype t = mp_dtype_from_safetensors(json_string_value(d));
        if (t == MP_DTYPE_INVALID)
                return mp_error_set(err, -ENOTSUP, src->label, where, "tensor '%s': unknown dtype '%s'",
                                    name, SAFE(json_string_value(d)));
        *ret = t;
        return 0;
}

static int parse_shape(const mp_source *src, const char *name, const json_t *entry, int64_t where,
                       mp_tensor *t, mp_error *err) {
        const json_t *shape = json_object_get(entry, "shape");
        uint64_t n = 1;

        if (!json_is_array(shape))
                return mp_error_set(err, -EBADMSG, src->label, where, "tensor '%s': shape is not an array", name);
        if (json_array_size(shape) > MP_MAX_DIMS)
                return mp_error_set(err, -EBADMSG, src->label, where, "tensor '%s': %zu dimensions (limit %d)",
                                    name, json_array_size(shape), MP_MAX_DIMS);

        t->n_dims = (uint32_t) json_array_size(shape);
        for (uint32_t i = 0; i < t->n_dims; i++) {
                if (!json_get_u64(json_array_get(shape, i), &t->shape[i]))
                        return mp_error_set(err, -EBADMSG, src->label, where,
                                            "tensor '%s': shape[%u] is not a non-negative integer", name, i);
                if (mul_overflow_u64(n, t->shape[i], &n))
                        return mp_error_set(err, -EOVERFLOW, src->label, where,
                                            "tensor '%s': shape product overflows", name);
        }
        t->n_elements = n;
        return 0;
}

/* Turns one header entry into a tensor whose bytes are known to lie inside
 * the file.  name is borrowed from the JSON and copied on commit. */
static int parse_tensor(const mp_source *src, const char *name, const json_t *entry, uint64_t data_start,
                        size_t file_index, mp_tensor *ret, mp_error *err) {
        mp_tensor t = { .name = (char *) name, .file_index = file_index };
        uint64_t begin = 0, end = 0, need = 0, abs_end;
        int64_t where = HEADER_START;
        char shown[SAFE_MAX];
        int r;

        /* from here on, name is only used in messages */
        name = mp_printable(shown, SAFE_MAX, name);

        if (!json_is_object(entry))
                return mp_error_set(err, -EBADMSG, src->label, HEADER_START, "tensor '%s': entry is not an object",
                                    name);

        r = parse_data_offsets(src, name, entry, data_start, &begin, &end, &where, err);
        if (r < 0)
                return r;
        r = parse_dtype(src, name, entry, where, &t.dtype, err);
        if (r < 0)
                return r;
        r = parse_shape(src, name, entry, where, &t, err);
        if (r < 0)
                return r;

        r = mp_dtype_bytes(t.dtype, t.n_elements, &need);
        if (r < 0)
                return mp_error_set(err, r, src->label, where, "tensor '%s': byte size of %" PRIu64 " %s elements overflows",
                                    name, t.n_elements, mp_dtype_name(t.dtype));
        if (end - begin != need)
                return mp_error_set(err, -EBADMSG, src->label, where,
                                    "tensor '%s': data_offsets span %" PRIu64 " bytes, shape and dtype %s need %" PRIu64,
                                    name, end - begin, mp_dtype_name(t.dtype), need);
        if (add_overflow_u64(data_start, end, &abs_end) || abs_end > src->size)
                return mp_error_set(err, -EBADMSG, src->label, where,
                                    "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 ") end beyond the file "
                                    "(data section is %" PRIu64 " bytes)", name, begin, end, src->size - data_start);

        t.offset = data_start + begin;
        t.length = need;
        r = mp_tensor_check(&t, data_start, src->size, src->label, err);
        if (r < 0)
                return r;
        *ret = t;
        return 0;
}

/* __metadata__ is string to string; anything else is refused because the
 * reference implementation refuses it too, and a file that loads here but
 * not there is worth hearing about. */
static int check_metadata(const mp_source *src, const json_t *md, mp_error *err) {
        const char *key;
        const json_t *v;

        if (!json_is_object(md))
                return mp_error_set(err, -EBADMSG, src->label, HEADER_START, "__metadata__ is not an object");
        if (json_object_size(md) > MAX_METADATA_PER_FILE)
                return mp_error_set(err, -E2BIG, src->label, HEADER_START,
                                    "__metadata__ has %zu entries (limit %u)", json_object_size(md), MAX_METADATA_PER_FILE);
        json_object_foreach((json_t *) md, key, v)
                if (!json_is_string(v))
                        return mp_error_set(err, -EBADMSG, src->label, HEADER_START,
                                            "__metadata__ value of '%s' is not a string", SAFE(key));
        return 0;
}

static int tensor_cmp(const void *a, const void *b) {
        const mp_tensor *x = a, *y = b;

        if (x->offset != y->offset)
                return x->offset < y->offset ? -1 : 1;
        if (x->length != y->length)
                return x->length < y->length ? -1 : 1;
        /* names are unique (duplicates are refused): the order is total */
        return strcmp(x->name, y->name);
}

/* ts is sorted by offset.  An overlap is an error naming both tensors; the
 * tensor that reaches furthest so far is the one a later tensor can overlap
 * (zero-length tensors occupy no bytes, so they overlap nothing). */
static int check_overlaps(const mp_source *src, const mp_tensor *ts, size_t n, uint64_t data_start,
                          uint64_t *ret_uncovered, uint64_t *ret_first_gap, mp_error *err) {
        uint64_t covered_end = data_start, uncovered = 0, first_gap = 0;
        const mp_tensor *cover = NULL;

        for (size_t i = 0; i < n; i++) {
                const mp_tensor *t = &ts[i];

                if (t->length == 0)
                        continue;
                if (cover && t->offset < covered_end)
                        return mp_error_set(err, -EBADMSG, src->label, clamp_offset(t->offset),
                                            "tensor '%s' [%" PRIu64 ", +%" PRIu64 ") overlaps tensor '%s' [%" PRIu64 ", +%" PRIu64 ")",
                                            SAFE(t->name), t->offset, t->length, SAFE(cover->name), cover->offset, cover->length);
                if (t->offset > covered_end) {
                        if (uncovered == 0)
                                first_gap = covered_end;
                        uncovered += t->offset - covered_end;
                }
                covered_end = t->offset + t->length;   /* checked against the file size */
                cover = t;
        }
        if (covered_end < src->size) {
                if (uncovered == 0)
                        first_gap = covered_end;
                uncovered += src->size - covered_end;
        }
        *ret_uncovered = uncovered;
        *ret_first_gap = first_gap;
        return 0;
}

/* Parses every tensor entry of the header into a new array sorted by file
 * offset, with overlaps refused. */
static int parse_tensors(const mp_source *src, json_t *root, uint64_t data_start, size_t file_index,
                         mp_tensor **ret, size_t *ret_n, mp_error *err) {
        size_t n_entries = json_object_size(root), n = 0;
        const char *key;
        json_t *v;
        int r;

        if (n_entries > MAX_TENSORS_PER_FILE)
                return mp_error_set(err, -E2BIG, src->label, HEADER_START, "header has %zu entries (limit %u)",
                                    n_entries, MAX_TENSORS_PER_FILE);

        _cleanup_(freep) mp_tensor *ts = calloc(n_entries ? n_entries : 1, sizeof(mp_tensor));
        if (!ts)
                return mp_error_set(err, -ENOMEM, src->label, -1, "out of memory");

        json_object_foreach(root, key, v) {
                if (strcmp(key, "__metadata__") == 0)
                        continue;
                r = parse_tensor(src, key, v, data_start, file_index, &ts[n], err);
                if (r < 0)
                        return r;
                n++;
        }

        qsort(ts, n, sizeof(mp_tensor), tensor_cmp);
        *ret = TAKE_PTR(ts);
        *ret_n = n;
        return 0;
}

/* Undoes a partial commit so that a failed load leaves m as it was. */
static void rollback(mp_model *m, size_t n_tensors, size_t n_metadata, size_t n_findings) {
        for (size_t i = n_tensors; i < m->n_tensors; i++) {
                free(m->tensors[i].name);
                free(m->tensors[i].source_name);
        }
        m->n_tensors = n_tensors;
        for (size_t i = n_metadata; i < m->n_metadata; i++) {
                free(m->metadata[i].key);
                free(m->metadata[i].value);
        }
        m->n_metadata = n_metadata;
        for (size_t i = n_findings; i < m->n_findings; i++) {
                free(m->findings[i].file);
                free(m->findings[i].detail);
        }
        m->n_findings = n_findings;
}

static int commit(mp_model *m, const mp_source *src, const mp_tensor *ts, size_t n, const json_t *md,
                  uint64_t uncovered, uint64_t first_gap, mp_error *err) {
        const char *key;
        const json_t *v;
        int r;

        for (size_t i = 0; i < n; i++) {
                r = mp_model_add_tensor(m, &ts[i]);
                if (r < 0)
                        return mp_error_set(err, r, src->label, -1, "out of memory");
        }
        if (md)
                json_object_foreach((json_t *) md, key, v) {
                        r = mp_model_add_metadata(m, key, json_string_value(v));
                        if (r < 0)
                                return mp_error_set(err, r, src->label, -1, "out of memory");
                }
        /* The reference implementation refuses holes and trailing bytes; we
         * can still fingerprint such a file, but bytes that no tensor owns
         * are a place to hide a payload, so say so. */
        if (uncovered > 0) {
                r = mp_model_add_finding(m, MP_FINDING_SUSPICIOUS, src->label, clamp_offset(first_gap),
                                         "%" PRIu64 " bytes of the data section belong to no tensor "
                                         "(first at byte %" PRIu64 ")", uncovered, first_gap);
                if (r < 0)
                        return mp_error_set(err, r, src->label, -1, "out of memory");
        }
        return 0;
}

int mp_safetensors_load(mp_model *m, size_t file_index, const mp_source *src, mp_error *err) {
        _cleanup_(freep) char *header = NULL;
        _cleanup_(json_decrefp) json_t *root = NULL;
        _cleanup_(freep) mp_tensor *ts = NULL;
        uint64_t header_len = 0, data_start, uncovered = 0, first_gap = 0;
        size_t n = 0;
        int r;

        assert(m);
        assert(src);
        assert(file_index < m->n_files);

        r = read_header(src, &header_len, &header, err);
        if (r < 0)
                return r;
        data_start = HEADER_START + header_len;   /* <= file size, checked */

        r = parse_header_json(src, header, header_len, &root, err);
        if (r < 0)
                return r;

        const json_t *md = json_object_get(root, "__metadata__");
        if (md) {
                r = check_metadata(src, md, err);
                if (r < 0)
                        return r;
        }

        r = parse_tensors(src, root, data_start, file_index, &ts, &n, err);
        if (r < 0)
                return r;
        r = check_overlaps(src, ts, n, data_start, &uncovered, &first_gap, err);
        if (r < 0)
                return r;

        size_t old_tensors = m->n_tensors, old_metadata = m->n_metadata, old_findings = m->n_findings;
        r = commit(m, src, ts, n, md, uncovered, first_gap, err);
        if (r < 0) {
                rollback(m, old_tensors, old_metadata, old_findings);
                return r;
        }
        return 0;
}

/* ---- model.safetensors.index.json ---- */

static void strv_free(char **l) {
        if (!l)
                return;
        for (char **p = l; *p; p++)
                free(*p);
        free(l);
}

static void strv_freep(char ***l) {
        strv_free(*l);
}

/* Best-effort position of a JSON value in the raw text, for error messages:
 * jansson gives positions only for syntax errors.  The value is searched
 * as jansson would encode it; when the file spells it differently (other
 * escapes) the start of the file is named instead. */
static int64_t locate_json(const char *buf, size_t len, const json_t *v) {
        _cleanup_(freep) char *enc = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        if (!enc)
                return 0;
        const char *p = memmem(buf, len, enc, strlen(enc));
        return p ? (int64_t) (p - buf) : 0;
}

static int64_t locate_string(const char *buf, size_t len, const char *s) {
        _cleanup_(json_decrefp) json_t *j = json_string(s);
        return j ? locate_json(buf, len, j) : 0;
}

/* Shard names are joined to the model directory by the caller: anything
 * that could leave that directory, or forge lines in a terminal, is out. */
static const char *shard_name_problem(const char *name) {
        size_t len = strlen(name);

        if (len == 0)
                return "is empty";
        if (len > MAX_SHARD_NAME)
                return "is too long";
        if (name[0] == '/')
                return "is an absolute path";
        if (strchr(name, '/'))
                return "contains '/'";
        if (strstr(name, ".."))
                return "contains '..'";
        if (strcmp(name, ".") == 0)
                return "is '.'";
        for (const unsigned char *p = (const unsigned char *) name; *p; p++)
                if (*p < 0x20 || *p == 0x7f)
                        return "contains a control character";
        return NULL;
}

static int add_shard(char ***shards, size_t *n, size_t *allocated, json_t *seen, const char *name) {
        if (json_object_get(seen, name))
                return 0;
        if (*n >= MAX_SHARDS)
                return -E2BIG;
        /* +1 for the NULL terminator */
        if (mp_grow((void **) shards, allocated, *n + 2, sizeof(char *)) < 0)
                return -ENOMEM;
        char *c = strdup(name);
        if (!c)
                return -ENOMEM;
        if (json_object_set_new(seen, name, json_true()) < 0) {
                free(c);
                return -ENOMEM;
        }
        (*shards)[(*n)++] = c;
        (*shards)[*n] = NULL;
        return 0;
}

int mp_safetensors_index_parse(const char *label, const char *buf, size_t len, char ***ret_shards,
                               mp_error *err) {
        _cleanup_(json_decrefp) json_t *root = NULL, *seen = NULL;
        _cleanup_(strv_freep) char **shards = NULL;
        size_t n = 0, allocated = 0;
        json_error_t jerr;
        const char *key;
        json_t *v;
        int r;

        assert(buf || len == 0);
        assert(ret_shards);

        root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root)
                return mp_error_set(err, -EBADMSG, label, jerr.position > 0 ? jerr.position : 0,
                                    "invalid JSON: %s", jerr.text);
        if (!json_is_object(root))
                return mp_error_set(err, -EBADMSG, label, 0, "index is not a JSON object");

        json_t *map = json_object_get(root, "weight_map");
        if (!json_is_object(map))
                return mp_error_set(err, -EBADMSG, label, 0, "index has no \"weight_map\" object");
        if (json_object_size(map) == 0)
                return mp_error_set(err, -EBADMSG, label, locate_string(buf, len, "weight_map"),
                                    "\"weight_map\" is empty");

        seen = json_object();
        if (!seen)
                return mp_error_set(err, -ENOMEM, label, -1, "out of memory");

        json_object_foreach(map, key, v) {
                if (!json_is_string(v))
                        return mp_error_set(err, -EBADMSG, label, locate_string(buf, len, key),
                                            "weight_map entry of '%s' is not a string", SAFE(key));

                const char *name = json_string_value(v);
                const char *problem = shard_name_problem(name);
                if (problem)
                        return mp_error_set(err, -EBADMSG, label, locate_json(buf, len, v),
                                            "shard name of '%s' %s", SAFE(key), problem);

                r = add_shard(&shards, &n, &allocated, seen, name);
                if (r == -E2BIG)
                        return mp_error_set(err, r, label, locate_json(buf, len, v),
                                            "weight_map names more than %u shard files", MAX_SHARDS);
                if (r < 0)
                        return mp_error_set(err, r, label, -1, "out of memory");
        }

        *ret_shards = TAKE_PTR(shards);
        return (int) n;
}
