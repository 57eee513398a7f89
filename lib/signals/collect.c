/* collect.c - the weight-signal visitor of the single pass (see collect.h). */
#include "signals/collect.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "signals/anchors.h"
#include "signals/sample.h"
#include "signals/tensor_role.h"
#include "util/fstats.h"
#include "util/macro.h"

/* NLF vectors are 1-D normalization weights of at least this many elements. */
#define NLF_MIN_ELEMENTS 64
/* NLF values kept in a record; more are subsampled (docs/signals.md). */
#define NLF_MAX_VALUES 8192
#define END_BINS 20
/* Block size when norm vectors are read outside the pass. */
#define FLOAT_STREAM_ELEMS 16384

typedef struct sample_slot {
        uint64_t stored;        /* stored-order element index */
        uint32_t slot;          /* sample number */
} sample_slot;

typedef struct tensor_acc {
        bool active;
        bool nonfinite;
        double sum, sumsq;
        uint64_t count;
        sample_slot *slots;     /* by stored index */
        size_t n_slots, cursor;
        float *sample;          /* by sample number */
        float *values;          /* whole tensor (normalization vectors only) */
        /* incremental: not visited, parts from an earlier record */
        const Modelprov__V1__TensorDigest *reused;
        const float *nlf_row;   /* its NLF row in that record, or NULL */
        bool values_loaded;     /* else: values read by finish_reuse() */
} tensor_acc;

struct mp_signal_collector {
        const mp_model *m;
        mp_tensor_visitor visitor;
        tensor_acc *acc;
        mp_tensor_kind *kinds;

        size_t embed;           /* tensor index, or SIZE_MAX */
        uint64_t embed_rows, embed_cols;
        double *row_sumsq;

        mp_anchor anchors[MP_EAS_ANCHORS];
        size_t n_anchors;
        size_t anchor_by_id[MP_EAS_ANCHORS];    /* anchor numbers sorted by id */
        float *anchor_rows;     /* n_anchors x embed_cols, by anchor number */
        const Modelprov__V1__Signals *prev_embed;       /* END/EAS to copy, see reuse_embedding */
};

static int cmp_slot(const void *a, const void *b) {
        const sample_slot *x = a, *y = b;
        return x->stored < y->stored ? -1 : x->stored > y->stored;
}

static bool is_norm_vector(const mp_tensor *t, mp_tensor_kind k) {
        return k.role == MP_TR_NORM && t->n_dims == 1 && t->n_elements >= NLF_MIN_ELEMENTS;
}

/* Heads whose rows a RoPE permutation interleaved, for the q or k projection. */
static uint64_t rope_heads(const mp_model *m, mp_tensor_kind k) {
        if (k.role == MP_TR_ATTN_K && m->arch.num_kv_heads > 0)
                return m->arch.num_kv_heads;
        return m->arch.num_heads;
}

static int tensor_acc_init(mp_signal_collector *c, size_t ti) {
        const mp_tensor *t = &c->m->tensors[ti];
        mp_tensor_kind k = c->kinds[ti];
        tensor_acc *a = &c->acc[ti];
        const mp_dtype_info *info = mp_dtype_get(t->dtype);

        if (!info || !info->to_f32 || t->n_elements == 0 || (t->flags & MP_TENSOR_NONCONTIGUOUS))
                return 0;
        a->active = true;

        size_t n = k.role == MP_TR_EMBED || k.role == MP_TR_LM_HEAD ? MP_SAMPLE_PER_EMBEDDING : MP_SAMPLE_PER_TENSOR;
        if (n > t->n_elements)
                n = (size_t) t->n_elements;
        a->slots = calloc(n, sizeof(*a->slots));
        a->sample = calloc(n, sizeof(float));
        if (!a->slots || !a->sample)
                return -ENOMEM;
        uint64_t shape[MP_MAX_DIMS];
        mp_tensor_hf_shape(t, shape);
        uint64_t heads = rope_heads(c->m, k);
        for (size_t j = 0; j < n; j++) {
                uint64_t hf = mp_sample_position(shape, t->n_dims, t->n_elements, j);
                a->slots[j] = (sample_slot) { .stored = mp_sample_stored_index(t, heads, hf), .slot = (uint32_t) j };
        }
        qsort(a->slots, n, sizeof(*a->slots), cmp_slot);
        a->n_slots = n;

        if (is_norm_vector(t, k)) {
                a->values = calloc((size_t) t->n_elements, sizeof(float));
                if (!a->values)
                        return -ENOMEM;
        }
        return 0;
}

