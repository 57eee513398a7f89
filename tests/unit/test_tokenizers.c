/* test_tokenizers.c - the tokenizer readers: tokenizer.json,
 * vocab.json + merges.txt, sentencepiece tokenizer.model and
 * tokenizer_config.json, on the zoo's real files, on files generated here
 * with known content, on malformed input, and on the fuzz regressions. */
#include <dirent.h>
#include <errno.h>
#include <glob.h>
#include <stdbool.h>
#include <stdint.h>

#include "../fuzz/tokenizer_dispatch.h"
#include "formats/tokenizer.h"
#include "test.h"

/* ---- helpers ---------------------------------------------------------- */

static mp_tokenizer *json_ok(const char *s) {
        mp_tokenizer *t = NULL;
        mp_error err = {};
        int r = mp_tokenizer_json_parse("tokenizer.json", s, strlen(s), &t, &err);
        if (r < 0)
                fprintf(stderr, "unexpected failure: %s (offset %lld)\n", err.reason, (long long) err.offset);
        CHECK_EQ(r, 0);
        CHECK(t);
        return t;
}

/* Checks a failure: the code, the file label, the offset and a reason
 * containing want. */
static void check_err(int r, const mp_error *err, int code, const char *file, int64_t offset,
                      const char *want) {
        if (r != code || err->offset != offset || !strstr(err->reason, want))
                fprintf(stderr, "got r=%d offset=%lld reason \"%s\"; want %d, %lld, \"%s\"\n", r,
                        (long long) err->offset, err->reason, code, (long long) offset, want);
        CHECK_EQ(r, code);
        CHECK_EQ(err->code, code);
        CHECK_EQ(err->offset, offset);
        CHECK_STREQ(err->file, file);
        CHECK(err->reason[0]);
        CHECK(strstr(err->reason, want));
}

static void json_fail_n(const char *s, size_t len, int code, int64_t offset, const char *want) {
        mp_tokenizer *t = NULL;
        mp_error err = {};
        int r = mp_tokenizer_json_parse("tokenizer.json", s, len, &t, &err);
        check_err(r, &err, code, "tokenizer.json", offset, want);
        CHECK(!t);
}

static void json_fail(const char *s, int code, int64_t offset, const char *want) {
        json_fail_n(s, strlen(s), code, offset, want);
}

static void vm_fail(const char *vocab, const char *merges, int code, const char *file, int64_t offset,
                    const char *want) {
        mp_tokenizer *t = NULL;
        mp_error err = {};
        int r = mp_tokenizer_vocab_merges_parse("vocab.json", vocab, strlen(vocab), "merges.txt", merges,
                                                merges ? strlen(merges) : 0, &t, &err);
        check_err(r, &err, code, file, offset, want);
        CHECK(!t);
}

static void spm_fail(const void *buf, size_t len, int code, int64_t offset, const char *want) {
        mp_tokenizer *t = NULL;
        mp_error err = {};
        int r = mp_sentencepiece_parse("tokenizer.model", buf, len, &t, &err);
        check_err(r, &err, code, "tokenizer.model", offset, want);
        CHECK(!t);
}

static void digest_hex(const mp_tokenizer *t, char out[65]) {
        uint8_t d[32];
        mp_tokenizer_vocab_digest(t, d);
        for (int i = 0; i < 32; i++)
                sprintf(out + 2 * i, "%02x", d[i]);
}

/* Hand-encoded protobuf, written into a test_buf (test.h). */
static void pb_varint(test_buf *b, uint64_t v) {
        do {
                uint8_t c = (uint8_t) (v & 0x7f);
                v >>= 7;
                if (v)
                        c |= 0x80;
                put(b, &c, 1);
        } while (v);
}

static void pb_tag(test_buf *b, unsigned field, unsigned wt) {
        pb_varint(b, ((uint64_t) field << 3) | wt);
}

static void pb_len_field(test_buf *b, unsigned field, const void *p, size_t n) {
        pb_tag(b, field, 2);
        pb_varint(b, n);
        put(b, p, n);
}

/* A SentencePiece submessage: piece (1), score (2, fixed32 float), type
 * (3) when type > 0, appended to b as field 1 of the ModelProto. */
static void pb_piece(test_buf *b, const char *piece, float score, int type) {
        test_buf sub = {};
        uint32_t bits;

        pb_len_field(&sub, 1, piece, strlen(piece));
        pb_tag(&sub, 2, 5);
        memcpy(&bits, &score, 4);
        uint8_t le[4] = { bits & 0xff, (bits >> 8) & 0xff, (bits >> 16) & 0xff, bits >> 24 };
        put(&sub, le, 4);
        if (type > 0) {
                pb_tag(&sub, 3, 0);
                pb_varint(&sub, (uint64_t) type);
        }
        pb_len_field(b, 1, sub.p, sub.n);
        free(sub.p);
}

/* trainer_spec (2): model_type (3) if >= 0, vocab_size (4) if > 0,
 * byte_fallback (35) if >= 0, plus an unknown string field (1). */
static void pb_trainer(test_buf *b, int model_type, int64_t vocab_size, int byte_fallback) {
        test_buf sub = {};

        pb_len_field(&sub, 1, "corpus.txt", 10);      /* input: unknown to us, skipped */
        if (model_type >= 0) {
                pb_tag(&sub, 3, 0);
                pb_varint(&sub, (uint64_t) model_type);
        }
        if (vocab_size > 0) {
                pb_tag(&sub, 4, 0);
                pb_varint(&sub, (uint64_t) vocab_size);
        }
        if (byte_fallback >= 0) {
                pb_tag(&sub, 35, 0);
                pb_varint(&sub, (uint64_t) byte_fallback);
        }
        pb_len_field(b, 2, sub.p, sub.n);
        free(sub.p);
}

