/* Where model files go and come from: an atomic file save, whole-file reads,
 * caller callbacks. The system calls of the save go through nn__io_sys_ops
 * so tests can inject a failure at each step. */
#include "io_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int sys_open(const char *path, int flags, int mode) { return open(path, flags, mode); }
static int sys_fsync(int fd) { return fsync(fd); }

nn__io_sys nn__io_sys_ops = {sys_open, write, sys_fsync, close, rename, unlink};

void nn__io_sys_reset(void) {
    nn__io_sys_ops.open = sys_open;
    nn__io_sys_ops.write = write;
    nn__io_sys_ops.fsync = sys_fsync;
    nn__io_sys_ops.close = close;
    nn__io_sys_ops.rename = rename;
    nn__io_sys_ops.unlink = unlink;
}

/* ------------------------------------------------------- atomic save */

static nn_status write_all(int fd, const uint8_t *p, size_t n, const char *fn, const char *tmp) {
    while (n > 0) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : n;
        ssize_t k = nn__io_sys_ops.write(fd, p, chunk);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0)
            return nn__err(NN_ERR_IO, "%s: writing '%s' failed: %s", fn, tmp,
                           k < 0 ? strerror(errno) : "no progress");
        p += k;
        n -= (size_t)k;
    }
    return NN_OK;
}

/* Create "<path>.tmp-<pid>-<n>" exclusively (mode 0666 minus umask, like fopen). */
static int create_temp(const char *path, char **tmp_out, const char *fn) {
    static _Atomic unsigned counter = 0;
    size_t cap = strlen(path) + 64;
    char *tmp = nn__malloc(cap);
    if (!tmp) return -1;
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned n = atomic_fetch_add(&counter, 1);
        snprintf(tmp, cap, "%s.tmp-%ld-%u-%ld", path, (long)getpid(), n, (long)time(NULL));
        int fd = nn__io_sys_ops.open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0) {
            *tmp_out = tmp;
            return fd;
        }
        if (errno != EEXIST) {
            nn__err(NN_ERR_IO, "%s: cannot create '%s': %s", fn, tmp, strerror(errno));
            nn__free(tmp);
            return -1;
        }
    }
    nn__err(NN_ERR_IO, "%s: cannot create a temporary file next to '%s'", fn, path);
    nn__free(tmp);
    return -1;
}

/* fsync the directory holding path so the rename itself is durable. */
static nn_status sync_dir(const char *path, const char *fn) {
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash)
        dir = nn__strdup(".");
    else if (slash == path)
        dir = nn__strdup("/");
    else {
        size_t n = (size_t)(slash - path);
        dir = nn__malloc(n + 1);
        if (dir) {
            memcpy(dir, path, n);
            dir[n] = '\0';
        }
    }
    if (!dir) return NN_ERR_NOMEM;
    int fd = nn__io_sys_ops.open(dir, O_RDONLY | O_CLOEXEC | O_DIRECTORY, 0);
    nn_status st = NN_OK;
    if (fd < 0)
        st = nn__err(NN_ERR_IO, "%s: cannot open directory '%s': %s", fn, dir, strerror(errno));
    else {
        if (nn__io_sys_ops.fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
            st = nn__err(NN_ERR_IO, "%s: fsync of directory '%s' failed: %s", fn, dir,
                         strerror(errno));
        nn__io_sys_ops.close(fd);
    }
    nn__free(dir);
    return st;
}

nn_status nn__io_write_path(const char *path, const uint8_t *data, size_t size, const char *fn) {
    if (!nn__check_ptr(path, fn, "path")) return nn_last_status();
    if (!*path) return nn__err(NN_ERR_INVALID, "%s: path is empty", fn);
    char *tmp = NULL;
    int fd = create_temp(path, &tmp, fn);
    if (fd < 0) return nn_last_status();
    nn_status st = write_all(fd, data, size, fn, tmp);
    if (!st && nn__io_sys_ops.fsync(fd) != 0)
        st = nn__err(NN_ERR_IO, "%s: fsync of '%s' failed: %s", fn, tmp, strerror(errno));
    if (nn__io_sys_ops.close(fd) != 0 && !st) /* close can report a deferred write error */
        st = nn__err(NN_ERR_IO, "%s: closing '%s' failed: %s", fn, tmp, strerror(errno));
    if (!st && nn__io_sys_ops.rename(tmp, path) != 0)
        st = nn__err(NN_ERR_IO, "%s: renaming '%s' to '%s' failed: %s", fn, tmp, path,
                     strerror(errno));
    if (st) {
        nn__io_sys_ops.unlink(tmp); /* the old file, if any, was never touched */
        nn__free(tmp);
        return st;
    }
    nn__free(tmp);
    /* The new file is in place; a failed directory sync only means the
     * rename may not survive a power cut, which the caller should know. */
    return sync_dir(path, fn);
}

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
