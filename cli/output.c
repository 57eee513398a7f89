/* output.c - helpers shared by the subcommands (see output.h). */
#include "output.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fingerprint/compute.h"
#include "progress.h"
#include "util/macro.h"
#include "util/strutil.h"

void cli_print_error(const mp_error *err) {
        char buf[MP_ERROR_FILE_MAX + MP_ERROR_REASON_MAX + 64];
        mp_error_format(err, buf, sizeof(buf));
        fprintf(stderr, "modelprov: error: %s\n", buf);
}

int cli_model_option(int c, const char *arg, cli_model_options *o) {
        char *end;
        unsigned long v;

        switch (c) {
        case 'j':
                errno = 0;
                v = strtoul(arg, &end, 10);
                if (errno || end == arg || *end || v == 0 || v > 1024) {
                        fprintf(stderr, "modelprov: error: --jobs needs a number from 1 to 1024\n");
                        return -EINVAL;
                }
                o->jobs = (unsigned) v;
                return 1;
        case 'q':
                o->quiet = true;
                return 1;
        case CLI_OPT_OLLAMA_STORE:
                o->ollama_store = arg;
                return 1;
        default:
                return 0;
        }
}

int cli_model_option_or_usage(int c, const char *arg, cli_model_options *o, void (*usage)(FILE *f)) {
        int r = cli_model_option(c, arg, o);
        if (r < 0)
                return r;       /* cli_model_option() said why */
        if (r == 0) {
                usage(stderr);
                return -EINVAL;
        }
        return 0;
}

int cli_want_operands(int argc, int n, void (*usage)(FILE *f)) {
        if (optind + n != argc) {
                usage(stderr);
                return -EINVAL;
        }
        return 0;
}

int cli_want_one_operand(int argc, void (*usage)(FILE *f)) {
        return cli_want_operands(argc, 1, usage);
}

int cli_parse_help_only(int argc, char **argv, void (*usage)(FILE *f)) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                {}
        };
        int c;

        optind = 0;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                if (c == 'h') {
                        usage(stdout);
                        return 1;
                }
                usage(stderr);
                return -EINVAL;
        }
        return 0;
}

int cli_fingerprint_model(const char *path, const cli_model_options *o, mp_model **ret_model,
                          mp_fingerprint **ret_fp) {
        mp_error err;
        mp_error_clear(&err);

        mp_open_options oo = { .ollama_store = o->ollama_store };
        _cleanup_(mp_model_freep) mp_model *m = NULL;
        int r = mp_model_open(path, &oo, &m, &err);
        if (r < 0) {
                cli_print_error(&err);
                return r;
        }

        cli_progress progress;
        cli_progress_init(&progress, !o->quiet);
        mp_pass_options po = { .jobs = o->jobs, .progress = cli_progress_update, .progress_userdata = &progress };
        r = mp_fingerprint_compute(m, &po, ret_fp, &err);
        cli_progress_finish(&progress);
        if (r < 0) {
                cli_print_error(&err);
                return r;
        }
        if (ret_model)
                *ret_model = TAKE_PTR(m);
        return 0;
}

bool cli_is_record_file(const char *path) {
        uint8_t head[3];
        _cleanup_(closep) int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return false;
        /* safetensors could start 08 01 too (a 264-byte header), but its
         * third byte is 0: header lengths stay far below 2^16 there. */
        return pread(fd, head, sizeof(head), 0) == (ssize_t) sizeof(head) && head[0] == 0x08 && head[1] == 0x01 &&
               head[2] != 0x00;
}

int cli_load_fingerprint(const char *path, const cli_model_options *o, mp_model **ret_model,
                         mp_fingerprint **ret_fp) {
        if (!cli_is_record_file(path))
                return cli_fingerprint_model(path, o, ret_model, ret_fp);
        mp_error err;
        mp_error_clear(&err);
        int r = mp_fingerprint_read(path, ret_fp, &err);
        if (r < 0)
                cli_print_error(&err);
        if (ret_model)
                *ret_model = NULL;
        return r;
}

int cli_print_json(json_t *j) {
        if (!j) {
                fprintf(stderr, "modelprov: error: out of memory rendering JSON\n");
                return -ENOMEM;
        }
        int r = json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
        json_decref(j);
        fputc('\n', stdout);
        return r < 0 ? -EIO : 0;
}

const char *cli_format_bytes(uint64_t n, char *buf, size_t size) {
        static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
        double v = (double) n;
        size_t u = 0;
        while (v >= 1024 && u + 1 < ELEMENTSOF(units)) {
                v /= 1024;
                u++;
        }
        if (u == 0)
                snprintf(buf, size, "%llu B", (unsigned long long) n);
        else
                snprintf(buf, size, "%.1f %s", v, units[u]);
        return buf;
}

int cli_dispatch(const cli_subcommand *subs, size_t n, const char *what, void (*usage)(FILE *f), int argc,
                 char **argv) {
        if (argc < 2) {
                usage(stderr);
                return EXIT_ERROR;
        }
        if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
                usage(stdout);
                return EXIT_OK;
        }
        for (size_t i = 0; i < n; i++)
                if (strcmp(argv[1], subs[i].name) == 0)
                        return subs[i].run(argc - 1, argv + 1);

        char buf[64];
        fprintf(stderr, "modelprov: error: unknown %s '%s'\n", what, mp_printable(buf, sizeof(buf), argv[1]));
        usage(stderr);
        return EXIT_ERROR;
}

int cli_parse_threshold(const char *arg, double *ret) {
        char *end;
        errno = 0;
        double v = strtod(arg, &end);
        if (errno || end == arg || *end || !(v >= 0 && v <= 1)) {
                fprintf(stderr, "modelprov: error: --threshold needs a number from 0 to 1\n");
                return -EINVAL;
        }
        *ret = v;
        return 0;
}