/* ---- zoo ------------------------------------------------------------- */

typedef struct zoo_expect {
        size_t n_tokens, n_merges, n_added;
        bool byte_level;        /* gpt2-style: ByteLevel pre-tokenizer, GPT2 config */
} zoo_expect;

/* Counted with python3 from the zoo files (json.load, len(model.vocab),
 * len(model.merges), len(added_tokens)). */
static zoo_expect zoo_expectation(const char *dir) {
        if (strcmp(dir, "llama/vocab-extended") == 0)
                return (zoo_expect) { 4500, 5796, 3, false };
        if (strcmp(dir, "llama/vocab-rebuilt") == 0 || strcmp(dir, "gpt2/vocab-rebuilt") == 0)
                return (zoo_expect) { 6000, 9012, 3, false };
        if (strncmp(dir, "llama/", 6) == 0 || strcmp(dir, "gpt2/base-sametok") == 0)
                return (zoo_expect) { 4000, 5296, 3, false };
        if (strcmp(dir, "gpt2/vocab-extended") == 0)
                return (zoo_expect) { 3337, 4301, 1, true };
        CHECK(strncmp(dir, "gpt2/", 5) == 0);
        return (zoo_expect) { 2837, 3801, 1, true };
}

static mp_tokenizer *zoo_load(const char *zoo, const char *dir) {
        char path[4096];
        size_t len;
        mp_tokenizer *t = NULL;
        mp_error err = {};

        snprintf(path, sizeof(path), "%s/%s/tokenizer.json", zoo, dir);
        char *buf = test_read(path, &len);
        int r = mp_tokenizer_json_parse(path, buf, len, &t, &err);
        if (r < 0)
                fprintf(stderr, "%s: %s\n", path, err.reason);
        CHECK_EQ(r, 0);
        free(buf);

        snprintf(path, sizeof(path), "%s/%s/tokenizer_config.json", zoo, dir);
        buf = test_read(path, &len);
        r = mp_tokenizer_config_apply(t, path, buf, len, &err);
        CHECK_EQ(r, 0);
        free(buf);
        return t;
}

static void test_zoo_tokenizers(void) {
        const char *zoo = test_zoo();
        if (!zoo) {
                fprintf(stderr, "zoo missing: skipping the zoo tokenizer checks\n");
                return;
        }

        char pattern[4096];
        glob_t g;
        snprintf(pattern, sizeof(pattern), "%s/*/*/tokenizer.json", zoo);
        CHECK_EQ(glob(pattern, 0, NULL, &g), 0);
        CHECK_EQ(g.gl_pathc, 36);      /* 17 llama + 19 gpt2 folders */

        for (size_t i = 0; i < g.gl_pathc; i++) {
                /* "ZOO/FAMILY/NAME/tokenizer.json" -> "FAMILY/NAME" */
                char dir[4096];
                snprintf(dir, sizeof(dir), "%s", g.gl_pathv[i] + strlen(zoo) + 1);
                *strrchr(dir, '/') = 0;

                zoo_expect e = zoo_expectation(dir);
                mp_tokenizer *t = zoo_load(zoo, dir);

                CHECK_EQ(t->kind, MP_TOK_BPE);
                CHECK_STREQ(mp_tokenizer_kind_name(t->kind), "bpe");
                CHECK_EQ(t->n_tokens, e.n_tokens);
                CHECK_EQ(t->n_merges, e.n_merges);
                CHECK_EQ(t->n_added_tokens, e.n_added);
                for (size_t id = 0; id < t->n_tokens; id++)
                        CHECK(t->tokens[id]);   /* no holes in the zoo vocabularies */
                if (e.byte_level) {
                        CHECK_STREQ(t->pre_tokenizer, "ByteLevel");
                        CHECK_EQ(t->byte_fallback, 0);
                        CHECK_STREQ(t->tokens[2836], "<|endoftext|>");   /* also in vocab-extended */
                        CHECK_STREQ(t->bos_token, "<|endoftext|>");
                        CHECK_STREQ(t->eos_token, "<|endoftext|>");
                        CHECK_STREQ(t->model_name, "GPT2TokenizerFast");
                } else {
                        CHECK(!t->pre_tokenizer);
                        CHECK_EQ(t->byte_fallback, 1);
                        CHECK_STREQ(t->tokens[0], "<unk>");
                        CHECK_STREQ(t->tokens[1], "<s>");
                        CHECK_STREQ(t->tokens[2], "</s>");
                        CHECK_STREQ(t->tokens[3], "<0x00>");
                        CHECK_STREQ(t->bos_token, "<s>");
                        CHECK_STREQ(t->eos_token, "</s>");
                        CHECK_STREQ(t->unk_token, "<unk>");
                        CHECK_STREQ(t->pad_token, "</s>");
                        CHECK_STREQ(t->model_name, "LlamaTokenizerFast");
                }
                mp_tokenizer_free(t);
        }
        fprintf(stderr, "   %zu zoo tokenizers checked\n", g.gl_pathc);
        globfree(&g);

        /* Vocabulary digests: same tokenizer, same digest whatever the
         * model; extension changes it.  Exact values from python3
         * (sha256 over token + NUL, id order). */
        char d1[65], d2[65], dx[65], dg[65];
        mp_tokenizer *b1 = zoo_load(zoo, "llama/base-1"), *b2 = zoo_load(zoo, "llama/base-2");
        mp_tokenizer *ext = zoo_load(zoo, "llama/vocab-extended"), *g1 = zoo_load(zoo, "gpt2/base-1");
        digest_hex(b1, d1);
        digest_hex(b2, d2);
        digest_hex(ext, dx);
        digest_hex(g1, dg);
        CHECK_STREQ(d1, d2);
        CHECK(strcmp(d1, dx) != 0);
        CHECK_STREQ(d1, "260d69d5356566f58fd8395de74b5325582040536ed2444b277de5f2303f23b7");
        CHECK_STREQ(dx, "c55d9802fc1a5f844f3139c9c384eeef9264b6321bc3d57c9ed9a1d09bb6ec79");
        CHECK_STREQ(dg, "8f19d205aebc5e899a90585a8218361457840ea0431caa4cba22d52e3cf555c5");
        CHECK_STREQ(b1->tokens[300], "il");
        CHECK_STREQ(b1->tokens[3999], "\xe8\xbe\x9b");          /* 辛 */
        CHECK_STREQ(ext->tokens[4499], "\xe2\x96\x81" "annot");  /* ▁annot */
        CHECK_STREQ(g1->tokens[3], "\xc4\x83");                  /* ă */
        mp_tokenizer_free(b1);
        mp_tokenizer_free(b2);
        mp_tokenizer_free(ext);
        mp_tokenizer_free(g1);
}

