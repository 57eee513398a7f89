/* test_agent_state.c - the agent's state DB and outbox (agent/state.h,
 * agent/outbox.h) on real SQLite files in temporary directories: creation
 * mode, model commits and their events, findings once, numbering at first
 * send that survives a restart, acks, sync in both directions, compaction,
 * read-only access beside a writer, and damaged files. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "agent/outbox.h"
#include "agent/state.h"
#include "fingerprint/compute.h"
#include "test.h"
#include "util/macro.h"

#define NOW 1700000000000LL

/* A fingerprinted model of two F32 tensors whose values depend on seed. */
typedef struct test_model {
        mp_model *m;
        mp_fingerprint *fp;
        agent_file_stat *stats;
} test_model;

static char *write_model_file(unsigned seed) {
        test_buf h = {0}, d = {0};
        const char *hdr = "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[4,8],\"data_offsets\":[0,128]},"
                          "\"b.weight\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[128,160]}";
        put(&h, hdr, strlen(hdr));
        for (uint64_t i = 0; i < 40; i++) {
                float v = test_value(seed, i < 32 ? 0 : 1, i);
                put(&d, &v, 4);
        }
        return test_write_safetensors(&h, &d);
}

static test_model make_model(unsigned seed, bool with_finding) {
        test_model t = {0};
        mp_error err = {0};
        _cleanup_(freep) char *path = write_model_file(seed);
        CHECK(mp_model_open(path, NULL, &t.m, &err) >= 0);
        if (with_finding)
                CHECK(mp_model_add_finding(t.m, MP_FINDING_SUSPICIOUS, t.m->files[0].path, -1, "odd layout %u",
                                           seed) >= 0);
        CHECK(mp_fingerprint_compute(t.m, NULL, &t.fp, &err) >= 0);
        CHECK(t.fp->model_digest.len == 32);
        t.stats = calloc(t.m->n_files, sizeof(*t.stats));
        CHECK(t.stats);
        for (size_t i = 0; i < t.m->n_files; i++) {
                struct stat st;
                CHECK(stat(t.m->files[i].path, &st) == 0);
                agent_file_stat_from(&t.stats[i], &st);
                CHECK(t.m->files[i].digested);
        }
        return t;
}

static void test_model_done(test_model *t) {
        mp_model_free(t->m);
        mp_fingerprint_free(t->fp);
        free(t->stats);
}

static int commit(agent_state *s, const char *root, const test_model *t, int64_t at) {
        agent_model_result res = {
                .root = root, .model = t->m, .fingerprint = t->fp, .file_stats = t->stats, .observed_at = at,
        };
        mp_error err = {0};
        int kind = -1;
        int r = agent_state_commit_model(s, &res, &kind, &err);
        if (r < 0) {
                char buf[1024];
                mp_error_format(&err, buf, sizeof(buf));
                fprintf(stderr, "commit: %s\n", buf);
        }
        CHECK(r >= 0);
        return kind;
}

static agent_state *open_state(const char *path) {
        agent_state *s = NULL;
        mp_error err = {0};
        int r = agent_state_open(path, &s, &err);
        if (r < 0) {
                char buf[1024];
                mp_error_format(&err, buf, sizeof(buf));
                fprintf(stderr, "open: %s\n", buf);
        }
        CHECK(r >= 0 && s);
        return s;
}

static uint64_t pending(agent_state *s) {
        uint64_t n, bytes;
        CHECK(agent_outbox_pending(s, &n, &bytes) >= 0);
        CHECK((n == 0) == (bytes == 0));
        return n;
}

static ModelprovV1__ReportBatch *batch(agent_state *s, uint64_t after, size_t max) {
        ModelprovV1__ReportBatch *b = NULL;
        mp_error err = {0};
        CHECK(agent_outbox_next_batch_after(s, after, max, SIZE_MAX, &b, &err) >= 0);
        CHECK(b);
        return b;
}

/* The batch's sequence numbers are first, first + 1, ... */
static void check_seqs(const ModelprovV1__ReportBatch *b, size_t n, uint64_t first) {
        CHECK_EQ(b->n_events, n);
        for (size_t i = 0; i < n; i++)
                CHECK_EQ(b->events[i]->sequence, first + i);
}

