/* Writing the container: header, CRC-checked sections, trailer
 * (FORMAT.md 1-3). Reading is load.c's one-pass reader. */
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
    h[10] = 0; /* minor 0; 1 (NN__IO_MINOR) only for aligned files: nn__filew_finish */
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
    nn__put_u32(p + 12, f->flags);
    if (f->flags & NN__IO_FLAG_ALIGNED) p[10] = NN__IO_MINOR; /* 1.1: the aligned layout */
    nn__put_u32(p + 24, f->nsections);
    nn__put_u32(crc_at, nn__crc32(0, p, f->w.len - 4));
    *data = p;
    *size = f->w.len;
    f->w.p = NULL;
    (void)fn;
    return NN_OK;
}
