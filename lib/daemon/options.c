/* options.c - defaults, INI file and command line from one table (see
 * options.h). */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <ini.h>

#include "daemon/log.h"
#include "daemon/options.h"
#include "util/macro.h"

/* getopt values: table index + OPT_BASE; the three built-ins below it. */
enum {
        OPT_CONFIG = 0x100,
        OPT_HELP,
        OPT_VERSION,
        OPT_BASE = 0x200,
};

void mp_strv_free(char **l) {
        if (!l)
                return;
        for (char **p = l; *p; p++)
                free(*p);
        free(l);
}

size_t mp_strv_length(char *const *l) {
        size_t n = 0;
        while (l && l[n])
                n++;
        return n;
}

static int strv_append(char ***l, const char *value) {
        size_t n = mp_strv_length(*l);
        char **nl = realloc(*l, (n + 2) * sizeof(char *));
        if (!nl)
                return -ENOMEM;
        *l = nl;
        nl[n] = strdup(value);
        if (!nl[n])
                return -ENOMEM;
        nl[n + 1] = NULL;
        return 0;
}

int mp_parse_bool(const char *value, bool *ret) {
        static const char *const yes[] = {"1", "yes", "true", "on"};
        static const char *const no[] = {"0", "no", "false", "off"};
        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(value, yes[i]) == 0)
                        return *ret = true, 0;
                if (strcasecmp(value, no[i]) == 0)
                        return *ret = false, 0;
        }
        return -EINVAL;
}

static int parse_unsigned(const char *value, unsigned min, unsigned max, unsigned *ret) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(value, &end, 10);
        if (errno != 0 || end == value || *end != '\0' || value[0] == '-' || v < min || v > max)
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

/* "1.25" seconds → 1250 ms; at most three decimals. */
static int parse_seconds_ms(const char *value, unsigned min, unsigned max, unsigned *ret) {
        char *end;
        errno = 0;
        if (value[0] < '0' || value[0] > '9')
                return -EINVAL;
        unsigned long whole = strtoul(value, &end, 10);
        if (errno != 0 || whole > UINT32_MAX / 1000)
                return -EINVAL;
        unsigned long ms = whole * 1000;
        if (*end == '.') {
                unsigned long scale = 100;
                for (end++; *end >= '0' && *end <= '9' && scale > 0; end++, scale /= 10)
                        ms += (unsigned long) (*end - '0') * scale;
        }
        if (*end != '\0' || ms < min || ms > max)
                return -EINVAL;
        *ret = (unsigned) ms;
        return 0;
}

/* Parsing state shared by the file and the command line. */
typedef struct loader {
        const mp_option *table;
        void *config;
        const char *section;
        const char *path;               /* config file being read, NULL on the command line */
        bool *list_from_cli;            /* per table entry: the command line replaced the file's list */
        mp_error *err;
        int r;
} loader;

/* Applies one setting; value is NULL for a flag on the command line. */
static int apply(loader *l, size_t idx, const char *name, const char *value) {
        const mp_option *o = &l->table[idx];
        void *field = (uint8_t *) l->config + o->offset;
        int r;

        switch (o->type) {
        case MP_OPTION_STRING: {
                char *s = strdup(value);
                if (!s)
                        return mp_error_set(l->err, -ENOMEM, l->path, -1, "out of memory");
                free(*(char **) field);
                *(char **) field = s;
                return 0;
        }
        case MP_OPTION_LIST:
                if (!l->path && !l->list_from_cli[idx]) {
                        /* The first occurrence on the command line drops what the file said. */
                        mp_strv_free(*(char ***) field);
                        *(char ***) field = NULL;
                        l->list_from_cli[idx] = true;
                }
                if (strv_append((char ***) field, value) < 0)
                        return mp_error_set(l->err, -ENOMEM, l->path, -1, "out of memory");
                return 0;
        case MP_OPTION_FLAG:
                if (!value)
                        return *(bool *) field = true, 0;
                if (mp_parse_bool(value, (bool *) field) < 0)
                        return mp_error_set(l->err, -EINVAL, l->path, -1, "%s: expected yes or no, got \"%s\"", name,
                                            value);
                return 0;
        case MP_OPTION_UNSIGNED:
                if (parse_unsigned(value, o->min, o->max, (unsigned *) field) < 0)
                        return mp_error_set(l->err, -EINVAL, l->path, -1, "%s: %s (%u..%u), got \"%s\"", name,
                                            o->expect ? o->expect : "expected a number", o->min, o->max, value);
                return 0;
        case MP_OPTION_SECONDS_MS:
                if (parse_seconds_ms(value, o->min, o->max, (unsigned *) field) < 0)
                        return mp_error_set(l->err, -EINVAL, l->path, -1, "%s: expected seconds (%g..%g), got \"%s\"",
                                            name, o->min / 1000.0, o->max / 1000.0, value);
                return 0;
        case MP_OPTION_LOG_LEVEL:
                r = log_level_from_string(value);
                if (r < 0)
                        return mp_error_set(l->err, -EINVAL, l->path, -1,
                                            "%s: expected error, warning, info or debug, got \"%s\"", name, value);
                *(int *) field = r;
                return 0;
        }
        assert(false);
        return -EINVAL;
}