static void append_event(agent_state *s, Modelprov__V1__EventKind kind, const char *path) {
        Modelprov__V1__Event ev = MODELPROV__V1__EVENT__INIT;
        ev.kind = kind;
        ev.path = (char *) path;
        ev.observed_at = NOW;
        ev.sequence = 99;       /* ignored */
        CHECK(agent_outbox_append(s, &ev) >= 0);
}

static uint64_t meta_u64(agent_state *s, const char *key) {
        uint64_t v;
        CHECK(agent_state_get_meta_u64(s, key, &v) >= 0);
        return v;
}

/* ---- tests -------------------------------------------------------------- */

static void test_create_mode(void) {
        _cleanup_(freep) char *dir = test_tmpdir();
        _cleanup_(freep) char *path = test_path(dir, "state.db");
        mode_t old = umask(0);  /* SQLite alone would create 0666 - umask */
        agent_state *s = open_state(path);
        umask(old);
        struct stat st;
        CHECK(stat(path, &st) == 0);
        CHECK_EQ(st.st_mode & 07777, 0600);
        CHECK(agent_state_set_meta(s, AGENT_META_HOST_KEY, "secret") >= 0);
        _cleanup_(freep) char *wal = test_path(dir, "state.db-wal");
        CHECK(stat(wal, &st) == 0);     /* WAL mode */
        CHECK_EQ(st.st_mode & 0077, 0);
        agent_state_close(s);

        /* An existing file that became readable by others is made private
         * again. */
        CHECK(chmod(path, 0644) == 0);
        s = open_state(path);
        CHECK(stat(path, &st) == 0);
        CHECK_EQ(st.st_mode & 07777, 0600);

        /* meta round trips; absent keys read as NULL / 0. */
        char *v = NULL;
        CHECK(agent_state_get_meta(s, AGENT_META_HOST_KEY, &v) >= 0);
        CHECK_STREQ(v, "secret");
        free(v);
        CHECK(agent_state_get_meta(s, "nope", &v) >= 0);
        CHECK(v == NULL);
        CHECK_EQ(meta_u64(s, "nope"), 0);
        CHECK(agent_state_set_meta_u64(s, "n", 12345678901ull) >= 0);
        CHECK_EQ(meta_u64(s, "n"), 12345678901ull);
        CHECK(agent_state_set_meta(s, "n", NULL) >= 0);
        CHECK_EQ(meta_u64(s, "n"), 0);
        CHECK(agent_state_set_meta(s, "t", "not a number") >= 0);
        uint64_t u;
        CHECK_EQ(agent_state_get_meta_u64(s, "t", &u), -EBADMSG);
        agent_state_close(s);
}

