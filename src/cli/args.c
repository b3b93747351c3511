/* args.c: the option parser shared by every subcommand (see cli.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int takes_value(const char *const *value_opts, const char *name, size_t len) {
    for (int i = 0; value_opts && value_opts[i]; i++)
        if (strlen(value_opts[i]) == len && strncmp(value_opts[i], name, len) == 0) return 1;
    return 0;
}

int cli_init(cli_args *a, int argc, char **argv, const char *const *value_opts) {
    memset(a, 0, sizeof *a);
    a->argc = argc;
    a->argv = argv;
    a->cmd = argc > 0 ? argv[0] : "imgsim";
    a->used = calloc((size_t)argc + 1, 1);
    if (!a->used) return -1;
    a->used[0] = 1;
    /* "--name value": join into the "--name" entry by marking the value as belonging to it */
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--") == 0) break;
        if (s[0] == '-' && s[1] == '-' && !strchr(s, '=') && takes_value(value_opts, s + 2, strlen(s + 2)) &&
            i + 1 < argc)
            a->used[i + 1] = 2; /* 2: value of the previous option, not positional */
    }
    return 0;
}

int cli_start(cli_args *a, int argc, char **argv, const char *const *value_opts, const char *usage) {
    if (cli_init(a, argc, argv, value_opts)) return 1;
    if (cli_flag(a, "help")) {
        printf("usage: %s\n", usage);
        cli_free(a);
        return 0;
    }
    cli_log_opts(a);
    return -1;
}

void cli_free(cli_args *a) {
    free(a->used);
    a->used = NULL;
}

/* Finds --name or --name=value; returns the value (or "" for a bare flag) or NULL. */
static const char *find(cli_args *a, const char *name) {
    size_t len = strlen(name);
    const char *found = NULL;
    for (int i = 1; i < a->argc; i++) {
        const char *s = a->argv[i];
        if (strcmp(s, "--") == 0) break;
        if (a->used[i] == 2) continue;
        if (s[0] != '-' || s[1] != '-' || strncmp(s + 2, name, len) != 0) continue;
        if (s[2 + len] == '=') {
            a->used[i] = 1;
            found = s + 3 + len;
        } else if (s[2 + len] == '\0') {
            a->used[i] = 1;
            if (i + 1 < a->argc && a->used[i + 1] == 2) {
                a->used[i + 1] = 3;
                found = a->argv[i + 1];
            } else {
                found = "";
            }
        }
    }
    return found; /* the last occurrence wins */
}

const char *cli_str(cli_args *a, const char *name, const char *def) {
    const char *v = find(a, name);
    if (v && !*v) {
        fprintf(stderr, "imgsim %s: --%s needs a value\n", a->cmd, name);
        a->error = 1;
        return def;
    }
    return v ? v : def;
}

int cli_flag(cli_args *a, const char *name) {
    const char *v = find(a, name);
    if (v && *v) {
        if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no")) return 0;
        if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes")) return 1;
        fprintf(stderr, "imgsim %s: --%s takes no value\n", a->cmd, name);
        a->error = 1;
    }
    return v != NULL;
}

long cli_int(cli_args *a, const char *name, long def, long min, long max) {
    const char *v = cli_str(a, name, NULL);
    if (!v) return def;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < min || x > max) {
        fprintf(stderr, "imgsim %s: --%s=%s: expected an integer in [%ld, %ld]\n", a->cmd, name, v, min, max);
        a->error = 1;
        return def;
    }
    return x;
}

uint64_t cli_u64(cli_args *a, const char *name, uint64_t def) {
    const char *v = cli_str(a, name, NULL);
    if (!v) return def;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-') {
        fprintf(stderr, "imgsim %s: --%s=%s: expected a non-negative integer\n", a->cmd, name, v);
        a->error = 1;
        return def;
    }
    return (uint64_t)x;
}

double cli_double(cli_args *a, const char *name, double def, double min, double max) {
    const char *v = cli_str(a, name, NULL);
    if (!v) return def;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= min && x <= max)) {
        fprintf(stderr, "imgsim %s: --%s=%s: expected a number in [%g, %g]\n", a->cmd, name, v, min, max);
        a->error = 1;
        return def;
    }
    return x;
}

