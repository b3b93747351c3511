/* cmd_split.c: imgsim split (placeholder until implemented). */
#include <stdio.h>

#include "cli.h"

int cmd_split(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "imgsim split: not implemented yet\n");
    return 1;
}
