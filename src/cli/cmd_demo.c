/* cmd_demo.c: imgsim demo (placeholder until implemented). */
#include <stdio.h>

#include "cli.h"

int cmd_demo(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "imgsim demo: not implemented yet\n");
    return 1;
}
