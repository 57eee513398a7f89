/* tfv.c - the tokenizer feature vector and its similarity (see tfv.h). */
#include "signals/tfv.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "signals/mfi.h"
#include "signals/script.h"
#include "signals/vocab_sketch.h"
#include "util/macro.h"

#define FIRST_MERGES_SHOWN 5
#define MERGE_RULE_MERGES 50

static void md_ctx_freep(EVP_MD_CTX **p) {
        EVP_MD_CTX_free(*p);
}

static void hex32(const uint8_t d[32], char hex[65]) {
        for (size_t i = 0; i < 32; i++)
                snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

/* merge_rule_hash: SHA-256 of the first 50 merges joined by "\n" (of "" when
 * there are none). */
static int merge_rule_hash(const mp_tokenizer_merges *m, char hex[65]) {
        _cleanup_(md_ctx_freep) EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        uint8_t d[32];
        unsigned int n = sizeof(d);

        if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
                return -ENOMEM;
        for (size_t i = 0; i < m->n && i < MERGE_RULE_MERGES && i < MP_TOKENIZER_KEPT_MERGES; i++)
                if ((i > 0 && EVP_DigestUpdate(ctx, "\n", 1) != 1) ||
                    EVP_DigestUpdate(ctx, m->first[i], strlen(m->first[i])) != 1)
                        return -ENOMEM;
        if (EVP_DigestFinal_ex(ctx, d, &n) != 1)
                return -ENOMEM;
        hex32(d, hex);
        return 0;
}

/* Per-token statistics over the distinct strings. */
typedef struct token_stats {
        size_t n, single, ws_prefix, byte_tokens, max_len;
        double len_sum;
        mp_script_dist scripts;
} token_stats;

/* re.match(r"^<0x[0-9A-Fa-f]{2}>$", t): "$" also accepts one final "\n". */
static bool is_byte_token(const char *s, size_t len) {
        if (len == 7 && s[6] == '\n')
                len = 6;
        return len == 6 && memcmp(s, "<0x", 3) == 0 && isxdigit((unsigned char) s[3]) &&
               isxdigit((unsigned char) s[4]) && s[5] == '>';
}

static void stats_add(token_stats *st, const char *s) {
        size_t len = strlen(s), cps = 0;
        uint32_t first = 0;

        for (size_t i = 0; i < len; cps++) {
                uint32_t c;
                i += mp_utf8_decode(s + i, len - i, &c);
                if (cps == 0)
                        first = c;
        }
        st->n++;
        st->single += cps == 1;
        st->len_sum += (double) cps;
        if (cps > st->max_len)
                st->max_len = cps;
        st->ws_prefix += cps > 0 && (first == 0x2581 || first == 0x120 || first == ' ');
        st->byte_tokens += is_byte_token(s, len);
        mp_script_dist_add(&st->scripts, s);
}

typedef struct tfv_builder {
        json_t *o;
        int r;
} tfv_builder;

static void put(tfv_builder *b, const char *key, json_t *v) {
        if (b->r < 0) {
                json_decref(v);
                return;
        }
        if (!v || json_object_set_new(b->o, key, v) < 0)
                b->r = -ENOMEM;
}

/* The id transformers reports for a special token string: its vocabulary
 * id, else the unknown token's, else None. */
static json_t *special_id(const mp_vocab_index *ix, const char *tok) {
        int64_t id = tok ? mp_vocab_index_find(ix, tok, strlen(tok)) : -1;
        if (tok && id < 0 && ix->t->unk_token)
                id = mp_vocab_index_find(ix, ix->t->unk_token, strlen(ix->t->unk_token));
        return id >= 0 ? json_integer(id) : json_null();
}

/* len(all_special_tokens): the distinct strings among the named special
 * tokens and the additional ones. */
static size_t count_special(const mp_tokenizer *t) {
        const char *named[] = { t->bos_token, t->eos_token, t->unk_token, t->sep_token,
                                t->pad_token, t->cls_token, t->mask_token };
        const char *all[ELEMENTSOF(named) + MP_TOKENIZER_MAX_EXTRA_SPECIAL];
        size_t n = 0;

        for (size_t i = 0; i < ELEMENTSOF(named) + t->n_extra_special; i++) {
                const char *s = i < ELEMENTSOF(named) ? named[i] : t->extra_special[i - ELEMENTSOF(named)];
                bool dup = !s;
                for (size_t k = 0; k < n && !dup; k++)
                        dup = strcmp(all[k], s) == 0;
                if (!dup)
                        all[n++] = s;
        }
        return n;
}

static void merges_fields(tfv_builder *b, const mp_tokenizer *t) {
        char hex[65];
        json_t *first = json_array();

        put(b, "num_merges", json_integer((json_int_t) t->n_merges));
        for (size_t i = 0; first && i < t->merges.n && i < FIRST_MERGES_SHOWN; i++)
                if (json_array_append_new(first, json_string(t->merges.first[i])) < 0)
                        b->r = -ENOMEM;
        put(b, "first_5_merges", first);
        if (merge_rule_hash(&t->merges, hex) < 0)
                b->r = -ENOMEM;
        put(b, "merge_rule_hash", json_string(hex));
}

static void stats_fields(tfv_builder *b, token_stats *st) {
        double n = (double) st->n;

        put(b, "pct_single_char", json_real(mp_py_round((double) st->single / n, 4)));
        put(b, "avg_token_length", json_real(mp_py_round(st->len_sum / n, 2)));
        put(b, "max_token_length", json_integer((json_int_t) st->max_len));
        put(b, "pct_whitespace_prefix", json_real(mp_py_round((double) st->ws_prefix / n, 4)));
        put(b, "pct_byte_tokens", json_real(mp_py_round((double) st->byte_tokens / n, 4)));

        mp_script_dist_finish(&st->scripts);
        json_t *d = json_object();
        for (size_t i = 0; d && i < st->scripts.n; i++) {
                mp_script s = st->scripts.order[i];
                if (json_object_set_new(d, mp_script_name(s), json_real(st->scripts.pct[s])) < 0)
                        b->r = -ENOMEM;
        }
        put(b, "script_distribution", d);
}

int mp_tfv_build(const mp_tokenizer *t, json_t **ret) {
        _cleanup_(mp_vocab_index_done) mp_vocab_index ix = {};
        token_stats st = {};
        int r;

        assert(t);
        assert(ret);

        r = mp_vocab_index_build(t, &ix);
        if (r < 0)
                return r;
        for (size_t id = 0; id < t->n_tokens; id++)
                if (mp_vocab_index_is_first(&ix, id))
                        stats_add(&st, t->tokens[id]);

        tfv_builder b = { .o = json_object() };
        if (!b.o)
                return -ENOMEM;

        put(&b, "vocab_size", json_integer((json_int_t) st.n));
        put(&b, "tokenizer_class", t->tokenizer_class ? json_string(t->tokenizer_class) : json_null());
        if (st.n > 0) {
                put(&b, "bos_token_id", special_id(&ix, t->bos_token));
                put(&b, "eos_token_id", special_id(&ix, t->eos_token));
                put(&b, "pad_token_id", special_id(&ix, t->pad_token));
                put(&b, "num_added_tokens", json_integer((json_int_t) t->n_added_tokens));
                put(&b, "num_special_tokens", json_integer((json_int_t) count_special(t)));
                merges_fields(&b, t);
                put(&b, "special_token_ids", json_pack("{s:o,s:o,s:o}", "pad", special_id(&ix, t->pad_token),
                                                       "unk", special_id(&ix, t->unk_token),
                                                       "mask", special_id(&ix, t->mask_token)));
                stats_fields(&b, &st);

                char hex[65] = "";
                if (t->merges.n > 0)
                        hex32(t->merges.sha256, hex);
                put(&b, "all_merges_sha256", json_string(hex));
        }

        if (b.r < 0) {
                json_decref(b.o);
                return b.r;
        }
        *ret = b.o;
        return 0;
}

/* ---- similarity ---------------------------------------------------------------- */

static double field_num(const json_t *o, const char *key) {
        const json_t *v = json_object_get(o, key);
        return json_is_number(v) ? json_number_value(v) : 0;
}

static bool is_none(const json_t *v) {
        return !v || json_is_null(v);
}

/* Python ==, None == None. */
static bool py_eq(const json_t *a, const json_t *b) {
        if (is_none(a) || is_none(b))
                return is_none(a) && is_none(b);
        if (json_is_number(a) && json_is_number(b))
                return json_number_value(a) == json_number_value(b);
        return json_equal((json_t *) a, (json_t *) b);
}

static double script_cosine(const json_t *a, const json_t *b) {
        const char *key;
        json_t *v;
        double dot = 0, na = 0, nb = 0;
        size_t keys = 0;

        /* The union of keys: a's keys, then b's keys missing from a. */
        json_object_foreach((json_t *) a, key, v) {
                double x = json_is_number(v) ? json_number_value(v) : 0;
                double y = field_num(b, key);
                dot += x * y;
                na += x * x;
                keys++;
        }
        json_object_foreach((json_t *) b, key, v) {
                double y = json_is_number(v) ? json_number_value(v) : 0;
                nb += y * y;
                keys += !json_object_get(a, key);
        }
        if (keys == 0 || sqrt(na) * sqrt(nb) <= 1e-8)
                return 0;
        return dot / (sqrt(na) * sqrt(nb));
}

static double special_ids_score(const json_t *a, const json_t *b) {
        static const char *const keys[] = { "pad", "unk", "mask" };
        size_t counted = 0, matched = 0;

        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const json_t *x = json_object_get(a, keys[i]), *y = json_object_get(b, keys[i]);
                if (is_none(x) != is_none(y))
                        continue;
                counted++;
                matched += py_eq(x, y);
        }
        return counted ? (double) matched / (double) counted : 0.5;
}

