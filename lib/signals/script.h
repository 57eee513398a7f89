/* script.h - writing systems of vocabulary tokens, as the reference project
 * classifies them (docs/signals.md, "script_distribution").
 *
 * Used by the tokenizer feature vector (TFV script_distribution) and the
 * anchor choice (EAS).  Every alphabetic code point (Python str.isalpha(),
 * general category L*) of every token counts once: ASCII letters are Latin;
 * other letters are CJK, Cyrillic, Arabic, Devanagari or Latin by their
 * Unicode name, anything else "Other".  Non-alphabetic code points are not
 * counted at all. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum mp_script {
        MP_SCRIPT_LATIN = 0,
        MP_SCRIPT_CJK,
        MP_SCRIPT_CYRILLIC,
        MP_SCRIPT_ARABIC,
        MP_SCRIPT_DEVANAGARI,
        MP_SCRIPT_OTHER,
        _MP_SCRIPT_MAX,
} mp_script;

/* "Latin", "CJK", ... as the reference's JSON keys spell them. */
const char *mp_script_name(mp_script s);

/* Decodes one code point from s (len > 0 bytes) the way Python's
 * bytes.decode("utf-8", "replace") does: a malformed sequence becomes one
 * U+FFFD per maximal invalid subpart.  Returns the bytes consumed (>= 1). */
size_t mp_utf8_decode(const char *s, size_t len, uint32_t *ret);

/* Python str.isalpha() for one code point (see script_ranges.h for the
 * Unicode version). */
bool mp_code_point_is_alpha(uint32_t c);

/* Script of an alphabetic code point. */
mp_script mp_script_of_alpha(uint32_t c);

/* Counter over the alphabetic code points of tokens.  Start from {}; add
 * every (distinct) vocabulary string; then finish. */
typedef struct mp_script_dist {
        uint64_t count[_MP_SCRIPT_MAX];
        uint64_t total;                 /* alphabetic code points */
        unsigned first_seen[_MP_SCRIPT_MAX];    /* 1-based order of first appearance, 0 = never */
        unsigned n_seen;
        /* set by mp_script_dist_finish(): */
        size_t n;                       /* scripts seen */
        mp_script order[_MP_SCRIPT_MAX];        /* Counter.most_common() order: count
                                                 * descending, ties in first-seen order */
        double pct[_MP_SCRIPT_MAX];     /* round(count / total, 4), by script */
} mp_script_dist;

void mp_script_dist_add(mp_script_dist *d, const char *token);
void mp_script_dist_finish(mp_script_dist *d);
