/* Writes the catalogue of handcrafted model files in tests/io/malformed/:
 * one valid file and one file per class of defect, each with correct CRCs
 * so that the loader reaches the check under test. Independent of libnn
 * (only zlib): it encodes FORMAT.md by hand, so it doubles as a second
 * reading of the format document.
 *
 *   make_malformed OUTDIR     writes OUTDIR/<name>.nnm and OUTDIR/MANIFEST
 *
 *   make_malformed --big OUTDIR MIB
 *                              writes the large cases (not committed, MIB
 *                              mebibytes of tensor or image data each) and
 *                              OUTDIR/BIG_MANIFEST, for tests/io/test_memory_rule.c
 *                              and tests/bench/hostile_load.c
 *
 * MANIFEST lines: "<file> <expected status> <substring of the message>".
 * IDX_MANIFEST lines: "<images> <labels> <expected status> <substring>", for
 * nn_dataset_from_idx (IDX files: big-endian header, then u8 data).
 * BIG_MANIFEST lines: "<loader> <file(s)> <status> <bytes a load returns> <substring>",
 * loader being model, statedict or idx (two files).
 * The committed catalogue must equal this program's output (a test checks). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static void die(const char *what) {
    fprintf(stderr, "make_malformed: %s\n", what);
    exit(1);
}

typedef struct buf {
    uint8_t *p;
    size_t len, cap;
} buf;

static void put(buf *b, const void *d, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) exit(2);
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}
static void u8(buf *b, uint8_t v) { put(b, &v, 1); }
static void u16(buf *b, uint16_t v) { u8(b, (uint8_t)v); u8(b, (uint8_t)(v >> 8)); }
static void u32(buf *b, uint32_t v) { u16(b, (uint16_t)v); u16(b, (uint16_t)(v >> 16)); }
static void u64(buf *b, uint64_t v) { u32(b, (uint32_t)v); u32(b, (uint32_t)(v >> 32)); }
static void f64(buf *b, double v) { uint64_t u; memcpy(&u, &v, 8); u64(b, u); }
static void str(buf *b, const char *s) { u32(b, (uint32_t)strlen(s)); put(b, s, strlen(s)); }
/* n zero bytes, in pieces (n may be gibibytes). */
static void put_zeros(buf *b, uint64_t n) {
    static const uint8_t zero[1 << 16];
    while (n) {
        size_t k = n > sizeof zero ? sizeof zero : (size_t)n;
        put(b, zero, k);
        n -= k;
    }
}
/* v as 4 little-endian bytes at d. */
static void le_f32(uint8_t *d, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    for (int k = 0; k < 4; k++) d[k] = (uint8_t)(u >> (8 * k));
}
static void patch32(buf *b, size_t at, uint32_t v) {
    for (int i = 0; i < 4; i++) b->p[at + i] = (uint8_t)(v >> (8 * i));
}
static void patch64(buf *b, size_t at, uint64_t v) {
    for (int i = 0; i < 8; i++) b->p[at + i] = (uint8_t)(v >> (8 * i));
}

/* ------------------------------------------------------- a whole file */

typedef struct section {
    uint32_t type, flags;
    buf body;
    int bad_crc; /* store a wrong CRC for this section */
} section;

/* Header, sections, trailer; the declared size and CRCs made consistent. */
static buf file_of(uint16_t major, uint16_t minor, section *s, int n) {
    buf f = {0};
    put(&f, "\x89NNM\r\n\x1a\n", 8);
    u16(&f, major);
    u16(&f, minor);
    u32(&f, 0);
    u64(&f, 0); /* size, patched */
    u32(&f, (uint32_t)n);
    u32(&f, 0);
    for (int i = 0; i < n; i++) {
        uint32_t crc = (uint32_t)crc32(0, s[i].body.p, (uInt)s[i].body.len);
        u32(&f, s[i].type);
        u32(&f, s[i].flags);
        u64(&f, s[i].body.len);
        u32(&f, s[i].bad_crc ? crc ^ 1u : crc);
        u32(&f, 0);
        put(&f, s[i].body.p, s[i].body.len);
        free(s[i].body.p);
    }
    put(&f, "NEND", 4);
    patch64(&f, 16, f.len + 4);
    uint32_t crc = (uint32_t)crc32(0, f.p, (uInt)f.len);
    u32(&f, crc);
    return f;
}

/* Re-seal the file CRC after editing bytes. */
static void reseal(buf *f) {
    patch32(f, f->len - 4, (uint32_t)crc32(0, f->p, (uInt)(f->len - 4)));
}

/* -------------------------------------------------------- the sections */

static buf meta_body(void) {
    buf b = {0};
    u32(&b, 2);
    str(&b, "description");
    u8(&b, 1);
    str(&b, "catalogue model");
    str(&b, "mean");
    u8(&b, 3);
    u64(&b, 2);
    f64(&b, 0.5);
    f64(&b, 0.25);
    return b;
}

/* A node's type and its n hyperparameters (its children follow). */
static void put_head(buf *b, const char *type, int n, const char *const *keys,
                     const double *vals) {
    str(b, type);
    u32(b, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        str(b, keys[i]);
        f64(b, vals[i]);
    }
}

/* A node of type `type` with n hyperparameters and no children. */
static buf leaf_node(const char *type, int n, const char *const *keys, const double *vals) {
    buf b = {0};
    put_head(&b, type, n, keys, vals);
    u32(&b, 0);
    return b;
}

/* A node of type `type` (a Linear's hyperparameters: in -> out, bias). */
static buf linear_leaf(const char *type, int64_t in, int64_t out) {
    static const char *const keys[] = {"in_features", "out_features", "bias"};
    const double vals[] = {(double)in, (double)out, 1};
    return leaf_node(type, 3, keys, vals);
}

/* Appends node to b; node is consumed. */
static void put_node(buf *b, buf node) {
    put(b, node.p, node.len);
    free(node.p);
}

/* A node of type `type` with n hyperparameters and one child, a
 * Linear(2 -> 3, bias) named `child`. */
static buf node_with_linear(const char *type, int n, const char *const *keys, const double *vals,
                            const char *child) {
    buf b = {0};
    put_head(&b, type, n, keys, vals);
    u32(&b, 1);
    str(&b, child);
    put_node(&b, linear_leaf("Linear", 2, 3));
    return b;
}

/* Sequential { "0": node }; node is consumed. */
static buf sequential_of(buf node) {
    buf b = {0};
    str(&b, "Sequential");
    u32(&b, 0);
    u32(&b, 1);
    str(&b, "0");
    put_node(&b, node);
    return b;
}

/* Sequential { "0": Linear(2 -> 3, bias) }, the leaf of type leaf_type */
static buf module_body(const char *leaf_type) {
    return sequential_of(linear_leaf(leaf_type, 2, 3));
}

