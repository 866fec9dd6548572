/* Model files handed to a caller's write callback (file.c writes to paths
 * and buffers; load.c reads from all three). */
#include "io_internal.h"

nn_status nn__io_write_stream(nn_write_fn write_fn, void *user, const uint8_t *data, size_t size,
                              const char *fn) {
    if (!write_fn) return nn__err(NN_ERR_NULL, "%s: argument 'write' is NULL", fn);
    if (write_fn(data, size, user) != 0)
        return nn__err(NN_ERR_IO, "%s: the write callback failed (%zu bytes)", fn, size);
    return NN_OK;
}
