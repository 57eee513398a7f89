/* test_catalog.c - the catalog (lib/catalog): size buckets, the SQLite
 * store (round trip, labels, replace, remove, damaged files), the import of
 * the reference project's database (the real one and a hostile one), scan
 * ranking and the pre-filter, and a 1,000-entry scan. */
#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "catalog/catalog.h"
#include "catalog/import_pk.h"
#include "catalog/param_bucket.h"
#include "fingerprint/compute.h"
#include "test.h"
#include "util/macro.h"

/* A hand-made record: name, parameter count, optional MFI JSON. */
static mp_fingerprint *make_fp(const char *name, uint64_t params, const char *mfi_json) {
        mp_fingerprint fp;
        Modelprov__V1__Signals s;
        modelprov__v1__fingerprint__init(&fp);
        modelprov__v1__signals__init(&s);
        fp.record_version = MP_FINGERPRINT_RECORD_VERSION;
        fp.name = (char *) name;
        fp.parameter_count = params;
        if (mfi_json) {
                s.mfi_json = (char *) mfi_json;
                s.arch_hash = (char *) "4b414de3062423b5f3b534e10f21eafe18c08a72a5f6c361f6f724d846180b50";
        }
        fp.signals = &s;

        uint8_t *buf;
        size_t len;
        mp_fingerprint *ret = NULL;
        CHECK(mp_fingerprint_pack(&fp, &buf, &len) == 0);
        CHECK(mp_fingerprint_unpack("test", buf, len, &ret, NULL) == 0);
        free(buf);
        return ret;
}

static mp_catalog *open_new(const char *dir, const char *name) {
        char *path = test_path(dir, name);
        mp_catalog *c = NULL;
        mp_error err;
        int r = mp_catalog_open(path, true, &c, &err);
        if (r < 0)
                fprintf(stderr, "%s: %s\n", err.file, err.reason);
        CHECK(r == 0);
        free(path);
        return c;
}

static const char *yi_mfi =
        "{\"model_type\":\"llama\",\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":4096,"
        "\"num_hidden_layers\":32,\"num_attention_heads\":32,\"num_key_value_heads\":4,"
        "\"intermediate_size\":11008,\"vocab_size\":64000,\"hidden_act\":\"silu\","
        "\"tie_word_embeddings\":false,\"head_dim\":128}";

static void test_param_bucket(void) {
        json_t *mfi = json_loads(yi_mfi, 0, NULL);
        uint64_t p = 0;
        CHECK(mp_param_estimate_mfi(mfi, &p) == 0);
        CHECK_EQ(p, 6060769280ULL);    /* the reference formula, evaluated in Python */
        CHECK_EQ(mp_param_bucket_of(p), MP_BUCKET_1_10B);
        json_decref(mfi);

        /* GPT-2 small: no kv heads, no intermediate size, tied unknown, not gated. */
        mfi = json_loads("{\"model_type\":\"gpt2\",\"hidden_size\":768,\"num_hidden_layers\":12,"
                         "\"num_attention_heads\":12,\"num_key_value_heads\":null,\"intermediate_size\":0,"
                         "\"vocab_size\":50257,\"hidden_act\":\"gelu_new\",\"tie_word_embeddings\":null,"
                         "\"head_dim\":null}", 0, NULL);
        CHECK(mp_param_estimate_mfi(mfi, &p) == 0);
        CHECK_EQ(p, 123532032ULL);
        CHECK_EQ(mp_param_bucket_of(p), MP_BUCKET_UP_TO_1B);
        json_decref(mfi);

        /* Hostile sizes saturate into 40B+ instead of wrapping around. */
        mfi = json_loads("{\"hidden_size\":9223372036854775807,\"num_hidden_layers\":9223372036854775807,"
                         "\"vocab_size\":9223372036854775807,\"num_attention_heads\":-5,\"model_type\":7}",
                         0, NULL);
        CHECK(mp_param_estimate_mfi(mfi, &p) == 0);
        CHECK_EQ(mp_param_bucket_of(p), MP_BUCKET_40B_PLUS);
        json_decref(mfi);

        /* Nothing usable. */
        mfi = json_loads("{\"hidden_size\":\"big\"}", 0, NULL);
        CHECK(mp_param_estimate_mfi(mfi, &p) == -ENODATA);
        json_decref(mfi);
        CHECK(mp_param_estimate_mfi(NULL, &p) == -ENODATA);

        /* Records: MFI first, then parameter_count. */
        mp_fingerprint *fp = make_fp("x", 5, yi_mfi);
        CHECK(mp_param_estimate_record(fp, &p) == 0);
        CHECK_EQ(p, 6060769280ULL);
        mp_fingerprint_free(fp);
        fp = make_fp("x", 1234, "not json");
        CHECK(mp_param_estimate_record(fp, &p) == 0);
        CHECK_EQ(p, 1234);
        mp_fingerprint_free(fp);
        fp = make_fp("x", 0, NULL);
        CHECK(mp_param_estimate_record(fp, &p) == -ENODATA);
        mp_fingerprint_free(fp);

        /* Boundaries and names. */
        CHECK_EQ(mp_param_bucket_of(999999999ULL), MP_BUCKET_UP_TO_1B);
        CHECK_EQ(mp_param_bucket_of(1000000000ULL), MP_BUCKET_1_10B);
        CHECK_EQ(mp_param_bucket_of(39999999999ULL), MP_BUCKET_10_40B);
        CHECK_EQ(mp_param_bucket_of(40000000000ULL), MP_BUCKET_40B_PLUS);
        for (int b = 0; b < _MP_BUCKET_MAX; b++)
                CHECK_EQ(mp_param_bucket_from_name(mp_param_bucket_name(b)), b);
        CHECK(mp_param_bucket_from_name("2B") == -EINVAL);
        CHECK(mp_param_bucket_from_name(NULL) == -EINVAL);

        /* Neighbours: own +-1. */
        mp_param_bucket nb[3];
        CHECK_EQ(mp_param_bucket_neighbours(MP_BUCKET_UP_TO_1B, nb), 2);
        CHECK_EQ(nb[0], MP_BUCKET_UP_TO_1B);
        CHECK_EQ(nb[1], MP_BUCKET_1_10B);
        CHECK_EQ(mp_param_bucket_neighbours(MP_BUCKET_10_40B, nb), 3);
        CHECK_EQ(nb[0], MP_BUCKET_1_10B);
        CHECK_EQ(nb[2], MP_BUCKET_40B_PLUS);
        CHECK_EQ(mp_param_bucket_neighbours(MP_BUCKET_40B_PLUS, nb), 2);
        CHECK_EQ(nb[0], MP_BUCKET_10_40B);
}

