/* compare_weights.c - the weight evidence of a comparison.
 *
 * Everything here works on the per-tensor statistics and samples and the
 * weight signals stored in the two records (see signals/collect.h); no
 * weights are read.  Tensors are paired by Hugging Face name and shape, so a
 * GGUF and a safetensors copy of one model pair up (the GGUF reader maps
 * names, and samples are taken in HF element order). */
#include "compare/compare_internal.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "formats/dtype.h"
#include "signals/sample.h"
#include "signals/tensor_role.h"
#include "util/fstats.h"
#include "util/macro.h"

/* Tensors smaller than this, or constant, carry no lineage evidence (biases
 * initialised to zero, untrained norms, masks). */
#define INFORMATIVE_MIN_ELEMENTS 1024
#define SAMPLE_MIN 16
/* A tensor counts as rescaled when its values keep their pattern this well
 * while the norm moves by more than 20%: training that moves a norm that
 * much also decorrelates the values (zoo: r <= 0.9 for such tensors). */
#define SCALED_MIN_R 0.97

typedef struct tview tview;
struct tview {
        const Modelprov__V1__TensorDigest *t;
        mp_tensor_kind kind;
        bool wvc;               /* takes part in WVC (the reference's name rule) */
        uint64_t shape[MP_MAX_DIMS];    /* HF order */
        uint32_t n_dims;
        uint64_t n_elements;
        const double *samples;  /* left side: its samples decoded once, or NULL */
        const tview *partner;   /* right side: the left side's tensor of that name, or NULL */
};

/* What the left side knows of a tensor name: its kind, and its tensor of
 * that name.  A query compares its left side with thousands of records
 * (a blast radius, a catalog scan) that mostly use the same few hundred
 * names; working a name out (substring tests, a binary search by name)
 * was a fifth of a comparison, looking it up here costs one hash. */
typedef struct name_memo_entry {
        char *name;             /* NULL: a free slot */
        uint64_t hash;
        mp_tensor_kind kind;
        bool wvc;
        const tview *partner;
} name_memo_entry;

/* Names remembered per query, at most; beyond them (a hostile stream of
 * distinct names) names are worked out each time, as without the memo.
 * Twice as many slots keep probe runs short and always end on a free one. */
#define NAME_MEMO_MAX 4096
#define NAME_MEMO_SLOTS (2 * NAME_MEMO_MAX)
#define NAME_MEMO_MAX_LEN 256

struct mp_weight_side {
        const mp_fingerprint *fp;
        tview *v;               /* by name */
        size_t n;
        double *samples;        /* the left side's: what its views' samples point into */
        name_memo_entry *memo;  /* left side: NAME_MEMO_SLOTS, allocated on first use */
        size_t n_memo;
};
typedef struct mp_weight_side side;

static int cmp_tview_name(const void *a, const void *b) {
        return strcmp(((const tview *) a)->t->name, ((const tview *) b)->t->name);
}

/* The reference's tensor categories for WVC: substring tests, first match
 * wins; only attention and MLP projections take part.  (GPT-2's c_attn,
 * c_proj and c_fc match none of them, so its WVC is unavailable, as there.) */
static bool wvc_eligible(const char *name, mp_tensor_role role) {
        /* Every standard projection name contains one of the substrings;
         * only others need the (slow) full test. */
        if (role >= MP_TR_ATTN_Q && role <= MP_TR_MLP_GATE_UP && role != MP_TR_ATTN_QKV && !strstr(name, "c_"))
                return true;
        static const char *const take[] = { "q_proj", "query", "k_proj", "key", "v_proj", "value",
                                            "o_proj", "dense", "out_proj", "gate_proj", "gate", "up_proj",
                                            "fc1", "dense_h_to_4h", "wi_0", "down_proj", "fc2",
                                            "dense_4h_to_h", "wi_1", "wo" };
        for (size_t i = 0; i < ELEMENTSOF(take); i++)
                if (strstr(name, take[i]))
                        return true;
        return false;
}

/* A record's tensor with its HF-order shape, not yet classified; false if
 * malformed. */
