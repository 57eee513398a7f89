/* anchors.c - the reference's choice of the EAS anchor tokens (see
 * anchors.h; the string lists and the allocation are in docs/signals.md). */
#include "signals/anchors.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "signals/script.h"
#include "signals/vocab_sketch.h"
#include "util/macro.h"

static const char *const punct[] = {
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", ".", ",", "!", "?", ":", ";",
};
static const char *const latin_words[] = {
        "the", "of", "and", "to", "in", "is", "that", "for", "it", "was", "on", "are",
        "with", "as", "be", "at", "ing", "tion", "er", "al", "ed", "es", "re", "en",
};
static const char *const cjk_words[] = { "的", "一", "是", "不", "人", "我", "在", "有", "了", "这", "中", "大" };
static const char *const cyrillic_words[] = { "и", "в", "не", "на", "я", "что", "он", "к" };
static const char *const arabic_words[] = { "من", "في", "على", "أن", "هذا", "الله", "إلى", "لا" };
static const char *const devanagari_words[] = { "के", "है", "का", "की", "यह", "से", "को", "पर" };

static const struct {
        const char *const *words;
        size_t n;
} script_words[_MP_SCRIPT_MAX] = {
        [MP_SCRIPT_LATIN]      = { latin_words, ELEMENTSOF(latin_words) },
        [MP_SCRIPT_CJK]        = { cjk_words, ELEMENTSOF(cjk_words) },
        [MP_SCRIPT_CYRILLIC]   = { cyrillic_words, ELEMENTSOF(cyrillic_words) },
        [MP_SCRIPT_ARABIC]     = { arabic_words, ELEMENTSOF(arabic_words) },
        [MP_SCRIPT_DEVANAGARI] = { devanagari_words, ELEMENTSOF(devanagari_words) },
        /* MP_SCRIPT_OTHER: never active */
};

#define SCRIPT_MIN_SHARE 0.05
#define SCRIPT_MIN_ANCHORS 2
#define RANDOM_FILL_SEED 42
#define RANDOM_FILL_SPAN 50000

/* ---- numpy's legacy RandomState ------------------------------------------ */

void mp_mt19937_seed(mp_mt19937 *g, uint32_t seed) {
        assert(g);
        g->mt[0] = seed;
        for (unsigned i = 1; i < 624; i++)
                g->mt[i] = 1812433253u * (g->mt[i - 1] ^ (g->mt[i - 1] >> 30)) + i;
        g->i = 624;
}

uint32_t mp_mt19937_next(mp_mt19937 *g) {
        assert(g);
        if (g->i >= 624) {
                for (unsigned k = 0; k < 624; k++) {
                        uint32_t y = (g->mt[k] & 0x80000000u) | (g->mt[(k + 1) % 624] & 0x7fffffffu);
                        g->mt[k] = g->mt[(k + 397) % 624] ^ (y >> 1) ^ ((y & 1) ? 0x9908b0dfu : 0);
                }
                g->i = 0;
        }
        uint32_t y = g->mt[g->i++];
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c5680u;
        y ^= (y << 15) & 0xefc60000u;
        y ^= y >> 18;
        return y;
}

/* numpy's random_interval(max): rejection sampling under a bit mask. */
static uint32_t random_interval(mp_mt19937 *g, uint32_t max) {
        if (max == 0)
                return 0;
        uint32_t mask = max;
        for (unsigned sh = 1; sh <= 16; sh *= 2)
                mask |= mask >> sh;
        uint32_t v;
        do
                v = mp_mt19937_next(g) & mask;
        while (v > max);
        return v;
}

void mp_np_permutation(uint32_t seed, uint32_t *perm, size_t n) {
        mp_mt19937 g;

        assert(perm || n == 0);
        assert(n <= UINT32_MAX);
        mp_mt19937_seed(&g, seed);
        for (size_t i = 0; i < n; i++)
                perm[i] = (uint32_t) i;
        for (size_t i = n > 0 ? n - 1 : 0; i >= 1; i--) {
                uint32_t j = random_interval(&g, (uint32_t) i), x = perm[i];
                perm[i] = perm[j];
                perm[j] = x;
        }
}

