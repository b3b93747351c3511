/*
 * dataset.c: listing the images a job works on (see dataset.h).
 *
 * Three inputs are accepted:
 *  - a folder in ImageFolder layout, walked recursively. Entries whose name starts with '.' are
 *    ignored; symbolic links to files are followed; symbolic links to folders are followed only
 *    when the folder they resolve to lies inside the dataset root (after resolving its own links)
 *    and is not already on the current walk (a loop): one to "/" or elsewhere is skipped with
 *    that reason, so a walk never leaves the dataset. Every file is sniffed by its first bytes (JPEG, PNG, WebP); others
 *    are recorded in `skipped` with a reason. Items are sorted bytewise by their path relative to
 *    the root, so the order never depends on how the filesystem lists entries. The label is the
 *    first path component under the root ("" for files directly in the root).
 *  - a TSV list: a file whose first line is exactly "path\tlabel". Paths are relative to the
 *    list's folder (absolute ones are kept). Entries are not sniffed here: a missing or broken
 *    file fails later, when it is decoded, with its own error.
 *  - a single image file (sniffed; label "").
 * Paths containing a tab or a newline cannot be written to a TSV list or a manifest, so listing
 * refuses them with an error naming the path.
 */
#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE

#include "data/dataset.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest TSV list we read into memory (a list of a few million paths is well under this). */
#define IS_TSV_MAX_BYTES ((uint64_t)4 << 30)
/* Deepest folder nesting we walk (far beyond any real dataset; guards the stack). */
#define IS_WALK_MAX_DEPTH 256

/* ---- growable arrays ------------------------------------------------------------------------ */

typedef struct list_builder {
    ims_item *items;
    size_t n, cap;
    ims_skip *skipped;
    size_t n_skipped, cap_skipped;
} list_builder;

/* Makes room for one more element in an array of `size`-byte elements. Returns 0 or -1. */
static int grow(void **arr, size_t *cap, size_t n, size_t size) {
    if (n < *cap) return 0;
    size_t ncap = *cap ? *cap * 2 : 64;
    if (ncap < *cap) return -1;
    void *q;
    uint64_t bytes;
    if (ims_mul_overflow_u64(ncap, size, &bytes) || bytes > SIZE_MAX) return -1;
    q = ims_realloc(*arr, (size_t)bytes);
    if (!q) return -1;
    *arr = q;
    *cap = ncap;
    return 0;
}

/* Appends an item; path/rel/label are copied. */
static imgsim_status add_item(list_builder *b, const char *path, const char *rel, const char *label,
                              ims_err *e) {
    if (grow((void **)&b->items, &b->cap, b->n, sizeof(ims_item)))
        return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory listing the dataset", path);
    ims_item *it = &b->items[b->n];
    it->path = ims_strdup(path);
    it->rel = ims_strdup(rel);
    it->label = ims_strdup(label);
    if (!it->path || !it->rel || !it->label) {
        free(it->path);
        free(it->rel);
        free(it->label);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory listing the dataset", path);
    }
    b->n++;
    return IMGSIM_OK;
}

/* Appends a skipped file with its reason (path as opened, rel as the manifest writes it). */
static imgsim_status add_skip(list_builder *b, const char *path, const char *rel, const char *reason, ims_err *e) {
    if (grow((void **)&b->skipped, &b->cap_skipped, b->n_skipped, sizeof(ims_skip)))
        return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory listing the dataset", path);
    ims_skip *s = &b->skipped[b->n_skipped];
    s->path = ims_strdup(path);
    s->rel = ims_strdup(rel);
    s->reason = ims_strdup(reason);
    if (!s->path || !s->rel || !s->reason) {
        free(s->path);
        free(s->rel);
        free(s->reason);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory listing the dataset", path);
    }
    b->n_skipped++;
    return IMGSIM_OK;
}

