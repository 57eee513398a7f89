/* test_layouts.c - the Hugging Face hub cache and Ollama store layouts.
 *
 * Every case builds its cache or store in a fresh temporary directory with
 * plain C calls (directories, files, symlinks), so each hostile layout is
 * exactly what the test says; the zoo's hub repo is checked as well. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "formats/hub.h"
#include "formats/ollama.h"
#include "test.h"
#include "util/macro.h"

#define REV  "0123456789abcdef0123456789abcdef01234567"
#define REV2 "89abcdef0123456789abcdef0123456789abcdef"

static char *pathf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *pathf(const char *fmt, ...) {
        char *p = NULL;
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(&p, fmt, ap);
        va_end(ap);
        CHECK(r >= 0);
        return p;
}

static void mkdirs(const char *path) {
        char *p = strdup(path);
        CHECK(p);
        for (char *s = p + 1; *s; s++)
                if (*s == '/') {
                        *s = 0;
                        CHECK(mkdir(p, 0755) == 0 || errno == EEXIST);
                        *s = '/';
                }
        CHECK(mkdir(p, 0755) == 0 || errno == EEXIST);
        free(p);
}

static void write_file(const char *path, const void *buf, size_t len) {
        FILE *f = fopen(path, "wb");
        CHECK(f);
        CHECK(len == 0 || fwrite(buf, 1, len, f) == len);
        CHECK(fclose(f) == 0);
}

static void make_link(const char *target, const char *link) {
        CHECK(symlink(target, link) == 0);
}

static void hex_digest(const char *md, const void *prefix, size_t plen, const void *buf, size_t len, char *out) {
        unsigned char d[EVP_MAX_MD_SIZE];
        unsigned n = 0;
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        CHECK(c);
        CHECK(EVP_DigestInit_ex(c, EVP_get_digestbyname(md), NULL) == 1);
        CHECK(EVP_DigestUpdate(c, prefix, plen) == 1);
        CHECK(EVP_DigestUpdate(c, buf, len) == 1);
        CHECK(EVP_DigestFinal_ex(c, d, &n) == 1);
        EVP_MD_CTX_free(c);
        for (unsigned i = 0; i < n; i++)
                sprintf(out + 2 * i, "%02x", d[i]);
}

static void sha256_hex(const void *buf, size_t len, char out[65]) {
        hex_digest("SHA256", "", 0, buf, len, out);
}

/* git's blob id: SHA-1 of "blob <len>\0" + content, as the hub names small files. */
static void git_sha1_hex(const void *buf, size_t len, char out[41]) {
        char hdr[64];
        int n = snprintf(hdr, sizeof(hdr), "blob %zu", len);
        hex_digest("SHA1", hdr, (size_t) n + 1, buf, len, out);
}

static char *real_tmpdir(void) {
        char *t = test_tmpdir();
        char *r = realpath(t, NULL);
        CHECK(r);
        free(t);
        return r;
}

static size_t count_findings(const mp_model *m, mp_finding_kind k) {
        size_t n = 0;
        for (size_t i = 0; i < m->n_findings; i++)
                n += m->findings[i].kind == k;
        return n;
}

static const mp_finding *first_finding(const mp_model *m, mp_finding_kind k) {
        for (size_t i = 0; i < m->n_findings; i++)
                if (m->findings[i].kind == k)
                        return &m->findings[i];
        return NULL;
}

static const mp_file *find_rel(const mp_model *m, const char *rel) {
        for (size_t i = 0; i < m->n_files; i++)
                if (strcmp(m->files[i].rel_path, rel) == 0)
                        return &m->files[i];
        return NULL;
}

static void check_error(const mp_error *err, int code) {
        CHECK_EQ(err->code, code);
        CHECK(err->file[0]);
        CHECK(err->reason[0]);
}

/* ---- Hugging Face hub cache -------------------------------------------- */

typedef struct hub_fixture {
        char *root;             /* real temporary directory */
        char *repo;
        char *blobs;
        char *snap;             /* snapshots/REV */
} hub_fixture;

static void hub_init(hub_fixture *f, const char *repo_dir, const char *ref) {
        f->root = real_tmpdir();
        f->repo = pathf("%s/%s", f->root, repo_dir);
        f->blobs = pathf("%s/blobs", f->repo);
        f->snap = pathf("%s/snapshots/" REV, f->repo);
        mkdirs(f->blobs);
        mkdirs(f->snap);
        char *refs = pathf("%s/refs", f->repo);
        mkdirs(refs);
        if (ref) {
                char *main_ref = pathf("%s/main", refs);
                write_file(main_ref, ref, strlen(ref));
                free(main_ref);
        }
        free(refs);
}

static void hub_done(hub_fixture *f) {
        free(f->root);
        free(f->repo);
        free(f->blobs);
        free(f->snap);
}

/* Stores content as a blob named by its SHA-256 (LFS) or git blob SHA-1 and
 * links snapshots/REV/rel to it with a relative link, as huggingface_hub does.
 * Returns the blob name. */
static char *hub_add(hub_fixture *f, const char *rel, const char *content, bool git) {
        char name[65];
        if (git)
                git_sha1_hex(content, strlen(content), name);
        else
                sha256_hex(content, strlen(content), name);

        char *blob = pathf("%s/%s", f->blobs, name);
        write_file(blob, content, strlen(content));

        /* "../../blobs/x" plus one "../" per subdirectory of rel. */
        char up[256] = "../../";
        for (const char *s = rel; (s = strchr(s, '/')); s++)
                strcat(up, "../");
        char *target = pathf("%sblobs/%s", up, name);
        char *link = pathf("%s/%s", f->snap, rel);
        char *dir = strdup(link);
        *strrchr(dir, '/') = 0;
        mkdirs(dir);
        make_link(target, link);
        free(dir);
        free(link);
        free(target);
        free(blob);
        return strdup(name);
}

static mp_model *hub_open(const char *path, int expect, mp_error *err) {
        mp_model *m = mp_model_new(path);
        CHECK(m);
        mp_error_clear(err);
        int r = mp_hub_collect(m, path, err);
        if (r != expect)
                fprintf(stderr, "mp_hub_collect(%s) = %d (%s), expected %d\n", path, r, err->reason, expect);
        CHECK_EQ(r, expect);
        return m;
}

static void check_file(const mp_file *fl, const hub_fixture *f, const char *blob, mp_file_role role,
                       mp_format format, mp_expect_kind kind, size_t size) {
        CHECK(fl);
        char *p = pathf("%s/%s", f->blobs, blob);
        CHECK_STREQ(fl->path, p);
        free(p);
        CHECK_EQ(fl->role, role);
        CHECK_EQ(fl->format, format);
        CHECK_EQ(fl->expect_kind, kind);
        CHECK_STREQ(fl->expect_hex, blob);
        CHECK_EQ(fl->size, size);
}

static const char CONFIG[] = "{\"model_type\": \"llama\"}\n";
static const char WEIGHTS[] = "pretend safetensors bytes";
static const char TOKENIZER[] = "{\"model\": {}}";
static const char ENCODER[] = "pretend text encoder weights";
static const char README[] = "# a model\n";

/* The standard valid repo: config (small file: git SHA-1 blob), weights and
 * tokenizer (LFS: SHA-256 blobs), a nested weight file, and a README that
 * is not model material. */
static void hub_valid(hub_fixture *f, char *names[4]) {
        hub_init(f, "models--org--name", REV "\n");
        names[0] = hub_add(f, "config.json", CONFIG, true);
        names[1] = hub_add(f, "model.safetensors", WEIGHTS, false);
        names[2] = hub_add(f, "text_encoder/model.safetensors", ENCODER, false);
        names[3] = hub_add(f, "tokenizer.json", TOKENIZER, false);
        free(hub_add(f, "README.md", README, true));
}