static int is_positional(cli_args *a, int i) {
    const char *s = a->argv[i];
    if (a->used[i] >= 2) return 0;
    for (int j = 1; j < i; j++)
        if (strcmp(a->argv[j], "--") == 0) return 1;
    return !(s[0] == '-' && s[1] != '\0') && strcmp(s, "--") != 0;
}

int cli_npos(cli_args *a) {
    int n = 0;
    for (int i = 1; i < a->argc; i++) n += is_positional(a, i);
    return n;
}

const char *cli_pos(cli_args *a, int n) {
    for (int i = 1; i < a->argc; i++) {
        if (!is_positional(a, i)) continue;
        if (n-- == 0) {
            a->used[i] = 1;
            return a->argv[i];
        }
    }
    return NULL;
}

int cli_finish(cli_args *a, const char *usage) {
    int bad = a->error;
    for (int i = 1; i < a->argc; i++) {
        if (strcmp(a->argv[i], "--") == 0) break;
        if (a->used[i] == 0) {
            if (a->argv[i][0] == '-')
                fprintf(stderr, "imgsim %s: unknown option '%s'\n", a->cmd, a->argv[i]);
            else
                fprintf(stderr, "imgsim %s: unexpected argument '%s'\n", a->cmd, a->argv[i]);
            bad = 1;
        } else if (a->used[i] == 2) {
            fprintf(stderr, "imgsim %s: unexpected argument '%s'\n", a->cmd, a->argv[i]);
            bad = 1;
        }
    }
    if (bad && usage) fprintf(stderr, "usage: %s\n", usage);
    return bad ? 2 : 0;
}

void cli_log_opts(cli_args *a) {
    int quiet = cli_flag(a, "quiet");
    int verbose = cli_flag(a, "verbose");
    for (int i = 1; i < a->argc; i++) {
        if (!strcmp(a->argv[i], "-q")) a->used[i] = 1, quiet = 1;
        if (!strcmp(a->argv[i], "-v")) a->used[i] = 1, verbose = 1;
    }
    cli_set_log_level(quiet ? IMGSIM_LOG_ERROR : verbose ? IMGSIM_LOG_DEBUG : IMGSIM_LOG_INFO);
}

int cli_engine_opts(cli_args *a, imgsim_engine_opts *o) {
    imgsim_engine_opts_init(o);
    const char *dev = cli_str(a, "device", "cpu");
    a->n_devices = 1;
    a->devices[0] = 0;
    if (!strcmp(dev, "cpu")) {
        o->device = IMGSIM_DEVICE_CPU;
    } else if (!strncmp(dev, "cuda", 4) && (dev[4] == '\0' || dev[4] == ':')) {
        o->device = IMGSIM_DEVICE_CUDA;
        if (!strcmp(dev, "cuda:all")) { /* every GPU this process sees */
            int n = imgsim_cuda_device_count();
            if (n < 1) {
                fprintf(stderr, "imgsim %s: --device=cuda:all: no CUDA device found (or imgsim was built without "
                        "CUDA support)\n", a->cmd);
                a->error = 1;
            }
            a->n_devices = n < 1 ? 1 : n > CLI_MAX_DEVICES ? CLI_MAX_DEVICES : n;
            for (int i = 0; i < a->n_devices; i++) a->devices[i] = i;
        } else if (dev[4] == ':') { /* cuda:N or a list cuda:0,2,... */
            const char *p = dev + 5;
            a->n_devices = 0;
            for (;;) {
                char *end;
                long n = strtol(p, &end, 10);
                if (end == p || (*end && *end != ',') || n < 0 || n > 1024 || a->n_devices == CLI_MAX_DEVICES) {
                    fprintf(stderr, "imgsim %s: --device=%s: expected cpu, cuda, cuda:N, cuda:N,M,... (at most %d) "
                            "or cuda:all\n", a->cmd, dev, CLI_MAX_DEVICES);
                    a->error = 1;
                    a->n_devices = 1;
                    break;
                }
                a->devices[a->n_devices++] = (int)n;
                if (!*end) break;
                p = end + 1;
            }
        }
        o->device_index = a->devices[0];
    } else {
        fprintf(stderr, "imgsim %s: --device=%s: expected cpu, cuda, cuda:N, cuda:N,M,... or cuda:all\n", a->cmd, dev);
        a->error = 1;
    }
    const char *prec = cli_str(a, "precision", NULL);
    if (prec) {
        static const char *names[] = {"fp32", "bf16", "fp16", "tf32", "int8"};
        int found = -1;
        for (int i = 0; i < 5; i++)
            if (!strcmp(prec, names[i])) found = i;
        if (found < 0) {
            fprintf(stderr, "imgsim %s: --precision=%s: expected fp32, bf16, fp16, tf32 or int8\n", a->cmd, prec);
            a->error = 1;
        } else {
            o->precision = (imgsim_precision)found;
            o->precision_set = 1;
        }
    }
    o->max_batch = cli_batch_size(a, o->max_batch);
    o->threads = (int)cli_int(a, "threads", 0, 0, 4096);
    o->engine_cache = cli_str(a, "engine-cache", NULL);
    o->engine_file = cli_str(a, "engine", NULL);
    o->calib_file = cli_str(a, "calib", NULL);
    return a->error ? 2 : 0;
}

