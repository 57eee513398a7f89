/* log.h - the daemons' log lines (modelprov-collector, modelprovd), on stderr.
 *
 * Under systemd, stderr is a journald stream: each line then starts with a
 * "<N>" syslog priority prefix, which journald turns into the entry's
 * priority (sd-daemon(3)).  Elsewhere lines start with the program name.
 * gRPC core's own log lines are routed here too, at their level. */
#pragma once

#include <stdbool.h>

enum {
        LOG_LEVEL_ERROR = 3,            /* syslog priorities */
        LOG_LEVEL_WARNING = 4,
        LOG_LEVEL_NOTICE = 5,
        LOG_LEVEL_INFO = 6,
        LOG_LEVEL_DEBUG = 7,
};

/* Decides the line format (journald or plain) and the highest level printed;
 * routes gRPC core logging here.  Call once, before threads start. */
void log_setup(const char *program, int max_level);

/* Parses "error", "warning", "info", "debug"; -EINVAL otherwise. */
int log_level_from_string(const char *s);

void log_at(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A log line with structured fields: fields is a NULL-terminated list of
 * "KEY=value" strings (MODEL_DIGEST=, MODEL_PATH=, VERDICT=, FINDING=), at
 * most LOG_FIELDS_MAX.  Under journald they become journal fields of the
 * entry; elsewhere they are appended to the line as " KEY=value". */
#define LOG_FIELDS_MAX 16
void log_fields(int level, const char *const *fields, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_error(...)   log_at(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warning(...) log_at(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_info(...)    log_at(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)   log_at(LOG_LEVEL_DEBUG, __VA_ARGS__)
