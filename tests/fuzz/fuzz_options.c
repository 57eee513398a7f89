/* fuzz_options.c - libFuzzer target: bytes are a daemon config file
 * (/etc/modelprov/agent.conf or collector.conf, INI through libinih) parsed
 * against a table with every option type (daemon/options.h).  A broken or
 * hostile config must give an error, never a crash or a leak.  The same
 * bytes also go through mp_utf8_sanitize(), which makes paths wire-safe. */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "daemon/options.h"
#include "util/strutil.h"

typedef struct cfg {
        char *name;
        char **list;
        bool flag;
        unsigned count;
        unsigned ms;
        int level;
} cfg;

static const mp_option table[] = {
        MP_OPTION("name", MP_OPTION_STRING, offsetof(cfg, name)),
        MP_OPTION("watch", MP_OPTION_LIST, offsetof(cfg, list)),
        MP_OPTION("flag", MP_OPTION_FLAG, offsetof(cfg, flag)),
        MP_OPTION_RANGE("count", offsetof(cfg, count), 1, 1000, "expected a count"),
        {.name = "settle", .type = MP_OPTION_SECONDS_MS, .offset = offsetof(cfg, ms), .max = 3600000},
        MP_OPTION("log-level", MP_OPTION_LOG_LEVEL, offsetof(cfg, level)),
        MP_OPTION_END,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        int fd = memfd_create("fuzz.conf", MFD_CLOEXEC);
        if (fd < 0)
                abort();
        if (size > 0 && write(fd, data, size) != (ssize_t) size)
                abort();
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);

        char *argv[] = {"fuzz", "--config", path, "--watch", "/x"};
        cfg c = {0};
        mp_options_action action;
        mp_error err = {0};
        (void) mp_options_load(table, "agent", "/nonexistent", 5, argv, &c, &action, &err);
        mp_options_free(table, &c);
        close(fd);

        char *text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = '\0';
        char *clean = mp_utf8_sanitize(text, 64);
        if (clean && (strlen(clean) > 64 || mp_utf8_invalid_at((const uint8_t *) clean, strlen(clean)) != strlen(clean)))
                abort();
        free(clean);
        free(text);
        return 0;
}