static void test_commit_cycle(void) {
        _cleanup_(freep) char *dir = test_tmpdir();
        _cleanup_(freep) char *path = test_path(dir, "state.db");
        agent_state *s = open_state(path);
        const char *root = "/models/tiny";
        test_model a = make_model(1, false), b = make_model(2, false);
        CHECK(memcmp(a.fp->model_digest.data, b.fp->model_digest.data, 32) != 0);

        /* New: ADDED, with the fingerprint, queued with it. */
        CHECK_EQ(commit(s, root, &a, NOW), AGENT_MODEL_ADDED);
        CHECK_EQ(pending(s), 1);
        ModelprovV1__ReportBatch *bt = batch(s, 0, 10);
        check_seqs(bt, 1, 1);
        const Modelprov__V1__Event *ev = bt->events[0];
        CHECK_EQ(ev->kind, MODELPROV__V1__EVENT_KIND__MODEL_ADDED);
        CHECK_STREQ(ev->path, root);
        CHECK_EQ(ev->observed_at, NOW);
        CHECK(ev->model_digest.len == 32 && memcmp(ev->model_digest.data, a.fp->model_digest.data, 32) == 0);
        CHECK(ev->fingerprint && ev->fingerprint->n_tensors == 2);
        CHECK(memcmp(ev->fingerprint->model_digest.data, a.fp->model_digest.data, 32) == 0);
        agent_outbox_batch_free(bt);
        CHECK(agent_outbox_ack(s, 1, NOW + 5) >= 0);
        CHECK_EQ(pending(s), 0);
        CHECK_EQ(meta_u64(s, AGENT_META_LAST_CONTACT), NOW + 5);

        /* The files rows: stat, sha256, owner. */
        agent_file f;
        CHECK(agent_state_get_file(s, a.m->files[0].path, &f) >= 0);
        CHECK(f.has_sha256 && memcmp(f.sha256, a.m->files[0].sha256, 32) == 0);
        CHECK(agent_file_stat_same(&f.stat, &a.stats[0]));
        CHECK_STREQ(f.model_root, root);
        agent_file_done(&f);
        CHECK(agent_state_find_file_by_stat(s, &a.stats[0], &f) >= 0);
        CHECK_STREQ(f.path, a.m->files[0].path);
        agent_file_done(&f);
        agent_file_stat other = a.stats[0];
        other.mtime_ns++;
        CHECK_EQ(agent_state_find_file_by_stat(s, &other, &f), -ENOENT);
        other = a.stats[0];
        other.ctime_ns++;       /* a rename changes ctime, not content */
        CHECK(agent_file_stat_same(&other, &a.stats[0]));
        CHECK_EQ(agent_state_get_file(s, "/nowhere", &f), -ENOENT);

        /* Same digest again: nothing queued. */
        CHECK_EQ(commit(s, root, &a, NOW + 10), AGENT_MODEL_UNCHANGED);
        CHECK_EQ(pending(s), 0);

        /* Different content at the same root: CHANGED; the old file leaves
         * the model (its row stays as a stat cache, detached). */
        CHECK_EQ(commit(s, root, &b, NOW + 20), AGENT_MODEL_CHANGED);
        CHECK_EQ(pending(s), 1);
        agent_model m;
        mp_fingerprint *fp = NULL;
        CHECK(agent_state_get_model(s, root, &m, &fp) >= 0);
        CHECK(memcmp(m.digest, b.fp->model_digest.data, 32) == 0);
        CHECK(fp && memcmp(fp->model_digest.data, b.fp->model_digest.data, 32) == 0);
        CHECK_EQ(m.first_seen, NOW);
        CHECK_EQ(m.changed_at, NOW + 20);
        CHECK_STREQ(m.format, "safetensors");
        CHECK_EQ(m.bytes, b.m->files[0].size);
        agent_model_done(&m);
        mp_fingerprint_free(fp);
        CHECK(agent_state_get_file(s, a.m->files[0].path, &f) >= 0);
        CHECK(f.model_root == NULL);
        agent_file_done(&f);
        CHECK(agent_state_get_file(s, b.m->files[0].path, &f) >= 0);
        CHECK_STREQ(f.model_root, root);
        agent_file_done(&f);

        /* Which models does a directory hold? */
        char **roots = NULL;
        size_t n = 0;
        char *bdir = strdup(b.m->files[0].path);
        *strrchr(bdir, '/') = '\0';
        CHECK(agent_state_models_under(s, bdir, &roots, &n) >= 0);
        CHECK_EQ(n, 1);
        CHECK_STREQ(roots[0], root);
        free(roots[0]);
        free(roots);
        CHECK(agent_state_models_under(s, "/models", &roots, &n) >= 0);   /* the root itself is under it */
        CHECK_EQ(n, 1);
        free(roots[0]);
        free(roots);
        CHECK(agent_state_models_under(s, "/model", &roots, &n) >= 0);    /* a prefix, not a parent */
        CHECK_EQ(n, 0);
        free(roots);

        /* Gone: REMOVED with the last digest; its files' rows go too. */
        CHECK(agent_state_remove_model(s, root, NOW + 30, NULL) >= 0);
        CHECK_EQ(agent_state_remove_model(s, root, NOW + 31, NULL), -ENOENT);
        CHECK_EQ(agent_state_get_model(s, root, NULL, NULL), -ENOENT);
        CHECK_EQ(agent_state_get_file(s, b.m->files[0].path, &f), -ENOENT);
        bt = batch(s, 0, 10);
        check_seqs(bt, 2, 2);
        CHECK_EQ(bt->events[0]->kind, MODELPROV__V1__EVENT_KIND__MODEL_CHANGED);
        CHECK(bt->events[0]->fingerprint != NULL);
        CHECK_EQ(bt->events[1]->kind, MODELPROV__V1__EVENT_KIND__MODEL_REMOVED);
        CHECK(bt->events[1]->model_digest.len == 32 &&
              memcmp(bt->events[1]->model_digest.data, b.fp->model_digest.data, 32) == 0);
        agent_outbox_batch_free(bt);

        /* The detached row of a's file is forgotten with its directory. */
        char *adir = strdup(a.m->files[0].path);
        *strrchr(adir, '/') = '\0';
        CHECK_EQ(agent_state_forget_files(s, adir), 1);
        CHECK_EQ(agent_state_get_file(s, a.m->files[0].path, &f), -ENOENT);
        free(adir);
        free(bdir);

        test_model_done(&a);
        test_model_done(&b);
        agent_state_close(s);
}