static bool tview_shape_init(tview *v, const Modelprov__V1__TensorDigest *t) {
        if (!t->name || t->n_shape == 0 || t->n_shape > MP_MAX_DIMS)
                return false;
        *v = (tview) { .t = t, .n_dims = (uint32_t) t->n_shape, .n_elements = 1 };
        for (size_t d = 0; d < t->n_shape; d++)
                if (__builtin_mul_overflow(v->n_elements, t->shape[d], &v->n_elements))
                        v->n_elements = UINT64_MAX;
        mp_hf_shape(t->shape, v->n_dims, t->flags, v->shape);
        return true;
}

/* A record's tensor with its HF-order shape and kind; false if malformed. */
static bool tview_init(tview *v, const Modelprov__V1__TensorDigest *t) {
        if (!tview_shape_init(v, t))
                return false;
        v->kind = mp_tensor_kind_of(t->name);
        v->wvc = wvc_eligible(t->name, v->kind.role);
        return true;
}

static size_t sample_count(const tview *v) {
        return v->t->sample.len / 2;
}

/* Samples are IEEE halves, little-endian: dtype.c's table converts them
 * (built once per process; a query converts millions). */
static void sample_decode(const tview *v, double *out, size_t n) {
        float f[MP_SAMPLE_PER_EMBEDDING];
        assert(n <= ELEMENTSOF(f));
        mp_dtype_to_f32(MP_DTYPE_F16, v->t->sample.data, n, f);
        for (size_t i = 0; i < n; i++)
                out[i] = f[i];
}

/* Decodes the left side's samples once, not once per comparison. */
static int side_decode_samples(side *s) {
        size_t total = 0;
        for (size_t i = 0; i < s->n; i++)
                if (sample_count(&s->v[i]) <= MP_SAMPLE_PER_EMBEDDING)
                        total += sample_count(&s->v[i]);
        s->samples = malloc((total ? total : 1) * sizeof(double));
        if (!s->samples)
                return -ENOMEM;
        double *at = s->samples;
        for (size_t i = 0; i < s->n; i++) {
                size_t n = sample_count(&s->v[i]);
                if (n == 0 || n > MP_SAMPLE_PER_EMBEDDING)
                        continue;
                sample_decode(&s->v[i], at, n);
                s->v[i].samples = at;
                at += n;
        }
        return 0;
}

int mp_weight_side_new(const mp_fingerprint *fp, mp_weight_side **ret) {
        side *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->fp = fp;
        s->v = calloc(fp->n_tensors ? fp->n_tensors : 1, sizeof(tview));
        if (!s->v) {
                free(s);
                return -ENOMEM;
        }
        for (size_t i = 0; i < fp->n_tensors; i++)
                if (tview_init(&s->v[s->n], fp->tensors[i]))
                        s->n++;
        qsort(s->v, s->n, sizeof(tview), cmp_tview_name);
        if (side_decode_samples(s) < 0) {
                mp_weight_side_free(s);
                return -ENOMEM;
        }
        *ret = s;
        return 0;
}

void mp_weight_side_free(mp_weight_side *s) {
        if (!s)
                return;
        for (size_t i = 0; s->memo && i < NAME_MEMO_SLOTS; i++)
                free(s->memo[i].name);
        free(s->memo);
        free(s->samples);
        free(s->v);
        free(s);
}

static const tview *side_find(const side *s, const char *name) {
        Modelprov__V1__TensorDigest key_t = { .name = (char *) name };
        tview key = { .t = &key_t };
        return bsearch(&key, s->v, s->n, sizeof(tview), cmp_tview_name);
}

/* The kind, WVC eligibility and left-side partner of a right-side tensor
 * name: remembered by the left side a, or worked out (and remembered while
 * there is room). */
