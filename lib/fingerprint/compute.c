/* compute.c - pass + record + signals in one call, full or incremental (see
 * compute.h).
 *
 * Incremental computes plan first: every tensor of a known file is matched
 * against the previous record, a file with any tensor that does not match
 * (or whose embedding signals the previous record cannot supply) is handed
 * back to the pass, and only then the pass reads what is left.  The record
 * is then built exactly as a full compute builds it, with the matched
 * tensors' parts taken from the previous record. */
#include "fingerprint/compute.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "signals/collect.h"
#include "signals/metadata.h"
#include "util/macro.h"

typedef Modelprov__V1__TensorDigest tensor_digest;

/* --- planning: what the previous record can stand in for ------------------- */

typedef struct plan {
        const mp_fingerprint *prev;     /* NULL: nothing can be reused */
        const tensor_digest **stand_in; /* per tensor of m */
        size_t *prev_file;              /* per file of m: index in prev, SIZE_MAX if none */
        size_t *by_name;                /* prev tensor indices sorted by name */
        size_t n_by_name;
} plan;

static void plan_done(plan *p) {
        free(p->stand_in);
        free(p->prev_file);
        free(p->by_name);
}

/* Records of another modelprov version may compute parts differently, and
 * imported catalog entries have no weight parts at all. */
static bool prev_usable(const mp_fingerprint *prev) {
        return prev && prev->tool_version && strcmp(prev->tool_version, MODELPROV_VERSION) == 0 && prev->signals &&
               prev->signals->has_weights && prev->arch && (prev->n_files == 0 || prev->files) &&
               (prev->n_tensors == 0 || prev->tensors);
}

static const char *or_empty(const char *s) {
        return s ? s : "";
}

/* The previous record's file with this file's path and content. */
static size_t find_prev_file(const mp_fingerprint *prev, const mp_file *f) {
        for (size_t i = 0; i < prev->n_files; i++) {
                const Modelprov__V1__FileDigest *d = prev->files[i];
                if (d && d->path && strcmp(d->path, f->rel_path) == 0)
                        return d->size == f->size && d->sha256.len == 32 && d->sha256.data &&
                                               memcmp(d->sha256.data, f->sha256, 32) == 0
                                       ? i
                                       : SIZE_MAX;
        }
        return SIZE_MAX;
}

static int cmp_prev_name(const void *a, const void *b, void *userdata) {
        const mp_fingerprint *prev = userdata;
        return strcmp(prev->tensors[*(const size_t *) a]->name, prev->tensors[*(const size_t *) b]->name);
}

static const tensor_digest *find_prev_tensor(const plan *p, const char *name) {
        size_t lo = 0, hi = p->n_by_name;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                const tensor_digest *d = p->prev->tensors[p->by_name[mid]];
                int c = strcmp(d->name, name);
                if (c == 0)
                        return d;
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

static int plan_init(plan *p, const mp_model *m, const mp_fingerprint *prev) {
        *p = (plan) { .prev = prev_usable(prev) ? prev : NULL };
        p->stand_in = calloc(m->n_tensors ? m->n_tensors : 1, sizeof(*p->stand_in));
        p->prev_file = calloc(m->n_files ? m->n_files : 1, sizeof(size_t));
        if (!p->stand_in || !p->prev_file)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_files; i++)
                p->prev_file[i] = p->prev && m->files[i].digested ? find_prev_file(p->prev, &m->files[i]) : SIZE_MAX;
        if (!p->prev)
                return 0;

        p->by_name = calloc(p->prev->n_tensors ? p->prev->n_tensors : 1, sizeof(size_t));
        if (!p->by_name)
                return -ENOMEM;
        for (size_t i = 0; i < p->prev->n_tensors; i++)
                if (p->prev->tensors[i] && p->prev->tensors[i]->name)
                        p->by_name[p->n_by_name++] = i;
        qsort_r(p->by_name, p->n_by_name, sizeof(size_t), cmp_prev_name, (void *) p->prev);
        return 0;
}

/* Everything the record and the signals take from tensor t, other than its
 * bytes, is the same in d (the bytes: same file content, checked by the
 * caller through the file digest). */
