/* MNIST-style IDX files, gzip-compressed or plain. zlib's gz* API reads
 * both: gzread recognises the gzip magic (1f 8b) and otherwise passes the
 * bytes through unchanged. Every header field is checked before any
 * allocation, and payload buffers grow with the data actually read, so a
 * small file claiming huge dims never causes a huge allocation. */
#include "data_internal.h"

#include <errno.h>
#include <string.h>
#include <zlib.h>

#define FN "nn_dataset_from_idx"

typedef struct idx_file {
    gzFile gz;
    const char *path;
    const char *role; /* "images" or "labels" */
    int ndim;
    uint32_t dims[3];
    size_t payload; /* bytes after the header (overflow-checked) */
} idx_file;

/* Map a gz read failure to a status with a message. */
static nn_status gz_fail(const idx_file *f, const char *what) {
    int zerr = 0;
    const char *msg = gzerror(f->gz, &zerr);
    if (zerr == Z_ERRNO)
        return nn__err(NN_ERR_IO, FN ": %s file '%s': read error: %s", f->role, f->path,
                       strerror(errno));
    if (zerr == Z_BUF_ERROR) /* gzip stream cut short */
        return nn__err(NN_ERR_TRUNCATED, FN ": %s file '%s': compressed data ends early (%s)",
                       f->role, f->path, what);
    if (zerr != Z_OK)
        return nn__err(NN_ERR_FORMAT, FN ": %s file '%s': corrupt gzip data: %s", f->role, f->path,
                       msg ? msg : "?");
    return nn__err(NN_ERR_TRUNCATED, FN ": %s file '%s': file ends inside the %s", f->role, f->path,
                   what);
}

/* Read exactly n bytes; a short read is a truncation (or the gz error). */
static nn_status read_exact(idx_file *f, void *buf, size_t n, const char *what) {
    unsigned char *p = buf;
    while (n > 0) {
        unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned)n;
        int got = gzread(f->gz, p, chunk);
        if (got <= 0) return gz_fail(f, what);
        p += got;
        n -= (size_t)got;
    }
    return NN_OK;
}

static const char *idx_dtype_name(unsigned code) {
    switch (code) {
    case 0x09: return "i8";
    case 0x0B: return "i16";
    case 0x0C: return "i32";
    case 0x0D: return "f32";
    case 0x0E: return "f64";
    default: return NULL;
    }
}

/* Open path and validate its header: magic 00 00 <dtype> <ndim>, then ndim
 * big-endian u32 dims; the payload size is their product (u8 elements). */
static nn_status idx_open(idx_file *f, const char *path, const char *role, int want_ndim) {
    f->path = path;
    f->role = role;
    f->gz = gzopen(path, "rb");
    if (!f->gz)
        return nn__err(errno == ENOENT ? NN_ERR_NOT_FOUND : NN_ERR_IO,
                       FN ": cannot open %s file '%s': %s", role, path,
                       errno ? strerror(errno) : "out of memory");
    unsigned char m[4];
    nn_status st = read_exact(f, m, 4, "4-byte magic");
    if (st) return st;
    uint32_t magic = (uint32_t)m[0] << 24 | (uint32_t)m[1] << 16 | (uint32_t)m[2] << 8 | m[3];
    if (m[0] != 0 || m[1] != 0)
        return nn__err(NN_ERR_FORMAT, FN ": %s file '%s': bad magic 0x%08x (expected 0x0000080%d)",
                       role, path, (unsigned)magic, want_ndim);
    if (m[2] != 0x08) {
        const char *dt = idx_dtype_name(m[2]);
        if (dt)
            return nn__err(
                NN_ERR_UNSUPPORTED,
                FN ": %s file '%s': IDX dtype byte 0x%02x (%s) unsupported, expected 0x08 (u8)",
                role, path, m[2], dt);
        return nn__err(NN_ERR_FORMAT, FN ": %s file '%s': invalid IDX dtype byte 0x%02x", role,
                       path, m[2]);
    }
    if (m[3] != want_ndim)
        return nn__err(NN_ERR_FORMAT, FN ": %s file '%s': ndim %u, expected %d", role, path, m[3],
                       want_ndim);
    f->ndim = want_ndim;
    unsigned char d[12];
    if ((st = read_exact(f, d, 4 * (size_t)want_ndim, "header dims"))) return st;
    size_t total = 1;
    for (int i = 0; i < want_ndim; i++) {
        f->dims[i] = (uint32_t)d[4 * i] << 24 | (uint32_t)d[4 * i + 1] << 16 |
                     (uint32_t)d[4 * i + 2] << 8 | d[4 * i + 3];
        if (!nn__size_mul(total, f->dims[i], &total) || total > (size_t)INT64_MAX / 8)
            return nn__err(NN_ERR_OVERFLOW,
                           FN ": %s file '%s': dims product overflows at dim %d = %u", role, path,
                           i, (unsigned)f->dims[i]);
    }
    f->payload = total;
    return NN_OK;
}