static void builder_free(list_builder *b) {
    for (size_t i = 0; i < b->n; i++) {
        free(b->items[i].path);
        free(b->items[i].rel);
        free(b->items[i].label);
    }
    for (size_t i = 0; i < b->n_skipped; i++) {
        free(b->skipped[i].path);
        free(b->skipped[i].rel);
        free(b->skipped[i].reason);
    }
    free(b->items);
    free(b->skipped);
    memset(b, 0, sizeof *b);
}

void ims_dataset_free(ims_dataset *d) {
    if (!d) return;
    list_builder b = {d->items, d->n, d->n, d->skipped, d->n_skipped, d->n_skipped};
    builder_free(&b);
    free(d->root);
    free(d);
}

/* ---- helpers ------------------------------------------------------------------------------- */

/* "a" + "/" + "b" without doubling the slash; ims_malloc'ed. */
static char *join2(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    int slash = la > 0 && a[la - 1] != '/';
    char *s = ims_malloc(la + (size_t)slash + lb + 1);
    if (!s) return NULL;
    memcpy(s, a, la);
    if (slash) s[la] = '/';
    memcpy(s + la + slash, b, lb + 1);
    return s;
}

/* Returns 1 if s holds a tab, newline or carriage return (characters a TSV line cannot hold). */
static int has_tsv_special(const char *s) {
    return strpbrk(s, "\t\n\r") != NULL;
}

typedef enum sniff_kind { SNIFF_IMAGE, SNIFF_EMPTY, SNIFF_OTHER } sniff_kind;

/* Classifies the first bytes of a file: JPEG (FF D8 FF), PNG (89 'PNG' 0D 0A 1A 0A) or WebP
 * ("RIFF" size "WEBP"). */