typedef struct listed {
        size_t n;
        char names[8][64];
        char buckets[8][16];
        char labels[8][256];
        bool weights[8];
} listed;

static int collect(const mp_catalog_entry *e, void *userdata) {
        listed *l = userdata;
        CHECK(l->n < 8);
        snprintf(l->names[l->n], sizeof(l->names[0]), "%s", e->name);
        snprintf(l->buckets[l->n], sizeof(l->buckets[0]), "%s", e->param_bucket);
        size_t o = 0;
        for (size_t i = 0; i < e->n_labels; i++)
                o += (size_t) snprintf(l->labels[l->n] + o, sizeof(l->labels[0]) - o, "%s%s=%s", i ? "," : "",
                                       e->labels[i].key, e->labels[i].value);
        l->weights[l->n] = e->has_weights;
        l->n++;
        return 0;
}

static void test_round_trip(void) {
        char *dir = test_tmpdir();
        mp_catalog *c = open_new(dir, "cat.db");
        mp_error err;

        mp_fingerprint *big = make_fp("big", 0, yi_mfi);
        mp_fingerprint *small = make_fp("small", 1500000, NULL);
        mp_label labels[] = { { "license", "llama3" }, { "family", "llama" } };
        mp_catalog_add_options o = { .labels = labels, .n_labels = 2 };
        CHECK_EQ(mp_catalog_add(c, "yi", big, &o, &err), 0);
        CHECK_EQ(mp_catalog_add(c, "tiny", small, NULL, &err), 0);

        /* Same name again: refused, then replaced (labels too). */
        CHECK_EQ(mp_catalog_add(c, "tiny", small, NULL, &err), -EEXIST);
        CHECK(strstr(err.reason, "already exists"));
        CHECK(strstr(err.file, "cat.db"));
        mp_label one[] = { { "tier", "gold" } };
        o = (mp_catalog_add_options) { .labels = one, .n_labels = 1, .mode = MP_CATALOG_ADD_REPLACE };
        CHECK_EQ(mp_catalog_add(c, "tiny", small, &o, &err), 1);

        /* Bad input. */
        CHECK_EQ(mp_catalog_add(c, "", small, NULL, &err), -EINVAL);
        CHECK_EQ(mp_catalog_add(c, "a\nb", small, NULL, &err), -EINVAL);
        mp_label bad[] = { { "bad key", "x" } };
        o = (mp_catalog_add_options) { .labels = bad, .n_labels = 1 };
        CHECK_EQ(mp_catalog_add(c, "new", small, &o, &err), -EINVAL);
        CHECK(strstr(err.reason, "label key"));
        mp_label twice[] = { { "k", "1" }, { "k", "2" } };
        o = (mp_catalog_add_options) { .labels = twice, .n_labels = 2 };
        CHECK_EQ(mp_catalog_add(c, "new", small, &o, &err), -EINVAL);
        CHECK(strstr(err.reason, "twice"));
        o = (mp_catalog_add_options) { .param_bucket = "huge" };
        CHECK_EQ(mp_catalog_add(c, "new", small, &o, &err), -EINVAL);
        o = (mp_catalog_add_options) { .source = "elsewhere" };
        CHECK_EQ(mp_catalog_add(c, "new", small, &o, &err), -EINVAL);

        listed l = {0};
        CHECK_EQ(mp_catalog_list(c, collect, &l, &err), 0);
        CHECK_EQ(l.n, 2);
        CHECK_STREQ(l.names[0], "tiny");        /* name order */
        CHECK_STREQ(l.buckets[0], "<=1B");
        CHECK_STREQ(l.labels[0], "tier=gold");
        CHECK_STREQ(l.names[1], "yi");
        CHECK_STREQ(l.buckets[1], "1-10B");
        CHECK_STREQ(l.labels[1], "family=llama,license=llama3");   /* sorted by key */
        CHECK(!l.weights[1]);

        /* The record comes back as stored. */
        size_t n = 0;
        CHECK_EQ(mp_catalog_count(c, &n, &err), 0);
        CHECK_EQ(n, 2);

        CHECK_EQ(mp_catalog_remove(c, "yi", &err), 0);
        CHECK_EQ(mp_catalog_remove(c, "yi", &err), -ENOENT);
        CHECK(strstr(err.reason, "no entry named 'yi'"));
        CHECK_EQ(mp_catalog_count(c, &n, &err), 0);
        CHECK_EQ(n, 1);
        mp_catalog_close(c);

        /* Reopening without create finds the same data; labels of removed entries went with them. */
        char *path = test_path(dir, "cat.db");
        CHECK_EQ(mp_catalog_open(path, false, &c, &err), 0);
        l = (listed) {0};
        CHECK_EQ(mp_catalog_list(c, collect, &l, &err), 0);
        CHECK_EQ(l.n, 1);
        mp_catalog_close(c);
        sqlite3 *db;
        CHECK(sqlite3_open(path, &db) == SQLITE_OK);
        sqlite3_stmt *s;
        CHECK(sqlite3_prepare_v2(db, "SELECT count(*) FROM labels", -1, &s, NULL) == SQLITE_OK);
        CHECK(sqlite3_step(s) == SQLITE_ROW);
        CHECK_EQ(sqlite3_column_int(s, 0), 1);
        sqlite3_finalize(s);
        sqlite3_close(db);

        mp_fingerprint_free(big);
        mp_fingerprint_free(small);
        free(path);
        free(dir);
}

