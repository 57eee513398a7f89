/* hub.c - the Hugging Face hub cache layout: models--ORG--NAME/{refs,snapshots,blobs}.
 *
 * Finds the snapshot a path means, walks it, and adds every model file to the
 * mp_model pointing at its blob, with the digest the blob's name promises (the
 * pass verifies it later).  Snapshot entries are symlinks written by whoever
 * filled the cache, possibly an attacker, so a link is first resolved on paper
 * and must land in the repo's own blobs/ before the file system is asked
 * anything about its target; it is then resolved again with realpath(),
 * because a blobs/ entry may itself be a link.  Nothing here reads a blob. */
#include "formats/hub.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/macro.h"
#include "util/strutil.h"
#include "util/source.h"

#define HUB_MAX_DEPTH        8          /* subdirectory levels inside a snapshot */
#define HUB_MAX_DIR_ENTRIES  10000      /* entries in one directory */
#define HUB_MAX_ENTRIES      100000     /* entries in a whole snapshot */
#define HUB_MAX_BLOBS        1000000    /* entries in blobs/ scanned for *.incomplete */
#define HUB_REF_MAX          4096
#define HUB_STUB_MAX         PATH_MAX   /* a link stub holds one path */
#define HUB_REV_LEN          40





/* What the blob's name promises about its content: LFS files are named by
 * their SHA-256, small git files by their git blob SHA-1. */
static mp_expect_kind expect_from_blob_name(const char *name) {
        size_t n = strlen(name);
        if (n == 64 && mp_is_lower_hex(name, n))
                return MP_EXPECT_SHA256;
        if (n == 40 && mp_is_lower_hex(name, n))
                return MP_EXPECT_GIT_SHA1;
        return MP_EXPECT_NONE;
}


/* Lexical normalisation of an absolute path: collapses "//", "." and ".."
 * ("/.." stays "/").  Text only: it asks the file system nothing, which is
 * the point when the path comes from an untrusted link. */
static int path_normalize(const char *path, char **ret) {
        assert(path && path[0] == '/');

        _cleanup_(freep) char *out = malloc(strlen(path) + 2);
        if (!out)
                return -ENOMEM;

        size_t o = 0;
        for (const char *p = path; *p;) {
                while (*p == '/')
                        p++;
                if (!*p)
                        break;
                const char *e = strchrnul(p, '/');
                size_t len = (size_t) (e - p);
                if (len == 2 && p[0] == '.' && p[1] == '.') {
                        while (o > 0 && out[o - 1] != '/')
                                o--;
                        if (o > 0)
                                o--;
                } else if (!(len == 1 && p[0] == '.')) {
                        out[o++] = '/';
                        memcpy(out + o, p, len);
                        o += len;
                }
                p = e;
        }
        if (o == 0)
                out[o++] = '/';
        out[o] = 0;
        *ret = TAKE_PTR(out);
        return 0;
}

/* The lexical parent of a normalized absolute path ("/" for "/x"). */
static int path_parent(const char *path, char **ret) {
        const char *s = strrchr(path, '/');
        assert(s);
        char *p = s == path ? strdup("/") : strndup(path, (size_t) (s - path));
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

/* path as an absolute, lexically normalized path, without resolving links. */
static int path_make_absolute(const char *path, char **ret) {
        if (path[0] == '/')
                return path_normalize(path, ret);

        _cleanup_(freep) char *cwd = getcwd(NULL, 0);
        if (!cwd)
                return -errno;
        _cleanup_(freep) char *j = mp_path_join(cwd, path);
        if (!j)
                return -ENOMEM;
        return path_normalize(j, ret);
}

typedef struct name_list {
        char **names;
        size_t n, allocated;
} name_list;

static void name_list_clear(name_list *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->names[i]);
        free(l->names);
        *l = (name_list) {};
}

