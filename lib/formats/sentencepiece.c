/* sentencepiece.c - reads a sentencepiece tokenizer.model (a serialized
 * ModelProto) into a tokenizer: the pieces in id order, the model type, the
 * unknown piece and byte fallback.
 *
 * protobuf-c does the decoding, but it reports nothing about *where* input
 * is broken and allocates for every field it sees.  So the wire format is
 * first walked here: every tag, length and wire type of the fields we use is
 * checked with its byte offset, the piece count is limited, and piece
 * strings are validated.  protobuf-c then runs under an allocation budget. */
#include "formats/tokenizer.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sentencepiece_model.pb-c.h"
#include "util/macro.h"
#include "util/strutil.h"

/* Real models are at most a few MiB (a 256k-piece vocabulary is ~5 MiB). */
#define SPM_MAX_FILE_SIZE (64u * 1024 * 1024)

/* Published sentencepiece vocabularies have at most ~256k pieces; each
 * piece costs protobuf-c ~100 bytes, so this also bounds memory. */
#define SPM_MAX_PIECES (1u * 1024 * 1024)

/* protobuf-c allocates for every field it meets, known or not, and a field
 * may repeat.  A real model has piece, score and type per piece, and a few
 * hundred other fields (trainer_spec, normalizer_spec, self-test data). */
#define SPM_MAX_PIECE_FIELDS 8
#define SPM_MAX_OTHER_FIELDS 4096

/* Cumulative bytes protobuf-c may allocate while decoding (its scratch
 * arrays included): a 1M-piece model needs about half of it. */
#define SPM_DECODE_BUDGET (256u * 1024 * 1024)

enum {
        WT_VARINT = 0,
        WT_I64 = 1,
        WT_LEN = 2,
        WT_I32 = 5,
};

typedef struct pb_field {
        uint32_t number;
        unsigned wire_type;
        size_t offset;          /* of the tag */
        uint64_t varint;        /* WT_VARINT: the value */
        size_t data, len;       /* WT_LEN/WT_I32/WT_I64: the payload */
} pb_field;

typedef struct field_spec {
        uint32_t number;
        unsigned wire_type;
        const char *name;
} field_spec;

static const field_spec model_fields[] = {
        { 1, WT_LEN, "pieces" },
        { 2, WT_LEN, "trainer_spec" },
        { 3, WT_LEN, "normalizer_spec" },
};

static const field_spec piece_fields[] = {
        { 1, WT_LEN,    "piece" },
        { 2, WT_I32,    "score" },
        { 3, WT_VARINT, "type" },
};

static const field_spec trainer_fields[] = {
        { 3,  WT_VARINT, "model_type" },
        { 4,  WT_VARINT, "vocab_size" },
        { 35, WT_VARINT, "byte_fallback" },
};

static const field_spec normalizer_fields[] = {
        { 1, WT_LEN, "name" },
};

/* Reads a varint of at most max_bytes at *pos, not beyond end. */
static int pb_varint(const char *label, const uint8_t *buf, size_t end, size_t *pos, unsigned max_bytes,
                     const char *what, uint64_t *ret, mp_error *err) {
        uint64_t v = 0;
        size_t start = *pos;

        for (unsigned i = 0; i < max_bytes; i++) {
                if (start + i >= end)
                        return mp_error_set(err, -EBADMSG, label, (int64_t) start, "truncated %s", what);
                uint8_t b = buf[start + i];
                v |= (uint64_t) (b & 0x7f) << (7 * i);
                if (!(b & 0x80)) {
                        *pos = start + i + 1;
                        *ret = v;
                        return 0;
                }
        }
        return mp_error_set(err, -EBADMSG, label, (int64_t) start, "%s is longer than %u bytes", what,
                            max_bytes);
}

/* Reads the field at *pos of the message ending at end.  Groups (wire
 * types 3/4, deprecated, never used by sentencepiece) are refused like
 * protobuf-c does. */
