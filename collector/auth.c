/* auth.c - bearer credentials of collector calls (see auth.h). */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <grpc/slice.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "collector/auth.h"
#include "util/secret.h"
#include "util/strutil.h"

int auth_secrets_load(auth_secrets *a, const char *enroll_file, const char *query_file, const char *admin_file,
                      mp_error *err) {
        assert(a);
        assert(enroll_file);
        assert(query_file);

        *a = (auth_secrets) {};
        int r = mp_secret_read_file(enroll_file, "enroll secret", &a->enroll_secret, err);
        if (r >= 0)
                r = mp_secret_read_file(query_file, "query token", &a->query_token, err);
        if (r >= 0 && admin_file)
                r = mp_secret_read_file(admin_file, "admin token", &a->admin_token, err);
        if (r >= 0 && a->admin_token &&
            (mp_secret_equal(a->admin_token, a->query_token) || mp_secret_equal(a->admin_token, a->enroll_secret)))
                r = mp_error_set(err, -EINVAL, admin_file, -1,
                                 "the admin token must differ from the query token and the enroll secret");
        if (r >= 0 && mp_secret_equal(a->query_token, a->enroll_secret))
                r = mp_error_set(err, -EINVAL, query_file, -1, "the query token must differ from the enroll secret");
        if (r < 0)
                auth_secrets_done(a);
        return r;
}

static void free_secret(char **s) {
        if (*s)
                OPENSSL_cleanse(*s, strlen(*s));
        free(*s);
        *s = NULL;
}

void auth_secrets_done(auth_secrets *a) {
        free_secret(&a->enroll_secret);
        free_secret(&a->query_token);
        free_secret(&a->admin_token);
}

/* The value of metadata key (copied, NUL-terminated); false when absent,
 * repeated, too long or holding a NUL. */
static bool metadata_value(const grpc_metadata_array *md, const char *key, char *out, size_t size) {
        const grpc_slice *found = NULL;
        for (size_t i = 0; i < md->count; i++)
                if (grpc_slice_str_cmp(md->metadata[i].key, key) == 0) {
                        if (found)
                                return false;
                        found = &md->metadata[i].value;
                }
        if (!found)
                return false;

        size_t n = GRPC_SLICE_LENGTH(*found);
        if (n >= size || memchr(GRPC_SLICE_START_PTR(*found), '\0', n))
                return false;
        memcpy(out, GRPC_SLICE_START_PTR(*found), n);
        out[n] = '\0';
        return true;
}

/* The token of "authorization: Bearer TOKEN". */
static bool bearer_token(const rpc_request *req, char *out, size_t size) {
        char value[MP_SECRET_MAX + 16];
        if (!metadata_value(req->metadata, "authorization", value, sizeof value))
                return false;
        if (strncasecmp(value, "Bearer ", 7) != 0)
                return false;
        if (strlen(value + 7) >= size)
                return false;
        strcpy(out, value + 7);
        return true;
}

bool auth_bearer_is(const rpc_request *req, const char *expected, const char *what, rpc_reply *reply) {
        char token[MP_SECRET_MAX + 1];
        if (!bearer_token(req, token, sizeof token)) {
                rpc_reply_error(reply, GRPC_STATUS_UNAUTHENTICATED, "missing \"authorization: Bearer\" %s", what);
                return false;
        }
        bool ok = expected && mp_secret_equal(token, expected);
        OPENSSL_cleanse(token, sizeof token);
        if (!ok)
                rpc_reply_error(reply, GRPC_STATUS_UNAUTHENTICATED, "wrong %s", what);
        return ok;
}

bool auth_query(const rpc_request *req, const auth_secrets *a, rpc_reply *reply) {
        char token[MP_SECRET_MAX + 1];
        if (!bearer_token(req, token, sizeof token)) {
                rpc_reply_error(reply, GRPC_STATUS_UNAUTHENTICATED, "missing \"authorization: Bearer\" query token");
                return false;
        }
        /* Both comparisons always run: timing tells nothing about which. */
        bool query = mp_secret_equal(token, a->query_token);
        bool admin = a->admin_token && mp_secret_equal(token, a->admin_token);
        OPENSSL_cleanse(token, sizeof token);
        if (!(query | admin))
                rpc_reply_error(reply, GRPC_STATUS_UNAUTHENTICATED, "wrong query token");
        return query | admin;
}

static void key_hash(const char *key, uint8_t hash[MP_STORE_DIGEST_SIZE]) {
        SHA256((const unsigned char *) key, strlen(key), hash);
}

bool auth_host(const rpc_request *req, mp_store *store, char host_id[MP_STORE_HOST_ID_SIZE], rpc_reply *reply) {
        if (!metadata_value(req->metadata, AUTH_HOST_ID_HEADER, host_id, MP_STORE_HOST_ID_SIZE)) {
                rpc_reply_error(reply, GRPC_STATUS_UNAUTHENTICATED, "missing or malformed %s", AUTH_HOST_ID_HEADER);
                return false;
        }

        char key[MP_SECRET_MAX + 1];
        if (!bearer_token(req, key, sizeof key)) {
                rpc_reply_error(reply, GRPC_STATUS_UNAUTHENTICATED, "missing \"authorization: Bearer\" host key");
                return false;
        }
        uint8_t presented[MP_STORE_DIGEST_SIZE], stored[MP_STORE_DIGEST_SIZE];
        key_hash(key, presented);
        OPENSSL_cleanse(key, sizeof key);

        mp_error e = {0};
        int r = mp_store_host_key_hash(store, host_id, stored, &e);
        if (r == -ENOENT || r == -EINVAL) {
                rpc_reply_error(reply, GRPC_STATUS_UNAUTHENTICATED, "unknown host id (enroll again)");
                return false;
        }
        if (r < 0) {
                rpc_reply_error(reply, GRPC_STATUS_UNAVAILABLE, "store: %s", e.reason);
                return false;
        }
        if (CRYPTO_memcmp(presented, stored, sizeof stored) != 0) {
                rpc_reply_error(reply, GRPC_STATUS_UNAUTHENTICATED, "wrong host key for host %s", host_id);
                return false;
        }
        return true;
}

int auth_new_host_key(char key[AUTH_HOST_KEY_SIZE], uint8_t hash[MP_STORE_DIGEST_SIZE]) {
        uint8_t raw[32];
        ssize_t k = getrandom(raw, sizeof raw, 0);
        if (k < 0)
                return -errno;
        if (k != (ssize_t) sizeof raw)
                return -EIO;    /* 32 bytes never come short from a ready pool */

        mp_hex(raw, sizeof raw, key);
        OPENSSL_cleanse(raw, sizeof raw);
        key_hash(key, hash);
        return 0;
}
