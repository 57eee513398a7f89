/* open.c - mp_model_open(): decide what a user-supplied path is (a weight
 * file, a model directory, a hub cache repo or snapshot, an Ollama manifest
 * or "ollama:NAME"), collect the model's files, then let each format reader
 * fill in tensors, architecture and tokenizer.
 *
 * Weight files are the model: if one does not parse, opening fails.  Config
 * and tokenizer files only describe it: if one does not parse, the model is
 * still opened and the problem is recorded as a finding. */
#include "formats/model.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/config.h"
#include "formats/gguf.h"
#include "formats/hub.h"
#include "formats/ollama.h"
#include "formats/safetensors.h"
#include "formats/torch.h"
#include "util/macro.h"
#include "util/source.h"

/* Small files we read whole; larger ones are refused (hostile input). */
#define MAX_CONFIG_BYTES     (16u * 1024 * 1024)
#define MAX_TOKENIZER_BYTES  (256u * 1024 * 1024)
#define MAX_DIR_ENTRIES      100000

static int find_file(const mp_model *m, const char *rel_path) {
        for (size_t i = 0; i < m->n_files; i++)
                if (strcmp(m->files[i].rel_path, rel_path) == 0)
                        return (int) i;
        return -1;
}

static int add_by_path(mp_model *m, const char *path, const char *rel_path, mp_file_role role,
                       mp_format format, mp_error *err) {
        struct stat st;
        if (stat(path, &st) < 0)
                return mp_error_set(err, -errno, path, -1, "cannot stat: %s", strerror(errno));
        if (!S_ISREG(st.st_mode))
                return mp_error_set(err, -EBADMSG, path, -1, "not a regular file");
        int r = mp_model_add_file(m, path, rel_path, role, format, (uint64_t) st.st_size);
        if (r < 0)
                return mp_error_set(err, r, path, -1, "out of memory");
        return r;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Reads a shard index and adds the shards it names, in its order. */
static int add_shards_from_index(mp_model *m, const char *dir, size_t index_file, mp_format format,
                                 mp_error *err) {
        _cleanup_(freep) char *buf = NULL;
        size_t len;
        const mp_file *idx = &m->files[index_file];
        int r = mp_read_file_limited(idx->path, idx->path, MAX_CONFIG_BYTES, &buf, &len, err);
        if (r < 0)
                return r;

        char **shards = NULL;
        r = mp_safetensors_index_parse(idx->path, buf, len, &shards, err);
        if (r < 0)
                return r;

        for (size_t i = 0; shards[i] && r >= 0; i++) {
                if (find_file(m, shards[i]) >= 0)
                        continue;
                _cleanup_(freep) char *p = NULL;
                if (asprintf(&p, "%s/%s", dir, shards[i]) < 0) {
                        r = mp_error_set(err, -ENOMEM, idx->path, -1, "out of memory");
                        break;
                }
                struct stat st;
                if (stat(p, &st) < 0) {
                        r = mp_error_set(err, -ENOENT, idx->path, -1, "shard '%s' named by the index is missing",
                                         shards[i]);
                        break;
                }
                r = add_by_path(m, p, shards[i], MP_ROLE_WEIGHTS, format, err);
        }
        for (size_t i = 0; shards[i]; i++)
                free(shards[i]);
        free(shards);
        return r < 0 ? r : 0;
}

/* A plain model directory: config.json + tokenizer + weights, one level. */
static int collect_directory(mp_model *m, const char *dir, mp_error *err) {
        _cleanup_(closedirp) DIR *d = opendir(dir);
        if (!d)
                return mp_error_set(err, -errno, dir, -1, "cannot open directory: %s", strerror(errno));

        _cleanup_(freep) char **names = NULL;
        size_t n_names = 0, allocated = 0;
        int r = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                if (n_names >= MAX_DIR_ENTRIES) {
                        r = mp_error_set(err, -E2BIG, dir, -1, "more than %d entries", MAX_DIR_ENTRIES);
                        break;
                }
                if (!mp_classify_file_name(de->d_name, NULL, NULL))
                        continue;
                if (MP_GROW(names, allocated, n_names + 1) < 0 || !(names[n_names] = strdup(de->d_name))) {
                        r = mp_error_set(err, -ENOMEM, dir, -1, "out of memory");
                        break;
                }
                n_names++;
        }
        if (r >= 0 && n_names > 0)
                qsort(names, n_names, sizeof(char *), cmp_str);

        /* Which weights make the model: an index names its shards; else all
         * safetensors; else torch files; else exactly one GGUF. */
        int index_file = -1;
        mp_format weight_format = MP_FORMAT_UNKNOWN;
        size_t n_gguf = 0;
        for (size_t i = 0; r >= 0 && i < n_names; i++) {
                mp_file_role role;
                mp_format format;
                mp_classify_file_name(names[i], &role, &format);
                if (role == MP_ROLE_WEIGHTS) {
                        if (format == MP_FORMAT_GGUF)
                                n_gguf++;
                        if (weight_format == MP_FORMAT_UNKNOWN || format == MP_FORMAT_SAFETENSORS ||
                            (format == MP_FORMAT_PYTORCH_ZIP && weight_format == MP_FORMAT_GGUF))
                                weight_format = format;
                }
        }
        if (r >= 0 && weight_format == MP_FORMAT_UNKNOWN)
                r = mp_error_set(err, -ENOENT, dir, -1, "no model weights (safetensors, GGUF, PyTorch) found");
        if (r >= 0 && weight_format == MP_FORMAT_GGUF && n_gguf > 1)
                r = mp_error_set(err, -EINVAL, dir, -1, "directory holds %zu GGUF files, each a model: name one",
                                 n_gguf);

        const char *index_pattern = weight_format == MP_FORMAT_SAFETENSORS ? "*.safetensors.index.json"
                                                                           : "pytorch_model*.bin.index.json";
        bool has_index = false;
        for (size_t i = 0; i < n_names; i++)
                has_index |= fnmatch(index_pattern, names[i], 0) == 0;

        for (size_t i = 0; r >= 0 && i < n_names; i++) {
                mp_file_role role;
                mp_format format;
                mp_classify_file_name(names[i], &role, &format);
                if (role == MP_ROLE_WEIGHTS && format != weight_format)
                        continue;       /* e.g. a GGUF export beside the safetensors */
                if (role == MP_ROLE_INDEX && fnmatch(index_pattern, names[i], 0) != 0)
                        continue;       /* an index of the other weight format */
                /* With an index, only the shards it names belong to the model. */
                if (role == MP_ROLE_WEIGHTS && has_index)
                        continue;
                _cleanup_(freep) char *p = NULL;
                if (asprintf(&p, "%s/%s", dir, names[i]) < 0)
                        r = mp_error_set(err, -ENOMEM, dir, -1, "out of memory");
                else
                        r = add_by_path(m, p, names[i], role, format, err);
                if (r >= 0 && role == MP_ROLE_INDEX)
                        index_file = r;
        }
        if (r >= 0 && index_file >= 0)
                r = add_shards_from_index(m, dir, (size_t) index_file, weight_format, err);

        for (size_t i = 0; i < n_names; i++)
                free(names[i]);
        if (r < 0)
                return r;

        m->layout = MP_LAYOUT_DIRECTORY;
        return 0;
}

