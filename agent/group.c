/* group.c - from a changed path to the models it affects (see group.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/group.h"
#include "daemon/options.h"
#include "formats/model.h"
#include "util/macro.h"
#include "util/strutil.h"

#define OLLAMA_WALK_DEPTH 6

static int add_root(char ***roots, const char *root) {
        size_t n = mp_strv_length(*roots);
        for (size_t i = 0; i < n; i++)
                if (strcmp((*roots)[i], root) == 0)
                        return 0;
        char **nl = realloc(*roots, (n + 2) * sizeof(char *));
        if (!nl)
                return -ENOMEM;
        *roots = nl;
        nl[n] = strdup(root);
        if (!nl[n])
                return -ENOMEM;
        nl[n + 1] = NULL;
        return 1;
}

static bool exists_in(const char *dir, const char *name) {
        char p[PATH_MAX];
        struct stat st;
        return (size_t) snprintf(p, sizeof p, "%s/%s", dir, name) < sizeof p && lstat(p, &st) == 0;
}

typedef enum walk_mode {
        WALK_SUBDIRS,                   /* the directories right below (hub snapshots) */
        WALK_FILES,                     /* every regular file below (Ollama manifests) */
} walk_mode;

/* Adds the entries of dir that mode asks for, bounded in depth. */
static int add_below(const char *dir, walk_mode mode, unsigned depth, char ***roots) {
        if (depth > OLLAMA_WALK_DEPTH)
                return 0;
        _cleanup_(closedirp) DIR *d = opendir(dir);
        if (!d)
                return 0;
        int added = 0;
        for (struct dirent *de; (de = readdir(d));) {
                if (de->d_name[0] == '.')
                        continue;
                char p[PATH_MAX];
                struct stat st;
                if ((size_t) snprintf(p, sizeof p, "%s/%s", dir, de->d_name) >= sizeof p || lstat(p, &st) < 0)
                        continue;
                int r = 0;
                if (mode == WALK_SUBDIRS && S_ISDIR(st.st_mode))
                        r = add_root(roots, p);
                else if (mode == WALK_FILES && S_ISDIR(st.st_mode))
                        r = add_below(p, mode, depth + 1, roots);
                else if (mode == WALK_FILES && S_ISREG(st.st_mode))
                        r = add_root(roots, p);
                if (r < 0)
                        return r;
                added += r;
        }
        return added;
}

/* Hub cache: path contains a "models--*" (or datasets--/spaces--: not
 * models, ignored) component. */
static int group_hub(const char *watch_root, const char *path, char ***roots, bool *matched) {
        /* Only below the watch root: a root named /srv/models--archive is
         * not a hub repo. */
        const char *c = strstr(path + strlen(watch_root), "/models--");
        if (!c)
                return 0;
        const char *repo_end = strchr(c + 1, '/');
        if (!repo_end)
                return *matched = true, 0;  /* the repo dir itself: its snapshots, below */
        *matched = true;

        char repo[PATH_MAX];
        size_t repo_len = (size_t) (repo_end - path);
        if (repo_len >= sizeof repo)
                return 0;
        memcpy(repo, path, repo_len);
        repo[repo_len] = '\0';

        char snapshots[PATH_MAX + 16];
        snprintf(snapshots, sizeof snapshots, "%s/snapshots", repo);
        const char *rest = repo_end + 1;
        if (strncmp(rest, "snapshots/", 10) == 0 && rest[10] != '\0') {
                const char *rev_end = strchr(rest + 10, '/');
                char snap[PATH_MAX];
                size_t n = rev_end ? (size_t) (rev_end - path) : strlen(path);
                if (n >= sizeof snap)
                        return 0;
                memcpy(snap, path, n);
                snap[n] = '\0';
                return add_root(roots, snap);
        }
        if (strncmp(rest, ".no_exist", 9) == 0)
                return 0;
        /* blobs/, refs/: every snapshot may use what changed. */
        return add_below(snapshots, WALK_SUBDIRS, 0, roots);
}

/* Ollama store: an ancestor (inside the watch root) with both manifests/
 * and blobs/. */
static int group_ollama(const char *watch_root, const char *path, char ***roots, bool *matched) {
        char dir[PATH_MAX];
        if (strlen(path) >= sizeof dir)
                return 0;
        strcpy(dir, path);
        size_t root_len = strlen(watch_root);

        for (char *slash; (slash = strrchr(dir, '/')) && (size_t) (slash - dir) >= root_len;) {
                *slash = '\0';
                const char *below = path + strlen(dir) + 1;
                bool in_manifests = strncmp(below, "manifests/", 10) == 0;
                bool in_blobs = strncmp(below, "blobs/", 6) == 0;
                if (!in_manifests && !in_blobs)
                        continue;
                if (!exists_in(dir, "manifests") || !exists_in(dir, "blobs"))
                        continue;
                *matched = true;
                if (in_manifests)
                        return add_root(roots, path);
                char manifests[PATH_MAX + 16];
                snprintf(manifests, sizeof manifests, "%s/manifests", dir);
                return add_below(manifests, WALK_FILES, 0, roots);
        }
        return 0;
}

/* A directory model: the nearest ancestor with config.json or an index. */
static int group_plain(const char *watch_root, const char *path, char ***roots) {
        const char *base = mp_base_name(path);
        mp_file_role role;
        mp_format format;
        if (!mp_classify_file_name(base, &role, &format))
                return 0;

        char dir[PATH_MAX];
        if (strlen(path) >= sizeof dir)
                return 0;
        strcpy(dir, path);
        size_t root_len = strlen(watch_root);
        for (char *slash; (slash = strrchr(dir, '/')) && (size_t) (slash - dir) >= root_len;) {
                *slash = '\0';
                if (dir[0] == '\0')
                        break;
                if (exists_in(dir, "config.json") || exists_in(dir, "model.safetensors.index.json"))
                        return add_root(roots, dir);
        }
        if (role == MP_ROLE_WEIGHTS)
                return add_root(roots, path);
        return 0;
}

int agent_group_roots(const char *watch_root, const char *path, char ***roots) {
        bool matched = false;
        int r = group_hub(watch_root, path, roots, &matched);
        if (matched || r != 0)
                return r;
        r = group_ollama(watch_root, path, roots, &matched);
        if (matched || r != 0)
                return r;
        return group_plain(watch_root, path, roots);
}