static void classify_name(side *a, const char *name, tview *v) {
        size_t len = strlen(name);
        name_memo_entry *free_slot = NULL;
        uint64_t hash = 0;
        if (len <= NAME_MEMO_MAX_LEN && (a->memo || (a->memo = calloc(NAME_MEMO_SLOTS, sizeof(*a->memo))))) {
                hash = XXH3_64bits(name, len);
                for (size_t at = hash & (NAME_MEMO_SLOTS - 1);; at = (at + 1) & (NAME_MEMO_SLOTS - 1)) {
                        name_memo_entry *e = &a->memo[at];
                        if (!e->name) {
                                free_slot = e;
                                break;
                        }
                        if (e->hash == hash && strcmp(e->name, name) == 0) {
                                v->kind = e->kind;
                                v->wvc = e->wvc;
                                v->partner = e->partner;
                                return;
                        }
                }
        }
        v->kind = mp_tensor_kind_of(name);
        v->wvc = wvc_eligible(name, v->kind.role);
        v->partner = side_find(a, name);
        if (free_slot && a->n_memo < NAME_MEMO_MAX && (free_slot->name = strdup(name))) {
                free_slot->hash = hash;
                free_slot->kind = v->kind;
                free_slot->wvc = v->wvc;
                free_slot->partner = v->partner;
                a->n_memo++;
        }
}

/* The tensors of the right-side record b as views, in record order, each
 * with its partner on the left side a. */
static int right_side_init(side *sb, side *a, const mp_fingerprint *b) {
        *sb = (side) { .fp = b };
        sb->v = malloc((b->n_tensors ? b->n_tensors : 1) * sizeof(tview));
        if (!sb->v)
                return -ENOMEM;
        for (size_t i = 0; i < b->n_tensors; i++)
                if (tview_shape_init(&sb->v[sb->n], b->tensors[i])) {
                        classify_name(a, b->tensors[i]->name, &sb->v[sb->n]);
                        sb->n++;
                }
        return 0;
}

static bool same_shape(const tview *a, const tview *b) {
        return a->n_dims == b->n_dims && memcmp(a->shape, b->shape, a->n_dims * sizeof(uint64_t)) == 0;
}

static bool informative(const tview *v) {
        return v->n_elements >= INFORMATIVE_MIN_ELEMENTS && !(v->t->l2 > 0 && v->t->std == 0);
}

/* Samples of a and b are taken at the same cells when the shapes match, or
 * when two matrices share their column count and both have at least
 * MP_SAMPLE_ROW_SPAN rows (a vocabulary extension appends rows). */
static bool samples_aligned(const tview *a, const tview *b) {
        if (same_shape(a, b))
                return true;
        return a->n_dims == 2 && b->n_dims == 2 && a->shape[1] == b->shape[1] &&
               a->shape[0] >= MP_SAMPLE_ROW_SPAN && b->shape[0] >= MP_SAMPLE_ROW_SPAN;
}

/* |x - y| / |x|, NAN when x is all zeros. */
static double rel_change(const double *x, const double *y, size_t n) {
        double nx = 0, d = 0;
        for (size_t i = 0; i < n; i++) {
                nx += x[i] * x[i];
                d += (x[i] - y[i]) * (x[i] - y[i]);
        }
        return nx > 0 ? sqrt(d / nx) : NAN;
}

double mp_record_rel_change(const Modelprov__V1__TensorDigest *a, const Modelprov__V1__TensorDigest *b) {
        tview va, vb;
        double x[MP_SAMPLE_PER_EMBEDDING], y[MP_SAMPLE_PER_EMBEDDING];
        if (!tview_init(&va, a) || !tview_init(&vb, b) || !same_shape(&va, &vb))
                return NAN;
        size_t n = sample_count(&va);
        if (n == 0 || n != sample_count(&vb) || n > ELEMENTSOF(x))
                return NAN;
        sample_decode(&va, x, n);
        sample_decode(&vb, y, n);
        return rel_change(x, y, n);
}

/* --- statistics --------------------------------------------------------- */

double mp_round4(double x) {
        return isnan(x) ? x : nearbyint(x * 1e4) / 1e4;
}

double mp_stat_pearson(const double *x, const double *y, size_t n) {
        if (n < 2)
                return NAN;
        double mx = 0, my = 0;
        for (size_t i = 0; i < n; i++) {
                mx += x[i];
                my += y[i];
        }
        mx /= n;
        my /= n;
        double sxx = 0, syy = 0, sxy = 0;
        for (size_t i = 0; i < n; i++) {
                sxx += (x[i] - mx) * (x[i] - mx);
                syy += (y[i] - my) * (y[i] - my);
                sxy += (x[i] - mx) * (y[i] - my);
        }
        if (sqrt(sxx / n) < 1e-8 || sqrt(syy / n) < 1e-8)
                return NAN;
        return sxy / sqrt(sxx * syy);
}

