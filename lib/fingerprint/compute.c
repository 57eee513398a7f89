/* compute.c - pass + record + signals in one call (see compute.h). */
#include "fingerprint/compute.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "signals/collect.h"
#include "signals/metadata.h"
#include "util/macro.h"

int mp_fingerprint_compute(mp_model *m, const mp_pass_options *opts, mp_fingerprint **ret, mp_error *err) {
        assert(m);
        assert(ret);

        _cleanup_(mp_signal_collector_freep) mp_signal_collector *c = NULL;
        int r = mp_signal_collector_new(m, &c);
        if (r < 0)
                return mp_error_set(err, r, m->root, -1, "cannot prepare weight signals");

        mp_pass_options po = opts ? *opts : (mp_pass_options) {0};
        size_t nv = po.n_visitors + 1;
        _cleanup_(freep) mp_tensor_visitor *visitors = calloc(nv, sizeof(*visitors));
        if (!visitors)
                return mp_error_set(err, -ENOMEM, m->root, -1, "out of memory");
        if (po.n_visitors > 0)
                memcpy(visitors, po.visitors, po.n_visitors * sizeof(*visitors));
        visitors[nv - 1] = *mp_signal_collector_visitor(c);
        po.visitors = visitors;
        po.n_visitors = nv;

        mp_pass_result res;
        r = mp_pass_run(m, &po, &res, err);
        if (r < 0)
                return r;

        _cleanup_(mp_fingerprint_freep) mp_fingerprint *fp = NULL;
        r = mp_fingerprint_build(m, &res, &fp, err);
        mp_pass_result_free(&res);
        if (r < 0)
                return r;

        r = mp_signal_collector_attach(c, fp);
        if (r >= 0)
                r = mp_signals_attach_metadata(m, fp->signals);
        if (r < 0)
                return mp_error_set(err, r, m->root, -1, "cannot compute signals");
        *ret = TAKE_PTR(fp);
        return 0;
}
