/* fuzz_tokenizer.c - libFuzzer target for the tokenizer readers.  The first
 * input byte picks the parser (modulo 4), the rest is its input:
 *   0  tokenizer.json
 *   1  vocab.json, a NUL byte, merges.txt (no NUL: no merges.txt)
 *   2  sentencepiece tokenizer.model
 *   3  tokenizer_config.json applied to an empty tokenizer
 * tests/unit/test_tokenizers.c replays tests/fuzz/regressions/tokenizer with
 * the same dispatch. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The parsers take NUL-terminated buffers. */
static char *copy_z(const uint8_t *data, size_t size) {
        char *buf = malloc(size + 1);
        if (!buf)
                abort();
        memcpy(buf, data, size);
        buf[size] = 0;
        return buf;
}

static void check_result(int r, const mp_error *err, const mp_tokenizer *t, int keeps_tokenizer) {
        /* A failure must be reported, and must not hand out a tokenizer. */
        if (r < 0 && (err->code != r || !err->reason[0] || (!keeps_tokenizer && t)))
                abort();
        if (r >= 0 && !t)
                abort();
        if (t) {
                uint8_t d[32];
                mp_tokenizer_vocab_digest(t, d);        /* touches every token */
                if (t->n_tokens > MP_TOKENIZER_MAX_TOKENS)
                        abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        mp_tokenizer *t = NULL;
        mp_error err = {};
        int r = 0;

        if (size == 0)
                return 0;
        unsigned sel = data[0] % 4;
        char *buf = copy_z(data + 1, size - 1);
        size--;

        switch (sel) {
        case 0:
                r = mp_tokenizer_json_parse("tokenizer.json", buf, size, &t, &err);
                break;
        case 1: {
                char *nul = memchr(buf, 0, size);
                size_t vlen = nul ? (size_t) (nul - buf) : size;
                r = mp_tokenizer_vocab_merges_parse("vocab.json", buf, vlen, "merges.txt",
                                                    nul ? nul + 1 : NULL, nul ? size - vlen - 1 : 0, &t, &err);
                break;
        }
        case 2:
                r = mp_sentencepiece_parse("tokenizer.model", (const uint8_t *) buf, size, &t, &err);
                break;
        default:
                t = mp_tokenizer_new(MP_TOK_UNKNOWN, "x");
                if (!t)
                        abort();
                r = mp_tokenizer_config_apply(t, "tokenizer_config.json", buf, size, &err);
                break;
        }
        check_result(r, &err, t, sel == 3);

        mp_tokenizer_free(t);
        free(buf);
        return 0;
}