static int on_ini_line(void *userdata, const char *section, const char *name, const char *value) {
        loader *l = userdata;

        if (l->r < 0)
                return 0;
        if (strcmp(section, l->section) != 0) {
                l->r = mp_error_set(l->err, -EINVAL, l->path, -1, "unknown section [%s] (expected [%s])", section,
                                    l->section);
                return 0;
        }
        for (size_t i = 0; l->table[i].name; i++)
                if (strcmp(l->table[i].name, name) == 0) {
                        l->r = apply(l, i, name, value);
                        return l->r < 0 ? 0 : 1;
                }
        l->r = mp_error_set(l->err, -EINVAL, l->path, -1, "unknown key \"%s\"", name);
        return 0;
}

static int load_file(loader *l, const char *path, bool must_exist) {
        _cleanup_(fclosep) FILE *f = fopen(path, "re");
        if (!f) {
                if (errno == ENOENT && !must_exist)
                        return 0;
                return mp_error_set(l->err, -errno, path, -1, "cannot open config file: %s", strerror(errno));
        }

        l->path = path;
        int line = ini_parse_file(f, on_ini_line, l);
        l->path = NULL;
        if (l->r < 0)
                return l->r;
        if (line != 0)
                return mp_error_set(l->err, -EINVAL, path, -1, "syntax error on line %d", line);
        return 0;
}

/* The getopt table: the built-ins, then one entry per table row. */
static struct option *getopt_table(const mp_option *table) {
        size_t n = 0;
        while (table[n].name)
                n++;
        struct option *opts = calloc(n + 4, sizeof(struct option));
        if (!opts)
                return NULL;
        opts[0] = (struct option) {"config", required_argument, NULL, OPT_CONFIG};
        opts[1] = (struct option) {"help", no_argument, NULL, OPT_HELP};
        opts[2] = (struct option) {"version", no_argument, NULL, OPT_VERSION};
        for (size_t i = 0; i < n; i++)
                opts[3 + i] = (struct option) {table[i].name,
                                               table[i].type == MP_OPTION_FLAG ? no_argument : required_argument,
                                               NULL, OPT_BASE + (int) i};
        return opts;
}

/* Secret files systemd passed as credentials (LoadCredential=) fill the
 * secret options nobody set.  systemd puts each credential in a private,
 * read-only directory that only the service's user can read; an option set
 * explicitly still wins, so a test or an operator can point elsewhere. */
static int apply_credentials(const mp_option *table, void *config, mp_error *err) {
        const char *dir = getenv("CREDENTIALS_DIRECTORY");
        if (!dir || dir[0] != '/')
                return 0;

        for (const mp_option *o = table; o->name; o++) {
                char **field = (char **) ((uint8_t *) config + o->offset);
                if (!o->credential || *field)
                        continue;
                assert(o->type == MP_OPTION_STRING);

                _cleanup_(freep) char *path = NULL;
                if (asprintf(&path, "%s/%s", dir, o->credential) < 0)
                        return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");
                struct stat st;
                if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
                        continue;
                *field = TAKE_PTR(path);
        }
        return 0;
}

int mp_options_load(const mp_option *table, const char *section, const char *default_config, int argc, char **argv,
                    void *config, mp_options_action *action, mp_error *err) {
        assert(table);
        assert(config);
        assert(action);

        *action = MP_OPTIONS_RUN;
        _cleanup_(freep) struct option *opts = getopt_table(table);
        size_t n = 0;
        while (table[n].name)
                n++;
        _cleanup_(freep) bool *list_from_cli = calloc(n + 1, sizeof(bool));
        if (!opts || !list_from_cli)
                return mp_error_set(err, -ENOMEM, NULL, -1, "out of memory");

        /* First pass: only --config, --help and --version, so the file is
         * read before the other options override it. */
        const char *config_path = NULL;
        int opt;
        opterr = 0;
        optind = 1;
        while ((opt = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
                if (opt == OPT_CONFIG)
                        config_path = optarg;
                else if (opt == OPT_HELP)
                        return *action = MP_OPTIONS_HELP, 0;
                else if (opt == OPT_VERSION)
                        return *action = MP_OPTIONS_VERSION, 0;
                else if (opt == '?')
                        return mp_error_set(err, -EINVAL, NULL, -1, "unknown or incomplete option \"%s\"",
                                            argv[optind - 1]);
        }
        if (optind < argc)
                return mp_error_set(err, -EINVAL, NULL, -1, "unexpected argument \"%s\"", argv[optind]);

        loader l = {.table = table, .config = config, .section = section, .list_from_cli = list_from_cli,
                    .err = err};
        int r = load_file(&l, config_path ? config_path : default_config, config_path != NULL);
        if (r < 0)
                return r;

        optind = 1;
        while ((opt = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
                if (opt < OPT_BASE)
                        continue;
                size_t idx = (size_t) (opt - OPT_BASE);
                char name[80];
                snprintf(name, sizeof name, "--%s", table[idx].name);
                r = apply(&l, idx, name, optarg);
                if (r < 0)
                        return r;
        }
        return apply_credentials(table, config, err);
}

void mp_options_free(const mp_option *table, void *config) {
        for (const mp_option *o = table; o->name; o++) {
                void *field = (uint8_t *) config + o->offset;
                if (o->type == MP_OPTION_STRING) {
                        free(*(char **) field);
                        *(char **) field = NULL;
                } else if (o->type == MP_OPTION_LIST) {
                        mp_strv_free(*(char ***) field);
                        *(char ***) field = NULL;
                }
        }
}
