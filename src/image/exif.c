/*
 * exif.c: a small bounds-checked reader of the EXIF orientation tag (0x0112 in IFD0 of the
 * TIFF structure inside JPEG APP1 "Exif\0\0", PNG eXIf and WebP EXIF chunks). Only this one
 * tag is needed, so a full EXIF library is not: every read is checked against the block size.
 */
#include <string.h>

#include "image/image_priv.h"

static uint32_t rd16(const uint8_t *p, int le) {
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 : (uint32_t)p[0] << 8 | p[1];
}

static uint32_t rd32(const uint8_t *p, int le) {
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int ims_exif_orientation(const uint8_t *p, size_t n) {
    if (!p) return 1;
    if (n >= 6 && memcmp(p, "Exif\0\0", 6) == 0) {
        p += 6;
        n -= 6;
    }
    if (n < 8) return 1;
    int le;
    if (p[0] == 'I' && p[1] == 'I') le = 1;
    else if (p[0] == 'M' && p[1] == 'M') le = 0;
    else return 1;
    if (rd16(p + 2, le) != 42) return 1;
    uint64_t ifd = rd32(p + 4, le);
    if (ifd + 2 > n) return 1;
    uint32_t count = rd16(p + ifd, le);
    for (uint32_t i = 0; i < count; i++) {
        uint64_t ent = ifd + 2 + (uint64_t)i * 12;
        if (ent + 12 > n) return 1;
        if (rd16(p + ent, le) != 0x0112) continue;
        uint32_t type = rd16(p + ent + 2, le);
        uint32_t cnt = rd32(p + ent + 4, le);
        uint32_t v;
        if (cnt < 1) return 1;
        if (type == 3) v = rd16(p + ent + 8, le);       /* SHORT, stored inline */
        else if (type == 4) v = rd32(p + ent + 8, le);  /* LONG, stored inline when count == 1 */
        else return 1;
        return (v >= 1 && v <= 8) ? (int)v : 1;
    }
    return 1;
}