/* ---- string -> first token id ---------------------------------------------- */

typedef struct picker {
        mp_anchor *out;
        size_t n;
        const mp_tokenizer *t;
        mp_vocab_index ix;
        uint64_t n_rows;
        bool dummy_prefix, byte_level;
} picker;

static bool picked(const picker *p, uint64_t id) {
        for (size_t i = 0; i < p->n; i++)
                if (p->out[i].id == id)
                        return true;
        return false;
}

/* The reference's acceptance: inside the embedding table and not seen. */
static void add(picker *p, int64_t id) {
        if (id < 0 || p->n >= MP_EAS_ANCHORS || (uint64_t) id >= p->n_rows || picked(p, (uint64_t) id))
                return;
        p->out[p->n].id = (uint32_t) id;
        p->out[p->n].token = p->t && (uint64_t) id < p->t->n_tokens ? p->t->tokens[id] : NULL;
        p->n++;
}

/* GPT-2's bytes_to_unicode(): printable Latin-1 bytes stand for themselves,
 * the other 68 get U+0100.. in byte order. */
static uint32_t byte_symbol(unsigned char b) {
        if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae))
                return b;
        uint32_t k = 0;
        for (unsigned c = 0; c < b; c++)
                if (!((c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) || c >= 0xae))
                        k++;
        return 0x100 + k;
}

static size_t put_utf8(char *o, uint32_t c) {
        if (c < 0x80) {
                o[0] = (char) c;
                return 1;
        }
        o[0] = (char) (0xc0 | (c >> 6));
        o[1] = (char) (0x80 | (c & 0x3f));
        return 2;       /* byte symbols are below U+0800 */
}

/* The reference takes encode(s)[0].  Without an encoder, the first token is
 * approximated by the longest vocabulary token that is a prefix of the text
 * the model sees: s with SentencePiece's "▁" dummy prefix when the tokenizer
 * adds one (so "0" gives "▁" when "▁0" is not a token, as the real encoder
 * does), or s mapped to byte-level symbols for byte-level BPE (so "的" is
 * looked up as "çļĦ").  Normalizers (lowercasing, NFKC) are not applied; the
 * anchor strings are already lowercase and NFC.  If no prefix is a token,
 * the unknown token's id stands in, as the encoder would emit it. */
static int64_t first_token(const picker *p, const char *s) {
        char text[128];
        size_t len = 0, slen = strlen(s);

        if (p->dummy_prefix) {
                memcpy(text, "\xe2\x96\x81", 3);
                len = 3;
        }
        if (p->byte_level) {
                for (size_t i = 0; i < slen && len + 2 < sizeof(text); i++)
                        len += put_utf8(text + len, byte_symbol((unsigned char) s[i]));
        } else if (len + slen < sizeof(text)) {
                memcpy(text + len, s, slen);
                len += slen;
        }

        /* Longest prefix first, cutting at code point boundaries. */
        for (size_t l = len; l > 0; l--) {
                if (l < len && ((unsigned char) text[l] & 0xc0) == 0x80)
                        continue;
                int64_t id = mp_vocab_index_find(&p->ix, text, l);
                if (id >= 0)
                        return id;
        }
        if (p->t->unk_token)
                return mp_vocab_index_find(&p->ix, p->t->unk_token, strlen(p->t->unk_token));
        return -1;
}

static void add_strings(picker *p, const char *const *words, size_t n) {
        for (size_t i = 0; i < n; i++)
                add(p, first_token(p, words[i]));
}

/* ---- selection ------------------------------------------------------------------ */

typedef struct active_script {
        mp_script script;
        double pct;
        long n;
} active_script;

