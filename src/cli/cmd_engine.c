/* cmd_engine.c: imgsim engine (placeholder until implemented). */
#include <stdio.h>

#include "cli.h"

int cmd_engine(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "imgsim engine: not implemented yet\n");
    return 1;
}