/* A single file: its format comes from its first bytes, not its name. */
static int sniff_format(const char *path, mp_format *ret, mp_error *err) {
        mp_source src;
        int r = mp_source_open(&src, path, path, err);
        if (r < 0)
                return r;

        uint8_t head[9] = {0};
        size_t n = src.size < sizeof(head) ? (size_t) src.size : sizeof(head);
        r = mp_source_pread(&src, head, n, 0, err);
        mp_source_close(&src);
        if (r < 0)
                return r;

        if (n >= 4 && memcmp(head, "GGUF", 4) == 0)
                *ret = MP_FORMAT_GGUF;
        else if (n >= 4 && memcmp(head, "PK\x03\x04", 4) == 0)
                *ret = MP_FORMAT_PYTORCH_ZIP;
        else if (n == 9 && head[8] == '{')
                *ret = MP_FORMAT_SAFETENSORS;
        else if (n >= 2 && head[0] == 0x80 && head[1] <= 5)
                return mp_error_set(err, -ENOTSUP, path, 0,
                                    "a bare pickle (legacy torch.save or .pkl) is not supported; "
                                    "only zip checkpoints are read");
        else
                return mp_error_set(err, -EBADMSG, path, 0,
                                    "not a model file (no safetensors, GGUF or PyTorch zip signature)");
        return 0;
}

