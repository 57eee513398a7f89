/* ollama.c - the Ollama model store:
 *
 *   <store>/manifests/<registry>/<namespace>/<model>/<tag>   JSON manifest
 *   <store>/blobs/sha256-<64 hex>                            content-addressed
 *
 * A manifest is a small JSON document naming the config and every layer of a
 * model by digest.  We parse it (bounded; duplicate keys refused, so that we
 * never read a different layer than Ollama would) and add the manifest, the
 * config blob and every layer blob to the mp_model with the digest the
 * manifest promises; the pass verifies the digests.  Nothing here reads a
 * blob: the GGUF model layer is parsed later, by format. */
#include "formats/ollama.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "util/macro.h"
#include "util/strutil.h"
#include "util/source.h"

#define OLLAMA_MANIFEST_MAX     (1u << 20)
#define OLLAMA_LAYERS_MAX       1024
#define OLLAMA_NAME_MAX         1024
#define OLLAMA_SHORT_MAX        64
#define OLLAMA_DEFAULT_REGISTRY "registry.ollama.ai"
#define OLLAMA_DEFAULT_NS       "library"
#define OLLAMA_DEFAULT_TAG      "latest"
#define MEDIA_PREFIX            "application/vnd.ollama.image."
#define DIGEST_PREFIX           "sha256:"