/* The embedding END and EAS read: the first token embedding, else the
 * first LM head, that is a plain convertible matrix.  One predicate for the
 * tensors of an open model and of an earlier record (incremental reuse must
 * know that record picked the same tensor). */
static bool embedding_candidate(mp_tensor_kind k, mp_tensor_role want, uint32_t n_dims, mp_dtype dtype,
                                uint32_t flags) {
        const mp_dtype_info *info = mp_dtype_get(dtype);
        return k.role == want && !k.is_bias && n_dims == 2 && info && info->to_f32 &&
               !(flags & (MP_TENSOR_TRANSPOSED | MP_TENSOR_NONCONTIGUOUS));
}

static size_t find_embedding(const mp_model *m, const mp_tensor_kind *kinds) {
        for (int pass = 0; pass < 2; pass++) {
                mp_tensor_role want = pass == 0 ? MP_TR_EMBED : MP_TR_LM_HEAD;
                for (size_t i = 0; i < m->n_tensors; i++) {
                        const mp_tensor *t = &m->tensors[i];
                        if (embedding_candidate(kinds[i], want, t->n_dims, t->dtype, t->flags))
                                return i;
                }
        }
        return SIZE_MAX;
}

static int cmp_anchor_id(const void *a, const void *b, void *userdata) {
        const mp_anchor *anchors = userdata;
        uint32_t x = anchors[*(const size_t *) a].id, y = anchors[*(const size_t *) b].id;
        return x < y ? -1 : x > y;
}

static int embedding_init(mp_signal_collector *c) {
        c->embed = find_embedding(c->m, c->kinds);
        if (c->embed == SIZE_MAX)
                return 0;
        const mp_tensor *t = &c->m->tensors[c->embed];
        c->embed_rows = t->shape[0];
        c->embed_cols = t->shape[1];
        if (c->embed_rows == 0 || c->embed_cols == 0)
                return 0;
        c->row_sumsq = calloc((size_t) c->embed_rows, sizeof(double));
        if (!c->row_sumsq)
                return -ENOMEM;

        int r = mp_anchors_select(c->m->tokenizer, c->embed_rows, c->anchors);
        if (r < 0)
                return r;
        c->n_anchors = (size_t) r;
        for (size_t i = 0; i < c->n_anchors; i++)
                c->anchor_by_id[i] = i;
        qsort_r(c->anchor_by_id, c->n_anchors, sizeof(size_t), cmp_anchor_id, c->anchors);
        c->anchor_rows = calloc(c->n_anchors * (size_t) c->embed_cols, sizeof(float));
        return c->anchor_rows || c->n_anchors == 0 ? 0 : -ENOMEM;
}

/* --- the visitor ---------------------------------------------------------- */

static int visit_begin(void *userdata, const mp_model *m, size_t ti) {
        mp_signal_collector *c = userdata;
        assert(m == c->m);
        return c->acc[ti].active && !c->acc[ti].reused ? 0 : 1;
}

/* Sum and sum of squares of n floats: four-wide float lanes with the
 * compiler's vector extensions (-O2 does not vectorize loops of unknown
 * length by itself), folded into doubles once per call; the pass hands over
 * at most 16 Ki values at a time, so float partial sums lose nothing that
 * matters here. */
typedef float v4f __attribute__((vector_size(16)));