static int count_candidates(const mp_catalog_entry *e, const mp_fingerprint *fp, void *userdata) {
        CHECK(fp && fp->name && e->name);
        (*(size_t *) userdata)++;
        return 0;
}

static void test_corrupt_record(void) {
        char *dir = test_tmpdir();
        mp_catalog *c = open_new(dir, "cat.db");
        mp_error err;
        mp_fingerprint *fp = make_fp("m", 1000, NULL);
        CHECK_EQ(mp_catalog_add(c, "good", fp, NULL, &err), 0);
        CHECK_EQ(mp_catalog_add(c, "damaged", fp, NULL, &err), 0);
        mp_catalog_close(c);

        char *path = test_path(dir, "cat.db");
        sqlite3 *db;
        CHECK(sqlite3_open(path, &db) == SQLITE_OK);
        CHECK(sqlite3_exec(db, "UPDATE entries SET record = x'ffffffff0a' WHERE name = 'damaged'", NULL, NULL,
                           NULL) == SQLITE_OK);
        sqlite3_close(db);

        CHECK_EQ(mp_catalog_open(path, false, &c, &err), 0);
        size_t n = 0;
        CHECK_EQ(mp_catalog_foreach_candidate(c, NULL, 0, count_candidates, &n, &err), -EBADMSG);
        CHECK(strstr(err.reason, "entry 'damaged'"));
        CHECK(strstr(err.reason, "not a modelprov fingerprint record"));
        CHECK_STREQ(err.file, path);

        mp_scan_options so = { .top_k = 3, .threshold = 0 };
        mp_scan_result res;
        CHECK_EQ(mp_catalog_scan(c, fp, &so, &res, &err), -EBADMSG);
        CHECK(strstr(err.reason, "entry 'damaged'"));
        mp_catalog_close(c);
        mp_fingerprint_free(fp);
        free(path);
        free(dir);
}

static void expect_open_error(const char *path, bool create, int code, const char *text) {
        mp_catalog *c = NULL;
        mp_error err;
        mp_error_clear(&err);
        int r = mp_catalog_open(path, create, &c, &err);
        if (r != code || !strstr(err.reason, text))
                fprintf(stderr, "%s: got %d '%s', want %d '%s'\n", path, r, err.reason, code, text);
        CHECK_EQ(r, code);
        CHECK(strstr(err.reason, text));
        CHECK(c == NULL);
}