int cli_engines_make(const char *cmd, const cli_args *a, imgsim_model *m, const char *model_path, const char *layer,
                     const imgsim_engine_opts *eo, imgsim_engine **engs) {
    int n = a->n_devices > 0 ? a->n_devices : 1;
    for (int i = 0; i < n; i++) engs[i] = NULL;
    for (int i = 0; i < n; i++) {
        imgsim_engine_opts o = *eo;
        if (o.device == IMGSIM_DEVICE_CUDA) o.device_index = a->devices[i];
        imgsim_status st = m ? imgsim_engine_create(&engs[i], m, &o) : imgsim_engine_load(&engs[i], model_path, layer, &o);
        if (st) {
            if (n > 1) fprintf(stderr, "imgsim %s: engine %d of %d (cuda:%d): %s\n", cmd, i, n, o.device_index,
                               imgsim_last_error());
            else cli_fail(cmd, st);
            cli_engines_destroy(engs, i);
            return 1;
        }
    }
    return 0;
}

void cli_engines_destroy(imgsim_engine **engs, int n) {
    for (int i = 0; i < n; i++) {
        imgsim_engine_destroy(engs[i]);
        engs[i] = NULL;
    }
}

int cli_batch_size(cli_args *a, int def) {
    const char *bs = cli_str(a, "batch-size", NULL);
    if (!bs) return def;
    if (!strcmp(bs, "auto")) return 0; /* what auto means: ims_engine_config */
    char *end;
    long n = strtol(bs, &end, 10);
    if (end == bs || *end || n < 1 || n > 65536) {
        fprintf(stderr, "imgsim %s: --batch-size=%s: expected 1..65536 or auto\n", a->cmd, bs);
        a->error = 1;
        return def;
    }
    return (int)n;
}

int cli_preprocess_opts(cli_args *a, imgsim_preprocess_opts *pre) {
    static const char *const names[] = {"resize", "crop", "mean", "std", "interp"};
    int given = 0;
    for (int i = 0; i < 5; i++) {
        const char *v = cli_str(a, names[i], NULL);
        if (!v) continue;
        given |= 1 << i;
        if (imgsim_preprocess_opts_set(pre, names[i], v) != IMGSIM_OK) {
            fprintf(stderr, "imgsim %s: --%s\n", a->cmd, imgsim_last_error());
            a->error = 1;
        }
    }
    return given;
}

void cli_preprocess_fit(imgsim_preprocess_opts *pre, int given, int in_h, int in_w) {
    if (given & CLI_PRE_CROP) return;
    pre->height = in_h;
    pre->width = in_w;
}

