/* cmd_model.c: imgsim model (placeholder until implemented). */
#include <stdio.h>

#include "cli.h"

int cmd_model(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "imgsim model: not implemented yet\n");
    return 1;
}
