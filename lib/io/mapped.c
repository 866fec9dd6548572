/* Whole files mapped into memory for zero-copy loading (NN_IO_OPTION_MMAP).
 *
 * The mapping is MAP_PRIVATE with read and write access: pages come from
 * the page cache, shared by every process that maps the same file, and
 * nothing is copied until a page is written; a write then gets a private
 * copy of that page from the kernel (copy-on-write), so the file and other
 * processes never see it. Tensors view the mapping through wrapped storage
 * (nn__tensor_wrap) whose deleter drops a reference; the last one unmaps. */
#include "io_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct nn__map {
    _Atomic long refs;
    void *base;
    size_t size;
};

nn_status nn__map_open(const char *path, size_t min, int64_t max, nn__map **out,
                       const uint8_t **base, size_t *size, const char *fn) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return nn__err(NN_ERR_IO, "%s: cannot open '%s': %s", fn, path, strerror(errno));
    struct stat sb;
    nn_status st = NN_OK;
    if (fstat(fd, &sb) != 0)
        st = nn__err(NN_ERR_IO, "%s: cannot stat '%s': %s", fn, path, strerror(errno));
    else if (!S_ISREG(sb.st_mode))
        st = nn__err(NN_ERR_IO, "%s: '%s' is not a regular file (it cannot be mapped)", fn, path);
    else if ((uint64_t)sb.st_size < min || sb.st_size == 0)
        st = nn__err(NN_ERR_TRUNCATED, "%s: '%s' has %lld bytes, the format needs at least %zu bytes",
                     fn, path, (long long)sb.st_size, min ? min : 1);
    else if ((uint64_t)sb.st_size > (uint64_t)max || (uint64_t)sb.st_size > SIZE_MAX)
        st = nn__err(NN_ERR_LIMIT, "%s: '%s' has %lld bytes, more than the %lld allowed", fn, path,
                     (long long)sb.st_size, (long long)max);
    nn__map *m = st ? NULL : nn__calloc(1, sizeof *m);
    if (!st && !m) st = NN_ERR_NOMEM;
    if (!st) {
        m->size = (size_t)sb.st_size;
        m->base = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
        if (m->base == MAP_FAILED)
            st = nn__err(NN_ERR_IO, "%s: cannot map '%s' (%zu bytes): %s", fn, path, m->size,
                         strerror(errno));
    }
    close(fd); /* the mapping keeps the file */
    if (st) {
        nn__free(m);
        return st;
    }
    m->refs = 1;
    *out = m;
    *base = m->base;
    *size = m->size;
    return NN_OK;
}

void nn__map_release(nn__map *m) {
    if (!m || --m->refs > 0) return;
    munmap(m->base, m->size);
    nn__free(m);
}

static void map_deleter(void *data, void *user) {
    (void)data;
    nn__map_release(user);
}

nn_tensor *nn__map_tensor(nn__map *m, uint64_t off, nn_dtype dtype, const int64_t *shape,
                          int ndim, const char *fn) {
    int64_t numel;
    size_t nbytes;
    if (!nn__shape_numel(shape, ndim, &numel, fn)) return NULL;
    if (!nn__size_mul((size_t)numel, nn_dtype_size(dtype), &nbytes))
        return NN__FAIL(NN_ERR_OVERFLOW, "%s: tensor byte size overflows", fn);
    if (off > m->size || nbytes > m->size - off)
        return NN__FAIL(NN_ERR_RANGE, "%s: %zu bytes at offset %llu lie outside the %zu-byte file",
                        fn, nbytes, (unsigned long long)off, m->size);
    m->refs++;
    nn_tensor *t =
        nn__tensor_wrap(dtype, shape, ndim, (uint8_t *)m->base + off, map_deleter, m, fn);
    if (!t) m->refs--; /* the caller still holds its own reference */
    return t;
}
