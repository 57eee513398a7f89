/* tokenizer.c - the mp_tokenizer record: construction, vocabulary storage
 * and the vocabulary digest.  The file-format parsers live in
 * tokenizer_json.c, vocab_merges.c and sentencepiece.c. */
#include "formats/tokenizer.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "util/macro.h"

static const char *const kind_names[_MP_TOK_MAX] = {
        [MP_TOK_UNKNOWN]       = "unknown",
        [MP_TOK_BPE]           = "bpe",
        [MP_TOK_WORDPIECE]     = "wordpiece",
        [MP_TOK_UNIGRAM]       = "unigram",
        [MP_TOK_WORDLEVEL]     = "wordlevel",
        [MP_TOK_SPM_UNIGRAM]   = "sentencepiece-unigram",
        [MP_TOK_SPM_BPE]       = "sentencepiece-bpe",
        [MP_TOK_SPM_OTHER]     = "sentencepiece-other",
        [MP_TOK_GGUF_LLAMA]    = "gguf-llama",
        [MP_TOK_GGUF_GPT2]     = "gguf-gpt2",
        [MP_TOK_GGUF_OTHER]    = "gguf-other",
};

const char *mp_tokenizer_kind_name(mp_tokenizer_kind k) {
        if (k < 0 || k >= _MP_TOK_MAX || !kind_names[k])
                return "unknown";
        return kind_names[k];
}

mp_tokenizer *mp_tokenizer_new(mp_tokenizer_kind kind, const char *source) {
        mp_tokenizer *t = calloc(1, sizeof(*t));
        if (!t)
                return NULL;
        t->kind = kind;
        t->byte_fallback = -1;
        t->dummy_prefix = -1;
        if (source && !(t->source = strdup(source))) {
                free(t);
                return NULL;
        }
        return t;
}

void mp_tokenizer_free(mp_tokenizer *t) {
        if (!t)
                return;
        for (size_t i = 0; i < t->n_tokens; i++)
                free(t->tokens[i]);
        free(t->tokens);
        free(t->source);
        free(t->model_name);
        free(t->pre_tokenizer);
        free(t->bos_token);
        free(t->eos_token);
        free(t->unk_token);
        free(t->pad_token);
        free(t->mask_token);
        free(t->sep_token);
        free(t->cls_token);
        for (size_t i = 0; i < t->n_extra_special; i++)
                free(t->extra_special[i]);
        free(t->extra_special);
        free(t->tokenizer_class);
        mp_tokenizer_merges_clear(&t->merges);
        free(t);
}

int mp_tokenizer_set_token(mp_tokenizer *t, size_t id, const char *s, size_t len) {
        assert(t);
        assert(s || len == 0);

        if (id >= MP_TOKENIZER_MAX_TOKENS || len > MP_TOKENIZER_MAX_TOKEN_LEN)
                return -E2BIG;

        if (id >= t->n_tokens) {
                /* tokens is sized exactly n_tokens; grow geometrically via a
                 * capacity rounded to a power of two. */
                size_t cap = 16;
                while (cap < id + 1)
                        cap *= 2;
                size_t old_cap = 16;
                while (old_cap < t->n_tokens)
                        old_cap *= 2;
                if (!t->tokens || cap > old_cap) {
                        char **p = realloc(t->tokens, cap * sizeof(char *));
                        if (!p)
                                return -ENOMEM;
                        t->tokens = p;
                }
                memset(t->tokens + t->n_tokens, 0, (id + 1 - t->n_tokens) * sizeof(char *));
                t->n_tokens = id + 1;
        }

        char *copy = malloc(len + 1);
        if (!copy)
                return -ENOMEM;
        memcpy(copy, s, len);
        copy[len] = 0;
        free(t->tokens[id]);
        t->tokens[id] = copy;
        return 0;
}

int mp_tokenizer_merges_add(mp_tokenizer_merges *m, const char *a, size_t alen, const char *b, size_t blen) {
        assert(m);
        assert(a || alen == 0);
        assert(b || blen == 0);

        if (!m->ctx) {
                EVP_MD_CTX *ctx = EVP_MD_CTX_new();
                if (!ctx)
                        return -ENOMEM;
                if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
                        EVP_MD_CTX_free(ctx);
                        return -ENOMEM;
                }
                m->ctx = ctx;
        }

        /* "\n" between merges, none after the last: the digest equals
         * SHA-256("\n".join(merges)) without ever holding the join. */
        if ((m->n > 0 && EVP_DigestUpdate(m->ctx, "\n", 1) != 1) ||
            EVP_DigestUpdate(m->ctx, a, alen) != 1 ||
            (b && (EVP_DigestUpdate(m->ctx, " ", 1) != 1 || EVP_DigestUpdate(m->ctx, b, blen) != 1)))
                return -ENOMEM;

        if (m->n < MP_TOKENIZER_KEPT_MERGES) {
                char *s = malloc(alen + blen + 2), *p = s;
                if (!s)
                        return -ENOMEM;
                p = mempcpy(p, a, alen);
                if (b) {
                        *p++ = ' ';
                        p = mempcpy(p, b, blen);
                }
                *p = 0;
                m->first[m->n] = s;
        }
        m->n++;
        return 0;
}

int mp_tokenizer_merges_finish(mp_tokenizer_merges *m) {
        unsigned int n = 32;

        assert(m);
        if (!m->ctx)
                return 0;
        int ok = EVP_DigestFinal_ex(m->ctx, m->sha256, &n);
        EVP_MD_CTX_free(m->ctx);
        m->ctx = NULL;
        return ok == 1 ? 0 : -ENOMEM;
}

void mp_tokenizer_merges_clear(mp_tokenizer_merges *m) {
        assert(m);
        for (size_t i = 0; i < MP_TOKENIZER_KEPT_MERGES; i++)
                free(m->first[i]);
        EVP_MD_CTX_free(m->ctx);
        *m = (mp_tokenizer_merges) {};
}

void mp_tokenizer_vocab_digest(const mp_tokenizer *t, uint8_t out[32]) {
        assert(t);
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        unsigned int n = 32;

        if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
                memset(out, 0, 32);
                EVP_MD_CTX_free(ctx);
                return;
        }
        for (size_t i = 0; i < t->n_tokens; i++) {
                if (t->tokens[i])
                        EVP_DigestUpdate(ctx, t->tokens[i], strlen(t->tokens[i]));
                EVP_DigestUpdate(ctx, "", 1);
        }
        EVP_DigestFinal_ex(ctx, out, &n);
        EVP_MD_CTX_free(ctx);
}