/* Steps 2-4 of the reference: active scripts, allocation, encoding. */
static void add_script_words(picker *p) {
        mp_script_dist d = {};
        active_script act[_MP_SCRIPT_MAX];
        size_t n_act = 0;

        for (size_t id = 0; id < p->t->n_tokens; id++)
                if (mp_vocab_index_is_first(&p->ix, id))
                        mp_script_dist_add(&d, p->t->tokens[id]);
        mp_script_dist_finish(&d);

        for (size_t i = 0; i < d.n; i++)
                if (d.order[i] != MP_SCRIPT_OTHER && d.pct[d.order[i]] >= SCRIPT_MIN_SHARE)
                        act[n_act++] = (active_script) { .script = d.order[i], .pct = d.pct[d.order[i]] };
        if (n_act == 0)
                act[n_act++] = (active_script) { .script = MP_SCRIPT_LATIN, .pct = 1.0 };

        long budget = MP_EAS_ANCHORS - (long) p->n, sum = 0;
        double total = 0;
        for (size_t i = 0; i < n_act; i++)
                total += act[i].pct;
        for (size_t i = 0; i < n_act; i++) {
                /* Python round(): nearest, ties to even (the default mode). */
                long n = (long) nearbyint((double) budget * act[i].pct / total);
                act[i].n = n > SCRIPT_MIN_ANCHORS ? n : SCRIPT_MIN_ANCHORS;
                sum += act[i].n;
        }
        long diff = sum - budget;
        if (diff != 0) {
                size_t big = 0;
                for (size_t i = 1; i < n_act; i++)
                        if (act[i].n > act[big].n)
                                big = i;
                act[big].n = act[big].n - diff > SCRIPT_MIN_ANCHORS ? act[big].n - diff : SCRIPT_MIN_ANCHORS;
        }

        /* Stable sort by pct, descending. */
        for (size_t i = 1; i < n_act; i++) {
                active_script x = act[i];
                size_t j = i;
                for (; j > 0 && act[j - 1].pct < x.pct; j--)
                        act[j] = act[j - 1];
                act[j] = x;
        }
        for (size_t i = 0; i < n_act; i++) {
                size_t n = (size_t) act[i].n < script_words[act[i].script].n ? (size_t) act[i].n
                                                                             : script_words[act[i].script].n;
                add_strings(p, script_words[act[i].script].words, n);
        }
}

/* Step 5: RandomState(42).choice(pool, remaining, replace=False), pool =
 * the unseen ids below min(n_rows, 50000) in ascending order. */
static int random_fill(picker *p) {
        size_t remaining = MP_EAS_ANCHORS - p->n;
        size_t span = p->n_rows < RANDOM_FILL_SPAN ? (size_t) p->n_rows : RANDOM_FILL_SPAN;

        if (remaining == 0 || span == 0)
                return 0;
        _cleanup_(freep) uint32_t *pool = malloc(span * sizeof(uint32_t));
        _cleanup_(freep) uint32_t *perm = malloc(span * sizeof(uint32_t));
        if (!pool || !perm)
                return -ENOMEM;

        size_t n_pool = 0;
        for (size_t i = 0; i < span; i++)
                if (!picked(p, i))
                        pool[n_pool++] = (uint32_t) i;
        mp_np_permutation(RANDOM_FILL_SEED, perm, n_pool);
        for (size_t k = 0; k < remaining && k < n_pool; k++)
                add(p, pool[perm[k]]);
        return 0;
}

int mp_anchors_select(const mp_tokenizer *t, uint64_t n_rows, mp_anchor out[MP_EAS_ANCHORS]) {
        picker p = { .out = out, .t = t, .n_rows = n_rows };
        int r;

        assert(out);

        if (t && t->n_tokens > 0) {
                r = mp_vocab_index_build(t, &p.ix);
                if (r < 0)
                        return r;
                p.dummy_prefix = t->dummy_prefix > 0 ||
                                 (t->dummy_prefix < 0 && (t->kind == MP_TOK_SPM_UNIGRAM || t->kind == MP_TOK_SPM_BPE ||
                                                          t->kind == MP_TOK_SPM_OTHER || t->kind == MP_TOK_GGUF_LLAMA));
                p.byte_level = t->kind == MP_TOK_GGUF_GPT2 || (t->pre_tokenizer && strstr(t->pre_tokenizer, "ByteLevel"));

                add_strings(&p, punct, ELEMENTSOF(punct));
                add_script_words(&p);
                mp_vocab_index_done(&p.ix);
        }

        r = random_fill(&p);
        if (r < 0)
                return r;
        return (int) p.n;
}
