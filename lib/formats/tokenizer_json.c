/* tokenizer_json.c - reads Hugging Face tokenizer.json (BPE, WordPiece,
 * WordLevel, Unigram models, added tokens, pre-tokenizer) and applies
 * tokenizer_config.json (special tokens, tokenizer class) to a tokenizer.
 *
 * It also holds the JSON helpers shared with vocab_merges.c (loading with
 * limits, the token→id vocabulary object, quoting file content for error
 * messages). */
#include "formats/tokenizer_internal.h"
#include "formats/tokenizer.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "util/macro.h"

#define QUOTE_SIZE MP_TOKENIZER_QUOTE_SIZE

/* jansson needs ~40 (integers) to ~90 (short strings) bytes per JSON
 * value, so the number of values bounds the memory a hostile file can make
 * us allocate (at this limit at most ~750 MiB, against ~6 GiB for 256 MiB of
 * "1,1,1...").  Real tokenizer.json files stay well below: a 256k-piece
 * Unigram vocabulary is ~800k values, a 128k BPE vocabulary with 280k merges
 * written as [A, B] pairs ~1M. */
#define JSON_MAX_VALUES (8u * 1024 * 1024)

/* A joined pre-tokenizer description longer than this is not a real one. */
#define PRE_TOKENIZER_MAX_LEN 1024

/* Renders file content for an error message: printable ASCII as is,
 * everything else (controls, bytes >= 0x80, quote, backslash) escaped, cut
 * to 40 bytes.  Messages end up on terminals and in logs, so raw bytes from
 * a hostile file must never reach them. */
const char *mp_tokenizer_quote(char *buf, size_t size, const char *s, size_t len) {
        static const char hex[] = "0123456789abcdef";
        size_t o = 0;

        assert(buf);
        assert(size >= QUOTE_SIZE);
        assert(s || len == 0);

        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char) s[i];

                if (i >= 40) {
                        memcpy(buf + o, "...", 3);
                        o += 3;
                        break;
                }
                if (c == '"' || c == '\\') {
                        buf[o++] = '\\';
                        buf[o++] = (char) c;
                } else if (c >= 0x20 && c < 0x7f)
                        buf[o++] = (char) c;
                else {
                        buf[o++] = '\\';
                        buf[o++] = 'x';
                        buf[o++] = hex[c >> 4];
                        buf[o++] = hex[c & 15];
                }
        }
        buf[o] = 0;
        return buf;
}

/* Counts the values the text would create, without parsing it: every
 * container and every element after a comma.  Strings are skipped so that
 * commas inside them do not count. */
static int json_check_values(const char *label, const char *buf, size_t len, mp_error *err) {
        size_t values = 1;
        bool in_string = false;

        for (size_t i = 0; i < len; i++) {
                char c = buf[i];

                if (in_string) {
                        if (c == '\\')
                                i++;
                        else if (c == '"')
                                in_string = false;
                        continue;
                }
                if (c == '"')
                        in_string = true;
                else if ((c == ',' || c == '[' || c == '{') && ++values > JSON_MAX_VALUES)
                        return mp_error_set(err, -E2BIG, label, (int64_t) i,
                                            "more than %u JSON values", JSON_MAX_VALUES);
        }
        return 0;
}

int mp_tokenizer_json_load(const char *label, const char *buf, size_t len, json_t **ret,
                           mp_error *err) {
        assert(buf || len == 0);
        assert(ret);

        int r = json_check_values(label, buf, len, err);
        if (r < 0)
                return r;

        /* Duplicate keys would make "which id does this token have" depend
         * on the parser; refuse them. */
        json_error_t jerr;
        json_t *j = json_loadb(buf ? buf : "", len, JSON_REJECT_DUPLICATES, &jerr);
        if (!j) {
                char q[MP_ERROR_REASON_MAX];
                size_t n = strnlen(jerr.text, sizeof(jerr.text));

                /* jansson's text quotes the offending input: escape it, and
                 * allow it more room than a token. */
                size_t o = 0;
                for (size_t i = 0; i < n && o + 5 < sizeof(q); i++) {
                        unsigned char c = (unsigned char) jerr.text[i];
                        if (c >= 0x20 && c < 0x7f)
                                q[o++] = (char) c;
                        else
                                o += (size_t) snprintf(q + o, sizeof(q) - o, "\\x%02x", c);
                }
                q[o] = 0;
                return mp_error_set(err, -EBADMSG, label, jerr.position, "invalid JSON: %s", q);
        }
        *ret = j;
        return 0;
}

