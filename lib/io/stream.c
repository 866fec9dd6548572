/* Where model files come from and go to besides the atomic save (file.c):
 * whole-file reads and caller callbacks. */
#include "io_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ writing */

nn_status nn__io_write_stream(nn_write_fn write_fn, void *user, const uint8_t *data, size_t size,
                              const char *fn) {
    if (!write_fn) return nn__err(NN_ERR_NULL, "%s: argument 'write' is NULL", fn);
    if (write_fn(data, size, user) != 0)
        return nn__err(NN_ERR_IO, "%s: the write callback failed (%zu bytes)", fn, size);
    return NN_OK;
}

/* ------------------------------------------------------------ reading */

nn_status nn__io_read_stream(nn_read_fn read_fn, void *user, int64_t max, uint8_t **data,
                             size_t *size, const char *fn) {
    if (!read_fn) return nn__err(NN_ERR_NULL, "%s: argument 'read' is NULL", fn);
    size_t limit = (uint64_t)max > SIZE_MAX - 1 ? SIZE_MAX - 1 : (size_t)max;
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            /* Room for one byte beyond the limit, to detect an oversized stream. */
            if (cap > limit) {
                nn__err(NN_ERR_LIMIT,
                        "%s: stream exceeds the %lld-byte limit "
                        "(NN_IO_OPTION_MAX_BYTES)",
                        fn, (long long)max);
                goto fail;
            }
            size_t c = cap == 0 ? 4096 : (cap > limit / 2 ? limit + 1 : cap * 2);
            if (c > limit + 1) c = limit + 1;
            uint8_t *p = nn__realloc(buf, c);
            if (!p) goto fail;
            buf = p;
            cap = c;
        }
        int64_t k = read_fn(buf + len, cap - len, user);
        if (k < 0) {
            nn__err(NN_ERR_IO, "%s: the read callback failed after %zu bytes", fn, len);
            goto fail;
        }
        if ((uint64_t)k > cap - len) {
            nn__err(NN_ERR_IO, "%s: the read callback returned %lld for a %zu-byte buffer", fn,
                    (long long)k, cap - len);
            goto fail;
        }
        if (k == 0) break;
        len += (size_t)k;
    }
    *data = buf;
    *size = len;
    return NN_OK;
fail:
    nn__free(buf);
    return nn_last_status();
}

nn_status nn__io_read_path(const char *path, int64_t max, uint8_t **data, size_t *size,
                           const char *fn) {
    if (!nn__check_ptr(path, fn, "path")) return nn_last_status();
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return nn__err(errno == ENOENT ? NN_ERR_NOT_FOUND : NN_ERR_IO, "%s: cannot open '%s': %s",
                       fn, path, strerror(errno));
    struct stat stt;
    nn_status st = NN_OK;
    if (fstat(fd, &stt) != 0 || !S_ISREG(stt.st_mode))
        st = nn__err(NN_ERR_IO, "%s: '%s' is not a regular file", fn, path);
    else if ((uint64_t)stt.st_size > (uint64_t)max || (uint64_t)stt.st_size > SIZE_MAX / 2)
        st = nn__err(NN_ERR_LIMIT,
                     "%s: '%s' has %lld bytes, over the %lld-byte limit "
                     "(NN_IO_OPTION_MAX_BYTES)",
                     fn, path, (long long)stt.st_size, (long long)max);
    uint8_t *buf = NULL;
    size_t n = st ? 0 : (size_t)stt.st_size, got = 0;
    if (!st && !(buf = nn__malloc(n))) st = NN_ERR_NOMEM;
    while (!st && got < n) {
        ssize_t k = read(fd, buf + got, n - got > (1u << 30) ? (1u << 30) : n - got);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0)
            st = nn__err(NN_ERR_IO, "%s: reading '%s' failed: %s", fn, path, strerror(errno));
        else if (k == 0)
            n = got; /* shrank meanwhile: parse what is there */
        else
            got += (size_t)k;
    }
    close(fd);
    if (st) {
        nn__free(buf);
        return st;
    }
    *data = buf;
    *size = n;
    return NN_OK;
}
