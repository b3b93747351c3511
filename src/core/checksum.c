/*
 * checksum.c: checksum64, a fast non-cryptographic 64-bit checksum of a store's files (meta.json
 * records it so that a reader notices files from different extractions, or a file that changed
 * while it was read; it guards against accidents, not attackers). Four lanes over 32-byte blocks
 * of little-endian 64-bit words, lane = rotl(lane ^ (w * K1), 31) * K2; the tail is zero-padded
 * into a last block; the lanes, rotated, and the byte count are combined through SplitMix64's
 * finaliser. Several GB/s, so checking it costs little next to reading the file.
 */
#include <string.h>

#include "core/core.h"

#define K1 0x9E3779B97F4A7C15ull
#define K2 0xC2B2AE3D27D4EB4Full

static uint64_t rotl(uint64_t x, int r) {
    return (x << r) | (x >> (64 - r));
}

static uint64_t le64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8); /* x86-64 and arm64 are little-endian */
    return v;
}

static void block(ims_ck64 *c, const uint8_t *b) {
    for (int i = 0; i < 4; i++) c->h[i] = rotl(c->h[i] ^ (le64(b + 8 * i) * K1), 31) * K2;
}

void ims_ck64_init(ims_ck64 *c) {
    memset(c, 0, sizeof *c);
    for (int i = 0; i < 4; i++) c->h[i] = K2 * (uint64_t)(i + 1);
}

void ims_ck64_update(ims_ck64 *c, const void *data, size_t n) {
    const uint8_t *p = data;
    c->len += n;
    if (c->nbuf) {
        size_t take = 32 - c->nbuf < n ? 32 - c->nbuf : n;
        memcpy(c->buf + c->nbuf, p, take);
        c->nbuf += take, p += take, n -= take;
        if (c->nbuf < 32) return;
        block(c, c->buf);
        c->nbuf = 0;
    }
    for (; n >= 32; p += 32, n -= 32) block(c, p);
    memcpy(c->buf, p, n);
    c->nbuf = n;
}

uint64_t ims_ck64_final(ims_ck64 *c) {
    if (c->nbuf) {
        memset(c->buf + c->nbuf, 0, 32 - c->nbuf);
        block(c, c->buf);
    }
    uint64_t x = c->h[0] ^ rotl(c->h[1], 17) ^ rotl(c->h[2], 34) ^ rotl(c->h[3], 51) ^ c->len;
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 31;
    return x;
}

void ims_ck64_hex(uint64_t v, char out[17]) {
    static const char hx[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, v >>= 4) out[i] = hx[v & 15];
    out[16] = '\0';
}
