/* compare.c - placeholder with the final API; scores come next. */
#include "compare/compare.h"

#include <errno.h>
#include <math.h>
#include <string.h>

int mp_compare(const mp_fingerprint *a, const mp_fingerprint *b, const mp_compare_options *o,
               mp_comparison *out) {
        (void) a; (void) b; (void) o;
        memset(out, 0, sizeof(*out));
        for (size_t i = 0; i < _MP_SIG_MAX; i++)
                out->signal[i] = NAN;
        out->identity_score = out->tokenizer_score = out->pipeline_score = NAN;
        out->median_rel_change = NAN;
        out->relation = "unrelated";
        return 0;
}

const char *mp_signal_name(mp_signal_id id) { (void) id; return "?"; }
const char *mp_verdict_name(mp_verdict v) { (void) v; return "Not Matched"; }
json_t *mp_comparison_to_json(const mp_comparison *c) { (void) c; return json_object(); }
