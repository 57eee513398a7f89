/* metadata.c - attaches the signals that need no weights (MFI, TFV, the
 * vocabulary sketch) to a fingerprint record (see metadata.h). */
#include "signals/metadata.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "signals/mfi.h"
#include "signals/tfv.h"
#include "signals/vocab_sketch.h"
#include "util/macro.h"

/* Replaces a protobuf-c string field (which may point at the shared empty
 * string) with s, taking ownership. */
static void set_string(char **field, char *s) {
        if (*field && *field != protobuf_c_empty_string)
                free(*field);
        *field = s;
}

/* Stores the object as Python's json.dumps writes it (insertion order,
 * shortest float repr), so that integer and float literals survive a round
 * trip: rope_theta's type decides the family hash. */
static int set_json(char **field, const json_t *o) {
        char *s = mp_py_json_dumps(o, false);
        if (!s)
                return -ENOMEM;
        set_string(field, s);
        return 0;
}

static int attach_mfi(const mp_model *m, Modelprov__V1__Signals *s) {
        _cleanup_(json_decrefp) json_t *mfi = NULL;
        int r = mp_mfi_build(m, &mfi);
        if (r < 0 || !mfi)
                return r;

        char *arch = strdup(json_string_value(json_object_get(mfi, "arch_hash")));
        char *family = strdup(json_string_value(json_object_get(mfi, "family_hash")));
        if (!arch || !family) {
                free(arch);
                free(family);
                return -ENOMEM;
        }
        set_string(&s->arch_hash, arch);
        set_string(&s->family_hash, family);
        return set_json(&s->mfi_json, mfi);
}

static int attach_tokenizer(const mp_tokenizer *t, Modelprov__V1__Signals *s) {
        _cleanup_(json_decrefp) json_t *tfv = NULL;
        int r = mp_tfv_build(t, &tfv);
        if (r < 0)
                return r;
        r = set_json(&s->tfv_json, tfv);
        if (r < 0)
                return r;

        Modelprov__V1__VocabSketch *vs = malloc(sizeof(*vs));
        if (!vs)
                return -ENOMEM;
        modelprov__v1__vocab_sketch__init(vs);
        r = mp_vocab_sketch_build(t, vs);
        if (r < 0) {
                modelprov__v1__vocab_sketch__free_unpacked(vs, NULL);
                return r;
        }
        if (s->vocab_sketch)
                modelprov__v1__vocab_sketch__free_unpacked(s->vocab_sketch, NULL);
        s->vocab_sketch = vs;
        return 0;
}

int mp_signals_attach_metadata(const mp_model *m, Modelprov__V1__Signals *s) {
        int r;

        assert(m);
        assert(s);

        r = attach_mfi(m, s);
        if (r < 0)
                return r;
        if (m->tokenizer) {
                r = attach_tokenizer(m->tokenizer, s);
                if (r < 0)
                        return r;
        }
        return 0;
}
