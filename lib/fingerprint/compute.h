/* compute.h - the complete fingerprint of an opened model.
 *
 * One call runs the single pass (digests and weight signals together, see
 * pass.h and signals/collect.h), builds the record, and adds the metadata,
 * tokenizer and vocabulary signals, which need no weights.  The CLI and the
 * agent both fingerprint through here. */
#pragma once

#include "fingerprint/record.h"
#include "formats/model.h"
#include "pass/pass.h"
#include "util/error.h"

/* opts may be NULL (defaults); its visitors run beside the signal collector. */
int mp_fingerprint_compute(mp_model *m, const mp_pass_options *opts, mp_fingerprint **ret, mp_error *err);
