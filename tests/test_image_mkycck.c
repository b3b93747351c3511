/*
 * test_image_mkycck.c: test helper that writes a YCCK JPEG (which PIL cannot write) from raw
 * CMYK pixels with TurboJPEG: mkycck IN.raw WIDTH HEIGHT OUT.jpg. IN.raw holds W*H*4 bytes.
 * TurboJPEG compresses CMYK input as YCCK with an Adobe marker.
 */
#include <stdio.h>
#include <stdlib.h>
#include <turbojpeg.h>

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s IN.raw WIDTH HEIGHT OUT.jpg\n", argv[0]);
        return 2;
    }
    int w = atoi(argv[2]), h = atoi(argv[3]);
    if (w <= 0 || h <= 0 || w > 4096 || h > 4096) return 2;
    size_t n = (size_t)w * h * 4;
    unsigned char *px = malloc(n);
    FILE *f = fopen(argv[1], "rb");
    if (!px || !f || fread(px, 1, n, f) != n) {
        fprintf(stderr, "mkycck: cannot read %s\n", argv[1]);
        return 1;
    }
    fclose(f);
    tjhandle tj = tjInitCompress();
    unsigned char *jpg = NULL;
    unsigned long size = 0;
    if (!tj || tjCompress2(tj, px, w, 0, h, TJPF_CMYK, &jpg, &size, TJSAMP_420, 92, 0) != 0) {
        fprintf(stderr, "mkycck: %s\n", tjGetErrorStr2(tj));
        return 1;
    }
    f = fopen(argv[4], "wb");
    if (!f || fwrite(jpg, 1, size, f) != size || fclose(f) != 0) return 1;
    tjFree(jpg);
    tjDestroy(tj);
    free(px);
    return 0;
}