static void test_findings_once(void) {
        _cleanup_(freep) char *dir = test_tmpdir();
        _cleanup_(freep) char *path = test_path(dir, "state.db");
        agent_state *s = open_state(path);
        test_model a = make_model(3, true);

        /* The model's finding goes out once, after the model event. */
        CHECK_EQ(commit(s, "/m/a", &a, NOW), AGENT_MODEL_ADDED);
        CHECK_EQ(pending(s), 2);
        CHECK_EQ(commit(s, "/m/a", &a, NOW + 1), AGENT_MODEL_UNCHANGED);
        CHECK_EQ(pending(s), 2);
        ModelprovV1__ReportBatch *bt = batch(s, 0, 10);
        CHECK_EQ(bt->n_events, 2);
        const Modelprov__V1__Event *ev = bt->events[1];
        CHECK_EQ(ev->kind, MODELPROV__V1__EVENT_KIND__FINDING);
        CHECK(ev->finding);
        CHECK_STREQ(ev->finding->kind, mp_finding_kind_name(MP_FINDING_SUSPICIOUS));
        CHECK_STREQ(ev->finding->detail, "odd layout 3");
        CHECK_STREQ(ev->path, a.m->files[0].path);
        CHECK(ev->model_digest.len == 32);
        agent_outbox_batch_free(bt);

        /* A file that is no model: once per (path, kind, detail). */
        CHECK_EQ(agent_state_add_finding(s, "/m/bad.gguf", MP_FINDING_UNPARSEABLE, "bad magic", NOW, NULL), 1);
        CHECK_EQ(agent_state_add_finding(s, "/m/bad.gguf", MP_FINDING_UNPARSEABLE, "bad magic", NOW + 1, NULL), 0);
        CHECK_EQ(agent_state_add_finding(s, "/m/bad.gguf", MP_FINDING_UNPARSEABLE, "truncated", NOW + 1, NULL), 1);
        CHECK_EQ(pending(s), 4);
        CHECK_EQ(agent_state_clear_findings(s, "/m/bad.gguf"), 2);
        CHECK_EQ(agent_state_add_finding(s, "/m/bad.gguf", MP_FINDING_UNPARSEABLE, "bad magic", NOW + 2, NULL), 1);
        CHECK_EQ(pending(s), 5);

        /* Scan matches: once per (root, digest, entry). */
        const uint8_t *d = a.fp->model_digest.data;
        CHECK_EQ(agent_state_add_scan_match(s, "/m/a", d, "llama-base", "derived", 0.93, "fine-tune", NOW, NULL), 1);
        CHECK_EQ(agent_state_add_scan_match(s, "/m/a", d, "llama-base", "derived", 0.93, "fine-tune", NOW, NULL), 0);
        CHECK_EQ(pending(s), 6);

        agent_state_counts c;
        CHECK(agent_state_counts_get(s, &c) >= 0);
        CHECK_EQ(c.models, 1);
        CHECK_EQ(c.findings, 2);
        CHECK_EQ(c.outbox_pending, 6);
        CHECK_EQ(c.outbox_oldest, NOW);
        CHECK(c.outbox_bytes > 0);

        test_model_done(&a);
        agent_state_close(s);
}