static void sum_sumsq(const float *v, size_t n, double *ret_sum, double *ret_sumsq) {
        v4f s0 = {0}, s1 = {0}, q0 = {0}, q1 = {0};
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
                v4f a, b;
                memcpy(&a, v + i, sizeof(a));
                memcpy(&b, v + i + 4, sizeof(b));
                s0 += a;
                s1 += b;
                q0 += a * a;
                q1 += b * b;
        }
        double ds = 0, dq = 0;
        for (size_t l = 0; l < 4; l++) {
                ds += (double) s0[l] + s1[l];
                dq += (double) q0[l] + q1[l];
        }
        for (; i < n; i++) {
                ds += v[i];
                dq += (double) v[i] * v[i];
        }
        *ret_sum = ds;
        *ret_sumsq = dq;
}

static void accumulate(tensor_acc *a, const float *v, size_t n) {
        double ds, dq;
        sum_sumsq(v, n, &ds, &dq);
        if (!isfinite(ds) || !isfinite(dq)) {
                a->nonfinite = true;
                return;
        }
        a->sum += ds;
        a->sumsq += dq;
}

static void embedding_block(mp_signal_collector *c, const float *v, size_t n, uint64_t first) {
        uint64_t cols = c->embed_cols;
        for (size_t i = 0; i < n;) {
                uint64_t idx = first + i, row = idx / cols;
                size_t in_row = (size_t) (cols - idx % cols);
                if (in_row > n - i)
                        in_row = n - i;
                if (row >= c->embed_rows)
                        break;
                double sum, q;
                sum_sumsq(v + i, in_row, &sum, &q);
                c->row_sumsq[row] += q;
                i += in_row;
        }
        /* Anchor rows: copy the part of each anchor row inside this block. */
        for (size_t k = 0; k < c->n_anchors; k++) {
                size_t a = c->anchor_by_id[k];
                uint64_t lo = c->anchors[a].id * cols, hi = lo + cols;
                if (hi <= first || lo >= first + n)
                        continue;
                uint64_t from = lo > first ? lo : first, to = hi < first + n ? hi : first + n;
                memcpy(c->anchor_rows + a * cols + (from - lo), v + (from - first), (size_t) (to - from) * sizeof(float));
        }
}

static int visit_values(void *userdata, size_t ti, const float *v, size_t n, uint64_t first) {
        mp_signal_collector *c = userdata;
        tensor_acc *a = &c->acc[ti];

        accumulate(a, v, n);
        a->count += n;
        while (a->cursor < a->n_slots && a->slots[a->cursor].stored < first + n) {
                const sample_slot *s = &a->slots[a->cursor++];
                if (s->stored >= first)
                        a->sample[s->slot] = v[s->stored - first];
        }
        if (a->values && first + n <= c->m->tensors[ti].n_elements)
                memcpy(a->values + first, v, n * sizeof(float));
        if (ti == c->embed && c->row_sumsq)
                embedding_block(c, v, n, first);
        return 0;
}