static void check_valid(const mp_model *m, const hub_fixture *f, char *names[4], const char *rev) {
        CHECK_EQ(m->n_files, 4);
        /* sorted by name inside each directory, whatever readdir says */
        CHECK_STREQ(m->files[0].rel_path, "config.json");
        CHECK_STREQ(m->files[1].rel_path, "model.safetensors");
        CHECK_STREQ(m->files[2].rel_path, "text_encoder/model.safetensors");
        CHECK_STREQ(m->files[3].rel_path, "tokenizer.json");
        check_file(&m->files[0], f, names[0], MP_ROLE_CONFIG, MP_FORMAT_JSON, MP_EXPECT_GIT_SHA1, strlen(CONFIG));
        check_file(&m->files[1], f, names[1], MP_ROLE_WEIGHTS, MP_FORMAT_SAFETENSORS, MP_EXPECT_SHA256,
                   strlen(WEIGHTS));
        check_file(&m->files[2], f, names[2], MP_ROLE_WEIGHTS, MP_FORMAT_SAFETENSORS, MP_EXPECT_SHA256,
                   strlen(ENCODER));
        check_file(&m->files[3], f, names[3], MP_ROLE_TOKENIZER, MP_FORMAT_JSON, MP_EXPECT_SHA256,
                   strlen(TOKENIZER));
        CHECK_EQ(strlen(names[0]), 40);
        CHECK_EQ(strlen(names[1]), 64);
        CHECK_STREQ(m->name, "org/name");
        CHECK_STREQ(m->revision, rev);
        CHECK_EQ(m->layout, MP_LAYOUT_HUB);
        CHECK_EQ(m->n_findings, 0);
}

static void free_names(char *names[4]) {
        for (int i = 0; i < 4; i++)
                free(names[i]);
}

static void test_hub_repo_with_ref(void) {
        hub_fixture f;
        char *names[4];
        hub_valid(&f, names);

        /* An older, unreferenced snapshot must not be read. */
        char *other = pathf("%s/snapshots/" REV2, f.repo);
        mkdirs(other);
        char *cfg = pathf("%s/config.json", other);
        make_link("../../blobs/doesnotexist", cfg);

        mp_error err;
        mp_model *m = hub_open(f.repo, 0, &err);
        check_valid(m, &f, names, REV);
        mp_model_free(m);

        CHECK(mp_hub_detect(f.repo));
        CHECK(mp_hub_detect(f.snap));
        CHECK(!mp_hub_detect(f.blobs));
        CHECK(!mp_hub_detect(f.root));
        char *missing = pathf("%s/nope", f.root);
        CHECK(!mp_hub_detect(missing));

        free(missing);
        free(cfg);
        free(other);
        free_names(names);
        hub_done(&f);
}

static void test_hub_snapshot_direct(void) {
        hub_fixture f;
        char *names[4];
        hub_valid(&f, names);

        mp_error err;
        mp_model *m = hub_open(f.snap, 0, &err);
        check_valid(m, &f, names, REV);
        mp_model_free(m);

        /* The same snapshot spelled with a trailing slash and a detour. */
        char *odd = pathf("%s/snapshots/../snapshots/" REV "/", f.repo);
        m = hub_open(odd, 0, &err);
        check_valid(m, &f, names, REV);
        mp_model_free(m);

        /* Reached through a symlink to the repo: links are judged against
         * the real repo. */
        char *alias = pathf("%s/alias", f.root);
        make_link(f.repo, alias);
        char *via = pathf("%s/snapshots/" REV, alias);
        CHECK(mp_hub_detect(via));
        m = hub_open(via, 0, &err);
        check_valid(m, &f, names, REV);
        mp_model_free(m);

        free(via);
        free(alias);
        free(odd);
        free_names(names);
        hub_done(&f);
}

static void test_hub_escaping_links(void) {
        hub_fixture f;
        hub_init(&f, "models--org--name", REV);
        char *ok = hub_add(&f, "config.json", CONFIG, false);

        /* A secret beside the repo, reachable with enough "..". */
        char *secret = pathf("%s/secret.safetensors", f.root);
        write_file(secret, "secret", 6);

        char *l1 = pathf("%s/model.safetensors", f.snap);
        make_link("/etc/passwd", l1);
        char *l2 = pathf("%s/tokenizer.json", f.snap);
        make_link("../../../secret.safetensors", l2);
        char *l3 = pathf("%s/tokenizer.model", f.snap);
        make_link("../../blobs/../../secret.safetensors", l3);
        char *l4 = pathf("%s/vocab.json", f.snap);
        make_link("../../../../../../../../../../etc/passwd", l4);
        char *l5 = pathf("%s/merges.txt", f.snap);
        make_link("../../blobs", l5);   /* the blobs dir itself */

        mp_error err;
        mp_model *m = hub_open(f.repo, 0, &err);
        CHECK_EQ(m->n_files, 1);
        CHECK_STREQ(m->files[0].rel_path, "config.json");
        CHECK_EQ(count_findings(m, MP_FINDING_SUSPICIOUS), 5);
        CHECK_EQ(m->n_findings, 5);
        const mp_finding *fd = first_finding(m, MP_FINDING_SUSPICIOUS);
        CHECK(strstr(fd->detail, "escapes the repo"));
        CHECK(fd->file && strstr(fd->file, f.snap));
        /* nothing outside blobs/ is ever handed to the pass */
        for (size_t i = 0; i < m->n_files; i++)
                CHECK(strncmp(m->files[i].path, f.blobs, strlen(f.blobs)) == 0);
        mp_model_free(m);

        free(l1);
        free(l2);
        free(l3);
        free(l4);
        free(l5);
        free(secret);
        free(ok);
        hub_done(&f);
}

static void test_hub_blob_is_link(void) {
        hub_fixture f;
        hub_init(&f, "models--org--name", REV);

        /* blobs/<sha> itself a link out of the repo: the paper check passes,
         * realpath() catches it. */
        char hex[65];
        sha256_hex("x", 1, hex);
        char *blob = pathf("%s/%s", f.blobs, hex);
        make_link("/etc/passwd", blob);
        char *l = pathf("%s/model.safetensors", f.snap);
        char *t = pathf("../../blobs/%s", hex);
        make_link(t, l);

        /* A blob that loops. */
        char *loop = pathf("%s/loop", f.blobs);
        make_link("loop", loop);
        char *l2 = pathf("%s/config.json", f.snap);
        make_link("../../blobs/loop", l2);

        /* A blob that is a FIFO: never opened (that would block the test). */
        char hex2[65];
        sha256_hex("y", 1, hex2);
        char *fifo = pathf("%s/%s", f.blobs, hex2);
        CHECK(mkfifo(fifo, 0600) == 0);
        char *l3 = pathf("%s/tokenizer.json", f.snap);
        char *t3 = pathf("../../blobs/%s", hex2);
        make_link(t3, l3);

        mp_error err;
        mp_model *m = hub_open(f.repo, 0, &err);
        CHECK_EQ(m->n_files, 0);
        CHECK_EQ(count_findings(m, MP_FINDING_SUSPICIOUS), 3);
        mp_model_free(m);

        free(blob);
        free(l);
        free(t);
        free(loop);
        free(l2);
        free(fifo);
        free(l3);
        free(t3);
        hub_done(&f);
}