/* ---- generated tokenizer.json ---------------------------------------- */

static void test_json_bpe(void) {
        mp_tokenizer *t = json_ok(
                "{\"version\": \"1.0\","
                " \"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": true},"
                "                    {\"id\": 7, \"content\": \"<|im_end|>\", \"special\": true, \"lstrip\": false}],"
                " \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
                "     {\"type\": \"WhitespaceSplit\"}, {\"type\": \"Metaspace\", \"replacement\": \"_\"}]},"
                " \"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"byte_fallback\": true,"
                "   \"vocab\": {\"<unk>\": 0, \"a\": 1, \"b\": 2, \"ab\": 3, \"a b\": 4, \"\\u00e9\": 5},"
                "   \"merges\": [[\"a\", \"b\"], [\"ab\", \"b\"], [\"a b\", \"\\u00e9\"]]}}");

        CHECK_EQ(t->kind, MP_TOK_BPE);
        CHECK_STREQ(t->source, "tokenizer.json");
        CHECK_EQ(t->n_tokens, 8);
        CHECK_EQ(t->n_merges, 3);
        CHECK_EQ(t->n_added_tokens, 2);
        CHECK_STREQ(t->tokens[0], "<unk>");
        CHECK_STREQ(t->tokens[1], "a");
        CHECK_STREQ(t->tokens[2], "b");
        CHECK_STREQ(t->tokens[3], "ab");
        CHECK_STREQ(t->tokens[4], "a b");
        CHECK_STREQ(t->tokens[5], "\xc3\xa9");
        CHECK(!t->tokens[6]);                   /* a hole between vocab and added tokens */
        CHECK_STREQ(t->tokens[7], "<|im_end|>");
        CHECK_STREQ(t->pre_tokenizer, "WhitespaceSplit+Metaspace");
        CHECK_STREQ(t->unk_token, "<unk>");
        CHECK_EQ(t->byte_fallback, 1);
        CHECK(!t->model_name);
        CHECK(!t->bos_token);
        mp_tokenizer_free(t);

        /* String merges; no type but vocab object + merges: BPE.  Missing
         * byte_fallback stays unknown. */
        t = json_ok("{\"pre_tokenizer\": {\"type\": \"ByteLevel\"},"
                    " \"model\": {\"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]}}");
        CHECK_EQ(t->kind, MP_TOK_BPE);
        CHECK_EQ(t->n_tokens, 3);
        CHECK_EQ(t->n_merges, 1);
        CHECK_EQ(t->n_added_tokens, 0);
        CHECK_EQ(t->byte_fallback, -1);
        CHECK_STREQ(t->pre_tokenizer, "ByteLevel");
        CHECK(!t->unk_token);
        mp_tokenizer_free(t);
}

static void test_json_unigram(void) {
        mp_tokenizer *t = json_ok(
                "{\"added_tokens\": [{\"id\": 3, \"content\": \"<mask>\", \"special\": true},"
                "                    {\"id\": 1, \"content\": \"\\u2581a\", \"special\": false}],"
                " \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\\u2581\"},"
                " \"model\": {\"type\": \"Unigram\", \"unk_id\": 0, \"byte_fallback\": false,"
                "   \"vocab\": [[\"<unk>\", 0.0], [\"\\u2581a\", -1.5], [\"b\", -2]]}}");

        CHECK_EQ(t->kind, MP_TOK_UNIGRAM);
        CHECK_STREQ(mp_tokenizer_kind_name(t->kind), "unigram");
        CHECK_EQ(t->n_tokens, 4);
        CHECK_EQ(t->n_merges, 0);
        CHECK_EQ(t->n_added_tokens, 2);
        CHECK_STREQ(t->tokens[0], "<unk>");
        CHECK_STREQ(t->tokens[1], "\xe2\x96\x81" "a");
        CHECK_STREQ(t->tokens[2], "b");
        CHECK_STREQ(t->tokens[3], "<mask>");
        CHECK_STREQ(t->unk_token, "<unk>");
        CHECK_STREQ(t->pre_tokenizer, "Metaspace");
        CHECK_EQ(t->byte_fallback, 0);
        mp_tokenizer_free(t);

        /* Without a type an array vocabulary means Unigram. */
        t = json_ok("{\"model\": {\"vocab\": [[\"x\", -1.0]]}}");
        CHECK_EQ(t->kind, MP_TOK_UNIGRAM);
        CHECK_EQ(t->n_tokens, 1);
        CHECK(!t->unk_token);
        mp_tokenizer_free(t);
}

