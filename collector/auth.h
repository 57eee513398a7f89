/* auth.h - who may call what: the bearer credentials of each call.
 *
 * Three shared secrets come from files (config): the enroll secret (agents
 * joining), the query token (read-only Query service) and the admin token
 * (catalog push; the Query service accepts it too).  An enrolled host then
 * authenticates with its own host key, sent with its host id; the store
 * keeps only the key's SHA-256, so a stolen store file holds no usable key.
 * Every comparison is constant-time.  Failures are UNAUTHENTICATED with a
 * detail that names what was missing or wrong, never the expected value. */
#pragma once

#include <stdbool.h>

#include "collector/server.h"
#include "collector/store.h"

#define AUTH_HOST_ID_HEADER "modelprov-host-id"
/* 32 random bytes as lowercase hex. */
#define AUTH_HOST_KEY_SIZE 65

typedef struct auth_secrets {
        char *enroll_secret;
        char *query_token;
        char *admin_token;              /* NULL: catalog push disabled */
} auth_secrets;

/* Reads the secret files named by the config (mp_secret_read_file rules). */
int auth_secrets_load(auth_secrets *a, const char *enroll_file, const char *query_file, const char *admin_file,
                      mp_error *err);
void auth_secrets_done(auth_secrets *a);

/* The call carries "authorization: Bearer <expected>".  On failure fills
 * reply (UNAUTHENTICATED) and returns false.  what names the credential. */
bool auth_bearer_is(const rpc_request *req, const char *expected, const char *what, rpc_reply *reply);

/* Query service: the query or the admin token. */
bool auth_query(const rpc_request *req, const auth_secrets *a, rpc_reply *reply);

/* An enrolled host's call: modelprov-host-id plus its host key.  Fills
 * host_id on success. */
bool auth_host(const rpc_request *req, mp_store *store, char host_id[MP_STORE_HOST_ID_SIZE], rpc_reply *reply);

/* A fresh host key and the hash the store keeps of it. */
int auth_new_host_key(char key[AUTH_HOST_KEY_SIZE], uint8_t hash[MP_STORE_DIGEST_SIZE]);