static void test_hub_absolute_link(void) {
        hub_fixture f;
        hub_init(&f, "models--org--name", REV);
        char hex[65];
        sha256_hex(WEIGHTS, strlen(WEIGHTS), hex);
        char *blob = pathf("%s/%s", f.blobs, hex);
        write_file(blob, WEIGHTS, strlen(WEIGHTS));
        char *l = pathf("%s/model.safetensors", f.snap);
        make_link(blob, l);     /* absolute, into this repo's blobs/ */

        mp_error err;
        mp_model *m = hub_open(f.repo, 0, &err);
        CHECK_EQ(m->n_files, 1);
        CHECK_STREQ(m->files[0].path, blob);
        CHECK_EQ(m->files[0].expect_kind, MP_EXPECT_SHA256);
        CHECK_STREQ(m->files[0].expect_hex, hex);
        CHECK_EQ(m->n_findings, 0);
        mp_model_free(m);

        /* An absolute link into *another* repo's blobs is an escape. */
        char *other = pathf("%s/models--evil--x/blobs", f.root);
        mkdirs(other);
        char *oblob = pathf("%s/%s", other, hex);
        write_file(oblob, WEIGHTS, strlen(WEIGHTS));
        char *l2 = pathf("%s/pytorch_model.bin", f.snap);
        make_link(oblob, l2);
        m = hub_open(f.repo, 0, &err);
        CHECK_EQ(m->n_files, 1);
        CHECK_EQ(count_findings(m, MP_FINDING_SUSPICIOUS), 1);
        mp_model_free(m);

        free(l2);
        free(oblob);
        free(other);
        free(l);
        free(blob);
        hub_done(&f);
}

static void test_hub_dangling_and_incomplete(void) {
        hub_fixture f;
        hub_init(&f, "models--org--name", REV);
        char *cfg = hub_add(&f, "config.json", CONFIG, true);

        char *l = pathf("%s/model.safetensors", f.snap);
        make_link("../../blobs/0000000000000000000000000000000000000000000000000000000000000000", l);
        char *part = pathf("%s/1111111111111111111111111111111111111111111111111111111111111111.incomplete",
                           f.blobs);
        write_file(part, "half", 4);

        mp_error err;
        mp_model *m = hub_open(f.snap, 0, &err);
        CHECK_EQ(m->n_files, 1);
        CHECK_STREQ(m->files[0].rel_path, "config.json");
        CHECK_EQ(count_findings(m, MP_FINDING_INCOMPLETE), 2);
        CHECK_EQ(m->n_findings, 2);
        /* the dangling link comes from the walk, the partial blob after it */
        CHECK(strstr(m->findings[0].detail, "dangling"));
        CHECK(strstr(m->findings[0].file, "model.safetensors"));
        CHECK(strstr(m->findings[1].detail, "download in progress"));
        CHECK_STREQ(m->findings[1].file, part);
        mp_model_free(m);

        free(part);
        free(l);
        free(cfg);
        hub_done(&f);
}

static void test_hub_copies_and_odd_names(void) {
        hub_fixture f;
        hub_init(&f, "models--solo", REV);

        /* a copied (not linked) file: added, nothing to verify */
        char *copy = pathf("%s/model.gguf", f.snap);
        write_file(copy, "GGUF", 4);
        /* a blob whose name is not a digest: added, flagged */
        char *odd = pathf("%s/weights", f.blobs);
        write_file(odd, "abc", 3);
        char *l = pathf("%s/pytorch_model-00001-of-00002.bin", f.snap);
        make_link("../../blobs/weights", l);
        char *idx = hub_add(&f, "pytorch_model.bin.index.json", "{}", true);
        char *sp = hub_add(&f, "tokenizer.model", "sp", false);
        char *mg = hub_add(&f, "merges.txt", "#v\n", true);
        char *ckpt = hub_add(&f, "ckpt/model.pth", "pth", false);

        mp_error err;
        mp_model *m = hub_open(f.repo, 0, &err);
        CHECK_STREQ(m->name, "solo");
        CHECK_EQ(m->n_files, 6);
        const mp_file *c = find_rel(m, "model.gguf");
        CHECK(c);
        CHECK_STREQ(c->path, copy);
        CHECK_EQ(c->role, MP_ROLE_WEIGHTS);
        CHECK_EQ(c->format, MP_FORMAT_GGUF);
        CHECK_EQ(c->expect_kind, MP_EXPECT_NONE);
        CHECK(!c->expect_hex);
        const mp_file *o = find_rel(m, "pytorch_model-00001-of-00002.bin");
        CHECK(o);
        CHECK_EQ(o->format, MP_FORMAT_PYTORCH_ZIP);
        CHECK_EQ(o->expect_kind, MP_EXPECT_NONE);
        CHECK_EQ(count_findings(m, MP_FINDING_SUSPICIOUS), 1);
        CHECK(strstr(first_finding(m, MP_FINDING_SUSPICIOUS)->detail, "not a content digest"));
        CHECK_EQ(find_rel(m, "pytorch_model.bin.index.json")->role, MP_ROLE_INDEX);
        CHECK_EQ(find_rel(m, "tokenizer.model")->format, MP_FORMAT_SENTENCEPIECE);
        CHECK_EQ(find_rel(m, "merges.txt")->format, MP_FORMAT_TEXT);
        CHECK_EQ(find_rel(m, "merges.txt")->role, MP_ROLE_TOKENIZER);
        CHECK_EQ(find_rel(m, "ckpt/model.pth")->format, MP_FORMAT_PYTORCH_ZIP);
        mp_model_free(m);

        free(ckpt);
        free(mg);
        free(sp);
        free(idx);
        free(l);
        free(odd);
        free(copy);
        hub_done(&f);
}

/* Link stubs: a cache copied without symlinks holds the link target as text. */
static void test_hub_link_stubs(void) {
        hub_fixture f;
        hub_init(&f, "models--org--stubs", REV);
        char hex[65];
        sha256_hex(WEIGHTS, strlen(WEIGHTS), hex);
        char *blob = pathf("%s/%s", f.blobs, hex);
        write_file(blob, WEIGHTS, strlen(WEIGHTS));

        char *t1 = pathf("../../blobs/%s", hex);
        char *s1 = pathf("%s/model.safetensors", f.snap);
        write_file(s1, t1, strlen(t1));                 /* git style: no newline */
        char *t2 = pathf("../../blobs/%s\n", hex);
        char *s2 = pathf("%s/model.gguf", f.snap);
        write_file(s2, t2, strlen(t2));                 /* with a newline */
        char *s3 = pathf("%s/config.json", f.snap);
        write_file(s3, "../../../secret", 15);          /* not into blobs/: the file's own text */
        char *s4 = pathf("%s/tokenizer.json", f.snap);
        const char *dangling = "../../blobs/2222222222222222222222222222222222222222222222222222222222222222";
        write_file(s4, dangling, strlen(dangling));
        char *s5 = pathf("%s/vocab.json", f.snap);
        write_file(s5, "../../blobs/x\n\n", 15);      /* two lines: not a stub */

        mp_error err;
        mp_model *m = hub_open(f.repo, 0, &err);
        CHECK_EQ(m->n_files, 4);
        const mp_file *a = find_rel(m, "model.safetensors");
        CHECK(a);
        CHECK_STREQ(a->path, blob);
        CHECK_EQ(a->expect_kind, MP_EXPECT_SHA256);
        CHECK_STREQ(a->expect_hex, hex);
        CHECK_EQ(a->size, strlen(WEIGHTS));
        const mp_file *b = find_rel(m, "model.gguf");
        CHECK(b);
        CHECK_STREQ(b->path, blob);
        const mp_file *c = find_rel(m, "config.json");
        CHECK(c);
        CHECK_STREQ(c->path, s3);
        CHECK_EQ(c->expect_kind, MP_EXPECT_NONE);
        CHECK_EQ(c->size, 15);
        CHECK(find_rel(m, "vocab.json"));
        CHECK_STREQ(find_rel(m, "vocab.json")->path, s5);
        CHECK(!find_rel(m, "tokenizer.json"));
        CHECK_EQ(m->n_findings, 1);
        CHECK_EQ(m->findings[0].kind, MP_FINDING_INCOMPLETE);
        mp_model_free(m);

        free(s5);
        free(s4);
        free(s3);
        free(s2);
        free(t2);
        free(s1);
        free(t1);
        free(blob);
        hub_done(&f);
}

