/* cmd_report.c: imgsim report (in progress). */
#include <stdio.h>

#include "cli.h"
int cmd_report(int argc, char **argv) {
    (void)argc, (void)argv;
    fprintf(stderr, "imgsim report: not implemented yet\n");
    return 1;
}