static int cmp_names(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The entries of dir except "." and "..", sorted so that files come out in
 * the same order on every host.  More than limit entries is -E2BIG. */
static int read_dir_names(const char *dir, size_t limit, name_list *ret, mp_error *err) {
        _cleanup_(name_list_clear) name_list l = {};

        DIR *d = opendir(dir);
        if (!d)
                return mp_error_set(err, -errno, dir, -1, "cannot open directory: %s", strerror(errno));

        int r = 0;
        for (;;) {
                errno = 0;
                struct dirent *de = readdir(d);
                if (!de) {
                        if (errno != 0)
                                r = mp_error_set(err, -errno, dir, -1, "cannot read directory: %s",
                                                 strerror(errno));
                        break;
                }
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (l.n >= limit) {
                        r = mp_error_set(err, -E2BIG, dir, -1, "more than %zu directory entries", limit);
                        break;
                }
                if (MP_GROW(l.names, l.allocated, l.n + 1) < 0 || !(l.names[l.n] = strdup(de->d_name))) {
                        r = mp_error_set(err, -ENOMEM, dir, -1, "out of memory");
                        break;
                }
                l.n++;
        }
        closedir(d);
        if (r < 0)
                return r;

        if (l.n > 1)
                qsort(l.names, l.n, sizeof(*l.names), cmp_names);
        *ret = l;
        l = (name_list) {};
        return 0;
}

/* 1 for "models--*", -EINVAL for the other repo kinds of a hub cache, 0 for
 * anything else. */
static int repo_dir_kind(const char *name) {
        if (mp_has_prefix(name, "models--"))
                return 1;
        if (mp_has_prefix(name, "datasets--") || mp_has_prefix(name, "spaces--"))
                return -EINVAL;
        return 0;
}

/* "models--ORG--NAME" -> "ORG/NAME"; "models--NAME" -> "NAME" (canonical
 * repos without an owner).  The hub refuses "--" inside repo ids, so the
 * first "--" is the separator. */
static int repo_id_from_dir(const char *dir_name, char **ret) {
        const char *rest = dir_name + strlen("models--");
        if (!*rest)
                return -EINVAL;

        const char *sep = strstr(rest, "--");
        char *id = NULL;
        if (!sep)
                id = strdup(rest);
        else if (sep == rest || !sep[2])
                return -EINVAL;
        else if (asprintf(&id, "%.*s/%s", (int) (sep - rest), rest, sep + 2) < 0)
                id = NULL;
        if (!id)
                return -ENOMEM;
        *ret = id;
        return 0;
}

/* The revision refs/main names, or NULL in *ret when there is no refs/main. */
static int read_ref_main(const char *repo, char **ret, mp_error *err) {
        _cleanup_(freep) char *ref = mp_path_join(repo, "refs/main");
        if (!ref)
                return mp_error_set(err, -ENOMEM, repo, -1, "out of memory");

        /* stat() first: opening a FIFO planted as refs/main would block. */
        struct stat st;
        if (stat(ref, &st) < 0) {
                if (errno != ENOENT)
                        return mp_error_set(err, -errno, ref, -1, "cannot stat: %s", strerror(errno));
                *ret = NULL;
                return 0;
        }
        if (!S_ISREG(st.st_mode))
                return mp_error_set(err, -EBADMSG, ref, -1, "not a regular file");

        _cleanup_(freep) char *buf = NULL;
        size_t len = 0;
        int r = mp_read_file_limited(ref, ref, HUB_REF_MAX, &buf, &len, err);
        if (r < 0)
                return r;

        /* huggingface_hub writes the bare commit; tolerate a trailing newline. */
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' ||
                           buf[len - 1] == '\t'))
                buf[--len] = 0;

        for (size_t i = 0; i < len && i < HUB_REV_LEN; i++)
                if (!mp_is_lower_hex(buf + i, 1))
                        return mp_error_set(err, -EBADMSG, ref, (int64_t) i,
                                            "not a commit hash (40 lowercase hex digits expected)");
        if (len != HUB_REV_LEN)
                return mp_error_set(err, -EBADMSG, ref, (int64_t) (len < HUB_REV_LEN ? len : HUB_REV_LEN),
                                    "commit hash is %zu characters long, 40 expected", len);

        *ret = TAKE_PTR(buf);
        return 0;
}

/* Without refs/main: the only snapshot, or the most recently modified one
 * (ties broken by name, so that the choice does not depend on readdir). */
