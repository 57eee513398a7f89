/* cmd_catalog.c - placeholder (being written). */
#include <stdio.h>
#include "commands.h"
#include "output.h"

int cmd_catalog(int argc, char **argv) {
        (void) argc;
        (void) argv;
        fprintf(stderr, "modelprov: error: catalog is not implemented yet\n");
        return EXIT_ERROR;
}