static double ratio(double a, double b) {
        double m = a > b ? a : b;
        return m == 0 ? 0 : 1 - fabs(a - b) / m;
}

double mp_tfv_similarity(const json_t *a, const json_t *b) {
        if (!json_is_object(a) || !json_is_object(b))
                return NAN;
#define F(o, k) json_object_get(o, k)
        double s = 0;

        const char *ca = json_string_value(F(a, "tokenizer_class")), *cb = json_string_value(F(b, "tokenizer_class"));
        s += 0.10 * (ca && cb && strcmp(ca, cb) == 0);
        s += 0.10 * ratio(field_num(a, "vocab_size"), field_num(b, "vocab_size"));
        s += 0.08 * ((py_eq(F(a, "bos_token_id"), F(b, "bos_token_id")) +
                      py_eq(F(a, "eos_token_id"), F(b, "eos_token_id"))) / 2.0);

        double la = field_num(a, "avg_token_length"), lb = field_num(b, "avg_token_length");
        double lm = fmax(fmax(la, lb), 1e-8);
        s += 0.07 * fmax(0, 1 - fabs(la - lb) / lm);
        s += 0.05 * fmax(0, 1 - fabs(field_num(a, "pct_whitespace_prefix") - field_num(b, "pct_whitespace_prefix")));

        const json_t *da = F(a, "script_distribution"), *db = F(b, "script_distribution");
        s += 0.10 * (json_is_object(da) && json_is_object(db) ? script_cosine(da, db) : 0);
        s += 0.05 * ((field_num(a, "pct_byte_tokens") > 0) == (field_num(b, "pct_byte_tokens") > 0));

        double ma = field_num(a, "num_merges"), mb = field_num(b, "num_merges");
        s += 0.05 * (ma > 0 && mb > 0 ? ratio(ma, mb) : ma == 0 && mb == 0 ? 1 : 0);

        const char *ha = json_string_value(F(a, "merge_rule_hash")), *hb = json_string_value(F(b, "merge_rule_hash"));
        s += 0.15 * (ha && hb && *ha && *hb && strcmp(ha, hb) == 0);

        const json_t *sa = F(a, "special_token_ids"), *sb = F(b, "special_token_ids");
        s += 0.10 * special_ids_score(json_is_object(sa) ? sa : NULL, json_is_object(sb) ? sb : NULL);

        const char *xa = json_string_value(F(a, "all_merges_sha256")), *xb = json_string_value(F(b, "all_merges_sha256"));
        bool ea = !xa || !*xa, eb = !xb || !*xb;
        s += 0.15 * (!ea && !eb ? strcmp(xa, xb) == 0 : ea && eb ? 0.5 : 0);
#undef F
        return mp_py_round(s, 4);
}