static sniff_kind sniff(const uint8_t *h, size_t n) {
    static const uint8_t png[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    if (n == 0) return SNIFF_EMPTY;
    if (n >= 3 && h[0] == 0xFF && h[1] == 0xD8 && h[2] == 0xFF) return SNIFF_IMAGE;
    if (n >= 8 && memcmp(h, png, 8) == 0) return SNIFF_IMAGE;
    if (n >= 12 && memcmp(h, "RIFF", 4) == 0 && memcmp(h + 8, "WEBP", 4) == 0) return SNIFF_IMAGE;
    return SNIFF_OTHER;
}

/* Sniffs one file. Returns 1 (image), 0 (not an image; *reason set) or -1 (unreadable; reason
 * holds the error). */
static int sniff_file(const char *path, char *reason, size_t reason_size) {
    uint8_t head[16];
    size_t got = 0;
    ims_err err;
    ims_err_clear(&err);
    if (ims_read_head(head, sizeof head, &got, path, &err) != IMGSIM_OK) {
        /* core's message is "<path>: <why>"; keep only the why */
        const char *why = err.msg;
        size_t lp = strlen(path);
        if (strncmp(why, path, lp) == 0 && why[lp] == ':') why += lp + 1;
        while (*why == ' ')
            why++;
        if (strncmp(why, "cannot open: ", 13) == 0) why += 13;
        snprintf(reason, reason_size, "cannot read: %s", *why ? why : "I/O error");
        return -1;
    }
    switch (sniff(head, got)) {
    case SNIFF_IMAGE:
        return 1;
    case SNIFF_EMPTY:
        snprintf(reason, reason_size, "not an image (empty file)");
        return 0;
    default:
        snprintf(reason, reason_size, "not an image (unrecognised content)");
        return 0;
    }
}

/* ---- folder walk ----------------------------------------------------------------------------- */

typedef struct dir_id {
    dev_t dev;
    ino_t ino;
} dir_id;

typedef struct walker {
    list_builder *b;
    const char *root;                /* as given (trailing slashes stripped) */
    const char *root_real;           /* the root with its links resolved (NULL: unknown) */
    dir_id stack[IS_WALK_MAX_DEPTH]; /* folders on the current walk, for loop detection */
    int depth;
} walker;

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* 1 (reason set) when cpath is a symbolic link to a folder outside the dataset root. */
static int leaves_root(const walker *w, const char *cpath, char *reason, size_t cap) {
    struct stat lb;
    if (lstat(cpath, &lb) != 0 || !S_ISLNK(lb.st_mode)) return 0; /* a real folder is inside */
    char *real = realpath(cpath, NULL);
    size_t lr = w->root_real ? strlen(w->root_real) : 0;
    if (lr == 1) lr = 0; /* root "/": everything is inside */
    int inside = real && w->root_real && strncmp(real, w->root_real, lr) == 0 && (real[lr] == '/' || real[lr] == '\0');
    if (!inside)
        snprintf(reason, cap, "symbolic link to a folder outside the dataset root (%.400s): not followed",
                 real ? real : "unresolvable");
    free(real);
    return !inside;
}

/* Lists folder `rel` (relative to the root; "" for the root itself) whose identity is id, and
 * everything under it. Entries are visited in bytewise name order; the final sort by rel makes the
 * order canonical anyway. */
static imgsim_status walk(walker *w, const char *rel, dir_id id, ims_err *e) {
    imgsim_status st = IMGSIM_OK;
    char *dpath = *rel ? join2(w->root, rel) : ims_strdup(w->root);
    if (!dpath) return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", w->root);
    if (w->depth >= IS_WALK_MAX_DEPTH) {
        st = ims_fail(e, IMGSIM_ERR_UNSUPPORTED, "%s: folders nested deeper than %d levels", dpath,
                     IS_WALK_MAX_DEPTH);
        free(dpath);
        return st;
    }
    w->stack[w->depth++] = id;

    DIR *dir = opendir(dpath);
    char **names = NULL;
    size_t n = 0, cap = 0;
    if (!dir) {
        if (*rel) {
            /* an unreadable sub-folder is recorded, the rest of the dataset is still listed */
            char reason[512];
            snprintf(reason, sizeof reason, "cannot read: %s", strerror(errno));
            st = add_skip(w->b, dpath, rel, reason, e);
        } else {
            st = ims_fail(e, IMGSIM_ERR_IO, "%s: cannot open folder: %s", dpath, strerror(errno));
        }
        goto done;
    }
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(dir);
        if (!de) {
            if (errno) st = ims_fail(e, IMGSIM_ERR_IO, "%s: cannot read folder: %s", dpath, strerror(errno));
            break;
        }
        if (de->d_name[0] == '.') continue; /* ".", ".." and hidden entries */
        if (grow((void **)&names, &cap, n, sizeof(char *)) || !(names[n] = ims_strdup(de->d_name))) {
            st = ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", dpath);
            break;
        }
        n++;
    }
    closedir(dir);
    if (st != IMGSIM_OK) goto done;
    if (n > 1) qsort(names, n, sizeof(char *), cmp_names);

    for (size_t i = 0; i < n && st == IMGSIM_OK; i++) {
        char *crel = *rel ? join2(rel, names[i]) : ims_strdup(names[i]);
        char *cpath = crel ? join2(w->root, crel) : NULL;
        if (!crel || !cpath) {
            free(crel);
            free(cpath);
            st = ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", dpath);
            break;
        }
        struct stat sb;
        if (has_tsv_special(crel)) {
            st = ims_fail(e, IMGSIM_ERR_UNSUPPORTED,
                         "%s: path contains a tab or newline, which TSV lists and manifests cannot hold; "
                         "rename it",
                         cpath);
        } else if (stat(cpath, &sb) != 0) {
            /* a dangling symlink or a file that vanished */
            char reason[512];
            snprintf(reason, sizeof reason, "cannot read: %s", strerror(errno));
            st = add_skip(w->b, cpath, crel, reason, e);
        } else if (S_ISDIR(sb.st_mode)) {
            dir_id cid = {sb.st_dev, sb.st_ino};
            int loop = 0;
            for (int k = 0; k < w->depth; k++)
                if (w->stack[k].dev == cid.dev && w->stack[k].ino == cid.ino) loop = 1;
            char reason[600];
            if (loop)
                ims_log_warn("%s: symbolic link loop, not followed", cpath);
            else if (leaves_root(w, cpath, reason, sizeof reason))
                st = add_skip(w->b, cpath, crel, reason, e);
            else
                st = walk(w, crel, cid, e);
        } else if (!S_ISREG(sb.st_mode)) {
            st = add_skip(w->b, cpath, crel, "not a regular file", e);
        } else {
            /* every regular file is listed now and sniffed afterwards, in parallel (sniff_all) */
            {
                /* label: the first component of rel, "" for files directly in the root */
                const char *slash = strchr(crel, '/');
                if (slash) {
                    size_t ll = (size_t)(slash - crel);
                    char *label = ims_malloc(ll + 1);
                    if (!label) {
                        st = ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", cpath);
                    } else {
                        memcpy(label, crel, ll);
                        label[ll] = '\0';
                        st = add_item(w->b, cpath, crel, label, e);
                        free(label);
                    }
                } else {
                    st = add_item(w->b, cpath, crel, "", e);
                }
            }
        }
        free(crel);
        free(cpath);
    }

done:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(dpath);
    w->depth--;
    return st;
}