static void test_not_a_catalog(void) {
        char *dir = test_tmpdir();
        const char text[] = "this is a text file, long enough to hold an SQLite header, or is it? no it is not.";
        char *txt = test_write(dir, "notes.txt", text, sizeof(text));
        expect_open_error(txt, false, -EBADMSG, "not a modelprov catalog");
        expect_open_error(txt, true, -EBADMSG, "not a modelprov catalog");
        /* The text file is left as it was. */
        size_t len;
        char *back = test_read(txt, &len);
        CHECK_EQ(len, sizeof(text));
        free(back);

        char *missing = test_path(dir, "missing.db");
        expect_open_error(missing, false, -ENOENT, "cannot open the catalog");
        expect_open_error(dir, true, -EISDIR, "not a regular file");

        /* Another application's database. */
        char *other = test_path(dir, "other.db");
        sqlite3 *db;
        CHECK(sqlite3_open(other, &db) == SQLITE_OK);
        CHECK(sqlite3_exec(db, "CREATE TABLE t (x)", NULL, NULL, NULL) == SQLITE_OK);
        sqlite3_close(db);
        expect_open_error(other, true, -EBADMSG, "another application");

        /* A catalog from a newer modelprov. */
        mp_catalog *c = open_new(dir, "newer.db");
        mp_catalog_close(c);
        char *newer = test_path(dir, "newer.db");
        CHECK(sqlite3_open(newer, &db) == SQLITE_OK);
        CHECK(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL) == SQLITE_OK);
        sqlite3_close(db);
        expect_open_error(newer, false, -ENOTSUP, "newer than this modelprov");

        /* An empty file only becomes a catalog when asked to. */
        char *empty = test_write(dir, "empty.db", "", 0);
        expect_open_error(empty, false, -EBADMSG, "not a modelprov catalog");
        CHECK_EQ(mp_catalog_open(empty, true, &c, NULL), 0);
        mp_catalog_close(c);

        /* Another process holding the write lock: a clear "locked" (after the busy timeout). */
        char *locked = test_path(dir, "locked.db");
        CHECK_EQ(mp_catalog_open(locked, true, &c, NULL), 0);
        CHECK(sqlite3_open(locked, &db) == SQLITE_OK);
        CHECK(sqlite3_exec(db, "BEGIN EXCLUSIVE", NULL, NULL, NULL) == SQLITE_OK);
        mp_fingerprint *fp = make_fp("m", 10, NULL);
        mp_error err;
        CHECK_EQ(mp_catalog_add(c, "m", fp, NULL, &err), -EBUSY);
        CHECK(strstr(err.reason, "database is locked"));
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        sqlite3_close(db);
        CHECK_EQ(mp_catalog_add(c, "m", fp, NULL, &err), 0);
        mp_catalog_close(c);

        mp_fingerprint_free(fp);
        free(txt);
        free(missing);
        free(other);
        free(newer);
        free(empty);
        free(locked);
        free(dir);
}

/* ---- import ------------------------------------------------------------- */

typedef struct skips {
        size_t n;
        char text[4096];
} skips;

static void record_skip(const char *what, const char *reason, void *userdata) {
        skips *s = userdata;
        size_t o = strlen(s->text);
        snprintf(s->text + o, sizeof(s->text) - o, "%s: %s\n", what, reason);
        s->n++;
}

/* Assets in the manifest's shards whose feature file exists: counted here
 * independently of the importer. */
static size_t count_db_assets(const char *db) {
        char *p = test_path(db, "catalog/manifest.json");
        json_t *m = json_load_file(p, 0, NULL);
        free(p);
        CHECK(m);
        size_t n = 0, i, j;
        json_t *shard, *asset;
        json_array_foreach(json_object_get(m, "shards"), i, shard) {
                p = test_path(db, json_string_value(json_object_get(shard, "shard_path")));
                json_t *s = json_load_file(p, 0, NULL);
                free(p);
                CHECK(s);
                json_array_foreach(json_object_get(s, "assets"), j, asset) {
                        p = test_path(db, json_string_value(json_object_get(asset, "feature_path")));
                        n += access(p, R_OK) == 0;
                        free(p);
                }
                json_decref(s);
        }
        json_decref(m);
        return n;
}

typedef struct import_check {
        mp_catalog *c;
        size_t n, yi_seen, bucket_ok;
} import_check;