static void test_json_wordpiece(void) {
        mp_tokenizer *t = json_ok(
                "{\"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"},"
                " \"added_tokens\": null,"
                " \"model\": {\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\","
                "   \"continuing_subword_prefix\": \"##\", \"max_input_chars_per_word\": 100,"
                "   \"vocab\": {\"[PAD]\": 0, \"[UNK]\": 1, \"hello\": 2, \"##lo\": 3}}}");

        CHECK_EQ(t->kind, MP_TOK_WORDPIECE);
        CHECK_STREQ(mp_tokenizer_kind_name(t->kind), "wordpiece");
        CHECK_EQ(t->n_tokens, 4);
        CHECK_STREQ(t->tokens[0], "[PAD]");
        CHECK_STREQ(t->tokens[3], "##lo");
        CHECK_STREQ(t->unk_token, "[UNK]");
        CHECK_STREQ(t->pre_tokenizer, "BertPreTokenizer");
        CHECK_EQ(t->byte_fallback, -1);
        CHECK_EQ(t->n_added_tokens, 0);
        mp_tokenizer_free(t);

        /* Inference: WordPiece fields without a type; plain object: WordLevel. */
        t = json_ok("{\"model\": {\"continuing_subword_prefix\": \"##\", \"vocab\": {\"a\": 0}}}");
        CHECK_EQ(t->kind, MP_TOK_WORDPIECE);
        mp_tokenizer_free(t);
        t = json_ok("{\"model\": {\"vocab\": {\"a\": 1}, \"unk_token\": \"a\"}}");
        CHECK_EQ(t->kind, MP_TOK_WORDLEVEL);
        CHECK_EQ(t->n_tokens, 2);
        CHECK(!t->tokens[0]);
        CHECK_STREQ(t->tokens[1], "a");
        mp_tokenizer_free(t);
        t = json_ok("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"x\": 0, \"y\": 1}}}");
        CHECK_EQ(t->kind, MP_TOK_WORDLEVEL);
        CHECK_STREQ(t->tokens[1], "y");
        mp_tokenizer_free(t);
}