static int collect_single_file(mp_model *m, const char *path, mp_error *err) {
        mp_format format = MP_FORMAT_UNKNOWN;
        int r = sniff_format(path, &format, err);
        if (r < 0)
                return r;

        const char *base = strrchr(path, '/');
        r = add_by_path(m, path, base ? base + 1 : path, MP_ROLE_WEIGHTS, format, err);
        if (r < 0)
                return r;
        m->layout = MP_LAYOUT_FILE;
        return 0;
}

static int load_weights(mp_model *m, mp_error *err) {
        for (size_t i = 0; i < m->n_files; i++) {
                mp_file *f = &m->files[i];
                if (f->role != MP_ROLE_WEIGHTS)
                        continue;

                mp_source src;
                int r = mp_source_open(&src, f->path, f->path, err);
                if (r < 0)
                        return r;
                switch (f->format) {
                case MP_FORMAT_SAFETENSORS: r = mp_safetensors_load(m, i, &src, err); break;
                case MP_FORMAT_GGUF:        r = mp_gguf_load(m, i, &src, err); break;
                case MP_FORMAT_PYTORCH_ZIP: r = mp_torch_load(m, i, &src, err); break;
                default:
                        r = mp_error_set(err, -ENOTSUP, f->path, -1, "weights in format %s cannot be read",
                                         mp_format_name(f->format));
                }
                if (r >= 0 && src.size != f->size)
                        r = mp_error_set(err, -EIO, f->path, -1, "file changed size while being opened");
                mp_source_close(&src);
                if (r < 0)
                        return r;
                if (m->format == MP_FORMAT_UNKNOWN)
                        m->format = f->format;
        }
        return 0;
}

/* Records a failure of an auxiliary file as a finding and carries on. */
static int aux_failed(mp_model *m, const mp_error *e) {
        char msg[MP_ERROR_FILE_MAX + MP_ERROR_REASON_MAX + 32];
        mp_error_format(e, msg, sizeof(msg));
        return mp_model_add_finding(m, MP_FINDING_UNPARSEABLE, e->file, e->offset, "%s", msg);
}

static int load_config(mp_model *m) {
        int i = find_file(m, "config.json");
        if (i < 0 || m->layout == MP_LAYOUT_OLLAMA)
                return 0;

        mp_error e;
        mp_error_clear(&e);
        _cleanup_(freep) char *buf = NULL;
        size_t len;
        int r = mp_read_file_limited(m->files[i].path, m->files[i].rel_path, MAX_CONFIG_BYTES, &buf, &len, &e);
        if (r >= 0)
                r = mp_config_load(m, m->files[i].rel_path, buf, len, &e);
        return r < 0 ? aux_failed(m, &e) : 0;
}

static int parse_tokenizer_file(mp_model *m, int i, int merges, mp_tokenizer **ret, mp_error *e) {
        _cleanup_(freep) char *buf = NULL, *mbuf = NULL;
        size_t len, mlen = 0;
        const mp_file *f = &m->files[i];

        int r = mp_read_file_limited(f->path, f->rel_path, MAX_TOKENIZER_BYTES, &buf, &len, e);
        if (r < 0)
                return r;
        if (f->format == MP_FORMAT_SENTENCEPIECE)
                return mp_sentencepiece_parse(f->rel_path, (const uint8_t *) buf, len, ret, e);
        if (strcmp(f->rel_path, "vocab.json") == 0) {
                if (merges >= 0) {
                        r = mp_read_file_limited(m->files[merges].path, m->files[merges].rel_path,
                                                 MAX_TOKENIZER_BYTES, &mbuf, &mlen, e);
                        if (r < 0)
                                return r;
                }
                return mp_tokenizer_vocab_merges_parse(f->rel_path, buf, len,
                                                       merges >= 0 ? m->files[merges].rel_path : NULL,
                                                       mbuf, mlen, ret, e);
        }
        return mp_tokenizer_json_parse(f->rel_path, buf, len, ret, e);
}

/* tokenizer.json wins over vocab.json+merges.txt over tokenizer.model; a
 * GGUF's embedded tokenizer is used when the directory has none. */