static int check_imported(const mp_catalog_entry *e, const mp_fingerprint *fp, void *userdata) {
        import_check *ic = userdata;
        ic->n++;
        CHECK_STREQ(e->source, MP_CATALOG_SOURCE_PROVENANCEKIT);
        CHECK(!e->has_weights);
        CHECK(fp->signals && !fp->signals->has_weights);
        CHECK(fp->signals->mfi_json[0] == '{');
        CHECK_STREQ(fp->signals->arch_hash, e->arch_hash);

        /* The catalog's bucket agrees with the reference estimate from the mfi. */
        uint64_t p;
        CHECK(mp_param_estimate_record(fp, &p) == 0);
        ic->bucket_ok += strcmp(mp_param_bucket_name(mp_param_bucket_of(p)), e->param_bucket) == 0;

        if (strcmp(e->name, "Yi-1.5-6B") == 0) {
                ic->yi_seen++;
                CHECK_STREQ(e->param_bucket, "1-10B");
                CHECK_EQ(e->params, 6060769280ULL);
                CHECK_STREQ(fp->arch->model_type, "llama");
                CHECK_STREQ(fp->arch->architecture, "LlamaForCausalLM");
                CHECK_EQ(fp->arch->hidden_size, 4096);
                CHECK_EQ(fp->arch->num_kv_heads, 4);
                CHECK_EQ(fp->arch->tie_word_embeddings, 0);
                CHECK(fp->arch->rope_theta == 5000000.0);
                CHECK(strstr(fp->signals->tfv_json, "\"tokenizer_class\":\"LlamaTokenizer\""));
                CHECK_STREQ(e->arch_hash, "4b414de3062423b5f3b534e10f21eafe18c08a72a5f6c361f6f724d846180b50");
                size_t found = 0;
                for (size_t i = 0; i < fp->n_metadata; i++) {
                        const char *k = fp->metadata[i]->key, *v = fp->metadata[i]->value;
                        found += strcmp(k, "family_id") == 0 && strcmp(v, "01ai--yi") == 0;
                        found += strcmp(k, "publisher") == 0 && strcmp(v, "01-ai") == 0;
                        found += strcmp(k, "asset_id") == 0 && strcmp(v, "Yi-1.5-6B__hf-safetensors") == 0;
                        found += strcmp(k, "source_uri") == 0 && strcmp(v, "https://huggingface.co/01-ai/Yi-1.5-6B") == 0;
                        found += strcmp(k, "param_bucket") == 0 && strcmp(v, "1-10B") == 0;
                        found += strcmp(k, "format") == 0 && strcmp(v, "safetensors") == 0;
                }
                CHECK_EQ(found, 6);
                mp_label *labels;
                size_t n;
                CHECK(mp_catalog_get_labels(ic->c, e->id, &labels, &n, NULL) == 0);
                CHECK_EQ(n, 2);
                CHECK_STREQ(labels[0].key, "family");
                CHECK_STREQ(labels[0].value, "01ai--yi");
                CHECK_STREQ(labels[1].key, "publisher");
                CHECK_STREQ(labels[1].value, "01-ai");
                free(labels);
        }
        return 0;
}

static void test_import_real_db(void) {
        const char *zoo = test_zoo();
        if (!zoo)
                return;
        char *db = test_path(zoo, "../provenancekit-db");
        size_t expected = count_db_assets(db);
        CHECK(expected >= 150);

        char *dir = test_tmpdir();
        mp_catalog *c = open_new(dir, "pk.db");
        mp_import_stats st;
        skips sk = {0};
        mp_error err;
        CHECK_EQ(mp_catalog_import_pk(c, db, record_skip, &sk, &st, &err), 0);
        if (sk.n)
                fprintf(stderr, "%s", sk.text);
        CHECK_EQ(st.imported, expected);
        CHECK_EQ(st.skipped, 0);

        /* Twice: the same entries, replaced. */
        CHECK_EQ(mp_catalog_import_pk(c, db, record_skip, &sk, &st, &err), 0);
        CHECK_EQ(st.imported, expected);
        size_t n;
        CHECK_EQ(mp_catalog_count(c, &n, &err), 0);
        CHECK_EQ(n, expected);

        import_check ic = { .c = c };
        CHECK_EQ(mp_catalog_foreach_candidate(c, NULL, 0, check_imported, &ic, &err), 0);
        CHECK_EQ(ic.n, expected);
        CHECK_EQ(ic.yi_seen, 1);
        CHECK_EQ(ic.bucket_ok, expected);

        /* A local entry of the same name is kept; the asset is skipped. */
        CHECK_EQ(mp_catalog_remove(c, "Yi-1.5-6B", &err), 0);
        mp_fingerprint *fp = make_fp("mine", 10, NULL);
        CHECK_EQ(mp_catalog_add(c, "Yi-1.5-6B", fp, NULL, &err), 0);
        sk = (skips) {0};
        CHECK_EQ(mp_catalog_import_pk(c, db, record_skip, &sk, &st, &err), 0);
        CHECK_EQ(st.imported, expected - 1);
        CHECK_EQ(st.skipped, 1);
        CHECK(strstr(sk.text, "Yi-1.5-6B__hf-safetensors: the name is taken by a local entry"));

        /* The pre-filter: a 6B query sees <=1B, 1-10B and 10-40B entries only. */
        mp_fingerprint *q = make_fp("q", 0, yi_mfi);
        mp_param_bucket nb[3];
        size_t nn = mp_param_bucket_neighbours(MP_BUCKET_1_10B, nb), in_range = 0, all = 0;
        CHECK_EQ(mp_catalog_foreach_candidate(c, nb, nn, count_candidates, &in_range, &err), 0);
        CHECK_EQ(mp_catalog_foreach_candidate(c, NULL, 0, count_candidates, &all, &err), 0);
        CHECK(in_range < all);
        CHECK(in_range > 100);

        mp_catalog_close(c);
        mp_fingerprint_free(fp);
        mp_fingerprint_free(q);
        free(db);
        free(dir);
}

static void mkdirs(const char *root, const char *rel) {
        char *p = test_path(root, rel);
        for (char *s = p + strlen(root) + 1; *s; s++)
                if (*s == '/') {
                        *s = 0;
                        mkdir(p, 0755);
                        *s = '/';
                }
        mkdir(p, 0755);
        free(p);
}

