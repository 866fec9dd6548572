/* ONNX import, the public side: read the bytes (path, memory or callback,
 * capped by NN_IO_OPTION_MAX_BYTES), bound the protobuf nesting before
 * protobuf-c recurses into it, unpack through libnn's allocator, build the
 * graph module (graph.c) and wrap it in an nn_model. Built without ONNX,
 * every entry point fails with NN_ERR_UNSUPPORTED. */
#include "onnx/onnx_internal.h"
#include "io/io_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if NN_HAVE_ONNX

/* ------------------------------------------------------------- reading */

typedef struct bytes {
    uint8_t *p; /* owned when not borrowed */
    const uint8_t *data;
    size_t len;
} bytes;

static nn_status too_big(uint64_t have, int64_t max, const char *fn) {
    return nn__err(NN_ERR_LIMIT, "%s: the model is %llu bytes or more, over the %lld-byte limit "
                   "(NN_IO_OPTION_MAX_BYTES)", fn, (unsigned long long)have, (long long)max);
}

static nn_status read_path(const char *path, int64_t max, bytes *b, const char *fn) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return nn__err(NN_ERR_IO, "%s: cannot open '%s': %s", fn, path, strerror(errno));
    struct stat s;
    nn_status st = NN_OK;
    if (fstat(fd, &s) != 0 || !S_ISREG(s.st_mode))
        st = nn__err(NN_ERR_IO, "%s: '%s' is not a regular file", fn, path);
    else if ((uint64_t)s.st_size > (uint64_t)max)
        st = too_big((uint64_t)s.st_size, max, fn);
    size_t len = st ? 0 : (size_t)s.st_size;
    if (!st && !(b->p = nn__malloc(len ? len : 1))) st = NN_ERR_NOMEM;
    size_t got = 0;
    while (!st && got < len) {
        ssize_t r = read(fd, b->p + got, len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            st = nn__err(NN_ERR_IO, "%s: reading '%s' failed after %zu of %zu bytes", fn, path, got,
                         len);
        else got += (size_t)r;
    }
    close(fd);
    b->data = b->p;
    b->len = got;
    return st;
}

static nn_status read_stream(nn_read_fn read, void *user, int64_t max, bytes *b, const char *fn) {
    size_t cap = 0, len = 0;
    for (;;) {
        if (len == cap) {
            if ((uint64_t)len >= (uint64_t)max + 1) return too_big(len, max, fn);
            size_t ncap = cap ? cap * 2 : 65536;
            if ((uint64_t)ncap > (uint64_t)max + 1) ncap = (size_t)max + 1;
            uint8_t *np = nn__realloc(b->p, ncap);
            if (!np) return NN_ERR_NOMEM;
            b->p = np;
            cap = ncap;
        }
        int64_t r = read(b->p + len, cap - len, user);
        if (r < 0) return nn__err(NN_ERR_IO, "%s: the read callback failed (%lld)", fn, (long long)r);
        if (r == 0) break;
        if ((uint64_t)r > cap - len)
            return nn__err(NN_ERR_IO, "%s: the read callback returned %lld for %zu bytes", fn,
                           (long long)r, cap - len);
        len += (size_t)r;
        if ((uint64_t)len > (uint64_t)max) return too_big(len, max, fn);
    }
    b->data = b->p;
    b->len = len;
    return NN_OK;
}

/* ------------------------------------------------------ nesting bound */

static bool varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*pos >= len) return false;
        uint8_t c = p[(*pos)++];
        *v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) return true;
    }
    return false;
}

/* Walk the wire format guided by the message descriptors and fail when
 * submessages nest deeper than NN__ONNX_MAX_DEPTH (protobuf-c's unpack
 * recurses once per level with no bound of its own: a few bytes per level
 * would exhaust the stack). Malformed framing is left to protobuf-c. Each
 * byte is examined once per enclosing level at most, and the depth is
 * bounded, so this is linear. */
static nn_status check_depth(const ProtobufCMessageDescriptor *d, const uint8_t *p, size_t len,
                             int depth, const char *fn) {
    if (depth > NN__ONNX_MAX_DEPTH)
        return nn__err(NN_ERR_LIMIT, "%s: protobuf messages nest deeper than %d levels", fn,
                       NN__ONNX_MAX_DEPTH);
    size_t pos = 0;
    while (pos < len) {
        uint64_t key, v;
        if (!varint(p, len, &pos, &key)) return NN_OK;
        unsigned wt = (unsigned)(key & 7);
        uint64_t num = key >> 3;
        switch (wt) {
        case 0:
            if (!varint(p, len, &pos, &v)) return NN_OK;
            break;
        case 1:
            if (len - pos < 8) return NN_OK;
            pos += 8;
            break;
        case 5:
            if (len - pos < 4) return NN_OK;
            pos += 4;
            break;
        case 2: {
            if (!varint(p, len, &pos, &v) || v > len - pos) return NN_OK;
            const ProtobufCFieldDescriptor *f =
                num <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(d, (unsigned)num) : NULL;
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
                nn_status st = check_depth(f->descriptor, p + pos, (size_t)v, depth + 1, fn);
                if (st) return st;
            }
            pos += (size_t)v;
            break;
        }
        default: return NN_OK; /* groups and junk: protobuf-c rejects them */
        }
    }
    return NN_OK;
}