static int pick_snapshot(const char *repo, char **ret, mp_error *err) {
        _cleanup_(freep) char *snapshots = mp_path_join(repo, "snapshots");
        if (!snapshots)
                return mp_error_set(err, -ENOMEM, repo, -1, "out of memory");

        _cleanup_(name_list_clear) name_list l = {};
        int r = read_dir_names(snapshots, HUB_MAX_DIR_ENTRIES, &l, err);
        if (r < 0)
                return r;

        const char *best = NULL;
        struct timespec best_time = {};
        for (size_t i = 0; i < l.n; i++) {
                _cleanup_(freep) char *p = mp_path_join(snapshots, l.names[i]);
                if (!p)
                        return mp_error_set(err, -ENOMEM, repo, -1, "out of memory");
                struct stat st;
                if (lstat(p, &st) < 0 || !S_ISDIR(st.st_mode))
                        continue;
                if (!best || st.st_mtim.tv_sec > best_time.tv_sec ||
                    (st.st_mtim.tv_sec == best_time.tv_sec && st.st_mtim.tv_nsec >= best_time.tv_nsec)) {
                        best = l.names[i];
                        best_time = st.st_mtim;
                }
        }
        if (!best)
                return mp_error_set(err, -ENOENT, snapshots, -1, "no snapshot in the repo");

        char *c = strdup(best);
        if (!c)
                return mp_error_set(err, -ENOMEM, repo, -1, "out of memory");
        *ret = c;
        return 0;
}

/* Where a path given by the user lives in the cache. */
typedef struct hub_location {
        char *repo;             /* real path of models--ORG--NAME */
        char *repo_given;       /* the same reached through the user's path, if it differs */
        char *repo_id;          /* "ORG/NAME" */
        char *revision;
        char *snapshot;         /* real path of snapshots/<revision> */
} hub_location;

static void hub_location_clear(hub_location *l) {
        free(l->repo);
        free(l->repo_given);
        free(l->repo_id);
        free(l->revision);
        free(l->snapshot);
        *l = (hub_location) {};
}

static int locate(const char *path, hub_location *loc, mp_error *err) {
        _cleanup_(freep) char *real = realpath(path, NULL);
        if (!real)
                return mp_error_set(err, -errno, path, -1, "cannot resolve: %s", strerror(errno));

        struct stat st;
        if (stat(real, &st) < 0)
                return mp_error_set(err, -errno, path, -1, "cannot stat: %s", strerror(errno));
        if (!S_ISDIR(st.st_mode))
                return mp_error_set(err, -ENOTDIR, path, -1, "not a directory");

        _cleanup_(freep) char *given = NULL;
        int r = path_make_absolute(path, &given);
        if (r < 0)
                return mp_error_set(err, r, path, -1, "cannot make the path absolute: %s", strerror(-r));

        _cleanup_(freep) char *parent = NULL;
        _cleanup_(freep) char *grandparent = NULL;
        r = path_parent(real, &parent);
        if (r >= 0)
                r = path_parent(parent, &grandparent);
        if (r < 0)
                return mp_error_set(err, r, path, -1, "out of memory");

        bool snapshot_mode = false;
        int kind = repo_dir_kind(mp_base_name(real));
        if (kind == 0 && strcmp(mp_base_name(parent), "snapshots") == 0) {
                kind = repo_dir_kind(mp_base_name(grandparent));
                snapshot_mode = kind != 0;
        }
        if (kind < 0)
                return mp_error_set(err, -EINVAL, path, -1,
                                    "not a model repo (a dataset or space in the hub cache)");
        if (kind == 0)
                return mp_error_set(err, -EINVAL, path, -1,
                                    "not a hub cache repo (models--ORG--NAME) or a snapshot inside one");

        if (snapshot_mode) {
                loc->repo = TAKE_PTR(grandparent);
                loc->revision = strdup(mp_base_name(real));
                loc->snapshot = TAKE_PTR(real);
                if (!loc->revision)
                        return mp_error_set(err, -ENOMEM, path, -1, "out of memory");
                /* The user's spelling of the repo, for links written with it. */
                _cleanup_(freep) char *gp = NULL;
                if (path_parent(given, &gp) >= 0 && path_parent(gp, &loc->repo_given) < 0)
                        loc->repo_given = NULL;
        } else {
                loc->repo = TAKE_PTR(real);
                loc->repo_given = TAKE_PTR(given);
                r = read_ref_main(loc->repo, &loc->revision, err);
                if (r < 0)
                        return r;
                if (!loc->revision) {
                        r = pick_snapshot(loc->repo, &loc->revision, err);
                        if (r < 0)
                                return r;
                }
                _cleanup_(freep) char *rel = NULL;
                if (asprintf(&rel, "snapshots/%s", loc->revision) < 0 || !(loc->snapshot = mp_path_join(loc->repo, rel)))
                        return mp_error_set(err, -ENOMEM, path, -1, "out of memory");
                if (lstat(loc->snapshot, &st) < 0 || !S_ISDIR(st.st_mode))
                        return mp_error_set(err, -ENOENT, path, -1,
                                            "refs/main names revision %s but snapshots/%s does not exist",
                                            loc->revision, loc->revision);
        }

        if (loc->repo_given && strcmp(loc->repo_given, loc->repo) == 0) {
                free(loc->repo_given);
                loc->repo_given = NULL;
        }

        r = repo_id_from_dir(mp_base_name(loc->repo), &loc->repo_id);
        if (r == -EINVAL)
                return mp_error_set(err, r, path, -1, "'%s' is not a hub repo name (models--ORG--NAME)",
                                    mp_base_name(loc->repo));
        if (r < 0)
                return mp_error_set(err, r, path, -1, "out of memory");
        return 0;
}

