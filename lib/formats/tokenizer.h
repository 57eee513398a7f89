/* tokenizer.h - what modelprov knows about a model's tokenizer.
 *
 * Readers for every tokenizer file kind fill the same record: the kind, the
 * id-ordered vocabulary (token strings), merges count, special tokens.  The
 * vocabulary is kept so that later signals (vocabulary sketch, anchor tokens)
 * can use it; the fingerprint ships only digests and counts. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

typedef enum mp_tokenizer_kind {
        MP_TOK_UNKNOWN = 0,
        MP_TOK_BPE,             /* tokenizer.json model.type BPE, vocab.json+merges.txt */
        MP_TOK_WORDPIECE,       /* tokenizer.json model.type WordPiece */
        MP_TOK_UNIGRAM,         /* tokenizer.json model.type Unigram */
        MP_TOK_WORDLEVEL,       /* tokenizer.json model.type WordLevel */
        MP_TOK_SPM_UNIGRAM,     /* sentencepiece tokenizer.model, unigram */
        MP_TOK_SPM_BPE,         /* sentencepiece tokenizer.model, bpe */
        MP_TOK_SPM_OTHER,       /* sentencepiece word/char */
        MP_TOK_GGUF_LLAMA,      /* GGUF tokenizer.ggml.model = "llama" (spm) */
        MP_TOK_GGUF_GPT2,       /* GGUF tokenizer.ggml.model = "gpt2" (byte BPE) */
        MP_TOK_GGUF_OTHER,      /* other tokenizer.ggml.model values */
        _MP_TOK_MAX,
} mp_tokenizer_kind;

/* Merges kept for the tokenizer feature vector: the first few verbatim, and
 * a digest of all of them, so that a 300k-merge list costs a few KiB. */
#define MP_TOKENIZER_KEPT_MERGES 50

typedef struct mp_tokenizer_merges {
        size_t n;                                       /* merges added */
        char *first[MP_TOKENIZER_KEPT_MERGES];          /* the first ones, "A B" */
        uint8_t sha256[32];     /* all merges "A B" joined by "\n"; set by _finish() when n > 0 */
        void *ctx;              /* running digest (EVP_MD_CTX) between add and finish */
} mp_tokenizer_merges;

/* Most additional special tokens kept (real tokenizers have a few hundred). */
#define MP_TOKENIZER_MAX_EXTRA_SPECIAL 4096

typedef struct mp_tokenizer {
        mp_tokenizer_kind kind;
        char *source;           /* file the vocabulary came from (label) */
        char *model_name;       /* e.g. GGUF tokenizer.ggml.model, tokenizer_class */
        char **tokens;          /* tokens[id], NUL-terminated UTF-8; NULL for holes */
        size_t n_tokens;        /* vocabulary size = highest id + 1 */
        size_t n_merges;        /* BPE merges, 0 otherwise (= merges.n once parsed) */
        mp_tokenizer_merges merges;     /* BPE merges in file order; empty when the file has none */
        size_t n_added_tokens;  /* added_tokens in tokenizer.json */
        char *pre_tokenizer;    /* e.g. "ByteLevel", "Metaspace", NULL if none */
        char *bos_token, *eos_token, *unk_token, *pad_token;   /* may be NULL */
        char *mask_token, *sep_token, *cls_token;               /* tokenizer_config.json, may be NULL */
        char **extra_special;   /* additional_special_tokens of tokenizer_config.json */
        size_t n_extra_special;
        char *tokenizer_class;  /* tokenizer_config.json "tokenizer_class", NULL if none */
        int byte_fallback;      /* -1 unknown, 0/1 */
        int dummy_prefix;       /* -1 unknown, 0/1: "▁" is put before the text (SentencePiece's
                                 * add_dummy_prefix, a Prepend normalizer, Metaspace) */
} mp_tokenizer;

/* Limits against hostile tokenizer files. */
#define MP_TOKENIZER_MAX_TOKENS   (4u * 1024 * 1024)
#define MP_TOKENIZER_MAX_TOKEN_LEN 4096

const char *mp_tokenizer_kind_name(mp_tokenizer_kind k);

mp_tokenizer *mp_tokenizer_new(mp_tokenizer_kind kind, const char *source);
void mp_tokenizer_free(mp_tokenizer *t);
static inline void mp_tokenizer_freep(mp_tokenizer **t) { mp_tokenizer_free(*t); }

/* Sets tokens[id] = copy of s (length len, may contain no NUL), growing the
 * array as needed.  Rejects id >= MP_TOKENIZER_MAX_TOKENS. */
int mp_tokenizer_set_token(mp_tokenizer *t, size_t id, const char *s, size_t len);

/* Appends one merge A B (the two parts; the merge string is "A B", or just
 * A when b is NULL: a merge string kept as the file had it) to m:
 * counted, hashed, and kept verbatim among the first
 * MP_TOKENIZER_KEPT_MERGES.  Returns 0 or -ENOMEM. */
int mp_tokenizer_merges_add(mp_tokenizer_merges *m, const char *a, size_t alen, const char *b, size_t blen);
/* Completes m->sha256 (only meaningful when m->n > 0).  Returns 0 or -ENOMEM. */
int mp_tokenizer_merges_finish(mp_tokenizer_merges *m);
void mp_tokenizer_merges_clear(mp_tokenizer_merges *m);

/* SHA-256 over the id-ordered vocabulary: for each id, the token bytes and a
 * NUL (a hole contributes just the NUL).  Identical vocabularies with
 * identical ids hash identically whatever file they came from. */
void mp_tokenizer_vocab_digest(const mp_tokenizer *t, uint8_t out[32]);

/* Parsers.  Each takes a NUL-terminated buffer of len bytes and the label for
 * errors, and returns a new tokenizer in *ret. */
int mp_tokenizer_json_parse(const char *label, const char *buf, size_t len,
                            mp_tokenizer **ret, mp_error *err);
int mp_tokenizer_vocab_merges_parse(const char *vocab_label, const char *vocab_buf, size_t vocab_len,
                                    const char *merges_label, const char *merges_buf, size_t merges_len,
                                    mp_tokenizer **ret, mp_error *err);   /* merges may be NULL */
int mp_sentencepiece_parse(const char *label, const uint8_t *buf, size_t len,
                           mp_tokenizer **ret, mp_error *err);

/* Applies tokenizer_config.json (special tokens, tokenizer_class) to t. */
int mp_tokenizer_config_apply(mp_tokenizer *t, const char *label, const char *buf, size_t len,
                              mp_error *err);
