/* tokenizer_internal.h - helpers shared by the tokenizer parsers
 * (defined in tokenizer_json.c, used by vocab_merges.c too).  Not part of
 * the library's interface. */
#pragma once

#include <stddef.h>

#include <jansson.h>

#include "formats/tokenizer.h"
#include "util/error.h"

/* Buffer size for mp_tokenizer_quote(): a token cut to 40 bytes, each
 * possibly escaped to 4 characters, plus "..." and the NUL. */
#define MP_TOKENIZER_QUOTE_SIZE (40 * 4 + 4)

/* Renders s (len bytes) printable for error messages: escapes control and
 * non-ASCII bytes, cuts to 40 bytes.  size >= MP_TOKENIZER_QUOTE_SIZE. */
const char *mp_tokenizer_quote(char *buf, size_t size, const char *s, size_t len);

/* Parses JSON with limits against hostile input (value count, duplicate
 * keys); syntax errors carry the byte offset. */
int mp_tokenizer_json_load(const char *label, const char *buf, size_t len, json_t **ret, mp_error *err);

/* Applies a {token: id} object to t; path names the object in errors. */
int mp_tokenizer_vocab_object_apply(mp_tokenizer *t, const char *label, const char *path, json_t *vocab,
                                    mp_error *err);