int mp_signal_collector_new(const mp_model *m, mp_signal_collector **ret) {
        assert(m);
        assert(ret);

        mp_signal_collector *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->m = m;
        c->embed = SIZE_MAX;
        c->visitor = (mp_tensor_visitor) { .userdata = c, .begin = visit_begin, .values = visit_values };
        c->acc = calloc(m->n_tensors ? m->n_tensors : 1, sizeof(*c->acc));
        c->kinds = calloc(m->n_tensors ? m->n_tensors : 1, sizeof(*c->kinds));
        int r = c->acc && c->kinds ? 0 : -ENOMEM;
        for (size_t i = 0; r >= 0 && i < m->n_tensors; i++) {
                c->kinds[i] = mp_tensor_kind_of(m->tensors[i].name);
                r = tensor_acc_init(c, i);
        }
        if (r >= 0)
                r = embedding_init(c);
        if (r < 0) {
                mp_signal_collector_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

void mp_signal_collector_free(mp_signal_collector *c) {
        if (!c)
                return;
        for (size_t i = 0; c->acc && i < c->m->n_tensors; i++) {
                free(c->acc[i].slots);
                free(c->acc[i].sample);
                free(c->acc[i].values);
        }
        free(c->acc);
        free(c->kinds);
        free(c->row_sumsq);
        free(c->anchor_rows);
        free(c);
}

const mp_tensor_visitor *mp_signal_collector_visitor(mp_signal_collector *c) {
        return &c->visitor;
}

/* --- after the pass: into the record -------------------------------------- */

/* A reused tensor is complete when the earlier record had its statistics
 * (a record holds a sample exactly for complete tensors). */
static bool tensor_complete(const mp_signal_collector *c, size_t ti) {
        const tensor_acc *a = &c->acc[ti];
        if (a->reused)
                return a->active && a->reused->sample.len > 0;
        return a->active && !a->nonfinite && a->count == c->m->tensors[ti].n_elements;
}

static double tensor_l2(const mp_signal_collector *c, size_t ti) {
        const tensor_acc *a = &c->acc[ti];
        return a->reused ? a->reused->l2 : sqrt(a->sumsq);
}

static int attach_reused_tensor(const tensor_acc *a, Modelprov__V1__TensorDigest *d) {
        const Modelprov__V1__TensorDigest *p = a->reused;
        if (p->sample.len == 0)
                return 0;
        uint8_t *buf = malloc(p->sample.len);
        if (!buf)
                return -ENOMEM;
        memcpy(buf, p->sample.data, p->sample.len);
        d->l2 = p->l2;
        d->mean = p->mean;
        d->std = p->std;
        free(d->sample.data);
        d->sample = (ProtobufCBinaryData) { .len = p->sample.len, .data = buf };
        return 0;
}

static int attach_tensor(const mp_signal_collector *c, size_t ti, Modelprov__V1__TensorDigest *d) {
        const tensor_acc *a = &c->acc[ti];
        if (!tensor_complete(c, ti))
                return 0;
        if (a->reused)
                return attach_reused_tensor(a, d);
        double n = (double) a->count, mean = a->sum / n, var = a->sumsq / n - mean * mean;
        d->l2 = sqrt(a->sumsq);
        d->mean = mean;
        d->std = var > 0 ? sqrt(var) : 0;

        uint8_t *buf = malloc(a->n_slots * 2);
        if (!buf)
                return -ENOMEM;
        for (size_t j = 0; j < a->n_slots; j++) {
                uint16_t h = mp_f32_to_f16(a->sample[j]);
                buf[2 * j] = (uint8_t) h;
                buf[2 * j + 1] = (uint8_t) (h >> 8);
        }
        free(d->sample.data);
        d->sample = (ProtobufCBinaryData) { .len = a->n_slots * 2, .data = buf };
        return 0;
}

/* END and EAS of an embedding that was not read, checked by
 * mp_signal_collector_reuse_embedding(). */
static int copy_embedding(const Modelprov__V1__Signals *p, Modelprov__V1__Signals *s) {
        if (!p)
                return -EINVAL;         /* reuse_embedding() was not called */
        s->end_histogram = malloc(END_BINS * sizeof(float));
        if (!s->end_histogram)
                return -ENOMEM;
        memcpy(s->end_histogram, p->end_histogram, END_BINS * sizeof(float));
        s->n_end_histogram = END_BINS;
        s->end_min = p->end_min;
        s->end_max = p->end_max;

        size_t k = p->n_eas_ids;
        if (k < 2)
                return 0;
        s->eas_tokens = calloc(k, sizeof(char *));
        s->eas_ids = malloc(k * sizeof(uint32_t));
        s->eas_self_sim = malloc(k * (k - 1) / 2 * sizeof(float));
        if (!s->eas_tokens || !s->eas_ids || !s->eas_self_sim)
                return -ENOMEM;
        s->n_eas_tokens = s->n_eas_ids = k;
        s->n_eas_self_sim = k * (k - 1) / 2;
        memcpy(s->eas_ids, p->eas_ids, k * sizeof(uint32_t));
        memcpy(s->eas_self_sim, p->eas_self_sim, s->n_eas_self_sim * sizeof(float));
        for (size_t i = 0; i < k; i++) {
                s->eas_tokens[i] = strdup(p->eas_tokens[i]);
                if (!s->eas_tokens[i])
                        return -ENOMEM;
        }
        return 0;
}

static int attach_embedding(const mp_signal_collector *c, Modelprov__V1__Signals *s) {
        if (c->embed == SIZE_MAX || !c->row_sumsq || !tensor_complete(c, c->embed))
                return 0;
        if (c->acc[c->embed].reused)
                return copy_embedding(c->prev_embed, s);

        /* END: histogram of row norms over [min, max]. */
        double lo = INFINITY, hi = -INFINITY;
        for (uint64_t r = 0; r < c->embed_rows; r++) {
                double v = sqrt(c->row_sumsq[r]);
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
        }
        s->end_histogram = calloc(END_BINS, sizeof(float));
        if (!s->end_histogram)
                return -ENOMEM;
        s->n_end_histogram = END_BINS;
        for (uint64_t r = 0; r < c->embed_rows; r++) {
                double v = sqrt(c->row_sumsq[r]);
                size_t b = hi > lo ? (size_t) ((v - lo) / (hi - lo) * END_BINS) : 0;
                s->end_histogram[b < END_BINS ? b : END_BINS - 1] += 1.0f;
        }
        for (size_t b = 0; b < END_BINS; b++)
                s->end_histogram[b] /= (float) c->embed_rows;
        s->end_min = (float) lo;
        s->end_max = (float) hi;

        /* EAS: cosine self-similarity of the anchor rows, upper triangle. */
        size_t k = c->n_anchors, cols = (size_t) c->embed_cols;
        if (k < 2)
                return 0;
        s->eas_tokens = calloc(k, sizeof(char *));
        s->eas_ids = calloc(k, sizeof(uint32_t));
        s->eas_self_sim = calloc(k * (k - 1) / 2, sizeof(float));
        _cleanup_(freep) double *norms = calloc(k, sizeof(double));
        if (!s->eas_tokens || !s->eas_ids || !s->eas_self_sim || !norms)
                return -ENOMEM;
        s->n_eas_tokens = s->n_eas_ids = k;
        s->n_eas_self_sim = k * (k - 1) / 2;
        for (size_t i = 0; i < k; i++) {
                s->eas_ids[i] = c->anchors[i].id;
                s->eas_tokens[i] = strdup(c->anchors[i].token ? c->anchors[i].token : "");
                if (!s->eas_tokens[i])
                        return -ENOMEM;
                const float *x = c->anchor_rows + i * cols;
                double q = 0;
                for (size_t j = 0; j < cols; j++)
                        q += (double) x[j] * x[j];
                norms[i] = sqrt(q);
        }
        size_t o = 0;
        for (size_t i = 0; i < k; i++)
                for (size_t j = i + 1; j < k; j++) {
                        const float *x = c->anchor_rows + i * cols, *y = c->anchor_rows + j * cols;
                        double d = 0;
                        for (size_t e = 0; e < cols; e++)
                                d += (double) x[e] * y[e];
                        double den = norms[i] * norms[j];
                        s->eas_self_sim[o++] = den > 0 ? (float) (d / den) : 0.0f;
                }
        return 0;
}

static int cmp_norm_order(const void *a, const void *b, void *userdata) {
        const mp_signal_collector *c = userdata;
        size_t x = *(const size_t *) a, y = *(const size_t *) b;
        /* layer order, non-layer vectors (final norm) last, then by name */
        long lx = c->kinds[x].layer < 0 ? 1L << 30 : c->kinds[x].layer;
        long ly = c->kinds[y].layer < 0 ? 1L << 30 : c->kinds[y].layer;
        if (lx != ly)
                return lx < ly ? -1 : 1;
        return strcmp(c->m->tensors[x].name, c->m->tensors[y].name);
}

/* The NLF vectors, in record order, into *ret_vec (n_tensors long). */
static int nlf_select(const mp_signal_collector *c, size_t **ret_vec, size_t *ret_n) {
        const mp_model *m = c->m;
        size_t *vec = calloc(m->n_tensors ? m->n_tensors : 1, sizeof(size_t));
        if (!vec)
                return -ENOMEM;
        size_t n = 0;
        for (size_t i = 0; i < m->n_tensors; i++)
                if (c->acc[i].values && tensor_complete(c, i))
                        vec[n++] = i;
        qsort_r(vec, n, sizeof(size_t), cmp_norm_order, (void *) c);
        *ret_vec = vec;
        *ret_n = n;
        return 0;
}

/* Values per vector (n > 0): all of each vector while they fit, else evenly
 * spaced ones; 4 statistics when the lengths differ. */
static size_t nlf_per(const mp_model *m, const size_t *vec, size_t n, bool *ret_same_length) {
        bool same_length = true;
        for (size_t i = 1; i < n; i++)
                same_length &= m->tensors[vec[i]].n_elements == m->tensors[vec[0]].n_elements;

        size_t len = (size_t) m->tensors[vec[0]].n_elements;
        size_t per = same_length ? (len * n <= NLF_MAX_VALUES ? len : NLF_MAX_VALUES / n) : 4;
        *ret_same_length = same_length;
        return per == 0 ? 1 : per;
}

static int attach_nlf(const mp_signal_collector *c, Modelprov__V1__Signals *s) {
        const mp_model *m = c->m;
        _cleanup_(freep) size_t *vec = NULL;
        size_t n;
        int r = nlf_select(c, &vec, &n);
        if (r < 0)
                return r;
        if (n == 0)
                return 0;
        bool same_length;
        size_t per = nlf_per(m, vec, n, &same_length);
        s->nlf = calloc(n * per, sizeof(float));
        if (!s->nlf)
                return -ENOMEM;
        s->n_nlf = n * per;
        s->nlf_vectors = (uint32_t) n;
        s->nlf_mode = strdup(same_length ? "direct" : "stats");
        if (!s->nlf_mode)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const tensor_acc *a = &c->acc[vec[i]];
                const float *v = a->values;
                size_t vl = (size_t) m->tensors[vec[i]].n_elements;
                float *out = s->nlf + i * per;
                if (a->nlf_row) {
                        memcpy(out, a->nlf_row, per * sizeof(float));
                        continue;
                }
                if (a->reused && !a->values_loaded)
                        return -EINVAL;         /* finish_reuse() was not called */
                if (same_length) {
                        /* evenly spaced positions; all of them when they fit */
                        for (size_t j = 0; j < per; j++)
                                out[j] = v[(size_t) ((uint64_t) j * vl / per)];
                        continue;
                }
                mp_fstats st;
                mp_fstats_of(v, vl, &st);
                out[0] = (float) st.mean;
                out[1] = (float) st.std;
                out[2] = (float) st.max;
                out[3] = (float) st.min;
        }
        return 0;
}

static int attach_lep(const mp_signal_collector *c, Modelprov__V1__Signals *s) {
        const mp_model *m = c->m;
        int max_layer = -1;
        for (size_t i = 0; i < m->n_tensors; i++)
                if (c->kinds[i].layer > max_layer)
                        max_layer = c->kinds[i].layer;
        if (max_layer < 0)
                return 0;
        size_t nl = (size_t) max_layer + 1;
        _cleanup_(freep) double *e = calloc(nl, sizeof(double));
        if (!e)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_tensors; i++)
                if (c->kinds[i].layer >= 0 && m->tensors[i].n_dims >= 2 && tensor_complete(c, i))
                        e[c->kinds[i].layer] += tensor_l2(c, i);
        double mx = 0;
        for (size_t l = 0; l < nl; l++)
                mx = e[l] > mx ? e[l] : mx;
        s->lep = calloc(nl, sizeof(float));
        if (!s->lep)
                return -ENOMEM;
        s->n_lep = nl;
        for (size_t l = 0; l < nl; l++)
                s->lep[l] = mx > 0 ? (float) (e[l] / mx) : 0.0f;
        s->num_layers = (uint32_t) nl;
        return 0;
}