static bool is_regular_file(const char *path) {
        struct stat st;
        return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* A manifest's place in its store. */
typedef struct manifest_location {
        char *path;             /* real directory + the manifest's own name */
        char *store;
        char *registry, *ns, *model, *tag;
} manifest_location;

static void manifest_location_clear(manifest_location *l) {
        free(l->path);
        free(l->store);
        free(l->registry);
        free(l->ns);
        free(l->model);
        free(l->tag);
        *l = (manifest_location) {};
}

/* Splits <store>/manifests/<registry>/<ns>/<model>/<tag>.  The directories
 * are resolved with realpath() (a store may live behind a symlink) but the
 * manifest's own name is kept: it is the tag. */
static int manifest_locate(const char *path, manifest_location *ret) {
        _cleanup_(manifest_location_clear) manifest_location l = {};

        const char *slash = strrchr(path, '/');
        const char *file = slash ? slash + 1 : path;
        if (!*file || strcmp(file, ".") == 0 || strcmp(file, "..") == 0)
                return -EINVAL;

        _cleanup_(freep) char *dir = slash ? strndup(path, (size_t) (slash - path)) : strdup(".");
        if (!dir)
                return -ENOMEM;
        _cleanup_(freep) char *real = realpath(*dir ? dir : "/", NULL);
        if (!real)
                return -errno;
        if (!(l.path = mp_path_join(real, file)) || !(l.tag = strdup(file)))
                return -ENOMEM;

        char **parts[3] = { &l.model, &l.ns, &l.registry };
        for (size_t i = 0; i <= ELEMENTSOF(parts); i++) {
                char *s = strrchr(real, '/');
                if (!s || !s[1])
                        return -EINVAL;
                if (i < ELEMENTSOF(parts)) {
                        if (!(*parts[i] = strdup(s + 1)))
                                return -ENOMEM;
                } else if (strcmp(s + 1, "manifests") != 0)
                        return -EINVAL;
                *s = 0;
        }
        if (!(l.store = strdup(*real ? real : "/")))
                return -ENOMEM;

        *ret = l;
        l = (manifest_location) {};
        return 0;
}

bool mp_ollama_detect(const char *path) {
        assert(path);
        _cleanup_(manifest_location_clear) manifest_location l = {};
        return manifest_locate(path, &l) >= 0 && is_regular_file(l.path);
}

/* The display name Ollama would show: defaults left out. */
static int display_name(const manifest_location *l, char **ret) {
        bool reg = strcmp(l->registry, OLLAMA_DEFAULT_REGISTRY) != 0;
        bool ns = reg || strcmp(l->ns, OLLAMA_DEFAULT_NS) != 0;
        char *s = NULL;
        if (asprintf(&s, "%s%s%s%s%s:%s", reg ? l->registry : "", reg ? "/" : "", ns ? l->ns : "", ns ? "/" : "",
                     l->model, l->tag) < 0)
                return -ENOMEM;
        *ret = s;
        return 0;
}

typedef struct manifest_ctx {
        mp_model *m;
        mp_error *err;
        const char *label;      /* manifest path, for errors and findings */
        const char *text;       /* manifest text, to find offsets of bad values */
        const char *store;
        char *blobs_real;       /* realpath of <store>/blobs, NULL if missing */
        size_t first_file;      /* m->files we added start here */
} manifest_ctx;

/* jansson keeps no positions for values, so a bad string value is located by
 * searching for it, quoted, in the text: its first occurrence, or -1. */
static int64_t locate_value(const manifest_ctx *c, const char *value) {
        _cleanup_(freep) char *quoted = NULL;
        if (asprintf(&quoted, "\"%s\"", value) < 0)
                return -1;
        const char *p = strstr(c->text, quoted);
        return p ? (int64_t) (p - c->text) : -1;
}

/* The lowercase hex of a "sha256:<64 hex>" digest field. */
static int get_digest(const manifest_ctx *c, const json_t *obj, const char *field, const char **ret_hex) {
        const json_t *d = json_object_get(obj, "digest");
        if (!json_is_string(d))
                return mp_error_set(c->err, -EBADMSG, c->label, -1, "%s.digest: missing or not a string", field);

        const char *s = json_string_value(d);
        size_t n = json_string_length(d);
        size_t p = strlen(DIGEST_PREFIX);
        if (n != p + 64 || strncmp(s, DIGEST_PREFIX, p) != 0 || !mp_is_lower_hex(s + p, 64)) {
                char v[96];
                mp_printable(v, sizeof(v), s);
                return mp_error_set(c->err, -EBADMSG, c->label, locate_value(c, s),
                                    "%s.digest: \"%s\" is not \"sha256:\" followed by 64 lowercase hex digits",
                                    field, v);
        }
        *ret_hex = s + p;
        return 0;
}

static int get_size(const manifest_ctx *c, const json_t *obj, const char *field, uint64_t *ret) {
        const json_t *s = json_object_get(obj, "size");
        if (!json_is_integer(s) || json_integer_value(s) < 0)
                return mp_error_set(c->err, -EBADMSG, c->label, -1, "%s.size: missing or not a non-negative integer",
                                    field);
        *ret = (uint64_t) json_integer_value(s);
        return 0;
}

/* The blob file of a digest.  0 with *ret_path set, 0 with *ret_path NULL
 * when the blob is a link out of the store (a finding: it is not read), or
 * an error. */
static int find_blob(manifest_ctx *c, const char *field, const char *hex, char **ret_path, uint64_t *ret_size) {
        *ret_path = NULL;

        /* Ollama names blobs sha256-<hex>; older releases wrote
         * sha256:<hex>, which long-lived stores may still hold. */
        static const char *const separators[] = { "-", ":" };
        _cleanup_(freep) char *path = NULL;
        struct stat st;
        int r = -ENOENT;
        for (size_t i = 0; i < ELEMENTSOF(separators) && r == -ENOENT; i++) {
                free(path);
                if (asprintf(&path, "%s/blobs/sha256%s%s", c->store, separators[i], hex) < 0) {
                        path = NULL;
                        return mp_error_set(c->err, -ENOMEM, c->label, -1, "out of memory");
                }
                r = lstat(path, &st) < 0 ? -errno : 0;
        }

        char digest[sizeof(DIGEST_PREFIX) + 64];
        snprintf(digest, sizeof(digest), DIGEST_PREFIX "%s", hex);
        int64_t at = locate_value(c, digest);
        if (r == -ENOENT)
                return mp_error_set(c->err, -ENOENT, c->label, at, "%s: blob sha256:%s is missing (%s/blobs)",
                                    field, hex, c->store);
        if (r < 0)
                return mp_error_set(c->err, r, path, -1, "cannot stat blob: %s", strerror(-r));

        if (S_ISLNK(st.st_mode)) {
                _cleanup_(freep) char *real = realpath(path, NULL);
                if (!real && (errno == ENOENT || errno == ENOTDIR))
                        return mp_error_set(c->err, -ENOENT, c->label, at,
                                            "%s: blob sha256:%s is a dangling link", field, hex);
                if (!real || !c->blobs_real || !mp_is_direct_child(real, c->blobs_real)) {
                        char t[256];
                        mp_printable(t, sizeof(t), real ? real : "unresolvable");
                        r = mp_model_add_finding(c->m, MP_FINDING_SUSPICIOUS, path, -1,
                                                 "%s: blob is a link out of the store (-> %s): not read", field, t);
                        return r < 0 ? mp_error_set(c->err, r, path, -1, "out of memory") : 0;
                }
                free(path);
                path = TAKE_PTR(real);
                if (stat(path, &st) < 0)
                        return mp_error_set(c->err, -errno, path, -1, "cannot stat blob: %s", strerror(errno));
        }
        if (!S_ISREG(st.st_mode))
                return mp_error_set(c->err, -EBADMSG, c->label, at, "%s: blob %s is not a regular file", field,
                                    path);

        *ret_size = (uint64_t) st.st_size;
        *ret_path = TAKE_PTR(path);
        return 0;
}

static bool rel_path_taken(const manifest_ctx *c, const char *rel) {
        for (size_t i = c->first_file; i < c->m->n_files; i++)
                if (strcmp(c->m->files[i].rel_path, rel) == 0)
                        return true;
        return false;
}

/* Adds one blob named by obj's digest, checking the declared size.  A blob
 * that is a link out of the store is left out (a finding) and *ret_skipped
 * says so. */
static int add_blob(manifest_ctx *c, const json_t *obj, const char *field, const char *rel, mp_file_role role,
                    mp_format format, bool *ret_skipped) {
        const char *hex = NULL;
        uint64_t declared = 0, size = 0;
        int r = get_digest(c, obj, field, &hex);
        if (r >= 0)
                r = get_size(c, obj, field, &declared);
        if (r < 0)
                return r;

        _cleanup_(freep) char *path = NULL;
        r = find_blob(c, field, hex, &path, &size);
        if (r < 0)
                return r;
        *ret_skipped = !path;
        if (!path)
                return 0;

        int i = mp_model_add_file(c->m, path, rel, role, format, size);
        if (i < 0)
                return mp_error_set(c->err, i, c->label, -1, "out of memory");
        c->m->files[i].expect_kind = MP_EXPECT_SHA256;
        if (!(c->m->files[i].expect_hex = strdup(hex)))
                return mp_error_set(c->err, -ENOMEM, c->label, -1, "out of memory");

        /* A short blob is most likely an interrupted pull; either way the
         * digest check will fail too, this says why. */
        if (size != declared) {
                r = mp_model_add_finding(c->m, MP_FINDING_INCOMPLETE, path, -1,
                                         "%s: size differs from manifest (declared %" PRIu64 ", blob has %" PRIu64 ")",
                                         field, declared, size);
                if (r < 0)
                        return mp_error_set(c->err, r, c->label, -1, "out of memory");
        }
        return 0;
}

/* "application/vnd.ollama.image.template; name=x" -> "template", or NULL
 * for media types of other vendors or odd spellings. */
static char *media_short_name(const char *media) {
        if (strncmp(media, MEDIA_PREFIX, strlen(MEDIA_PREFIX)) != 0)
                return NULL;
        const char *s = media + strlen(MEDIA_PREFIX);
        size_t n = strcspn(s, ";");
        while (n > 0 && s[n - 1] == ' ')
                n--;
        if (n == 0 || n > OLLAMA_SHORT_MAX)
                return NULL;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || strchr("._+-", s[i])))
                        return NULL;
        return strndup(s, n);
}

