/*
 * standalone.c: a main() for the fuzz harnesses outside libFuzzer. Runs LLVMFuzzerTestOneInput on
 * every file named on the command line and on every file of every folder named (sorted by name),
 * as the regression test of the ordinary build does with fuzz/corpus/TARGET and fuzz/regress/TARGET
 * under ASan+UBSan. Exits 0 when all ran (a broken invariant aborts), 2 on a usage or I/O error.
 */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path) {
    size_t n = 0;
    uint8_t *buf = fuzz_read(path, &n);
    if (!buf) {
        fprintf(stderr, "%s: cannot read\n", path);
        return -1;
    }
    /* a copy of exactly n bytes, as libFuzzer passes, so ASan sees a read past the input */
    uint8_t *exact = malloc(n ? n : 1);
    if (!exact) return -1;
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

int main(int argc, char **argv) {
    long ran = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            fprintf(stderr, "%s: no such file or folder\n", argv[i]);
            return 2;
        }
        if (!S_ISDIR(sb.st_mode)) {
            if (run_file(argv[i]) != 0) return 2;
            ran++;
            continue;
        }
        struct dirent **names;
        int n = scandir(argv[i], &names, NULL, alphasort);
        if (n < 0) {
            fprintf(stderr, "%s: cannot list\n", argv[i]);
            return 2;
        }
        for (int j = 0; j < n; j++) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", argv[i], names[j]->d_name);
            struct stat fs;
            if (names[j]->d_name[0] != '.' && stat(p, &fs) == 0 && S_ISREG(fs.st_mode)) {
                if (run_file(p) != 0) return 2;
                ran++;
            }
            free(names[j]);
        }
        free(names);
    }
    printf("%s: %ld inputs ran\n", argv[0], ran);
    return 0;
}