int mp_signal_collector_attach(const mp_signal_collector *c, mp_fingerprint *fp) {
        assert(c);
        assert(fp);
        if (fp->n_tensors != c->m->n_tensors)
                return -EINVAL;

        for (size_t i = 0; i < fp->n_tensors; i++) {
                int r = attach_tensor(c, i, fp->tensors[i]);
                if (r < 0)
                        return r;
        }
        if (!fp->signals) {
                fp->signals = malloc(sizeof(*fp->signals));
                if (!fp->signals)
                        return -ENOMEM;
                modelprov__v1__signals__init(fp->signals);
        }
        Modelprov__V1__Signals *s = fp->signals;
        s->has_weights = true;
        int r = attach_embedding(c, s);
        if (r >= 0)
                r = attach_nlf(c, s);
        if (r >= 0)
                r = attach_lep(c, s);
        return r;
}

/* --- incremental reuse ---------------------------------------------------- */

int mp_signal_collector_reuse_tensor(mp_signal_collector *c, size_t ti, const Modelprov__V1__TensorDigest *prev) {
        assert(c);
        assert(ti < c->m->n_tensors);
        tensor_acc *a = &c->acc[ti];
        if (!prev) {
                a->reused = NULL;
                return 0;
        }

        /* Active: a sample of our size, or none (values that were not all
         * finite).  Inactive: the earlier record cannot have statistics. */
        if (a->active ? prev->sample.len != 0 && prev->sample.len != a->n_slots * 2
                      : prev->sample.len != 0 || prev->l2 != 0 || prev->mean != 0 || prev->std != 0)
                return -EINVAL;
        if (prev->sample.len > 0 && !prev->sample.data)
                return -EINVAL;
        a->reused = prev;
        return 0;
}

