/* status.c: status strings, error messages (per handle and thread-local), logging, version. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"

static _Thread_local char tls_last_error[IS_ERRMSG_MAX];
static imgsim_log_level g_log_level = IMGSIM_LOG_INFO;

const char *imgsim_status_str(imgsim_status s) {
    switch (s) {
    case IMGSIM_OK: return "ok";
    case IMGSIM_ERR_INVALID_ARG: return "invalid argument";
    case IMGSIM_ERR_NOMEM: return "out of memory";
    case IMGSIM_ERR_IO: return "input/output error";
    case IMGSIM_ERR_FORMAT: return "corrupt or malformed input";
    case IMGSIM_ERR_UNSUPPORTED: return "unsupported input";
    case IMGSIM_ERR_TOO_LARGE: return "input too large";
    case IMGSIM_ERR_MISMATCH: return "mismatched inputs";
    case IMGSIM_ERR_NO_DEVICE: return "device not available";
    case IMGSIM_ERR_BACKEND: return "compute backend error";
    case IMGSIM_ERR_INTERNAL: return "internal error";
    case IMGSIM_ERR_CANCELLED: return "cancelled";
    }
    return "unknown status";
}

const char *imgsim_last_error(void) {
    return tls_last_error;
}

const char *imgsim_version(void) {
#define IS_STR2(x) #x
#define IS_STR(x) IS_STR2(x)
    return IS_STR(IMGSIM_VERSION_MAJOR) "." IS_STR(IMGSIM_VERSION_MINOR) "." IS_STR(IMGSIM_VERSION_PATCH);
}

const char *imgsim_precision_str(imgsim_precision p) {
    switch (p) {
    case IMGSIM_PREC_FP32: return "fp32";
    case IMGSIM_PREC_BF16: return "bf16";
    case IMGSIM_PREC_FP16: return "fp16";
    case IMGSIM_PREC_TF32: return "tf32";
    case IMGSIM_PREC_INT8: return "int8";
    }
    return "?";
}

imgsim_status ims_failv(ims_err *e, imgsim_status st, const char *fmt, va_list ap) {
    char buf[IS_ERRMSG_MAX];
    vsnprintf(buf, sizeof buf, fmt, ap);
    if (e) memcpy(e->msg, buf, sizeof buf);
    memcpy(tls_last_error, buf, sizeof buf);
    return st;
}

imgsim_status ims_fail(ims_err *e, imgsim_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ims_failv(e, st, fmt, ap);
    va_end(ap);
    return st;
}

imgsim_status ims_fail_prefix(ims_err *e, imgsim_status st, const char *prefix) {
    char buf[IS_ERRMSG_MAX];
    snprintf(buf, sizeof buf, "%s: %s", prefix, e ? e->msg : tls_last_error);
    if (e) memcpy(e->msg, buf, sizeof buf);
    memcpy(tls_last_error, buf, sizeof buf);
    return st;
}

imgsim_status ims_fail_copy(ims_err *dst, const ims_err *src, imgsim_status st) {
    const char *m = src ? src->msg : tls_last_error;
    if (dst && dst != src) snprintf(dst->msg, sizeof dst->msg, "%s", m);
    if (m != tls_last_error) snprintf(tls_last_error, sizeof tls_last_error, "%s", m);
    return st;
}

void ims_err_clear(ims_err *e) {
    if (e) e->msg[0] = '\0';
}

void imgsim_set_log_level(imgsim_log_level level) {
    g_log_level = level;
}

int ims_log_enabled(imgsim_log_level lvl) {
    return lvl <= g_log_level;
}

void ims_log(imgsim_log_level lvl, const char *fmt, ...) {
    if (!ims_log_enabled(lvl)) return;
    static const char *tag[] = {"", "error: ", "warning: ", "", "debug: "};
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "imgsim: %s%s\n", tag[lvl], buf);
}
