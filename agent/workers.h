/* workers.h - the bounded pool that fingerprints models.
 *
 * The event loop submits model roots; a worker thread (idle I/O class,
 * lowered CPU priority) opens the model, re-reads only the files whose
 * (dev, inode, size, mtime) the state DB does not know, rebuilds the
 * fingerprint from the stored parts of the others, commits the result with
 * its outbox events (state.h), scans it against the local catalog, and
 * posts a result back.  Results are collected by the loop thread: the pool
 * writes to an eventfd the loop watches (sd-event is not thread-safe), and
 * agent_workers_drain() hands them over.
 *
 * Never read: files that resolve outside the watch roots (except a hub
 * snapshot's links into its own blobs/, which the hub reader enforces) and
 * credentials (roots.h agent_path_is_secret()). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "util/error.h"

typedef struct agent_workers agent_workers;

typedef enum agent_job_outcome {
        AGENT_JOB_UNCHANGED,            /* same digest as stored */
        AGENT_JOB_ADDED,
        AGENT_JOB_CHANGED,
        AGENT_JOB_REMOVED,              /* root gone, or no longer a model */
        AGENT_JOB_NOT_MODEL,            /* nothing there was ever a model */
        AGENT_JOB_FINDING,              /* not usable: findings recorded */
        AGENT_JOB_RETRY,                /* changed while being read, or still incomplete */
        AGENT_JOB_FAILED,               /* I/O or state DB error (logged) */
        AGENT_JOB_CANCELLED,            /* stopping */
} agent_job_outcome;

typedef struct agent_job_result {
        char *root;
        agent_job_outcome outcome;
        uint64_t bytes_read;            /* weight and model bytes read for this job */
        uint64_t bytes_total;           /* size of the model's files */
} agent_job_result;

typedef struct agent_workers_options {
        unsigned n_threads;
        const char *state_path;
        const char *const *roots;       /* watch roots (copied); files must resolve inside */
        uint64_t read_rate_bytes;       /* over all workers; 0: unlimited */
        const char *catalog_path;       /* local scans; NULL or missing file: none */
} agent_workers_options;

int agent_workers_new(const agent_workers_options *o, agent_workers **ret, mp_error *err);

/* Stops: a job in the middle of a file gives up within one read chunk.
 * Joins the threads; results not drained are dropped (their roots are
 * found again by the next start's crawl). */
void agent_workers_free(agent_workers *w);

/* The fd that becomes readable when results are waiting. */
int agent_workers_fd(const agent_workers *w);

/* Queues root (copied).  The caller makes sure a root is not submitted
 * while a job for it runs (the loop keeps that set).  force: commit even
 * when the model still looks incomplete (dangling snapshot links), after
 * the loop's retries ran out, so a broken download is reported, not
 * ignored forever. */
int agent_workers_submit(agent_workers *w, const char *root, bool force);

/* Calls cb for each finished job, on the calling thread. */
void agent_workers_drain(agent_workers *w, void (*cb)(void *userdata, const agent_job_result *r), void *userdata);

/* Jobs queued or running. */
unsigned agent_workers_busy(const agent_workers *w);

/* The local catalog changed on disk: workers reopen it before their next scan. */
void agent_workers_catalog_changed(agent_workers *w);

/* Replaces the watch roots (SIGHUP). */
int agent_workers_set_roots(agent_workers *w, const char *const *roots);