size_t mp_signal_collector_embedding(const mp_signal_collector *c) {
        assert(c);
        return c->embed;
}

static mp_dtype dtype_by_name(const char *name) {
        for (int t = MP_DTYPE_INVALID + 1; name && t < _MP_DTYPE_MAX; t++) {
                const char *n = mp_dtype_name((mp_dtype) t);
                if (n && strcmp(n, name) == 0)
                        return (mp_dtype) t;
        }
        return MP_DTYPE_INVALID;
}

/* find_embedding() over a record's tensors: the name it picks, or NULL. */
static const char *record_embedding(const mp_fingerprint *fp) {
        for (int pass = 0; pass < 2; pass++) {
                mp_tensor_role want = pass == 0 ? MP_TR_EMBED : MP_TR_LM_HEAD;
                for (size_t i = 0; i < fp->n_tensors; i++) {
                        const Modelprov__V1__TensorDigest *d = fp->tensors[i];
                        if (!d || !d->name)
                                continue;
                        if (embedding_candidate(mp_tensor_kind_of(d->name), want, (uint32_t) d->n_shape,
                                                dtype_by_name(d->dtype), d->flags))
                                return d->name;
                }
        }
        return NULL;
}

static bool eas_matches(const mp_signal_collector *c, const Modelprov__V1__Signals *p) {
        size_t k = c->n_anchors;
        if (k < 2)
                return p->n_eas_ids == 0 && p->n_eas_tokens == 0 && p->n_eas_self_sim == 0;
        if (p->n_eas_ids != k || p->n_eas_tokens != k || p->n_eas_self_sim != k * (k - 1) / 2 || !p->eas_ids ||
            !p->eas_tokens || !p->eas_self_sim)
                return false;
        for (size_t i = 0; i < k; i++) {
                const char *tok = c->anchors[i].token ? c->anchors[i].token : "";
                if (p->eas_ids[i] != c->anchors[i].id || !p->eas_tokens[i] || strcmp(p->eas_tokens[i], tok) != 0)
                        return false;
        }
        return true;
}

