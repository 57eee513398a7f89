/* compute.h - the complete fingerprint of an opened model.
 *
 * One call runs the single pass (digests and weight signals together, see
 * pass.h and signals/collect.h), builds the record, and adds the metadata,
 * tokenizer and vocabulary signals, which need no weights.  The CLI and the
 * agent both fingerprint through here. */
#pragma once

#include <stdint.h>

#include "fingerprint/record.h"
#include "formats/model.h"
#include "pass/pass.h"
#include "util/error.h"

/* opts may be NULL (defaults); its visitors run beside the signal collector.
 * Every file is read (opts->skip_digested is ignored). */
int mp_fingerprint_compute(mp_model *m, const mp_pass_options *opts, mp_fingerprint **ret, mp_error *err);

/* The same record, reading only what changed since previous was computed
 * (the agent's "rebuilt from its files' stored parts").
 *
 * The caller sets digested = true and sha256 on the files it knows to be
 * unchanged (same dev, inode, size, mtime, ctime as when it last read them);
 * those digests are trusted, not checked.  previous is this model's last
 * record (NULL: none).  A known file is not read when previous can stand in
 * for everything the record takes from it: each of its tensors is in
 * previous under the same name, dtype, shape, byte length, flags, source
 * name and file path, and previous has the same SHA-256 for that file; then
 * the tensor's XXH3, statistics and sample come from previous, and so do
 * the model-level signals built from it (END and EAS of the embedding, NLF
 * rows, LEP terms).  Whenever previous cannot supply something (NULL, a
 * record of another model or another modelprov version, a tensor missing,
 * the embedding chosen differently, NLF laid out for other vectors) the
 * files concerned are read instead: the result is always the record
 * mp_fingerprint_compute() gives for the same files.
 *
 * Known files without tensors (config, tokenizer, index) are not read
 * either: their content is in the model already (mp_model_open parsed it).
 * A known file with a git-SHA-1 blob name is read unless previous shows
 * the same content passed that name check (only the content can check it).
 *
 * Visitors in opts see only the tensors that are read.  *ret_bytes_read
 * (may be NULL) receives the bytes read, on success; on failure the
 * digested flags are left as the pass left them.  A stop request
 * (opts->stop) fails with -ECANCELED. */
int mp_fingerprint_compute_incremental(mp_model *m, const mp_pass_options *opts, const mp_fingerprint *previous,
                                       mp_fingerprint **ret, uint64_t *ret_bytes_read, mp_error *err);