static void test_json_malformed(void) {
        /* Syntax errors: jansson's position (just past the offending token). */
        json_fail("{\"model\": x}", -EBADMSG, 11, "invalid JSON");
        json_fail("{\"model\": {\"type\": \"BPE\"", -EBADMSG, 24, "invalid JSON");
        json_fail("", -EBADMSG, 0, "invalid JSON");
        json_fail("{\"model\": {}, \"model\": {}}", -EBADMSG, 21, "duplicate object key");
        json_fail("{\"model\": {\"vocab\": {\"a\": 99999999999999999999}}}", -EBADMSG, 46, "too big integer");
        json_fail("{\"model\": {\"vocab\": {\"\\u0000\": 0}}}", -EBADMSG, 29, "NUL byte in object key");
        json_fail("{\"a\": \"\xff\"}", -EBADMSG, 7, "invalid JSON");
        json_fail_n("{\"model\"\0: 1}", 13, -EBADMSG, 9, "invalid JSON");

        /* Deep nesting: jansson's own depth limit. */
        size_t deep = 100000;
        char *d = malloc(2 * deep + 1);
        CHECK(d);
        memset(d, '[', deep);
        memset(d + deep, ']', deep);
        d[2 * deep] = 0;
        json_fail(d, -EBADMSG, 2049, "maximum parsing depth");
        free(d);

        /* Too many values: refused before jansson allocates them. */
        size_t n = 9u * 1024 * 1024;
        char *big = malloc(2 * n + 3);
        CHECK(big);
        big[0] = '[';
        for (size_t i = 0; i < n; i++) {
                big[1 + 2 * i] = '0';
                big[2 + 2 * i] = ',';
        }
        big[2 * n] = '0';
        big[2 * n + 1] = ']';
        big[2 * n + 2] = 0;
        json_fail(big, -E2BIG, 16777214, "more than 8388608 JSON values");
        free(big);

        /* Structure. */
        json_fail("[1]", -EBADMSG, -1, "top level is not a JSON object");
        json_fail("{\"version\": \"1.0\"}", -EBADMSG, -1, "model: missing");
        json_fail("{\"model\": []}", -EBADMSG, -1, "model: missing or not an object");
        json_fail("{\"model\": {\"type\": 3, \"vocab\": {}}}", -EBADMSG, -1, "model.type: not a string");
        json_fail("{\"model\": {\"type\": \"Fancy\\n\", \"vocab\": {}}}", -ENOTSUP, -1,
                  "model.type: \"Fancy\\x0a\" is not supported");
        json_fail("{\"model\": {\"merges\": []}}", -EBADMSG, -1, "no \"type\"");
        json_fail("{\"model\": {\"type\": \"BPE\"}}", -EBADMSG, -1, "model.vocab: missing");
        json_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": [[\"a\", 0]]}}", -EBADMSG, -1,
                  "model.vocab: not an object");

        /* Vocabulary ids. */
        json_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"abc\": -1}}}", -EBADMSG, -1,
                  "model.vocab[\"abc\"]: id -1 is negative");
        json_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"abc\": 1.0}}}", -EBADMSG, -1,
                  "model.vocab[\"abc\"]: id is not an integer");
        json_fail("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"abc\": \"1\"}}}", -EBADMSG, -1,
                  "model.vocab[\"abc\"]: id is not an integer");
        json_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}}}", -EBADMSG, -1,
                  "model.vocab[\"b\"]: id 0 of \"b\" is already \"a\"");
        json_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1099511627776}}}", -E2BIG, -1,
                  "model.vocab[\"a\"]: id 1099511627776 exceeds the limit of 4194304 tokens");
        json_fail("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 4194304}}}", -E2BIG, -1,
                  "exceeds the limit");

        /* Token too long (and quoted, cut, in the message). */
        size_t tl = 5000;
        char *longtok = malloc(tl + 100);
        CHECK(longtok);
        strcpy(longtok, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"");
        size_t o = strlen(longtok);
        memset(longtok + o, 'x', tl);
        strcpy(longtok + o + tl, "\": 0}}}");
        json_fail(longtok, -E2BIG, -1, "token is 5000 bytes, more than 4096");
        json_fail(longtok, -E2BIG, -1, "[\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...\"]");
        free(longtok);

        /* Merges. */
        json_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": {}}}", -EBADMSG, -1,
                  "model.merges: not an array");
        json_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a a\", \"aa\"]}}",
                  -EBADMSG, -1, "model.merges[1]: \"aa\" is not two tokens separated by one space");
        json_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a a a\"]}}",
                  -EBADMSG, -1, "model.merges[0]");
        json_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a \"]}}",
                  -EBADMSG, -1, "model.merges[0]");
        json_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [[\"a\"]]}}",
                  -EBADMSG, -1, "model.merges[0]: neither");
        json_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [[\"a\", 1]]}}",
                  -EBADMSG, -1, "model.merges[0]: neither");
        json_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a zz\"]}}",
                  -EBADMSG, -1, "model.merges[0]: \"zz\" is not in model.vocab");

        /* Unigram. */
        json_fail("{\"model\": {\"type\": \"Unigram\", \"vocab\": {\"a\": 0}}}", -EBADMSG, -1,
                  "model.vocab: not an array");
        json_fail("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", 0], [\"b\"]]}}", -EBADMSG, -1,
                  "model.vocab[1]: not a [piece, score] pair");
        json_fail("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[1, 0]]}}", -EBADMSG, -1,
                  "model.vocab[0][0]: piece is not a string");
        json_fail("{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\", \"0\"]]}}", -EBADMSG, -1,
                  "model.vocab[0][1]: score is not a number");
        json_fail("{\"model\": {\"type\": \"Unigram\", \"unk_id\": 5, \"vocab\": [[\"a\", 0]]}}", -EBADMSG,
                  -1, "model.unk_id");

        /* Other model fields. */
        json_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"byte_fallback\": 1}}", -EBADMSG, -1,
                  "model.byte_fallback: not a boolean");
        json_fail("{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"unk_token\": 0}}", -EBADMSG, -1,
                  "model.unk_token: not a string");

        /* Added tokens. */
        json_fail("{\"added_tokens\": {}, \"model\": {\"type\": \"BPE\", \"vocab\": {}}}", -EBADMSG, -1,
                  "added_tokens: not an array");
        json_fail("{\"added_tokens\": [1], \"model\": {\"type\": \"BPE\", \"vocab\": {}}}", -EBADMSG, -1,
                  "added_tokens[0]: not an object");
        json_fail("{\"added_tokens\": [{\"content\": \"x\"}], \"model\": {\"type\": \"BPE\", \"vocab\": {}}}",
                  -EBADMSG, -1, "added_tokens[0].id: missing or not an integer");
        json_fail("{\"added_tokens\": [{\"id\": 0}], \"model\": {\"type\": \"BPE\", \"vocab\": {}}}",
                  -EBADMSG, -1, "added_tokens[0].content: missing or not a string");
        json_fail("{\"added_tokens\": [{\"id\": 0, \"content\": \"x\", \"special\": 1}],"
                  " \"model\": {\"type\": \"BPE\", \"vocab\": {}}}",
                  -EBADMSG, -1, "added_tokens[0].special: not a boolean");
        json_fail("{\"added_tokens\": [{\"id\": 0, \"content\": \"<s>\"}],"
                  " \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}",
                  -EBADMSG, -1, "added_tokens[0]: id 0 of \"<s>\" is already \"a\"");
        json_fail("{\"added_tokens\": [{\"id\": 1099511627776, \"content\": \"x\"}],"
                  " \"model\": {\"type\": \"BPE\", \"vocab\": {}}}",
                  -E2BIG, -1, "added_tokens[0]: id 1099511627776 exceeds");
        json_fail("{\"added_tokens\": [{\"id\": -3, \"content\": \"x\"}],"
                  " \"model\": {\"type\": \"BPE\", \"vocab\": {}}}",
                  -EBADMSG, -1, "added_tokens[0]: id -3 is negative");

        /* Pre-tokenizer. */
        json_fail("{\"pre_tokenizer\": 5, \"model\": {\"type\": \"BPE\", \"vocab\": {}}}", -EBADMSG, -1,
                  "pre_tokenizer: not an object");
        json_fail("{\"pre_tokenizer\": {}, \"model\": {\"type\": \"BPE\", \"vocab\": {}}}", -EBADMSG, -1,
                  "pre_tokenizer.type: missing or not a string");
        json_fail("{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": 1},"
                  " \"model\": {\"type\": \"BPE\", \"vocab\": {}}}",
                  -EBADMSG, -1, "pre_tokenizer.pretokenizers: not an array");
        json_fail("{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"A\"}, {}]},"
                  " \"model\": {\"type\": \"BPE\", \"vocab\": {}}}",
                  -EBADMSG, -1, "pre_tokenizer.pretokenizers[1].type");

        /* Many members whose joined description is too long. */
        char *seq = malloc(64 * 1024);
        CHECK(seq);
        strcpy(seq, "{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [");
        for (int i = 0; i < 200; i++)
                strcat(seq, i ? ", {\"type\": \"WhitespaceSplit\"}" : "{\"type\": \"WhitespaceSplit\"}");
        strcat(seq, "]}, \"model\": {\"type\": \"BPE\", \"vocab\": {}}}");
        json_fail(seq, -E2BIG, -1, "longer than 1024 bytes");
        free(seq);
}

/* ---- tokenizer_config.json ------------------------------------------- */

static void config_ok(mp_tokenizer *t, const char *s) {
        mp_error err = {};
        CHECK_EQ(mp_tokenizer_config_apply(t, "tokenizer_config.json", s, strlen(s), &err), 0);
}

