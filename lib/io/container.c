/* The container: header, CRC-checked sections, trailer (FORMAT.md 1-3). */
#include "io_internal.h"

#include <string.h>

/* ------------------------------------------------------------- writing */

void nn__filew_begin(nn__filew *f) {
    memset(f, 0, sizeof *f);
    uint8_t *h = nn__wbuf_reserve(&f->w, NN__IO_HEADER_SIZE);
    if (!h) return;
    memset(h, 0, NN__IO_HEADER_SIZE);
    memcpy(h, NN__IO_MAGIC, 8);
    h[8] = NN__IO_MAJOR;
    h[10] = NN__IO_MINOR;
    /* flags (12), file size (16), section count (24), reserved (28):
     * zero now, patched by nn__filew_finish. */
}

void nn__filew_section(nn__filew *f, uint32_t type, uint32_t flags, nn__wbuf *body) {
    if (body->err && !f->w.err) f->w.err = body->err;
    if (!f->w.err) {
        nn__wbuf_u32(&f->w, type);
        nn__wbuf_u32(&f->w, flags);
        nn__wbuf_u64(&f->w, body->len);
        nn__wbuf_u32(&f->w, nn__crc32(0, body->p, body->len));
        nn__wbuf_u32(&f->w, 0);
        nn__wbuf_bytes(&f->w, body->p, body->len);
        f->nsections++;
    }
    nn__wbuf_free(body);
}

nn_status nn__filew_finish(nn__filew *f, uint8_t **data, size_t *size, const char *fn) {
    nn__wbuf_bytes(&f->w, NN__IO_END_MAGIC, 4);
    uint8_t *crc_at = nn__wbuf_reserve(&f->w, 4);
    if (f->w.err) {
        nn_status st = f->w.err;
        nn__wbuf_free(&f->w);
        return st;
    }
    uint8_t *p = f->w.p;
    nn__put_u64(p + 16, f->w.len);
    nn__put_u32(p + 24, f->nsections);
    nn__put_u32(crc_at, nn__crc32(0, p, f->w.len - 4));
    *data = p;
    *size = f->w.len;
    f->w.p = NULL;
    (void)fn;
    return NN_OK;
}

/* ------------------------------------------------------------- reading */

static const char *section_name(uint32_t type) {
    switch (type) {
    case NN__SEC_META: return "metadata section";
    case NN__SEC_MODULE: return "module section";
    case NN__SEC_TENSORS: return "tensor section";
    case NN__SEC_TRAINING: return "training section";
    }
    return "unknown section";
}

/* Magic, version, flags, declared size against the real size, file CRC. */
static nn_status parse_header(const uint8_t *d, size_t size, nn__file *f, const char *fn) {
    const size_t min = NN__IO_HEADER_SIZE + NN__IO_TRAILER_SIZE;
    if (size < 8 || memcmp(d, NN__IO_MAGIC, 8) != 0) {
        if (size < 8 && memcmp(d, NN__IO_MAGIC, size) == 0)
            return nn__err(NN_ERR_TRUNCATED, "%s: file of %zu bytes ends inside the magic", fn,
                           size);
        return nn__err(NN_ERR_FORMAT, "%s: not a libnn model file (bad magic)", fn);
    }
    if (size < min)
        return nn__err(NN_ERR_TRUNCATED,
                       "%s: file of %zu bytes is shorter than the %zu-byte "
                       "header and trailer",
                       fn, size, min);
    f->major = (uint16_t)(d[8] | d[9] << 8);
    f->minor = (uint16_t)(d[10] | d[11] << 8);
    if (f->major != NN__IO_MAJOR)
        return nn__err(NN_ERR_VERSION,
                       "%s: format version %u.%u, this library reads %d.x "
                       "(up to %d.%d)",
                       fn, f->major, f->minor, NN__IO_MAJOR, NN__IO_MAJOR, NN__IO_MINOR);
    uint32_t flags = nn__get_u32(d + 12), reserved = nn__get_u32(d + 28);
    if (flags != 0 || reserved != 0)
        return nn__err(NN_ERR_FORMAT, "%s: header flags 0x%x / reserved 0x%x must be 0", fn, flags,
                       reserved);
    uint64_t declared = nn__get_u64(d + 16);
    if (declared > size)
        return nn__err(NN_ERR_TRUNCATED, "%s: file has %zu bytes, its header declares %llu", fn,
                       size, (unsigned long long)declared);
    if (declared < size)
        return nn__err(NN_ERR_FORMAT,
                       "%s: %llu trailing bytes after the declared end (%llu of "
                       "%zu bytes)",
                       fn, (unsigned long long)(size - declared), (unsigned long long)declared,
                       size);
    if (memcmp(d + size - 8, NN__IO_END_MAGIC, 4) != 0)
        return nn__err(NN_ERR_FORMAT, "%s: missing end marker", fn);
    uint32_t want = nn__get_u32(d + size - 4), got = nn__crc32(0, d, size - 4);
    if (want != got)
        return nn__err(NN_ERR_CHECKSUM, "%s: file CRC-32 is 0x%08x, the trailer says 0x%08x", fn,
                       got, want);
    return NN_OK;
}

