/* progress.c - the terminal progress line (see progress.h). */
#include "progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "output.h"

static double now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

void cli_progress_init(cli_progress *p, bool want) {
        *p = (cli_progress) { .enabled = want && isatty(STDERR_FILENO), .start = now() };
}

void cli_progress_update(void *userdata, uint64_t done, uint64_t total) {
        cli_progress *p = userdata;
        if (!p->enabled)
                return;
        double t = now();
        if (t - p->last < 0.2 && done < total)
                return;
        p->last = t;

        double elapsed = t - p->start;
        double rate = elapsed > 0 ? (double) done / elapsed : 0;
        char d[32], tot[32], r[32];
        cli_format_bytes(done, d, sizeof(d));
        cli_format_bytes(total, tot, sizeof(tot));
        cli_format_bytes((uint64_t) rate, r, sizeof(r));
        if (rate > 0 && done < total)
                fprintf(stderr, "\r\033[K%s / %s  %s/s  ETA %.0fs", d, tot, r, (double) (total - done) / rate);
        else
                fprintf(stderr, "\r\033[K%s / %s  %s/s", d, tot, r);
        p->drawn = true;
}

void cli_progress_finish(cli_progress *p) {
        if (p->drawn)
                fputs("\r\033[K", stderr);
        p->drawn = false;
}
