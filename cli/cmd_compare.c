/* cmd_compare.c - placeholder (being written). */
#include <stdio.h>
#include "commands.h"
#include "output.h"

int cmd_compare(int argc, char **argv) {
        (void) argc;
        (void) argv;
        fprintf(stderr, "modelprov: error: compare is not implemented yet\n");
        return EXIT_ERROR;
}
