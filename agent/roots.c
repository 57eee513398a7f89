/* roots.c - the default watch roots (see roots.h). */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/roots.h"
#include "daemon/log.h"
#include "daemon/options.h"
#include "util/macro.h"
#include "util/strutil.h"

typedef struct root_list {
        char **paths;
        size_t n;
        int r;
} root_list;

static bool is_dir(const char *path) {
        struct stat st;
        return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Adds a candidate when it is an existing directory not listed yet; the
 * canonical path is kept so /models and a symlink to it count once. */
static void add_candidate(root_list *l, const char *path) {
        if (l->r < 0 || !path || path[0] != '/')
                return;
        if (!is_dir(path)) {
                log_debug("default root %s: not present", path);
                return;
        }
        _cleanup_(freep) char *real = realpath(path, NULL);
        if (!real || strcmp(real, "/") == 0)
                return;         /* never the whole file system by default */
        for (size_t i = 0; i < l->n; i++)
                if (strcmp(l->paths[i], real) == 0)
                        return;
        char **np = realloc(l->paths, (l->n + 2) * sizeof(char *));
        if (!np) {
                l->r = -ENOMEM;
                return;
        }
        l->paths = np;
        l->paths[l->n++] = TAKE_PTR(real);
        l->paths[l->n] = NULL;
}

static void add_joined(root_list *l, const char *base, const char *rest) {
        if (!base || base[0] != '/')
                return;
        char path[4096];
        if ((size_t) snprintf(path, sizeof path, "%s/%s", base, rest) < sizeof path)
                add_candidate(l, path);
}

/* A cache in an account's home, only when no component below the home is a
 * symlink: the agent reads every file (CAP_DAC_READ_SEARCH, or root), and
 * any user could otherwise point it at /, /root or another user's files by
 * making ~/.cache/huggingface/hub a link. */
static void add_home_cache(root_list *l, const char *home, const char *rest) {
        if (!home || home[0] != '/')
                return;
        _cleanup_(freep) char *real_home = realpath(home, NULL);
        char path[4096], expected[4096];
        if (!real_home || (size_t) snprintf(path, sizeof path, "%s/%s", home, rest) >= sizeof path ||
            (size_t) snprintf(expected, sizeof expected, "%s/%s", real_home, rest) >= sizeof expected)
                return;
        _cleanup_(freep) char *real = realpath(path, NULL);
        if (!real)
                return;
        if (strcmp(real, expected) != 0) {
                log_warning("not watching %s: it leads elsewhere through a symlink (%s); name it with --watch "
                            "if that is intended", path, real);
                return;
        }
        add_candidate(l, path);
}

static void add_home_caches(root_list *l, const char *home) {
        add_home_cache(l, home, ".cache/huggingface/hub");
        add_home_cache(l, home, ".ollama/models");
}

int agent_roots_discover(char ***ret) {
        root_list l = {0};

        const char *hub = getenv("HF_HUB_CACHE");
        const char *hf_home = getenv("HF_HOME");
        if (hub)
                add_candidate(&l, hub);
        else if (hf_home)
                add_joined(&l, hf_home, "hub");
        add_candidate(&l, getenv("OLLAMA_MODELS"));
        add_home_caches(&l, getenv("HOME"));

        /* Inference servers run as service users whose caches live in their
         * own homes (/var/lib/..., /usr/share/ollama): look at every account. */
        setpwent();
        for (struct passwd *pw; (pw = getpwent());)
                add_home_caches(&l, pw->pw_dir);
        endpwent();

        add_candidate(&l, "/usr/share/ollama/.ollama/models");
        add_candidate(&l, "/models");
        add_candidate(&l, "/opt/models");

        if (l.r < 0) {
                mp_strv_free(l.paths);
                return l.r;
        }
        if (!l.paths) {
                l.paths = calloc(1, sizeof(char *));
                if (!l.paths)
                        return -ENOMEM;
        }
        *ret = l.paths;
        return 0;
}

bool agent_path_is_secret(const char *path) {
        const char *base = mp_base_name(path);
        return strcmp(base, "token") == 0 || strcmp(base, "stored_tokens") == 0 ||
               strncmp(base, "id_ed25519", 10) == 0 || strncmp(base, "id_rsa", 6) == 0 ||
               mp_has_suffix(base, ".pem") || mp_has_suffix(base, ".key");
}