static void test_hub_deep_nesting(void) {
        hub_fixture f;
        hub_init(&f, "models--org--deep", REV);

        /* 8 levels are read, the 9th is not */
        char *rel8 = strdup("a/b/c/d/e/f/g/h/config.json");
        char *n8 = hub_add(&f, rel8, CONFIG, true);
        char *rel9 = strdup("a/b/c/d/e/f/g/h/i/model.safetensors");
        char *n9 = hub_add(&f, rel9, WEIGHTS, false);

        mp_error err;
        mp_model *m = hub_open(f.repo, 0, &err);
        CHECK_EQ(m->n_files, 1);
        CHECK_STREQ(m->files[0].rel_path, rel8);
        CHECK_EQ(count_findings(m, MP_FINDING_SUSPICIOUS), 1);
        CHECK(strstr(m->findings[0].detail, "nested too deeply"));
        mp_model_free(m);

        free(rel8);
        free(rel9);
        free(n8);
        free(n9);
        hub_done(&f);
}

static void test_hub_refs(void) {
        mp_error err;
        mp_model *m;

        /* No refs/main, two snapshots: the most recently modified wins. */
        hub_fixture f;
        hub_init(&f, "models--org--name", NULL);
        free(hub_add(&f, "config.json", CONFIG, true));
        char *newer = pathf("%s/snapshots/" REV2, f.repo);
        mkdirs(newer);
        struct timespec old[2] = { { .tv_sec = 1000000 }, { .tv_sec = 1000000 } };
        CHECK(utimensat(AT_FDCWD, f.snap, old, 0) == 0);
        m = hub_open(f.repo, 0, &err);
        CHECK_STREQ(m->revision, REV2);
        CHECK_EQ(m->n_files, 0);
        mp_model_free(m);

        /* ... and an older newest one flips the choice */
        struct timespec older[2] = { { .tv_sec = 10 }, { .tv_sec = 10 } };
        CHECK(utimensat(AT_FDCWD, newer, older, 0) == 0);
        m = hub_open(f.repo, 0, &err);
        CHECK_STREQ(m->revision, REV);
        CHECK_EQ(m->n_files, 1);
        mp_model_free(m);
        free(newer);

        /* refs/main that is not a commit: offset of the first bad byte */
        char *ref = pathf("%s/refs/main", f.repo);
        write_file(ref, "0123456789abcdefXYZ", 19);
        m = hub_open(f.repo, -EBADMSG, &err);
        check_error(&err, -EBADMSG);
        CHECK_EQ(err.offset, 16);
        CHECK(strstr(err.file, "refs/main"));
        mp_model_free(m);

        write_file(ref, "0123456789abcdef", 16);      /* too short */
        m = hub_open(f.repo, -EBADMSG, &err);
        CHECK_EQ(err.offset, 16);
        mp_model_free(m);

        char big[8192];
        memset(big, 'a', sizeof(big));
        write_file(ref, big, sizeof(big));
        m = hub_open(f.repo, -E2BIG, &err);
        check_error(&err, -E2BIG);
        mp_model_free(m);

        /* a good hash for a snapshot that is not there */
        write_file(ref, "ffffffffffffffffffffffffffffffffffffffff", 40);
        m = hub_open(f.repo, -ENOENT, &err);
        check_error(&err, -ENOENT);
        CHECK(strstr(err.reason, "ffffffffffffffffffffffffffffffffffffffff"));
        mp_model_free(m);

        /* a FIFO as refs/main is refused without opening it (that would block) */
        CHECK(unlink(ref) == 0);
        CHECK(mkfifo(ref, 0600) == 0);
        m = hub_open(f.repo, -EBADMSG, &err);
        check_error(&err, -EBADMSG);
        mp_model_free(m);
        free(ref);
        hub_done(&f);

        /* no snapshot at all */
        hub_fixture g;
        hub_init(&g, "models--org--empty", NULL);
        CHECK(rmdir(g.snap) == 0);
        m = hub_open(g.repo, -ENOENT, &err);
        check_error(&err, -ENOENT);
        mp_model_free(m);
        hub_done(&g);
}

static void test_hub_not_model_repos(void) {
        static const char *const dirs[] = { "datasets--org--data", "spaces--org--app" };
        mp_error err;

        for (size_t i = 0; i < 2; i++) {
                hub_fixture f;
                hub_init(&f, dirs[i], REV);
                free(hub_add(&f, "config.json", CONFIG, true));
                CHECK(!mp_hub_detect(f.repo));
                CHECK(!mp_hub_detect(f.snap));
                mp_model *m = hub_open(f.repo, -EINVAL, &err);
                check_error(&err, -EINVAL);
                CHECK(strstr(err.reason, "not a model repo"));
                mp_model_free(m);
                m = hub_open(f.snap, -EINVAL, &err);
                CHECK(strstr(err.reason, "not a model repo"));
                mp_model_free(m);
                hub_done(&f);
        }

        /* malformed repo names */
        static const char *const bad[] = { "models--", "models----name", "models--org--" };
        for (size_t i = 0; i < 3; i++) {
                hub_fixture f;
                hub_init(&f, bad[i], REV);
                mp_model *m = hub_open(f.repo, -EINVAL, &err);
                check_error(&err, -EINVAL);
                mp_model_free(m);
                hub_done(&f);
        }

        /* not a hub path at all, and not a directory */
        char *t = real_tmpdir();
        mp_model *m = hub_open(t, -EINVAL, &err);
        check_error(&err, -EINVAL);
        mp_model_free(m);
        char *file = pathf("%s/models--a--b", t);
        write_file(file, "x", 1);
        m = hub_open(file, -ENOTDIR, &err);
        mp_model_free(m);
        char *missing = pathf("%s/missing", t);
        m = hub_open(missing, -ENOENT, &err);
        check_error(&err, -ENOENT);
        mp_model_free(m);
        free(missing);
        free(file);
        free(t);
}

static void test_hub_zoo(void) {
        const char *zoo = test_zoo();
        if (!zoo) {
                fprintf(stderr, "skipping the zoo part of test_hub_zoo\n");
                return;
        }
        /* meson spells the zoo with "..": blob paths come out resolved */
        char *zoo_real = realpath(zoo, NULL);
        CHECK(zoo_real);
        char *repo = pathf("%s/hub/models--zoo--llama-chained", zoo_real);
        free(zoo_real);
        char *snap = pathf("%s/snapshots/106777b02b66c5210bdfb27123edc24319ccccaa", repo);
        const char *paths[] = { repo, snap };

        CHECK(mp_hub_detect(repo));
        CHECK(mp_hub_detect(snap));
        for (size_t i = 0; i < 2; i++) {
                mp_error err;
                mp_model *m = hub_open(paths[i], 0, &err);
                CHECK_EQ(m->n_files, 4);
                CHECK_STREQ(m->name, "zoo/llama-chained");
                CHECK_STREQ(m->revision, "106777b02b66c5210bdfb27123edc24319ccccaa");
                CHECK_EQ(m->layout, MP_LAYOUT_HUB);
                CHECK_EQ(m->n_findings, 0);
                CHECK(find_rel(m, "config.json"));
                CHECK(find_rel(m, "tokenizer.json"));
                CHECK(find_rel(m, "tokenizer_config.json"));

                const mp_file *w = find_rel(m, "model.safetensors");
                CHECK(w);
                CHECK_EQ(w->role, MP_ROLE_WEIGHTS);
                CHECK_EQ(w->format, MP_FORMAT_SAFETENSORS);
                CHECK_EQ(w->expect_kind, MP_EXPECT_SHA256);
                /* The zoo's snapshot entries may be symlinks or, after a copy
                 * that dropped symlinks, stubs holding the link target. */
                char *link = pathf("%s/model.safetensors", snap);
                char target[PATH_MAX];
                ssize_t n = readlink(link, target, sizeof(target) - 1);
                if (n < 0) {
                        size_t len;
                        char *stub = test_read(link, &len);
                        CHECK(len < sizeof(target));
                        memcpy(target, stub, len + 1);
                        free(stub);
                        n = (ssize_t) strcspn(target, "\n");
                }
                target[n] = 0;
                CHECK(strrchr(target, '/'));
                const char *blob_name = strrchr(target, '/') + 1;
                char *blob = pathf("%s/blobs/%s", repo, blob_name);
                CHECK_STREQ(w->path, blob);
                CHECK_STREQ(w->expect_hex, blob_name);
                CHECK_EQ(strlen(blob_name), 64);
                struct stat st;
                CHECK(stat(blob, &st) == 0);
                CHECK_EQ(w->size, st.st_size);
                free(blob);
                free(link);
                mp_model_free(m);
        }
        free(snap);
        free(repo);
}