static void write_str(const char *dir, const char *name, const char *s) {
        free(test_write(dir, name, s, strlen(s)));
}

static void test_import_hostile(void) {
        char *root = test_tmpdir();
        char *db = test_path(root, "db");
        CHECK(mkdir(db, 0755) == 0);
        mkdirs(db, "catalog/by-family");
        mkdirs(db, "features");
        write_str(root, "outside.json", "{\"assets\":[]}");
        write_str(root, "outside_features.json", "{\"mfi\":{\"hidden_size\":1}}");

        write_str(db, "catalog/manifest.json",
                  "{\"shards\":["
                  "{\"shard_path\":\"../outside.json\"},"
                  "{\"shard_path\":\"/etc/passwd\"},"
                  "{\"shard_path\":\"catalog/by-family/missing.json\"},"
                  "{\"shard_path\":\"catalog/by-family/broken.json\"},"
                  "{\"shard_path\":\"catalog/by-family/noassets.json\"},"
                  "17,"
                  "{\"shard_path\":\"catalog/by-family/good.json\"}]}");
        write_str(db, "catalog/by-family/broken.json", "{\"assets\": [");
        write_str(db, "catalog/by-family/noassets.json", "{\"family\": {}}");
        write_str(db, "catalog/by-family/good.json",
                  "{\"family\":{\"family_id\":\"fam\",\"publisher\":\"pub\\nlisher\"},\"assets\":["
                  "{\"asset_id\":\"dotdot\",\"model_id\":\"a1\",\"feature_path\":\"features/../../outside_features.json\"},"
                  "{\"asset_id\":\"link\",\"model_id\":\"a2\",\"feature_path\":\"features/link.json\"},"
                  "{\"asset_id\":\"malformed\",\"model_id\":\"a3\",\"feature_path\":\"features/malformed.json\"},"
                  "{\"asset_id\":\"nomfi\",\"model_id\":\"a4\",\"feature_path\":\"features/nomfi.json\"},"
                  "{\"asset_id\":\"badname\",\"model_id\":\"a\\u0007b\",\"feature_path\":\"features/ok.json\"},"
                  "{\"asset_id\":\"noname\",\"feature_path\":\"features/ok.json\"},"
                  "{\"asset_id\":\"array\",\"model_id\":\"a5\",\"feature_path\":\"features/array.json\"},"
                  "\"not an object\","
                  "{\"asset_id\":\"ok\",\"model_id\":\"good-model\",\"param_bucket\":\"gigantic\","
                  " \"feature_path\":\"features/ok.json\"},"
                  "{\"asset_id\":\"dup\",\"canonical_name\":\"good-model\",\"feature_path\":\"features/ok.json\"}"
                  "]}");
        char *target = test_path(root, "outside_features.json");
        char *link = test_path(db, "features/link.json");
        CHECK(symlink(target, link) == 0);
        write_str(db, "features/malformed.json", "{\"mfi\": {\"hidden_size\": 12,,}");
        write_str(db, "features/nomfi.json", "{\"tfv\": {}}");
        write_str(db, "features/array.json", "[1, 2, 3]");
        write_str(db, "features/ok.json",
                  "{\"mfi\":{\"model_type\":\"llama\",\"hidden_size\":64,\"num_hidden_layers\":2,"
                  "\"num_attention_heads\":4,\"vocab_size\":1000,\"arch_hash\":\"not-hex\","
                  "\"architectures\":[7]},\"tfv\":[\"not an object\"]}");

        mp_catalog *c = open_new(root, "cat.db");
        mp_import_stats st;
        skips sk = {0};
        mp_error err;
        CHECK_EQ(mp_catalog_import_pk(c, db, record_skip, &sk, &st, &err), 0);
        fprintf(stderr, "%s", sk.text);
        CHECK_EQ(st.imported, 1);
        /* 5 shards + 1 non-object manifest entry + 9 assets. */
        CHECK_EQ(st.skipped, 15);
        CHECK_EQ(sk.n, 15);
        CHECK(strstr(sk.text, "../outside.json: shard: path '../outside.json' leads outside the database directory"));
        CHECK(strstr(sk.text, "/etc/passwd: shard: absolute path '/etc/passwd' refused"));
        CHECK(strstr(sk.text, "missing.json: shard: catalog/by-family/missing.json: no such file"));
        CHECK(strstr(sk.text, "broken.json: shard: malformed JSON at line 1"));
        CHECK(strstr(sk.text, "no \"assets\" array"));
        CHECK(strstr(sk.text, "dotdot: feature file: path 'features/../../outside_features.json' leads outside"));
        CHECK(strstr(sk.text, "link: feature file: path 'features/link.json' leads outside the database directory (symlink)"));
        CHECK(strstr(sk.text, "malformed: feature file: malformed JSON at line 1"));
        CHECK(strstr(sk.text, "nomfi: feature file has no \"mfi\" object"));
        CHECK(strstr(sk.text, "badname: bad name: control characters or NUL in the name"));
        CHECK(strstr(sk.text, "noname: no canonical_name or model_id"));
        CHECK(strstr(sk.text, "array: feature file: not a JSON object"));
        CHECK(strstr(sk.text, "(asset): not a JSON object"));
        CHECK(strstr(sk.text, "dup: duplicate name 'good-model'"));

        /* The one good asset: the publisher with a newline is not a label, its
         * unknown bucket is replaced by the estimate, the bad hash is dropped. */
        listed l = {0};
        CHECK_EQ(mp_catalog_list(c, collect, &l, &err), 0);
        CHECK_EQ(l.n, 1);
        CHECK_STREQ(l.names[0], "good-model");
        CHECK_STREQ(l.labels[0], "family=fam");
        CHECK_STREQ(l.buckets[0], "<=1B");

        /* A directory that is not a database: an error, and nothing written. */
        CHECK_EQ(mp_catalog_import_pk(c, root, NULL, NULL, &st, &err), -ENOENT);
        CHECK(strstr(err.reason, "not a provenancekit database"));
        write_str(db, "catalog/manifest.json", "{\"shards\": {}}");
        CHECK_EQ(mp_catalog_import_pk(c, db, NULL, NULL, &st, &err), -EBADMSG);
        CHECK(strstr(err.reason, "no \"shards\" array"));
        write_str(db, "catalog/manifest.json", "[]");
        CHECK_EQ(mp_catalog_import_pk(c, db, NULL, NULL, &st, &err), -EBADMSG);
        char *nowhere = test_path(root, "nowhere");
        CHECK_EQ(mp_catalog_import_pk(c, nowhere, NULL, NULL, &st, &err), -ENOENT);
        size_t n;
        CHECK_EQ(mp_catalog_count(c, &n, &err), 0);
        CHECK_EQ(n, 1);

        mp_catalog_close(c);
        free(nowhere);
        free(target);
        free(link);
        free(db);
        free(root);
}

