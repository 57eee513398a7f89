/* rows.c - JSON rows printed as table, CSV or JSON (see rows.h). */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "output.h"
#include "rows.h"
#include "util/macro.h"
#include "util/strutil.h"

#define DIGEST_BYTES 32
#define TABLE_DIGEST_CHARS 12
#define TABLE_CELL_MAX 64

/* ---- values ------------------------------------------------------------- */

/* A JSON string of text from the collector: bytes that are not UTF-8 become
 * '?' (json_string() would refuse the whole string). */
json_t *row_str(const char *s) {
        if (!s)
                s = "";
        size_t n = strlen(s);
        if (mp_utf8_invalid_at((const uint8_t *) s, n) == n)
                return json_string(s);
        _cleanup_(freep) char *copy = strdup(s);
        if (!copy)
                return NULL;
        size_t at;
        while ((at = mp_utf8_invalid_at((const uint8_t *) copy, n)) < n)
                copy[at] = '?';
        return json_string(copy);
}

json_t *row_str_or_null(const char *s) {
        return s && s[0] ? row_str(s) : json_null();
}

json_t *row_digest(ProtobufCBinaryData d) {
        char hex[2 * DIGEST_BYTES + 1];
        if (d.len == 0 || d.len > DIGEST_BYTES)
                return json_null();
        mp_hex(d.data, d.len, hex);
        return json_string(hex);
}

json_t *row_score(double v) {
        return isfinite(v) ? json_real(v) : json_null();
}

/* Unix ms as "2026-01-31T12:00:00Z"; false for "never" (<= 0) and for
 * times gmtime() cannot place. */
static bool iso_time(int64_t ms, char *buf, size_t size) {
        struct tm tm;
        time_t t = (time_t) (ms / 1000);
        if (ms <= 0 || !gmtime_r(&t, &tm))
                return false;
        return strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) > 0;
}

/* Sets key (ISO-8601 UTC) and key_ms (integer), both null for "never". */
int row_set_time(json_t *o, const char *key, int64_t ms) {
        if (!o)
                return -ENOMEM;
        char iso[64], key_ms[64];
        snprintf(key_ms, sizeof(key_ms), "%s_ms", key);
        bool ok = iso_time(ms, iso, sizeof(iso));
        if (json_object_set_new(o, key, ok ? json_string(iso) : json_null()) < 0 ||
            json_object_set_new(o, key_ms, ok ? json_integer(ms) : json_null()) < 0)
                return -ENOMEM;
        return 0;
}

/* Adds every (key, value) pair to o.  Always consumes the values, also
 * when o is NULL (a failed json_object()), so callers chain calls and check
 * once; a NULL value (failed allocation) fails. */
int row_set_all(json_t *o, const char *const *keys, json_t **values, size_t n) {
        int r = o ? 0 : -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (!o)
                        json_decref(values[i]);
                else if (!values[i] || json_object_set_new(o, keys[i], values[i]) < 0)
                        r = -ENOMEM;
        return r;
}

/* ---- output ------------------------------------------------------------- */

static const char *table_cell(const json_t *v, row_col_kind kind, char *buf, size_t size) {
        if (!v || json_is_null(v))
                return "-";
        switch (kind) {
        case ROW_BOOL:
                return json_is_true(v) ? "yes" : "no";
        case ROW_INT:
                snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                return buf;
        case ROW_SCORE:
                snprintf(buf, size, "%.3f", json_number_value(v));
                return buf;
        case ROW_DIGEST:
                snprintf(buf, size, "%.*s", TABLE_DIGEST_CHARS, json_string_value(v) ? json_string_value(v) : "?");
                return buf;
        case ROW_TEXT:
                break;
        }
        return mp_printable(buf, size, json_string_value(v) ? json_string_value(v) : "?");
}

/* The cell of row_column c in row (NULL: the header). */
static const char *cell_of(json_t *row, const row_column *c, char *buf, size_t size) {
        return row ? table_cell(json_object_get(row, c->key), c->kind, buf, size) : c->title;
}

/* Aligned columns (the titled ones), header first; numbers align right and
 * the last row_column is not padded. */