double mp_stat_cosine(const double *x, const double *y, size_t n) {
        double xx = 0, yy = 0, xy = 0;
        for (size_t i = 0; i < n; i++) {
                xx += x[i] * x[i];
                yy += y[i] * y[i];
                xy += x[i] * y[i];
        }
        double den = sqrt(xx) * sqrt(yy);
        return den < 1e-10 ? NAN : xy / den;
}

/* The reference's cosine: clamped to [0, 1], rounded to 4 places. */
static double cosine_clamp(const double *x, const double *y, size_t n) {
        double c = mp_stat_cosine(x, y, n);
        return isnan(c) ? c : mp_round4(c < 0 ? 0 : c > 1 ? 1 : c);
}

static double pearson_rescaled(const double *x, const double *y, size_t n) {
        double r = mp_stat_pearson(x, y, n);
        return isnan(r) ? r : mp_round4((r + 1) / 2);
}

static double *floats_to_doubles(const float *f, size_t n) {
        double *d = malloc((n ? n : 1) * sizeof(double));
        for (size_t i = 0; d && i < n; i++)
                d[i] = f[i];
        return d;
}

/* --- the reference project's weight signals ------------------------------ */

/* Entry (i, j), i < j, of the strict upper triangle of a k x k matrix. */
static size_t triu_index(size_t k, size_t i, size_t j) {
        return i * k - i * (i + 1) / 2 + (j - i - 1);
}

static int eas_score(const Modelprov__V1__Signals *a, const Modelprov__V1__Signals *b, double *ret) {
        *ret = NAN;
        size_t ka = a->n_eas_ids, kb = b->n_eas_ids;
        if (a->n_eas_self_sim != ka * (ka - 1) / 2 || b->n_eas_self_sim != kb * (kb - 1) / 2)
                return 0;
        size_t k = ka < kb ? ka : kb;
        if (k < 8)
                return 0;
        size_t n = k * (k - 1) / 2, o = 0;
        _cleanup_(freep) double *x = malloc(n * sizeof(double));
        _cleanup_(freep) double *y = malloc(n * sizeof(double));
        if (!x || !y)
                return -ENOMEM;
        for (size_t i = 0; i < k; i++)
                for (size_t j = i + 1; j < k; j++, o++) {
                        x[o] = a->eas_self_sim[triu_index(ka, i, j)];
                        y[o] = b->eas_self_sim[triu_index(kb, i, j)];
                }
        *ret = pearson_rescaled(x, y, n);
        return 0;
}

/* NLF "direct" vectors as per-vector [mean, std, max, min]. */
static double *nlf_stats(const Modelprov__V1__Signals *s, size_t *ret_n) {
        size_t nv = s->nlf_vectors, chunk = nv ? s->n_nlf / nv : 0;
        if (strcmp(s->nlf_mode, "direct") != 0 || nv == 0 || chunk == 0) {
                *ret_n = s->n_nlf;
                return floats_to_doubles(s->nlf, s->n_nlf);
        }
        double *out = malloc(nv * 4 * sizeof(double));
        if (!out)
                return NULL;
        for (size_t v = 0; v < nv; v++) {
                mp_fstats st;
                mp_fstats_of(s->nlf + v * chunk, chunk, &st);
                out[4 * v] = st.mean;
                out[4 * v + 1] = st.std;
                out[4 * v + 2] = st.max;
                out[4 * v + 3] = st.min;
        }
        *ret_n = nv * 4;
        return out;
}

static int nlf_score(const Modelprov__V1__Signals *a, const Modelprov__V1__Signals *b, double *ret) {
        *ret = NAN;
        if (a->n_nlf == 0 || b->n_nlf == 0)
                return 0;
        if (strcmp(a->nlf_mode, "direct") == 0 && strcmp(b->nlf_mode, "direct") == 0 && a->n_nlf == b->n_nlf &&
            a->nlf_vectors == b->nlf_vectors) {
                _cleanup_(freep) double *x = floats_to_doubles(a->nlf, a->n_nlf);
                _cleanup_(freep) double *y = floats_to_doubles(b->nlf, b->n_nlf);
                if (!x || !y)
                        return -ENOMEM;
                *ret = cosine_clamp(x, y, a->n_nlf);
                return 0;
        }
        size_t na, nb;
        _cleanup_(freep) double *x = nlf_stats(a, &na);
        _cleanup_(freep) double *y = nlf_stats(b, &nb);
        if (!x || !y)
                return -ENOMEM;
        size_t m = na < nb ? na : nb;
        if (m >= 4)
                *ret = cosine_clamp(x, y, m);
        return 0;
}