/* ---- Ollama store ------------------------------------------------------- */

#define MODEL_BLOB    "GGUF\3\0\0\0pretend gguf"
#define TEMPLATE_BLOB "{{ .Prompt }}"
#define PARAMS_BLOB   "{\"stop\": [\"<eos>\"]}"
#define CONFIG_BLOB   "{\"model_format\": \"gguf\", \"model_family\": \"llama\"}"

typedef struct blob {
        char hex[65];
        char *path;
        size_t size;
} blob;

static void ollama_blob(const char *store, const void *buf, size_t len, blob *b) {
        sha256_hex(buf, len, b->hex);
        char *dir = pathf("%s/blobs", store);
        mkdirs(dir);
        b->path = pathf("%s/sha256-%s", dir, b->hex);
        b->size = len;
        write_file(b->path, buf, len);
        free(dir);
}

static char *ollama_manifest(const char *store, const char *rel, const char *text) {
        char *p = pathf("%s/manifests/%s", store, rel);
        char *dir = strdup(p);
        *strrchr(dir, '/') = 0;
        mkdirs(dir);
        write_file(p, text, strlen(text));
        free(dir);
        return p;
}

typedef struct ollama_fixture {
        char *store;
        blob config, model, tmpl, params;
} ollama_fixture;

static void ollama_init(ollama_fixture *f) {
        f->store = real_tmpdir();
        ollama_blob(f->store, CONFIG_BLOB, strlen(CONFIG_BLOB), &f->config);
        ollama_blob(f->store, MODEL_BLOB, sizeof(MODEL_BLOB) - 1, &f->model);
        ollama_blob(f->store, TEMPLATE_BLOB, strlen(TEMPLATE_BLOB), &f->tmpl);
        ollama_blob(f->store, PARAMS_BLOB, strlen(PARAMS_BLOB), &f->params);
}

static void ollama_done(ollama_fixture *f) {
        free(f->config.path);
        free(f->model.path);
        free(f->tmpl.path);
        free(f->params.path);
        free(f->store);
}

/* A manifest as Ollama writes it; model_digest/model_size replace the model
 * layer's fields when given (NULL/-1 keep the real ones). */
static char *manifest_text(const ollama_fixture *f, const char *model_digest, long long model_size) {
        char digest[80];
        snprintf(digest, sizeof(digest), "\"sha256:%s\"", f->model.hex);
        return pathf("{\"schemaVersion\":2,"
                     "\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\","
                     "\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\","
                     "\"digest\":\"sha256:%s\",\"size\":%zu},"
                     "\"layers\":["
                     "{\"mediaType\":\"application/vnd.ollama.image.model\",\"digest\":%s,\"size\":%lld},"
                     "{\"mediaType\":\"application/vnd.ollama.image.template\",\"digest\":\"sha256:%s\",\"size\":%zu},"
                     "{\"mediaType\":\"application/vnd.ollama.image.params\",\"digest\":\"sha256:%s\",\"size\":%zu}"
                     "]}",
                     f->config.hex, f->config.size, model_digest ? model_digest : digest,
                     model_size >= 0 ? model_size : (long long) f->model.size, f->tmpl.hex, f->tmpl.size,
                     f->params.hex, f->params.size);
}

static mp_model *ollama_open(const char *path, int expect, mp_error *err) {
        mp_model *m = mp_model_new(path);
        CHECK(m);
        mp_error_clear(err);
        int r = mp_ollama_collect(m, path, err);
        if (r != expect)
                fprintf(stderr, "mp_ollama_collect(%s) = %d (%s), expected %d\n", path, r, err->reason, expect);
        CHECK_EQ(r, expect);
        return m;
}

static void check_blob_file(const mp_file *fl, const char *rel, const blob *b, mp_file_role role, mp_format format) {
        CHECK(fl);
        CHECK_STREQ(fl->rel_path, rel);
        CHECK_STREQ(fl->path, b->path);
        CHECK_EQ(fl->size, b->size);
        CHECK_EQ(fl->role, role);
        CHECK_EQ(fl->format, format);
        CHECK_EQ(fl->expect_kind, MP_EXPECT_SHA256);
        CHECK_STREQ(fl->expect_hex, b->hex);
}

static void test_ollama_valid(void) {
        ollama_fixture f;
        ollama_init(&f);
        char *text = manifest_text(&f, NULL, -1);
        char *mpath = ollama_manifest(f.store, "registry.ollama.ai/library/mymodel/7b", text);

        mp_error err;
        char *resolved = NULL;
        CHECK_EQ(mp_ollama_resolve_name(f.store, "mymodel:7b", &resolved, &err), 0);
        CHECK_STREQ(resolved, mpath);
        free(resolved);

        CHECK(mp_ollama_detect(mpath));
        CHECK(!mp_ollama_detect(f.store));
        CHECK(!mp_ollama_detect(f.model.path));
        char *dir = strdup(mpath);
        *strrchr(dir, '/') = 0;
        CHECK(!mp_ollama_detect(dir));  /* the model dir, not a manifest */

        mp_model *m = ollama_open(mpath, 0, &err);
        CHECK_EQ(m->n_files, 5);
        CHECK_STREQ(m->files[0].rel_path, "manifest");
        CHECK_STREQ(m->files[0].path, mpath);
        CHECK_EQ(m->files[0].role, MP_ROLE_MANIFEST);
        CHECK_EQ(m->files[0].format, MP_FORMAT_JSON);
        CHECK_EQ(m->files[0].size, strlen(text));
        CHECK_EQ(m->files[0].expect_kind, MP_EXPECT_NONE);
        check_blob_file(&m->files[1], "config", &f.config, MP_ROLE_CONFIG, MP_FORMAT_JSON);
        check_blob_file(&m->files[2], "model", &f.model, MP_ROLE_WEIGHTS, MP_FORMAT_GGUF);
        check_blob_file(&m->files[3], "template", &f.tmpl, MP_ROLE_OTHER, MP_FORMAT_TEXT);
        check_blob_file(&m->files[4], "params", &f.params, MP_ROLE_OTHER, MP_FORMAT_JSON);
        CHECK_STREQ(m->name, "mymodel:7b");
        CHECK_STREQ(m->revision, "7b");
        CHECK_EQ(m->layout, MP_LAYOUT_OLLAMA);
        CHECK_EQ(m->n_findings, 0);
        mp_model_free(m);

        /* the same manifest through a symlinked store and a relative-ish path */
        char *alias = pathf("%s.alias", f.store);
        make_link(f.store, alias);
        char *via = pathf("%s/manifests/registry.ollama.ai/./library/mymodel/7b", alias);
        CHECK(mp_ollama_detect(via));
        m = ollama_open(via, 0, &err);
        CHECK_EQ(m->n_files, 5);
        CHECK_STREQ(m->files[2].path, f.model.path);
        mp_model_free(m);
        CHECK(unlink(alias) == 0);

        free(via);
        free(alias);
        free(dir);
        free(mpath);
        free(text);
        ollama_done(&f);
}