static int load_tokenizer(mp_model *m) {
        if (m->layout == MP_LAYOUT_OLLAMA)
                return 0;

        static const char *const order[] = { "tokenizer.json", "vocab.json", "tokenizer.model" };
        int r;
        for (size_t k = 0; k < ELEMENTSOF(order); k++) {
                int i = find_file(m, order[k]);
                if (i < 0)
                        continue;

                mp_error e;
                mp_error_clear(&e);
                mp_tokenizer *t = NULL;
                r = parse_tokenizer_file(m, i, find_file(m, "merges.txt"), &t, &e);
                if (r < 0) {
                        r = aux_failed(m, &e);
                        if (r < 0)
                                return r;
                        continue;
                }
                mp_tokenizer_free(m->tokenizer);
                m->tokenizer = t;
                break;
        }

        int i = find_file(m, "tokenizer_config.json");
        if (i < 0 || !m->tokenizer)
                return 0;
        mp_error e;
        mp_error_clear(&e);
        _cleanup_(freep) char *buf = NULL;
        size_t len;
        r = mp_read_file_limited(m->files[i].path, m->files[i].rel_path, MAX_CONFIG_BYTES, &buf, &len, &e);
        if (r >= 0)
                r = mp_tokenizer_config_apply(m->tokenizer, m->files[i].rel_path, buf, len, &e);
        return r < 0 ? aux_failed(m, &e) : 0;
}

static int collect(mp_model *m, const char *path, const mp_open_options *opts, mp_error *err) {
        if (strncmp(path, "ollama:", 7) == 0) {
                _cleanup_(freep) char *manifest = NULL;
                int r = mp_ollama_resolve_name(opts ? opts->ollama_store : NULL, path + 7, &manifest, err);
                if (r < 0)
                        return r;
                return mp_ollama_collect(m, manifest, err);
        }

        struct stat st;
        if (stat(path, &st) < 0)
                return mp_error_set(err, -errno, path, -1, "%s", strerror(errno));

        if (S_ISDIR(st.st_mode))
                return mp_hub_detect(path) ? mp_hub_collect(m, path, err) : collect_directory(m, path, err);
        if (!S_ISREG(st.st_mode))
                return mp_error_set(err, -EBADMSG, path, -1, "not a regular file or directory");
        if (mp_ollama_detect(path))
                return mp_ollama_collect(m, path, err);
        return collect_single_file(m, path, err);
}

int mp_model_open(const char *path, const mp_open_options *opts, mp_model **ret, mp_error *err) {
        assert(path);
        assert(ret);

        /* Keep the user's spelling for ollama names; make paths absolute so
         * that records say where the model is, but do not resolve symlinks:
         * hub snapshots are recognised by their path. */
        _cleanup_(freep) char *abs = NULL;
        if (path[0] == '/' || strncmp(path, "ollama:", 7) == 0)
                abs = strdup(path);
        else {
                char cwd[PATH_MAX];
                if (!getcwd(cwd, sizeof(cwd)))
                        return mp_error_set(err, -errno, path, -1, "cannot get working directory");
                if (asprintf(&abs, "%s/%s", cwd, path) < 0)
                        abs = NULL;
        }
        if (!abs)
                return mp_error_set(err, -ENOMEM, path, -1, "out of memory");
        size_t l = strlen(abs);
        while (l > 1 && abs[l - 1] == '/')
                abs[--l] = 0;

        _cleanup_(mp_model_freep) mp_model *m = mp_model_new(abs);
        if (!m)
                return mp_error_set(err, -ENOMEM, path, -1, "out of memory");

        int r = collect(m, abs, opts, err);
        if (r < 0)
                return r;
        if (!m->name) {
                const char *base = strrchr(abs, '/');
                m->name = strdup(base && base[1] ? base + 1 : abs);
                if (!m->name)
                        return mp_error_set(err, -ENOMEM, path, -1, "out of memory");
        }

        r = load_config(m);
        if (r >= 0)
                r = load_weights(m, err);
        else
                mp_error_set(err, r, path, -1, "out of memory");
        if (r < 0)
                return r;
        r = load_tokenizer(m);
        if (r < 0)
                return mp_error_set(err, r, path, -1, "out of memory");

        *ret = TAKE_PTR(m);
        return 0;
}