static int cmp_items_rel(const void *a, const void *b) {
    return strcmp(((const ims_item *)a)->rel, ((const ims_item *)b)->rel);
}

typedef struct sniff_job {
    const list_builder *b;
    char **reason; /* per item: NULL for an image, else why it is skipped */
    int nomem;
} sniff_job;

static void sniff_one(void *ctx, int64_t i, int worker) {
    sniff_job *j = ctx;
    char reason[600];
    (void)worker;
    if (sniff_file(j->b->items[i].path, reason, sizeof reason) == 1) return;
    j->reason[i] = ims_strdup(reason);
    if (!j->reason[i]) j->nomem = 1;
}

/* Sniffs every listed file's first bytes (in parallel: listing a large folder is mostly this) and
 * moves the files that are not images to the skipped list, keeping the order of both. */
static imgsim_status sniff_all(list_builder *b, ims_err *e) {
    sniff_job j = {b, ims_calloc(b->n ? b->n : 1, sizeof(char *)), 0};
    if (!j.reason) return ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory listing the dataset");
    ims_pool *pool = NULL;
    if (b->n >= 256) ims_pool_create(&pool, 0, NULL); /* on failure: one thread */
    ims_pool_for(pool, (int64_t)b->n, sniff_one, &j);
    ims_pool_destroy(pool);
    imgsim_status st = j.nomem ? ims_fail(e, IMGSIM_ERR_NOMEM, "out of memory listing the dataset") : IMGSIM_OK;
    size_t kept = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (!j.reason[i]) {
            b->items[kept++] = b->items[i];
            continue;
        }
        if (!st) st = add_skip(b, b->items[i].path, b->items[i].rel, j.reason[i], e);
        free(j.reason[i]);
        free(b->items[i].path);
        free(b->items[i].rel);
        free(b->items[i].label);
    }
    b->n = kept;
    free(j.reason);
    return st;
}

/* Lists an ImageFolder-layout folder into b (items sorted by rel). */
static imgsim_status open_folder(list_builder *b, const char *root, ims_err *e) {
    struct stat sb;
    if (stat(root, &sb) != 0) return ims_fail(e, IMGSIM_ERR_IO, "%s: cannot open: %s", root, strerror(errno));
    walker *w = ims_calloc(1, sizeof *w);
    if (!w) return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", root);
    w->b = b;
    w->root = root;
    char *root_real = realpath(root, NULL);
    w->root_real = root_real;
    dir_id id = {sb.st_dev, sb.st_ino};
    imgsim_status st = walk(w, "", id, e);
    free(root_real);
    free(w);
    if (st == IMGSIM_OK) st = sniff_all(b, e);
    if (st != IMGSIM_OK) return st;
    if (b->n > 1) qsort(b->items, b->n, sizeof(ims_item), cmp_items_rel);
    return IMGSIM_OK;
}

/* ---- TSV list -------------------------------------------------------------------------------- */