static bool known_type(uint32_t type) { return type >= NN__SEC_META && type <= NN__SEC_TRAINING; }

/* One section header at r; appends it to f unless it is skipped. */
static nn_status parse_section(nn__rd *r, uint32_t idx, nn__file *f, const char *fn) {
    uint32_t type, flags, crc, reserved;
    uint64_t len;
    const uint8_t *payload;
    if (!nn__rd_u32(r, &type, "section type") || !nn__rd_u32(r, &flags, "section flags") ||
        !nn__rd_u64(r, &len, "section length") || !nn__rd_u32(r, &crc, "section CRC") ||
        !nn__rd_u32(r, &reserved, "section reserved"))
        return nn_last_status();
    if ((flags & ~NN__SEC_FLAG_SKIPPABLE) != 0 || reserved != 0)
        return nn__err(NN_ERR_FORMAT,
                       "%s: section %u (type %u): flags 0x%x / reserved 0x%x "
                       "invalid",
                       fn, idx, type, flags, reserved);
    if (len > nn__rd_left(r))
        return nn__err(NN_ERR_FORMAT,
                       "%s: section %u (type %u) length %llu exceeds the %zu "
                       "bytes left",
                       fn, idx, type, (unsigned long long)len, nn__rd_left(r));
    nn__rd_bytes(r, &payload, (size_t)len, "section payload");
    uint32_t got = nn__crc32(0, payload, (size_t)len);
    if (got != crc)
        return nn__err(NN_ERR_CHECKSUM, "%s: %s %u CRC-32 is 0x%08x, its header says 0x%08x", fn,
                       section_name(type), idx, got, crc);
    if (!known_type(type)) {
        if (flags & NN__SEC_FLAG_SKIPPABLE) return NN_OK; /* a newer minor's extra: skip */
        return nn__err(NN_ERR_UNSUPPORTED,
                       "%s: section %u has unknown type %u and is not "
                       "marked skippable (file version %u.%u)",
                       fn, idx, type, f->major, f->minor);
    }
    if (nn__file_find(f, type))
        return nn__err(NN_ERR_FORMAT, "%s: duplicate %s (section %u)", fn, section_name(type), idx);
    nn__section *s = &f->sec[f->nsections++];
    s->type = type;
    s->flags = flags;
    s->payload = payload;
    s->len = (size_t)len;
    return NN_OK;
}

nn_status nn__file_parse(const uint8_t *data, size_t size, nn__file *f, const char *fn) {
    memset(f, 0, sizeof *f);
    if (!data && size) return nn__err(NN_ERR_NULL, "%s: data is NULL", fn);
    nn_status st = parse_header(data ? data : (const uint8_t *)"", data ? size : 0, f, fn);
    if (st) return st;
    uint32_t count = nn__get_u32(data + 24);
    if (count > NN__IO_MAX_SECTIONS)
        return nn__err(NN_ERR_LIMIT, "%s: section count %u exceeds the limit of %d", fn, count,
                       NN__IO_MAX_SECTIONS);
    nn__rd r;
    nn__rd_init(&r, data + NN__IO_HEADER_SIZE, size - NN__IO_HEADER_SIZE - NN__IO_TRAILER_SIZE, fn,
                "section list");
    for (uint32_t i = 0; i < count; i++) {
        st = parse_section(&r, i, f, fn);
        if (st) return st;
    }
    if (nn__rd_left(&r) != 0)
        return nn__err(NN_ERR_FORMAT,
                       "%s: %zu bytes between the last of %u sections and the "
                       "trailer",
                       fn, nn__rd_left(&r), count);
    return NN_OK;
}

const nn__section *nn__file_find(const nn__file *f, uint32_t type) {
    for (uint32_t i = 0; i < f->nsections; i++)
        if (f->sec[i].type == type) return &f->sec[i];
    return NULL;
}