/* Names a vocabulary entry in messages: path["key"] or path[index].  Only
 * formatted when something is reported, so that large vocabularies are not
 * quoted entry by entry. */
typedef struct entry_name {
        const char *path;
        const char *key;        /* NULL: use index */
        size_t index;
} entry_name;

#define ENTRY_NAME_SIZE (QUOTE_SIZE + 64)

static const char *entry_name_format(const entry_name *n, char buf[static ENTRY_NAME_SIZE]) {
        char q[QUOTE_SIZE];

        if (n->key)
                snprintf(buf, ENTRY_NAME_SIZE, "%s[\"%s\"]", n->path,
                         mp_tokenizer_quote(q, sizeof(q), n->key, strlen(n->key)));
        else
                snprintf(buf, ENTRY_NAME_SIZE, "%s[%zu]", n->path, n->index);
        return buf;
}

/* Stores tokens[id] = s, refusing to silently replace a different token:
 * two strings claiming one id means the file is inconsistent.  The same
 * string again is fine (added_tokens re-declare vocabulary entries). */
static int put_token(mp_tokenizer *t, const char *label, const entry_name *name, json_int_t id,
                     const char *s, size_t len, mp_error *err) {
        char w[ENTRY_NAME_SIZE], q[QUOTE_SIZE], q2[QUOTE_SIZE];

        if (id < 0)
                return mp_error_set(err, -EBADMSG, label, -1, "%s: id %lld is negative",
                                    entry_name_format(name, w), (long long) id);
        if ((unsigned long long) id >= MP_TOKENIZER_MAX_TOKENS)
                return mp_error_set(err, -E2BIG, label, -1, "%s: id %lld exceeds the limit of %u tokens",
                                    entry_name_format(name, w), (long long) id, MP_TOKENIZER_MAX_TOKENS);
        if (len > MP_TOKENIZER_MAX_TOKEN_LEN)
                return mp_error_set(err, -E2BIG, label, -1, "%s: token is %zu bytes, more than %d",
                                    entry_name_format(name, w), len, MP_TOKENIZER_MAX_TOKEN_LEN);

        size_t i = (size_t) id;
        if (i < t->n_tokens && t->tokens[i]) {
                if (strlen(t->tokens[i]) == len && memcmp(t->tokens[i], s, len) == 0)
                        return 0;
                return mp_error_set(err, -EBADMSG, label, -1, "%s: id %zu of \"%s\" is already \"%s\"",
                                    entry_name_format(name, w), i, mp_tokenizer_quote(q, sizeof(q), s, len),
                                    mp_tokenizer_quote(q2, sizeof(q2), t->tokens[i],
                                                       strlen(t->tokens[i])));
        }

        int r = mp_tokenizer_set_token(t, i, s, len);
        if (r < 0)
                return mp_error_set(err, r, label, -1, "%s: cannot store token: %s",
                                    entry_name_format(name, w), strerror(-r));
        return 0;
}

/* A {token: id} object: tokenizer.json model.vocab of BPE/WordPiece/
 * WordLevel, and vocab.json.  path names the object in messages. */