static void test_ollama_names(void) {
        ollama_fixture f;
        ollama_init(&f);
        char *text = manifest_text(&f, NULL, -1);
        char *p1 = ollama_manifest(f.store, "registry.ollama.ai/ns/model/latest", text);
        char *p2 = ollama_manifest(f.store, "example.com:5000/team/m/v1", text);
        char *p3 = ollama_manifest(f.store, "registry.ollama.ai/library/plain/latest", text);

        static const struct {
                const char *name;
                int which;
                const char *display;
        } cases[] = {
                { "ns/model", 1, "ns/model:latest" },
                { "ns/model:latest", 1, "ns/model:latest" },
                { "registry.ollama.ai/ns/model", 1, "ns/model:latest" },
                { "example.com:5000/team/m:v1", 2, "example.com:5000/team/m:v1" },
                { "plain", 3, "plain:latest" },
                { "library/plain", 3, "plain:latest" },
        };
        const char *paths[] = { NULL, p1, p2, p3 };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                mp_error err;
                char *r = NULL;
                CHECK_EQ(mp_ollama_resolve_name(f.store, cases[i].name, &r, &err), 0);
                CHECK_STREQ(r, paths[cases[i].which]);
                mp_model *m = ollama_open(r, 0, &err);
                CHECK_STREQ(m->name, cases[i].display);
                mp_model_free(m);
                free(r);
        }

        mp_error err;
        char *r = NULL;
        CHECK_EQ(mp_ollama_resolve_name(f.store, "ns/model:7b", &r, &err), -ENOENT);
        check_error(&err, -ENOENT);
        CHECK(!r);

        free(p1);
        free(p2);
        free(p3);
        free(text);
        ollama_done(&f);
}

static void test_ollama_default_stores(void) {
        ollama_fixture f;
        ollama_init(&f);
        char *text = manifest_text(&f, NULL, -1);
        char *mpath = ollama_manifest(f.store, "registry.ollama.ai/library/mymodel/7b", text);

        char *home = real_tmpdir();
        char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
        CHECK(setenv("HOME", home, 1) == 0);

        mp_error err;
        char *r = NULL;
        CHECK(setenv("OLLAMA_MODELS", f.store, 1) == 0);
        CHECK_EQ(mp_ollama_resolve_name(NULL, "mymodel:7b", &r, &err), 0);
        CHECK_STREQ(r, mpath);
        free(r);

        /* $OLLAMA_MODELS unset: ~/.ollama/models */
        CHECK(unsetenv("OLLAMA_MODELS") == 0);
        r = NULL;
        CHECK_EQ(mp_ollama_resolve_name(NULL, "mymodel:7b", &r, &err), -ENOENT);
        check_error(&err, -ENOENT);
        char *hstore = pathf("%s/.ollama/models", home);
        char *hpath = ollama_manifest(hstore, "registry.ollama.ai/library/mymodel/7b", text);
        CHECK_EQ(mp_ollama_resolve_name(NULL, "mymodel:7b", &r, &err), 0);
        CHECK_STREQ(r, hpath);
        free(r);

        /* an empty $OLLAMA_MODELS is no store */
        CHECK(setenv("OLLAMA_MODELS", "", 1) == 0);
        CHECK_EQ(mp_ollama_resolve_name(NULL, "mymodel:7b", &r, &err), 0);
        CHECK_STREQ(r, hpath);
        free(r);
        CHECK(unsetenv("OLLAMA_MODELS") == 0);

        if (old_home)
                CHECK(setenv("HOME", old_home, 1) == 0);
        free(old_home);
        free(hpath);
        free(hstore);
        free(home);
        free(mpath);
        free(text);
        ollama_done(&f);
}

static void test_ollama_bad_names(void) {
        static const char *const bad[] = {
                "", "..", "../x", "x/..", "a/../b", "/etc/passwd", "a/b/c/d", "a/b/c/d:7b", "model:",
                "a//b", ":tag", "./m", "m:..", "m:.", "a b", "x\\y", "ns/..:7b", "bad\nname", "a/",
        };
        char *t = real_tmpdir();
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                mp_error err;
                mp_error_clear(&err);
                char *r = NULL;
                int code = mp_ollama_resolve_name(t, bad[i], &r, &err);
                if (code != -EINVAL)
                        fprintf(stderr, "name \"%s\": %d\n", bad[i], code);
                CHECK_EQ(code, -EINVAL);
                CHECK(err.reason[0]);
                CHECK(!r);
        }
        char *long_name = malloc(2000);
        memset(long_name, 'a', 1999);
        long_name[1999] = 0;
        mp_error err;
        char *r = NULL;
        CHECK_EQ(mp_ollama_resolve_name(t, long_name, &r, &err), -EINVAL);
        free(long_name);
        free(t);
}

/* Writes text as the manifest of mymodel:7b and collects it expecting code. */
static mp_model *try_manifest(const ollama_fixture *f, const char *text, int code, mp_error *err) {
        char *p = ollama_manifest(f->store, "registry.ollama.ai/library/mymodel/7b", text);
        mp_model *m = ollama_open(p, code, err);
        if (code < 0) {
                check_error(err, code);
                CHECK_STREQ(err->file, p);
        }
        free(p);
        return m;
}

static void test_ollama_bad_digests(void) {
        ollama_fixture f;
        ollama_init(&f);

        char upper[80];
        snprintf(upper, sizeof(upper), "\"sha256:%s\"", f.model.hex);
        for (char *s = upper + 8; *s != '"'; s++)
                if (*s >= 'a' && *s <= 'f')
                        *s = (char) (*s - 'a' + 'A');
        char short_hex[80];
        snprintf(short_hex, sizeof(short_hex), "\"sha256:%.63s\"", f.model.hex);
        char other_algo[80];
        snprintf(other_algo, sizeof(other_algo), "\"sha512:%s\"", f.model.hex);
        char path_hex[80];
        snprintf(path_hex, sizeof(path_hex), "\"sha256:../../../../../../etc/passwd\"");
        const char *strings[] = { upper, short_hex, other_algo, path_hex };

        for (size_t i = 0; i < ELEMENTSOF(strings); i++) {
                char *text = manifest_text(&f, strings[i], -1);
                mp_error err;
                mp_model *m = try_manifest(&f, text, -EBADMSG, &err);
                CHECK_EQ(err.offset, strstr(text, strings[i]) - text);
                CHECK(strstr(err.reason, "layers[0].digest"));
                mp_model_free(m);
                free(text);
        }

        /* not a string: the field is named, no offset */
        const char *values[] = { "12", "null", "{}" };
        for (size_t i = 0; i < ELEMENTSOF(values); i++) {
                char *text = manifest_text(&f, values[i], -1);
                mp_error err;
                mp_model *m = try_manifest(&f, text, -EBADMSG, &err);
                CHECK_EQ(err.offset, -1);
                CHECK(strstr(err.reason, "layers[0].digest"));
                mp_model_free(m);
                free(text);
        }
        ollama_done(&f);
}

