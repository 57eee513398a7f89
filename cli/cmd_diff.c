/* cmd_diff.c - placeholder (being written). */
#include <stdio.h>
#include "commands.h"
#include "output.h"

int cmd_diff(int argc, char **argv) {
        (void) argc;
        (void) argv;
        fprintf(stderr, "modelprov: error: diff is not implemented yet\n");
        return EXIT_ERROR;
}
