/* cmd_catalog.h - what `scan` shares with `catalog`: rendering labels. */
#pragma once

#include <jansson.h>

#include "catalog/catalog.h"

/* Labels as a JSON object {key: value}; NULL on ENOMEM. */
json_t *cli_labels_json(const mp_label *labels, size_t n);

/* A labels object as "k=v,k=v" for a table cell, printable, cut with "..."
 * to fit size (> 4). */
const char *cli_format_labels(const json_t *labels, char *buf, size_t size);