/* Sequential nested `depth` times. */
static buf deep_module_body(int depth) {
    buf b = {0};
    for (int i = 0; i < depth; i++) {
        str(&b, "Sequential");
        u32(&b, 0);
        u32(&b, 1);
        str(&b, "0");
    }
    str(&b, "Sequential");
    u32(&b, 0);
    u32(&b, 0);
    return b;
}

typedef struct tdesc {
    const char *name;
    uint8_t dtype, ndim, codec;
    int64_t shape[9];
    uint64_t offset, stored, raw;
} tdesc;

/* Tensor table of n descriptors and a data area of `data` bytes. */
static buf tensors_body(const tdesc *t, int n, uint32_t count, const void *data, size_t dlen) {
    buf b = {0};
    u32(&b, count);
    u32(&b, 0);
    for (int i = 0; i < n; i++) {
        str(&b, t[i].name);
        u8(&b, t[i].dtype);
        u8(&b, t[i].ndim);
        u8(&b, t[i].codec);
        u8(&b, 0);
        for (int d = 0; d < t[i].ndim && d < 9; d++) u64(&b, (uint64_t)t[i].shape[d]);
        u64(&b, t[i].offset);
        u64(&b, t[i].stored);
        u64(&b, t[i].raw);
    }
    u64(&b, dlen);
    put(&b, data, dlen);
    return b;
}

static const float W[9] = {0.5f, -1.0f, 0.25f, 2.0f, -0.75f, 1.5f, 0.1f, 0.2f, 0.3f};

/* The valid weights: "0.weight" [3,2] and "0.bias" [3], stored, LE f32. */
static buf good_tensors(void) {
    tdesc t[2] = {{"0.weight", 0, 2, 0, {3, 2}, 0, 24, 24}, {"0.bias", 0, 1, 0, {3}, 24, 12, 12}};
    uint8_t data[36];
    for (int i = 0; i < 9; i++) le_f32(data + 4 * i, W[i]);
    return tensors_body(t, 2, 2, data, 36);
}

/* Version 1.0: metadata, the module tree, the tensors (both consumed). */
static buf model_with_tree(buf tree, buf tensors) {
    section s[3] = {{1, 0, meta_body(), 0}, {2, 0, tree, 0}, {3, 0, tensors, 0}};
    return file_of(1, 0, s, 3);
}

static buf model_with(buf tensors) { return model_with_tree(module_body("Linear"), tensors); }

/* Version 1.0 without metadata: the module tree, then the tensors (both
 * consumed). */
static buf tree_file_with(buf tree, buf tensors) {
    section s[2] = {{2, 0, tree, 0}, {3, 0, tensors, 0}};
    return file_of(1, 0, s, 2);
}

/* The same with the valid weights (good_tensors). */
static buf tree_file(buf tree) { return tree_file_with(tree, good_tensors()); }

/* Sequential { "0": Linear(2 -> 3, bias), "1": node } (the tensors of
 * good_tensors fit it); node is consumed. */
static buf linear_then(buf node) {
    buf b = {0};
    str(&b, "Sequential");
    u32(&b, 0);
    u32(&b, 2);
    str(&b, "0");
    put_node(&b, linear_leaf("Linear", 2, 3));
    str(&b, "1");
    put_node(&b, node);
    return b;
}

/* One zlib stream (level 9) of n zero bytes, made in pieces. */
static buf zlib_zeros(uint64_t n) {
    static uint8_t zero[1 << 16];
    buf b = {0};
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit(&z, 9) != Z_OK) die("deflateInit");
    uint8_t out[1 << 16];
    int flush;
    do {
        size_t k = n > sizeof zero ? sizeof zero : (size_t)n;
        n -= k;
        flush = n ? Z_NO_FLUSH : Z_FINISH;
        z.next_in = zero;
        z.avail_in = (uInt)k;
        do {
            z.next_out = out;
            z.avail_out = sizeof out;
            if (deflate(&z, flush) == Z_STREAM_ERROR) die("deflate");
            put(&b, out, sizeof out - z.avail_out);
        } while (z.avail_out == 0);
    } while (flush != Z_FINISH);
    deflateEnd(&z);
    return b;
}

/* The two tensors of Sequential{0: Linear}: 0.weight [rows, cols] f32 and
 * 0.bias [rows], all zeros, compressed (codec 1) or stored (codec 0). */
static buf linear_tensors(int64_t rows, int64_t cols, int codec) {
    uint64_t wraw = (uint64_t)rows * (uint64_t)cols * 4, braw = (uint64_t)rows * 4;
    buf w = {0}, bias = {0};
    if (codec) {
        w = zlib_zeros(wraw);
        bias = zlib_zeros(braw);
    }
    uint64_t wlen = codec ? w.len : wraw, blen = codec ? bias.len : braw;
    tdesc t[2] = {{"0.weight", 0, 2, (uint8_t)codec, {rows, cols}, 0, wlen, wraw},
                  {"0.bias", 0, 1, (uint8_t)codec, {rows}, wlen, blen, braw}};
    buf b = tensors_body(t, 2, 2, "", 0);
    b.len -= 8; /* the data size, rewritten with the data */
    u64(&b, wlen + blen);
    if (codec) {
        put(&b, w.p, w.len);
        put(&b, bias.p, bias.len);
    } else {
        put_zeros(&b, wlen + blen);
    }
    free(w.p);
    free(bias.p);
    return b;
}

/* Sequential { "0": Linear(in, out, bias) } */
static buf linear_module(int64_t in, int64_t out) {
    return sequential_of(linear_leaf("Linear", in, out));
}

/* ------------------------------------------------------------- output */

static const char *g_dir;
static FILE *g_manifest;

