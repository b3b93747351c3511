/* cmd_dedup.c: imgsim dedup (placeholder until implemented). */
#include <stdio.h>

#include "cli.h"

int cmd_dedup(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "imgsim dedup: not implemented yet\n");
    return 1;
}