typedef struct hub_walk {
        mp_model *m;
        mp_error *err;
        char *blobs[2];         /* "<repo>/blobs" as resolved and as the user spelled it */
        char *blobs_real;       /* realpath of blobs/, NULL when it does not exist */
        size_t n_entries;
} hub_walk;

static void hub_walk_clear(hub_walk *w) {
        free(w->blobs[0]);
        free(w->blobs[1]);
        free(w->blobs_real);
}

static int add_file(hub_walk *w, const char *path, const char *rel, uint64_t size, const char *blob_name) {
        mp_file_role role;
        mp_format format;
        if (!mp_classify_file_name(mp_base_name(rel), &role, &format))
                return 0;

        int i = mp_model_add_file(w->m, path, rel, role, format, size);
        if (i < 0)
                return mp_error_set(w->err, i, path, -1, "out of memory");

        mp_expect_kind kind = blob_name ? expect_from_blob_name(blob_name) : MP_EXPECT_NONE;
        if (kind != MP_EXPECT_NONE) {
                w->m->files[i].expect_kind = kind;
                if (!(w->m->files[i].expect_hex = strdup(blob_name)))
                        return mp_error_set(w->err, -ENOMEM, path, -1, "out of memory");
        }
        return 0;
}

/* A finding about file; target, when not empty, is where a link points. */
static int finding(hub_walk *w, mp_finding_kind kind, const char *file, const char *what, const char *target) {
        char t[256];
        mp_printable(t, sizeof(t), target);
        int r = mp_model_add_finding(w->m, kind, file, -1, "%s%s%s%s", what, *t ? " (-> " : "", t, *t ? ")" : "");
        if (r < 0)
                return mp_error_set(w->err, r, file, -1, "out of memory");
        return 0;
}

/* target resolved on paper from dir: 1 if it lands directly in this repo's
 * blobs/ (as resolved or as the user spelled the repo), 0 if not.  *ret_joined
 * is the unnormalized absolute target, for realpath(). */
static int target_in_blobs(const hub_walk *w, const char *dir, const char *target, char **ret_joined) {
        _cleanup_(freep) char *joined = target[0] == '/' ? strdup(target) : mp_path_join(dir, target);
        _cleanup_(freep) char *lexical = NULL;
        if (!joined || path_normalize(joined, &lexical) < 0)
                return -ENOMEM;

        *ret_joined = TAKE_PTR(joined);
        return mp_is_direct_child(lexical, w->blobs[0]) || (w->blobs[1] && mp_is_direct_child(lexical, w->blobs[1]));
}

/* A snapshot entry that is a link (or a link stub, see add_regular()):
 * added only if it leads to a regular file directly inside this repo's
 * blobs/, judged first on paper, then with realpath() on the unnormalized
 * target so that the kernel's view of ".." across links is what counts. */
