/*
 * cmd_preprocess.c: imgsim preprocess IMAGE --out=x.npy: decodes and preprocesses one image
 * exactly as extraction does and writes the [1, 3, H, W] float32 tensor, for inspection.
 *
 * Two options are for tests and benchmarks, not users:
 *   --decoded      write the decoded RGB pixels (after EXIF orientation, before resizing) as a
 *                  [H, W, 3] float32 .npy of values 0..255 (no DCT scaling);
 *   --bench DIR    decode+preprocess every file of DIR on a pool of --workers threads (default
 *                  all cores), --repeat times, and print images/s.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *const USAGE =
    "imgsim preprocess IMAGE --out=x.npy [--size=HxW | --height=N --width=N] [--no-exif-rotate]\n"
    "       [--fast-decode] [--max-pixels=N] [--resize=HxW|shorter:S] [--crop=HxW|N] [--interp=bilinear|bicubic]\n"
    "       [--mean=R,G,B] [--std=R,G,B]";

static void help(void) {
    printf("usage: %s\n\n"
           "Decodes IMAGE (JPEG, PNG or WebP, detected by content), applies its EXIF orientation,\n"
           "resizes it to HxW with PIL's antialiased bilinear filter, scales to [0,1] and normalises\n"
           "with the ImageNet mean/std, and writes the [1, 3, H, W] float32 tensor to --out.\n\n"
           "  --size=HxW         target size (or --height/--width; default 224x224)\n"
           "  --resize=HxW|shorter:S  resize to HxW, or the shorter side to S (torchvision's Resize(S)),\n"
           "                     then centre-crop to the target size (--crop, or --size)\n"
           "  --crop=HxW|N       the centre crop: the output size (torchvision's CenterCrop)\n"
           "  --interp=bilinear|bicubic  PIL's antialiased filter (default bilinear; CLIP: bicubic)\n"
           "  --mean=R,G,B --std=R,G,B   Normalize's (default ImageNet's)\n"
           "  --no-exif-rotate   ignore the EXIF orientation tag\n"
           "  --fast-decode      decode large JPEGs at a DCT-domain reduced size (faster; differs\n"
           "                     from PIL's full decode, see README); --no-dct-scaling: no-op\n"
           "  --max-pixels=N     refuse images over N pixels (default 89478485; 0: no limit)\n",
           USAGE);
}

/* Parses "HxW" or "N" into h, w. Returns 0 on success. */
static int parse_size(const char *s, int *h, int *w) {
    char *end;
    long a = strtol(s, &end, 10);
    long b = a;
    if (end == s) return -1;
    if (*end == 'x' || *end == 'X') {
        const char *t = end + 1;
        b = strtol(t, &end, 10);
        if (end == t) return -1;
    }
    if (*end || a < 1 || b < 1 || a > 16384 || b > 16384) return -1;
    *h = (int)a;
    *w = (int)b;
    return 0;
}

/* ---- --bench ------------------------------------------------------------------------------ */

typedef struct bench_ctx {
    char **paths;
    int64_t n;
    const imgsim_preprocess_opts *o;
    float **outs; /* one output tensor per worker */
    int n_outs;
    atomic_long failed;
    atomic_llong next; /* the next item to take */
    int64_t total;     /* items of this round: file i % n */
} bench_ctx;

typedef struct bench_worker {
    bench_ctx *b;
    int id;
} bench_worker;

static void *bench_main(void *arg) {
    bench_worker *w = arg;
    bench_ctx *b = w->b;
    for (int64_t i; (i = atomic_fetch_add(&b->next, 1)) < b->total;) {
        if (imgsim_preprocess_file(b->outs[w->id], b->paths[i % b->n], b->o) != IMGSIM_OK) {
            if (i < b->n) fprintf(stderr, "imgsim preprocess: %s\n", imgsim_last_error());
            atomic_fetch_add(&b->failed, 1);
        }
    }
    return NULL;
}

/* Preprocesses total items on nw threads (the calling one among them). */
static void bench_round(bench_ctx *b, int nw, int64_t total) {
    atomic_store(&b->next, 0);
    b->total = total;
    pthread_t th[nw];
    bench_worker w[nw];
    int started = 0;
    for (int i = 0; i < nw; i++) w[i].b = b, w[i].id = i;
    for (int i = 1; i < nw && pthread_create(&th[i], NULL, bench_main, &w[i]) == 0; i++) started = i;
    bench_main(&w[0]);
    for (int i = 1; i <= started; i++) pthread_join(th[i], NULL);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_bench(const char *dir, int workers, int repeat, const imgsim_preprocess_opts *o) {
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "imgsim preprocess: %s: cannot open directory\n", dir);
        return 1;
    }
    char **paths = NULL;
    int64_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char *p = cli_path_join(dir, de->d_name);
        if (!p || !cli_path_exists(p) || cli_is_dir(p)) {
            free(p);
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            char **np = realloc(paths, (size_t)cap * sizeof *np);
            if (!np) {
                free(p);
                break;
            }
            paths = np;
        }
        paths[n++] = p;
    }
    closedir(d);
    int rc = 1;
    bench_ctx b;
    memset(&b, 0, sizeof b);
    if (n == 0) {
        fprintf(stderr, "imgsim preprocess: %s: no files\n", dir);
        goto done;
    }
    qsort(paths, (size_t)n, sizeof *paths, cmp_str);
    int nw = workers > 0 ? workers : cli_num_cores();
    b.paths = paths;
    b.n = n;
    b.o = o;
    b.outs = calloc((size_t)nw, sizeof *b.outs);
    b.n_outs = b.outs ? nw : 0;
    for (int i = 0; b.outs && i < nw; i++) b.outs[i] = malloc(sizeof(float) * 3 * o->height * o->width);
    for (int i = 0; b.outs && i < nw; i++)
        if (!b.outs[i]) goto done;
    if (!b.outs) goto done;
    bench_round(&b, nw, nw < n ? nw : n); /* warm-up: workspaces, page cache */
    atomic_store(&b.failed, 0);
    double t0 = cli_now();
    bench_round(&b, nw, n * repeat);
    double dt = cli_now() - t0;
    long failed = atomic_load(&b.failed);
    printf("imgsim preprocess: %lld images (%lld files x %d) in %.3f s with %d workers: %.1f images/s (%ld failed)\n",
           (long long)(n * repeat), (long long)n, repeat, dt, nw, (double)(n * repeat) / dt, failed);
    rc = failed ? 1 : 0;