static int pb_next(const char *label, const uint8_t *buf, size_t end, size_t *pos, pb_field *f,
                   mp_error *err) {
        uint64_t tag = 0, n = 0;
        int r;

        *f = (pb_field) { .offset = *pos };

        r = pb_varint(label, buf, end, pos, 5, "field tag", &tag, err);
        if (r < 0)
                return r;
        if (tag > UINT32_MAX || (tag >> 3) == 0)
                return mp_error_set(err, -EBADMSG, label, (int64_t) f->offset, "invalid field tag %llu",
                                    (unsigned long long) tag);
        f->number = (uint32_t) (tag >> 3);
        f->wire_type = (unsigned) (tag & 7);

        switch (f->wire_type) {
        case WT_VARINT:
                return pb_varint(label, buf, end, pos, 10, "varint", &f->varint, err);
        case WT_I64:
        case WT_I32:
                n = f->wire_type == WT_I64 ? 8 : 4;
                break;
        case WT_LEN:
                r = pb_varint(label, buf, end, pos, 5, "length", &n, err);
                if (r < 0)
                        return r;
                break;
        default:
                return mp_error_set(err, -EBADMSG, label, (int64_t) f->offset,
                                    "field %u has unsupported wire type %u", f->number, f->wire_type);
        }

        if (n > end - *pos)
                return mp_error_set(err, -EBADMSG, label, (int64_t) f->offset,
                                    "truncated: field %u needs %llu bytes, %zu left", f->number,
                                    (unsigned long long) n, end - *pos);
        f->data = *pos;
        f->len = (size_t) n;
        *pos += (size_t) n;
        return 0;
}

/* Refuses a known field with the wrong wire type (protobuf-c would fail
 * on it too, without saying where).  msg names the message, with [index]
 * appended unless index is SIZE_MAX. */
static int pb_check_wire(const char *label, const char *msg, size_t index, const pb_field *f,
                         const field_spec *spec, size_t n_spec, mp_error *err) {
        for (size_t i = 0; i < n_spec; i++) {
                if (spec[i].number != f->number || spec[i].wire_type == f->wire_type)
                        continue;

                char idx[32] = "";
                if (index != SIZE_MAX)
                        snprintf(idx, sizeof(idx), "[%zu]", index);
                return mp_error_set(err, -EBADMSG, label, (int64_t) f->offset,
                                    "%s%s.%s (field %u): wire type %u, expected %u", msg, idx,
                                    spec[i].name, f->number, f->wire_type, spec[i].wire_type);
        }
        return 0;
}

/* Counts one more field that is not a piece against SPM_MAX_OTHER_FIELDS. */
static int count_other(const char *label, const pb_field *f, size_t *n_other, mp_error *err) {
        if (++*n_other > SPM_MAX_OTHER_FIELDS)
                return mp_error_set(err, -E2BIG, label, (int64_t) f->offset,
                                    "more than %u fields besides the pieces", SPM_MAX_OTHER_FIELDS);
        return 0;
}

