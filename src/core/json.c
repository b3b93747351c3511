/*
 * json.c: JSON text for strings that may not be UTF-8 (file names are bytes). cJSON copies the
 * bytes of a string through as they are, so a file name that is not valid UTF-8 would make the
 * whole file invalid JSON. ims_json_print escapes each byte that is not part of a valid UTF-8
 * sequence as \udcXX (XX its value): Python's "surrogateescape" convention, so that json.load gives
 * the same str as os.fsdecode(name) and os.fsencode() of it the original bytes. ims_json_parse
 * turns those escapes back into the bytes before cJSON parses the text.
 */
#include "core/json.h"

#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if none starts there (overlong
 * forms, UTF-16 surrogates and code points past U+10FFFF are not valid). */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

char *ims_json_escape_bytes(const char *txt) {
    const unsigned char *s = (const unsigned char *)txt;
    size_t n = strlen(txt), bad = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_len(s + i, n - i);
        if (l) {
            i += l;
        } else {
            bad++;
            i++;
        }
    }
    char *out = malloc(n + 5 * bad + 1);
    if (!out) return NULL;
    static const char hx[] = "0123456789abcdef";
    char *w = out;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_len(s + i, n - i);
        if (l) {
            memcpy(w, s + i, l);
            w += l;
            i += l;
        } else {
            memcpy(w, "\\udc", 4);
            w[4] = hx[s[i] >> 4];
            w[5] = hx[s[i] & 15];
            w += 6;
            i++;
        }
    }
    *w = '\0';
    return out;
}

char *ims_json_print(const cJSON *v, int pretty) {
    char *txt = pretty ? cJSON_Print(v) : cJSON_PrintUnformatted(v);
    if (!txt) return NULL;
    char *out = ims_json_escape_bytes(txt);
    cJSON_free(txt);
    return out;
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The value of the \uXXXX escape at s (s[0] == '\\', s[1] == 'u', n bytes left), or -1. */
static long u_escape(const char *s, size_t n) {
    if (n < 6 || s[0] != '\\' || s[1] != 'u') return -1;
    long v = 0;
    for (int i = 2; i < 6; i++) {
        int h = hexval(s[i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

cJSON *ims_json_parse(const char *buf, size_t len, long *err_at) {
    if (err_at) *err_at = -1;
    char *t = malloc(len + 1);
    if (!t) return NULL;
    size_t w = 0;
    int in_str = 0;
    long prev_u = -1; /* the \u escape just copied (a high surrogate makes the next one its pair) */
    for (size_t i = 0; i < len;) {
        char c = buf[i];
        if (!in_str) {
            if (c == '"') in_str = 1;
            t[w++] = c;
            i++;
            continue;
        }
        if (c == '"') {
            in_str = 0;
            prev_u = -1;
            t[w++] = c;
            i++;
        } else if (c == '\\' && i + 1 < len) {
            long u = buf[i + 1] == 'u' ? u_escape(buf + i, len - i) : -1;
            int pair = prev_u >= 0xD800 && prev_u <= 0xDBFF;
            if (u >= 0xDC80 && u <= 0xDCFF && !pair) { /* an escaped byte */
                t[w++] = (char)(u - 0xDC00);
                i += 6;
                prev_u = -1;
            } else if (u >= 0) {
                memcpy(t + w, buf + i, 6);
                w += 6;
                i += 6;
                prev_u = u;
            } else {
                t[w++] = buf[i++];
                t[w++] = buf[i++];
                prev_u = -1;
            }
        } else {
            t[w++] = c;
            i++;
            prev_u = -1;
        }
    }
    t[w] = '\0';
    cJSON *root = cJSON_ParseWithLength(t, w);
    const char *where = root ? NULL : cJSON_GetErrorPtr();
    if (err_at && where && where >= t && where <= t + w) *err_at = (long)(where - t);
    free(t);
    return root;
}
