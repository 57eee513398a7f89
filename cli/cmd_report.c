/* cmd_report.c - `modelprov report inventory|blast-radius`: a fleet
 * inventory or an incident's blast radius as one self-contained HTML page
 * with a lineage graph, as Markdown for tickets, or as CSV.  The facts come
 * from the collector's Query service (report_model.c); the graph from
 * Graphviz (report_graph.c); the formats from report_html.c and
 * report_text.c.  docs/reports.md describes the reports. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "collector_conn.h"
#include "commands.h"
#include "output.h"
#include "report_model.h"
#include "report_write.h"
#include "util/macro.h"
#include "util/strutil.h"

static void usage(FILE *f) {
        fprintf(f,
                "usage: modelprov report inventory [-o FILE] [--format html|md|csv] [OPTIONS]\n"
                "       modelprov report blast-radius X [--threshold T] [-o FILE] [--format html|md|csv] [OPTIONS]\n"
                "Write a report on the fleet the collector knows.\n"
                "  inventory      findings, totals, the lineage graph (base models -> models -> hosts),\n"
                "                 models grouped by base model, hosts with last contact and stale flags\n"
                "  blast-radius X the same graph with the model X and everything in its blast radius\n"
                "                 highlighted, and the affected hosts and paths beside it; X as for\n"
                "                 `modelprov query blast-radius --model X` (digest, record or model\n"
                "                 file, HOST:PATH, catalog entry name)\n"
                "      --threshold T  lowest lineage identity score in [0, 1] (default: the collector's)\n"
                "  -o, --output FILE  write here (default: standard output)\n"
                "      --format F     html (one self-contained page: no script, nothing fetched),\n"
                "                     md (Markdown) or csv (one row per path); default: from the\n"
                "                     name of FILE (.md, .csv), else html\n"
                "  -j N, -q, --ollama-store DIR   when X is a model to fingerprint first\n");
        cli_collector_usage(f, "query token");
        fprintf(f, "Exit codes: 0 report written (also when nothing is affected); 2 error.\n");
}

typedef struct report_options {
        cli_collector_options conn;
        const char *output;
        const char *format_name;
        report_blast_options blast;
} report_options;

enum { OPT_FORMAT = 256, OPT_THRESHOLD };

/* The format --format names, else the one -o's file name suggests. */
static int pick_format(const report_options *o, report_format *ret) {
        static const struct { const char *name; report_format format; } names[] = {
                { "html", REPORT_HTML }, { "md", REPORT_MARKDOWN }, { "markdown", REPORT_MARKDOWN },
                { "csv", REPORT_CSV },
        };
        if (o->format_name) {
                for (size_t i = 0; i < ELEMENTSOF(names); i++)
                        if (strcmp(o->format_name, names[i].name) == 0) {
                                *ret = names[i].format;
                                return 0;
                        }
                char buf[64];
                fprintf(stderr, "modelprov: error: --format is html, md or csv, not '%s'\n",
                        mp_printable(buf, sizeof(buf), o->format_name));
                return -EINVAL;
        }
        *ret = REPORT_HTML;
        if (o->output && mp_has_suffix(o->output, ".md"))
                *ret = REPORT_MARKDOWN;
        else if (o->output && mp_has_suffix(o->output, ".csv"))
                *ret = REPORT_CSV;
        return 0;
}

