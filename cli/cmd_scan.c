/* cmd_scan.c - placeholder (being written). */
#include <stdio.h>
#include "commands.h"
#include "output.h"

int cmd_scan(int argc, char **argv) {
        (void) argc;
        (void) argv;
        fprintf(stderr, "modelprov: error: scan is not implemented yet\n");
        return EXIT_ERROR;
}