/* ---------------------------------------------------------- unpacking */

/* protobuf-c allocates through libnn's hook (so failure injection and the
 * user's allocator see it); *data counts failed allocations. */
static void *pb_alloc(void *data, size_t size) {
    void *p = nn__malloc(size ? size : 1);
    if (!p) ++*(int *)data;
    return p;
}

static void pb_free(void *data, void *p) {
    (void)data;
    nn__free(p);
}

static void meta_str(nn_meta *meta, const char *key, const char *v) {
    if (meta && v && v[0]) nn_meta_set_string(meta, key, v);
}

static nn_model *import(const bytes *b, const char *fn) {
    nn_status st = check_depth(&onnx__model_proto__descriptor, b->data, b->len, 1, fn);
    if (st) return NULL;
    int failed = 0;
    ProtobufCAllocator pb_allocator = {pb_alloc, pb_free, &failed};
    Onnx__ModelProto *mp = onnx__model_proto__unpack(&pb_allocator, b->len, b->data);
    if (!mp) {
        if (failed) return NN__FAIL(NN_ERR_NOMEM, "%s: out of memory parsing the protobuf", fn);
        return NN__FAIL(NN_ERR_FORMAT, "%s: not an ONNX model (the protobuf does not parse, %zu bytes)",
                        fn, b->len);
    }
    nn_module *m = nn__onnx_build(mp, b->len, fn);
    nn_meta *meta = m ? nn_meta_new() : NULL;
    if (meta) {
        meta_str(meta, "onnx.producer_name", mp->producer_name);
        meta_str(meta, "onnx.producer_version", mp->producer_version);
        meta_str(meta, "onnx.graph_name", mp->graph ? mp->graph->name : NULL);
        nn_meta_set_number(meta, "onnx.ir_version", (double)mp->ir_version);
        const nn__onnx_graph *g = nn_module_user(m);
        nn_meta_set_number(meta, "onnx.opset", (double)g->opset);
        nn_clear_error();
    }
    onnx__model_proto__free_unpacked(mp, &pb_allocator);
    if (!meta) {
        nn_module_free(m);
        return NULL;
    }
    return nn__model_wrap(m, meta);
}

static nn_model *load(const nn__io_src *src, const nn_io_options *opts, const char *fn) {
    nn_io_options tmp;
    const nn_io_options *o = nn__io_opts(opts, &tmp, fn);
    if (!o) return NULL;
    bytes b = {0};
    nn_status st;
    if (src->path) st = read_path(src->path, o->max_bytes, &b, fn);
    else if (src->read) st = read_stream(src->read, src->user, o->max_bytes, &b, fn);
    else {
        if (src->size && !src->data) st = nn__err_null(fn, "data");
        else if ((uint64_t)src->size > (uint64_t)o->max_bytes) st = too_big(src->size, o->max_bytes, fn);
        else st = NN_OK;
        b.data = src->data;
        b.len = src->size;
    }
    nn_model *model = st ? NULL : import(&b, fn);
    nn__free(b.p);
    return model;
}

nn_model *nn_onnx_load(const char *path, const nn_io_options *opts) {
    if (!nn__check_ptr(path, "nn_onnx_load", "path")) return NULL;
    nn__io_src src = {.path = path};
    return load(&src, opts, "nn_onnx_load");
}

nn_model *nn_onnx_load_buffer(const void *data, size_t size, const nn_io_options *opts) {
    if (!nn__check_ptr(data, "nn_onnx_load_buffer", "data")) return NULL;
    nn__io_src src = {.data = data, .size = size};
    return load(&src, opts, "nn_onnx_load_buffer");
}

nn_model *nn_onnx_load_stream(nn_read_fn read, void *user, const nn_io_options *opts) {
    if (!nn__check_ptr((const void *)(uintptr_t)read, "nn_onnx_load_stream", "read")) return NULL;
    nn__io_src src = {.read = read, .user = user};
    return load(&src, opts, "nn_onnx_load_stream");
}

#else /* !NN_HAVE_ONNX */

static void *unsupported(const char *fn) {
    return NN__FAIL(NN_ERR_UNSUPPORTED, "%s: libnn was built without ONNX support (-Donnx)", fn);
}

nn_model *nn_onnx_load(const char *path, const nn_io_options *opts) {
    (void)path, (void)opts;
    return unsupported("nn_onnx_load");
}

nn_model *nn_onnx_load_buffer(const void *data, size_t size, const nn_io_options *opts) {
    (void)data, (void)size, (void)opts;
    return unsupported("nn_onnx_load_buffer");
}

nn_model *nn_onnx_load_stream(nn_read_fn read, void *user, const nn_io_options *opts) {
    (void)read, (void)user, (void)opts;
    return unsupported("nn_onnx_load_stream");
}

#endif