static void test_ollama_missing_blob(void) {
        ollama_fixture f;
        ollama_init(&f);
        char *text = manifest_text(&f, NULL, -1);
        CHECK(unlink(f.model.path) == 0);

        mp_error err;
        mp_model *m = try_manifest(&f, text, -ENOENT, &err);
        char quoted[80];
        snprintf(quoted, sizeof(quoted), "\"sha256:%s\"", f.model.hex);
        CHECK_EQ(err.offset, strstr(text, quoted) - text);
        CHECK(strstr(err.reason, f.model.hex));
        CHECK(strstr(err.reason, "layers[0]"));
        mp_model_free(m);

        /* a dangling blob link is missing too */
        make_link("nowhere", f.model.path);
        m = try_manifest(&f, text, -ENOENT, &err);
        mp_model_free(m);
        CHECK(unlink(f.model.path) == 0);

        /* the old "sha256:<hex>" blob name is still found */
        char *old = pathf("%s/blobs/sha256:%s", f.store, f.model.hex);
        write_file(old, MODEL_BLOB, sizeof(MODEL_BLOB) - 1);
        m = try_manifest(&f, text, 0, &err);
        CHECK_STREQ(find_rel(m, "model")->path, old);
        mp_model_free(m);

        free(old);
        free(text);
        ollama_done(&f);
}

static void test_ollama_size_mismatch(void) {
        ollama_fixture f;
        ollama_init(&f);
        char *text = manifest_text(&f, NULL, (long long) f.model.size + 100);

        mp_error err;
        mp_model *m = try_manifest(&f, text, 0, &err);
        CHECK_EQ(m->n_files, 5);
        CHECK_EQ(m->n_findings, 1);
        CHECK_EQ(m->findings[0].kind, MP_FINDING_INCOMPLETE);
        CHECK(strstr(m->findings[0].detail, "size differs from manifest"));
        CHECK_STREQ(m->findings[0].file, f.model.path);
        CHECK_EQ(find_rel(m, "model")->size, f.model.size);
        mp_model_free(m);
        free(text);
        ollama_done(&f);
}

static void test_ollama_structure(void) {
        ollama_fixture f;
        ollama_init(&f);
        mp_error err;
        mp_model *m;
        char *text;

        /* no model layer */
        text = pathf("{\"schemaVersion\":2,\"layers\":[{\"mediaType\":\"application/vnd.ollama.image.template\","
                     "\"digest\":\"sha256:%s\",\"size\":%zu}]}", f.tmpl.hex, f.tmpl.size);
        m = try_manifest(&f, text, -EBADMSG, &err);
        CHECK(strstr(err.reason, "no model layer"));
        mp_model_free(m);
        free(text);

        /* bad JSON: jansson's position is the offset */
        const char *trunc = "{\"layers\": [";
        m = try_manifest(&f, trunc, -EBADMSG, &err);
        CHECK_EQ(err.offset, (int64_t) strlen(trunc));
        mp_model_free(m);
        m = try_manifest(&f, "{\"layers\": [] x}", -EBADMSG, &err);
        CHECK_EQ(err.offset, 15);
        mp_model_free(m);
        m = try_manifest(&f, "", -EBADMSG, &err);
        mp_model_free(m);

        /* duplicate keys: Ollama and we might pick different layers */
        text = pathf("{\"layers\":[{\"mediaType\":\"application/vnd.ollama.image.model\","
                     "\"digest\":\"sha256:%s\",\"size\":%zu}],\"layers\":[]}", f.model.hex, f.model.size);
        m = try_manifest(&f, text, -EBADMSG, &err);
        CHECK(strstr(err.reason, "duplicate"));
        mp_model_free(m);
        free(text);

        /* shapes that are not a manifest */
        static const struct {
                const char *text;
                int code;
                const char *reason;
        } cases[] = {
                { "[]", -EBADMSG, "not a JSON object" },
                { "{}", -EBADMSG, "layers" },
                { "{\"layers\": {}}", -EBADMSG, "layers" },
                { "{\"layers\": [1]}", -EBADMSG, "layers[0]: not an object" },
                { "{\"layers\": [{\"digest\": \"x\"}]}", -EBADMSG, "mediaType" },
                { "{\"schemaVersion\": 3, \"layers\": []}", -ENOTSUP, "schemaVersion" },
                { "{\"schemaVersion\": \"2\", \"layers\": []}", -ENOTSUP, "schemaVersion" },
                { "{\"config\": [], \"layers\": []}", -EBADMSG, "config" },
                { "{\"layers\": [{\"mediaType\": \"application/vnd.ollama.image.model\", \"digest\": "
                  "\"sha256:0000000000000000000000000000000000000000000000000000000000000000\"}]}",
                  -EBADMSG, "layers[0].size" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                m = try_manifest(&f, cases[i].text, cases[i].code, &err);
                if (!strstr(err.reason, cases[i].reason))
                        fprintf(stderr, "case %zu: reason \"%s\"\n", i, err.reason);
                CHECK(strstr(err.reason, cases[i].reason));
                mp_model_free(m);
        }

        /* sizes that are not sizes */
        const char *sizes[] = { "-1", "1.5", "\"12\"", "null" };
        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                text = pathf("{\"layers\":[{\"mediaType\":\"application/vnd.ollama.image.model\","
                             "\"digest\":\"sha256:%s\",\"size\":%s}]}", f.model.hex, sizes[i]);
                m = try_manifest(&f, text, -EBADMSG, &err);
                CHECK(strstr(err.reason, "layers[0].size"));
                mp_model_free(m);
                free(text);
        }

        /* too many layers */
        size_t cap = 1100 * 200 + 64, o = 0;
        char *big = malloc(cap);
        CHECK(big);
        o += (size_t) snprintf(big + o, cap - o, "{\"layers\":[");
        for (int i = 0; i < 1025; i++)
                o += (size_t) snprintf(big + o, cap - o, "%s{\"mediaType\":\"application/vnd.ollama.image.model\","
                                       "\"digest\":\"sha256:%s\",\"size\":%zu}", i ? "," : "", f.model.hex,
                                       f.model.size);
        snprintf(big + o, cap - o, "]}");
        m = try_manifest(&f, big, -E2BIG, &err);
        mp_model_free(m);
        free(big);

        /* a manifest over 1 MiB is refused before parsing */
        size_t huge = (1u << 20) + 1;
        char *h = malloc(huge + 1);
        CHECK(h);
        memset(h, ' ', huge);
        h[0] = '{';
        h[huge - 1] = '}';
        h[huge] = 0;
        m = try_manifest(&f, h, -E2BIG, &err);
        mp_model_free(m);
        free(h);

        ollama_done(&f);
}

