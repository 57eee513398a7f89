/* log.c - stderr / journald log lines for the daemons (see log.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <grpc/support/log.h>
#include <systemd/sd-journal.h>

#include "daemon/log.h"
#include "util/strutil.h"

/* Longest message kept; longer ones end in "...". */
#define LOG_LINE_MAX 4096

static int max_level = LOG_LEVEL_INFO;
static bool journal;
static const char *program = "modelprov";

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

void log_setup(const char *program_name, int level) {
        program = program_name;
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

/* Writes one finished line.  Control characters become '?': paths and
 * details come from hostile trees, and a file named "x\nmodelprovd: ..."
 * must not forge a log line. */
static void emit(int level, const char *line) {
        char clean[LOG_LINE_MAX + 8];
        mp_printable(clean, sizeof clean, line);

        /* One fprintf per line: stdio locks the stream, so lines from
         * worker threads never interleave. */
        if (journal)
                fprintf(stderr, "<%d>%s\n", level, clean);
        else
                fprintf(stderr, "%s: %s\n", program, clean);
}

static void log_vfields(int level, const char *const *fields, const char *fmt, va_list ap)
        __attribute__((format(printf, 3, 0)));

void log_at(int level, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        log_vfields(level, NULL, fmt, ap);
        va_end(ap);
}

void log_fields(int level, const char *const *fields, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        log_vfields(level, fields, fmt, ap);
        va_end(ap);
}

static void log_vfields(int level, const char *const *fields, const char *fmt, va_list ap) {
        if (level > max_level)
                return;

        char line[LOG_LINE_MAX];
        vsnprintf(line, sizeof line, fmt, ap);
        if (!fields || !fields[0]) {
                emit(level, line);
                return;
        }

        if (journal) {
                /* Straight to journald, so the fields become searchable
                 * ("journalctl MODEL_DIGEST=..."); journald keeps the bytes
                 * of each field apart, so no forging is possible there. */
                char message[sizeof line + 16], priority[16];
                struct iovec iov[2 + LOG_FIELDS_MAX];
                size_t n = 0;
                snprintf(message, sizeof message, "MESSAGE=%s", line);
                snprintf(priority, sizeof priority, "PRIORITY=%d", level);
                iov[n++] = (struct iovec) {message, strlen(message)};
                iov[n++] = (struct iovec) {priority, strlen(priority)};
                for (size_t i = 0; fields && fields[i] && n < sizeof iov / sizeof iov[0]; i++)
                        iov[n++] = (struct iovec) {(void *) fields[i], strlen(fields[i])};
                if (sd_journal_sendv(iov, (int) n) >= 0)
                        return;
        }

        /* Elsewhere (a terminal, a test): the fields follow the message, so
         * nothing is lost and scripts can still grep them. */
        char text[LOG_LINE_MAX * 2];
        size_t used = (size_t) snprintf(text, sizeof text, "%s", line);
        for (size_t i = 0; fields && fields[i] && used < sizeof text; i++)
                used += (size_t) snprintf(text + used, sizeof text - used, " %s", fields[i]);
        emit(level, text);
}
