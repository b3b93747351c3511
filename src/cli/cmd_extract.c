/* cmd_extract.c: imgsim extract (placeholder until implemented). */
#include <stdio.h>

#include "cli.h"

int cmd_extract(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "imgsim extract: not implemented yet\n");
    return 1;
}