static int add_layer(manifest_ctx *c, const json_t *layer, size_t index, bool *has_model) {
        static const struct {
                const char *name;
                mp_file_role role;
                mp_format format;
        } kinds[] = {
                { "model",     MP_ROLE_WEIGHTS, MP_FORMAT_GGUF },
                { "projector", MP_ROLE_WEIGHTS, MP_FORMAT_GGUF },       /* multimodal vision tower */
                { "adapter",   MP_ROLE_OTHER,   MP_FORMAT_BLOB },       /* LoRA GGUF, not part of the weights */
                { "template",  MP_ROLE_OTHER,   MP_FORMAT_TEXT },
                { "system",    MP_ROLE_OTHER,   MP_FORMAT_TEXT },
                { "license",   MP_ROLE_OTHER,   MP_FORMAT_TEXT },
                { "params",    MP_ROLE_OTHER,   MP_FORMAT_JSON },
                { "messages",  MP_ROLE_OTHER,   MP_FORMAT_JSON },
        };

        char field[32];
        snprintf(field, sizeof(field), "layers[%zu]", index);
        if (!json_is_object(layer))
                return mp_error_set(c->err, -EBADMSG, c->label, -1, "%s: not an object", field);
        const json_t *media = json_object_get(layer, "mediaType");
        if (!json_is_string(media))
                return mp_error_set(c->err, -EBADMSG, c->label, -1, "%s.mediaType: missing or not a string", field);

        _cleanup_(freep) char *short_name = media_short_name(json_string_value(media));
        mp_file_role role = MP_ROLE_OTHER;
        mp_format format = MP_FORMAT_BLOB;
        for (size_t k = 0; short_name && k < ELEMENTSOF(kinds); k++)
                if (strcmp(short_name, kinds[k].name) == 0) {
                        role = kinds[k].role;
                        format = kinds[k].format;
                }

        bool is_model = short_name && strcmp(short_name, "model") == 0;

        /* rel_path is the digest key and must be unique: a repeated media
         * type gets "#<layer index>", a character short names never hold. */
        _cleanup_(freep) char *rel = NULL;
        if (short_name && !rel_path_taken(c, short_name))
                rel = TAKE_PTR(short_name);
        else if (asprintf(&rel, "%s#%zu", short_name ? short_name : "layer", index) < 0)
                rel = NULL;
        if (!rel)
                return mp_error_set(c->err, -ENOMEM, c->label, -1, "out of memory");

        bool skipped = false;
        int r = add_blob(c, layer, field, rel, role, format, &skipped);
        if (r < 0)
                return r;
        if (is_model && skipped)
                return mp_error_set(c->err, -EBADMSG, c->label, -1, "%s: the model blob is a link out of the store",
                                    field);
        *has_model = *has_model || is_model;
        return 0;
}

