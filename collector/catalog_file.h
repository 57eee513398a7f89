/* catalog_file.h - the pushed reference catalog as an open catalog.
 *
 * The store keeps the catalog as the bytes of a SQLite catalog file (what
 * `modelprov catalog` writes); SQLite can only open files, so to read
 * entries the collector writes the bytes into a private temporary directory
 * (mode 0700, under $TMPDIR or /tmp) and opens that.  The directory is
 * removed when the catalog is closed. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "catalog/catalog.h"
#include "util/error.h"

typedef struct catalog_file catalog_file;

/* Writes bytes to a private file and opens it read-only as a catalog;
 * -EBADMSG when it is not one. */
int catalog_file_open(const uint8_t *bytes, size_t len, catalog_file **ret, mp_error *err);
mp_catalog *catalog_file_catalog(catalog_file *f);
void catalog_file_close(catalog_file *f);
static inline void catalog_file_closep(catalog_file **f) { catalog_file_close(*f); }

/* Opens bytes as above and counts its entries. */
int catalog_file_count_entries(const uint8_t *bytes, size_t len, size_t *ret, mp_error *err);
