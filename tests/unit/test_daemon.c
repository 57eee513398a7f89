/* test_daemon.c - the option table shared by the daemons (daemon/options.h):
 * INI file then command line, lists, seconds with fractions, errors. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "daemon/log.h"
#include "daemon/options.h"
#include "test.h"

typedef struct cfg {
        char *name;
        char **watch;
        bool flag;
        unsigned count;
        unsigned settle_ms;
        int level;
        char *secret;
        char *key;
} cfg;

static const mp_option table[] = {
        MP_OPTION("name", MP_OPTION_STRING, offsetof(cfg, name)),
        MP_OPTION("watch", MP_OPTION_LIST, offsetof(cfg, watch)),
        MP_OPTION("flag", MP_OPTION_FLAG, offsetof(cfg, flag)),
        MP_OPTION_RANGE("count", offsetof(cfg, count), 1, 10, "expected a count"),
        {.name = "settle", .type = MP_OPTION_SECONDS_MS, .offset = offsetof(cfg, settle_ms), .max = 60000},
        MP_OPTION("log-level", MP_OPTION_LOG_LEVEL, offsetof(cfg, level)),
        MP_OPTION_SECRET_FILE("secret-file", offsetof(cfg, secret), "enroll-secret"),
        MP_OPTION_SECRET_FILE("key-file", offsetof(cfg, key), "tls-key"),
        MP_OPTION_END,
};

static int load(const char *ini, int argc, char **argv, cfg *c, mp_error *err) {
        char *dir = test_tmpdir();
        char *path = test_write(dir, "t.conf", ini, strlen(ini));
        char *args[16] = {"prog", "--config", path};
        for (int i = 0; i < argc; i++)
                args[3 + i] = argv[i];
        mp_options_action action;
        *c = (cfg) {0};
        int r = mp_options_load(table, "agent", "/nonexistent/default.conf", argc + 3, args, c, &action, err);
        free(path);
        free(dir);
        return r;
}

static void test_file_then_command_line(void) {
        cfg c;
        mp_error err = {0};
        char *argv[] = {"--watch", "/c", "--settle", "0.25", "--count", "7"};
        CHECK_EQ(load("[agent]\nname = x\nwatch = /a\nwatch = /b\nflag = yes\nsettle = 2\nlog-level = debug\n", 6,
                      argv, &c, &err),
                 0);
        CHECK_STREQ(c.name, "x");
        /* The command line's list replaces the file's. */
        CHECK_EQ(mp_strv_length(c.watch), 1);
        CHECK_STREQ(c.watch[0], "/c");
        CHECK(c.flag);
        CHECK_EQ(c.settle_ms, 250);
        CHECK_EQ(c.count, 7);
        CHECK_EQ(c.level, LOG_LEVEL_DEBUG);
        mp_options_free(table, &c);

        CHECK_EQ(load("[agent]\nwatch = /a\nwatch = /b\n", 0, NULL, &c, &err), 0);
        CHECK_EQ(mp_strv_length(c.watch), 2);
        mp_options_free(table, &c);
}

static void test_errors(void) {
        cfg c;
        mp_error err = {0};
        CHECK_EQ(load("[agent]\nnmae = x\n", 0, NULL, &c, &err), -EINVAL);
        CHECK(strstr(err.reason, "unknown key \"nmae\""));
        mp_options_free(table, &c);
        CHECK_EQ(load("[collector]\nlisten = x\n", 0, NULL, &c, &err), -EINVAL);
        CHECK(strstr(err.reason, "unknown section"));
        mp_options_free(table, &c);

        static const char *const bad_settle[] = {"-1", "1.2345x", "abc", "61", ".5", ""};
        for (size_t i = 0; i < sizeof bad_settle / sizeof bad_settle[0]; i++) {
                char *argv[] = {"--settle", (char *) bad_settle[i]};
                CHECK_EQ(load("[agent]\n", 2, argv, &c, &err), -EINVAL);
                mp_options_free(table, &c);
        }
        char *argv[] = {"--count", "11"};
        CHECK_EQ(load("[agent]\n", 2, argv, &c, &err), -EINVAL);
        CHECK(strstr(err.reason, "expected a count"));
        mp_options_free(table, &c);
        char *argv2[] = {"stray"};
        CHECK_EQ(load("[agent]\n", 1, argv2, &c, &err), -EINVAL);
        mp_options_free(table, &c);

        /* An explicitly named config file must exist. */
        mp_options_action action;
        char *args[] = {"prog", "--config", "/nonexistent/x.conf"};
        c = (cfg) {0};
        CHECK_EQ(mp_options_load(table, "agent", "/nonexistent/d.conf", 3, args, &c, &action, &err), -ENOENT);
}

/* systemd's LoadCredential= hands secrets over in $CREDENTIALS_DIRECTORY:
 * a secret option nobody set takes the credential's file, one set in the
 * file or on the command line keeps its value, and a credential that was not
 * passed (or is not a regular file) leaves the option unset. */
static void test_credentials(void) {
        char *creds = test_tmpdir();
        free(test_write(creds, "enroll-secret", "s3cret-s3cret-s3cret\n", 21));
        char *sub = NULL;
        CHECK(asprintf(&sub, "%s/tls-key", creds) > 0);
        CHECK_EQ(mkdir(sub, 0700), 0);
        CHECK_EQ(setenv("CREDENTIALS_DIRECTORY", creds, 1), 0);

        cfg c;
        mp_error err = {0};
        CHECK_EQ(load("[agent]\n", 0, NULL, &c, &err), 0);
        char *want = NULL;
        CHECK(asprintf(&want, "%s/enroll-secret", creds) > 0);
        CHECK_STREQ(c.secret, want);
        CHECK(c.key == NULL);
        mp_options_free(table, &c);

        char *argv[] = {"--secret-file", "/etc/explicit"};
        CHECK_EQ(load("[agent]\nkey-file = /etc/key.pem\n", 2, argv, &c, &err), 0);
        CHECK_STREQ(c.secret, "/etc/explicit");
        CHECK_STREQ(c.key, "/etc/key.pem");
        mp_options_free(table, &c);

        /* A relative directory is not systemd's; ignore it. */
        CHECK_EQ(setenv("CREDENTIALS_DIRECTORY", "relative", 1), 0);
        CHECK_EQ(load("[agent]\n", 0, NULL, &c, &err), 0);
        CHECK(c.secret == NULL);
        mp_options_free(table, &c);

        CHECK_EQ(unsetenv("CREDENTIALS_DIRECTORY"), 0);
        free(want);
        free(sub);
        free(creds);
}

static void test_help_version(void) {
        cfg c = {0};
        mp_error err = {0};
        mp_options_action action;
        char *args[] = {"prog", "--help"};
        CHECK_EQ(mp_options_load(table, "agent", "/nonexistent/d.conf", 2, args, &c, &action, &err), 0);
        CHECK_EQ(action, MP_OPTIONS_HELP);
}

int main(void) {
        RUN(test_file_then_command_line);
        RUN(test_errors);
        RUN(test_help_version);
        RUN(test_credentials);
        return 0;
}
