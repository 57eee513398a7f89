/* collect.h - weight signals gathered during the single pass.
 *
 * A collector is a tensor visitor (lib/pass) that, while the digests are
 * computed, keeps for every tensor its L2 norm, mean, standard deviation and
 * a deterministic value sample (sample.h); for the token embedding, every
 * row's norm (END) and the rows of the anchor tokens (EAS); and the
 * normalization vectors (NLF).  Nothing is read twice.  After the pass,
 * mp_signal_collector_attach() turns what was collected into the record's
 * per-tensor fields and weight signals.
 *
 * Memory: per tensor a few dozen bytes and its sample, plus one double per
 * embedding row and the anchor rows; independent of model size otherwise.
 *
 * Incremental fingerprints (fingerprint/compute.h): a tensor the pass does
 * not read can take its parts from an earlier record of the same content
 * (reuse_tensor), and so can the model-level signals built from it:
 * END and EAS from the earlier record's (reuse_embedding), NLF rows from the
 * earlier record's, or else from the few norm vectors read directly
 * (finish_reuse), LEP from the earlier per-tensor norms.  The result is the
 * record a full pass would give. */
#pragma once

#include "fingerprint/record.h"
#include "formats/model.h"
#include "pass/pass.h"

typedef struct mp_signal_collector mp_signal_collector;

/* Prepares the collector for model m (which must outlive it): picks the
 * embedding tensor, anchor tokens and samples. */
int mp_signal_collector_new(const mp_model *m, mp_signal_collector **ret);
void mp_signal_collector_free(mp_signal_collector *c);
static inline void mp_signal_collector_freep(mp_signal_collector **c) { mp_signal_collector_free(*c); }

/* The visitor to pass to mp_pass_run(); valid while c lives. */
const mp_tensor_visitor *mp_signal_collector_visitor(mp_signal_collector *c);

/* After a successful pass: fills fp->tensors[i] statistics and samples and
 * the weight signals of fp->signals (created if absent).  fp must describe
 * the same model, tensors in the same order.  Fields are allocated with
 * malloc, as protobuf-c's free_unpacked expects. */
int mp_signal_collector_attach(const mp_signal_collector *c, mp_fingerprint *fp);

/* --- incremental ---------------------------------------------------------
 * prev is the earlier record (or one of its tensors); it must stay alive and
 * unchanged until attach.  The caller vouches that the content is the same
 * (same file digest, name, dtype, shape, flags); these functions check what
 * the collector itself depends on and return -EINVAL when prev cannot stand
 * in, in which case the caller must let the pass read the tensor's file. */

/* Tensor ti will not be visited: its statistics and sample come from prev
 * (NULL: it will be visited after all).  Checked: the sample size, and that
 * a tensor without values has no statistics. */
int mp_signal_collector_reuse_tensor(mp_signal_collector *c, size_t ti, const Modelprov__V1__TensorDigest *prev);

/* The embedding tensor the collector derives END and EAS from (index into
 * m->tensors), or SIZE_MAX when there is none. */
size_t mp_signal_collector_embedding(const mp_signal_collector *c);

/* After reuse_tensor() of the embedding: END and EAS come from prev's
 * signals.  Checked: prev chose the same tensor, the same anchor tokens, and
 * holds END and EAS where a full pass would produce them (prev NULL: it
 * cannot).  Returns 0 also when the embedding is read by the pass, or has
 * nothing to copy. */
int mp_signal_collector_reuse_embedding(mp_signal_collector *c, const mp_fingerprint *prev);

/* After the pass, before attach: NLF rows of reused normalization vectors
 * are taken from prev when its NLF was laid out for the same set of vectors;
 * otherwise those vectors' values are read from their files (small: 1-D
 * vectors), and the bytes read are added to *bytes_read. */
int mp_signal_collector_finish_reuse(mp_signal_collector *c, const mp_fingerprint *prev, uint64_t *bytes_read,
                                     mp_error *err);