int mp_tokenizer_vocab_object_apply(mp_tokenizer *t, const char *label, const char *path,
                                    json_t *vocab, mp_error *err) {
        const char *key;
        json_t *value;

        assert(t);
        assert(path);

        if (!json_is_object(vocab))
                return mp_error_set(err, -EBADMSG, label, -1, "%s: not an object",
                                    path[0] ? path : "top level");

        json_object_foreach(vocab, key, value) {
                entry_name name = { .path = path, .key = key };
                char w[ENTRY_NAME_SIZE];

                if (!json_is_integer(value))
                        return mp_error_set(err, -EBADMSG, label, -1, "%s: id is not an integer",
                                            entry_name_format(&name, w));

                /* jansson refuses NUL in keys: strlen() is the length. */
                int r = put_token(t, label, &name, json_integer_value(value), key, strlen(key), err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* model.vocab of a Unigram model: [[piece, score], ...], id = index. */
static int unigram_vocab_apply(mp_tokenizer *t, const char *label, json_t *vocab, mp_error *err) {
        size_t i;
        json_t *entry;

        if (!json_is_array(vocab))
                return mp_error_set(err, -EBADMSG, label, -1, "model.vocab: not an array (Unigram)");
        if (json_array_size(vocab) > MP_TOKENIZER_MAX_TOKENS)
                return mp_error_set(err, -E2BIG, label, -1, "model.vocab: %zu pieces, more than %u",
                                    json_array_size(vocab), MP_TOKENIZER_MAX_TOKENS);

        json_array_foreach(vocab, i, entry) {
                entry_name name = { .path = "model.vocab", .index = i };

                if (!json_is_array(entry) || json_array_size(entry) != 2)
                        return mp_error_set(err, -EBADMSG, label, -1,
                                            "model.vocab[%zu]: not a [piece, score] pair", i);

                json_t *piece = json_array_get(entry, 0), *score = json_array_get(entry, 1);
                if (!json_is_string(piece))
                        return mp_error_set(err, -EBADMSG, label, -1,
                                            "model.vocab[%zu][0]: piece is not a string", i);
                if (!json_is_number(score))
                        return mp_error_set(err, -EBADMSG, label, -1,
                                            "model.vocab[%zu][1]: score is not a number", i);

                int r = put_token(t, label, &name, (json_int_t) i, json_string_value(piece),
                                  json_string_length(piece), err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Splits a merge "A B" at its only space; false unless A and B are
 * non-empty and there is exactly one space. */
static bool merge_split(const char *s, size_t len, size_t *ret_alen) {
        const char *sp = memchr(s, ' ', len);

        if (!sp || sp == s || sp + 1 == s + len || memchr(sp + 1, ' ', len - (size_t) (sp - s) - 1))
                return false;
        *ret_alen = (size_t) (sp - s);
        return true;
}

/* Checks one merge "A B" / [A, B]: both parts must be vocabulary tokens, as
 * the HF loader requires.  Returns the parts in part/len. */
static int merge_check(const char *label, json_t *vocab, size_t i, json_t *m, const char *part[2],
                       size_t len[2], mp_error *err) {
        char q[QUOTE_SIZE];

        if (json_is_string(m)) {
                const char *s = json_string_value(m);
                size_t n = json_string_length(m);

                if (!merge_split(s, n, &len[0]))
                        return mp_error_set(err, -EBADMSG, label, -1,
                                            "model.merges[%zu]: \"%s\" is not two tokens separated by one space",
                                            i, mp_tokenizer_quote(q, sizeof(q), s, n));
                part[0] = s;
                part[1] = s + len[0] + 1;
                len[1] = n - len[0] - 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
                for (size_t k = 0; k < 2; k++) {
                        part[k] = json_string_value(json_array_get(m, k));
                        len[k] = json_string_length(json_array_get(m, k));
                }
        } else
                return mp_error_set(err, -EBADMSG, label, -1,
                                    "model.merges[%zu]: neither a \"A B\" string nor an [A, B] pair", i);

        for (size_t k = 0; k < 2; k++)
                if (!json_object_getn(vocab, part[k], len[k]))
                        return mp_error_set(err, -EBADMSG, label, -1,
                                            "model.merges[%zu]: \"%s\" is not in model.vocab", i,
                                            mp_tokenizer_quote(q, sizeof(q), part[k], len[k]));
        return 0;
}

static int bpe_merges_apply(mp_tokenizer *t, const char *label, json_t *vocab, json_t *merges,
                            mp_error *err) {
        size_t i;
        json_t *m;

        if (!merges || json_is_null(merges))
                return 0;
        if (!json_is_array(merges))
                return mp_error_set(err, -EBADMSG, label, -1, "model.merges: not an array");

        json_array_foreach(merges, i, m) {
                const char *part[2];
                size_t len[2];

                int r = merge_check(label, vocab, i, m, part, len, err);
                if (r < 0)
                        return r;
                r = mp_tokenizer_merges_add(&t->merges, part[0], len[0], part[1], len[1]);
                if (r < 0)
                        return mp_error_set(err, r, label, -1, "out of memory");
        }
        if (mp_tokenizer_merges_finish(&t->merges) < 0)
                return mp_error_set(err, -ENOMEM, label, -1, "out of memory");
        t->n_merges = t->merges.n;
        return 0;
}

/* model.type, or for old files without it the kind the shape implies (the
 * HF loader tries the model types in turn). */
static int model_kind(const char *label, json_t *model, mp_tokenizer_kind *ret, mp_error *err) {
        static const struct {
                const char *name;
                mp_tokenizer_kind kind;
        } types[] = {
                { "BPE",       MP_TOK_BPE },
                { "WordPiece", MP_TOK_WORDPIECE },
                { "WordLevel", MP_TOK_WORDLEVEL },
                { "Unigram",   MP_TOK_UNIGRAM },
        };
        json_t *type = json_object_get(model, "type"), *vocab = json_object_get(model, "vocab");
        char q[QUOTE_SIZE];

        if (type) {
                if (!json_is_string(type))
                        return mp_error_set(err, -EBADMSG, label, -1, "model.type: not a string");
                for (size_t i = 0; i < ELEMENTSOF(types); i++)
                        if (strcmp(json_string_value(type), types[i].name) == 0) {
                                *ret = types[i].kind;
                                return 0;
                        }
                return mp_error_set(err, -ENOTSUP, label, -1, "model.type: \"%s\" is not supported",
                                    mp_tokenizer_quote(q, sizeof(q), json_string_value(type),
                                                       json_string_length(type)));
        }

        if (json_is_array(vocab))
                *ret = MP_TOK_UNIGRAM;
        else if (json_is_object(vocab) && json_object_get(model, "merges"))
                *ret = MP_TOK_BPE;
        else if (json_is_object(vocab) && (json_object_get(model, "continuing_subword_prefix") ||
                                           json_object_get(model, "max_input_chars_per_word")))
                *ret = MP_TOK_WORDPIECE;
        else if (json_is_object(vocab))
                *ret = MP_TOK_WORDLEVEL;
        else
                return mp_error_set(err, -EBADMSG, label, -1,
                                    "model: no \"type\" and no vocabulary to infer it from");
        return 0;
}

static int set_string(char **field, const char *s) {
        char *copy = strdup(s);
        if (!copy)
                return -ENOMEM;
        free(*field);
        *field = copy;
        return 0;
}

/* model.unk_token (BPE/WordPiece/WordLevel) or model.unk_id (Unigram). */
static int model_unk_apply(mp_tokenizer *t, const char *label, json_t *model, mp_error *err) {
        json_t *unk;

        if (t->kind == MP_TOK_UNIGRAM) {
                unk = json_object_get(model, "unk_id");
                if (!unk || json_is_null(unk))
                        return 0;
                json_int_t id = json_is_integer(unk) ? json_integer_value(unk) : -1;
                if (id < 0 || (unsigned long long) id >= t->n_tokens || !t->tokens[id])
                        return mp_error_set(err, -EBADMSG, label, -1, "model.unk_id: not the id of a piece");
                return set_string(&t->unk_token, t->tokens[id]);
        }

        unk = json_object_get(model, "unk_token");
        if (!unk || json_is_null(unk))
                return 0;
        if (!json_is_string(unk))
                return mp_error_set(err, -EBADMSG, label, -1, "model.unk_token: not a string");
        if (json_string_length(unk) > MP_TOKENIZER_MAX_TOKEN_LEN)
                return mp_error_set(err, -E2BIG, label, -1, "model.unk_token: longer than %d bytes",
                                    MP_TOKENIZER_MAX_TOKEN_LEN);
        return set_string(&t->unk_token, json_string_value(unk));
}

static int model_apply(mp_tokenizer *t, const char *label, json_t *model, mp_error *err) {
        json_t *vocab = json_object_get(model, "vocab");
        int r;

        if (!vocab)
                return mp_error_set(err, -EBADMSG, label, -1, "model.vocab: missing");

        if (t->kind == MP_TOK_UNIGRAM)
                r = unigram_vocab_apply(t, label, vocab, err);
        else
                r = mp_tokenizer_vocab_object_apply(t, label, "model.vocab", vocab, err);
        if (r < 0)
                return r;

        if (t->kind == MP_TOK_BPE) {
                r = bpe_merges_apply(t, label, vocab, json_object_get(model, "merges"), err);
                if (r < 0)
                        return r;
        }

        json_t *bf = json_object_get(model, "byte_fallback");
        if (bf && !json_is_null(bf)) {
                if (!json_is_boolean(bf))
                        return mp_error_set(err, -EBADMSG, label, -1, "model.byte_fallback: not a boolean");
                t->byte_fallback = json_is_true(bf);
        }

        r = model_unk_apply(t, label, model, err);
        if (r == -ENOMEM)
                return mp_error_set(err, r, label, -1, "out of memory");
        return r;
}

/* added_tokens: [{"id": N, "content": "...", "special": bool, ...}].  Their
 * ids may lie beyond the model vocabulary; they count into the size. */
static int added_tokens_apply(mp_tokenizer *t, const char *label, json_t *added, mp_error *err) {
        size_t i;
        json_t *a;

        if (!added || json_is_null(added))
                return 0;
        if (!json_is_array(added))
                return mp_error_set(err, -EBADMSG, label, -1, "added_tokens: not an array");

        json_array_foreach(added, i, a) {
                entry_name name = { .path = "added_tokens", .index = i };

                if (!json_is_object(a))
                        return mp_error_set(err, -EBADMSG, label, -1, "added_tokens[%zu]: not an object", i);

                json_t *id = json_object_get(a, "id"), *content = json_object_get(a, "content");
                json_t *special = json_object_get(a, "special");
                if (!json_is_integer(id))
                        return mp_error_set(err, -EBADMSG, label, -1,
                                            "added_tokens[%zu].id: missing or not an integer", i);
                if (!json_is_string(content))
                        return mp_error_set(err, -EBADMSG, label, -1,
                                            "added_tokens[%zu].content: missing or not a string", i);
                if (special && !json_is_boolean(special))
                        return mp_error_set(err, -EBADMSG, label, -1,
                                            "added_tokens[%zu].special: not a boolean", i);

                int r = put_token(t, label, &name, json_integer_value(id), json_string_value(content),
                                  json_string_length(content), err);
                if (r < 0)
                        return r;
        }
        t->n_added_tokens = json_array_size(added);
        return 0;
}

/* The "type" of one pre-tokenizer object; path names it in messages. */
static int pre_tokenizer_type(const char *label, const char *path, json_t *pt, const char **ret,
                              mp_error *err) {
        if (!json_is_object(pt))
                return mp_error_set(err, -EBADMSG, label, -1, "%s: not an object", path);
        json_t *type = json_object_get(pt, "type");
        if (!json_is_string(type))
                return mp_error_set(err, -EBADMSG, label, -1, "%s.type: missing or not a string", path);
        if (json_string_length(type) > PRE_TOKENIZER_MAX_LEN)
                return mp_error_set(err, -E2BIG, label, -1, "%s.type: longer than %d bytes", path,
                                    PRE_TOKENIZER_MAX_LEN);
        *ret = json_string_value(type);
        return 0;
}

/* pre_tokenizer: its type, for a Sequence the member types joined by "+"
 * ("WhitespaceSplit+Metaspace"): enough to tell tokenizer families apart. */
static int pre_tokenizer_apply(mp_tokenizer *t, const char *label, json_t *pt, mp_error *err) {
        const char *type;
        int r;

        if (!pt || json_is_null(pt))
                return 0;
        r = pre_tokenizer_type(label, "pre_tokenizer", pt, &type, err);
        if (r < 0)
                return r;

        json_t *list = json_object_get(pt, "pretokenizers");
        if (strcmp(type, "Sequence") != 0 || !list) {
                if (set_string(&t->pre_tokenizer, type) < 0)
                        return mp_error_set(err, -ENOMEM, label, -1, "out of memory");
                return 0;
        }
        if (!json_is_array(list))
                return mp_error_set(err, -EBADMSG, label, -1, "pre_tokenizer.pretokenizers: not an array");

        char joined[PRE_TOKENIZER_MAX_LEN + 1] = "";
        size_t len = 0, i;
        json_t *member;

        json_array_foreach(list, i, member) {
                char path[64];

                snprintf(path, sizeof(path), "pre_tokenizer.pretokenizers[%zu]", i);
                r = pre_tokenizer_type(label, path, member, &type, err);
                if (r < 0)
                        return r;

                size_t n = strlen(type) + (i > 0);
                if (len + n > PRE_TOKENIZER_MAX_LEN)
                        return mp_error_set(err, -E2BIG, label, -1,
                                            "pre_tokenizer.pretokenizers: description longer than %d bytes",
                                            PRE_TOKENIZER_MAX_LEN);
                len += (size_t) snprintf(joined + len, sizeof(joined) - len, "%s%s", i > 0 ? "+" : "", type);
        }
        if (set_string(&t->pre_tokenizer, joined) < 0)
                return mp_error_set(err, -ENOMEM, label, -1, "out of memory");
        return 0;
}

#define SPM_SPACE "\xe2\x96\x81"        /* U+2581, SentencePiece's space marker */

/* Whether one normalizer / pre-tokenizer object puts "▁" before the text:
 * Prepend("▁"), or Metaspace unless its prepend_scheme is "never" (older
 * files say add_prefix_space instead).  Unrecognised shapes say nothing:
 * this only guides the anchor lookup, it never fails a parse. */
static bool adds_dummy_prefix(json_t *o) {
        const char *type = json_string_value(json_object_get(o, "type"));

        if (!type)
                return false;
        if (strcmp(type, "Prepend") == 0)
                return json_is_string(json_object_get(o, "prepend")) &&
                       strcmp(json_string_value(json_object_get(o, "prepend")), SPM_SPACE) == 0;
        if (strcmp(type, "Metaspace") == 0) {
                json_t *scheme = json_object_get(o, "prepend_scheme"), *aps = json_object_get(o, "add_prefix_space");
                if (json_is_string(scheme))
                        return strcmp(json_string_value(scheme), "never") != 0;
                return !json_is_false(aps);
        }
        if (strcmp(type, "Sequence") == 0) {
                json_t *list = json_object_get(o, "normalizers");
                size_t i;
                json_t *member;

                if (!list)
                        list = json_object_get(o, "pretokenizers");
                json_array_foreach(list, i, member)
                        if (adds_dummy_prefix(member))
                                return true;
        }
        return false;
}

int mp_tokenizer_json_parse(const char *label, const char *buf, size_t len, mp_tokenizer **ret,
                            mp_error *err) {
        _cleanup_(json_decrefp) json_t *root = NULL;
        _cleanup_(mp_tokenizer_freep) mp_tokenizer *t = NULL;
        mp_tokenizer_kind kind = MP_TOK_UNKNOWN;
        int r;

        assert(buf || len == 0);
        assert(ret);

        r = mp_tokenizer_json_load(label, buf, len, &root, err);
        if (r < 0)
                return r;
        if (!json_is_object(root))
                return mp_error_set(err, -EBADMSG, label, -1, "top level is not a JSON object");

        json_t *model = json_object_get(root, "model");
        if (!json_is_object(model))
                return mp_error_set(err, -EBADMSG, label, -1, "model: missing or not an object");

        r = model_kind(label, model, &kind, err);
        if (r < 0)
                return r;

        t = mp_tokenizer_new(kind, label);
        if (!t)
                return mp_error_set(err, -ENOMEM, label, -1, "out of memory");

        r = model_apply(t, label, model, err);
        if (r < 0)
                return r;
        r = added_tokens_apply(t, label, json_object_get(root, "added_tokens"), err);
        if (r < 0)
                return r;
        r = pre_tokenizer_apply(t, label, json_object_get(root, "pre_tokenizer"), err);
        if (r < 0)
                return r;
        t->dummy_prefix = adds_dummy_prefix(json_object_get(root, "normalizer")) ||
                          adds_dummy_prefix(json_object_get(root, "pre_tokenizer"));

        *ret = TAKE_PTR(t);
        return 0;
}

/* A special token in tokenizer_config.json: "<s>" or an AddedToken object
 * {"content": "<s>", ...}.  NULL for anything else. */
static const char *special_token_string(json_t *v) {
        if (json_is_object(v))
                v = json_object_get(v, "content");
        if (!json_is_string(v) || json_string_length(v) > MP_TOKENIZER_MAX_TOKEN_LEN)
                return NULL;
        return json_string_value(v);
}

/* additional_special_tokens: a list of strings or AddedToken objects.
 * Entries of other shapes are ignored like the rest of a messy config; the
 * list is cut at MP_TOKENIZER_MAX_EXTRA_SPECIAL entries. */
static int extra_specials_apply(mp_tokenizer *t, json_t *list) {
        size_t i;
        json_t *v;

        if (!json_is_array(list) || json_array_size(list) == 0)
                return 0;

        /* A second config replaces the first one's list. */
        for (i = 0; i < t->n_extra_special; i++)
                free(t->extra_special[i]);
        free(t->extra_special);
        t->n_extra_special = 0;

        size_t cap = json_array_size(list);
        if (cap > MP_TOKENIZER_MAX_EXTRA_SPECIAL)
                cap = MP_TOKENIZER_MAX_EXTRA_SPECIAL;
        t->extra_special = calloc(cap, sizeof(char *));
        if (!t->extra_special)
                return -ENOMEM;

        json_array_foreach(list, i, v) {
                const char *s = special_token_string(v);
                if (!s)
                        continue;
                if (t->n_extra_special >= cap)
                        break;
                t->extra_special[t->n_extra_special] = strdup(s);
                if (!t->extra_special[t->n_extra_special])
                        return -ENOMEM;
                t->n_extra_special++;
        }
        return 0;
}

int mp_tokenizer_config_apply(mp_tokenizer *t, const char *label, const char *buf, size_t len,
                              mp_error *err) {
        _cleanup_(json_decrefp) json_t *root = NULL;
        int r;

        assert(t);
        assert(buf || len == 0);

        r = mp_tokenizer_json_load(label, buf, len, &root, err);
        if (r < 0)
                return r;

        /* Real configs are messy (nulls, legacy shapes, fields from newer
         * transformers versions): apply what is recognisable, ignore the
         * rest, fail only on broken JSON. */
        if (!json_is_object(root))
                return 0;

        struct {
                const char *key;
                char **field;
        } specials[] = {
                { "bos_token",  &t->bos_token },
                { "eos_token",  &t->eos_token },
                { "unk_token",  &t->unk_token },
                { "pad_token",  &t->pad_token },
                { "mask_token", &t->mask_token },
                { "sep_token",  &t->sep_token },
                { "cls_token",  &t->cls_token },
        };
        for (size_t i = 0; i < ELEMENTSOF(specials); i++) {
                const char *s = special_token_string(json_object_get(root, specials[i].key));
                if (s && set_string(specials[i].field, s) < 0)
                        return mp_error_set(err, -ENOMEM, label, -1, "out of memory");
        }

        r = extra_specials_apply(t, json_object_get(root, "additional_special_tokens"));
        if (r < 0)
                return mp_error_set(err, r, label, -1, "out of memory");

        json_t *cls = json_object_get(root, "tokenizer_class");
        if (json_is_string(cls) && json_string_length(cls) <= MP_TOKENIZER_MAX_TOKEN_LEN) {
                if (!t->model_name && set_string(&t->model_name, json_string_value(cls)) < 0)
                        return mp_error_set(err, -ENOMEM, label, -1, "out of memory");
                if (set_string(&t->tokenizer_class, json_string_value(cls)) < 0)
                        return mp_error_set(err, -ENOMEM, label, -1, "out of memory");
        }
        return 0;
}
