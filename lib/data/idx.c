/* MNIST-style IDX files, gzip-compressed or plain. zlib's gz* API reads
 * both: gzread recognises the gzip magic (1f 8b) and otherwise passes the
 * bytes through unchanged.
 *
 * Cheap checks come before any expensive decoding: both headers, the
 * counts, each file's size against what its header promises (a plain file
 * must hold exactly that; a gzip file cannot inflate past deflate's
 * 1032:1), then the labels (n bytes), and only then the images (n x 784),
 * inflated straight into the tensor that is returned. A file that is not
 * a regular file (a pipe) has no size to check: its data goes to a buffer
 * that grows with the bytes actually read, so a small input claiming huge
 * dims never causes a huge allocation. */
#include "data_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define GZ_MAX_RATIO 1032 /* deflate never packs more than 1032 bytes into one */

#define FN "nn_dataset_from_idx"

typedef struct idx_file {
    gzFile gz;
    const char *path;
    const char *role; /* "images" or "labels" */
    int ndim;
    uint32_t dims[3];
    size_t payload;    /* bytes after the header (overflow-checked) */
    long long size;    /* bytes in the file if it is a regular file, else -1 */
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
    f->size = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return nn__err(errno == ENOENT ? NN_ERR_NOT_FOUND : NN_ERR_IO,
                       FN ": cannot open %s file '%s': %s", role, path, strerror(errno));
    struct stat stt;
    if (fstat(fd, &stt) == 0 && S_ISREG(stt.st_mode)) f->size = (long long)stt.st_size;
    errno = 0;
    f->gz = gzdopen(fd, "rb");
    if (!f->gz) {
        close(fd);
        return nn__err(NN_ERR_IO, FN ": cannot open %s file '%s': %s", role, path,
                       errno ? strerror(errno) : "out of memory");
    }
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

/* What a file of known size can hold, checked before any data is read: a
 * plain file exactly its header's promise, a gzip file no more than deflate
 * can expand to. */
static nn_status idx_check_size(const idx_file *f) {
    if (f->size < 0) return NN_OK;
    unsigned long long header = 4 + 4 * (unsigned long long)f->ndim, have = 0;
    if (!gzdirect(f->gz)) {
        unsigned long long cap = (unsigned long long)f->size * GZ_MAX_RATIO;
        if (f->payload > cap - header)
            return nn__err(NN_ERR_TRUNCATED,
                           FN ": %s file '%s': header promises %zu data bytes, more than a "
                           "%lld-byte gzip file can hold",
                           f->role, f->path, f->payload, f->size);
        return NN_OK;
    }
    if ((unsigned long long)f->size > header) have = (unsigned long long)f->size - header;
    if (have < f->payload)
        return nn__err(NN_ERR_TRUNCATED,
                       FN ": %s file '%s': header promises %zu data bytes, file has %llu", f->role,
                       f->path, f->payload, have);
    if (have > f->payload)
        return nn__err(NN_ERR_FORMAT, FN ": %s file '%s': trailing bytes after %zu data bytes",
                       f->role, f->path, f->payload);
    return NN_OK;
}

/* Read up to n payload bytes into p (*got; 0 at end of file). */
static nn_status idx_read(idx_file *f, unsigned char *p, size_t n, size_t *got) {
    int k = gzread(f->gz, p, n > (1u << 30) ? (1u << 30) : (unsigned)n);
    *got = k > 0 ? (size_t)k : 0;
    if (k < 0 || (k == 0 && !gzeof(f->gz))) return gz_fail(f, "data");
    return NN_OK;
}

static nn_status idx_short(const idx_file *f, size_t have) {
    return nn__err(NN_ERR_TRUNCATED, FN ": %s file '%s': header promises %zu data bytes, file has %zu",
                   f->role, f->path, f->payload, have);
}

/* End of file must follow the payload; for gzip this also verifies the
 * trailer (CRC-32 and length), whose loss shows only as an error state. */
static nn_status idx_end(idx_file *f) {
    unsigned char extra;
    int got = gzread(f->gz, &extra, 1), zerr = Z_OK;
    if (got == 0) gzerror(f->gz, &zerr);
    if (got < 0 || zerr != Z_OK) return gz_fail(f, "gzip trailer");
    if (got != 0)
        return nn__err(NN_ERR_FORMAT, FN ": %s file '%s': trailing bytes after %zu data bytes",
                       f->role, f->path, f->payload);
    return NN_OK;
}

/* The payload into dst (f->payload bytes, already allocated), then EOF. */
static nn_status idx_read_into(idx_file *f, unsigned char *dst) {
    size_t have = 0;
    while (have < f->payload) {
        size_t got;
        nn_status st = idx_read(f, dst + have, f->payload - have, &got);
        if (st) return st;
        if (got == 0) return idx_short(f, have);
        have += got;
    }
    return idx_end(f);
}

/* The payload into a buffer that grows with the bytes actually present
 * (for inputs of unknown size), then EOF. */
static nn_status idx_payload(idx_file *f, unsigned char **out) {
    *out = NULL;
    size_t cap = f->payload < (1u << 20) ? f->payload : (1u << 20), have = 0;
    unsigned char *buf = nn__malloc(cap ? cap : 1);
    if (!buf) return NN_ERR_NOMEM;
    nn_status st = NN_OK;
    while (!st && have < f->payload) {
        if (have == cap) {
            size_t ncap = cap * 2 < f->payload ? cap * 2 : f->payload;
            unsigned char *nb = nn__realloc(buf, ncap);
            if (!nb) {
                st = NN_ERR_NOMEM;
                break;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got;
        st = idx_read(f, buf + have, cap - have, &got);
        if (!st && got == 0) st = idx_short(f, have);
        have += got;
    }
    if (!st) st = idx_end(f);
    if (st) {
        nn__free(buf);
        return st;
    }
    *out = buf;
    return NN_OK;
}

/* Images straight into the returned tensor when the file's size bounds the
 * claim; through a growing buffer otherwise. */
static nn_status read_images(idx_file *f, nn_tensor **x) {
    int64_t shape[4] = {f->dims[0], 1, f->dims[1], f->dims[2]};
    if (f->size >= 0) {
        *x = nn__tensor_new(NN_DTYPE_U8, shape, 4);
        if (!*x) return nn_last_status();
        return idx_read_into(f, nn__u8(*x));
    }
    unsigned char *buf;
    nn_status st = idx_payload(f, &buf);
    if (st) return st;
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
    /* Then what each file's size allows, then the labels (n bytes), and
     * only then the images (n x 784 bytes). */
    if (!st) st = idx_check_size(&im);
    if (!st) st = idx_check_size(&lb);
    if (!st) st = read_labels(&lb, &y);
    if (!st) st = read_images(&im, &x);
    if (im.gz) gzclose(im.gz);
    if (lb.gz) gzclose(lb.gz);
    if (st) {
        nn__tensor_release(x);
        nn__tensor_release(y);
        return NULL;
    }
    return nn__dataset_new(x, y, FN);
}