int cli_preprocess_match(const char *cmd, const imgsim_preprocess_opts *pre, int given,
                         const imgsim_preprocess_opts *gallery_pre, const char *gallery) {
    if (!given) return 0;
    imgsim_preprocess_opts p = *pre;
    cli_preprocess_fit(&p, given, gallery_pre->height, gallery_pre->width);
    p.exif_rotate = gallery_pre->exif_rotate; /* only the options given are compared */
    p.dct_scaling = gallery_pre->dct_scaling;
    if (!(given & CLI_PRE_MEAN)) memcpy(p.mean, gallery_pre->mean, sizeof p.mean);
    if (!(given & CLI_PRE_STD)) memcpy(p.std, gallery_pre->std, sizeof p.std);
    if (!(given & CLI_PRE_INTERP)) p.interp = gallery_pre->interp;
    if (!(given & CLI_PRE_RESIZE)) {
        p.resize_height = gallery_pre->resize_height, p.resize_width = gallery_pre->resize_width;
        p.resize_shorter = gallery_pre->resize_shorter;
    }
    const char *f = imgsim_preprocess_opts_differ(&p, gallery_pre);
    if (!f) return 0;
    char a[128], b[128];
    imgsim_preprocess_opts_describe(a, sizeof a, &p);
    imgsim_preprocess_opts_describe(b, sizeof b, gallery_pre);
    fprintf(stderr,
            "imgsim %s: the preprocessing asked for (%s) is not the gallery %s's (%s): %s differs; the queries "
            "are embedded the gallery's way, so leave the preprocessing options out or re-extract the gallery\n",
            cmd, a, gallery, b, f);
    return 1;
}

int cli_preprocess_given(cli_args *a) {
    static const char *const names[] = {"resize", "crop", "mean", "std", "interp"};
    int given = 0;
    for (int i = 0; i < 5; i++)
        if (cli_str(a, names[i], NULL)) given |= 1 << i;
    return given;
}

int cli_extract_opts(cli_args *a, imgsim_extract_opts *o) {
    imgsim_extract_opts_init(o);
    (void)cli_preprocess_opts(a, &o->pre);
    o->workers = (int)cli_int(a, "workers", 0, 0, 4096);
    o->quiet = cli_flag(a, "quiet");
    o->shard_size = cli_int(a, "shard-size", 0, 1, 1L << 40);
    o->durable = cli_flag(a, "durable"); /* (imgsim run: on unless --no-durable) */
    o->pre.max_pixels = cli_u64(a, "max-pixels", o->pre.max_pixels);
    if (cli_flag(a, "no-exif-rotate")) o->pre.exif_rotate = 0;
    /* --fast-decode: DCT-domain downscaling of large JPEGs (off by default); --no-dct-scaling,
     * the old switch for turning it off, is accepted and changes nothing */
    if (cli_flag(a, "fast-decode")) o->pre.dct_scaling = 1;
    (void)cli_flag(a, "no-dct-scaling");
    const char *dec = cli_str(a, "decode", "auto");
    if (!strcmp(dec, "auto"))
        o->decode = IMGSIM_DECODE_AUTO;
    else if (!strcmp(dec, "cpu"))
        o->decode = IMGSIM_DECODE_CPU;
    else if (!strcmp(dec, "gpu"))
        o->decode = IMGSIM_DECODE_GPU;
    else {
        fprintf(stderr, "imgsim %s: --decode=%s: expected auto, cpu or gpu\n", a->cmd, dec);
        a->error = 1;
    }
    const char *lay = cli_str(a, "layout", "single"); /* (extract and run take --layout) */
    if (!strcmp(lay, "single"))
        o->layout = IMGSIM_LAYOUT_SINGLE;
    else if (!strcmp(lay, "sharded"))
        o->layout = IMGSIM_LAYOUT_SHARDED;
    else {
        fprintf(stderr, "imgsim %s: --layout=%s: expected single or sharded\n", a->cmd, lay);
        a->error = 1;
    }
    const char *dt = cli_str(a, "dtype", "float32");
    if (!strcmp(dt, "float32"))
        o->dtype = IMGSIM_F32;
    else if (!strcmp(dt, "float16"))
        o->dtype = IMGSIM_F16;
    else {
        fprintf(stderr, "imgsim %s: --dtype=%s: expected float32 or float16\n", a->cmd, dt);
        a->error = 1;
    }
    return a->error ? 2 : 0;
}

int cli_fail(const char *cmd, imgsim_status st) {
    const char *msg = imgsim_last_error();
    fprintf(stderr, "imgsim %s: %s\n", cmd, msg && *msg ? msg : imgsim_status_str(st));
    return 1;
}

void cli_info(const char *fmt, ...) {
    if (!cli_log_enabled(IMGSIM_LOG_INFO)) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}
