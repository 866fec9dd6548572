/* Whole files: assemble sections and deliver them to a path, a buffer or a
 * callback; fetch bytes from the same three and validate the container. */
#include "io_internal.h"

#include <string.h>

static nn_status deliver(const nn__io_dst *dst, uint8_t *data, size_t size, const char *fn) {
    nn_status st;
    if (dst->path) {
        st = nn__io_write_path(dst->path, data, size, fn);
    } else if (dst->out_data) {
        *dst->out_data = data; /* ownership moves to the caller */
        *dst->out_size = size;
        return NN_OK;
    } else {
        st = nn__io_write_stream(dst->write, dst->user, data, size, fn);
    }
    nn__free(data);
    return st;
}

nn_status nn__io_save(const nn__io_parts *parts, int level, const nn__io_dst *dst, const char *fn) {
    nn__filew f;
    nn__filew_begin(&f);
    nn__wbuf meta = {0}, tensors = {0};
    nn__meta_encode(parts->meta, &meta);
    nn__filew_section(&f, NN__SEC_META, 0, &meta);
    if (parts->module) nn__filew_section(&f, NN__SEC_MODULE, 0, parts->module);
    nn_status st = nn__tensors_encode(parts->tensors, level, &tensors, fn);
    if (st && !f.w.err) f.w.err = st;
    nn__filew_section(&f, NN__SEC_TENSORS, 0, &tensors);
    if (parts->training) nn__filew_section(&f, NN__SEC_TRAINING, 0, parts->training);
    uint8_t *data;
    size_t size;
    st = nn__filew_finish(&f, &data, &size, fn);
    if (st) return st;
    return deliver(dst, data, size, fn);
}

nn_status nn__io_load(const nn__io_src *src, int64_t max, nn__io_loaded *out, const char *fn) {
    memset(out, 0, sizeof *out);
    const uint8_t *bytes;
    size_t size;
    nn_status st;
    if (src->path || src->read) {
        st = src->path ? nn__io_read_path(src->path, max, &out->owned, &size, fn)
                       : nn__io_read_stream(src->read, src->user, max, &out->owned, &size, fn);
        if (st) return st;
        bytes = out->owned;
    } else {
        if (!src->data && src->size) return nn__err(NN_ERR_NULL, "%s: argument 'data' is NULL", fn);
        if (src->size > (uint64_t)max)
            return nn__err(NN_ERR_LIMIT,
                           "%s: %zu bytes exceed the %lld-byte limit "
                           "(NN_IO_OPTION_MAX_BYTES)",
                           fn, src->size, (long long)max);
        bytes = src->data;
        size = src->size;
    }
    st = nn__file_parse(bytes, size, &out->file, fn);
    if (st) nn__io_unload(out);
    return st;
}

void nn__io_unload(nn__io_loaded *l) {
    nn__free(l->owned);
    l->owned = NULL;
}

nn_status nn__io_load_tensors(const nn__io_loaded *l, int64_t max, nn__tlist *out, const char *fn) {
    const nn__section *s = nn__file_find(&l->file, NN__SEC_TENSORS);
    if (!s) return nn__err(NN_ERR_FORMAT, "%s: the file has no tensor section", fn);
    int64_t budget = max;
    return nn__tensors_decode(s->payload, s->len, &budget, out, fn);
}

nn_meta *nn__io_load_meta(const nn__io_loaded *l, const char *fn) {
    const nn__section *s = nn__file_find(&l->file, NN__SEC_META);
    if (!s) return nn__meta_new();
    return nn__meta_decode(s->payload, s->len, fn);
}
