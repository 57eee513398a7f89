/* script.h - writing systems of vocabulary tokens.
 *
 * Used by the anchor choice (EAS) and the tokenizer feature vector (TFV,
 * script_distribution).  A token's script is that of its first letter-like
 * code point after space markers; tokens without one count as "Other". */
#pragma once

#include "formats/tokenizer.h"

typedef enum mp_script {
        MP_SCRIPT_LATIN = 0,
        MP_SCRIPT_CJK,
        MP_SCRIPT_CYRILLIC,
        MP_SCRIPT_ARABIC,
        MP_SCRIPT_DEVANAGARI,
        MP_SCRIPT_OTHER,
        _MP_SCRIPT_MAX,
} mp_script;

const char *mp_script_name(mp_script s);

/* Script of one NUL-terminated UTF-8 token. */
mp_script mp_script_of_token(const char *token);

/* Share of each script among t's tokens (holes skipped); sums to 1 unless
 * the vocabulary is empty (then all 0). */
void mp_script_distribution(const mp_tokenizer *t, double share[_MP_SCRIPT_MAX]);
