/* metadata.h - the signals that need no weights: metadata family
 * identification (MFI), the tokenizer feature vector (TFV) and the
 * vocabulary sketch, as defined in docs/signals.md.
 *
 * MFI and TFV are kept as JSON objects shaped like the reference project's
 * feature bundles ("mfi", "tfv"), so that an imported catalog entry and a
 * record computed here are read by the same comparison code. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "formats/model.h"
#include "modelprov.pb-c.h"

#define MP_VOCAB_SKETCH_K 256

/* Fills s->mfi_json, arch_hash, family_hash, tfv_json and vocab_sketch
 * (malloc'd fields, as protobuf-c's free_unpacked expects).  Missing
 * config or tokenizer leave the corresponding fields empty. */
int mp_signals_attach_metadata(const mp_model *m, Modelprov__V1__Signals *s);
