/* main.c - `modelprov`: dispatch to one subcommand per file. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "output.h"
#include "util/heap.h"


typedef struct command {
        const char *name;
        int (*run)(int argc, char **argv);
        const char *summary;
} command;

static const command commands[] = {
        { "inspect",     cmd_inspect,     "show what a model is: format, architecture, files, findings" },
        { "fingerprint", cmd_fingerprint, "compute the fingerprint record (digests, signals, metadata, tokenizer)" },
        { "compare",     cmd_compare,     "do two models share lineage? every signal, score, verdict" },
        { "diff",        cmd_diff,        "tensor by tensor: identical, changed, only in one" },
        { "catalog",     cmd_catalog,     "manage a catalog of reference fingerprints (add, list, remove, import)" },
        { "scan",        cmd_scan,        "rank a model's matches in a catalog" },
        { "query",       cmd_query,       "ask the collector: hosts, inventory, blast radius, model, history" },
        { "report",      cmd_report,      "fleet inventory or blast-radius report: HTML with a lineage graph, Markdown, CSV" },
        { "status",      cmd_status,      "what the host agent knows: roots, models, outbox, collector contact, findings" },
};

static void usage(FILE *f) {
        fprintf(f, "usage: modelprov COMMAND [OPTIONS] ...\n\ncommands:\n");
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
        fprintf(f, "\n`modelprov COMMAND --help` describes a command.\n"
                   "Exit codes: 0 ok, 1 findings present, 2 error.\n");
}

int main(int argc, char **argv) {
        /* A command lives for seconds: keep freed heap for reuse instead of
         * handing it back to the kernel after every large free.  A scan
         * unpacks and drops a record per catalog entry; trimming after each
         * made it refault the same pages a thousand times. */
        mp_heap_keep_freed();

        if (argc < 2) {
                usage(stderr);
                return EXIT_ERROR;
        }
        if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
                usage(stdout);
                return EXIT_OK;
        }
        if (strcmp(argv[1], "--version") == 0) {
                printf("modelprov %s\n", MODELPROV_VERSION);
                return EXIT_OK;
        }
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (strcmp(argv[1], commands[i].name) == 0)
                        return commands[i].run(argc - 1, argv + 1);

        fprintf(stderr, "modelprov: error: unknown command '%s'\n", argv[1]);
        usage(stderr);
        return EXIT_ERROR;
}
