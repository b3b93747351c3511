/* sha256.c: SHA-256 (FIPS 180-4), for model and engine-file identity and checksums: libcrypto's
 * where the build has it (IMGSIM_HAVE_OPENSSL), else the portable code below. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <string.h>

#include "core/core.h"

#ifdef IMGSIM_HAVE_OPENSSL
#include <openssl/evp.h>
#endif

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void block(ims_sha256 *s, const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4], f = s->h[5], g = s->h[6], h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    s->h[0] += a;
    s->h[1] += b;
    s->h[2] += c;
    s->h[3] += d;
    s->h[4] += e;
    s->h[5] += f;
    s->h[6] += g;
    s->h[7] += h;
}

void ims_sha256_init_portable(ims_sha256 *s) {
    static const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, H0, sizeof H0);
    s->len = 0;
    s->nbuf = 0;
    s->evp = NULL;
}

void ims_sha256_init(ims_sha256 *s) {
    ims_sha256_init_portable(s);
#ifdef IMGSIM_HAVE_OPENSSL
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1) s->evp = c;
    else EVP_MD_CTX_free(c); /* (the portable code then) */
#endif
}

void ims_sha256_update(ims_sha256 *s, const void *data, size_t n) {
#ifdef IMGSIM_HAVE_OPENSSL
    if (s->evp) { /* (a failure, which SHA-256 in memory does not have, shows at final: zeros) */
        if (EVP_DigestUpdate(s->evp, data, n) != 1) s->len = UINT64_MAX;
        return;
    }
#endif
    const uint8_t *p = data;
    s->len += n;
    if (s->nbuf) {
        size_t m = 64 - s->nbuf < n ? 64 - s->nbuf : n;
        memcpy(s->buf + s->nbuf, p, m);
        s->nbuf += m;
        p += m;
        n -= m;
        if (s->nbuf == 64) {
            block(s, s->buf);
            s->nbuf = 0;
        }
    }
    for (; n >= 64; p += 64, n -= 64) block(s, p);
    if (n) {
        memcpy(s->buf, p, n);
        s->nbuf = n;
    }
}

void ims_sha256_final(ims_sha256 *s, uint8_t out[32]) {
#ifdef IMGSIM_HAVE_OPENSSL
    if (s->evp) {
        unsigned int len = 0;
        int ok = EVP_DigestFinal_ex(s->evp, out, &len) == 1 && len == 32 && s->len != UINT64_MAX;
        EVP_MD_CTX_free(s->evp);
        s->evp = NULL;
        if (!ok) memset(out, 0, 32);
        return;
    }
#endif
    uint64_t bits = s->len * 8;
    uint8_t pad = 0x80, zero = 0;
    ims_sha256_update(s, &pad, 1);
    while (s->nbuf != 56) ims_sha256_update(s, &zero, 1);
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
    ims_sha256_update(s, lenb, 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
}

static void to_hex(const uint8_t d[32], char out[65]) {
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[64] = 0;
}

void ims_sha256_hex(const void *data, size_t n, char out[65]) {
    ims_sha256 s;
    uint8_t d[32];
    ims_sha256_init(&s);
    ims_sha256_update(&s, data, n);
    ims_sha256_final(&s, d);
    to_hex(d, out);
}

imgsim_status ims_sha256_file(const char *path, char out[65], ims_err *e) {
    return ims_sha256_file_stat(path, out, NULL, e);
}

imgsim_status ims_sha256_file_stat(const char *path, char out[65], struct stat *st, ims_err *e) {
    int fd = ims_open_regular(path, st, e);
    if (fd < 0) return IMGSIM_ERR_IO;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return ims_fail(e, IMGSIM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    ims_sha256 s;
    ims_sha256_init(&s);
    uint8_t buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) ims_sha256_update(&s, buf, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) return ims_fail(e, IMGSIM_ERR_IO, "%s: read error", path);
    uint8_t d[32];
    ims_sha256_final(&s, d);
    to_hex(d, out);
    return IMGSIM_OK;
}
