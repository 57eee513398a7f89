/* rows.h - command output as rows: wire values turned into JSON, and one
 * array of flat row objects printed as an aligned table, CSV or JSON.
 *
 * A command builds each row as a JSON object and describes the columns
 * once; the table and CSV are views of the same objects, so the three
 * formats always agree (CSV has exactly the JSON keys, in column order).
 * Times are ISO-8601 UTC strings plus "_ms" integer twins; digests are full
 * hex in JSON and CSV and cut to 12 digits in tables. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

typedef enum rows_format { ROWS_TABLE, ROWS_JSON, ROWS_CSV } rows_format;
typedef enum row_col_kind { ROW_TEXT, ROW_DIGEST, ROW_BOOL, ROW_INT, ROW_SCORE } row_col_kind;

/* One key of the row objects; title NULL: in JSON and CSV, not in tables. */
typedef struct row_column {
        const char *key;
        const char *title;
        row_col_kind kind;
} row_column;

/* JSON values of wire fields; NULL only when out of memory.  Text that is
 * not UTF-8 gets '?' for the bad bytes; "" and NULL become null in the
 * _or_null form; a digest is lowercase hex (null when empty or over 32
 * bytes); a score that is not finite is null. */
json_t *row_str(const char *s);
json_t *row_str_or_null(const char *s);
json_t *row_digest(ProtobufCBinaryData d);
json_t *row_score(double v);

/* Sets key (ISO-8601 UTC) and key_ms (integer), both null for "never" (<=
 * 0); -ENOMEM when o is NULL or on allocation failure. */
int row_set_time(json_t *o, const char *key, int64_t ms);

/* Adds every (key, value) pair to o.  Always consumes the values, also
 * when o is NULL (a failed json_object()), so callers chain calls and check
 * once; a NULL value (failed allocation) fails with -ENOMEM. */
int row_set_all(json_t *o, const char *const *keys, json_t **values, size_t n);

/* o's keys in column order (o consumed; NULL on failure). */
json_t *row_in_column_order(json_t *o, const row_column *cols, size_t n_cols);

/* Writes rows (not consumed) to f as CSV (RFC 4180, CRLF line ends), a
 * header of the column keys first. */
void rows_write_csv(FILE *f, json_t *rows, const row_column *cols, size_t n_cols);

/* Prints rows (consumed; NULL reports out of memory) in format f; tables
 * end with footer (may be NULL).  0, or a negative errno. */
int rows_print(rows_format f, json_t *rows, const row_column *cols, size_t n_cols, const char *footer);
