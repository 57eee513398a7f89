/* log.h - the collector's log lines, on stderr.
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
        LOG_LEVEL_INFO = 6,
        LOG_LEVEL_DEBUG = 7,
};

/* Decides the line format (journald or plain) and the highest level printed;
 * routes gRPC core logging here.  Call once, before threads start. */
void log_setup(int max_level);

/* Parses "error", "warning", "info", "debug"; -EINVAL otherwise. */
int log_level_from_string(const char *s);

void log_at(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...)   log_at(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warning(...) log_at(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_info(...)    log_at(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)   log_at(LOG_LEVEL_DEBUG, __VA_ARGS__)