static void test_config(void) {
        mp_tokenizer *t = mp_tokenizer_new(MP_TOK_UNKNOWN, NULL);
        CHECK(t);

        config_ok(t, "{\"bos_token\": {\"__type\": \"AddedToken\", \"content\": \"<s>\", \"lstrip\": false},"
                     " \"eos_token\": \"</s>\", \"unk_token\": null, \"pad_token\": 7,"
                     " \"tokenizer_class\": \"LlamaTokenizer\", \"added_tokens_decoder\": {\"0\": {}}}");
        CHECK_STREQ(t->bos_token, "<s>");
        CHECK_STREQ(t->eos_token, "</s>");
        CHECK(!t->unk_token);
        CHECK(!t->pad_token);
        CHECK_STREQ(t->model_name, "LlamaTokenizer");

        /* Later configs override tokens; the class never replaces a name. */
        config_ok(t, "{\"eos_token\": {\"content\": \"<eos>\"}, \"pad_token\": {\"content\": 3},"
                     " \"unk_token\": \"<unk>\", \"tokenizer_class\": \"Other\"}");
        CHECK_STREQ(t->bos_token, "<s>");
        CHECK_STREQ(t->eos_token, "<eos>");
        CHECK_STREQ(t->unk_token, "<unk>");
        CHECK(!t->pad_token);
        CHECK_STREQ(t->model_name, "LlamaTokenizer");

        /* Wrong shapes are ignored, broken JSON is not. */
        config_ok(t, "[1, 2]");
        config_ok(t, "{\"bos_token\": [\"x\"], \"tokenizer_class\": {}}");
        CHECK_STREQ(t->bos_token, "<s>");

        mp_error err = {};
        const char *bad = "{\"bos_token\": \"<s>\",}";
        int r = mp_tokenizer_config_apply(t, "tokenizer_config.json", bad, strlen(bad), &err);
        check_err(r, &err, -EBADMSG, "tokenizer_config.json", 21, "invalid JSON");
        CHECK_STREQ(t->bos_token, "<s>");
        mp_tokenizer_free(t);
}

/* ---- vocab.json + merges.txt ----------------------------------------- */

static void test_vocab_merges(void) {
        const char *vocab = "{\"a\": 0, \"b\": 1, \"ab\": 2, \"#\": 3, \"##\": 4, \"\\u0120the\": 6}";
        const char *merges = "#version: 0.2\na b\r\n\n# #\n#version again\nab b";
        mp_tokenizer *t = NULL;
        mp_error err = {};

        CHECK_EQ(mp_tokenizer_vocab_merges_parse("vocab.json", vocab, strlen(vocab), "merges.txt", merges,
                                                 strlen(merges), &t, &err), 0);
        CHECK_EQ(t->kind, MP_TOK_BPE);
        CHECK_STREQ(t->source, "vocab.json");
        CHECK_EQ(t->n_tokens, 7);
        CHECK_EQ(t->n_merges, 3);
        CHECK_STREQ(t->tokens[0], "a");
        CHECK_STREQ(t->tokens[2], "ab");
        CHECK_STREQ(t->tokens[4], "##");
        CHECK(!t->tokens[5]);
        CHECK_STREQ(t->tokens[6], "\xc4\xa0the");
        CHECK(!t->pre_tokenizer);
        mp_tokenizer_free(t);

        /* Without merges.txt. */
        t = NULL;
        CHECK_EQ(mp_tokenizer_vocab_merges_parse("vocab.json", vocab, strlen(vocab), "merges.txt", NULL, 0,
                                                 &t, &err), 0);
        CHECK_EQ(t->n_tokens, 7);
        CHECK_EQ(t->n_merges, 0);
        mp_tokenizer_free(t);

        /* Malformed merges: offset of the line (or of the bad token). */
        vm_fail(vocab, "a b\nabc\n", -EBADMSG, "merges.txt", 4, "line 2: \"abc\" is not two tokens");
        vm_fail(vocab, "#version: 0.2\na b c\n", -EBADMSG, "merges.txt", 14, "line 2");
        vm_fail(vocab, "a b\n\n b\n", -EBADMSG, "merges.txt", 5, "line 3");
        vm_fail(vocab, "a  b\n", -EBADMSG, "merges.txt", 0, "line 1");
        vm_fail(vocab, "a b\r\na zz\n", -EBADMSG, "merges.txt", 7, "line 2: \"zz\" is not in the vocabulary");
        vm_fail(vocab, "q b\n", -EBADMSG, "merges.txt", 0, "\"q\" is not in the vocabulary");
        vm_fail(vocab, "a\tb\n", -EBADMSG, "merges.txt", 0, "\"a\\x09b\"");

        /* Malformed vocab.json. */
        vm_fail("{\"a\": 0", "a a\n", -EBADMSG, "vocab.json", 7, "invalid JSON");
        vm_fail("[\"a\"]", NULL, -EBADMSG, "vocab.json", -1, "top level: not an object");
        vm_fail("{\"a\": -1}", NULL, -EBADMSG, "vocab.json", -1, "[\"a\"]: id -1 is negative");
        vm_fail("{\"a\": 0, \"b\": 0}", NULL, -EBADMSG, "vocab.json", -1, "is already \"a\"");
        vm_fail("{\"a\": 1099511627776}", NULL, -E2BIG, "vocab.json", -1, "exceeds the limit");
        vm_fail("{\"a\": null}", NULL, -EBADMSG, "vocab.json", -1, "id is not an integer");
}

/* ---- sentencepiece ---------------------------------------------------- */

