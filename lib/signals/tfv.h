/* tfv.h - the tokenizer feature vector (TFV), as the reference project
 * defines it (docs/signals.md).
 *
 * The object has the reference's 17 fields, in its order (vocab_size,
 * tokenizer_class, bos_token_id, eos_token_id, pad_token_id,
 * num_added_tokens, num_special_tokens, num_merges, first_5_merges,
 * merge_rule_hash, special_token_ids, pct_single_char, avg_token_length,
 * max_token_length, pct_whitespace_prefix, pct_byte_tokens,
 * script_distribution), plus "all_merges_sha256": the hex SHA-256 of all
 * merges joined by "\n", modelprov's stand-in for the reference's
 * all_merges_str (which its DB does not store); "" without merges.
 *
 * Statistics run over the distinct token strings (the reference's
 * get_vocab() keys); lengths count Unicode code points, invalid UTF-8
 * decoded with replacement.  tokenizer_class is tokenizer_config.json's
 * class name (the reference reports the Python class it instantiated, which
 * depends on its transformers version), or null. */
#pragma once

#include <jansson.h>

#include "formats/tokenizer.h"

/* Builds the tfv object of t into *ret.  Returns 0 or -ENOMEM. */
int mp_tfv_build(const mp_tokenizer *t, json_t **ret);

/* The reference's 11-part TFV similarity, rounded to 4 places; merge
 * identity compares all_merges_sha256 (a record without it, such as an
 * imported reference entry, counts as having no merges string).  NAN if
 * either is not an object. */
double mp_tfv_similarity(const json_t *a, const json_t *b);
