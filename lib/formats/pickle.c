/* pickle.c - a restricted pickle interpreter for PyTorch state dicts.
 *
 * Pickles are programs: GLOBAL names any Python callable and REDUCE calls it,
 * which is how a "model file" runs os.system on torch.load.  This interpreter
 * executes the stack machine of protocols 0-5 on inert values only.  It never
 * imports or calls anything: the few globals a state dict needs are
 * recognised by name and interpreted here (tensor rebuild functions, storage
 * classes, OrderedDict); every other global becomes an opaque placeholder and
 * is reported with the offset of its opcode, and operations on placeholders
 * just produce more placeholders, so that parsing goes on and the report is
 * complete.
 *
 * The input is hostile: every operand is bounds-checked, the stack, marks,
 * memo, containers, nesting, tensor count and the memory the interpreter
 * allocates are all limited, and malformed input fails with the offset of
 * the offending opcode.  All values live in an arena freed at the end, so
 * shared and cyclic object graphs (DUP, memo GET) need no reference counts. */
#include "formats/pickle.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/macro.h"
#include "util/strutil.h"

#define ARENA_MAX        (256u << 20)   /* bytes for values and containers */
#define ARENA_CHUNK      (64u << 10)
#define CONTAINER_MAX    (1u << 24)     /* items in one list, dict, set, tuple */
#define UNSAFE_MAX       4096u          /* unsafe globals recorded before giving up */
#define WALK_MAX_STEPS   (1u << 24)     /* values visited while collecting tensors */
#define NAME_MAX_BYTES   4096u          /* one dotted tensor name */
#define NAMES_MAX_BYTES  (64u << 20)    /* all names together */
#define GLOBAL_TEXT_MAX  200u           /* bytes of module/name kept in a finding */
#define KEY_MAX_BYTES    1024u          /* storage key */
#define TEXT_NUMBER_MAX  512u           /* protocol 0 number literals */

enum {
        OP_MARK = '(', OP_STOP = '.', OP_POP = '0', OP_POP_MARK = '1', OP_DUP = '2',
        OP_FLOAT = 'F', OP_INT = 'I', OP_BININT = 'J', OP_BININT1 = 'K', OP_LONG = 'L',
        OP_BININT2 = 'M', OP_NONE = 'N', OP_PERSID = 'P', OP_BINPERSID = 'Q', OP_REDUCE = 'R',
        OP_STRING = 'S', OP_BINSTRING = 'T', OP_SHORT_BINSTRING = 'U', OP_UNICODE = 'V',
        OP_BINUNICODE = 'X', OP_APPEND = 'a', OP_BUILD = 'b', OP_GLOBAL = 'c', OP_DICT = 'd',
        OP_EMPTY_DICT = '}', OP_APPENDS = 'e', OP_GET = 'g', OP_BINGET = 'h', OP_INST = 'i',
        OP_LONG_BINGET = 'j', OP_LIST = 'l', OP_EMPTY_LIST = ']', OP_OBJ = 'o', OP_PUT = 'p',
        OP_BINPUT = 'q', OP_LONG_BINPUT = 'r', OP_SETITEM = 's', OP_TUPLE = 't',
        OP_EMPTY_TUPLE = ')', OP_SETITEMS = 'u', OP_BINFLOAT = 'G',
        /* protocol 2 */
        OP_PROTO = 0x80, OP_NEWOBJ = 0x81, OP_EXT1 = 0x82, OP_EXT2 = 0x83, OP_EXT4 = 0x84,
        OP_TUPLE1 = 0x85, OP_TUPLE2 = 0x86, OP_TUPLE3 = 0x87, OP_NEWTRUE = 0x88,
        OP_NEWFALSE = 0x89, OP_LONG1 = 0x8a, OP_LONG4 = 0x8b,
        /* protocol 3 */
        OP_BINBYTES = 'B', OP_SHORT_BINBYTES = 'C',
        /* protocol 4 */
        OP_SHORT_BINUNICODE = 0x8c, OP_BINUNICODE8 = 0x8d, OP_BINBYTES8 = 0x8e,
        OP_EMPTY_SET = 0x8f, OP_ADDITEMS = 0x90, OP_FROZENSET = 0x91, OP_NEWOBJ_EX = 0x92,
        OP_STACK_GLOBAL = 0x93, OP_MEMOIZE = 0x94, OP_FRAME = 0x95,
        /* protocol 5 */
        OP_BYTEARRAY8 = 0x96, OP_NEXT_BUFFER = 0x97, OP_READONLY_BUFFER = 0x98,
};

static const char *const op_names[256] = {
        [OP_MARK] = "MARK", [OP_STOP] = "STOP", [OP_POP] = "POP", [OP_POP_MARK] = "POP_MARK",
        [OP_DUP] = "DUP", [OP_FLOAT] = "FLOAT", [OP_INT] = "INT", [OP_BININT] = "BININT",
        [OP_BININT1] = "BININT1", [OP_LONG] = "LONG", [OP_BININT2] = "BININT2", [OP_NONE] = "NONE",
        [OP_PERSID] = "PERSID", [OP_BINPERSID] = "BINPERSID", [OP_REDUCE] = "REDUCE",
        [OP_STRING] = "STRING", [OP_BINSTRING] = "BINSTRING", [OP_SHORT_BINSTRING] = "SHORT_BINSTRING",
        [OP_UNICODE] = "UNICODE", [OP_BINUNICODE] = "BINUNICODE", [OP_APPEND] = "APPEND",
        [OP_BUILD] = "BUILD", [OP_GLOBAL] = "GLOBAL", [OP_DICT] = "DICT", [OP_EMPTY_DICT] = "EMPTY_DICT",
        [OP_APPENDS] = "APPENDS", [OP_GET] = "GET", [OP_BINGET] = "BINGET", [OP_INST] = "INST",
        [OP_LONG_BINGET] = "LONG_BINGET", [OP_LIST] = "LIST", [OP_EMPTY_LIST] = "EMPTY_LIST",
        [OP_OBJ] = "OBJ", [OP_PUT] = "PUT", [OP_BINPUT] = "BINPUT", [OP_LONG_BINPUT] = "LONG_BINPUT",
        [OP_SETITEM] = "SETITEM", [OP_TUPLE] = "TUPLE", [OP_EMPTY_TUPLE] = "EMPTY_TUPLE",
        [OP_SETITEMS] = "SETITEMS", [OP_BINFLOAT] = "BINFLOAT", [OP_PROTO] = "PROTO",
        [OP_NEWOBJ] = "NEWOBJ", [OP_EXT1] = "EXT1", [OP_EXT2] = "EXT2", [OP_EXT4] = "EXT4",
        [OP_TUPLE1] = "TUPLE1", [OP_TUPLE2] = "TUPLE2", [OP_TUPLE3] = "TUPLE3",
        [OP_NEWTRUE] = "NEWTRUE", [OP_NEWFALSE] = "NEWFALSE", [OP_LONG1] = "LONG1",
        [OP_LONG4] = "LONG4", [OP_BINBYTES] = "BINBYTES", [OP_SHORT_BINBYTES] = "SHORT_BINBYTES",
        [OP_SHORT_BINUNICODE] = "SHORT_BINUNICODE", [OP_BINUNICODE8] = "BINUNICODE8",
        [OP_BINBYTES8] = "BINBYTES8", [OP_EMPTY_SET] = "EMPTY_SET", [OP_ADDITEMS] = "ADDITEMS",
        [OP_FROZENSET] = "FROZENSET", [OP_NEWOBJ_EX] = "NEWOBJ_EX", [OP_STACK_GLOBAL] = "STACK_GLOBAL",
        [OP_MEMOIZE] = "MEMOIZE", [OP_FRAME] = "FRAME", [OP_BYTEARRAY8] = "BYTEARRAY8",
        [OP_NEXT_BUFFER] = "NEXT_BUFFER", [OP_READONLY_BUFFER] = "READONLY_BUFFER",
};

typedef enum pv_type {
        PV_NONE, PV_BOOL, PV_INT, PV_FLOAT, PV_STR, PV_BYTES,
        PV_TUPLE, PV_LIST, PV_DICT, PV_SET,
        PV_GLOBAL,      /* an allow-listed global (known_global) */
        PV_STORAGE,     /* a persistent-id storage reference */
        PV_TENSOR,
        PV_OPAQUE,      /* the result of anything not interpreted */
} pv_type;

typedef enum global_kind {
        G_ORDERED_DICT,
        G_REBUILD_TENSOR, G_REBUILD_TENSOR_V2, G_REBUILD_TENSOR_V3,
        G_REBUILD_PARAMETER, G_REBUILD_PARAMETER_WITH_STATE, G_REBUILD_FROM_TYPE_V2,
        G_STORAGE_TYPE, G_DTYPE, G_SIZE, G_TENSOR_TYPE,
} global_kind;

typedef struct known_global {
        const char *module, *name;
        global_kind kind;
        mp_dtype dtype;         /* storage classes and dtype objects; INVALID: no mp_dtype */
} known_global;

/* The allow-list.  Each entry is either interpreted below (the rebuild
 * functions, OrderedDict, torch.Size) or is a plain data object (storage
 * classes, dtypes) that is only looked at, never called.  In Python, resolving
 * any of them imports torch or collections and runs no code from the file.
 * The storage classes are what torch.save writes in persistent ids
 * (getattr(torch, TypedStorage._pickle_storage_type())); UntypedStorage and
 * _rebuild_tensor_v3 with an explicit dtype are used by torch >= 2.1 for the
 * dtypes that have no legacy storage class (float8, uint16...);
 * torch._tensor._rebuild_from_type_v2 wraps the rebuild of a tensor that
 * carries Python attributes, with torch.Tensor or Parameter as its type (any
 * other class there is reported like every unknown global).  Anything not
 * listed is reported, including torch internals we do not interpret (sparse
 * and quantized tensors): a finding there is a prompt to look, not a
 * verdict. */