/* Checks every field of the submessage in field f against spec. */
static int pb_check_message(const char *label, const char *msg, const uint8_t *buf, const pb_field *f,
                            const field_spec *spec, size_t n_spec, size_t *n_other, mp_error *err) {
        size_t pos = f->data, end = f->data + f->len;

        while (pos < end) {
                pb_field sub;
                int r = pb_next(label, buf, end, &pos, &sub, err);
                if (r < 0)
                        return r;
                r = count_other(label, &sub, n_other, err);
                if (r < 0)
                        return r;
                r = pb_check_wire(label, msg, SIZE_MAX, &sub, spec, n_spec, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The piece string of pieces[index]: present, non-empty, bounded, UTF-8
 * without NUL (tokens are C strings). */
static int check_piece_string(const char *label, size_t index, const uint8_t *buf, const pb_field *f,
                              mp_error *err) {
        const uint8_t *s = buf + f->data;
        size_t bad;

        if (f->len == 0)
                return mp_error_set(err, -EBADMSG, label, (int64_t) f->offset, "pieces[%zu]: empty piece",
                                    index);
        if (f->len > MP_TOKENIZER_MAX_TOKEN_LEN)
                return mp_error_set(err, -E2BIG, label, (int64_t) f->offset,
                                    "pieces[%zu]: piece is %zu bytes, more than %d", index, f->len,
                                    MP_TOKENIZER_MAX_TOKEN_LEN);
        const uint8_t *nul = memchr(s, 0, f->len);
        if (nul)
                return mp_error_set(err, -EBADMSG, label, (int64_t) (f->data + (size_t) (nul - s)),
                                    "pieces[%zu]: piece contains a NUL byte", index);
        bad = mp_utf8_invalid_at(s, f->len);
        if (bad < f->len)
                return mp_error_set(err, -EBADMSG, label, (int64_t) (f->data + bad),
                                    "pieces[%zu]: piece is not valid UTF-8", index);
        return 0;
}

/* One SentencePiece submessage (field f of the ModelProto). */
static int check_piece(const char *label, size_t index, const uint8_t *buf, const pb_field *f,
                       mp_error *err) {
        size_t pos = f->data, end = f->data + f->len, n_fields = 0;
        bool have_piece = false;

        while (pos < end) {
                pb_field sub;
                int r = pb_next(label, buf, end, &pos, &sub, err);
                if (r < 0)
                        return r;
                if (++n_fields > SPM_MAX_PIECE_FIELDS)
                        return mp_error_set(err, -E2BIG, label, (int64_t) sub.offset,
                                            "pieces[%zu]: more than %u fields", index, SPM_MAX_PIECE_FIELDS);
                r = pb_check_wire(label, "pieces", index, &sub, piece_fields, ELEMENTSOF(piece_fields), err);
                if (r < 0)
                        return r;
                if (sub.number == 1) {
                        r = check_piece_string(label, index, buf, &sub, err);
                        if (r < 0)
                                return r;
                        have_piece = true;
                }
        }
        if (!have_piece)
                return mp_error_set(err, -EBADMSG, label, (int64_t) f->offset, "pieces[%zu]: no piece string",
                                    index);
        return 0;
}

/* Walks the top-level ModelProto; returns the number of pieces. */
static int check_model(const char *label, const uint8_t *buf, size_t len, size_t *ret, mp_error *err) {
        size_t pos = 0, n_pieces = 0, n_other = 0;
        int r;

        while (pos < len) {
                pb_field f;

                r = pb_next(label, buf, len, &pos, &f, err);
                if (r < 0)
                        return r;
                r = pb_check_wire(label, "ModelProto", SIZE_MAX, &f, model_fields, ELEMENTSOF(model_fields),
                                  err);
                if (r < 0)
                        return r;
                if (f.number != 1) {
                        r = count_other(label, &f, &n_other, err);
                        if (r < 0)
                                return r;
                }

                switch (f.number) {
                case 1:
                        if (n_pieces >= SPM_MAX_PIECES)
                                return mp_error_set(err, -E2BIG, label, (int64_t) f.offset,
                                                    "more than %u pieces", SPM_MAX_PIECES);
                        r = check_piece(label, n_pieces, buf, &f, err);
                        n_pieces++;
                        break;
                case 2:
                        r = pb_check_message(label, "trainer_spec", buf, &f, trainer_fields,
                                             ELEMENTSOF(trainer_fields), &n_other, err);
                        break;
                case 3:
                        r = pb_check_message(label, "normalizer_spec", buf, &f, normalizer_fields,
                                             ELEMENTSOF(normalizer_fields), &n_other, err);
                        break;
                default:
                        r = 0;  /* unknown fields are skipped, as protobuf does */
                }
                if (r < 0)
                        return r;
        }
        *ret = n_pieces;
        return 0;
}

typedef struct budget {
        size_t used;
        bool exceeded;
} budget;

static void *budget_alloc(void *data, size_t size) {
        budget *b = data;

        if (size > SPM_DECODE_BUDGET - b->used) {
                b->exceeded = true;
                return NULL;
        }
        b->used += size;
        return malloc(size ? size : 1);
}

static void budget_free(void *data, void *p) {
        free(p);
}

/* budget_alloc() hands out plain malloc() memory, so protobuf-c may free
 * with its default (system) allocator. */
static void model_proto_freep(Modelprov__Spm__ModelProto **m) {
        if (*m)
                modelprov__spm__model_proto__free_unpacked(*m, NULL);
}

static mp_tokenizer_kind spm_kind(const Modelprov__Spm__TrainerSpec *ts) {
        /* An absent trainer_spec or model_type means the proto default. */
        if (!ts || !ts->has_model_type)
                return MP_TOK_SPM_UNIGRAM;
        switch (ts->model_type) {
        case MODELPROV__SPM__TRAINER_SPEC__MODEL_TYPE__UNIGRAM:
                return MP_TOK_SPM_UNIGRAM;
        case MODELPROV__SPM__TRAINER_SPEC__MODEL_TYPE__BPE:
                return MP_TOK_SPM_BPE;
        default:
                return MP_TOK_SPM_OTHER;
        }
}

int mp_sentencepiece_parse(const char *label, const uint8_t *buf, size_t len, mp_tokenizer **ret,
                           mp_error *err) {
        _cleanup_(model_proto_freep) Modelprov__Spm__ModelProto *proto = NULL;
        _cleanup_(mp_tokenizer_freep) mp_tokenizer *t = NULL;
        size_t n_pieces = 0;
        int r;

        assert(buf || len == 0);
        assert(ret);

        if (len > SPM_MAX_FILE_SIZE)
                return mp_error_set(err, -E2BIG, label, -1, "%zu bytes, more than the %u MiB limit", len,
                                    SPM_MAX_FILE_SIZE / 1024 / 1024);

        r = check_model(label, buf, len, &n_pieces, err);
        if (r < 0)
                return r;
        /* Any byte string is a valid empty message; without pieces it is
         * not a tokenizer. */
        if (n_pieces == 0)
                return mp_error_set(err, -EBADMSG, label, -1, "no pieces: not a sentencepiece model");

        budget b = { .used = 0 };
        ProtobufCAllocator allocator = {
                .alloc = budget_alloc,
                .free = budget_free,
                .allocator_data = &b,
        };
        proto = modelprov__spm__model_proto__unpack(&allocator, len, buf);
        if (!proto) {
                if (b.exceeded)
                        return mp_error_set(err, -E2BIG, label, -1, "decoding needs more than %u MiB",
                                            SPM_DECODE_BUDGET / 1024 / 1024);
                return mp_error_set(err, -EBADMSG, label, -1, "not a sentencepiece model");
        }
        if (proto->n_pieces != n_pieces)   /* the walk above and protobuf-c disagree */
                return mp_error_set(err, -EBADMSG, label, -1, "not a sentencepiece model");

        t = mp_tokenizer_new(spm_kind(proto->trainer_spec), label);
        if (!t)
                return mp_error_set(err, -ENOMEM, label, -1, "out of memory");

        for (size_t i = 0; i < proto->n_pieces; i++) {
                const Modelprov__Spm__ModelProto__SentencePiece *p = proto->pieces[i];

                /* Checked by check_piece(); kept against a protobuf-c that
                 * decodes differently. */
                if (!p->piece || !p->piece[0])
                        return mp_error_set(err, -EBADMSG, label, -1,
                                            "pieces[%zu]: empty or missing piece", i);

                r = mp_tokenizer_set_token(t, i, p->piece, strlen(p->piece));
                if (r < 0)
                        return mp_error_set(err, r, label, -1, "pieces[%zu]: cannot store piece: %s", i,
                                            strerror(-r));

                if (p->has_type && p->type == MODELPROV__SPM__MODEL_PROTO__SENTENCE_PIECE__TYPE__UNKNOWN &&
                    !t->unk_token && !(t->unk_token = strdup(p->piece)))
                        return mp_error_set(err, -ENOMEM, label, -1, "out of memory");
        }

        /* byte_fallback is a proto2 bool defaulting to false. */
        t->byte_fallback = proto->trainer_spec && proto->trainer_spec->has_byte_fallback &&
                           proto->trainer_spec->byte_fallback;

        *ret = TAKE_PTR(t);
        return 0;
}