static int add_manifest(manifest_ctx *c, const json_t *root) {
        if (!json_is_object(root))
                return mp_error_set(c->err, -EBADMSG, c->label, 0, "manifest is not a JSON object");

        const json_t *v = json_object_get(root, "schemaVersion");
        if (v && !(json_is_integer(v) && json_integer_value(v) == 2))
                return mp_error_set(c->err, -ENOTSUP, c->label, -1, "schemaVersion: only version 2 is supported");

        const json_t *config = json_object_get(root, "config");
        if (config) {
                if (!json_is_object(config))
                        return mp_error_set(c->err, -EBADMSG, c->label, -1, "config: not an object");
                bool skipped;
                int r = add_blob(c, config, "config", "config", MP_ROLE_CONFIG, MP_FORMAT_JSON, &skipped);
                if (r < 0)
                        return r;
        }

        const json_t *layers = json_object_get(root, "layers");
        if (!json_is_array(layers))
                return mp_error_set(c->err, -EBADMSG, c->label, -1, "layers: missing or not an array");
        if (json_array_size(layers) > OLLAMA_LAYERS_MAX)
                return mp_error_set(c->err, -E2BIG, c->label, -1, "layers: %zu layers, limit %d",
                                    json_array_size(layers), OLLAMA_LAYERS_MAX);

        bool has_model = false;
        for (size_t i = 0; i < json_array_size(layers); i++) {
                int r = add_layer(c, json_array_get(layers, i), i, &has_model);
                if (r < 0)
                        return r;
        }
        if (!has_model)
                return mp_error_set(c->err, -EBADMSG, c->label, -1,
                                    "no model layer (mediaType " MEDIA_PREFIX "model)");
        return 0;
}