int mp_signal_collector_reuse_embedding(mp_signal_collector *c, const mp_fingerprint *prev) {
        assert(c);
        c->prev_embed = NULL;
        if (c->embed == SIZE_MAX || !c->acc[c->embed].reused)
                return 0;
        /* attach_embedding() produces nothing here: nothing to copy */
        if (!c->row_sumsq || !tensor_complete(c, c->embed))
                return 0;
        if (!prev)
                return -EINVAL;

        const Modelprov__V1__Signals *p = prev->signals;
        const char *name = record_embedding(prev);
        if (!p || !name || strcmp(name, c->m->tensors[c->embed].name) != 0)
                return -EINVAL;
        if (p->n_end_histogram != END_BINS || !p->end_histogram || !eas_matches(c, p))
                return -EINVAL;
        c->prev_embed = p;
        return 0;
}

/* Whether an earlier record's tensor was one of its NLF vectors: the
 * predicate of nlf_select() as a record shows it. */
static bool record_nlf_vector(const Modelprov__V1__TensorDigest *d) {
        if (!d || !d->name || d->n_shape != 1 || !d->shape || d->sample.len == 0)
                return false;
        return mp_tensor_kind_of(d->name).role == MP_TR_NORM && d->shape[0] >= NLF_MIN_ELEMENTS;
}

