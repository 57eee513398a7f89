/* fuzz_tokenizer.c - libFuzzer target for the tokenizer readers; the input
 * layout (first byte picks the parser) is tokenizer_dispatch()'s. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/tokenizer.h"
#include "tokenizer_dispatch.h"

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

        if (size == 0)
                return 0;
        unsigned sel = data[0] % 4;
        char *buf = copy_z(data + 1, size - 1);
        size--;

        int r = tokenizer_dispatch(sel, buf, size, &t, &err);
        check_result(r, &err, t, sel == 3);

        mp_tokenizer_free(t);
        free(buf);
        return 0;
}
