/* vocab_merges.c - reads the GPT-2 style pair vocab.json ({token: id}) +
 * merges.txt ("A B" per line, optional "#version" line) into a BPE
 * tokenizer. */
#include "formats/tokenizer_internal.h"
#include "formats/tokenizer.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#include <jansson.h>

#include "util/macro.h"


#define QUOTE_SIZE MP_TOKENIZER_QUOTE_SIZE

/* One merges.txt line (without its newline) at byte offset off, line
 * number line_no: exactly two non-empty vocabulary tokens separated by one
 * space, as the HF loader requires. */
static int merge_line_check(const char *label, json_t *vocab, const char *line, size_t len,
                            size_t off, size_t line_no, mp_error *err) {
        const char *sp = memchr(line, ' ', len);
        char q[QUOTE_SIZE];

        if (!sp || sp == line || sp + 1 == line + len ||
            memchr(sp + 1, ' ', len - (size_t) (sp - line) - 1))
                return mp_error_set(err, -EBADMSG, label, (int64_t) off,
                                    "line %zu: \"%s\" is not two tokens separated by one space",
                                    line_no, mp_tokenizer_quote(q, sizeof(q), line, len));

        size_t alen = (size_t) (sp - line), blen = len - alen - 1;
        if (!json_object_getn(vocab, line, alen))
                return mp_error_set(err, -EBADMSG, label, (int64_t) off,
                                    "line %zu: \"%s\" is not in the vocabulary", line_no,
                                    mp_tokenizer_quote(q, sizeof(q), line, alen));
        if (!json_object_getn(vocab, sp + 1, blen))
                return mp_error_set(err, -EBADMSG, label, (int64_t) (off + alen + 1),
                                    "line %zu: \"%s\" is not in the vocabulary", line_no,
                                    mp_tokenizer_quote(q, sizeof(q), sp + 1, blen));
        return 0;
}

/* Reads the merges of merges.txt into m, checking each.  Empty lines and
 * "#version" lines are skipped; any other line starting with '#' is a merge
 * ("# #" merges two '#' in byte-level vocabularies). */
static int merges_read(const char *label, const char *buf, size_t len, json_t *vocab,
                       mp_tokenizer_merges *m, mp_error *err) {
        size_t pos = 0, line_no = 0;

        while (pos < len) {
                const char *line = buf + pos;
                const char *nl = memchr(line, '\n', len - pos);
                size_t line_len = nl ? (size_t) (nl - line) : len - pos;
                size_t next = pos + line_len + (nl ? 1 : 0);
                size_t l = line_len;

                line_no++;
                if (l > 0 && line[l - 1] == '\r')
                        l--;
                if (l > 0 && !(l >= 8 && memcmp(line, "#version", 8) == 0)) {
                        int r = merge_line_check(label, vocab, line, l, pos, line_no, err);
                        if (r < 0)
                                return r;
                        /* Checked above: exactly one space, inside the line. */
                        size_t alen = (size_t) ((const char *) memchr(line, ' ', l) - line);
                        r = mp_tokenizer_merges_add(m, line, alen, line + alen + 1, l - alen - 1);
                        if (r < 0)
                                return mp_error_set(err, r, label, -1, "out of memory");
                }
                pos = next;
        }
        if (mp_tokenizer_merges_finish(m) < 0)
                return mp_error_set(err, -ENOMEM, label, -1, "out of memory");
        return 0;
}

int mp_tokenizer_vocab_merges_parse(const char *vocab_label, const char *vocab_buf, size_t vocab_len,
                                    const char *merges_label, const char *merges_buf, size_t merges_len,
                                    mp_tokenizer **ret, mp_error *err) {
        _cleanup_(json_decrefp) json_t *vocab = NULL;
        _cleanup_(mp_tokenizer_freep) mp_tokenizer *t = NULL;
        int r;

        assert(vocab_buf || vocab_len == 0);
        assert(merges_buf || merges_len == 0);
        assert(ret);

        r = mp_tokenizer_json_load(vocab_label, vocab_buf, vocab_len, &vocab, err);
        if (r < 0)
                return r;

        t = mp_tokenizer_new(MP_TOK_BPE, vocab_label);
        if (!t)
                return mp_error_set(err, -ENOMEM, vocab_label, -1, "out of memory");

        r = mp_tokenizer_vocab_object_apply(t, vocab_label, "", vocab, err);
        if (r < 0)
                return r;

        if (merges_buf) {
                r = merges_read(merges_label, merges_buf, merges_len, vocab, &t->merges, err);
                if (r < 0)
                        return r;
                t->n_merges = t->merges.n;
        }

        *ret = TAKE_PTR(t);
        return 0;
}