static void test_sentencepiece(void) {
        test_buf b = {};
        mp_tokenizer *t = NULL;
        mp_error err = {};

        pb_piece(&b, "<unk>", 0, 2);
        pb_piece(&b, "<s>", 0, 3);
        pb_piece(&b, "</s>", 0, 3);
        pb_piece(&b, "\xe2\x96\x81the", -1.5f, 0);
        pb_piece(&b, "<0x41>", 0, 6);
        pb_trainer(&b, 2, 10000000, 1);         /* BPE; a declared vocab_size is not trusted */
        pb_len_field(&b, 3, "\x0a\x03nmt", 5);           /* normalizer_spec.name */
        pb_len_field(&b, 4, "self-test", 9);            /* unknown field: skipped */

        CHECK_EQ(mp_sentencepiece_parse("tokenizer.model", b.p, b.n, &t, &err), 0);
        CHECK_EQ(t->kind, MP_TOK_SPM_BPE);
        CHECK_STREQ(mp_tokenizer_kind_name(t->kind), "sentencepiece-bpe");
        CHECK_STREQ(t->source, "tokenizer.model");
        CHECK_EQ(t->n_tokens, 5);
        CHECK_STREQ(t->tokens[0], "<unk>");
        CHECK_STREQ(t->tokens[1], "<s>");
        CHECK_STREQ(t->tokens[2], "</s>");
        CHECK_STREQ(t->tokens[3], "\xe2\x96\x81the");
        CHECK_STREQ(t->tokens[4], "<0x41>");
        CHECK_STREQ(t->unk_token, "<unk>");
        CHECK_EQ(t->byte_fallback, 1);
        CHECK_EQ(t->n_merges, 0);
        mp_tokenizer_free(t);
        free(b.p);

        /* No trainer_spec: unigram (the proto default), no byte fallback. */
        b = (test_buf) {};
        pb_piece(&b, "a", -1, 1);
        pb_piece(&b, "b", -2, 0);
        t = NULL;
        CHECK_EQ(mp_sentencepiece_parse("tokenizer.model", b.p, b.n, &t, &err), 0);
        CHECK_EQ(t->kind, MP_TOK_SPM_UNIGRAM);
        CHECK_EQ(t->n_tokens, 2);
        CHECK_STREQ(t->tokens[1], "b");
        CHECK(!t->unk_token);
        CHECK_EQ(t->byte_fallback, 0);
        mp_tokenizer_free(t);

        /* Explicit model types. */
        static const struct {
                int type;
                mp_tokenizer_kind kind;
        } types[] = {
                { -1, MP_TOK_SPM_UNIGRAM },     /* trainer_spec without model_type */
                { 1, MP_TOK_SPM_UNIGRAM },
                { 2, MP_TOK_SPM_BPE },
                { 3, MP_TOK_SPM_OTHER },
                { 4, MP_TOK_SPM_OTHER },
                { 99, MP_TOK_SPM_OTHER },
        };
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
                test_buf c = {};
                put(&c, b.p, b.n);
                pb_trainer(&c, types[i].type, 0, 0);
                t = NULL;
                CHECK_EQ(mp_sentencepiece_parse("tokenizer.model", c.p, c.n, &t, &err), 0);
                CHECK_EQ(t->kind, types[i].kind);
                CHECK_EQ(t->byte_fallback, 0);
                mp_tokenizer_free(t);
                free(c.p);
        }

        /* Truncated inside the second piece: its tag at offset 12 (after
         * the 2 + 10 bytes of the first) declares more than is left. */
        spm_fail(b.p, b.n - 1, -EBADMSG, 12, "truncated: field 1 needs 8 bytes, 7 left");
        free(b.p);
}