done:
    if (b.outs)
        for (int i = 0; i < b.n_outs; i++) free(b.outs[i]);
    free(b.outs);
    for (int64_t i = 0; i < n; i++) free(paths[i]);
    free(paths);
    return rc;
}

/* ---- --decoded ---------------------------------------------------------------------------- */

static int write_decoded(const char *image, const char *out, const imgsim_preprocess_opts *o) {
    /* max_side 0: the full decoded size (no shrinking, no DCT scaling); o's max_pixels and
     * exif_rotate apply */
    uint8_t *rgb = NULL;
    int w = 0, h = 0;
    imgsim_status st = imgsim_image_load_rgb(&rgb, &w, &h, image, 0, o);
    if (st != IMGSIM_OK) return cli_fail("preprocess", st);
    size_t n = (size_t)w * h * 3;
    float *f = malloc(n * sizeof *f);
    if (!f) {
        imgsim_rgb_free(rgb);
        fprintf(stderr, "imgsim preprocess: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n; i++) f[i] = rgb[i];
    int64_t shape[3] = {h, w, 3};
    imgsim_rgb_free(rgb);
    st = imgsim_npy_write_f32(out, f, shape, 3);
    free(f);
    return st == IMGSIM_OK ? 0 : cli_fail("preprocess", st);
}

/* ---- main --------------------------------------------------------------------------------- */

int cmd_preprocess(int argc, char **argv) {
    static const char *const value_opts[] = {"out", "size", "height", "width", "max-pixels", "bench", "workers", "repeat",
                                             CLI_PREPROCESS_VALUE_OPTS, NULL};
    cli_args a;
    if (cli_init(&a, argc, argv, value_opts) != 0) {
        fprintf(stderr, "imgsim preprocess: out of memory\n");
        return 1;
    }
    if (cli_flag(&a, "help")) {
        help();
        cli_free(&a);
        return 0;
    }
    cli_log_opts(&a);
    imgsim_preprocess_opts o;
    imgsim_preprocess_opts_init(&o);
    const char *out = cli_str(&a, "out", NULL);
    const char *size = cli_str(&a, "size", NULL);
    if (size && parse_size(size, &o.height, &o.width) != 0) {
        fprintf(stderr, "imgsim preprocess: --size=%s: expected HxW (or N for NxN), 1..16384\n", size);
        a.error = 1;
    }
    o.height = (int)cli_int(&a, "height", o.height, 1, 16384);
    o.width = (int)cli_int(&a, "width", o.width, 1, 16384);
    /* --crop is the output size too (the network input); --resize without it: no crop */
    int given = cli_preprocess_opts(&a, &o);
    if ((given & CLI_PRE_RESIZE) && !(given & CLI_PRE_CROP) && !size && !cli_str(&a, "height", NULL) &&
        !cli_str(&a, "width", NULL)) {
        if (o.resize_shorter) {
            fprintf(stderr, "imgsim preprocess: --resize=shorter:S needs --crop (the output size)\n");
            a.error = 1;
        } else {
            o.height = o.resize_height, o.width = o.resize_width;
        }
    }
    if (cli_flag(&a, "no-exif-rotate")) o.exif_rotate = 0;
    if (cli_flag(&a, "fast-decode")) o.dct_scaling = 1;
    (void)cli_flag(&a, "no-dct-scaling"); /* the old default's off switch: accepted, a no-op */
    o.max_pixels = cli_u64(&a, "max-pixels", o.max_pixels);
    int decoded = cli_flag(&a, "decoded");
    const char *bench = cli_str(&a, "bench", NULL);
    int workers = (int)cli_int(&a, "workers", 0, 0, 4096);
    int repeat = (int)cli_int(&a, "repeat", 1, 1, 1000000);
    const char *image = bench ? NULL : cli_pos(&a, 0);
    if (!bench && (!image || !out)) {
        fprintf(stderr, "imgsim preprocess: %s\n", !image ? "missing IMAGE" : "missing --out=FILE.npy");
        a.error = 1;
    }
    int rc = cli_finish(&a, USAGE);
    if (rc) {
        cli_free(&a);
        return rc;
    }
    if (bench) {
        rc = run_bench(bench, workers, repeat, &o);
    } else if (decoded) {
        rc = write_decoded(image, out, &o);
    } else {
        size_t n = (size_t)3 * o.height * o.width;
        float *t = malloc(n * sizeof *t);
        if (!t) {
            fprintf(stderr, "imgsim preprocess: out of memory\n");
            rc = 1;
        } else {
            imgsim_status st = imgsim_preprocess_file(t, image, &o);
            if (st != IMGSIM_OK) {
                rc = cli_fail("preprocess", st);
            } else {
                int64_t shape[4] = {1, 3, o.height, o.width};
                st = imgsim_npy_write_f32(out, t, shape, 4);
                rc = st == IMGSIM_OK ? 0 : cli_fail("preprocess", st);
            }
            free(t);
        }
    }
    cli_free(&a);
    return rc;
}
