/* state_internal.h - what state.c shares with outbox.c, the two halves of
 * the state DB: the handle, its statement cache, transactions and the
 * wording of SQLite errors.  Not a contract: nothing outside agent/state.c
 * and agent/outbox.c includes it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "agent/state.h"
#include "modelprov.pb-c.h"

/* Statements are cached by the address of their SQL text (each a static
 * string of state.c or outbox.c), so either file adds statements without a
 * shared list of ids. */
#define AGENT_STATE_MAX_STMTS 64

struct agent_state {
        sqlite3 *db;
        char *path;
        bool readonly;
        size_t n_stmts;
        struct {
                const char *sql;
                sqlite3_stmt *stmt;
        } stmts[AGENT_STATE_MAX_STMTS];
};

/* Fills err (may be NULL) for SQLite result code rc while doing `what`, in
 * words for an operator; returns the negative errno. */
int agent_state_sql_error(agent_state *s, int rc, const char *what, mp_error *err);

/* The cached statement for sql (a static string), reset and unbound,
 * prepared on first use. */
int agent_state_stmt(agent_state *s, const char *sql, sqlite3_stmt **ret, const char *what, mp_error *err);

/* Steps a statement that returns no rows and resets it. */
int agent_state_step_done(agent_state *s, sqlite3_stmt *st, const char *what, mp_error *err);

/* Prepares (cached), runs and resets a statement without parameters or
 * rows. */
int agent_state_run(agent_state *s, const char *sql, const char *what, mp_error *err);

/* BEGIN IMMEDIATE: the write lock up front, so a transaction never fails
 * half-way on a lock upgrade (SQLITE_BUSY without the busy handler). */
int agent_state_begin(agent_state *s, const char *what, mp_error *err);
/* Commits when r >= 0, rolls back otherwise; returns r (>= 0 kept) or the
 * commit error. */
int agent_state_end(agent_state *s, int r, const char *what, mp_error *err);

/* Outbox rows of a kind are compacted in order of priority (lowest first);
 * model events are never dropped unless superseded. */
enum {
        AGENT_OUTBOX_PRIORITY_MATCH = 0,
        AGENT_OUTBOX_PRIORITY_FINDING = 1,
        AGENT_OUTBOX_PRIORITY_MODEL = 2,
};

/* agent_outbox_append() with err filled. */
int agent_outbox_append_full(agent_state *s, const Modelprov__V1__Event *ev, mp_error *err);