static const known_global known_globals[] = {
        { "collections", "OrderedDict", G_ORDERED_DICT, MP_DTYPE_INVALID },
        { "torch._utils", "_rebuild_tensor", G_REBUILD_TENSOR, MP_DTYPE_INVALID },
        { "torch._utils", "_rebuild_tensor_v2", G_REBUILD_TENSOR_V2, MP_DTYPE_INVALID },
        { "torch._utils", "_rebuild_tensor_v3", G_REBUILD_TENSOR_V3, MP_DTYPE_INVALID },
        { "torch._utils", "_rebuild_parameter", G_REBUILD_PARAMETER, MP_DTYPE_INVALID },
        { "torch._utils", "_rebuild_parameter_with_state", G_REBUILD_PARAMETER_WITH_STATE, MP_DTYPE_INVALID },
        { "torch._tensor", "_rebuild_from_type_v2", G_REBUILD_FROM_TYPE_V2, MP_DTYPE_INVALID },
        { "torch", "Size", G_SIZE, MP_DTYPE_INVALID },
        { "torch", "Tensor", G_TENSOR_TYPE, MP_DTYPE_INVALID },
        { "torch._tensor", "Tensor", G_TENSOR_TYPE, MP_DTYPE_INVALID },
        { "torch.nn.parameter", "Parameter", G_TENSOR_TYPE, MP_DTYPE_INVALID },

        { "torch", "DoubleStorage", G_STORAGE_TYPE, MP_DTYPE_F64 },
        { "torch", "FloatStorage", G_STORAGE_TYPE, MP_DTYPE_F32 },
        { "torch", "HalfStorage", G_STORAGE_TYPE, MP_DTYPE_F16 },
        { "torch", "BFloat16Storage", G_STORAGE_TYPE, MP_DTYPE_BF16 },
        { "torch", "LongStorage", G_STORAGE_TYPE, MP_DTYPE_I64 },
        { "torch", "IntStorage", G_STORAGE_TYPE, MP_DTYPE_I32 },
        { "torch", "ShortStorage", G_STORAGE_TYPE, MP_DTYPE_I16 },
        { "torch", "CharStorage", G_STORAGE_TYPE, MP_DTYPE_I8 },
        { "torch", "ByteStorage", G_STORAGE_TYPE, MP_DTYPE_U8 },
        { "torch", "BoolStorage", G_STORAGE_TYPE, MP_DTYPE_BOOL },
        { "torch", "UntypedStorage", G_STORAGE_TYPE, MP_DTYPE_U8 },
        { "torch.storage", "UntypedStorage", G_STORAGE_TYPE, MP_DTYPE_U8 },
        { "torch", "ComplexDoubleStorage", G_STORAGE_TYPE, MP_DTYPE_INVALID },
        { "torch", "ComplexFloatStorage", G_STORAGE_TYPE, MP_DTYPE_INVALID },
        { "torch", "QInt8Storage", G_STORAGE_TYPE, MP_DTYPE_INVALID },
        { "torch", "QUInt8Storage", G_STORAGE_TYPE, MP_DTYPE_INVALID },
        { "torch", "QInt32Storage", G_STORAGE_TYPE, MP_DTYPE_INVALID },
        { "torch", "QUInt4x2Storage", G_STORAGE_TYPE, MP_DTYPE_INVALID },
        { "torch", "QUInt2x4Storage", G_STORAGE_TYPE, MP_DTYPE_INVALID },

        { "torch", "float64", G_DTYPE, MP_DTYPE_F64 },
        { "torch", "double", G_DTYPE, MP_DTYPE_F64 },
        { "torch", "float32", G_DTYPE, MP_DTYPE_F32 },
        { "torch", "float", G_DTYPE, MP_DTYPE_F32 },
        { "torch", "float16", G_DTYPE, MP_DTYPE_F16 },
        { "torch", "half", G_DTYPE, MP_DTYPE_F16 },
        { "torch", "bfloat16", G_DTYPE, MP_DTYPE_BF16 },
        { "torch", "int64", G_DTYPE, MP_DTYPE_I64 },
        { "torch", "long", G_DTYPE, MP_DTYPE_I64 },
        { "torch", "int32", G_DTYPE, MP_DTYPE_I32 },
        { "torch", "int", G_DTYPE, MP_DTYPE_I32 },
        { "torch", "int16", G_DTYPE, MP_DTYPE_I16 },
        { "torch", "short", G_DTYPE, MP_DTYPE_I16 },
        { "torch", "int8", G_DTYPE, MP_DTYPE_I8 },
        { "torch", "uint8", G_DTYPE, MP_DTYPE_U8 },
        { "torch", "uint16", G_DTYPE, MP_DTYPE_U16 },
        { "torch", "uint32", G_DTYPE, MP_DTYPE_U32 },
        { "torch", "uint64", G_DTYPE, MP_DTYPE_U64 },
        { "torch", "bool", G_DTYPE, MP_DTYPE_BOOL },
        { "torch", "float8_e4m3fn", G_DTYPE, MP_DTYPE_F8_E4M3 },
        { "torch", "float8_e5m2", G_DTYPE, MP_DTYPE_F8_E5M2 },
        { "torch", "float8_e4m3fnuz", G_DTYPE, MP_DTYPE_INVALID },
        { "torch", "float8_e5m2fnuz", G_DTYPE, MP_DTYPE_INVALID },
        { "torch", "complex64", G_DTYPE, MP_DTYPE_INVALID },
        { "torch", "complex128", G_DTYPE, MP_DTYPE_INVALID },
        { "torch", "cfloat", G_DTYPE, MP_DTYPE_INVALID },
        { "torch", "cdouble", G_DTYPE, MP_DTYPE_INVALID },
};

typedef struct pv pv;

typedef struct pv_seq {
        pv **items;
        size_t n, allocated;
} pv_seq;

typedef struct pv_storage {
        const char *key;        /* NUL-terminated, validated */
        const known_global *type;
        uint64_t numel;         /* in elements of type->dtype */
} pv_storage;

typedef struct pv_tensor {
        const pv_storage *storage;
        mp_dtype dtype;
        uint32_t n_dims;
        uint64_t shape[8], stride[8];
        uint64_t storage_offset;        /* elements of dtype */
        uint64_t storage_numel;         /* elements of dtype */
} pv_tensor;

struct pv {
        uint8_t type;           /* pv_type */
        bool big;              /* PV_INT that does not fit in int64 */
        bool visiting;          /* on the path of the walk (cycle guard) */
        bool deduped;           /* PV_DICT: duplicate keys resolved */
        bool opaque_items;      /* the items added to an opaque object */
        uint32_t depth;         /* nesting, as known when built */
        uint64_t offset;        /* opcode that created it */
        union {
                bool b;
                int64_t i;
                double f;
                struct {
                        const uint8_t *p;       /* into the pickle, or the arena */
                        size_t len;
                } s;
                pv_seq seq;     /* tuple, list, set; dict: key, value, ...; opaque: inputs */
                const known_global *g;
                pv_storage *st;
                pv_tensor *t;
        };
};

typedef struct chunk {
        struct chunk *next;
        size_t size, used;
        max_align_t data[];
} chunk;

typedef struct parser {
        const char *label;
        const uint8_t *buf;
        size_t len, pos;
        size_t op;              /* offset of the current opcode */
        uint8_t opcode;
        mp_error *err;

        pv **stack;
        size_t n_stack, stack_allocated;
        size_t *marks;
        size_t n_marks, marks_allocated;
        pv **memo;
        size_t memo_allocated, memo_count;

        chunk *arena;
        size_t arena_bytes;
        int alloc_error;

        mp_pickle_global *unsafe;
        size_t n_unsafe, unsafe_allocated;

        /* collecting tensors after STOP */
        mp_pickle_tensor *tensors;
        size_t n_tensors, tensors_allocated;
        char *path;
        size_t path_len, path_allocated;
        size_t steps, name_bytes;
} parser;

static const char *op_name(uint8_t op) {
        return op_names[op] ? op_names[op] : "unknown opcode";
}

