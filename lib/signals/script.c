/* script.c - writing systems of tokens (see script.h). */
#include "signals/script.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>

const char *mp_script_name(mp_script s) {
        static const char *const names[_MP_SCRIPT_MAX] = {
                [MP_SCRIPT_LATIN] = "Latin", [MP_SCRIPT_CJK] = "CJK", [MP_SCRIPT_CYRILLIC] = "Cyrillic",
                [MP_SCRIPT_ARABIC] = "Arabic", [MP_SCRIPT_DEVANAGARI] = "Devanagari", [MP_SCRIPT_OTHER] = "Other",
        };
        return (unsigned) s < _MP_SCRIPT_MAX ? names[s] : "Other";
}

/* Decodes one UTF-8 code point; returns its length, 0 at the end or on a
 * malformed sequence (then the caller stops). */
static size_t utf8_next(const unsigned char *p, uint32_t *cp) {
        if (p[0] < 0x80) {
                *cp = p[0];
                return p[0] ? 1 : 0;
        }
        size_t n = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc0 ? 2 : 0;
        if (n == 0)
                return 0;
        uint32_t v = p[0] & (0x7f >> n);
        for (size_t i = 1; i < n; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                v = (v << 6) | (p[i] & 0x3f);
        }
        *cp = v;
        return n;
}

static mp_script script_of_code_point(uint32_t c) {
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= 0xc0 && c <= 0x24f && c != 0xd7 && c != 0xf7))
                return MP_SCRIPT_LATIN;
        if ((c >= 0x4e00 && c <= 0x9fff) || (c >= 0x3400 && c <= 0x4dbf) || (c >= 0x3040 && c <= 0x30ff) ||
            (c >= 0xac00 && c <= 0xd7af) || (c >= 0xf900 && c <= 0xfaff))
                return MP_SCRIPT_CJK;
        if (c >= 0x400 && c <= 0x4ff)
                return MP_SCRIPT_CYRILLIC;
        if ((c >= 0x600 && c <= 0x6ff) || (c >= 0x750 && c <= 0x77f))
                return MP_SCRIPT_ARABIC;
        if (c >= 0x900 && c <= 0x97f)
                return MP_SCRIPT_DEVANAGARI;
        return MP_SCRIPT_OTHER;
}

mp_script mp_script_of_token(const char *token) {
        assert(token);
        const unsigned char *p = (const unsigned char *) token;
        uint32_t cp;
        size_t n;
        while ((n = utf8_next(p, &cp)) > 0) {
                p += n;
                if (cp == 0x2581 || cp == 0x120 || cp == ' ')   /* ▁, Ġ, space markers */
                        continue;
                mp_script s = script_of_code_point(cp);
                if (s != MP_SCRIPT_OTHER)
                        return s;
        }
        return MP_SCRIPT_OTHER;
}

void mp_script_distribution(const mp_tokenizer *t, double share[_MP_SCRIPT_MAX]) {
        size_t count[_MP_SCRIPT_MAX] = {0}, total = 0;
        memset(share, 0, sizeof(double) * _MP_SCRIPT_MAX);
        if (!t)
                return;
        for (size_t i = 0; i < t->n_tokens; i++)
                if (t->tokens[i]) {
                        count[mp_script_of_token(t->tokens[i])]++;
                        total++;
                }
        for (size_t s = 0; total > 0 && s < _MP_SCRIPT_MAX; s++)
                share[s] = (double) count[s] / (double) total;
}