/* Returns 1 if the file starts with the line "path\tlabel" (LF or CRLF ended, or the whole file),
 * after an optional UTF-8 byte-order mark (spreadsheets write one). */
static int ims_tsv_list(const char *path) {
    uint8_t buf[16];
    size_t got = 0;
    if (ims_read_head(buf, sizeof buf, &got, path, NULL) != IMGSIM_OK) return 0;
    const uint8_t *head = buf;
    if (got >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) head += 3, got -= 3;
    static const char hdr[] = "path\tlabel";
    size_t lh = sizeof hdr - 1;
    if (got < lh || memcmp(head, hdr, lh) != 0) return 0;
    if (got == lh) return 1;
    if (head[lh] == '\n') return 1;
    if (head[lh] == '\r' && (got == lh + 1 || head[lh + 1] == '\n')) return 1;
    return 0;
}

/* Reads a TSV list into b, in list order. Blank lines are ignored; a line without a tab has label
 * ""; a line with more than one tab, or an empty path, is an error naming the line. */
static imgsim_status open_tsv(list_builder *b, const char *list, const char *root, ims_err *e) {
    uint8_t *buf = NULL;
    size_t len = 0;
    imgsim_status st = ims_read_file(&buf, &len, list, IS_TSV_MAX_BYTES, e);
    if (st != IMGSIM_OK) return st;
    if (memchr(buf, '\0', len)) {
        free(buf);
        return ims_fail(e, IMGSIM_ERR_FORMAT, "%s: not a text file (contains NUL bytes)", list);
    }
    char *text = ims_malloc(len + 1);
    if (!text) {
        free(buf);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", list);
    }
    memcpy(text, buf, len);
    text[len] = '\0';
    free(buf);

    char *p = text;
    size_t lineno = 0;
    char *line;
    while (st == IMGSIM_OK && (line = ims_next_line(&p))) {
        lineno++;
        size_t ll = strlen(line);
        if (lineno == 1) continue; /* the header, checked by ims_tsv_list */
        if (ll == 0) continue;
        char *tab = strchr(line, '\t');
        const char *label = "";
        if (tab) {
            *tab = '\0';
            label = tab + 1;
            if (strchr(label, '\t')) {
                st = ims_fail(e, IMGSIM_ERR_FORMAT,
                             "%s:%zu: expected 2 tab-separated columns (path, label), found more", list,
                             lineno);
                break;
            }
        }
        if (!*line) {
            st = ims_fail(e, IMGSIM_ERR_FORMAT, "%s:%zu: empty path", list, lineno);
            break;
        }
        if (strchr(line, '\r') || strchr(label, '\r')) {
            st = ims_fail(e, IMGSIM_ERR_FORMAT, "%s:%zu: stray carriage return inside the line", list, lineno);
            break;
        }
        char *full = line[0] == '/' ? ims_strdup(line) : join2(root, line);
        if (!full) {
            st = ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", list);
            break;
        }
        st = add_item(b, full, line, label, e);
        free(full);
    }
    free(text);
    return st;
}

/* ---- entry point ----------------------------------------------------------------------------- */

/* Decides what path is (folder, TSV list, image file) and lists it; see the top of the file. The
 * root of a list or a single file is its folder. */