/* Returns 1 after --help, 0 to go on, -EINVAL after printing why. */
static int parse_report(int argc, char **argv, bool blast, report_options *o) {
        static const struct option options[] = {
                { "output",    required_argument, NULL, 'o' },
                { "format",    required_argument, NULL, OPT_FORMAT },
                { "threshold", required_argument, NULL, OPT_THRESHOLD },
                { "help",      no_argument,       NULL, 'h' },
                CLI_MODEL_LONG_OPTIONS,
                CLI_COLLECTOR_LONG_OPTIONS,
                {}
        };
        int c, r;

        optind = 0;
        while ((c = getopt_long(argc, argv, "ho:" CLI_MODEL_SHORT_OPTIONS, options, NULL)) >= 0)
                switch (c) {
                case 'h': usage(stdout); return 1;
                case 'o': o->output = optarg; break;
                case OPT_FORMAT: o->format_name = optarg; break;
                case OPT_THRESHOLD:
                        if (!blast) {
                                fprintf(stderr, "modelprov: error: --threshold is for blast-radius\n");
                                return -EINVAL;
                        }
                        if (cli_parse_threshold(optarg, &o->blast.threshold) < 0)
                                return -EINVAL;
                        break;
                default:
                        r = cli_collector_option(c, optarg, &o->conn);
                        if (r == 0)
                                r = cli_model_option_or_usage(c, optarg, &o->blast.mo, usage);
                        if (r < 0)
                                return -EINVAL;
                }
        if (cli_want_operands(argc, blast ? 1 : 0, usage) < 0)
                return -EINVAL;
        if (blast) {
                o->blast.target = argv[optind];
                if (!o->blast.target[0]) {
                        fprintf(stderr, "modelprov: error: blast-radius needs a model to look for\n");
                        return -EINVAL;
                }
        }
        return 0;
}

/* Writes the whole report to memory first: a failure leaves no half a
 * file, and an existing report is replaced only by a complete one. */
static int write_report(const report *r, report_format format, const char *output) {
        _cleanup_(freep) char *buf = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&buf, &len);
        if (!mem) {
                fprintf(stderr, "modelprov: error: out of memory\n");
                return -ENOMEM;
        }
        int k = format == REPORT_HTML ? report_write_html(r, mem)
              : format == REPORT_MARKDOWN ? report_write_markdown(r, mem)
              : report_write_csv(r, mem);
        if (fclose(mem) != 0 && k >= 0) {
                fprintf(stderr, "modelprov: error: out of memory\n");
                k = -ENOMEM;
        }
        if (k < 0)
                return k;

        if (!output || strcmp(output, "-") == 0)
                return fwrite(buf, 1, len, stdout) == len && fflush(stdout) == 0 ? 0 : -EIO;

        _cleanup_(freep) char *tmp = NULL;
        if (asprintf(&tmp, "%s.tmp%ld", output, (long) getpid()) < 0) {
                tmp = NULL;
                return -ENOMEM;
        }
        FILE *f = fopen(tmp, "we");
        bool ok = f && fwrite(buf, 1, len, f) == len;
        if (f && fclose(f) != 0)
                ok = false;
        if (ok && rename(tmp, output) == 0)
                return 0;
        char pb[256];
        fprintf(stderr, "modelprov: error: cannot write %s: %s\n", mp_printable(pb, sizeof(pb), output),
                strerror(errno));
        if (f)
                unlink(tmp);
        return -EIO;
}

static int run_report(int argc, char **argv, bool blast) {
        report_options o = {0};
        int k = parse_report(argc, argv, blast, &o);
        if (k != 0)
                return k > 0 ? EXIT_OK : EXIT_ERROR;
        report_format format;
        if (pick_format(&o, &format) < 0)
                return EXIT_ERROR;

        _cleanup_(cli_collector_done) cli_collector cc = {0};
        if (cli_collector_connect(&o.conn, "query token", &cc) < 0)
                return EXIT_ERROR;
        _cleanup_(report_done) report r = {0};
        const char *address = o.conn.address ? o.conn.address : getenv("MODELPROV_COLLECTOR");
        if (report_gather(&cc, address ? address : "", blast ? &o.blast : NULL, &r) < 0)
                return EXIT_ERROR;
        return write_report(&r, format, o.output) < 0 ? EXIT_ERROR : EXIT_OK;
}

static int report_inventory(int argc, char **argv) {
        return run_report(argc, argv, false);
}

static int report_blast_radius(int argc, char **argv) {
        return run_report(argc, argv, true);
}

int cmd_report(int argc, char **argv) {
        static const cli_subcommand subs[] = {
                { "inventory", report_inventory },
                { "blast-radius", report_blast_radius },
        };
        return cli_dispatch(subs, ELEMENTSOF(subs), "report", usage, argc, argv);
}