static void test_sentencepiece_malformed(void) {
        spm_fail("", 0, -EBADMSG, -1, "not a sentencepiece model");
        spm_fail("\x0a", 1, -EBADMSG, 1, "truncated length");
        spm_fail("\x0a\x80", 2, -EBADMSG, 1, "truncated length");
        spm_fail("\x0a\x05\x0a\x01" "a", 5, -EBADMSG, 0, "truncated: field 1 needs 5 bytes, 3 left");
        spm_fail("\x08\x01", 2, -EBADMSG, 0, "ModelProto.pieces (field 1): wire type 0, expected 2");
        spm_fail("\x0b", 1, -EBADMSG, 0, "unsupported wire type 3");
        spm_fail("\x00\x00", 2, -EBADMSG, 0, "invalid field tag");
        spm_fail("\xff\xff\xff\xff\xff\x01", 6, -EBADMSG, 0, "field tag is longer than 5 bytes");
        spm_fail("\x20\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12, -EBADMSG, 1,
                 "varint is longer than 10 bytes");
        spm_fail("hello world", 11, -EBADMSG, 2, "unsupported wire type 4");
        /* pieces[0].score as a varint: tag at offset 5. */
        spm_fail("\x0a\x05\x0a\x01" "a\x10\x01", 7, -EBADMSG, 5,
                 "pieces[0].score (field 2): wire type 0, expected 5");
        spm_fail("\x0a\x03\x0a\x01" "a\x12\x02\x1a\x00", 9, -EBADMSG, 7,
                 "trainer_spec.model_type (field 3): wire type 2, expected 0");
        spm_fail("\x0a\x03\x0a\x01" "a\x1a\x02\x08\x00", 9, -EBADMSG, 7,
                 "normalizer_spec.name (field 1): wire type 0, expected 2");
        spm_fail("\x0a\x03\x0a\x01" "a\x12\x01\x18", 8, -EBADMSG, 8, "truncated varint");

        /* Piece strings. */
        spm_fail("\x0a\x02\x0a\x00", 4, -EBADMSG, 2, "pieces[0]: empty piece");
        spm_fail("\x0a\x03\x0a\x01" "a\x0a\x02\x18\x01", 9, -EBADMSG, 5, "pieces[1]: no piece string");
        spm_fail("\x0a\x05\x0a\x03" "a\0b", 7, -EBADMSG, 5, "pieces[0]: piece contains a NUL byte");
        spm_fail("\x0a\x04\x0a\x02\xc3\x28", 6, -EBADMSG, 4, "pieces[0]: piece is not valid UTF-8");
        spm_fail("\x0a\x04\x0a\x02\xc0\x80", 6, -EBADMSG, 4, "not valid UTF-8");          /* overlong */
        spm_fail("\x0a\x05\x0a\x03\xed\xa0\x80", 7, -EBADMSG, 4, "not valid UTF-8");      /* surrogate */
        spm_fail("\x0a\x05\x0a\x03" "ab\xe2", 7, -EBADMSG, 6, "not valid UTF-8");         /* cut */

        test_buf b = {};
        char *longp = malloc(5001);
        CHECK(longp);
        memset(longp, 'p', 5000);
        longp[5000] = 0;
        pb_piece(&b, "ok", 0, 0);
        pb_piece(&b, longp, 0, 0);
        /* pieces[1] starts at 11 (first piece: 2 + 9 bytes); its piece
         * string tag after the 3-byte header. */
        spm_fail(b.p, b.n, -E2BIG, 14, "pieces[1]: piece is 5000 bytes, more than 4096");
        free(longp);
        free(b.p);

        /* 10 million pieces of 5 bytes: refused at the first piece past
         * the limit, before protobuf-c allocates anything. */
        size_t n = 10u * 1000 * 1000;
        uint8_t *many = malloc(n * 5);
        CHECK(many);
        for (size_t i = 0; i < n; i++)
                memcpy(many + 5 * i, "\x0a\x03\x0a\x01" "a", 5);
        spm_fail(many, n * 5, -E2BIG, 1048576 * 5, "more than 1048576 pieces");
        free(many);

        /* Field counts protobuf-c would allocate for: a piece repeating its
         * type field, and a flood of unknown top-level fields. */
        b = (test_buf) {};
        test_buf sub = {};
        pb_len_field(&sub, 1, "a", 1);
        for (int i = 0; i < 8; i++)
                put(&sub, "\x18\x01", 2);
        pb_len_field(&b, 1, sub.p, sub.n);
        spm_fail(b.p, b.n, -E2BIG, 2 + 3 + 7 * 2, "pieces[0]: more than 8 fields");
        free(sub.p);
        free(b.p);

        b = (test_buf) {};
        put(&b, "\x0a\x03\x0a\x01" "a", 5);
        for (int i = 0; i < 5000; i++)
                put(&b, "\x20\x00", 2);
        spm_fail(b.p, b.n, -E2BIG, 5 + 4096 * 2, "more than 4096 fields besides the pieces");
        free(b.p);

        /* ... also when hidden inside trainer_spec. */
        b = (test_buf) {};
        sub = (test_buf) {};
        for (int i = 0; i < 5000; i++)
                put(&sub, "\x30\x07", 2);        /* field 6, unknown */
        put(&b, "\x0a\x03\x0a\x01" "a", 5);
        pb_len_field(&b, 2, sub.p, sub.n);        /* tag + 2-byte length */
        spm_fail(b.p, b.n, -E2BIG, 5 + 3 + 4095 * 2, "more than 4096 fields besides the pieces");
        free(sub.p);
        free(b.p);

        /* Bigger than the input limit: refused before looking. */
        size_t huge = 64u * 1024 * 1024 + 1;
        uint8_t *h = calloc(1, huge);
        CHECK(h);
        spm_fail(h, huge, -E2BIG, -1, "more than the 64 MiB limit");
        free(h);
}

/* ---- fuzz regressions ------------------------------------------------- */

/* The same dispatch as tests/fuzz/fuzz_tokenizer.c: the first byte picks
 * the parser, the rest is its input (tokenizer_dispatch.h). */
static void fuzz_one(const uint8_t *data, size_t size) {
        if (size == 0)
                return;
        unsigned sel = data[0] % 4;
        data++, size--;

        char *buf = malloc(size + 1);
        CHECK(buf);
        memcpy(buf, data, size);
        buf[size] = 0;

        mp_tokenizer *t = NULL;
        mp_error err = {};
        /* tokenizer_dispatch() fails with -ENOMEM, err unset, when it
         * cannot make the tokenizer for 3: the err.code check catches that. */
        int r = tokenizer_dispatch(sel, buf, size, &t, &err);
        if (r < 0) {
                CHECK(err.code == r);
                CHECK(err.reason[0]);
                CHECK(sel == 3 || !t);
        } else
                CHECK(t);
        mp_tokenizer_free(t);
        free(buf);
}

static void test_fuzz_regressions(void) {
        const char *root = getenv("MODELPROV_SOURCE_ROOT");
        char path[4096];

        if (!root) {
                fprintf(stderr, "MODELPROV_SOURCE_ROOT unset: skipping fuzz regressions\n");
                return;
        }
        snprintf(path, sizeof(path), "%s/tests/fuzz/regressions/tokenizer", root);
        DIR *d = opendir(path);
        CHECK(d);

        size_t n = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                char file[8192];
                size_t len;

                if (de->d_name[0] == '.')
                        continue;
                snprintf(file, sizeof(file), "%s/%s", path, de->d_name);
                char *buf = test_read(file, &len);
                fuzz_one((const uint8_t *) buf, len);
                free(buf);
                n++;
        }
        closedir(d);
        fprintf(stderr, "   %zu regression inputs replayed\n", n);
        CHECK(n > 0);
}

int main(void) {
        RUN(test_zoo_tokenizers);
        RUN(test_json_bpe);
        RUN(test_json_unigram);
        RUN(test_json_wordpiece);
        RUN(test_json_malformed);
        RUN(test_config);
        RUN(test_vocab_merges);
        RUN(test_sentencepiece);
        RUN(test_sentencepiece_malformed);
        RUN(test_fuzz_regressions);
        return 0;
}