static bool tensor_matches(const plan *p, const mp_model *m, const mp_tensor *t, const tensor_digest *d) {
        size_t pfi = p->prev_file[t->file_index];
        const char *source = t->source_name && strcmp(t->source_name, t->name) != 0 ? t->source_name : "";

        if (pfi == SIZE_MAX || d->file_index != pfi || !d->dtype || strcmp(d->dtype, mp_dtype_name(t->dtype)) != 0 ||
            d->n_shape != t->n_dims || (t->n_dims > 0 && !d->shape) || d->n_bytes != t->length ||
            d->flags != t->flags || strcmp(or_empty(d->source_name), source) != 0 || d->xxh3_128.len != 16 ||
            !d->xxh3_128.data)
                return false;
        for (uint32_t k = 0; k < t->n_dims; k++)
                if (d->shape[k] != t->shape[k])
                        return false;
        /* Samples of RoPE-interleaved rows are placed by the head counts. */
        if ((t->flags & MP_TENSOR_ROPE_PERMUTED) &&
            (p->prev->arch->num_heads != m->arch.num_heads || p->prev->arch->num_kv_heads != m->arch.num_kv_heads))
                return false;
        return true;
}

/* A git blob name is checked against the content, which is not read: the
 * previous record must show the same content with the same name, and no
 * mismatch reported for it. */
static bool git_name_vouched(const plan *p, const mp_file *f, size_t fi) {
        size_t pfi = p->prev_file[fi];
        if (!p->prev || pfi == SIZE_MAX || !f->expect_hex)
                return false;
        const char *expected = p->prev->files[pfi]->expected;
        if (!expected || strncmp(expected, "gitsha1:", 8) != 0 || strcmp(expected + 8, f->expect_hex) != 0)
                return false;
        const char *mismatch = mp_finding_kind_name(MP_FINDING_DIGEST_MISMATCH);
        if (p->prev->n_findings > 0 && !p->prev->findings)
                return false;
        for (size_t i = 0; i < p->prev->n_findings; i++) {
                const Modelprov__V1__Finding *x = p->prev->findings[i];
                if (!x || !x->kind || strcmp(x->kind, mismatch) != 0)
                        continue;
                if (strcmp(or_empty(x->file), f->path) == 0 || strstr(or_empty(x->detail), f->expect_hex))
                        return false;
        }
        return true;
}

/* Decides which known files stay unread, and tells the collector which
 * tensors it gets from the previous record. */
static int plan_reuse(plan *p, mp_model *m, mp_signal_collector *c) {
        _cleanup_(freep) bool *read = calloc(m->n_files ? m->n_files : 1, sizeof(bool));
        if (!read)
                return -ENOMEM;

        for (size_t i = 0; i < m->n_files; i++) {
                const mp_file *f = &m->files[i];
                read[i] = !f->digested || (f->expect_kind == MP_EXPECT_GIT_SHA1 && !git_name_vouched(p, f, i));
        }
        for (size_t i = 0; i < m->n_tensors; i++) {
                const mp_tensor *t = &m->tensors[i];
                if (t->file_index >= m->n_files)
                        return -EINVAL;
                if (read[t->file_index])
                        continue;
                const tensor_digest *d = p->prev ? find_prev_tensor(p, t->name) : NULL;
                if (d && tensor_matches(p, m, t, d) && mp_signal_collector_reuse_tensor(c, i, d) >= 0)
                        p->stand_in[i] = d;
                else
                        read[t->file_index] = true;
        }
        /* END and EAS: from the previous record, or the embedding is read. */
        size_t e = mp_signal_collector_embedding(c);
        if (e != SIZE_MAX && !read[m->tensors[e].file_index] && mp_signal_collector_reuse_embedding(c, p->prev) < 0)
                read[m->tensors[e].file_index] = true;

        for (size_t i = 0; i < m->n_tensors; i++)
                if (read[m->tensors[i].file_index] && p->stand_in[i]) {
                        p->stand_in[i] = NULL;
                        mp_signal_collector_reuse_tensor(c, i, NULL);
                }
        for (size_t i = 0; i < m->n_files; i++)
                if (read[i])
                        m->files[i].digested = false;
        return 0;
}