imgsim_status ims_dataset_open(ims_dataset **out, const char *path, ims_err *e) {
    *out = NULL;
    if (!path || !*path) return ims_fail(e, IMGSIM_ERR_INVALID_ARG, "dataset path is empty");
    if (has_tsv_special(path))
        return ims_fail(e, IMGSIM_ERR_UNSUPPORTED, "%s: path contains a tab or newline", path);

    /* the path as given, without trailing slashes (except a lone "/") */
    char *given = ims_strdup(path);
    if (!given) return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", path);
    for (size_t l = strlen(given); l > 1 && given[l - 1] == '/'; l--)
        given[l - 1] = '\0';

    list_builder b;
    memset(&b, 0, sizeof b);
    char *root = NULL;
    imgsim_status st;
    struct stat sb;
    if (stat(given, &sb) != 0) {
        st = ims_fail(e, IMGSIM_ERR_IO, "%s: cannot open: %s", given, strerror(errno));
    } else if (S_ISDIR(sb.st_mode)) {
        root = ims_strdup(given);
        st = root ? open_folder(&b, given, e) : ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", given);
    } else if (!S_ISREG(sb.st_mode)) {
        st = ims_fail(e, IMGSIM_ERR_UNSUPPORTED, "%s: not a folder, a TSV list or an image file", given);
    } else {
        root = ims_path_dirname(given);
        if (!root) {
            st = ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", given);
        } else if (ims_tsv_list(given)) {
            st = open_tsv(&b, given, root, e);
        } else {
            char reason[600];
            int r = sniff_file(given, reason, sizeof reason);
            if (r == 1) {
                const char *base = strrchr(given, '/');
                base = base ? base + 1 : given;
                st = add_item(&b, given, base, "", e);
            } else if (r == 0) {
                st = ims_fail(e, IMGSIM_ERR_FORMAT,
                             "%s: %s, and not a TSV list (whose first line must be \"path<TAB>label\")",
                             given, reason);
            } else {
                st = ims_fail(e, IMGSIM_ERR_IO, "%s: %s", given, reason);
            }
        }
    }
    free(given);
    if (st != IMGSIM_OK) {
        builder_free(&b);
        free(root);
        return st;
    }
    ims_dataset *d = ims_calloc(1, sizeof *d);
    if (!d) {
        builder_free(&b);
        free(root);
        return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", path);
    }
    d->root = root;
    d->items = b.items;
    d->n = b.n;
    d->skipped = b.skipped;
    d->n_skipped = b.n_skipped;
    *out = d;
    return IMGSIM_OK;
}

/* ---- writing a TSV list ---------------------------------------------------------------------- */

/* Absolute form of path without resolving anything: cwd-prefixed when relative, "." components and
 * repeated slashes removed (".." is kept: resolving it lexically is wrong across symlinks). */
static char *abs_lexical(const char *path) {
    char *cwd = NULL;
    if (path[0] != '/') {
        size_t cap = 256;
        for (;;) {
            char *c = ims_malloc(cap);
            if (!c) return NULL;
            if (getcwd(c, cap)) {
                cwd = c;
                break;
            }
            free(c);
            if (errno != ERANGE || cap > (1u << 20)) return NULL;
            cap *= 2;
        }
    }
    char *joined = cwd ? join2(cwd, path) : ims_strdup(path);
    free(cwd);
    if (!joined) return NULL;
    /* normalise in place: drop repeated slashes and "." components */
    char *r = joined, *w = joined;
    while (*r) {
        if (r[0] == '/' && (r[1] == '/' || (r[1] == '.' && (r[2] == '/' || r[2] == '\0')))) {
            r += r[1] == '/' ? 1 : 2;
            continue;
        }
        *w++ = *r++;
    }
    if (w == joined) *w++ = '/';
    *w = '\0';
    size_t l = strlen(joined);
    if (l > 1 && joined[l - 1] == '/') joined[l - 1] = '\0';
    return joined;
}

/* Canonical absolute path of the folder holding `path` (symlinks resolved when the folder exists),
 * plus the file's own name (a symlinked file stays itself). cache_dir and cache_real remember the
 * last folder looked up, since consecutive items usually share one. */
static char *canonical_file_path(const char *path, char **cache_dir, char **cache_real) {
    char *dir = ims_path_dirname(path);
    if (!dir) return NULL;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (!*cache_dir || strcmp(*cache_dir, dir) != 0) {
        /* only a folder resolves: realpath also resolves a regular file, which "dir" may name when
         * the path runs through a file (never openable); such a path stays lexical whatever its
         * spelling, so that writing what was read back gives the same line */
        char *real = realpath(dir, NULL);
        struct stat sb;
        if (real && (stat(real, &sb) != 0 || !S_ISDIR(sb.st_mode))) {
            free(real);
            real = NULL;
        }
        char *r = real ? ims_strdup(real) : abs_lexical(dir);
        free(real);
        if (!r) {
            free(dir);
            return NULL;
        }
        free(*cache_dir);
        free(*cache_real);
        *cache_dir = dir;
        *cache_real = r;
    } else {
        free(dir);
    }
    return join2(*cache_real, base);
}