/* ---- scan --------------------------------------------------------------- */

static mp_scan_match synthetic(const char *name, mp_verdict v, double identity, double pipeline) {
        mp_scan_match m = { .name = (char *) name };
        m.cmp.verdict = v;
        m.cmp.identity_score = identity;
        m.cmp.pipeline_score = pipeline;
        m.score = mp_scan_rank_score(&m.cmp);
        return m;
}

static void test_scan_order(void) {
        mp_scan_match high = synthetic("b", MP_VERDICT_HIGH, 0.8, NAN);
        mp_scan_match confirmed = synthetic("z", MP_VERDICT_CONFIRMED, 0.97, 0.5);
        mp_scan_match weak_meta = synthetic("a", MP_VERDICT_WEAK, NAN, 1.0);
        mp_scan_match high2 = synthetic("c", MP_VERDICT_HIGH, 0.9, NAN);
        mp_scan_match high3 = synthetic("a", MP_VERDICT_HIGH, 0.8, NAN);
        mp_scan_match none = synthetic("n", MP_VERDICT_NOT_MATCHED, NAN, NAN);

        CHECK(mp_scan_rank_score(&weak_meta.cmp) == 1.0);      /* pipeline when no identity */
        CHECK(mp_scan_rank_score(&confirmed.cmp) == 0.97);     /* identity first */
        CHECK(mp_scan_rank_score(&none.cmp) == 0.0);           /* NaN counts as 0 */
        mp_scan_match meta_only = synthetic("m", MP_VERDICT_NOT_MATCHED, NAN, 0.62);
        CHECK(mp_scan_rank_score(&meta_only.cmp) == 0.0);      /* metadata that did not reach Weak */

        CHECK(mp_scan_match_order(&confirmed, &high) < 0);
        CHECK(mp_scan_match_order(&high, &weak_meta) < 0);     /* weight evidence beats metadata */
        CHECK(mp_scan_match_order(&high2, &high) < 0);         /* then the score */
        CHECK(mp_scan_match_order(&high3, &high) < 0);         /* then the name */
        CHECK(mp_scan_match_order(&high, &high) == 0);
        CHECK(mp_scan_match_order(&weak_meta, &none) < 0);
}

static mp_fingerprint *zoo_fingerprint(const char *zoo, const char *rel) {
        char *path = test_path(zoo, rel);
        mp_model *m = NULL;
        mp_fingerprint *fp = NULL;
        mp_error err;
        CHECK(mp_model_open(path, NULL, &m, &err) == 0);
        CHECK(mp_fingerprint_compute(m, NULL, &fp, &err) == 0);
        mp_model_free(m);
        free(path);
        return fp;
}

static double now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* 1,000 copies of one zoo fingerprint, added in one transaction, then
 * scanned: every entry is a candidate, the top 3 come back in a stable
 * order.  The time is printed (a benchmark figure, not asserted). */