static void test_ollama_layer_kinds(void) {
        ollama_fixture f;
        ollama_init(&f);
        blob lic1, lic2, proj, odd;
        ollama_blob(f.store, "MIT", 3, &lic1);
        ollama_blob(f.store, "Apache", 6, &lic2);
        ollama_blob(f.store, "GGUF projector", 14, &proj);
        ollama_blob(f.store, "???", 3, &odd);

        char *text = pathf("{\"layers\":["
                           "{\"mediaType\":\"application/vnd.ollama.image.model\",\"digest\":\"sha256:%s\",\"size\":%zu},"
                           "{\"mediaType\":\"application/vnd.ollama.image.projector\",\"digest\":\"sha256:%s\",\"size\":%zu},"
                           "{\"mediaType\":\"application/vnd.ollama.image.license\",\"digest\":\"sha256:%s\",\"size\":%zu},"
                           "{\"mediaType\":\"application/vnd.ollama.image.license\",\"digest\":\"sha256:%s\",\"size\":%zu},"
                           "{\"mediaType\":\"application/vnd.ollama.image.template; name=x\",\"digest\":\"sha256:%s\",\"size\":%zu},"
                           "{\"mediaType\":\"application/x-strange\",\"digest\":\"sha256:%s\",\"size\":%zu},"
                           "{\"mediaType\":\"application/vnd.ollama.image.Bad/../x\",\"digest\":\"sha256:%s\",\"size\":%zu}"
                           "]}",
                           f.model.hex, f.model.size, proj.hex, proj.size, lic1.hex, lic1.size, lic2.hex, lic2.size,
                           f.tmpl.hex, f.tmpl.size, odd.hex, odd.size, odd.hex, odd.size);
        mp_error err;
        mp_model *m = try_manifest(&f, text, 0, &err);
        CHECK_EQ(m->n_files, 8);        /* manifest + 7 layers, no config */
        check_blob_file(find_rel(m, "model"), "model", &f.model, MP_ROLE_WEIGHTS, MP_FORMAT_GGUF);
        check_blob_file(find_rel(m, "projector"), "projector", &proj, MP_ROLE_WEIGHTS, MP_FORMAT_GGUF);
        check_blob_file(find_rel(m, "license"), "license", &lic1, MP_ROLE_OTHER, MP_FORMAT_TEXT);
        check_blob_file(find_rel(m, "license#3"), "license#3", &lic2, MP_ROLE_OTHER, MP_FORMAT_TEXT);
        check_blob_file(find_rel(m, "template"), "template", &f.tmpl, MP_ROLE_OTHER, MP_FORMAT_TEXT);
        check_blob_file(find_rel(m, "layer#5"), "layer#5", &odd, MP_ROLE_OTHER, MP_FORMAT_BLOB);
        check_blob_file(find_rel(m, "layer#6"), "layer#6", &odd, MP_ROLE_OTHER, MP_FORMAT_BLOB);
        CHECK(!find_rel(m, "config"));
        mp_model_free(m);

        free(text);
        free(lic1.path);
        free(lic2.path);
        free(proj.path);
        free(odd.path);
        ollama_done(&f);
}

static void test_ollama_blob_links(void) {
        ollama_fixture f;
        ollama_init(&f);
        char *text = manifest_text(&f, NULL, -1);
        mp_error err;

        /* template blob is a link out of the store: finding, not read */
        CHECK(unlink(f.tmpl.path) == 0);
        make_link("/etc/passwd", f.tmpl.path);
        mp_model *m = try_manifest(&f, text, 0, &err);
        CHECK_EQ(m->n_files, 4);
        CHECK(!find_rel(m, "template"));
        CHECK_EQ(count_findings(m, MP_FINDING_SUSPICIOUS), 1);
        CHECK(strstr(m->findings[0].detail, "out of the store"));
        mp_model_free(m);

        /* ... a link inside blobs/ is fine */
        CHECK(unlink(f.tmpl.path) == 0);
        char *copy = pathf("%s/blobs/copy", f.store);
        write_file(copy, TEMPLATE_BLOB, strlen(TEMPLATE_BLOB));
        make_link("copy", f.tmpl.path);
        m = try_manifest(&f, text, 0, &err);
        CHECK_EQ(m->n_files, 5);
        CHECK_STREQ(find_rel(m, "template")->path, copy);
        CHECK_STREQ(find_rel(m, "template")->expect_hex, f.tmpl.hex);
        CHECK_EQ(m->n_findings, 0);
        mp_model_free(m);

        /* the model blob out of the store is an error: nothing to open */
        CHECK(unlink(f.model.path) == 0);
        make_link("/etc/passwd", f.model.path);
        m = try_manifest(&f, text, -EBADMSG, &err);
        CHECK(strstr(err.reason, "model"));
        mp_model_free(m);

        /* a directory where a blob should be */
        CHECK(unlink(f.model.path) == 0);
        mkdirs(f.model.path);
        m = try_manifest(&f, text, -EBADMSG, &err);
        mp_model_free(m);

        free(copy);
        free(text);
        ollama_done(&f);
}

static void test_ollama_not_in_store(void) {
        char *t = real_tmpdir();
        char *p = pathf("%s/manifest.json", t);
        write_file(p, "{}", 2);
        CHECK(!mp_ollama_detect(p));
        mp_error err;
        mp_model *m = ollama_open(p, -EINVAL, &err);
        check_error(&err, -EINVAL);
        mp_model_free(m);

        /* right depth, wrong name for manifests/ */
        char *q = pathf("%s/store/manifestz/r/n/m/t", t);
        char *qd = pathf("%s/store/manifestz/r/n/m", t);
        mkdirs(qd);
        write_file(q, "{}", 2);
        CHECK(!mp_ollama_detect(q));
        m = ollama_open(q, -EINVAL, &err);
        mp_model_free(m);

        /* a FIFO as the manifest: refused without opening it */
        char *fd = pathf("%s/store/manifests/r/n/m", t);
        mkdirs(fd);
        char *fifo = pathf("%s/fifo", fd);
        CHECK(mkfifo(fifo, 0600) == 0);
        CHECK(!mp_ollama_detect(fifo));
        m = ollama_open(fifo, -EBADMSG, &err);
        check_error(&err, -EBADMSG);
        mp_model_free(m);
        free(fifo);
        free(fd);

        char *missing = pathf("%s/nope/manifests/r/n/m/t", t);
        CHECK(!mp_ollama_detect(missing));
        m = ollama_open(missing, -ENOENT, &err);
        mp_model_free(m);

        free(missing);
        free(qd);
        free(q);
        free(p);
        free(t);
}

/* Inputs the fuzzer found interesting: each is collected as the manifest of
 * a fixture store; any result is fine, crashing is not. */
static void test_ollama_regressions(void) {
        const char *root = getenv("MODELPROV_SOURCE_ROOT");
        if (!root)
                return;
        char *dir = pathf("%s/tests/fuzz/regressions/ollama", root);
        DIR *d = opendir(dir);
        if (!d) {
                free(dir);
                return;
        }
        ollama_fixture f;
        ollama_init(&f);
        size_t n = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                char *p = pathf("%s/%s", dir, de->d_name);
                size_t len;
                char *buf = test_read(p, &len);
                char *mp = pathf("%s/manifests/registry.ollama.ai/library/fuzz/latest", f.store);
                char *md = strdup(mp);
                *strrchr(md, '/') = 0;
                mkdirs(md);
                write_file(mp, buf, len);
                mp_model *m = mp_model_new(mp);
                mp_error err;
                (void) mp_ollama_collect(m, mp, &err);
                mp_model_free(m);
                free(md);
                free(mp);
                free(buf);
                free(p);
                n++;
        }
        closedir(d);
        fprintf(stderr, "replayed %zu regression inputs\n", n);
        ollama_done(&f);
        free(dir);
}

int main(void) {
        RUN(test_hub_repo_with_ref);
        RUN(test_hub_snapshot_direct);
        RUN(test_hub_escaping_links);
        RUN(test_hub_blob_is_link);
        RUN(test_hub_absolute_link);
        RUN(test_hub_dangling_and_incomplete);
        RUN(test_hub_copies_and_odd_names);
        RUN(test_hub_link_stubs);
        RUN(test_hub_deep_nesting);
        RUN(test_hub_refs);
        RUN(test_hub_not_model_repos);
        RUN(test_hub_zoo);
        RUN(test_ollama_valid);
        RUN(test_ollama_names);
        RUN(test_ollama_default_stores);
        RUN(test_ollama_bad_names);
        RUN(test_ollama_bad_digests);
        RUN(test_ollama_missing_blob);
        RUN(test_ollama_size_mismatch);
        RUN(test_ollama_structure);
        RUN(test_ollama_layer_kinds);
        RUN(test_ollama_blob_links);
        RUN(test_ollama_not_in_store);
        RUN(test_ollama_regressions);
        return 0;
}