/* Writes "path\tlabel" lines for items idx[0..n): a path is written relative to the TSV's folder when
 * the item lies under it (comparing canonical folders, so symlinked folders and "." components
 * do not matter), absolute otherwise, so that the list reads back to the same files from anywhere. */
imgsim_status ims_dataset_write_tsv(const ims_dataset *d, const size_t *idx, size_t n, const char *path,
                                   ims_err *e) {
    char *tdir = ims_path_dirname(path);
    if (!tdir) return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", path);
    char *treal_c = realpath(tdir, NULL);
    free(tdir);
    if (!treal_c)
        return ims_fail(e, IMGSIM_ERR_IO, "%s: cannot resolve its folder: %s", path, strerror(errno));
    char *treal = ims_strdup(treal_c);
    free(treal_c);
    if (!treal) return ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", path);
    size_t lt = strlen(treal);
    if (lt == 1) lt = 0; /* "/" : every absolute path is under it */

    ims_atomic_file af;
    imgsim_status st = ims_atomic_open(&af, path, e);
    if (st != IMGSIM_OK) {
        free(treal);
        return st;
    }
    char *cache_dir = NULL, *cache_real = NULL;
    if (fputs("path\tlabel\n", af.f) == EOF) st = ims_fail(e, IMGSIM_ERR_IO, "%s: write failed", path);
    for (size_t i = 0; i < n && st == IMGSIM_OK; i++) {
        if (idx[i] >= d->n) {
            st = ims_fail(e, IMGSIM_ERR_INVALID_ARG, "%s: item index %zu out of range", path, idx[i]);
            break;
        }
        const ims_item *it = &d->items[idx[i]];
        if (has_tsv_special(it->path) || has_tsv_special(it->label)) {
            st = ims_fail(e, IMGSIM_ERR_UNSUPPORTED, "%s: path or label contains a tab or newline", it->path);
            break;
        }
        char *full = canonical_file_path(it->path, &cache_dir, &cache_real);
        if (!full) {
            st = ims_fail(e, IMGSIM_ERR_NOMEM, "%s: out of memory", path);
            break;
        }
        const char *out = full;
        if (strncmp(full, treal, lt) == 0 && full[lt] == '/' && full[lt + 1]) out = full + lt + 1;
        if (fprintf(af.f, "%s\t%s\n", out, it->label) < 0)
            st = ims_fail(e, IMGSIM_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        free(full);
    }
    free(cache_dir);
    free(cache_real);
    free(treal);
    if (st != IMGSIM_OK) {
        ims_atomic_abort(&af);
        return st;
    }
    return ims_atomic_commit(&af, e);
}

imgsim_status ims_dataset_fingerprint(const ims_dataset *d, char out[65], ims_err *e) {
    ims_sha256 s;
    ims_sha256_init(&s);
    for (size_t i = 0; i < d->n; i++) {
        struct stat st;
        long long size = -1, mt = 0;
        if (stat(d->items[i].path, &st) == 0) {
            size = (long long)st.st_size;
            mt = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
        }
        char buf[64];
        ims_sha256_update(&s, d->items[i].rel, strlen(d->items[i].rel) + 1);
        ims_sha256_update(&s, d->items[i].label, strlen(d->items[i].label) + 1);
        int n = snprintf(buf, sizeof buf, "%lld:%lld;", size, mt);
        ims_sha256_update(&s, buf, (size_t)n);
    }
    uint8_t dg[32];
    ims_sha256_final(&s, dg);
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hx[dg[i] >> 4];
        out[2 * i + 1] = hx[dg[i] & 15];
    }
    out[64] = 0;
    (void)e;
    return IMGSIM_OK;
}
