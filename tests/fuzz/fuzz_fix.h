/* Shared by the fuzz targets that feed model files (fuzz_load.c,
 * fuzz_safetensors.c): make a mutated file's declared size, section CRCs and
 * file CRC consistent again (FORMAT.md), so that mutations reach the
 * structure checks behind the checksums. Header-only: each target is one
 * translation unit linked with libFuzzer or with replay.c. */
#ifndef NN_FUZZ_FIX_H
#define NN_FUZZ_FIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static uint32_t fuzz_crc_table[256];

static uint32_t fuzz_crc32(const uint8_t *p, size_t n) {
    if (!fuzz_crc_table[1])
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            fuzz_crc_table[i] = c;
        }
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = fuzz_crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static uint64_t fuzz_rd64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static void fuzz_wr(uint8_t *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Declared size, every section's CRC (as far as the section lengths make
 * sense) and the file CRC recomputed; aligned: also set the aligned flag
 * (the mmap loaders' layout bit). Files shorter than a header are left. */
static void fuzz_fix_model(uint8_t *d, size_t n, bool aligned) {
    if (n < 40) return;
    if (aligned) d[12] |= 1;
    fuzz_wr(d + 16, n, 8);
    size_t pos = 32, end = n - 8;
    while (pos + 24 <= end) {
        uint64_t len = fuzz_rd64(d + pos + 8);
        if (len > end - pos - 24) break;
        fuzz_wr(d + pos + 16, fuzz_crc32(d + pos + 24, (size_t)len), 4);
        pos += 24 + (size_t)len;
    }
    fuzz_wr(d + n - 4, fuzz_crc32(d, n - 4), 4);
}

#endif