/* --- the computation ------------------------------------------------------- */

/* The pass options: the caller's, with the collector's visitor added. */
static int pass_options(const mp_pass_options *opts, mp_signal_collector *c, mp_pass_options *po,
                        mp_tensor_visitor **ret_visitors) {
        *po = opts ? *opts : (mp_pass_options) {0};
        size_t nv = po->n_visitors + 1;
        mp_tensor_visitor *visitors = calloc(nv, sizeof(*visitors));
        if (!visitors)
                return -ENOMEM;
        if (po->n_visitors > 0)
                memcpy(visitors, po->visitors, po->n_visitors * sizeof(*visitors));
        visitors[nv - 1] = *mp_signal_collector_visitor(c);
        po->visitors = visitors;
        po->n_visitors = nv;
        *ret_visitors = visitors;
        return 0;
}

/* Tensors not read take the previous record's XXH3; every tensor must be
 * covered one way or the other. */
static int merge_hashes(const mp_model *m, const plan *p, mp_pass_result *res, mp_error *err) {
        for (size_t i = 0; i < m->n_tensors; i++) {
                if (res->tensor_done[i])
                        continue;
                if (!p->stand_in[i])
                        return mp_error_set(err, -EIO, m->files[m->tensors[i].file_index].path, -1,
                                            "tensor '%s' was neither read nor known", m->tensors[i].name);
                memcpy(res->tensor_xxh3[i], p->stand_in[i]->xxh3_128.data, 16);
        }
        return 0;
}

static int compute(mp_model *m, const mp_pass_options *opts, bool incremental, const mp_fingerprint *previous,
                   mp_fingerprint **ret, uint64_t *ret_bytes_read, mp_error *err) {
        assert(m);
        assert(ret);

        _cleanup_(mp_signal_collector_freep) mp_signal_collector *c = NULL;
        int r = mp_signal_collector_new(m, &c);
        if (r < 0)
                return mp_error_set(err, r, m->root, -1, "cannot prepare weight signals");

        mp_pass_options po;
        _cleanup_(freep) mp_tensor_visitor *visitors = NULL;
        _cleanup_(plan_done) plan p = {0};
        r = pass_options(opts, c, &po, &visitors);
        if (r >= 0)
                r = plan_init(&p, m, incremental ? previous : NULL);
        if (r >= 0 && incremental)
                r = plan_reuse(&p, m, c);
        if (r < 0)
                return mp_error_set(err, r, m->root, -1, "%s", r == -ENOMEM ? "out of memory" : "inconsistent model");
        if (!incremental)
                for (size_t i = 0; i < m->n_files; i++)
                        m->files[i].digested = false;
        po.skip_digested = incremental;

        mp_pass_result res;
        r = mp_pass_run(m, &po, &res, err);
        if (r < 0)
                return r;
        uint64_t bytes_read = res.bytes_read;

        _cleanup_(mp_fingerprint_freep) mp_fingerprint *fp = NULL;
        r = merge_hashes(m, &p, &res, err);
        if (r >= 0 && p.prev)
                r = mp_signal_collector_finish_reuse(c, p.prev, &bytes_read, err);
        if (r >= 0)
                r = mp_fingerprint_build(m, &res, &fp, err);
        mp_pass_result_free(&res);
        if (r < 0)
                return r;

        r = mp_signal_collector_attach(c, fp);
        if (r >= 0)
                r = mp_signals_attach_metadata(m, fp->signals);
        if (r < 0)
                return mp_error_set(err, r, m->root, -1, "cannot compute signals");
        if (ret_bytes_read)
                *ret_bytes_read = bytes_read;
        *ret = TAKE_PTR(fp);
        return 0;
}

int mp_fingerprint_compute(mp_model *m, const mp_pass_options *opts, mp_fingerprint **ret, mp_error *err) {
        return compute(m, opts, false, NULL, ret, NULL, err);
}

int mp_fingerprint_compute_incremental(mp_model *m, const mp_pass_options *opts, const mp_fingerprint *previous,
                                       mp_fingerprint **ret, uint64_t *ret_bytes_read, mp_error *err) {
        return compute(m, opts, true, previous, ret, ret_bytes_read, err);
}
