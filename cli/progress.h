/* progress.h - a progress line on stderr for long work (bytes done / total,
 * rate, ETA), redrawn at most five times a second, and only when stderr is a
 * terminal. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef struct cli_progress {
        bool enabled;
        double start, last;
        bool drawn;
} cli_progress;

/* enabled = want && stderr is a tty. */
void cli_progress_init(cli_progress *p, bool want);
/* An mp_progress_fn; userdata is the cli_progress. */
void cli_progress_update(void *userdata, uint64_t done, uint64_t total);
/* Erases the line if one was drawn. */
void cli_progress_finish(cli_progress *p);