static int add_target(hub_walk *w, const char *dir, const char *full, const char *rel, const char *target) {
        _cleanup_(freep) char *joined = NULL;
        int r = target_in_blobs(w, dir, target, &joined);
        if (r < 0)
                return mp_error_set(w->err, r, full, -1, "out of memory");
        if (r == 0)
                return finding(w, MP_FINDING_SUSPICIOUS, full, "snapshot link escapes the repo", target);

        _cleanup_(freep) char *real = realpath(joined, NULL);
        if (!real) {
                int e = errno;
                if (e == ENOENT || e == ENOTDIR)
                        return finding(w, MP_FINDING_INCOMPLETE, full, "dangling snapshot link: blob missing",
                                       target);
                if (e == ELOOP)
                        return finding(w, MP_FINDING_SUSPICIOUS, full, "snapshot link loops", target);
                return mp_error_set(w->err, -e, full, -1, "cannot resolve link: %s", strerror(e));
        }
        if (!w->blobs_real || !mp_is_direct_child(real, w->blobs_real))
                return finding(w, MP_FINDING_SUSPICIOUS, full, "snapshot link escapes the repo", real);

        struct stat st;
        if (stat(real, &st) < 0)
                return mp_error_set(w->err, -errno, real, -1, "cannot stat blob: %s", strerror(errno));
        if (!S_ISREG(st.st_mode))
                return finding(w, MP_FINDING_SUSPICIOUS, full, "blob is not a regular file", real);

        mp_file_role role;
        mp_format format;
        if (!mp_classify_file_name(mp_base_name(rel), &role, &format))
                return 0;

        /* A cache blob always carries its digest in its name: one that does
         * not cannot be verified, which is worth hearing about. */
        if (expect_from_blob_name(mp_base_name(real)) == MP_EXPECT_NONE) {
                r = finding(w, MP_FINDING_SUSPICIOUS, full, "blob name is not a content digest", real);
                if (r < 0)
                        return r;
        }
        return add_file(w, real, rel, (uint64_t) st.st_size, mp_base_name(real));
}

static int add_link(hub_walk *w, const char *dir, const char *full, const char *rel) {
        char target[PATH_MAX];
        ssize_t n = readlink(full, target, sizeof(target));
        if (n < 0)
                return mp_error_set(w->err, -errno, full, -1, "cannot read link: %s", strerror(errno));
        if ((size_t) n >= sizeof(target))
                return finding(w, MP_FINDING_SUSPICIOUS, full, "snapshot link target too long", "");
        if (n == 0)
                return finding(w, MP_FINDING_SUSPICIOUS, full, "empty snapshot link", "");
        target[n] = 0;
        return add_target(w, dir, full, rel, target);
}

/* A regular file in a snapshot is either a copy of the blob (tools that do
 * not link; nothing to verify) or a link stub: a cache copied with a tool
 * that does not keep symlinks (git with core.symlinks=false, some archivers)
 * leaves small files holding the link target, "../../blobs/<name>".  A stub
 * is followed only when its text, resolved on paper, lands in blobs/; any
 * other content is the file's own. */
static int add_regular(hub_walk *w, const char *dir, const char *full, const char *rel, const struct stat *st) {
        mp_file_role role;
        mp_format format;
        if (!mp_classify_file_name(mp_base_name(rel), &role, &format))
                return 0;

        if (st->st_size > 0 && st->st_size < HUB_STUB_MAX) {
                _cleanup_(freep) char *buf = NULL;
                size_t len = 0;
                int r = mp_read_file_limited(full, full, HUB_STUB_MAX, &buf, &len, w->err);
                if (r < 0)
                        return r;
                if (len > 0 && buf[len - 1] == '\n')
                        buf[--len] = 0;

                bool text = len > 0;
                for (size_t i = 0; i < len && text; i++)
                        text = (unsigned char) buf[i] >= 0x20 && buf[i] != 0x7f;

                _cleanup_(freep) char *joined = NULL;
                r = text ? target_in_blobs(w, dir, buf, &joined) : 0;
                if (r < 0)
                        return mp_error_set(w->err, r, full, -1, "out of memory");
                if (r > 0)
                        return add_target(w, dir, full, rel, buf);
        }
        return add_file(w, full, rel, (uint64_t) st->st_size, NULL);
}

static int walk_dir(hub_walk *w, const char *dir, const char *rel_prefix, unsigned depth);

static int walk_entry(hub_walk *w, const char *dir, const char *rel_prefix, const char *name, unsigned depth) {
        _cleanup_(freep) char *full = mp_path_join(dir, name);
        _cleanup_(freep) char *rel = rel_prefix ? mp_path_join(rel_prefix, name) : strdup(name);
        if (!full || !rel)
                return mp_error_set(w->err, -ENOMEM, dir, -1, "out of memory");

        struct stat st;
        if (lstat(full, &st) < 0) {
                if (errno == ENOENT)    /* removed while we walk: a download being cleaned up */
                        return 0;
                return mp_error_set(w->err, -errno, full, -1, "cannot stat: %s", strerror(errno));
        }

        if (S_ISDIR(st.st_mode)) {
                if (depth >= HUB_MAX_DEPTH)
                        return finding(w, MP_FINDING_SUSPICIOUS, full, "snapshot nested too deeply: not read", "");
                return walk_dir(w, full, rel, depth + 1);
        }
        if (S_ISLNK(st.st_mode))
                return add_link(w, dir, full, rel);
        if (S_ISREG(st.st_mode))
                return add_regular(w, dir, full, rel, &st);
        return finding(w, MP_FINDING_SUSPICIOUS, full, "snapshot entry is not a file, link or directory", "");
}