static void replace_string(char **field, char *value) {
        free(*field);
        *field = value;
}

int mp_ollama_collect(mp_model *m, const char *manifest_path, mp_error *err) {
        assert(m);
        assert(manifest_path);

        _cleanup_(manifest_location_clear) manifest_location loc = {};
        int r = manifest_locate(manifest_path, &loc);
        if (r == -ENOMEM)
                return mp_error_set(err, r, manifest_path, -1, "out of memory");
        if (r == -EINVAL)
                return mp_error_set(err, r, manifest_path, -1, "not a manifest in an Ollama store "
                                    "(STORE/manifests/REGISTRY/NAMESPACE/MODEL/TAG)");
        if (r < 0)
                return mp_error_set(err, r, manifest_path, -1, "cannot resolve: %s", strerror(-r));

        /* stat() first: opening a FIFO planted as a manifest would block. */
        struct stat st;
        if (stat(loc.path, &st) < 0)
                return mp_error_set(err, -errno, manifest_path, -1, "cannot stat: %s", strerror(errno));
        if (!S_ISREG(st.st_mode))
                return mp_error_set(err, -EBADMSG, manifest_path, -1, "not a regular file");

        _cleanup_(freep) char *text = NULL;
        size_t len = 0;
        r = mp_read_file_limited(loc.path, manifest_path, OLLAMA_MANIFEST_MAX, &text, &len, err);
        if (r < 0)
                return r;

        json_error_t jerr;
        json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root)
                return mp_error_set(err, -EBADMSG, manifest_path, jerr.position, "invalid JSON: %s", jerr.text);

        manifest_ctx c = {
                .m = m, .err = err, .label = manifest_path, .text = text, .store = loc.store,
                .first_file = m->n_files,
        };
        _cleanup_(freep) char *blobs = mp_path_join(loc.store, "blobs");
        if (blobs)
                c.blobs_real = realpath(blobs, NULL);

        r = mp_model_add_file(m, loc.path, "manifest", MP_ROLE_MANIFEST, MP_FORMAT_JSON, len);
        if (r < 0)
                r = mp_error_set(err, r, manifest_path, -1, "out of memory");
        else
                r = add_manifest(&c, root);
        json_decref(root);
        free(c.blobs_real);
        if (r < 0)
                return r;

        char *name = NULL, *tag = strdup(loc.tag);
        if (!tag || display_name(&loc, &name) < 0) {
                free(tag);
                return mp_error_set(err, -ENOMEM, manifest_path, -1, "out of memory");
        }
        replace_string(&m->name, name);
        replace_string(&m->revision, tag);
        m->layout = MP_LAYOUT_OLLAMA;
        return 0;
}

/* "NAME[:TAG]" -> "<registry>/<ns>/<model>/<tag>", the manifest's path below
 * manifests/.  Every part becomes a path component, so anything that could
 * climb out of the store is refused. */