static void print_table(json_t *rows, const row_column *cols, size_t n_cols) {
        size_t width[16] = {0}, n_rows = json_array_size(rows), last = 0;
        char buf[TABLE_CELL_MAX + 1];
        assert(n_cols <= ELEMENTSOF(width));

        for (size_t c = 0; c < n_cols; c++) {
                if (!cols[c].title)
                        continue;
                last = c;
                width[c] = strlen(cols[c].title);
                for (size_t i = 0; i < n_rows; i++) {
                        size_t w = strlen(cell_of(json_array_get(rows, i), &cols[c], buf, sizeof(buf)));
                        width[c] = w > width[c] ? w : width[c];
                }
        }
        for (size_t i = 0; i <= n_rows; i++) {
                json_t *row = i > 0 ? json_array_get(rows, i - 1) : NULL;
                const char *sep = "";
                for (size_t c = 0; c < n_cols; c++) {
                        if (!cols[c].title)
                                continue;
                        const char *cell = cell_of(row, &cols[c], buf, sizeof(buf));
                        if (cols[c].kind == ROW_INT || cols[c].kind == ROW_SCORE)
                                printf("%s%*s", sep, (int) width[c], cell);
                        else if (c == last)
                                printf("%s%s", sep, cell);
                        else
                                printf("%s%-*s", sep, (int) width[c], cell);
                        sep = "  ";
                }
                putchar('\n');
        }
}

/* One CSV field (RFC 4180): quoted when it holds a comma, a quote or a line
 * break, quotes doubled. */
static void csv_text(FILE *f, const char *s) {
        if (!strpbrk(s, ",\"\r\n")) {
                fputs(s, f);
                return;
        }
        fputc('"', f);
        for (; *s; s++) {
                if (*s == '"')
                        fputc('"', f);
                fputc(*s, f);
        }
        fputc('"', f);
}

static void csv_value(FILE *f, const json_t *v) {
        if (!v || json_is_null(v))
                return;
        if (json_is_string(v))
                csv_text(f, json_string_value(v));
        else if (json_is_integer(v))
                fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        else if (json_is_real(v))
                fprintf(f, "%.10g", json_real_value(v));
        else if (json_is_boolean(v))
                fputs(json_is_true(v) ? "true" : "false", f);
}

void rows_write_csv(FILE *f, json_t *rows, const row_column *cols, size_t n_cols) {
        assert(f && rows && cols);
        for (size_t c = 0; c < n_cols; c++) {
                if (c)
                        fputc(',', f);
                csv_text(f, cols[c].key);
        }
        fputs("\r\n", f);
        size_t i;
        json_t *row;
        json_array_foreach(rows, i, row) {
                for (size_t c = 0; c < n_cols; c++) {
                        if (c)
                                fputc(',', f);
                        csv_value(f, json_object_get(row, cols[c].key));
                }
                fputs("\r\n", f);
        }
}

/* Prints rows (consumed) in format f; tables end with footer (may be NULL). */
int rows_print(rows_format f, json_t *rows, const row_column *cols, size_t n_cols, const char *footer) {
        if (!rows) {
                fprintf(stderr, "modelprov: error: out of memory (or text that is not UTF-8) in the answer\n");
                return -ENOMEM;
        }
        if (f == ROWS_JSON)
                return cli_print_json(rows);
        if (f == ROWS_CSV)
                rows_write_csv(stdout, rows, cols, n_cols);
        else {
                if (json_array_size(rows) > 0)
                        print_table(rows, cols, n_cols);
                if (footer)
                        printf("%s\n", footer);
        }
        json_decref(rows);
        return fflush(stdout) == 0 ? 0 : -EIO;
}


/* o's keys in row_column order (o consumed): CSV and JSON list them alike. */
json_t *row_in_column_order(json_t *o, const row_column *cols, size_t n_cols) {
        json_t *ordered = o ? json_object() : NULL;
        for (size_t c = 0; ordered && c < n_cols; c++) {
                json_t *v = json_object_get(o, cols[c].key);
                if (!v || json_object_set(ordered, cols[c].key, v) < 0) {
                        json_decref(ordered);
                        ordered = NULL;
                }
        }
        json_decref(o);
        return ordered;
}