static int walk_dir(hub_walk *w, const char *dir, const char *rel_prefix, unsigned depth) {
        _cleanup_(name_list_clear) name_list l = {};
        int r = read_dir_names(dir, HUB_MAX_DIR_ENTRIES, &l, w->err);
        if (r < 0)
                return r;

        /* n_entries never exceeds the limit, so the subtraction cannot wrap. */
        if (l.n > HUB_MAX_ENTRIES - w->n_entries)
                return mp_error_set(w->err, -E2BIG, dir, -1, "snapshot has more than %d entries",
                                    HUB_MAX_ENTRIES);
        w->n_entries += l.n;

        for (size_t i = 0; i < l.n; i++) {
                r = walk_entry(w, dir, rel_prefix, l.names[i], depth);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Downloads in progress leave blobs/<name>.incomplete: the snapshot may lack
 * files that the finished model has. */
static int report_incomplete(hub_walk *w) {
        if (!w->blobs_real)
                return 0;

        _cleanup_(name_list_clear) name_list l = {};
        int r = read_dir_names(w->blobs_real, HUB_MAX_BLOBS, &l, w->err);
        if (r < 0)
                return r;

        for (size_t i = 0; i < l.n; i++) {
                if (!mp_has_suffix(l.names[i], ".incomplete"))
                        continue;
                _cleanup_(freep) char *p = mp_path_join(w->blobs_real, l.names[i]);
                if (!p)
                        return mp_error_set(w->err, -ENOMEM, w->blobs_real, -1, "out of memory");
                r = mp_model_add_finding(w->m, MP_FINDING_INCOMPLETE, p, -1, "download in progress");
                if (r < 0)
                        return mp_error_set(w->err, r, p, -1, "out of memory");
        }
        return 0;
}

static int replace_string(char **field, const char *value) {
        char *c = strdup(value);
        if (!c)
                return -ENOMEM;
        free(*field);
        *field = c;
        return 0;
}

int mp_hub_collect(mp_model *m, const char *path, mp_error *err) {
        assert(m);
        assert(path);

        _cleanup_(hub_location_clear) hub_location loc = {};
        int r = locate(path, &loc, err);
        if (r < 0)
                return r;

        _cleanup_(hub_walk_clear) hub_walk w = { .m = m, .err = err };
        w.blobs[0] = mp_path_join(loc.repo, "blobs");
        if (!w.blobs[0] || (loc.repo_given && !(w.blobs[1] = mp_path_join(loc.repo_given, "blobs"))))
                return mp_error_set(err, -ENOMEM, path, -1, "out of memory");
        w.blobs_real = realpath(w.blobs[0], NULL);
        if (!w.blobs_real && errno != ENOENT)
                return mp_error_set(err, -errno, w.blobs[0], -1, "cannot resolve: %s", strerror(errno));

        r = walk_dir(&w, loc.snapshot, NULL, 0);
        if (r < 0)
                return r;
        r = report_incomplete(&w);
        if (r < 0)
                return r;

        if (replace_string(&m->name, loc.repo_id) < 0 || replace_string(&m->revision, loc.revision) < 0)
                return mp_error_set(err, -ENOMEM, path, -1, "out of memory");
        m->layout = MP_LAYOUT_HUB;
        return 0;
}

bool mp_hub_detect(const char *path) {
        assert(path);

        _cleanup_(freep) char *real = realpath(path, NULL);
        struct stat st;
        if (!real || stat(real, &st) < 0 || !S_ISDIR(st.st_mode))
                return false;

        if (repo_dir_kind(mp_base_name(real)) > 0) {
                _cleanup_(freep) char *s = mp_path_join(real, "snapshots");
                return s && stat(s, &st) == 0 && S_ISDIR(st.st_mode);
        }

        _cleanup_(freep) char *parent = NULL;
        _cleanup_(freep) char *grandparent = NULL;
        if (path_parent(real, &parent) < 0 || path_parent(parent, &grandparent) < 0)
                return false;
        return strcmp(mp_base_name(parent), "snapshots") == 0 && repo_dir_kind(mp_base_name(grandparent)) > 0;
}
