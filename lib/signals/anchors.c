/* anchors.c - script-aware choice of the EAS anchor tokens (see anchors.h
 * and docs/signals.md for the exact rule and the candidate lists). */
#include "signals/anchors.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "signals/script.h"
#include "util/macro.h"

/* Digits and punctuation found in virtually every vocabulary. */
static const char *const universal[] = {
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", ".", ",", "!", "?", ":", ";",
};

typedef struct script_candidates {
        mp_script script;
        const char *const *words;
        size_t n;
} script_candidates;

static const char *const latin_words[] = {
        "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with", "was",
        "on", "be", "by", "at", "this", "are", "from", "or", "an", "not", "but", "have",
};
static const char *const cjk_words[] = { "的", "一", "是", "不", "人", "我", "在", "有", "了", "这", "中", "大" };
static const char *const cyrillic_words[] = { "и", "в", "не", "на", "я", "что", "с", "он" };
static const char *const arabic_words[] = { "من", "في", "على", "أن", "إلى", "التي", "عن", "ما" };
static const char *const devanagari_words[] = { "के", "है", "का", "की", "में", "और", "को", "से" };

#define CANDIDATES(s, w) { s, w, ELEMENTSOF(w) }
static const script_candidates script_words[] = {
        CANDIDATES(MP_SCRIPT_LATIN, latin_words),
        CANDIDATES(MP_SCRIPT_CJK, cjk_words),
        CANDIDATES(MP_SCRIPT_CYRILLIC, cyrillic_words),
        CANDIDATES(MP_SCRIPT_ARABIC, arabic_words),
        CANDIDATES(MP_SCRIPT_DEVANAGARI, devanagari_words),
};

#define SCRIPT_MIN_SHARE 0.05
#define SCRIPT_MIN_ANCHORS 2
#define RANDOM_FILL_SEED 42
#define RANDOM_FILL_SPAN 50000

typedef struct picker {
        mp_anchor *out;
        size_t n;
        const mp_tokenizer *t;
        uint64_t n_rows;
} picker;

static bool picked(const picker *p, uint32_t id) {
        for (size_t i = 0; i < p->n; i++)
                if (p->out[i].id == id)
                        return true;
        return false;
}

static bool add(picker *p, uint32_t id) {
        if (p->n >= MP_EAS_ANCHORS || id >= p->n_rows || picked(p, id))
                return false;
        p->out[p->n].id = id;
        p->out[p->n].token = p->t && id < p->t->n_tokens ? p->t->tokens[id] : NULL;
        p->n++;
        return true;
}

/* Looks word up as a whole token, then with a SentencePiece or byte-level
 * space marker in front. */
static int find_token(const mp_tokenizer *t, const char *word) {
        static const char *const prefixes[] = { "", "\xe2\x96\x81" /* ▁ */, "\xc4\xa0" /* Ġ */ };
        char buf[128];
        for (size_t p = 0; p < ELEMENTSOF(prefixes); p++) {
                int l = snprintf(buf, sizeof(buf), "%s%s", prefixes[p], word);
                if (l < 0 || (size_t) l >= sizeof(buf))
                        continue;
                for (size_t id = 0; id < t->n_tokens; id++)
                        if (t->tokens[id] && strcmp(t->tokens[id], buf) == 0)
                                return (int) id;
        }
        return -1;
}

static void add_words(picker *p, const char *const *words, size_t n, size_t budget) {
        size_t added = 0;
        for (size_t i = 0; i < n && added < budget; i++) {
                int id = find_token(p->t, words[i]);
                if (id >= 0 && add(p, (uint32_t) id))
                        added++;
        }
}

static uint64_t splitmix64(uint64_t *state) {
        uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

int mp_anchors_select(const mp_tokenizer *t, uint64_t n_rows, mp_anchor out[MP_EAS_ANCHORS]) {
        assert(out);
        picker p = { .out = out, .t = t, .n_rows = n_rows };

        if (t && t->n_tokens > 0) {
                add_words(&p, universal, ELEMENTSOF(universal), ELEMENTSOF(universal));

                double share[_MP_SCRIPT_MAX];
                mp_script_distribution(t, share);
                double active_total = 0;
                for (size_t s = 0; s < ELEMENTSOF(script_words); s++)
                        if (share[script_words[s].script] >= SCRIPT_MIN_SHARE)
                                active_total += share[script_words[s].script];
                size_t budget = MP_EAS_ANCHORS - p.n;
                for (size_t s = 0; s < ELEMENTSOF(script_words) && active_total > 0; s++) {
                        double sh = share[script_words[s].script];
                        if (sh < SCRIPT_MIN_SHARE)
                                continue;
                        size_t want = (size_t) (budget * 0.5 * sh / active_total);
                        if (want < SCRIPT_MIN_ANCHORS)
                                want = SCRIPT_MIN_ANCHORS;
                        add_words(&p, script_words[s].words, script_words[s].n, want);
                }
        }

        /* Deterministic pseudo-random fill from the first ids. */
        uint64_t span = n_rows < RANDOM_FILL_SPAN ? n_rows : RANDOM_FILL_SPAN;
        uint64_t state = RANDOM_FILL_SEED;
        for (size_t tries = 0; span > 0 && p.n < MP_EAS_ANCHORS && tries < 64 * MP_EAS_ANCHORS; tries++)
                add(&p, (uint32_t) (splitmix64(&state) % span));
        return (int) p.n;
}
