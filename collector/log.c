/* log.c - stderr / journald log lines for the collector (see log.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <grpc/support/log.h>

#include "collector/log.h"

static int max_level = LOG_LEVEL_INFO;
static bool journal;

/* JOURNAL_STREAM holds "DEV:INODE" of the journald stream systemd connected
 * to stdout/stderr; only when stderr is still that stream do we prefix. */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        if (!e)
                return false;

        unsigned long long dev, ino;
        if (sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;

        struct stat st;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

static void grpc_log(gpr_log_func_args *args) {
        int level = args->severity == GPR_LOG_SEVERITY_ERROR  ? LOG_LEVEL_ERROR
                    : args->severity == GPR_LOG_SEVERITY_INFO ? LOG_LEVEL_DEBUG
                                                              : LOG_LEVEL_DEBUG;
        /* Core logs at "error" for things a server expects daily (a client's
         * failed TLS handshake, a reset connection): they are the peer's
         * problem, so they count as warnings here. */
        if (level == LOG_LEVEL_ERROR)
                level = LOG_LEVEL_WARNING;
        log_at(level, "grpc: %s", args->message);
}

void log_setup(int level) {
        max_level = level;
        journal = stderr_is_journal();
        gpr_set_log_function(grpc_log);
        gpr_set_log_verbosity(level >= LOG_LEVEL_DEBUG ? GPR_LOG_SEVERITY_DEBUG
                              : level >= LOG_LEVEL_INFO ? GPR_LOG_SEVERITY_INFO
                                                        : GPR_LOG_SEVERITY_ERROR);
}

int log_level_from_string(const char *s) {
        static const struct {
                const char *name;
                int level;
        } levels[] = {
                {"error", LOG_LEVEL_ERROR},
                {"warning", LOG_LEVEL_WARNING},
                {"info", LOG_LEVEL_INFO},
                {"debug", LOG_LEVEL_DEBUG},
        };
        for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
                if (strcmp(s, levels[i].name) == 0)
                        return levels[i].level;
        return -EINVAL;
}

void log_at(int level, const char *fmt, ...) {
        if (level > max_level)
                return;

        char line[2048];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);

        /* One fprintf per line: stdio locks the stream, so lines from
         * worker threads never interleave. */
        if (journal)
                fprintf(stderr, "<%d>%s\n", level, line);
        else
                fprintf(stderr, "modelprov-collector: %s\n", line);
}