static int fail_at(parser *p, uint64_t offset, int code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static int fail_at(parser *p, uint64_t offset, int code, const char *fmt, ...) {
        char reason[320];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(reason, sizeof(reason), fmt, ap);
        va_end(ap);
        return mp_error_set(p->err, code, p->label, (int64_t) offset, "pickle: %s", reason);
}

/* An error at the current opcode, naming it. */
static int fail(parser *p, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(parser *p, int code, const char *fmt, ...) {
        char reason[320];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(reason, sizeof(reason), fmt, ap);
        va_end(ap);
        return mp_error_set(p->err, code, p->label, (int64_t) p->op, "pickle %s: %s", op_name(p->opcode), reason);
}

static int fail_alloc(parser *p) {
        if (p->alloc_error == -E2BIG)
                return fail(p, -E2BIG, "interpreting this pickle needs more than %u MiB", ARENA_MAX >> 20);
        return fail(p, -ENOMEM, "out of memory");
}

/* ---- arena ---- */

static void *arena_alloc(parser *p, size_t n) {
        n = (n + 15) & ~(size_t) 15;
        if (n == 0 || n > ARENA_MAX) {
                p->alloc_error = -E2BIG;
                return NULL;
        }

        chunk *c = p->arena;
        if (!c || c->size - c->used < n) {
                /* Big blocks get a chunk of their own behind the current one,
                 * so the current chunk's free space is not abandoned. */
                size_t size = n > ARENA_CHUNK / 4 ? n : ARENA_CHUNK;
                if (p->arena_bytes > ARENA_MAX - size) {
                        p->alloc_error = -E2BIG;
                        return NULL;
                }
                chunk *nc = malloc(sizeof(chunk) + size);
                if (!nc) {
                        p->alloc_error = -ENOMEM;
                        return NULL;
                }
                nc->size = size;
                nc->used = 0;
                p->arena_bytes += size;
                if (c && size == n) {
                        nc->next = c->next;
                        c->next = nc;
                } else {
                        nc->next = c;
                        p->arena = nc;
                }
                c = nc;
        }
        void *r = (uint8_t *) c->data + c->used;
        c->used += n;
        return r;
}

static void arena_free(parser *p) {
        while (p->arena) {
                chunk *next = p->arena->next;
                free(p->arena);
                p->arena = next;
        }
}

static pv *new_value(parser *p, pv_type t) {
        pv *v = arena_alloc(p, sizeof(pv));
        if (!v)
                return NULL;
        memset(v, 0, sizeof(*v));
        v->type = (uint8_t) t;
        v->offset = p->op;
        return v;
}

static int seq_push(parser *p, pv *c, pv *item) {
        pv_seq *s = &c->seq;

        if (s->n >= CONTAINER_MAX)
                return fail(p, -E2BIG, "container holds more than %u items", CONTAINER_MAX);
        if (s->n == s->allocated) {
                size_t n = s->allocated ? s->allocated * 2 : 4;
                pv **items = arena_alloc(p, n * sizeof(pv *));
                if (!items)
                        return fail_alloc(p);
                if (s->n > 0)
                        memcpy(items, s->items, s->n * sizeof(pv *));
                s->items = items;
                s->allocated = n;
        }
        s->items[s->n++] = item;

        /* Track nesting as it is built; mutation after the fact (a list
         * appended to after being nested) is caught by the walk's limit. */
        if (item->depth + 1 > c->depth) {
                c->depth = item->depth + 1;
                if (c->depth > MP_PICKLE_MAX_DEPTH)
                        return fail(p, -EBADMSG, "containers nested deeper than %u", MP_PICKLE_MAX_DEPTH);
        }
        return 0;
}

/* ---- stack, marks, memo ---- */

static size_t fence(const parser *p) {
        return p->n_marks > 0 ? p->marks[p->n_marks - 1] : 0;
}

static int push(parser *p, pv *v) {
        if (!v)
                return fail_alloc(p);
        if (p->n_stack >= MP_PICKLE_MAX_STACK)
                return fail(p, -E2BIG, "stack deeper than %u", MP_PICKLE_MAX_STACK);
        if (MP_GROW(p->stack, p->stack_allocated, p->n_stack + 1) < 0)
                return fail(p, -ENOMEM, "out of memory");
        p->stack[p->n_stack++] = v;
        return 0;
}

/* Values below the innermost MARK are out of reach, as in CPython. */
static int pop(parser *p, pv **ret) {
        if (p->n_stack <= fence(p))
                return fail(p, -EBADMSG, "stack underflow");
        *ret = p->stack[--p->n_stack];
        return 0;
}

static int peek(parser *p, pv **ret) {
        if (p->n_stack <= fence(p))
                return fail(p, -EBADMSG, "stack underflow");
        *ret = p->stack[p->n_stack - 1];
        return 0;
}

static int push_mark(parser *p) {
        if (p->n_marks >= MP_PICKLE_MAX_STACK)
                return fail(p, -E2BIG, "more than %u marks", MP_PICKLE_MAX_STACK);
        if (MP_GROW(p->marks, p->marks_allocated, p->n_marks + 1) < 0)
                return fail(p, -ENOMEM, "out of memory");
        p->marks[p->n_marks++] = p->n_stack;
        return 0;
}

/* Pops the innermost mark; the marked items are stack[*start .. n_stack). */
static int pop_mark(parser *p, size_t *start) {
        if (p->n_marks == 0)
                return fail(p, -EBADMSG, "no MARK on the stack");
        *start = p->marks[--p->n_marks];
        return 0;
}

/* The object below the marked items (APPENDS, SETITEMS, ADDITEMS). */
static int below_mark(parser *p, size_t start, pv **ret) {
        if (start <= fence(p))
                return fail(p, -EBADMSG, "stack underflow");
        *ret = p->stack[start - 1];
        return 0;
}

static int memo_put(parser *p, uint64_t idx) {
        pv *v = NULL;
        int r = peek(p, &v);
        if (r < 0)
                return r;
        if (idx >= MP_PICKLE_MAX_MEMO)
                return fail(p, -E2BIG, "memo index %" PRIu64 " exceeds the limit of %u", idx, MP_PICKLE_MAX_MEMO);
        if (idx >= p->memo_allocated) {
                size_t old = p->memo_allocated;
                if (MP_GROW(p->memo, p->memo_allocated, (size_t) idx + 1) < 0)
                        return fail(p, -ENOMEM, "out of memory");
                memset(p->memo + old, 0, (p->memo_allocated - old) * sizeof(pv *));
        }
        if (!p->memo[idx])
                p->memo_count++;
        p->memo[idx] = v;
        return 0;
}

static int memo_get(parser *p, uint64_t idx) {
        if (idx >= p->memo_allocated || !p->memo[idx])
                return fail(p, -EBADMSG, "memo index %" PRIu64 " is not defined", idx);
        return push(p, p->memo[idx]);
}

/* ---- reading operands ---- */

static int take(parser *p, uint64_t n, const uint8_t **ret) {
        if (n > p->len - p->pos)
                return fail(p, -EBADMSG, "truncated: needs %" PRIu64 " bytes, %zu left", n, p->len - p->pos);
        *ret = p->buf + p->pos;
        p->pos += (size_t) n;
        return 0;
}

static int take_uint(parser *p, size_t n, uint64_t *ret) {
        const uint8_t *b = NULL;
        int r = take(p, n, &b);
        if (r < 0)
                return r;
        uint64_t v = 0;
        for (size_t i = n; i-- > 0;)
                v = (v << 8) | b[i];
        *ret = v;
        return 0;
}

/* A protocol 0 argument: bytes up to the next newline (excluded). */
static int readline(parser *p, const uint8_t **ret, size_t *len) {
        const uint8_t *nl = memchr(p->buf + p->pos, '\n', p->len - p->pos);
        if (!nl)
                return fail(p, -EBADMSG, "truncated: argument without newline");
        *ret = p->buf + p->pos;
        *len = (size_t) (nl - *ret);
        p->pos += *len + 1;
        return 0;
}

static bool utf8_valid(const uint8_t *s, size_t n) {
        return mp_utf8_invalid_at(s, n) == n;
}

static size_t utf8_put(uint8_t *d, uint32_t cp) {
        if (cp < 0x80) {
                d[0] = (uint8_t) cp;
                return 1;
        }
        if (cp < 0x800) {
                d[0] = (uint8_t) (0xC0 | (cp >> 6));
                d[1] = (uint8_t) (0x80 | (cp & 0x3F));
                return 2;
        }
        if (cp < 0x10000) {
                d[0] = (uint8_t) (0xE0 | (cp >> 12));
                d[1] = (uint8_t) (0x80 | ((cp >> 6) & 0x3F));
                d[2] = (uint8_t) (0x80 | (cp & 0x3F));
                return 3;
        }
        d[0] = (uint8_t) (0xF0 | (cp >> 18));
        d[1] = (uint8_t) (0x80 | ((cp >> 12) & 0x3F));
        d[2] = (uint8_t) (0x80 | ((cp >> 6) & 0x3F));
        d[3] = (uint8_t) (0x80 | (cp & 0x3F));
        return 4;
}

static int hexval(uint8_t c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Strings are Python str: valid UTF-8 (torch.load decodes protocol 0-2
 * strings as UTF-8 too).  Lone surrogates, which Python tolerates, are
 * refused: names end up in JSON. */
static int push_str(parser *p, const uint8_t *s, size_t len) {
        if (!utf8_valid(s, len))
                return fail(p, -EBADMSG, "string is not valid UTF-8");
        pv *v = new_value(p, PV_STR);
        if (v) {
                v->s.p = s;
                v->s.len = len;
        }
        return push(p, v);
}

static int push_bytes(parser *p, const uint8_t *s, size_t len) {
        pv *v = new_value(p, PV_BYTES);
        if (v) {
                v->s.p = s;
                v->s.len = len;
        }
        return push(p, v);
}

/* STRING: a quoted Python 2 str literal with backslash escapes. */
static int op_string(parser *p) {
        const uint8_t *s = NULL;
        size_t n = 0;
        int r = readline(p, &s, &n);
        if (r < 0)
                return r;
        if (n < 2 || s[0] != s[n - 1] || (s[0] != '\'' && s[0] != '"'))
                return fail(p, -EBADMSG, "the STRING argument must be quoted");
        s++;
        n -= 2;

        uint8_t *d = n > 0 ? arena_alloc(p, n) : (uint8_t *) "";
        if (!d)
                return fail_alloc(p);
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
                if (s[i] != '\\' || i + 1 == n) {
                        d[o++] = s[i];
                        continue;
                }
                uint8_t c = s[++i];
                switch (c) {
                case '\n': break;
                case '\\': case '\'': case '"': d[o++] = c; break;
                case 'a': d[o++] = '\a'; break;
                case 'b': d[o++] = '\b'; break;
                case 'f': d[o++] = '\f'; break;
                case 'n': d[o++] = '\n'; break;
                case 'r': d[o++] = '\r'; break;
                case 't': d[o++] = '\t'; break;
                case 'v': d[o++] = '\v'; break;
                case 'x':
                        if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
                                return fail(p, -EBADMSG, "invalid \\x escape in STRING");
                        d[o++] = (uint8_t) (hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
                        i += 2;
                        break;
                default:
                        if (c >= '0' && c <= '7') {
                                unsigned v = c - '0';
                                for (int k = 0; k < 2 && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '7'; k++)
                                        v = v * 8 + (unsigned) (s[++i] - '0');
                                d[o++] = (uint8_t) v;
                        } else {
                                d[o++] = '\\';
                                d[o++] = c;
                        }
                }
        }
        return push_str(p, d, o);
}

/* UNICODE: raw-unicode-escape, i.e. Latin-1 bytes plus \uXXXX and
 * \UXXXXXXXX escapes after an odd number of backslashes. */
static int op_unicode(parser *p) {
        const uint8_t *s = NULL;
        size_t n = 0;
        int r = readline(p, &s, &n);
        if (r < 0)
                return r;

        uint8_t *d = n > 0 ? arena_alloc(p, 2 * n) : (uint8_t *) "";  /* an input byte yields at most 2 */
        if (!d)
                return fail_alloc(p);
        size_t o = 0, i = 0;
        while (i < n) {
                if (s[i] != '\\') {
                        o += utf8_put(d + o, s[i++]);
                        continue;
                }
                size_t bs = i;
                while (i < n && s[i] == '\\')
                        d[o++] = s[i++];
                if (((i - bs) & 1) == 0 || i >= n || (s[i] != 'u' && s[i] != 'U'))
                        continue;
                o--;    /* the escaping backslash */
                size_t digits = s[i] == 'u' ? 4 : 8;
                i++;
                if (n - i < digits)
                        return fail(p, -EBADMSG, "truncated \\u escape in UNICODE");
                uint32_t cp = 0;
                for (size_t k = 0; k < digits; k++) {
                        int h = hexval(s[i + k]);
                        if (h < 0)
                                return fail(p, -EBADMSG, "invalid \\u escape in UNICODE");
                        cp = cp * 16 + (uint32_t) h;
                }
                if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                        return fail(p, -EBADMSG, "\\u escape is not a Unicode scalar value");
                i += digits;
                o += utf8_put(d + o, cp);
        }
        return push_str(p, d, o);
}

/* Decimal integer text (INT, LONG, GET, PUT); sets *big when it does not
 * fit in int64. */
static int parse_int_text(parser *p, const uint8_t *s, size_t n, int64_t *ret, bool *big) {
        while (n > 0 && (s[0] == ' ' || s[0] == '\t'))
                s++, n--;
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
                n--;
        bool neg = false;
        if (n > 0 && (s[0] == '-' || s[0] == '+')) {
                neg = s[0] == '-';
                s++, n--;
        }
        if (n == 0)
                return fail(p, -EBADMSG, "invalid integer literal");

        uint64_t v = 0;
        *big = false;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return fail(p, -EBADMSG, "invalid integer literal");
                if (v > (UINT64_MAX - 9) / 10)
                        *big = true;
                else
                        v = v * 10 + (uint64_t) (s[i] - '0');
        }
        if (!*big && (neg ? v > (uint64_t) INT64_MAX + 1 : v > (uint64_t) INT64_MAX))
                *big = true;
        *ret = *big ? 0 : neg ? (int64_t) (0 - v) : (int64_t) v;
        return 0;
}

static int push_int(parser *p, int64_t i, bool big) {
        pv *v = new_value(p, PV_INT);
        if (v) {
                v->i = i;
                v->big = big;
        }
        return push(p, v);
}

static int push_bool(parser *p, bool b) {
        pv *v = new_value(p, PV_BOOL);
        if (v)
                v->b = b;
        return push(p, v);
}

static int push_float(parser *p, double f) {
        pv *v = new_value(p, PV_FLOAT);
        if (v)
                v->f = f;
        return push(p, v);
}

static int op_int_text(parser *p, bool is_long) {
        const uint8_t *s = NULL;
        size_t n = 0;
        int r = readline(p, &s, &n);
        if (r < 0)
                return r;
        if (!is_long && n == 2 && s[0] == '0' && (s[1] == '0' || s[1] == '1'))
                return push_bool(p, s[1] == '1');       /* protocol 0 False/True */
        if (is_long && n > 0 && s[n - 1] == 'L')
                n--;
        int64_t v = 0;
        bool big = false;
        r = parse_int_text(p, s, n, &v, &big);
        if (r < 0)
                return r;
        return push_int(p, v, big);
}

static int op_float_text(parser *p) {
        const uint8_t *s = NULL;
        size_t n = 0;
        int r = readline(p, &s, &n);
        if (r < 0)
                return r;
        if (n == 0 || n > TEXT_NUMBER_MAX)
                return fail(p, -EBADMSG, "invalid float literal");
        char tmp[TEXT_NUMBER_MAX + 1];
        memcpy(tmp, s, n);
        tmp[n] = 0;
        char *end;
        double f = strtod(tmp, &end);
        while (*end == ' ' || *end == '\r')
                end++;
        if (end == tmp || *end)
                return fail(p, -EBADMSG, "invalid float literal");
        return push_float(p, f);
}

/* LONG1/LONG4: little-endian two's complement of n bytes. */
static int op_long_bin(parser *p, size_t len_size) {
        uint64_t n = 0;
        int r = take_uint(p, len_size, &n);
        if (r < 0)
                return r;
        if (len_size == 4 && n > INT32_MAX)
                return fail(p, -EBADMSG, "LONG4 has a negative byte count");
        const uint8_t *b = NULL;
        r = take(p, n, &b);
        if (r < 0)
                return r;
        if (n == 0)
                return push_int(p, 0, false);

        bool neg = b[n - 1] & 0x80, big = false;
        uint64_t v = neg ? UINT64_MAX : 0;
        for (size_t i = (size_t) n; i-- > 0;) {
                if (i >= 8) {
                        if (b[i] != (neg ? 0xFF : 0x00))
                                big = true;
                        continue;
                }
                v = (v << 8) | b[i];
        }
        /* the bytes beyond 8 must be pure sign extension of bit 63 */
        if (n > 8 && ((b[7] & 0x80) != 0) != neg)
                big = true;
        return push_int(p, big ? 0 : (int64_t) v, big);
}

/* ---- globals ---- */

static bool text_eq(const uint8_t *s, size_t n, const char *z) {
        return strlen(z) == n && memcmp(s, z, n) == 0;
}

static const known_global *lookup_global(const uint8_t *module, size_t mlen, const uint8_t *name, size_t nlen) {
        for (size_t i = 0; i < ELEMENTSOF(known_globals); i++)
                if (text_eq(module, mlen, known_globals[i].module) && text_eq(name, nlen, known_globals[i].name))
                        return &known_globals[i];
        return NULL;
}

/* Copies text for a finding: control bytes (a NUL could hide the rest)
 * become '?', and long text is cut on a UTF-8 boundary. */
static char *finding_text(const uint8_t *s, size_t n) {
        size_t cut = n;
        if (cut > GLOBAL_TEXT_MAX) {
                cut = GLOBAL_TEXT_MAX;
                while (cut > 0 && (s[cut] & 0xC0) == 0x80)
                        cut--;
        }
        char *t = malloc(cut + 4);
        if (!t)
                return NULL;
        for (size_t i = 0; i < cut; i++)
                t[i] = (s[i] < 0x20 || s[i] == 0x7f) ? '?' : (char) s[i];
        if (cut < n)
                memcpy(t + cut, "...", 4);
        else
                t[cut] = 0;
        return t;
}

static int record_unsafe(parser *p, const uint8_t *module, size_t mlen, const uint8_t *name, size_t nlen) {
        if (p->n_unsafe >= UNSAFE_MAX)
                return fail(p, -E2BIG, "more than %u references to globals outside the allow-list", UNSAFE_MAX);
        if (MP_GROW(p->unsafe, p->unsafe_allocated, p->n_unsafe + 1) < 0)
                return fail(p, -ENOMEM, "out of memory");

        mp_pickle_global g = { .offset = p->op };
        g.module = finding_text(module, mlen);
        g.name = finding_text(name, nlen);
        if (!g.module || !g.name) {
                free(g.module);
                free(g.name);
                return fail(p, -ENOMEM, "out of memory");
        }
        p->unsafe[p->n_unsafe++] = g;
        return 0;
}

/* Resolves module.name: an allow-listed global, or an opaque placeholder
 * after recording the reference. */
static int resolve_global(parser *p, const uint8_t *module, size_t mlen, const uint8_t *name, size_t nlen,
                          pv **ret) {
        const known_global *k = lookup_global(module, mlen, name, nlen);
        pv *v = NULL;

        if (k) {
                v = new_value(p, PV_GLOBAL);
                if (v)
                        v->g = k;
        } else {
                int r = record_unsafe(p, module, mlen, name, nlen);
                if (r < 0)
                        return r;
                v = new_value(p, PV_OPAQUE);
        }
        if (!v)
                return fail_alloc(p);
        *ret = v;
        return 0;
}

static int read_global_lines(parser *p, const uint8_t **module, size_t *mlen, const uint8_t **name, size_t *nlen) {
        int r = readline(p, module, mlen);
        if (r < 0)
                return r;
        r = readline(p, name, nlen);
        if (r < 0)
                return r;
        if (!utf8_valid(*module, *mlen) || !utf8_valid(*name, *nlen))
                return fail(p, -EBADMSG, "global name is not valid UTF-8");
        return 0;
}

/* ---- calls (REDUCE, NEWOBJ, INST, OBJ) on inert values ---- */

static int opaque_of(parser *p, pv *input, pv **ret) {
        pv *v = new_value(p, PV_OPAQUE);
        if (!v)
                return fail_alloc(p);
        if (input) {
                int r = seq_push(p, v, input);
                if (r < 0)
                        return r;
        }
        *ret = v;
        return 0;
}

static const char *type_name(const pv *v) {
        static const char *const names[] = {
                [PV_NONE] = "None", [PV_BOOL] = "bool", [PV_INT] = "int", [PV_FLOAT] = "float",
                [PV_STR] = "str", [PV_BYTES] = "bytes", [PV_TUPLE] = "tuple", [PV_LIST] = "list",
                [PV_DICT] = "dict", [PV_SET] = "set", [PV_GLOBAL] = "global", [PV_STORAGE] = "storage",
                [PV_TENSOR] = "tensor", [PV_OPAQUE] = "opaque object",
        };
        return names[v->type];
}

static bool as_u64(const pv *v, uint64_t *ret) {
        if (v->type == PV_BOOL) {
                *ret = v->b;
                return true;
        }
        if (v->type != PV_INT || v->big || v->i < 0)
                return false;
        *ret = (uint64_t) v->i;
        return true;
}

static bool is_seq(const pv *v) {
        return v->type == PV_TUPLE || v->type == PV_LIST;
}

static int int_tuple(parser *p, const pv *v, const char *what, uint64_t out[8], uint32_t *n) {
        if (!is_seq(v))
                return fail(p, -EBADMSG, "tensor %s is a %s, not a tuple", what, type_name(v));
        if (v->seq.n > 8)
                return fail(p, -ENOTSUP, "tensor with %zu dimensions (limit 8)", v->seq.n);
        for (size_t i = 0; i < v->seq.n; i++)
                if (!as_u64(v->seq.items[i], &out[i]))
                        return fail(p, -EBADMSG, "tensor %s[%zu] is not a non-negative integer", what, i);
        *n = (uint32_t) v->seq.n;
        return 0;
}

/* _rebuild_tensor(storage, offset, size, stride)
 * _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])
 * _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype[, metadata]) */
static int rebuild_tensor(parser *p, const known_global *g, pv *args, pv **ret) {
        size_t n = args->seq.n;
        pv **a = args->seq.items;
        int r;

        if ((g->kind == G_REBUILD_TENSOR && n != 4) ||
            (g->kind == G_REBUILD_TENSOR_V2 && n != 6 && n != 7) ||
            (g->kind == G_REBUILD_TENSOR_V3 && n != 7 && n != 8))
                return fail(p, -EBADMSG, "%s.%s called with %zu arguments", g->module, g->name, n);
        for (size_t i = 0; i < n; i++)
                if (a[i]->type == PV_OPAQUE)    /* built from something we do not interpret */
                        return opaque_of(p, args, ret);
        if (a[0]->type != PV_STORAGE)
                return fail(p, -EBADMSG, "tensor storage is a %s", type_name(a[0]));

        const pv_storage *st = a[0]->st;
        pv_tensor *t = arena_alloc(p, sizeof(pv_tensor));
        if (!t)
                return fail_alloc(p);
        *t = (pv_tensor) { .storage = st, .dtype = st->type->dtype, .storage_numel = st->numel };

        if (!as_u64(a[1], &t->storage_offset))
                return fail(p, -EBADMSG, "tensor storage offset is not a non-negative integer");
        uint32_t n_stride;
        r = int_tuple(p, a[2], "size", t->shape, &t->n_dims);
        if (r < 0)
                return r;
        r = int_tuple(p, a[3], "stride", t->stride, &n_stride);
        if (r < 0)
                return r;
        if (n_stride != t->n_dims)
                return fail(p, -EBADMSG, "tensor has %u sizes but %u strides", t->n_dims, n_stride);

        if (g->kind == G_REBUILD_TENSOR_V3) {
                /* The storage is untyped (bytes); the dtype comes separately. */
                if (a[6]->type != PV_GLOBAL || a[6]->g->kind != G_DTYPE)
                        return fail(p, -EBADMSG, "_rebuild_tensor_v3 dtype is a %s", type_name(a[6]));
                const mp_dtype_info *sti = mp_dtype_get(st->type->dtype), *ti = mp_dtype_get(a[6]->g->dtype);
                if (!ti)
                        return fail(p, -ENOTSUP, "tensor dtype torch.%s is not supported", a[6]->g->name);
                if (!sti)
                        return fail(p, -ENOTSUP, "storage type %s.%s is not supported", st->type->module,
                                    st->type->name);
                uint64_t bytes;
                if (mul_overflow_u64(st->numel, sti->block_bytes, &bytes))
                        return fail(p, -EOVERFLOW, "storage size overflows");
                if (bytes % ti->block_bytes != 0)
                        return fail(p, -EBADMSG, "storage of %" PRIu64 " bytes is not a whole number of %s elements",
                                    bytes, ti->name);
                t->dtype = a[6]->g->dtype;
                t->storage_numel = bytes / ti->block_bytes;
        }
        if (!mp_dtype_get(t->dtype))
                return fail(p, -ENOTSUP, "storage type %s.%s is not supported", st->type->module, st->type->name);

        pv *v = new_value(p, PV_TENSOR);
        if (!v)
                return fail_alloc(p);
        v->t = t;
        *ret = v;
        return 0;
}

static int build_ordered_dict(parser *p, pv *args, pv **ret) {
        pv *d = new_value(p, PV_DICT);
        if (!d)
                return fail_alloc(p);
        *ret = d;
        if (args->seq.n == 0)
                return 0;

        /* OrderedDict(pairs) or OrderedDict(dict); anything fancier is
         * left opaque. */
        pv *src = args->seq.items[0];
        if (args->seq.n == 1 && src->type == PV_DICT) {
                for (size_t i = 0; i < src->seq.n; i++) {
                        int r = seq_push(p, d, src->seq.items[i]);
                        if (r < 0)
                                return r;
                }
                return 0;
        }
        if (args->seq.n == 1 && is_seq(src)) {
                for (size_t i = 0; i < src->seq.n; i++)
                        if (!is_seq(src->seq.items[i]) || src->seq.items[i]->seq.n != 2)
                                return opaque_of(p, args, ret);
                for (size_t i = 0; i < src->seq.n; i++) {
                        pv *pair = src->seq.items[i];
                        int r = seq_push(p, d, pair->seq.items[0]);
                        if (r >= 0)
                                r = seq_push(p, d, pair->seq.items[1]);
                        if (r < 0)
                                return r;
                }
                return 0;
        }
        return opaque_of(p, args, ret);
}

static int call(parser *p, pv *callable, pv *args, pv **ret) {
        if (callable->type == PV_OPAQUE)
                return opaque_of(p, args, ret);
        if (callable->type != PV_GLOBAL)
                return fail(p, -EBADMSG, "calls a %s, which is not callable", type_name(callable));
        if (args->type != PV_TUPLE)
                return fail(p, -EBADMSG, "arguments are a %s, not a tuple", type_name(args));

        const known_global *g = callable->g;
        switch (g->kind) {
        case G_ORDERED_DICT:
                return build_ordered_dict(p, args, ret);
        case G_REBUILD_TENSOR:
        case G_REBUILD_TENSOR_V2:
        case G_REBUILD_TENSOR_V3:
                return rebuild_tensor(p, g, args, ret);
        case G_REBUILD_PARAMETER:
        case G_REBUILD_PARAMETER_WITH_STATE: {
                /* (data, requires_grad, backward_hooks[, state]): a Parameter
                 * is its tensor for our purposes. */
                size_t want = g->kind == G_REBUILD_PARAMETER ? 3 : 4;
                if (args->seq.n != want)
                        return fail(p, -EBADMSG, "%s called with %zu arguments", g->name, args->seq.n);
                pv *data = args->seq.items[0];
                if (data->type == PV_OPAQUE)
                        return opaque_of(p, args, ret);
                if (data->type != PV_TENSOR)
                        return fail(p, -EBADMSG, "%s data is a %s, not a tensor", g->name, type_name(data));
                *ret = data;
                return 0;
        }
        case G_REBUILD_FROM_TYPE_V2: {
                /* (func, new_type, args, state): func(*args) viewed as new_type */
                if (args->seq.n != 4)
                        return fail(p, -EBADMSG, "%s called with %zu arguments", g->name, args->seq.n);
                pv *func = args->seq.items[0], *type = args->seq.items[1], *fargs = args->seq.items[2];
                if (func->type == PV_OPAQUE || type->type == PV_OPAQUE)
                        return opaque_of(p, args, ret);
                if (func->type != PV_GLOBAL ||
                    (func->g->kind != G_REBUILD_TENSOR && func->g->kind != G_REBUILD_TENSOR_V2 &&
                     func->g->kind != G_REBUILD_TENSOR_V3 && func->g->kind != G_REBUILD_PARAMETER &&
                     func->g->kind != G_REBUILD_PARAMETER_WITH_STATE))
                        return fail(p, -EBADMSG, "%s: the function is not a tensor rebuild function", g->name);
                if (type->type != PV_GLOBAL || type->g->kind != G_TENSOR_TYPE)
                        return fail(p, -EBADMSG, "%s: the type is not a tensor class", g->name);
                return call(p, func, fargs, ret);
        }
        case G_SIZE:
                /* torch.Size(iterable of ints) is a tuple */
                if (args->seq.n == 1 && is_seq(args->seq.items[0])) {
                        pv *v = new_value(p, PV_TUPLE);
                        if (!v)
                                return fail_alloc(p);
                        pv *src = args->seq.items[0];
                        for (size_t i = 0; i < src->seq.n; i++) {
                                int r = seq_push(p, v, src->seq.items[i]);
                                if (r < 0)
                                        return r;
                        }
                        *ret = v;
                        return 0;
                }
                return opaque_of(p, args, ret);
        case G_STORAGE_TYPE:
        case G_DTYPE:
        case G_TENSOR_TYPE:
                /* constructing these is not part of a state dict: inert */
                return opaque_of(p, args, ret);
        }
        return opaque_of(p, args, ret);
}

/* ---- persistent ids ---- */

/* ('storage', storage_type, key, location, numel), as torch.save writes. */
static int persistent_load(parser *p, pv *pid, pv **ret) {
        if (pid->type != PV_TUPLE || pid->seq.n < 1 || pid->seq.items[0]->type != PV_STR ||
            !text_eq(pid->seq.items[0]->s.p, pid->seq.items[0]->s.len, "storage"))
                return fail(p, -EBADMSG, "persistent id is not a ('storage', ...) tuple");
        if (pid->seq.n != 5)
                return fail(p, -EBADMSG, "storage persistent id has %zu fields, expected 5", pid->seq.n);

        pv **a = pid->seq.items;
        if (a[1]->type == PV_OPAQUE)
                return opaque_of(p, pid, ret);
        if (a[1]->type != PV_GLOBAL || a[1]->g->kind != G_STORAGE_TYPE)
                return fail(p, -EBADMSG, "persistent id storage type is a %s, not a torch storage class",
                            type_name(a[1]));

        char numbuf[24];
        const uint8_t *key = NULL;
        size_t key_len;
        if (a[2]->type == PV_STR) {
                key = a[2]->s.p;
                key_len = a[2]->s.len;
        } else if (a[2]->type == PV_INT && !a[2]->big) {
                key_len = (size_t) snprintf(numbuf, sizeof(numbuf), "%" PRId64, a[2]->i);
                key = (const uint8_t *) numbuf;
        } else
                return fail(p, -EBADMSG, "storage key is a %s", type_name(a[2]));
        /* The key names a zip entry: no NULs that would cut it short, no
         * control bytes in messages. */
        if (key_len == 0 || key_len > KEY_MAX_BYTES)
                return fail(p, -EBADMSG, "storage key of %zu bytes", key_len);
        for (size_t i = 0; i < key_len; i++)
                if (key[i] < 0x20 || key[i] == 0x7f)
                        return fail(p, -EBADMSG, "storage key contains control bytes");
        if (a[3]->type != PV_STR)
                return fail(p, -EBADMSG, "storage location is a %s", type_name(a[3]));

        pv_storage *st = arena_alloc(p, sizeof(pv_storage));
        char *k = arena_alloc(p, key_len + 1);
        if (!st || !k)
                return fail_alloc(p);
        memcpy(k, key, key_len);
        k[key_len] = 0;
        *st = (pv_storage) { .key = k, .type = a[1]->g };
        if (!as_u64(a[4], &st->numel))
                return fail(p, -EBADMSG, "storage size is not a non-negative integer");

        pv *v = new_value(p, PV_STORAGE);
        if (!v)
                return fail_alloc(p);
        v->st = st;
        *ret = v;
        return 0;
}

/* ---- container opcodes ---- */

static int seq_from_stack(parser *p, pv_type t, size_t start, pv **ret) {
        pv *v = new_value(p, t);
        if (!v)
                return fail_alloc(p);
        for (size_t i = start; i < p->n_stack; i++) {
                int r = seq_push(p, v, p->stack[i]);
                if (r < 0)
                        return r;
        }
        p->n_stack = start;
        *ret = v;
        return 0;
}

static int op_tuple_n(parser *p, size_t n) {
        if (p->n_stack - fence(p) < n)
                return fail(p, -EBADMSG, "stack underflow");
        pv *v = NULL;
        int r = seq_from_stack(p, PV_TUPLE, p->n_stack - n, &v);
        if (r < 0)
                return r;
        return push(p, v);
}

static int op_from_mark(parser *p, pv_type t) {
        size_t start = 0;
        int r = pop_mark(p, &start);
        if (r < 0)
                return r;
        if (t == PV_DICT && (p->n_stack - start) % 2 != 0)
                return fail(p, -EBADMSG, "odd number of items for DICT");
        pv *v = NULL;
        r = seq_from_stack(p, t, start, &v);
        if (r < 0)
                return r;
        return push(p, v);
}

/* The container that collects the items added to an opaque object (a dict
 * or list subclass): its last input when it is one, else a new one.  Keyed
 * items keep their keys, so tensors in a dict subclass get dotted names. */
static int opaque_items(parser *p, pv *o, pv_type want, pv **ret) {
        pv *last = o->seq.n > 0 ? o->seq.items[o->seq.n - 1] : NULL;
        if (last && last->opaque_items && last->type == want) {
                *ret = last;
                return 0;
        }
        pv *c = new_value(p, want);
        if (!c)
                return fail_alloc(p);
        c->opaque_items = true;
        int r = seq_push(p, o, c);
        if (r < 0)
                return r;
        *ret = c;
        return 0;
}

/* APPEND, SETITEM, ADDITEMS... add items to the object below them: a
 * container of the right type, or an opaque object (which keeps them, as
 * tensors may hide there). */
static int add_items(parser *p, pv *target, pv_type want, pv **items, size_t n) {
        if (target->type != want && target->type != PV_OPAQUE)
                return fail(p, -EBADMSG, "cannot add items to a %s", type_name(target));
        if (want == PV_DICT && n % 2 != 0)
                return fail(p, -EBADMSG, "odd number of items for SETITEMS");
        if (target->type == PV_OPAQUE && n > 0) {
                int r = opaque_items(p, target, want, &target);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < n; i++) {
                int r = seq_push(p, target, items[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int op_add_single(parser *p, pv_type want, size_t n) {
        if (p->n_stack - fence(p) < n + 1)
                return fail(p, -EBADMSG, "stack underflow");
        pv *target = p->stack[p->n_stack - n - 1];
        int r = add_items(p, target, want, p->stack + p->n_stack - n, n);
        if (r < 0)
                return r;
        p->n_stack -= n;
        return 0;
}

static int op_add_marked(parser *p, pv_type want) {
        size_t start = 0;
        pv *target = NULL;
        int r = pop_mark(p, &start);
        if (r < 0)
                return r;
        r = below_mark(p, start, &target);
        if (r < 0)
                return r;
        r = add_items(p, target, want, p->stack + start, p->n_stack - start);
        if (r < 0)
                return r;
        p->n_stack = start;
        return 0;
}

/* ---- object opcodes ---- */

static int op_reduce(parser *p) {
        pv *args = NULL, *callable = NULL, *v = NULL;
        int r = pop(p, &args);
        if (r >= 0)
                r = pop(p, &callable);
        if (r >= 0)
                r = call(p, callable, args, &v);
        if (r < 0)
                return r;
        return push(p, v);
}

/* cls.__new__(cls, *args[, **kwargs]) */
static int op_newobj(parser *p, bool ex) {
        pv *kwargs = NULL, *args = NULL, *cls = NULL, *v = NULL;
        int r = 0;

        if (ex)
                r = pop(p, &kwargs);
        if (r >= 0)
                r = pop(p, &args);
        if (r >= 0)
                r = pop(p, &cls);
        if (r < 0)
                return r;
        if (args->type != PV_TUPLE)
                return fail(p, -EBADMSG, "arguments are a %s, not a tuple", type_name(args));
        if (cls->type != PV_GLOBAL && cls->type != PV_OPAQUE)
                return fail(p, -EBADMSG, "instantiates a %s, which is not a class", type_name(cls));

        if (cls->type == PV_GLOBAL && cls->g->kind == G_ORDERED_DICT) {
                v = new_value(p, PV_DICT);  /* __new__ ignores its arguments */
                if (!v)
                        return fail_alloc(p);
        } else if (cls->type == PV_GLOBAL && cls->g->kind == G_SIZE) {
                r = call(p, cls, args, &v);
                if (r < 0)
                        return r;
        } else {
                r = opaque_of(p, args, &v);
                if (r >= 0 && kwargs)
                        r = seq_push(p, v, kwargs);
                if (r < 0)
                        return r;
        }
        return push(p, v);
}

/* BUILD: setstate.  Only opaque objects keep their state (a pickled module
 * keeps its parameters there); on dicts it is attributes such as
 * OrderedDict._metadata, not items; elsewhere it does not matter. */
static int op_build(parser *p) {
        pv *state = NULL, *inst = NULL;
        int r = pop(p, &state);
        if (r >= 0)
                r = peek(p, &inst);
        if (r < 0)
                return r;
        if (inst->type == PV_OPAQUE)
                return seq_push(p, inst, state);
        return 0;
}

static int op_global(parser *p) {
        const uint8_t *module = NULL, *name = NULL;
        size_t mlen = 0, nlen = 0;
        pv *v = NULL;
        int r = read_global_lines(p, &module, &mlen, &name, &nlen);
        if (r >= 0)
                r = resolve_global(p, module, mlen, name, nlen, &v);
        if (r < 0)
                return r;
        return push(p, v);
}

static int op_stack_global(parser *p) {
        pv *name = NULL, *module = NULL, *v = NULL;
        int r = pop(p, &name);
        if (r >= 0)
                r = pop(p, &module);
        if (r < 0)
                return r;
        if (module->type != PV_STR || name->type != PV_STR)
                return fail(p, -EBADMSG, "STACK_GLOBAL requires str");
        r = resolve_global(p, module->s.p, module->s.len, name->s.p, name->s.len, &v);
        if (r < 0)
                return r;
        return push(p, v);
}

/* INST: a class named inline, called with the marked items. */
static int op_inst(parser *p) {
        const uint8_t *module = NULL, *name = NULL;
        size_t mlen = 0, nlen = 0, start = 0;
        pv *cls = NULL, *args = NULL, *v = NULL;
        int r = read_global_lines(p, &module, &mlen, &name, &nlen);
        if (r >= 0)
                r = resolve_global(p, module, mlen, name, nlen, &cls);
        if (r >= 0)
                r = pop_mark(p, &start);
        if (r >= 0)
                r = seq_from_stack(p, PV_TUPLE, start, &args);
        if (r >= 0)
                r = call(p, cls, args, &v);
        if (r < 0)
                return r;
        return push(p, v);
}

/* OBJ: MARK cls args... OBJ */
static int op_obj(parser *p) {
        size_t start = 0;
        pv *cls = NULL, *args = NULL, *v = NULL;
        int r = pop_mark(p, &start);
        if (r < 0)
                return r;
        if (p->n_stack == start)
                return fail(p, -EBADMSG, "OBJ without a class");
        cls = p->stack[start];
        r = seq_from_stack(p, PV_TUPLE, start + 1, &args);
        if (r < 0)
                return r;
        p->n_stack = start;
        r = call(p, cls, args, &v);
        if (r < 0)
                return r;
        return push(p, v);
}

static int op_ext(parser *p, size_t size) {
        uint64_t code = 0;
        int r = take_uint(p, size, &code);
        if (r < 0)
                return r;
        if (code == 0 || (size == 4 && code > INT32_MAX))
                return fail(p, -EBADMSG, "extension code %" PRId32 " is not positive", (int32_t) code);
        /* The extension registry maps codes to arbitrary globals. */
        char name[48];
        int n = snprintf(name, sizeof(name), "_extension_registry[%" PRIu64 "]", code);
        r = record_unsafe(p, (const uint8_t *) "copyreg", 7, (const uint8_t *) name, (size_t) n);
        if (r < 0)
                return r;
        return push(p, new_value(p, PV_OPAQUE));
}

static int op_persid(parser *p, bool binary) {
        pv *pid = NULL, *v = NULL;
        int r;

        if (!binary) {
                const uint8_t *s = NULL;
                size_t n = 0;
                r = readline(p, &s, &n);
                if (r < 0)
                        return r;
                return fail(p, -EBADMSG, "a text persistent id is not a torch storage reference");
        }
        r = pop(p, &pid);
        if (r >= 0)
                r = persistent_load(p, pid, &v);
        if (r < 0)
                return r;
        return push(p, v);
}

static int op_pop(parser *p) {
        if (p->n_stack > fence(p)) {
                p->n_stack--;
                return 0;
        }
        if (p->n_marks > 0) {   /* CPython: POP on an empty mark frame drops the mark */
                p->n_marks--;
                return 0;
        }
        return fail(p, -EBADMSG, "stack underflow");
}

static int op_text_memo(parser *p, bool put) {
        const uint8_t *s = NULL;
        size_t n = 0;
        int64_t idx = 0;
        bool big = false;
        int r = readline(p, &s, &n);
        if (r >= 0)
                r = parse_int_text(p, s, n, &idx, &big);
        if (r < 0)
                return r;
        if (idx < 0)
                return fail(p, -EBADMSG, "negative memo index");
        if (big)
                return fail(p, -E2BIG, "memo index too large");
        return put ? memo_put(p, (uint64_t) idx) : memo_get(p, (uint64_t) idx);
}

static int op_bin_memo(parser *p, size_t size, bool put) {
        uint64_t idx = 0;
        int r = take_uint(p, size, &idx);
        if (r < 0)
                return r;
        return put ? memo_put(p, idx) : memo_get(p, idx);
}

static int op_sized(parser *p, size_t len_size, bool is_str, bool signed32) {
        uint64_t n = 0;
        const uint8_t *s = NULL;
        int r = take_uint(p, len_size, &n);
        if (r < 0)
                return r;
        if (signed32 && n > INT32_MAX)
                return fail(p, -EBADMSG, "negative length");
        if (n > p->len - p->pos)
                return fail(p, -EBADMSG, "declares %" PRIu64 " bytes, only %zu left", n, p->len - p->pos);
        r = take(p, n, &s);
        if (r < 0)
                return r;
        return is_str ? push_str(p, s, (size_t) n) : push_bytes(p, s, (size_t) n);
}

/* Executes one opcode; returns 1 after STOP with *result set. */
static int step(parser *p, pv **result) {
        uint64_t u = 0;
        const uint8_t *b = NULL;
        int r;

        switch (p->opcode) {
        case OP_PROTO:
                r = take_uint(p, 1, &u);
                if (r < 0)
                        return r;
                if (u > 5)
                        return fail(p, -ENOTSUP, "unsupported pickle protocol %" PRIu64, u);
                return 0;
        case OP_FRAME:
                r = take_uint(p, 8, &u);
                if (r < 0)
                        return r;
                if (u > p->len - p->pos)
                        return fail(p, -EBADMSG, "frame of %" PRIu64 " bytes, only %zu left", u, p->len - p->pos);
                return 0;
        case OP_STOP:
                r = pop(p, result);
                return r < 0 ? r : 1;

        case OP_MARK:
                return push_mark(p);
        case OP_POP:
                return op_pop(p);
        case OP_POP_MARK: {
                size_t start = 0;
                r = pop_mark(p, &start);
                if (r < 0)
                        return r;
                p->n_stack = start;
                return 0;
        }
        case OP_DUP: {
                pv *v = NULL;
                r = peek(p, &v);
                return r < 0 ? r : push(p, v);
        }

        case OP_NONE:
                return push(p, new_value(p, PV_NONE));
        case OP_NEWTRUE:
                return push_bool(p, true);
        case OP_NEWFALSE:
                return push_bool(p, false);
        case OP_INT:
                return op_int_text(p, false);
        case OP_LONG:
                return op_int_text(p, true);
        case OP_BININT:
                r = take_uint(p, 4, &u);
                return r < 0 ? r : push_int(p, (int32_t) (uint32_t) u, false);
        case OP_BININT1:
                r = take_uint(p, 1, &u);
                return r < 0 ? r : push_int(p, (int64_t) u, false);
        case OP_BININT2:
                r = take_uint(p, 2, &u);
                return r < 0 ? r : push_int(p, (int64_t) u, false);
        case OP_LONG1:
                return op_long_bin(p, 1);
        case OP_LONG4:
                return op_long_bin(p, 4);
        case OP_FLOAT:
                return op_float_text(p);
        case OP_BINFLOAT: {
                r = take(p, 8, &b);
                if (r < 0)
                        return r;
                uint64_t bits = 0;
                for (size_t i = 0; i < 8; i++)  /* big-endian */
                        bits = (bits << 8) | b[i];
                double f;
                memcpy(&f, &bits, sizeof(f));
                return push_float(p, f);
        }

        case OP_STRING:
                return op_string(p);
        case OP_BINSTRING:
                return op_sized(p, 4, true, true);
        case OP_SHORT_BINSTRING:
                return op_sized(p, 1, true, false);
        case OP_UNICODE:
                return op_unicode(p);
        case OP_BINUNICODE:
                return op_sized(p, 4, true, false);
        case OP_SHORT_BINUNICODE:
                return op_sized(p, 1, true, false);
        case OP_BINUNICODE8:
                return op_sized(p, 8, true, false);
        case OP_BINBYTES:
                return op_sized(p, 4, false, false);
        case OP_SHORT_BINBYTES:
                return op_sized(p, 1, false, false);
        case OP_BINBYTES8:
        case OP_BYTEARRAY8:
                return op_sized(p, 8, false, false);

        case OP_EMPTY_TUPLE:
                return op_tuple_n(p, 0);
        case OP_TUPLE1:
                return op_tuple_n(p, 1);
        case OP_TUPLE2:
                return op_tuple_n(p, 2);
        case OP_TUPLE3:
                return op_tuple_n(p, 3);
        case OP_TUPLE:
                return op_from_mark(p, PV_TUPLE);
        case OP_EMPTY_LIST:
                return push(p, new_value(p, PV_LIST));
        case OP_LIST:
                return op_from_mark(p, PV_LIST);
        case OP_APPEND:
                return op_add_single(p, PV_LIST, 1);
        case OP_APPENDS:
                return op_add_marked(p, PV_LIST);
        case OP_EMPTY_DICT:
                return push(p, new_value(p, PV_DICT));
        case OP_DICT:
                return op_from_mark(p, PV_DICT);
        case OP_SETITEM:
                return op_add_single(p, PV_DICT, 2);
        case OP_SETITEMS:
                return op_add_marked(p, PV_DICT);
        case OP_EMPTY_SET:
                return push(p, new_value(p, PV_SET));
        case OP_ADDITEMS:
                return op_add_marked(p, PV_SET);
        case OP_FROZENSET:
                return op_from_mark(p, PV_SET);

        case OP_GET:
                return op_text_memo(p, false);
        case OP_BINGET:
                return op_bin_memo(p, 1, false);
        case OP_LONG_BINGET:
                return op_bin_memo(p, 4, false);
        case OP_PUT:
                return op_text_memo(p, true);
        case OP_BINPUT:
                return op_bin_memo(p, 1, true);
        case OP_LONG_BINPUT:
                return op_bin_memo(p, 4, true);
        case OP_MEMOIZE:
                return memo_put(p, p->memo_count);

        case OP_GLOBAL:
                return op_global(p);
        case OP_STACK_GLOBAL:
                return op_stack_global(p);
        case OP_REDUCE:
                return op_reduce(p);
        case OP_BUILD:
                return op_build(p);
        case OP_NEWOBJ:
                return op_newobj(p, false);
        case OP_NEWOBJ_EX:
                return op_newobj(p, true);
        case OP_INST:
                return op_inst(p);
        case OP_OBJ:
                return op_obj(p);
        case OP_PERSID:
                return op_persid(p, false);
        case OP_BINPERSID:
                return op_persid(p, true);
        case OP_EXT1:
                return op_ext(p, 1);
        case OP_EXT2:
                return op_ext(p, 2);
        case OP_EXT4:
                return op_ext(p, 4);

        case OP_NEXT_BUFFER:
                return fail(p, -EBADMSG, "out-of-band buffers are not supported");
        case OP_READONLY_BUFFER: {
                pv *v = NULL;
                r = peek(p, &v);
                if (r < 0)
                        return r;
                if (v->type != PV_BYTES)
                        return fail(p, -EBADMSG, "READONLY_BUFFER on a %s", type_name(v));
                return 0;
        }
        }
        return fail(p, -EBADMSG, "unknown opcode 0x%02x", p->opcode);
}

/* ---- collecting tensors ---- */

typedef struct key_ref {
        const uint8_t *p;
        size_t len, index;
} key_ref;

static int key_ref_cmp(const void *a, const void *b) {
        const key_ref *x = a, *y = b;
        size_t n = x->len < y->len ? x->len : y->len;
        int c = memcmp(x->p, y->p, n);
        if (c != 0)
                return c;
        if (x->len != y->len)
                return x->len < y->len ? -1 : 1;
        return x->index < y->index ? -1 : x->index > y->index;
}

/* A dict built with SETITEM(S) can name a key twice; Python keeps the key's
 * first position with the last value.  Resolved once, in place, after STOP. */
static int dict_dedupe(parser *p, pv *d) {
        size_t n = d->seq.n / 2, n_str = 0;

        if (d->deduped || n < 2) {
                d->deduped = true;
                return 0;
        }
        d->deduped = true;

        _cleanup_(freep) key_ref *keys = calloc(n, sizeof(key_ref));
        if (!keys)
                return fail_at(p, d->offset, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
                pv *k = d->seq.items[2 * i];
                if (k->type == PV_STR)
                        keys[n_str++] = (key_ref) { .p = k->s.p, .len = k->s.len, .index = i };
        }
        qsort(keys, n_str, sizeof(key_ref), key_ref_cmp);

        bool any = false;
        for (size_t i = 0; i < n_str;) {
                size_t j = i + 1;
                while (j < n_str && keys[j].len == keys[i].len && memcmp(keys[j].p, keys[i].p, keys[i].len) == 0)
                        j++;
                if (j - i > 1) {
                        d->seq.items[2 * keys[i].index + 1] = d->seq.items[2 * keys[j - 1].index + 1];
                        for (size_t k = i + 1; k < j; k++)
                                d->seq.items[2 * keys[k].index] = NULL;
                        any = true;
                }
                i = j;
        }
        if (!any)
                return 0;

        size_t o = 0;
        for (size_t i = 0; i < n; i++)
                if (d->seq.items[2 * i]) {
                        d->seq.items[2 * o] = d->seq.items[2 * i];
                        d->seq.items[2 * o + 1] = d->seq.items[2 * i + 1];
                        o++;
                }
        d->seq.n = 2 * o;
        return 0;
}

/* Appends ".component" to the current dotted path; *saved restores it. */
static int path_push(parser *p, const pv *at, const char *s, size_t n, size_t *saved) {
        *saved = p->path_len;
        size_t need = p->path_len + (p->path_len > 0) + n + 1;
        if (need > NAME_MAX_BYTES)
                return fail_at(p, at->offset, -E2BIG, "tensor name longer than %u bytes", NAME_MAX_BYTES);
        if (MP_GROW(p->path, p->path_allocated, need) < 0)
                return fail_at(p, at->offset, -ENOMEM, "out of memory");
        if (p->path_len > 0)
                p->path[p->path_len++] = '.';
        memcpy(p->path + p->path_len, s, n);
        p->path_len += n;
        p->path[p->path_len] = 0;
        return 0;
}

static void path_pop(parser *p, size_t saved) {
        p->path_len = saved;
        if (p->path)
                p->path[saved] = 0;
}

static int key_component(parser *p, const pv *k, char *buf, size_t size, const char **ret, size_t *len) {
        switch (k->type) {
        case PV_STR:
                if (memchr(k->s.p, 0, k->s.len))
                        return fail_at(p, k->offset, -EBADMSG, "state dict key contains a NUL byte");
                *ret = (const char *) k->s.p;
                *len = k->s.len;
                return 0;
        case PV_INT:
                if (!k->big) {
                        *len = (size_t) snprintf(buf, size, "%" PRId64, k->i);
                        *ret = buf;
                        return 0;
                }
                break;
        case PV_BOOL:
                *ret = k->b ? "True" : "False";
                *len = strlen(*ret);
                return 0;
        case PV_NONE:
                *ret = "None";
                *len = 4;
                return 0;
        default:
                break;
        }
        *ret = "?";
        *len = 1;
        return 0;
}

static int emit_tensor(parser *p, const pv *v) {
        const pv_tensor *t = v->t;

        if (p->n_tensors >= MP_PICKLE_MAX_TENSORS)
                return fail_at(p, v->offset, -E2BIG, "more than %u tensors", MP_PICKLE_MAX_TENSORS);
        size_t klen = strlen(t->storage->key);
        p->name_bytes += p->path_len + klen + 2;
        if (p->name_bytes > NAMES_MAX_BYTES)
                return fail_at(p, v->offset, -E2BIG, "tensor names exceed %u MiB", NAMES_MAX_BYTES >> 20);
        if (MP_GROW(p->tensors, p->tensors_allocated, p->n_tensors + 1) < 0)
                return fail_at(p, v->offset, -ENOMEM, "out of memory");

        mp_pickle_tensor o = {
                .dtype = t->dtype, .n_dims = t->n_dims,
                .storage_offset = t->storage_offset, .storage_numel = t->storage_numel,
        };
        memcpy(o.shape, t->shape, sizeof(o.shape));
        memcpy(o.stride, t->stride, sizeof(o.stride));
        o.name = strndup(p->path ? p->path : "", p->path_len);
        o.storage_key = strdup(t->storage->key);
        if (!o.name || !o.storage_key) {
                free(o.name);
                free(o.storage_key);
                return fail_at(p, v->offset, -ENOMEM, "out of memory");
        }
        p->tensors[p->n_tensors++] = o;
        return 0;
}

static bool is_module_state_key(const pv *k) {
        return k->type == PV_STR && (text_eq(k->s.p, k->s.len, "_parameters") ||
                                     text_eq(k->s.p, k->s.len, "_buffers") ||
                                     text_eq(k->s.p, k->s.len, "_modules"));
}

/* Collects every tensor reachable from v, naming it by its dotted key path.
 * module_state: v is the state of an opaque object, where torch modules keep
 * _parameters/_buffers/_modules; those levels add no name component. */
static int walk(parser *p, pv *v, unsigned depth, bool module_state) {
        char num[32];
        size_t saved;
        int r = 0;

        if (++p->steps > WALK_MAX_STEPS)
                return fail_at(p, v->offset, -E2BIG, "object graph too large to walk (over %u values)", WALK_MAX_STEPS);

        switch (v->type) {
        case PV_TENSOR:
                return emit_tensor(p, v);
        case PV_DICT:
        case PV_LIST:
        case PV_TUPLE:
        case PV_SET:
        case PV_OPAQUE:
                break;
        default:
                return 0;
        }

        if (v->visiting)        /* a cycle: already being walked above */
                return 0;
        if (depth > MP_PICKLE_MAX_DEPTH)
                return fail_at(p, v->offset, -EBADMSG, "containers nested deeper than %u", MP_PICKLE_MAX_DEPTH);
        v->visiting = true;

        if (v->type == PV_DICT) {
                r = dict_dedupe(p, v);
                for (size_t i = 0; r >= 0 && i + 1 < v->seq.n; i += 2) {
                        pv *k = v->seq.items[i], *val = v->seq.items[i + 1];
                        if (module_state && is_module_state_key(k)) {
                                r = walk(p, val, depth + 1, false);
                                continue;
                        }
                        const char *c = NULL;
                        size_t n = 0;
                        r = key_component(p, k, num, sizeof(num), &c, &n);
                        if (r < 0)
                                break;
                        r = path_push(p, k, c, n, &saved);
                        if (r < 0)
                                break;
                        r = walk(p, val, depth + 1, false);
                        path_pop(p, saved);
                }
        } else if (v->type == PV_OPAQUE) {
                for (size_t i = 0; r >= 0 && i < v->seq.n; i++)
                        r = walk(p, v->seq.items[i], depth + 1, true);
        } else {
                for (size_t i = 0; r >= 0 && i < v->seq.n; i++) {
                        int n = snprintf(num, sizeof(num), "%zu", i);
                        r = path_push(p, v, num, (size_t) n, &saved);
                        if (r < 0)
                                break;
                        r = walk(p, v->seq.items[i], depth + 1, false);
                        path_pop(p, saved);
                }
        }

        v->visiting = false;
        return r;
}

/* ---- entry points ---- */

static void free_tensors(mp_pickle_tensor *t, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(t[i].name);
                free(t[i].storage_key);
        }
        free(t);
}

static void free_unsafe(mp_pickle_global *g, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(g[i].module);
                free(g[i].name);
        }
        free(g);
}

static void parser_done(parser *p) {
        free(p->stack);
        free(p->marks);
        free(p->memo);
        free(p->path);
        arena_free(p);
        free_tensors(p->tensors, p->n_tensors);
        free_unsafe(p->unsafe, p->n_unsafe);
}

/* A malformed pickle is refused, but what it references before the error
 * would run when Python loads it: the error says so. */
static void mention_unsafe(const parser *p) {
        if (!p->err || p->n_unsafe == 0)
                return;
        size_t n = strlen(p->err->reason);
        if (p->n_unsafe == 1)
                snprintf(p->err->reason + n, sizeof(p->err->reason) - n,
                         " (before that, it references %s.%s, outside the allow-list)",
                         p->unsafe[0].module, p->unsafe[0].name);
        else
                snprintf(p->err->reason + n, sizeof(p->err->reason) - n,
                         " (before that, it references %s.%s and %zu more globals outside the allow-list)",
                         p->unsafe[0].module, p->unsafe[0].name, p->n_unsafe - 1);
}

int mp_pickle_parse(const char *label, const uint8_t *buf, size_t len, mp_pickle_result *ret,
                    mp_error *err) {
        assert(buf || len == 0);
        assert(ret);

        *ret = (mp_pickle_result) {0};
        _cleanup_(parser_done) parser p = { .label = label, .buf = buf, .len = len, .err = err };
        pv *result = NULL;
        int r = 0;

        while (p.pos < p.len) {
                p.op = p.pos;
                p.opcode = p.buf[p.pos++];
                r = step(&p, &result);
                if (r != 0)
                        break;
        }
        if (r < 0) {
                mention_unsafe(&p);
                return r;
        }
        if (!result)
                return mp_error_set(err, -EBADMSG, label, (int64_t) len, "pickle truncated: no STOP opcode");

        r = walk(&p, result, 0, false);
        if (r < 0)
                return r;

        *ret = (mp_pickle_result) {
                .tensors = TAKE_PTR(p.tensors), .n_tensors = p.n_tensors,
                .unsafe = TAKE_PTR(p.unsafe), .n_unsafe = p.n_unsafe,
        };
        p.n_tensors = p.n_unsafe = 0;
        return 0;
}

void mp_pickle_result_free(mp_pickle_result *r) {
        if (!r)
                return;
        free_tensors(r->tensors, r->n_tensors);
        free_unsafe(r->unsafe, r->n_unsafe);
        *r = (mp_pickle_result) {0};
}