static void test_scan_1000(void) {
        const char *zoo = test_zoo();
        if (!zoo)
                return;
        mp_fingerprint *fp = zoo_fingerprint(zoo, "llama/base-1");
        char *dir = test_tmpdir();
        mp_catalog *c = open_new(dir, "big.db");
        mp_error err;

        double t0 = now_ms();
        CHECK_EQ(mp_catalog_begin(c, &err), 0);
        for (int i = 0; i < 1000; i++) {
                char name[32];
                snprintf(name, sizeof(name), "entry-%04d", i);
                CHECK_EQ(mp_catalog_add(c, name, fp, NULL, &err), 0);
        }
        CHECK_EQ(mp_catalog_commit(c, &err), 0);
        double t1 = now_ms();

        mp_scan_options so = { .top_k = 3, .threshold = 0 };
        mp_scan_result res;
        CHECK_EQ(mp_catalog_scan(c, fp, &so, &res, &err), 0);
        double t2 = now_ms();
        fprintf(stderr, "1000 adds in one transaction: %.1f ms; scan of 1000 entries: %.1f ms\n", t1 - t0, t2 - t1);

        CHECK_EQ(res.n_entries, 1000);
        CHECK_EQ(res.n_candidates, 1000);
        CHECK_EQ(res.n_above_threshold, 1000);
        CHECK_EQ(res.n_matches, 3);
        CHECK_EQ(res.query_bucket, MP_BUCKET_UP_TO_1B);
        CHECK_EQ(res.n_buckets, 2);
        /* All equal: the name decides. */
        CHECK_STREQ(res.matches[0].name, "entry-0000");
        CHECK_STREQ(res.matches[1].name, "entry-0001");
        CHECK_STREQ(res.matches[2].name, "entry-0002");
        CHECK(res.matches[0].has_weights);
        CHECK_STREQ(res.matches[0].source, "local");
        mp_scan_result_free(&res);

        /* Threshold 1.0 keeps only perfect scores; top-k validated. */
        so = (mp_scan_options) { .top_k = 0, .threshold = 0.5 };
        CHECK_EQ(mp_catalog_scan(c, fp, &so, &res, &err), -EINVAL);
        so = (mp_scan_options) { .top_k = 3, .threshold = 1.5 };
        CHECK_EQ(mp_catalog_scan(c, fp, &so, &res, &err), -EINVAL);

        mp_catalog_close(c);
        mp_fingerprint_free(fp);
        free(dir);
}

/* Candidates are limited to the query's bucket +-1, plus unknown buckets. */
static void test_scan_prefilter(void) {
        char *dir = test_tmpdir();
        mp_catalog *c = open_new(dir, "f.db");
        mp_error err;
        struct { const char *name; uint64_t params; } e[] = {
                { "tiny", 1000000 }, { "7b", 7000000000ULL }, { "30b", 30000000000ULL },
                { "70b", 70000000000ULL }, { "unknown", 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(e); i++) {
                mp_fingerprint *fp = make_fp(e[i].name, e[i].params, NULL);
                mp_label l = { "size", e[i].name };
                mp_catalog_add_options o = { .labels = &l, .n_labels = 1 };
                CHECK_EQ(mp_catalog_add(c, e[i].name, fp, &o, &err), 0);
                mp_fingerprint_free(fp);
        }

        mp_fingerprint *q = make_fp("q", 2000000, NULL);
        mp_scan_options so = { .top_k = 10, .threshold = 0 };
        mp_scan_result res;
        CHECK_EQ(mp_catalog_scan(c, q, &so, &res, &err), 0);
        CHECK_EQ(res.n_entries, 5);
        CHECK_EQ(res.n_candidates, 3);  /* tiny, 7b, unknown */
        CHECK_EQ(res.n_matches, 3);
        for (size_t i = 0; i < res.n_matches; i++) {
                CHECK(strcmp(res.matches[i].name, "30b") != 0 && strcmp(res.matches[i].name, "70b") != 0);
                CHECK_EQ(res.matches[i].n_labels, 1);
                CHECK_STREQ(res.matches[i].labels[0].value, res.matches[i].name);
        }
        mp_scan_result_free(&res);

        so.all_buckets = true;
        CHECK_EQ(mp_catalog_scan(c, q, &so, &res, &err), 0);
        CHECK_EQ(res.n_candidates, 5);
        CHECK_EQ(res.n_buckets, 0);
        mp_scan_result_free(&res);

        /* A query of unknown size is compared with everything. */
        mp_fingerprint *u = make_fp("u", 0, NULL);
        so.all_buckets = false;
        CHECK_EQ(mp_catalog_scan(c, u, &so, &res, &err), 0);
        CHECK_EQ(res.query_bucket, -1);
        CHECK_EQ(res.n_candidates, 5);
        mp_scan_result_free(&res);

        mp_catalog_close(c);
        mp_fingerprint_free(q);
        mp_fingerprint_free(u);
        free(dir);
}

int main(void) {
        RUN(test_param_bucket);
        RUN(test_round_trip);
        RUN(test_corrupt_record);
        RUN(test_not_a_catalog);
        RUN(test_import_real_db);
        RUN(test_import_hostile);
        RUN(test_scan_order);
        RUN(test_scan_prefilter);
        RUN(test_scan_1000);
        return 0;
}