/* Whether prev's NLF has the same vectors, mode and length per vector as
 * ours (vec, n, per): then row i of each is the same vector's. */
static bool nlf_layout_matches(const mp_signal_collector *c, const mp_fingerprint *prev, const size_t *vec,
                               size_t n, size_t per, bool same_length) {
        const Modelprov__V1__Signals *p = prev->signals;
        if (!p || p->nlf_vectors != n || p->n_nlf != n * per || !p->nlf || !p->nlf_mode ||
            strcmp(p->nlf_mode, same_length ? "direct" : "stats") != 0)
                return false;

        size_t n_prev = 0;
        for (size_t i = 0; i < prev->n_tensors; i++)
                n_prev += record_nlf_vector(prev->tensors[i]);
        if (n_prev != n)
                return false;
        /* Same count, and each of ours is one of prev's: the same set, and
         * the order depends on names only. */
        for (size_t k = 0; k < n; k++) {
                const char *name = c->m->tensors[vec[k]].name;
                bool found = false;
                for (size_t i = 0; !found && i < prev->n_tensors; i++)
                        found = record_nlf_vector(prev->tensors[i]) && strcmp(prev->tensors[i]->name, name) == 0;
                if (!found)
                        return false;
        }
        return true;
}

typedef struct values_sink {
        float *values;
        uint64_t n_elements;
        bool overflow;
} values_sink;

static int store_values(void *userdata, const float *v, size_t n, uint64_t first) {
        values_sink *sink = userdata;
        if (first > sink->n_elements || n > sink->n_elements - first) {
                sink->overflow = true;
                return -EBADMSG;
        }
        memcpy(sink->values + first, v, n * sizeof(float));
        return 0;
}

int mp_signal_collector_finish_reuse(mp_signal_collector *c, const mp_fingerprint *prev, uint64_t *bytes_read,
                                     mp_error *err) {
        assert(c);
        assert(prev);
        assert(bytes_read);

        _cleanup_(freep) size_t *vec = NULL;
        size_t n;
        int r = nlf_select(c, &vec, &n);
        if (r < 0)
                return mp_error_set(err, r, c->m->root, -1, "out of memory");
        bool any = false;
        for (size_t i = 0; i < n; i++)
                any |= c->acc[vec[i]].reused != NULL;
        if (!any)
                return 0;

        bool same_length;
        size_t per = nlf_per(c->m, vec, n, &same_length);
        if (nlf_layout_matches(c, prev, vec, n, per, same_length)) {
                for (size_t i = 0; i < n; i++)
                        if (c->acc[vec[i]].reused)
                                c->acc[vec[i]].nlf_row = prev->signals->nlf + i * per;
                return 0;
        }

        /* The vectors around them changed (one more, one fewer): read the
         * reused ones again, a few KiB each. */
        for (size_t i = 0; i < n; i++) {
                tensor_acc *a = &c->acc[vec[i]];
                if (!a->reused)
                        continue;
                values_sink sink = { .values = a->values, .n_elements = c->m->tensors[vec[i]].n_elements };
                r = mp_tensor_stream_f32(c->m, vec[i], FLOAT_STREAM_ELEMS, store_values, &sink, err);
                if (sink.overflow)
                        mp_error_set(err, r, c->m->files[c->m->tensors[vec[i]].file_index].path, -1,
                                     "tensor '%s': more values than its shape", c->m->tensors[vec[i]].name);
                if (r < 0)
                        return r;
                a->values_loaded = true;
                *bytes_read += c->m->tensors[vec[i]].length;
        }
        return 0;
}
