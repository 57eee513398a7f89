/* diff.c - tensor-by-tensor difference of two fingerprints (see diff.h). */
#include "compare/diff.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "compare/compare_internal.h"
#include "signals/sample.h"
#include "util/macro.h"

const char *mp_diff_status_name(mp_diff_status s) {
        static const char *const names[_MP_DIFF_MAX] = {
                [MP_DIFF_IDENTICAL] = "identical", [MP_DIFF_CHANGED] = "changed", [MP_DIFF_RESHAPED] = "reshaped",
                [MP_DIFF_ONLY_A] = "only-in-a", [MP_DIFF_ONLY_B] = "only-in-b",
        };
        return (unsigned) s < _MP_DIFF_MAX ? names[s] : "unknown";
}

static int cmp_by_name(const void *x, const void *y) {
        const Modelprov__V1__TensorDigest *a = *(const Modelprov__V1__TensorDigest *const *) x;
        const Modelprov__V1__TensorDigest *b = *(const Modelprov__V1__TensorDigest *const *) y;
        return strcmp(a->name, b->name);
}

/* The record's tensors sorted by name (pointers into the record). */
static const Modelprov__V1__TensorDigest **sorted_tensors(const mp_fingerprint *fp) {
        const Modelprov__V1__TensorDigest **v = calloc(fp->n_tensors + 1, sizeof(*v));
        if (!v)
                return NULL;
        memcpy(v, fp->tensors, fp->n_tensors * sizeof(*v));
        qsort(v, fp->n_tensors, sizeof(*v), cmp_by_name);
        return v;
}

/* Same shape in HF order (one side may store a matrix transposed). */
static bool same_shape(const Modelprov__V1__TensorDigest *a, const Modelprov__V1__TensorDigest *b) {
        uint64_t sa[MP_MAX_DIMS], sb[MP_MAX_DIMS];
        if (a->n_shape != b->n_shape || a->n_shape > MP_MAX_DIMS)
                return false;
        mp_hf_shape(a->shape, (uint32_t) a->n_shape, a->flags, sa);
        mp_hf_shape(b->shape, (uint32_t) b->n_shape, b->flags, sb);
        return memcmp(sa, sb, a->n_shape * sizeof(uint64_t)) == 0;
}

static mp_diff_entry pair_entry(const Modelprov__V1__TensorDigest *a, const Modelprov__V1__TensorDigest *b) {
        mp_diff_entry e = { .name = a->name, .a = a, .b = b, .rel_change = NAN };
        double rc = mp_record_rel_change(a, b);
        if (!same_shape(a, b))
                e.status = MP_DIFF_RESHAPED;
        else if (strcmp(a->dtype, b->dtype) == 0 && a->xxh3_128.len == 16 && b->xxh3_128.len == 16 &&
                 memcmp(a->xxh3_128.data, b->xxh3_128.data, 16) == 0)
                e.status = MP_DIFF_IDENTICAL;
        else {
                e.status = MP_DIFF_CHANGED;
                e.rel_change = rc;
        }
        return e;
}

int mp_diff_records(const mp_fingerprint *a, const mp_fingerprint *b, mp_diff *out) {
        assert(a && b && out);
        *out = (mp_diff) {0};
        _cleanup_(freep) const Modelprov__V1__TensorDigest **sa = sorted_tensors(a);
        _cleanup_(freep) const Modelprov__V1__TensorDigest **sb = sorted_tensors(b);
        out->entries = calloc(a->n_tensors + b->n_tensors + 1, sizeof(mp_diff_entry));
        if (!sa || !sb || !out->entries) {
                mp_diff_free(out);
                return -ENOMEM;
        }
        size_t i = 0, j = 0;
        while (i < a->n_tensors || j < b->n_tensors) {
                int c = i >= a->n_tensors ? 1 : j >= b->n_tensors ? -1 : strcmp(sa[i]->name, sb[j]->name);
                mp_diff_entry e;
                if (c < 0) {
                        e = (mp_diff_entry) { .name = sa[i]->name, .status = MP_DIFF_ONLY_A, .a = sa[i], .rel_change = NAN };
                        i++;
                } else if (c > 0) {
                        e = (mp_diff_entry) { .name = sb[j]->name, .status = MP_DIFF_ONLY_B, .b = sb[j], .rel_change = NAN };
                        j++;
                } else {
                        e = pair_entry(sa[i], sb[j]);
                        i++;
                        j++;
                }
                out->entries[out->n_entries++] = e;
                out->count[e.status]++;
        }
        return 0;
}

void mp_diff_free(mp_diff *d) {
        free(d->entries);
        *d = (mp_diff) {0};
}

static json_t *shape_json(const Modelprov__V1__TensorDigest *t) {
        if (!t)
                return json_null();
        json_t *a = json_array();
        for (size_t i = 0; a && i < t->n_shape; i++)
                json_array_append_new(a, json_integer((json_int_t) t->shape[i]));
        return a;
}

json_t *mp_diff_to_json(const mp_diff *d) {
        json_t *summary = json_object();
        for (size_t s = 0; summary && s < _MP_DIFF_MAX; s++)
                json_object_set_new(summary, mp_diff_status_name((mp_diff_status) s), json_integer((json_int_t) d->count[s]));
        json_t *tensors = json_array();
        for (size_t i = 0; tensors && i < d->n_entries; i++) {
                const mp_diff_entry *e = &d->entries[i];
                json_array_append_new(tensors, json_pack("{s:s, s:s, s:o, s:o, s:o, s:o, s:o}", "name", e->name,
                        "status", mp_diff_status_name(e->status),
                        "relative_change", isnan(e->rel_change) ? json_null() : json_real(e->rel_change),
                        "dtype_a", e->a ? json_string(e->a->dtype) : json_null(),
                        "dtype_b", e->b ? json_string(e->b->dtype) : json_null(),
                        "shape_a", shape_json(e->a), "shape_b", shape_json(e->b)));
        }
        return json_pack("{s:o, s:o}", "summary", summary, "tensors", tensors);
}
