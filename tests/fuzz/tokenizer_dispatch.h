/* tokenizer_dispatch.h - the input layout of fuzz_tokenizer.c.  The first
 * input byte picks the parser (modulo 4), the rest is its input:
 *   0  tokenizer.json
 *   1  vocab.json, a NUL byte, merges.txt (no NUL: no merges.txt)
 *   2  sentencepiece tokenizer.model
 *   3  tokenizer_config.json applied to an empty tokenizer
 * tests/unit/test_tokenizers.c replays tests/fuzz/regressions/tokenizer
 * through this same function, so that a regression file reaches the parser
 * exactly as it did when the fuzzer found it. */
#pragma once

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "formats/tokenizer.h"

/* Runs the parser that sel picks (0-3, see above) on the size bytes at buf,
 * which the caller NUL-terminates (the parsers take C strings).  Returns the
 * parser's result, with the tokenizer (or NULL) in *t; for 3, *t is the
 * tokenizer the config was applied to even on failure, and -ENOMEM (err not
 * set) if it could not be made. */
static inline int tokenizer_dispatch(unsigned sel, const char *buf, size_t size, mp_tokenizer **t,
                                     mp_error *err) {
        switch (sel) {
        case 0:
                return mp_tokenizer_json_parse("tokenizer.json", buf, size, t, err);
        case 1: {
                const char *nul = memchr(buf, 0, size);
                size_t vlen = nul ? (size_t) (nul - buf) : size;
                return mp_tokenizer_vocab_merges_parse("vocab.json", buf, vlen, "merges.txt",
                                                       nul ? nul + 1 : NULL, nul ? size - vlen - 1 : 0, t, err);
        }
        case 2:
                return mp_sentencepiece_parse("tokenizer.model", (const uint8_t *) buf, size, t, err);
        default:
                *t = mp_tokenizer_new(MP_TOK_UNKNOWN, "x");
                if (!*t)
                        return -ENOMEM;
                return mp_tokenizer_config_apply(*t, "tokenizer_config.json", buf, size, err);
        }
}