/* Linear interpolation of p (length n) onto m evenly spaced points. */
static void interp(const float *p, size_t n, double *out, size_t m) {
        for (size_t i = 0; i < m; i++) {
                double t = m > 1 ? (double) i / (m - 1) * (n - 1) : 0;
                size_t lo = (size_t) t;
                double f = t - lo;
                out[i] = lo + 1 < n ? p[lo] * (1 - f) + p[lo + 1] * f : p[n - 1];
        }
}

static int lep_score(const Modelprov__V1__Signals *a, const Modelprov__V1__Signals *b, double *ret) {
        *ret = NAN;
        if (a->n_lep == 0 || b->n_lep == 0)
                return 0;
        size_t m = a->n_lep < b->n_lep ? a->n_lep : b->n_lep;
        _cleanup_(freep) double *x = malloc(m * sizeof(double));
        _cleanup_(freep) double *y = malloc(m * sizeof(double));
        if (!x || !y)
                return -ENOMEM;
        interp(a->lep, a->n_lep, x, m);
        interp(b->lep, b->n_lep, y, m);
        *ret = pearson_rescaled(x, y, m);
        return 0;
}

static int end_score(const Modelprov__V1__Signals *a, const Modelprov__V1__Signals *b, double *ret) {
        *ret = NAN;
        if (a->n_end_histogram == 0 || a->n_end_histogram != b->n_end_histogram)
                return 0;
        _cleanup_(freep) double *x = floats_to_doubles(a->end_histogram, a->n_end_histogram);
        _cleanup_(freep) double *y = floats_to_doubles(b->end_histogram, b->n_end_histogram);
        if (!x || !y)
                return -ENOMEM;
        *ret = cosine_clamp(x, y, a->n_end_histogram);
        return 0;
}

/* --- per-layer accumulation over paired tensors --------------------------- */

typedef struct layer_acc {
        /* WVC: concatenated samples */
        double *wa, *wb;
        size_t wn, wcap;
        /* own: sum of per-tensor sample correlations */
        double rsum;
        size_t rn;
        bool present;
} layer_acc;

