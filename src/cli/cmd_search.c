/* cmd_search.c: imgsim search (placeholder until implemented). */
#include <stdio.h>

#include "cli.h"

int cmd_search(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "imgsim search: not implemented yet\n");
    return 1;
}