static void test_numbering_survives_restart(void) {
        _cleanup_(freep) char *dir = test_tmpdir();
        _cleanup_(freep) char *path = test_path(dir, "state.db");
        agent_state *s = open_state(path);
        for (int i = 0; i < 5; i++)
                append_event(s, MODELPROV__V1__EVENT_KIND__FINDING, "/p");
        CHECK_EQ(pending(s), 5);

        /* First send numbers 1, 2; a resend (reconnect) gets the same. */
        ModelprovV1__ReportBatch *b = batch(s, 0, 2);
        check_seqs(b, 2, 1);
        agent_outbox_batch_free(b);
        CHECK_EQ(meta_u64(s, AGENT_META_SENT_THROUGH), 2);
        b = batch(s, 0, 2);
        check_seqs(b, 2, 1);
        agent_outbox_batch_free(b);
        /* Pipelined: the next batch after 2 in flight. */
        b = batch(s, 2, 2);
        check_seqs(b, 2, 3);
        agent_outbox_batch_free(b);

        /* Killed and restarted: numbered rows keep their numbers. */
        agent_state_close(s);
        s = open_state(path);
        b = batch(s, 0, 10);
        check_seqs(b, 5, 1);
        agent_outbox_batch_free(b);

        /* Acks delete; a late ack of an earlier batch moves nothing back. */
        CHECK(agent_outbox_ack(s, 2, NOW) >= 0);
        CHECK_EQ(pending(s), 3);
        CHECK(agent_outbox_ack(s, 1, NOW) >= 0);
        CHECK_EQ(meta_u64(s, AGENT_META_ACKED_THROUGH), 2);
        agent_state_close(s);
        s = open_state(path);
        b = batch(s, 0, 10);
        check_seqs(b, 3, 3);
        agent_outbox_batch_free(b);
        CHECK(agent_outbox_ack(s, 5, NOW) >= 0);
        CHECK_EQ(pending(s), 0);
        b = batch(s, 0, 10);
        CHECK_EQ(b->n_events, 0);
        agent_outbox_batch_free(b);

        /* Numbering goes on after the acked ones. */
        append_event(s, MODELPROV__V1__EVENT_KIND__MODEL_REMOVED, "/q");
        b = batch(s, 0, 10);
        check_seqs(b, 1, 6);
        agent_outbox_batch_free(b);

        /* A byte budget still sends at least one event. */
        append_event(s, MODELPROV__V1__EVENT_KIND__MODEL_REMOVED, "/r");
        ModelprovV1__ReportBatch *one = NULL;
        CHECK(agent_outbox_next_batch(s, 10, 1, &one, NULL) >= 0);
        check_seqs(one, 1, 6);
        agent_outbox_batch_free(one);
        CHECK(agent_state_check(s, NULL) == 0);
        agent_state_close(s);
}

static void test_sync(void) {
        _cleanup_(freep) char *dir = test_tmpdir();
        _cleanup_(freep) char *path = test_path(dir, "state.db");
        agent_state *s = open_state(path);
        test_model a = make_model(4, false);
        CHECK_EQ(commit(s, "/m/a", &a, NOW), AGENT_MODEL_ADDED);
        append_event(s, MODELPROV__V1__EVENT_KIND__FINDING, "/f1");
        ModelprovV1__ReportBatch *b = batch(s, 0, 10);
        check_seqs(b, 2, 1);
        agent_outbox_batch_free(b);

        /* The collector stored what we sent but the ack was lost. */
        CHECK_EQ(agent_outbox_sync(s, 1, NOW), 0);
        CHECK_EQ(pending(s), 1);
        CHECK_EQ(meta_u64(s, AGENT_META_ACKED_THROUGH), 1);

        /* The collector remembers more of us than this (older) state DB:
         * numbering continues after its value. */
        CHECK_EQ(agent_outbox_sync(s, 10, NOW), 0);
        CHECK_EQ(pending(s), 0);
        append_event(s, MODELPROV__V1__EVENT_KIND__FINDING, "/f2");
        b = batch(s, 0, 10);
        check_seqs(b, 1, 11);
        agent_outbox_batch_free(b);
        CHECK(agent_outbox_ack(s, 11, NOW) >= 0);

        /* Numbered but unacked rows, then the collector's store is reset:
         * it knows less than we had acked.  The rows are numbered again
         * from its value + 1, and the inventory is queued again. */
        append_event(s, MODELPROV__V1__EVENT_KIND__FINDING, "/f3");
        append_event(s, MODELPROV__V1__EVENT_KIND__FINDING, "/f4");
        b = batch(s, 0, 10);
        check_seqs(b, 2, 12);
        agent_outbox_batch_free(b);
        CHECK_EQ(agent_outbox_sync(s, 0, NOW + 100), 1);     /* the inventory is queued in the same step */
        b = batch(s, 0, 10);
        check_seqs(b, 3, 1);
        CHECK_STREQ(b->events[0]->path, "/f3");
        CHECK_EQ(b->events[2]->kind, MODELPROV__V1__EVENT_KIND__MODEL_ADDED);
        CHECK_STREQ(b->events[2]->path, "/m/a");
        CHECK(b->events[2]->fingerprint && b->events[2]->fingerprint->n_tensors == 2);
        CHECK_EQ(b->events[2]->observed_at, NOW + 100);
        agent_outbox_batch_free(b);
        CHECK_EQ(meta_u64(s, AGENT_META_SENT_THROUGH), 3);

        test_model_done(&a);
        agent_state_close(s);
}