static int wvc_append(layer_acc *l, const double *x, const double *y, size_t n) {
        if (l->wn + n > l->wcap) {
                size_t cap = (l->wn + n) * 2;
                double *na = realloc(l->wa, cap * sizeof(double));
                if (!na)
                        return -ENOMEM;
                l->wa = na;
                double *nb = realloc(l->wb, cap * sizeof(double));
                if (!nb)
                        return -ENOMEM;
                l->wb = nb;
                l->wcap = cap;
        }
        memcpy(l->wa + l->wn, x, n * sizeof(double));
        memcpy(l->wb + l->wn, y, n * sizeof(double));
        l->wn += n;
        return 0;
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

typedef struct pair_walk {
        layer_acc *layers;
        size_t n_layers;
        double *rel;            /* relative change per comparable tensor */
        size_t n_rel;
        double embed_r;
} pair_walk;

/* Pairs left-side tensor va with right-side tensor vb of the same name. */
static int walk_pair(const tview *va, const tview *vb, pair_walk *w, mp_comparison *out) {
        bool aligned = samples_aligned(va, vb);
        if (same_shape(va, vb) && informative(va)) {
                out->tensors_common++;
                out->bytes_common += va->n_elements;
                if (va->t->xxh3_128.len == 16 && vb->t->xxh3_128.len == 16 &&
                    memcmp(va->t->xxh3_128.data, vb->t->xxh3_128.data, 16) == 0 &&
                    strcmp(va->t->dtype, vb->t->dtype) == 0) {
                        out->tensors_identical++;
                        out->bytes_identical += va->n_elements;
                }
        }
        size_t n = sample_count(va);
        if (!aligned || n < SAMPLE_MIN || n != sample_count(vb) || !informative(va))
                return 0;

        double y[MP_SAMPLE_PER_EMBEDDING];
        if (n > ELEMENTSOF(y))
                return 0;
        const double *x = va->samples;  /* decoded with the left side: 0 < n <= MP_SAMPLE_PER_EMBEDDING */
        assert(x);
        sample_decode(vb, y, n);

        double rc = rel_change(x, y, n);
        if (!isnan(rc) && same_shape(va, vb))
                w->rel[w->n_rel++] = rc;

        double r = mp_stat_pearson(x, y, n);
        /* A rescale between a norm and the next matrix keeps the values'
         * pattern and moves their size. */
        if (same_shape(va, vb) && r >= SCALED_MIN_R && va->t->l2 > 0 && vb->t->l2 > 0 &&
            fabs(log(va->t->l2 / vb->t->l2)) > log(1.2))
                out->tensors_scaled++;
        if (va->kind.role == MP_TR_EMBED && !isnan(r))
                w->embed_r = r;

        int layer = va->kind.layer;
        if (layer < 0 || (size_t) layer >= w->n_layers || va->n_dims < 2)
                return 0;
        layer_acc *l = &w->layers[layer];
        l->present = true;
        if (!isnan(r)) {
                l->rsum += r;
                l->rn++;
        }
        if (va->wvc)
                return wvc_append(l, x, y, n);
        return 0;
}

static int max_layer(const side *s) {
        int m = -1;
        for (size_t i = 0; i < s->n; i++)
                m = s->v[i].kind.layer > m ? s->v[i].kind.layer : m;
        return m;
}

/* Per-layer standard deviations of each projection, each role's series
 * divided by its mean: invariant to permutations (the std is over all
 * elements) and to a uniform rescale; correlated between the two models. */
static void std_table(const side *s, size_t n_layers, double *table /* [_MP_TR_MAX][n_layers] */) {
        for (size_t i = 0; i < _MP_TR_MAX * n_layers; i++)
                table[i] = NAN;
        for (size_t i = 0; i < s->n; i++) {
                const tview *v = &s->v[i];
                if (v->kind.layer >= 0 && (size_t) v->kind.layer < n_layers && !v->kind.is_bias && v->t->std > 0 &&
                    v->kind.role >= MP_TR_ATTN_Q && v->kind.role <= MP_TR_MLP_GATE_UP)
                        table[v->kind.role * n_layers + (size_t) v->kind.layer] = v->t->std;
        }
}

static int layer_stats_score(const side *sa, const side *sb, size_t n_layers, double *ret) {
        *ret = NAN;
        size_t cells = _MP_TR_MAX * n_layers + 1;
        _cleanup_(freep) double *ta = malloc(cells * sizeof(double));
        _cleanup_(freep) double *tb = malloc(cells * sizeof(double));
        _cleanup_(freep) double *x = malloc(cells * sizeof(double));
        _cleanup_(freep) double *y = malloc(cells * sizeof(double));
        if (!ta || !tb || !x || !y)
                return -ENOMEM;
        std_table(sa, n_layers, ta);
        std_table(sb, n_layers, tb);

        size_t n = 0;
        for (size_t role = MP_TR_ATTN_Q; role <= MP_TR_MLP_GATE_UP; role++) {
                size_t start = n;
                double ma = 0, mb = 0;
                for (size_t l = 0; l < n_layers; l++) {
                        double da = ta[role * n_layers + l], db = tb[role * n_layers + l];
                        if (isnan(da) || isnan(db))
                                continue;
                        x[n] = da;
                        y[n] = db;
                        ma += da;
                        mb += db;
                        n++;
                }
                size_t cnt = n - start;
                if (cnt < 2) {
                        n = start;
                        continue;
                }
                for (size_t i = start; i < n; i++) {
                        x[i] = x[i] / (ma / cnt) - 1;
                        y[i] = y[i] / (mb / cnt) - 1;
                }
        }
        if (n >= 6) {
                double r = mp_stat_pearson(x, y, n);
                *ret = isnan(r) ? r : mp_round4(r < 0 ? 0 : r);
        }
        return 0;
}

static bool has_weights(const mp_fingerprint *fp) {
        if (!fp->signals || !fp->signals->has_weights)
                return false;
        for (size_t i = 0; i < fp->n_tensors; i++)
                if (fp->tensors[i]->sample.len > 0)
                        return true;
        return false;
}

int mp_compare_weights(mp_weight_side *sa, const mp_fingerprint *b, mp_comparison *out) {
        assert(sa && b && out);
        const mp_fingerprint *a = sa->fp;
        out->weights = has_weights(a) && has_weights(b);
        if (!out->weights)
                return 0;
        const Modelprov__V1__Signals *s = a->signals, *t = b->signals;
        int r;
        if ((r = eas_score(s, t, &out->signal[MP_SIG_EAS])) < 0 ||
            (r = nlf_score(s, t, &out->signal[MP_SIG_NLF])) < 0 ||
            (r = lep_score(s, t, &out->signal[MP_SIG_LEP])) < 0 ||
            (r = end_score(s, t, &out->signal[MP_SIG_END])) < 0)
                return r;

        side sb;
        if (right_side_init(&sb, sa, b) < 0)
                return -ENOMEM;
        int ml = max_layer(sa) > max_layer(&sb) ? max_layer(sa) : max_layer(&sb);
        pair_walk w = { .n_layers = (size_t) (ml + 1), .embed_r = NAN };
        w.layers = calloc(w.n_layers + 1, sizeof(layer_acc));
        w.rel = calloc(sb.n + 1, sizeof(double));
        r = w.layers && w.rel ? 0 : -ENOMEM;
        for (size_t i = 0; r >= 0 && i < sb.n; i++)
                if (sb.v[i].partner)
                        r = walk_pair(sb.v[i].partner, &sb.v[i], &w, out);

        if (r >= 0) {
                /* WVC: mean clamped cosine over common layers with >= 64 values */
                double wsum = 0, lsum = 0;
                size_t wn = 0, ln = 0;
                for (size_t l = 0; l < w.n_layers; l++) {
                        layer_acc *la = &w.layers[l];
                        if (la->wn >= 64) {
                                double c = mp_stat_cosine(la->wa, la->wb, la->wn);
                                if (!isnan(c)) {
                                        wsum += c < 0 ? 0 : c > 1 ? 1 : c;
                                        wn++;
                                }
                        }
                        if (la->rn > 0) {
                                lsum += la->rsum / la->rn;
                                ln++;
                        }
                }
                out->signal[MP_SIG_WVC] = wn >= 2 ? mp_round4(wsum / wn) : NAN;
                out->signal[MP_SIG_LAYER_VALUES] = ln > 0 ? mp_round4(fmax(0, lsum / ln)) : NAN;
                out->signal[MP_SIG_EMBED_VALUES] = isnan(w.embed_r) ? NAN : mp_round4(fmax(0, w.embed_r));

                uint64_t bytes_a = 0, bytes_b = 0;
                for (size_t i = 0; i < sa->n; i++)
                        bytes_a += informative(&sa->v[i]) ? sa->v[i].n_elements : 0;
                for (size_t i = 0; i < sb.n; i++)
                        bytes_b += informative(&sb.v[i]) ? sb.v[i].n_elements : 0;
                uint64_t total = bytes_a > bytes_b ? bytes_a : bytes_b;
                out->signal[MP_SIG_TENSOR_IDENTITY] = total ? mp_round4((double) out->bytes_identical / total) : NAN;

                if (w.n_rel > 0) {
                        qsort(w.rel, w.n_rel, sizeof(double), cmp_double);
                        out->median_rel_change = w.rel[w.n_rel / 2];
                        out->signal[MP_SIG_TENSOR_CLOSENESS] = mp_round4(fmax(0, 1 - out->median_rel_change));
                }
                r = layer_stats_score(sa, &sb, w.n_layers, &out->signal[MP_SIG_LAYER_STATS]);
        }

        for (size_t l = 0; w.layers && l < w.n_layers; l++) {
                free(w.layers[l].wa);
                free(w.layers[l].wb);
        }
        free(w.layers);
        free(w.rel);
        free(sb.v);
        return r;
}