static int name_to_manifest_rel(const char *name, char **ret, mp_error *err) {
        size_t n = strlen(name);
        if (n == 0)
                return mp_error_set(err, -EINVAL, name, -1, "empty model name");
        if (n > OLLAMA_NAME_MAX)
                return mp_error_set(err, -EINVAL, name, -1, "model name longer than %d bytes", OLLAMA_NAME_MAX);
        if (name[0] == '/')
                return mp_error_set(err, -EINVAL, name, -1, "a model name, not an absolute path, is expected");
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) name[i] <= 0x20 || name[i] == 0x7f || name[i] == '\\')
                        return mp_error_set(err, -EINVAL, name, (int64_t) i,
                                            "model name holds a space, control character or backslash");

        /* The tag is after the last ':' of the last component: a registry
         * may carry a port ("host:5000/ns/model"). */
        const char *last = strrchr(name, '/');
        const char *colon = strrchr(last ? last : name, ':');
        const char *tag = colon ? colon + 1 : OLLAMA_DEFAULT_TAG;
        if (!*tag)
                return mp_error_set(err, -EINVAL, name, -1, "empty tag after ':'");

        _cleanup_(freep) char *path = strndup(name, colon ? (size_t) (colon - name) : n);
        if (!path)
                return mp_error_set(err, -ENOMEM, name, -1, "out of memory");

        const char *parts[4] = { OLLAMA_DEFAULT_REGISTRY, OLLAMA_DEFAULT_NS, NULL, tag };
        char *comp[3];
        size_t k = 0;
        for (char *p = path, *e;; p = e + 1) {
                e = strchrnul(p, '/');
                if (k == ELEMENTSOF(comp))
                        return mp_error_set(err, -EINVAL, name, -1,
                                            "more than 3 path components (REGISTRY/NAMESPACE/MODEL)");
                comp[k++] = p;
                if (!*e)
                        break;
                *e = 0;
        }
        for (size_t i = 0; i < k; i++)
                parts[3 - k + i] = comp[i];

        for (size_t i = 0; i < ELEMENTSOF(parts); i++)
                if (!*parts[i] || strcmp(parts[i], ".") == 0 || strcmp(parts[i], "..") == 0)
                        return mp_error_set(err, -EINVAL, name, -1, "empty, \".\" or \"..\" name component");

        char *rel = NULL;
        if (asprintf(&rel, "%s/%s/%s/%s", parts[0], parts[1], parts[2], parts[3]) < 0)
                return mp_error_set(err, -ENOMEM, name, -1, "out of memory");
        *ret = rel;
        return 0;
}

int mp_ollama_resolve_name(const char *store, const char *name, char **ret, mp_error *err) {
        assert(name);
        assert(ret);

        _cleanup_(freep) char *rel = NULL;
        int r = name_to_manifest_rel(name, &rel, err);
        if (r < 0)
                return r;

        const char *env = getenv("OLLAMA_MODELS");
        const char *home = getenv("HOME");
        _cleanup_(freep) char *home_store = home && *home ? mp_path_join(home, ".ollama/models") : NULL;
        const char *stores[] = {
                store ? store : (env && *env ? env : NULL),
                store ? NULL : home_store,
                store ? NULL : "/usr/share/ollama/.ollama/models",
                store ? NULL : "/var/lib/ollama/.ollama/models",
        };

        for (size_t i = 0; i < ELEMENTSOF(stores); i++) {
                if (!stores[i])
                        continue;
                _cleanup_(freep) char *p = NULL;
                if (asprintf(&p, "%s/manifests/%s", stores[i], rel) < 0)
                        return mp_error_set(err, -ENOMEM, name, -1, "out of memory");
                if (is_regular_file(p)) {
                        *ret = TAKE_PTR(p);
                        return 0;
                }
        }

        if (store)
                return mp_error_set(err, -ENOENT, name, -1, "no manifest %s in the Ollama store %s", rel, store);
        return mp_error_set(err, -ENOENT, name, -1,
                            "no manifest %s in $OLLAMA_MODELS, ~/.ollama/models, /usr/share/ollama/.ollama/models "
                            "or /var/lib/ollama/.ollama/models", rel);
}