/* Read the payload into a buffer that grows with the bytes actually present,
 * then require end of file. */
static nn_status idx_payload(idx_file *f, unsigned char **out) {
    *out = NULL;
    size_t cap = f->payload < (1u << 20) ? f->payload : (1u << 20), have = 0;
    unsigned char *buf = nn__malloc(cap ? cap : 1);
    if (!buf) return NN_ERR_NOMEM;
    while (have < f->payload) {
        if (have == cap) {
            size_t ncap = cap * 2 < f->payload ? cap * 2 : f->payload;
            unsigned char *nb = nn__realloc(buf, ncap);
            if (!nb) goto fail_nomem;
            buf = nb;
            cap = ncap;
        }
        size_t want = cap - have;
        int got = gzread(f->gz, buf + have, want > (1u << 30) ? (1u << 30) : (unsigned)want);
        if (got < 0 || (got == 0 && !gzeof(f->gz))) {
            gz_fail(f, "data");
            goto fail;
        }
        if (got == 0) {
            nn__err(NN_ERR_TRUNCATED,
                    FN ": %s file '%s': header promises %zu data bytes, file has %zu", f->role,
                    f->path, f->payload, have);
            goto fail;
        }
        have += (size_t)got;
    }
    /* End of file must follow; for gzip this also verifies the trailer
     * (CRC-32 and length), whose loss shows only as an error state here. */
    unsigned char extra;
    int got = gzread(f->gz, &extra, 1), zerr = Z_OK;
    if (got == 0) gzerror(f->gz, &zerr);
    if (got != 0 || zerr != Z_OK) {
        if (got < 0 || zerr != Z_OK)
            gz_fail(f, "gzip trailer");
        else
            nn__err(NN_ERR_FORMAT, FN ": %s file '%s': trailing bytes after %zu data bytes",
                    f->role, f->path, f->payload);
        goto fail;
    }
    *out = buf;
    return NN_OK;
fail_nomem:
    nn__free(buf);
    return NN_ERR_NOMEM;
fail:
    nn__free(buf);
    return nn_last_status();
}

static nn_status read_images(idx_file *f, nn_tensor **x) {
    unsigned char *buf;
    nn_status st = idx_payload(f, &buf);
    if (st) return st;
    int64_t shape[4] = {f->dims[0], 1, f->dims[1], f->dims[2]};
    *x = nn__tensor_new(NN_DTYPE_U8, shape, 4);
    if (*x && f->payload) memcpy(nn__u8(*x), buf, f->payload);
    nn__free(buf);
    return *x ? NN_OK : nn_last_status();
}

static nn_status read_labels(idx_file *f, nn_tensor **y) {
    unsigned char *buf;
    nn_status st = idx_payload(f, &buf);
    if (st) return st;
    int64_t n = f->dims[0];
    *y = nn__tensor_new(NN_DTYPE_I64, &n, 1);
    if (*y)
        for (int64_t i = 0; i < n; i++) nn__i64(*y)[i] = buf[i];
    nn__free(buf);
    return *y ? NN_OK : nn_last_status();
}

nn_dataset *nn_dataset_from_idx(const char *images_path, const char *labels_path) {
    if (!nn__check_ptr(images_path, FN, "images_path") ||
        !nn__check_ptr(labels_path, FN, "labels_path"))
        return NULL;
    idx_file im = {0}, lb = {0};
    nn_tensor *x = NULL, *y = NULL;
    nn_status st = idx_open(&im, images_path, "images", 3);
    if (!st) st = idx_open(&lb, labels_path, "labels", 1);
    /* Compare counts before reading megabytes of payload. */
    if (!st && im.dims[0] != lb.dims[0])
        st = nn__err(NN_ERR_FORMAT,
                     FN ": images file '%s' has %u images but labels file '%s' has %u labels",
                     images_path, (unsigned)im.dims[0], labels_path, (unsigned)lb.dims[0]);
    if (!st) st = read_images(&im, &x);
    if (!st) st = read_labels(&lb, &y);
    if (im.gz) gzclose(im.gz);
    if (lb.gz) gzclose(lb.gz);
    if (st) {
        nn__tensor_release(x);
        nn__tensor_release(y);
        return NULL;
    }
    return nn__dataset_new(x, y, FN);
}