/* The kinds and paths left in the outbox, in queue order, as "K:path ...". */
static void outbox_summary(agent_state *s, char *buf, size_t size) {
        sqlite3_stmt *st;
        CHECK(sqlite3_prepare_v2(agent_state_db(s), "SELECT kind, path, seq IS NOT NULL FROM outbox ORDER BY id", -1,
                                 &st, NULL) == SQLITE_OK);
        buf[0] = '\0';
        while (sqlite3_step(st) == SQLITE_ROW) {
                size_t n = strlen(buf);
                snprintf(buf + n, size - n, "%s%d:%s%s", n ? " " : "", sqlite3_column_int(st, 0),
                         (const char *) sqlite3_column_text(st, 1), sqlite3_column_int(st, 2) ? "#" : "");
        }
        sqlite3_finalize(st);
}

static void test_compact(void) {
        _cleanup_(freep) char *dir = test_tmpdir();
        _cleanup_(freep) char *path = test_path(dir, "state.db");
        agent_state *s = open_state(path);
        char summary[512];

        append_event(s, MODELPROV__V1__EVENT_KIND__MODEL_ADDED, "/p");
        ModelprovV1__ReportBatch *b = batch(s, 0, 10);     /* numbered: the collector may have it */
        agent_outbox_batch_free(b);
        append_event(s, MODELPROV__V1__EVENT_KIND__FINDING, "/f1");
        append_event(s, MODELPROV__V1__EVENT_KIND__MODEL_CHANGED, "/p");
        append_event(s, MODELPROV__V1__EVENT_KIND__SCAN_MATCH, "/p");
        append_event(s, MODELPROV__V1__EVENT_KIND__FINDING, "/f2");
        append_event(s, MODELPROV__V1__EVENT_KIND__MODEL_CHANGED, "/p");
        append_event(s, MODELPROV__V1__EVENT_KIND__SCAN_MATCH, "/q");
        append_event(s, MODELPROV__V1__EVENT_KIND__MODEL_ADDED, "/q");
        append_event(s, MODELPROV__V1__EVENT_KIND__MODEL_REMOVED, "/r");

        /* Within the limits: nothing happens, superseded or not. */
        CHECK_EQ(agent_outbox_compact(s, 100, 1 << 20), 0);
        CHECK_EQ(pending(s), 9);

        /* Over: the superseded CHANGED of /p goes first (not the numbered
         * ADDED), then scan matches, then the oldest finding. */
        CHECK_EQ(agent_outbox_compact(s, 4, 1 << 20), 4);
        outbox_summary(s, summary, sizeof(summary));
        CHECK_STREQ(summary, "1:/p# 4:/f2 2:/p 1:/q 3:/r");

        /* Never the current inventory, even over the limit. */
        CHECK_EQ(agent_outbox_compact(s, 0, 0), 1);
        outbox_summary(s, summary, sizeof(summary));
        CHECK_STREQ(summary, "1:/p# 2:/p 1:/q 3:/r");
        CHECK_EQ(agent_outbox_compact(s, 0, 0), 0);
        CHECK_EQ(pending(s), 4);

        /* The next batch resends the numbered row, then numbers the rest
         * contiguously. */
        b = batch(s, 0, 10);
        check_seqs(b, 4, 1);
        agent_outbox_batch_free(b);
        agent_state_close(s);
}

