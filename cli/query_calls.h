/* query_calls.h - the Query service calls (proto/modelprov.proto) that
 * `modelprov query` and `modelprov report` share: one function per RPC, the
 * cleanup helpers of their answers, and what turns a command-line model
 * argument into a BlastRadius target.  Errors are printed the way
 * cli_collector_call() prints them; every function returns a negative errno
 * on failure. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "collector_conn.h"
#include "fingerprint/record.h"
#include "modelprov.pb-c.h"
#include "output.h"

#define CLI_DIGEST_BYTES 32
#define CLI_HISTORY_LIMIT_MAX 100000     /* the collector's */

int cli_fetch_hosts(cli_collector *cc, Modelprov__V1__HostsResponse **ret);
/* host_id NULL or "": every host. */
int cli_fetch_inventory(cli_collector *cc, const char *host_id, bool include_removed,
                        Modelprov__V1__InventoryResponse **ret);
/* host_id, path NULL: every one; limit 0: the collector's default. */
int cli_fetch_history(cli_collector *cc, const char *host_id, const char *path, uint64_t limit,
                      Modelprov__V1__HistoryResponse **ret);
int cli_fetch_model(cli_collector *cc, const uint8_t digest[CLI_DIGEST_BYTES], Modelprov__V1__ModelResponse **ret);
int cli_fetch_blast_radius(cli_collector *cc, const Modelprov__V1__BlastRadiusRequest *req,
                           Modelprov__V1__BlastRadiusResponse **ret);

void cli_hosts_freep(Modelprov__V1__HostsResponse **p);
void cli_inventory_freep(Modelprov__V1__InventoryResponse **p);
void cli_history_freep(Modelprov__V1__HistoryResponse **p);
void cli_model_freep(Modelprov__V1__ModelResponse **p);
void cli_blast_radius_freep(Modelprov__V1__BlastRadiusResponse **p);

/* Parses 64 hex digits (either case) into 32 bytes; false if s is not that. */
bool cli_parse_digest(const char *s, uint8_t out[CLI_DIGEST_BYTES]);

/* Fills req's one target from x, in the documented order: a 64-hex digest
 * (into digest, which must outlive req), a local file (fingerprint record or
 * model, fingerprinted with mo: *ret_fp receives it), HOST:PATH, else a
 * catalog entry name (req points into x). */
int cli_blast_target(const char *x, const cli_model_options *mo, Modelprov__V1__BlastRadiusRequest *req,
                     uint8_t digest[CLI_DIGEST_BYTES], mp_fingerprint **ret_fp);

/* Inventory order for people: by hostname, path, then first seen (the
 * collector orders by host id). */
void cli_sort_items(Modelprov__V1__InventoryItem **items, size_t n);
