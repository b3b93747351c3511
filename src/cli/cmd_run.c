/* cmd_run.c: imgsim run (placeholder until implemented). */
#include <stdio.h>

#include "cli.h"

int cmd_run(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "imgsim run: not implemented yet\n");
    return 1;
}