static void test_readonly(void) {
        _cleanup_(freep) char *dir = test_tmpdir();
        _cleanup_(freep) char *path = test_path(dir, "state.db");
        agent_state *w = open_state(path), *r = NULL;
        mp_error err = {0};
        CHECK(agent_state_set_meta(w, AGENT_META_HOST_ID, "host-1") >= 0);
        const char *roots[] = { "/models", "/opt/models", NULL };
        const bool exists[] = { true, false };
        CHECK(agent_state_set_roots(w, roots, exists) >= 0);
        append_event(w, MODELPROV__V1__EVENT_KIND__FINDING, "/f");

        /* Beside the writer (WAL): sees its commits, writes nothing. */
        CHECK(agent_state_open_readonly(path, &r, &err) >= 0);
        char *v = NULL;
        CHECK(agent_state_get_meta(r, AGENT_META_HOST_ID, &v) >= 0);
        CHECK_STREQ(v, "host-1");
        free(v);
        agent_state_counts c;
        CHECK(agent_state_counts_get(r, &c) >= 0);
        CHECK_EQ(c.outbox_pending, 1);
        CHECK_EQ(c.roots, 2);
        CHECK(agent_state_set_meta(r, "x", "y") < 0);
        append_event(w, MODELPROV__V1__EVENT_KIND__FINDING, "/g");
        CHECK(agent_state_counts_get(r, &c) >= 0);
        CHECK_EQ(c.outbox_pending, 2);
        CHECK(agent_state_check(r, NULL) == 0);
        agent_state_close(r);

        /* And after the writer has gone (no -wal, -shm left). */
        agent_state_close(w);
        CHECK(agent_state_open_readonly(path, &r, &err) >= 0);
        CHECK(agent_state_counts_get(r, &c) >= 0);
        CHECK_EQ(c.outbox_pending, 2);
        agent_state_close(r);

        /* No file: -ENOENT, and none is created. */
        _cleanup_(freep) char *missing = test_path(dir, "none.db");
        r = NULL;
        CHECK_EQ(agent_state_open_readonly(missing, &r, &err), -ENOENT);
        CHECK(r == NULL);
        CHECK(access(missing, F_OK) < 0 && errno == ENOENT);
}

static void check_open_fails(const char *path, int code, const char *words) {
        agent_state *s = NULL;
        mp_error err = {0};
        CHECK_EQ(agent_state_open(path, &s, &err), code);
        CHECK(s == NULL);
        CHECK(strstr(err.reason, words));
        CHECK_EQ(agent_state_open_readonly(path, &s, &err), code);
        CHECK(strstr(err.reason, words));
}

static void test_damaged_files(void) {
        _cleanup_(freep) char *dir = test_tmpdir();

        /* Not SQLite at all. */
        char junk[4096];
        for (size_t i = 0; i < sizeof(junk); i++)
                junk[i] = (char) (i * 7 + 3);
        _cleanup_(freep) char *garbage = test_write(dir, "garbage.db", junk, sizeof(junk));
        check_open_fails(garbage, -EBADMSG, "not a modelprov state DB");

        /* Another application's SQLite file. */
        _cleanup_(freep) char *other = test_path(dir, "other.db");
        sqlite3 *db;
        CHECK(sqlite3_open(other, &db) == SQLITE_OK);
        CHECK(sqlite3_exec(db, "CREATE TABLE t (x)", NULL, NULL, NULL) == SQLITE_OK);
        sqlite3_close(db);
        check_open_fails(other, -EBADMSG, "another application");

        /* A directory. */
        check_open_fails(dir, -EISDIR, "not a regular file");

        /* A state DB whose pages were overwritten: open or check fails,
         * nothing crashes. */
        _cleanup_(freep) char *path = test_path(dir, "state.db");
        agent_state *s = open_state(path);
        for (int i = 0; i < 200; i++)
                append_event(s, MODELPROV__V1__EVENT_KIND__FINDING, "/some/long/path/to/make/pages/fill/up");
        CHECK(agent_state_check(s, NULL) == 0);
        agent_state_close(s);
        int fd = open(path, O_WRONLY);
        CHECK(fd >= 0);
        struct stat st;
        CHECK(fstat(fd, &st) == 0 && st.st_size > 3 * 4096);
        CHECK(pwrite(fd, junk, sizeof(junk), 2 * 4096) == (ssize_t) sizeof(junk));
        close(fd);
        mp_error err = {0};
        s = NULL;
        int r = agent_state_open(path, &s, &err);
        if (r >= 0) {
                r = agent_state_check(s, &err);
                CHECK(r == -EUCLEAN || r == -EBADMSG);
                agent_state_close(s);
        }
        CHECK(r < 0);
        CHECK(err.reason[0] != '\0');
}

int main(void) {
        RUN(test_create_mode);
        RUN(test_commit_cycle);
        RUN(test_findings_once);
        RUN(test_numbering_survives_restart);
        RUN(test_sync);
        RUN(test_compact);
        RUN(test_readonly);
        RUN(test_damaged_files);
        return 0;
}
