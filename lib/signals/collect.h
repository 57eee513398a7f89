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
 * embedding row and the anchor rows; independent of model size otherwise. */
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
