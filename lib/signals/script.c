/* script.c - writing systems of tokens (see script.h). */
#include "signals/script.h"

#include <assert.h>
#include <string.h>

#include "signals/mfi.h"
#include "signals/script_ranges.h"
#include "util/macro.h"

const char *mp_script_name(mp_script s) {
        static const char *const names[_MP_SCRIPT_MAX] = {
                [MP_SCRIPT_LATIN] = "Latin", [MP_SCRIPT_CJK] = "CJK", [MP_SCRIPT_CYRILLIC] = "Cyrillic",
                [MP_SCRIPT_ARABIC] = "Arabic", [MP_SCRIPT_DEVANAGARI] = "Devanagari", [MP_SCRIPT_OTHER] = "Other",
        };
        return (unsigned) s < _MP_SCRIPT_MAX ? names[s] : "Other";
}

size_t mp_utf8_decode(const char *s, size_t len, uint32_t *ret) {
        const unsigned char *p = (const unsigned char *) s;
        unsigned char lo = 0x80, hi = 0xbf;
        size_t need;
        uint32_t cp;

        assert(s);
        assert(len > 0);
        assert(ret);

        if (p[0] < 0x80) {
                *ret = p[0];
                return 1;
        }
        /* The lead byte fixes the length and, for E0/ED/F0/F4, a narrower
         * range of the second byte (no overlongs, surrogates, > U+10FFFF). */
        if (p[0] >= 0xc2 && p[0] <= 0xdf) {
                need = 1;
                cp = p[0] & 0x1f;
        } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
                need = 2;
                cp = p[0] & 0x0f;
                lo = p[0] == 0xe0 ? 0xa0 : 0x80;
                hi = p[0] == 0xed ? 0x9f : 0xbf;
        } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
                need = 3;
                cp = p[0] & 0x07;
                lo = p[0] == 0xf0 ? 0x90 : 0x80;
                hi = p[0] == 0xf4 ? 0x8f : 0xbf;
        } else {
                *ret = 0xfffd;
                return 1;
        }
        for (size_t i = 1; i <= need; i++) {
                if (i >= len || p[i] < lo || p[i] > hi) {
                        /* The maximal subpart so far is one replacement. */
                        *ret = 0xfffd;
                        return i;
                }
                cp = (cp << 6) | (p[i] & 0x3f);
                lo = 0x80;
                hi = 0xbf;
        }
        *ret = cp;
        return need + 1;
}

/* Binary search over a sorted table of disjoint [first, last] ranges. */
#define RANGE_FIND(table, c)                                                    \
        ({                                                                      \
                size_t _lo = 0, _hi = ELEMENTSOF(table);                        \
                __typeof__(&(table)[0]) _hit = NULL;                            \
                while (_lo < _hi) {                                             \
                        size_t _mid = (_lo + _hi) / 2;                          \
                        if ((c) < (table)[_mid].first)                          \
                                _hi = _mid;                                     \
                        else if ((c) > (table)[_mid].last)                      \
                                _lo = _mid + 1;                                 \
                        else {                                                  \
                                _hit = &(table)[_mid];                          \
                                break;                                          \
                        }                                                       \
                }                                                               \
                _hit;                                                           \
        })

bool mp_code_point_is_alpha(uint32_t c) {
        return RANGE_FIND(alpha_ranges, c) != NULL;
}

mp_script mp_script_of_alpha(uint32_t c) {
        if (c <= 0x7f)
                return MP_SCRIPT_LATIN;
        const mp_script_range *r = RANGE_FIND(script_ranges, c);
        return r ? r->script : MP_SCRIPT_OTHER;
}

void mp_script_dist_add(mp_script_dist *d, const char *token) {
        assert(d);
        assert(token);

        size_t len = strlen(token);
        for (size_t i = 0; i < len;) {
                uint32_t c;
                i += mp_utf8_decode(token + i, len - i, &c);
                if (!mp_code_point_is_alpha(c))
                        continue;
                mp_script s = mp_script_of_alpha(c);
                if (d->count[s]++ == 0)
                        d->first_seen[s] = ++d->n_seen;
                d->total++;
        }
}

void mp_script_dist_finish(mp_script_dist *d) {
        assert(d);

        d->n = 0;
        for (unsigned rank = 1; rank <= d->n_seen; rank++)
                for (size_t s = 0; s < _MP_SCRIPT_MAX; s++)
                        if (d->first_seen[s] == rank)
                                d->order[d->n++] = (mp_script) s;

        /* Stable insertion sort by count, descending: ties keep first-seen order. */
        for (size_t i = 1; i < d->n; i++) {
                mp_script x = d->order[i];
                size_t j = i;
                for (; j > 0 && d->count[d->order[j - 1]] < d->count[x]; j--)
                        d->order[j] = d->order[j - 1];
                d->order[j] = x;
        }

        for (size_t s = 0; s < _MP_SCRIPT_MAX; s++)
                d->pct[s] = d->total > 0 ? mp_py_round((double) d->count[s] / (double) d->total, 4) : 0;
}