static void write_file(const char *name, const buf *f) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *o = fopen(path, "wb");
    if (!o || (f->len && fwrite(f->p, 1, f->len, o) != f->len) || fclose(o) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

static void emit(const char *name, buf f, const char *status, const char *msg) {
    char file[256];
    snprintf(file, sizeof file, "%s.nnm", name);
    write_file(file, &f);
    fprintf(g_manifest, "%s.nnm %s %s\n", name, status, msg);
    free(f.p);
}

/* An IDX file (magic 00 00 08 <ndim>, big-endian dims) of zero pixels or
 * labels: plain, or gzip-compressed (level 9, zlib's fixed header). `data`
 * bytes follow the header whatever the dims say. */
static void idx_file(const char *name, int ndim, const uint32_t *dims, uint64_t data, int gz) {
    buf h = {0};
    uint8_t m[4] = {0, 0, 8, (uint8_t)ndim};
    put(&h, m, 4);
    for (int i = 0; i < ndim; i++) {
        uint8_t d[4] = {(uint8_t)(dims[i] >> 24), (uint8_t)(dims[i] >> 16), (uint8_t)(dims[i] >> 8),
                        (uint8_t)dims[i]};
        put(&h, d, 4);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    static uint8_t zero[1 << 16];
    if (gz) {
        gzFile g = gzopen(path, "wb9");
        if (!g || gzwrite(g, h.p, (unsigned)h.len) != (int)h.len) die("gzwrite");
        for (uint64_t n = data; n;) {
            unsigned k = n > sizeof zero ? (unsigned)sizeof zero : (unsigned)n;
            if (gzwrite(g, zero, k) != (int)k) die("gzwrite");
            n -= k;
        }
        if (gzclose(g) != Z_OK) die("gzclose");
    } else {
        put_zeros(&h, data);
        write_file(name, &h);
    }
    free(h.p);
}

static FILE *g_idx_manifest;

/* Images of n 28x28 zero pixels (gzip) with four labels files: valid
 * (gzip), header only, zero bytes, and a count one short. */
static void idx_set(const char *prefix, uint32_t n, FILE *manifest, int big) {
    char im[128], lb[128], hd[128], em[128], mm[128];
    snprintf(im, sizeof im, "%s_images.idx.gz", prefix);
    snprintf(lb, sizeof lb, "%s_labels.idx.gz", prefix);
    snprintf(hd, sizeof hd, "%s_labels_header_only.idx", prefix);
    snprintf(em, sizeof em, "%s_labels_empty.idx", prefix);
    snprintf(mm, sizeof mm, "%s_labels_short.idx.gz", prefix);
    uint32_t dims[3] = {n, 28, 28}, one = n - 1;
    idx_file(im, 3, dims, (uint64_t)n * 784, 1);
    idx_file(lb, 1, &n, n, 1);
    idx_file(hd, 1, &n, 0, 0);
    write_file(em, &(buf){0}); /* zero bytes: not even a magic */
    idx_file(mm, 1, &one, one, 1);
    char promise[96], count[96];
    snprintf(promise, sizeof promise, "header promises %u data bytes, file has 0", n);
    snprintf(count, sizeof count, "has %u images but labels file", n);
    unsigned long long ret = (unsigned long long)n * 784 + (unsigned long long)n * 8;
    if (big) {
        fprintf(manifest, "idx %s %s NN_OK %llu -\n", im, lb, ret);
        fprintf(manifest, "idx %s %s NN_ERR_TRUNCATED 0 %s\n", im, hd, promise);
        fprintf(manifest, "idx %s %s NN_ERR_TRUNCATED 0 ends inside the 4-byte magic\n", im, em);
        fprintf(manifest, "idx %s %s NN_ERR_FORMAT 0 %s\n", im, mm, count);
    } else {
        fprintf(manifest, "%s %s NN_OK -\n", im, lb);
        fprintf(manifest, "%s %s NN_ERR_TRUNCATED %s\n", im, hd, promise);
        fprintf(manifest, "%s %s NN_ERR_TRUNCATED ends inside the 4-byte magic\n", im, em);
        fprintf(manifest, "%s %s NN_ERR_FORMAT %s\n", im, mm, count);
    }
}

/* A single-tensor model whose one descriptor is t (data of dlen bytes). */
static buf one_tensor(tdesc t, const void *data, size_t dlen) {
    return model_with(tensors_body(&t, 1, 1, data, dlen));
}

/* The valid weights with a bf16 "0.weight" (the values of W rounded: all
 * exact in bf16), for a Linear whose weight_dtype says bf16. */
static buf bf16_tensors(void) {
    tdesc t[2] = {{"0.weight", 3, 2, 0, {3, 2}, 0, 12, 12}, {"0.bias", 0, 1, 0, {3}, 12, 12, 12}};
    uint8_t data[24];
    for (int i = 0; i < 9; i++) {
        uint32_t u;
        memcpy(&u, &W[i], 4);
        if (i < 6)
            for (int k = 0; k < 2; k++) data[2 * i + k] = (uint8_t)(u >> (16 + 8 * k));
        else
            for (int k = 0; k < 4; k++) data[12 + 4 * (i - 6) + k] = (uint8_t)(u >> (8 * k));
    }
    return tensors_body(t, 2, 2, data, 24);
}

/* Sequential { "0": Linear(2 -> 3, bias, weight_dtype bf16) } */
static buf bf16_linear_body(void) {
    static const char *const keys[] = {"in_features", "out_features", "bias", "weight_dtype"};
    static const double vals[] = {2, 3, 1, 3};
    return sequential_of(leaf_node("Linear", 4, keys, vals));
}

/* Signed and encrypted envelopes (FORMAT.md 10), written without any
 * cryptography: each is rejected by its header checks, or by a signature
 * that cannot verify, before anything inside is used. Loaded with no keys. */
static buf signed_of(buf inner, uint16_t major, uint32_t flags, int trailer) {
    buf b = {0};
    put(&b, "\x89NNS\r\n\x1a\n", 8);
    u16(&b, major);
    u16(&b, 0);
    u32(&b, flags);
    for (int i = 0; i < 32; i++) u8(&b, (uint8_t)(0x11 * (i % 15 + 1))); /* a signer key */
    put(&b, inner.p, inner.len);
    if (trailer) {
        put(&b, "NSIG", 4);
        u32(&b, 0);
        for (int i = 0; i < 64; i++) u8(&b, (uint8_t)i); /* not its signature */
    }
    free(inner.p);
    return b;
}

static buf encrypted_of(uint16_t major, uint32_t flags, uint32_t chunk, uint64_t plain,
                        size_t body) {
    buf b = {0};
    put(&b, "\x89NNE\r\n\x1a\n", 8);
    u16(&b, major);
    u16(&b, 0);
    u32(&b, flags);
    u32(&b, chunk);
    u32(&b, 0);
    u64(&b, plain);
    for (int i = 0; i < 16 + 24; i++) u8(&b, (uint8_t)(i * 7 + 3)); /* key id, stream header */
    for (size_t i = 0; i < body; i++) u8(&b, (uint8_t)i);
    return b;
}

static void sealed_catalogue(void) {
    emit("sealed_signed_bad_signature", signed_of(model_with(good_tensors()), 1, 0, 1),
         "NN_ERR_SIGNATURE", "signature does not verify");
    emit("sealed_signed_future_major", signed_of(model_with(good_tensors()), 2, 0, 1),
         "NN_ERR_VERSION", "signed file version 2.0");
    emit("sealed_signed_flags", signed_of(model_with(good_tensors()), 1, 4, 1), "NN_ERR_FORMAT",
         "signed file: flags not zero");
    emit("sealed_signed_no_signature", signed_of(model_with(good_tensors()), 1, 0, 0),
         "NN_ERR_TRUNCATED", "signed file ends early");
    buf f = signed_of(model_with(good_tensors()), 1, 0, 1);
    f.len = 30;
    emit("sealed_signed_truncated_header", f, "NN_ERR_TRUNCATED", "inside its 48-byte header");
    emit("sealed_encrypted_no_key", encrypted_of(1, 0, 65536, 300, 317), "NN_ERR_WRONG_KEY",
         "no key was given");
    emit("sealed_encrypted_chunk_zero", encrypted_of(1, 0, 0, 300, 317), "NN_ERR_FORMAT",
         "chunk size 0 outside");
    emit("sealed_encrypted_huge_plain", encrypted_of(1, 0, 65536, (uint64_t)1 << 62, 317),
         "NN_ERR_LIMIT", "encrypted file holds 4611686018427387904 bytes");
    emit("sealed_encrypted_future_major", encrypted_of(3, 0, 65536, 300, 317), "NN_ERR_VERSION",
         "encrypted file version 3.0");
    emit("sealed_encrypted_flags", encrypted_of(1, 1, 65536, 300, 317), "NN_ERR_FORMAT",
         "flags / reserved fields not zero");
    f = encrypted_of(1, 0, 65536, 300, 0);
    f.len = 40;
    emit("sealed_encrypted_truncated_header", f, "NN_ERR_TRUNCATED", "inside its 72-byte header");
}

/* ---------------------------------------- aligned files (FORMAT.md 11) */

enum { AL_VALID, AL_UNPADDED, AL_COMPRESSED, AL_PAST_AREA, AL_FLAGS, AL_TENSOR_CRC,
       AL_WEIGHTS_ONLY, AL_SECTION_PAST_END };

static uint64_t pad64(uint64_t at) { return (64 - at % 64) % 64; }

/* An aligned file (header flag 1, minor 1) of Sequential{0: Linear(2, 3)}
 * holding the weights W: metadata, module and tensor sections, each tensor
 * stored at a file offset that is a multiple of 64, the skipped bytes zero;
 * or the same with one defect. *expect receives the numbers a message names. */
static buf aligned_linear(int defect, uint64_t *expect) {
    buf meta = meta_body(), mod = module_body("Linear");
    int with_module = defect != AL_WEIGHTS_ONLY;
    uint64_t payload = 32 + 24 + meta.len + (with_module ? 24 + mod.len : 0) + 24;
    /* count + reserved, two entries ("0.weight" [3,2], "0.bias" [3]), data size */
    uint64_t data_at = payload + 8 + (4 + 8 + 4 + 16 + 24) + (4 + 6 + 4 + 8 + 24) + 8;
    uint64_t woff = pad64(data_at), boff = woff + 24 + pad64(data_at + woff + 24);
    if (defect == AL_UNPADDED) {
        *expect = woff;
        woff = 0;
        boff = 24;
    }
    uint64_t dsize = boff + 12;
    if (defect == AL_PAST_AREA) {
        *expect = boff + 64;
        boff += 64;
    }
    uint8_t *data = calloc(1, dsize);
    if (!data) die("out of memory");
    for (int i = 0; i < 9; i++)
        le_f32(data + (i < 6 ? woff + 4 * (uint64_t)i
                             : boff - (defect == AL_PAST_AREA ? 64 : 0) + 4 * (uint64_t)(i - 6)),
               W[i]);
    tdesc t[2] = {{"0.weight", 0, 2, defect == AL_COMPRESSED, {3, 2}, woff, 24, 24},
                  {"0.bias", 0, 1, 0, {3}, boff, 12, 12}};
    buf tb = tensors_body(t, 2, 2, data, (size_t)dsize);
    free(data);
    section sec[3] = {{1, 0, meta, 0}, {2, 0, mod, 0}, {3, 0, tb, defect == AL_TENSOR_CRC}};
    buf f;
    if (with_module) {
        f = file_of(1, 1, sec, 3);
    } else {
        free(mod.p);
        sec[1] = sec[2];
        f = file_of(1, 1, sec, 2);
    }
    patch32(&f, 12, defect == AL_FLAGS ? 3 : 1);
    if (defect == AL_SECTION_PAST_END) {
        *expect = 32 + 24 + meta.len + 24 + mod.len; /* the tensor section header */
        patch64(&f, *expect + 8, 1u << 30);
    }
    reseal(&f);
    return f;
}

static void aligned_catalogue(void) {
    char msg[160];
    uint64_t x = 0;
    emit("aligned_valid", aligned_linear(AL_VALID, &x), "NN_OK", "-");
    buf f = aligned_linear(AL_UNPADDED, &x);
    snprintf(msg, sizeof msg, "tensor '0.weight': data at offset 0 overlaps the previous tensor "
                              "(expected %llu)", (unsigned long long)x);
    emit("aligned_unpadded_offsets", f, "NN_ERR_FORMAT", msg);
    emit("aligned_compressed_tensor", aligned_linear(AL_COMPRESSED, &x), "NN_ERR_FORMAT",
         "tensor '0.weight' is compressed in a file flagged aligned");
    f = aligned_linear(AL_PAST_AREA, &x);
    snprintf(msg, sizeof msg, "tensor '0.bias': data at offset %llu, 12 bytes, outside the",
             (unsigned long long)x);
    emit("aligned_offset_past_data", f, "NN_ERR_RANGE", msg);
    emit("aligned_unknown_flag", aligned_linear(AL_FLAGS, &x), "NN_ERR_FORMAT",
         "header flags 0x3 / reserved 0x0 must be 0");
    /* A damaged tensor byte: the copy load and MMAP 2 reject it; MMAP 1
     * reads no tensor byte and loads it (FORMAT.md 11, "Checksums"). */
    emit("aligned_tensor_crc", aligned_linear(AL_TENSOR_CRC, &x), "NN_ERR_CHECKSUM",
         "tensor section 2 CRC-32");
    emit("aligned_weights_only", aligned_linear(AL_WEIGHTS_ONLY, &x), "NN_ERR_FORMAT",
         "no module section");
    emit("aligned_section_past_end", aligned_linear(AL_SECTION_PAST_END, &x), "NN_ERR_FORMAT",
         "section 2 (type 3) length 1073741824 exceeds the");
}

/* The valid model whose metadata holds one key that declares key_len
 * bytes, followed by 8. */
static buf key_length_file(uint32_t key_len) {
    buf m = {0};
    u32(&m, 1);
    u32(&m, key_len);
    put(&m, "abcdefgh", 8);
    section s[3] = {{1, 0, m, 0}, {2, 0, module_body("Linear"), 0}, {3, 0, good_tensors(), 0}};
    return file_of(1, 0, s, 3);
}

static void catalogue(void) {
    emit("valid_linear", model_with(good_tensors()), "NN_OK", "-");
    emit("valid_bf16_linear", model_with_tree(bf16_linear_body(), bf16_tensors()), "NN_OK", "-");
    /* bf16 tensors for an f32 Linear: the module asks for twice the weight
     * bytes the file holds, refused before the allocation that exceeds them. */
    emit("half_tensor_for_f32_linear", model_with(bf16_tensors()), "NN_ERR_LIMIT",
         "exceeds the 0 bytes the input justifies");

    buf f = model_with(good_tensors());
    f.p[1] = 'X';
    emit("bad_magic", f, "NN_ERR_FORMAT", "bad magic");

    section s1[3] = {{1, 0, meta_body(), 0}, {2, 0, module_body("Linear"), 0}, {3, 0, good_tensors(), 0}};
    emit("future_major", file_of(2, 0, s1, 3), "NN_ERR_VERSION", "format version 2.0");

    f = model_with(good_tensors());
    f.len = f.len / 2;
    emit("truncated", f, "NN_ERR_TRUNCATED", "its header declares");

    /* Cut after its metadata section's header, which (like the file's)
     * declares 1 GiB: read from a callback, whose length is unknown until it
     * ends, the section must not be allocated at its declared size. */
    f = model_with(good_tensors());
    patch64(&f, 16, f.len + (1u << 30));
    patch64(&f, 32 + 8, 1u << 30);
    f.len = 32 + 24 + 16;
    emit("truncated_huge_section", f, "NN_ERR_TRUNCATED", "its header declares 1073742270");

    f = model_with(good_tensors());
    put(&f, "junk!", 5);
    emit("trailing_garbage", f, "NN_ERR_FORMAT", "5 trailing bytes");

    f = model_with(good_tensors());
    f.p[f.len - 20] ^= 0x40;
    emit("byte_flipped", f, "NN_ERR_CHECKSUM", "file CRC-32");

    section s2[3] = {{1, 0, meta_body(), 0}, {2, 0, module_body("Linear"), 0}, {3, 0, good_tensors(), 1}};
    emit("section_crc", file_of(1, 0, s2, 3), "NN_ERR_CHECKSUM", "tensor section 2 CRC-32");

    /* Metadata key length 0xFFFFFFF0: the llama.cpp calloc(n + 1) class. */
    emit("huge_string_length", key_length_file(0xFFFFFFF0u), "NN_ERR_LIMIT",
         "key length 4294967280 exceeds the limit");
    emit("string_past_section", key_length_file(60000), "NN_ERR_FORMAT",
         "key length 60000 exceeds the 8 bytes left");

    tdesc w = {"0.weight", 0, 2, 0, {3, 2}, 0, 24, 24};
    static uint8_t zeros[256];
    emit("tensor_count_overflow", model_with(tensors_body(&w, 1, 0xFFFFFFFFu, zeros, 24)),
         "NN_ERR_LIMIT", "tensor count 4294967295 exceeds the limit");
    emit("tensor_count_past_section", model_with(tensors_body(&w, 1, 5000, zeros, 24)),
         "NN_ERR_FORMAT", "tensor count 5000 cannot fit");

    tdesc t = w;
    t.ndim = 200;
    emit("ndim_too_large", one_tensor(t, zeros, 24), "NN_ERR_LIMIT", "ndim = 200 exceeds");

    t = (tdesc){"0.weight", 0, 3, 0, {1LL << 31, 1LL << 31, 4}, 0, 24, 24};
    emit("shape_product_overflow", one_tensor(t, zeros, 24), "NN_ERR_OVERFLOW", "too many elements");

    t = (tdesc){"0.weight", 0, 2, 0, {3, -2}, 0, 24, 24};
    emit("negative_dim", one_tensor(t, zeros, 24), "NN_ERR_SHAPE", "negative");

    t = w;
    t.dtype = 99;
    emit("unknown_dtype", one_tensor(t, zeros, 24), "NN_ERR_DTYPE", "unknown dtype 99");
    /* The codes nn_dtype reserves but no tensor holds (f64, i32), and the
     * first code past the table, next to the storage dtypes f16 / bf16 / i8. */
    t.dtype = 1;
    emit("reserved_dtype_f64", one_tensor(t, zeros, 24), "NN_ERR_DTYPE", "unknown dtype 1");
    t.dtype = 5;
    emit("reserved_dtype_i32", one_tensor(t, zeros, 24), "NN_ERR_DTYPE", "unknown dtype 5");
    t.dtype = 8;
    emit("dtype_past_table", one_tensor(t, zeros, 24), "NN_ERR_DTYPE", "unknown dtype 8");
    /* A [3,2] bf16 tensor sized as if it were f32: 12 bytes, not 24. */
    t.dtype = 3;
    emit("half_size_mismatch", one_tensor(t, zeros, 24), "NN_ERR_FORMAT", "its shape needs 12");

    t = w;
    t.offset = 0xFFFFFFFFFFFFFFF0ull;
    emit("offset_out_of_range", one_tensor(t, zeros, 24), "NN_ERR_RANGE",
         "outside the 24-byte data area");

    tdesc two[2] = {{"0.weight", 0, 2, 0, {3, 2}, 0, 24, 24}, {"0.bias", 0, 1, 0, {3}, 12, 12, 12}};
    emit("offsets_overlap", model_with(tensors_body(two, 2, 2, zeros, 36)), "NN_ERR_FORMAT",
         "overlaps the previous tensor");

    tdesc dup[2] = {{"0.weight", 0, 2, 0, {3, 2}, 0, 24, 24}, {"0.weight", 0, 1, 0, {3}, 24, 12, 12}};
    emit("duplicate_name", model_with(tensors_body(dup, 2, 2, zeros, 36)), "NN_ERR_FORMAT",
         "'0.weight' is repeated");

    t = w;
    t.raw = 20;
    emit("size_mismatch", one_tensor(t, zeros, 24), "NN_ERR_FORMAT", "its shape needs 24");

    /* 1 GiB declared from 100 compressed bytes: over zlib's 1032:1. */
    t = (tdesc){"0.weight", 0, 1, 1, {1LL << 28}, 0, 100, 1ULL << 30};
    emit("decompression_bomb", one_tensor(t, zeros, 64 + 36), "NN_ERR_LIMIT", "maximum ratio");

    /* A real stream of 4096 zero bytes declared as 24 (within the ratio);
     * the bias is there, so the tree matches and the data is decoded. */
    static uint8_t big[4096 + 12];
    uLongf zlen = compressBound(4096);
    uint8_t *z = malloc(zlen + 12);
    compress2(z, &zlen, big, 4096, 9);
    memset(z + zlen, 0, 12);
    tdesc wb[2] = {{"0.weight", 0, 2, 1, {3, 2}, 0, zlen, 24}, {"0.bias", 0, 1, 0, {3}, zlen, 12, 12}};
    emit("inflates_past_declared", model_with(tensors_body(wb, 2, 2, z, zlen + 12)),
         "NN_ERR_FORMAT", "inflates to more than its declared 24 bytes");
    free(z);

    /* A 64 MiB tensor (a real 65 KB zlib stream, within every limit) where
     * the module tree, Linear(2, 3), wants [3, 2]: rejected by the name and
     * shape match, before anything is inflated or allocated. */
    emit("tensor_bigger_than_module", model_with(linear_tensors(4096, 4096, 1)), "NN_ERR_FORMAT",
         "wrong shape 0.weight, 0.bias (0.weight: module [3,2], file [4096,4096])");

    emit("unknown_module_type", model_with_tree(module_body("EvilModule"), good_tensors()),
         "NN_ERR_FORMAT", "unknown module type 'EvilModule'");

    emit("module_too_deep", tree_file(deep_module_body(40)), "NN_ERR_LIMIT", "nesting depth");

    /* The sequence-model kinds (Select, ModuleList, ModuleDict, Embedding
     * padding_idx, recurrent options): hyperparameters out of their domain
     * and children a ModuleList cannot have are malformed files. */
    {
        static const char *const sel[] = {"dim", "index"};
        static const double bad_dim[] = {9, 0}, frac_index[] = {1, 0.5};
        static const char *const emb[] = {"num_embeddings", "embedding_dim", "padding_idx"};
        static const double bad_pad[] = {4, 2, 4};
        static const char *const rec[] = {"input_size", "hidden_size", "bidirectional"};
        static const double bad_bidir[] = {3, 2, 2};
        static const char *const drop[] = {"input_size", "hidden_size", "num_layers", "dropout"};
        static const double bad_drop[] = {3, 2, 2, 1.5};
        static const char *const extra[] = {"length"};
        static const char *const lin_wdt[] = {"in_features", "out_features", "bias",
                                              "weight_dtype"};
        static const double bad_wdt[] = {2, 3, 0, 5};
        static const char *const conv_wdt[] = {"in_channels", "out_channels", "kernel_h",
                                               "kernel_w", "weight_dtype"};
        static const double frac_wdt[] = {1, 1, 1, 1, 2.5};
        static const double one[] = {1};
        /* GPT (a container kind): its hyperparameters are all a file can
         * get wrong at load; missing or misshapen tensors under it are
         * reported where it is used (tests/module/test_gpt.c). */
        static const char *const gpt[] = {"vocab_size", "block_size", "n_layer", "n_head",
                                          "n_embd",     "dropout",    "bias",    "tie_weights"};
        static const double gpt_heads[] = {10, 8, 1, 4, 30, 0, 1, 1},
                            gpt_drop[] = {10, 8, 1, 2, 16, 1.5, 1, 1},
                            gpt_block[] = {10, 1e12, 1, 2, 16, 0, 1, 1},
                            gpt_tie[] = {10, 8, 1, 2, 16, 0, 1, 0.5},
                            gpt_drop_ok[] = {10, 8, 1, 2, 16, 0.1, 1, 1};
        /* int8 layers (module/quantized.c): activation parameters */
        static const char *const ql[] = {"in_features", "out_features", "act_scale",
                                         "act_zero_point"};
        static const double bad_zp[] = {2, 3, 0.5, 300}, bad_scale[] = {2, 3, -1, 0};
        struct {
            const char *name;
            buf tree;
            const char *msg;
        } cases[] = {
            {"select_bad_dim", linear_then(leaf_node("Select", 2, sel, bad_dim)),
             "Select: dim = 9, expected an integer in -8..7"},
            {"select_fractional_index", linear_then(leaf_node("Select", 2, sel, frac_index)),
             "Select: index = 0.5"},
            {"embedding_padding_idx_out_of_range",
             linear_then(leaf_node("Embedding", 3, emb, bad_pad)),
             "Embedding: padding_idx = 4, expected an integer in -1..3"},
            {"lstm_bidirectional_out_of_range", linear_then(leaf_node("LSTM", 3, rec, bad_bidir)),
             "LSTM: bidirectional = 2, expected an integer in 0..1"},
            {"gru_dropout_out_of_range", linear_then(leaf_node("GRU", 4, drop, bad_drop)),
             "GRU: dropout = 1.5, expected a value in [0, 1]"},
            {"module_list_hyperparameter", linear_then(leaf_node("ModuleList", 1, extra, one)),
             "ModuleList: unknown hyperparameter 'length'"},
            {"gpt_heads_not_dividing", linear_then(leaf_node("GPT", 8, gpt, gpt_heads)),
             "GPT: n_embd 30 is not divisible by n_head 4"},
            {"gpt_dropout_out_of_range", linear_then(leaf_node("GPT", 8, gpt, gpt_drop)),
             "GPT: dropout = 1.5, expected a value in [0, 1)"},
            {"gpt_block_size_too_large", linear_then(leaf_node("GPT", 8, gpt, gpt_block)),
             "GPT: block_size = 1e+12, expected an integer in 1..16777216"},
            {"gpt_tie_not_boolean", linear_then(leaf_node("GPT", 8, gpt, gpt_tie)),
             "GPT: tie_weights = 0.5, expected 0 or 1"},
            {"gpt_missing_hyperparameter", linear_then(leaf_node("GPT", 4, gpt, gpt_heads)),
             "GPT: hyperparameter 'n_embd' is missing"},
            {"gpt_without_children", linear_then(leaf_node("GPT", 8, gpt, gpt_drop_ok)),
             "GPT: GPT has no parameter 'transformer.wte.weight'"},
            {"linear_bad_weight_dtype", linear_then(leaf_node("Linear", 4, lin_wdt, bad_wdt)),
             "Linear: weight_dtype = 5, expected 0 (f32), 2 (f16) or 3 (bf16)"},
            {"conv2d_fractional_weight_dtype",
             linear_then(leaf_node("Conv2d", 5, conv_wdt, frac_wdt)),
             "Conv2d: weight_dtype = 2.5"},
            {"quantized_linear_zero_point_out_of_range",
             linear_then(leaf_node("QuantizedLinear", 4, ql, bad_zp)),
             "QuantizedLinear: act_zero_point = 300, expected an integer in 0..255"},
            {"quantized_linear_negative_scale",
             linear_then(leaf_node("QuantizedLinear", 4, ql, bad_scale)),
             "QuantizedLinear: act_scale = -1"},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            emit(cases[i].name, tree_file(cases[i].tree), "NN_ERR_FORMAT", cases[i].msg);
        }
        /* An int8 convolution deeper than its 32-bit sums allow (4096 x 5 x 5
         * inputs per output): refused before any buffer is made. */
        static const char *const qc[] = {"in_channels", "out_channels", "kernel_h", "kernel_w"};
        static const double deep[] = {4096, 2, 5, 5};
        emit("quantized_conv_too_deep",
             tree_file(linear_then(leaf_node("QuantizedConv2d", 4, qc, deep))), "NN_ERR_LIMIT",
             "exceeds the int8 limit 65536");
        /* Ties (a "#ties" list before the root node, FORMAT.md 6): each must
         * name an existing parameter, tied to an earlier one of its shape. */
        static const struct {
            const char *name, *dst, *src, *status, *msg;
        } ties[] = {
            {"tie_to_nonexistent_parameter", "0.nothing", "0.weight", "NN_ERR_FORMAT",
             "no parameter '0.nothing' in the module tree"},
            {"tie_source_missing", "0.weight", "7.weight", "NN_ERR_FORMAT",
             "tie '0.weight' <- '7.weight': no such parameter before it"},
            {"tie_shape_mismatch", "0.weight", "0.bias", "NN_ERR_FORMAT",
             "cannot tie 'weight' (f32 [3,2]) to a f32 [3] tensor"},
            {"tie_to_itself", "0.bias", "0.bias", "NN_ERR_FORMAT", "'0.bias' is tied to itself"},
        };
        for (size_t i = 0; i < sizeof ties / sizeof ties[0]; i++) {
            buf m = {0};
            str(&m, "#ties");
            u32(&m, 1);
            str(&m, ties[i].dst);
            str(&m, ties[i].src);
            put_node(&m, module_body("Linear"));
            emit(ties[i].name, tree_file(m), ties[i].status, ties[i].msg);
        }
        buf m = {0};
        str(&m, "#ties");
        u32(&m, 0xFFFFFFFFu);
        emit("tie_count_too_large", tree_file(m), "NN_ERR_LIMIT", "tie count 4294967295");

        /* A ModuleList's children are "0", "1", ... like a Sequential's. */
        emit("module_list_child_name",
             tree_file(node_with_linear("ModuleList", 0, NULL, NULL, "first")), "NN_ERR_FORMAT",
             "ModuleList child named 'first', expected '0'");
    }

    /* Attention and transformer kinds: hyperparameters out of their domain
     * (heads not dividing the width, absurd sizes) and composite modules
     * whose children are missing, unexpected or of the wrong size. */
    {
        static const char *const mha[] = {"embed_dim", "num_heads", "bias"};
        static const double mha_10_3[] = {10, 3, 1}, mha_huge[] = {1e6, 1, 0},
                            mha_1_1[] = {1, 1, 0};
        /* int8 in-projections (quantized = 1: children q_proj, k_proj, v_proj) */
        static const char *const mhaq[] = {"embed_dim", "num_heads", "bias", "quantized"};
        static const double mhaq_2[] = {2, 1, 0, 2}, mhaq_half[] = {2, 1, 0, 0.5},
                            mhaq_1[] = {2, 1, 0, 1};
        static const char *const tl[] = {"d_model", "nhead", "dim_feedforward"};
        static const double tl_8_3[] = {8, 3, 16}, tl_1_1[] = {1, 1, 1};
        static const char *const st[] = {"num_layers", "norm"};
        static const double st_huge[] = {1e9, 0}, st_2[] = {2, 0};
        struct {
            const char *name;
            buf tree;
            const char *status, *msg;
        } cases[] = {
            {"mha_heads_not_dividing", leaf_node("MultiheadAttention", 3, mha, mha_10_3),
             "NN_ERR_FORMAT", "MultiheadAttention: embed_dim = 10 is not divisible by num_heads = 3"},
            {"mha_huge_embed_dim", leaf_node("MultiheadAttention", 3, mha, mha_huge),
             "NN_ERR_LIMIT", "exceeds the"},
            {"mha_missing_out_proj", leaf_node("MultiheadAttention", 3, mha, mha_1_1),
             "NN_ERR_FORMAT", "MultiheadAttention: child 'out_proj' is missing"},
            {"mha_quantized_not_boolean", leaf_node("MultiheadAttention", 4, mhaq, mhaq_2),
             "NN_ERR_FORMAT", "MultiheadAttention: quantized = 2, expected an integer in 0..1"},
            {"mha_quantized_fractional", leaf_node("MultiheadAttention", 4, mhaq, mhaq_half),
             "NN_ERR_FORMAT", "MultiheadAttention: quantized = 0.5, expected an integer in 0..1"},
            {"mha_quantized_missing_projections", leaf_node("MultiheadAttention", 4, mhaq, mhaq_1),
             "NN_ERR_FORMAT", "MultiheadAttention: child 'q_proj' is missing"},
            {"encoder_layer_nhead_not_dividing",
             leaf_node("TransformerEncoderLayer", 3, tl, tl_8_3), "NN_ERR_FORMAT",
             "TransformerEncoderLayer: d_model = 8 is not divisible by nhead = 3"},
            {"encoder_layer_missing_children",
             leaf_node("TransformerEncoderLayer", 3, tl, tl_1_1), "NN_ERR_FORMAT",
             "TransformerEncoderLayer: child 'self_attn' is missing"},
            {"decoder_layer_missing_children",
             leaf_node("TransformerDecoderLayer", 3, tl, tl_1_1), "NN_ERR_FORMAT",
             "TransformerDecoderLayer: child 'self_attn' is missing"},
            {"encoder_num_layers_huge", leaf_node("TransformerEncoder", 2, st, st_huge),
             "NN_ERR_FORMAT", "TransformerEncoder: num_layers = 1e+09, expected an integer in "
             "1..65536"},
            {"encoder_missing_layers", leaf_node("TransformerEncoder", 2, st, st_2),
             "NN_ERR_FORMAT", "TransformerEncoder: child 'layers' must be a ModuleList of 2 "
             "TransformerEncoderLayers"},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            emit(cases[i].name, tree_file(cases[i].tree), cases[i].status, cases[i].msg);
        }
        /* An encoder layer with a child it does not have (a Linear named "extra"). */
        emit("encoder_layer_unexpected_child",
             tree_file(node_with_linear("TransformerEncoderLayer", 3, tl, tl_1_1, "extra")),
             "NN_ERR_FORMAT", "TransformerEncoderLayer: unexpected child 'extra'");
        /* MultiheadAttention(2, 1) whose out_proj is a Linear(2 -> 3). */
        static const double mha_2_1[] = {2, 1, 0};
        emit("mha_out_proj_wrong_size",
             tree_file_with(node_with_linear("MultiheadAttention", 3, mha, mha_2_1, "out_proj"),
                            linear_tensors(6, 4, 0)),
             "NN_ERR_FORMAT",
             "MultiheadAttention: child 'out_proj' is a Linear, expected Linear(2, 2, bias=False)");
        /* A quantized MultiheadAttention(2, 1) whose q_proj is a float Linear,
         * then one whose q_proj is a float Linear but quantized = 0 (a float
         * MHA has no child q_proj). */
        for (int v = 0; v < 2; v++) {
            const double quantized[] = {mhaq_1[0], mhaq_1[1], mhaq_1[2], 1 - v};
            emit(
                v ? "mha_float_with_q_proj" : "mha_quantized_float_q_proj",
                tree_file_with(node_with_linear("MultiheadAttention", 4, mhaq, quantized, "q_proj"),
                               linear_tensors(6, 4, 0)),
                "NN_ERR_FORMAT",
                v ? "MultiheadAttention: unexpected child 'q_proj'"
                  : "MultiheadAttention: child 'q_proj' is a Linear, expected "
                    "QuantizedLinear(2, 2) (quantized = 1)");
        }
    }

    /* Residual (a container kind): shortcut is a flag; its children are
     * "body" and, when the flag says so, "shortcut" -- nothing else. */
    {
        static const char *const rk[] = {"shortcut"};
        static const double half[] = {0.5}, no[] = {0}, yes[] = {1};
        emit("residual_shortcut_not_boolean", tree_file(leaf_node("Residual", 1, rk, half)),
             "NN_ERR_FORMAT", "Residual: shortcut = 0.5, expected 0 or 1");
        emit("residual_without_body", tree_file(linear_then(leaf_node("Residual", 1, rk, yes))),
             "NN_ERR_FORMAT", "Residual: child 'body' is missing");
        /* a "shortcut" child while the flag says none */
        emit("residual_unexpected_child",
             tree_file(node_with_linear("Residual", 1, rk, no, "shortcut")), "NN_ERR_FORMAT",
             "Residual: unexpected child 'shortcut' (body)");
    }

    /* Regression (found by the fuzzer): a hyperparameter count over the cap
     * once made the cleanup free past the key table. */
    buf m = {0};
    str(&m, "Linear");
    u32(&m, 1000);
    for (int i = 0; i < 1000; i++) u8(&m, 0);
    emit("hyperparameter_count_too_large", tree_file(m), "NN_ERR_LIMIT",
         "hyperparameter count 1000 exceeds the limit of 256");

    /* A module whose hyperparameters ask for far more parameter bytes than
     * the file's tensors hold (3.6 GB for Linear(30000, 30000)): rejected
     * before the allocation, by the tensor budget. */
    emit("module_bigger_than_tensors", tree_file(linear_leaf("Linear", 30000, 30000)),
         "NN_ERR_LIMIT", "exceeds the");

    buf extra = {0};
    str(&extra, "from the future");
    section s7[4] = {{1, 0, meta_body(), 0}, {2, 0, module_body("Linear"), 0}, {3, 0, good_tensors(), 0},
                     {99, 0, extra, 0}};
    emit("unknown_required_section", file_of(1, 1, s7, 4), "NN_ERR_UNSUPPORTED",
         "not marked skippable");

    extra = (buf){0};
    str(&extra, "from the future");
    section s8[4] = {{1, 0, meta_body(), 0}, {99, 1, extra, 0}, {2, 0, module_body("Linear"), 0},
                     {3, 0, good_tensors(), 0}};
    emit("newer_minor_skippable", file_of(1, 7, s8, 4), "NN_OK", "-");

    f = model_with(good_tensors());
    patch64(&f, 32 + 8, 1u << 30); /* first section's length */
    reseal(&f);
    emit("section_length_past_end", f, "NN_ERR_FORMAT", "length 1073741824 exceeds the");

    f = model_with(good_tensors());
    patch32(&f, 24, 100000);
    reseal(&f);
    emit("section_count_too_large", f, "NN_ERR_LIMIT", "section count 100000 exceeds");
    sealed_catalogue();
    aligned_catalogue();
}

/* The large cases, MIB mebibytes of data each. */
static void big(int64_t mib) {
    char path[4096];
    snprintf(path, sizeof path, "%s/BIG_MANIFEST", g_dir);
    FILE *m = fopen(path, "w");
    if (!m) die("cannot write BIG_MANIFEST");
    int64_t rows = mib * 256; /* Linear(1024, rows): rows KiB of weights */
    unsigned long long ret = (unsigned long long)rows * 1024 * 4 + (unsigned long long)rows * 4;
    buf f = model_with_tree(linear_module(1024, rows), linear_tensors(rows, 1024, 1));
    write_file("big_compressed.nnm", &f);
    free(f.p);
    f = model_with_tree(linear_module(1024, rows), linear_tensors(rows, 1024, 0));
    write_file("big_stored.nnm", &f);
    free(f.p);
    f = model_with(linear_tensors(rows, 1024, 1));
    write_file("huge_tensor_small_tree.nnm", &f);
    free(f.p);
    fprintf(m, "model big_compressed.nnm NN_OK %llu -\n", ret);
    fprintf(m, "model big_stored.nnm NN_OK %llu -\n", ret);
    fprintf(m, "statedict big_compressed.nnm NN_OK %llu -\n", ret);
    fprintf(m, "statedict big_stored.nnm NN_OK %llu -\n", ret);
    fprintf(m, "model huge_tensor_small_tree.nnm NN_ERR_FORMAT 0 wrong shape 0.weight\n");
    idx_set("big", (uint32_t)(mib * 1337), m, 1); /* 1337 x 784 bytes ~ 1 MiB */
    if (fclose(m) != 0) die("cannot write BIG_MANIFEST");
}

static FILE *open_manifest(const char *name) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    if (!f) die("cannot write a manifest");
    return f;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--big")) {
        g_dir = argv[2];
        long long mib = atoll(argv[3]);
        if (mib < 1 || mib > 2048) die("MIB must be in [1, 2048]");
        big(mib);
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR | --big OUTDIR MIB\n", argv[0]);
        return 2;
    }
    g_dir = argv[1];
    g_manifest = open_manifest("MANIFEST");
    catalogue();
    /* IDX pairs: 60,000 zero images (47 MB inflated, 46 KB gzip) whose
     * labels file is valid, only a header, empty or one label short. */
    g_idx_manifest = open_manifest("IDX_MANIFEST");
    idx_set("idx", 60000, g_idx_manifest, 0);
    /* 10^7 images claimed by a 30-byte gzip file: more than deflate can
     * expand to, rejected from the file's size before anything is read. */
    uint32_t claim[3] = {10000000, 28, 28};
    idx_file("idx_images_claim.idx.gz", 3, claim, 0, 1);
    idx_file("idx_labels_claim.idx", 1, claim, 0, 0);
    fprintf(g_idx_manifest,
            "idx_images_claim.idx.gz idx_labels_claim.idx NN_ERR_TRUNCATED header promises "
            "7840000000 data bytes, more than a\n");
    /* close both manifests even when the first close fails */
    int bad = fclose(g_manifest) != 0;
    if (fclose(g_idx_manifest) != 0) bad = 1;
    return bad;
}
