/* Reading a model file in one pass (FORMAT.md 3, "Reading"), from a path, a
 * buffer or a callback, through a 256 KiB window: a file is never held
 * whole. CRCs are computed as the bytes go by. A consumer (model.c) pulls
 * section after section, parses the small ones from memory and decodes
 * tensor data straight to where it will live.
 *
 * Errors come in three kinds:
 *  - fatal (an I/O error, NN_IO_OPTION_MAX_BYTES, out of memory): reported
 *    at once;
 *  - damage found by the walk over the container (framing, a section CRC,
 *    the input ending early or late): the walk stops interpreting and
 *    nn__ld_close reports;
 *  - content errors found by the consumer.
 * For the last two, nn__ld_close reads the rest of the input (CRC only,
 * nothing decoded or allocated) and reports the first failure in the check
 * order of FORMAT.md, so a damaged file gives the same error whatever the
 * source and whenever the damage was met. */
#include "io_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WIN_CAP ((size_t)256 << 10)
#define DIRECT_MIN ((size_t)64 << 10) /* reads this big bypass the window */
#define IO_CHUNK ((size_t)1 << 20)     /* one read() / CRC step of a direct read */

enum { SRC_BUF, SRC_FD, SRC_READ };

/* -------------------------------------------------------------- input */

static nn_status fatal(nn__ld *ld, nn_status st) {
    ld->fatal = true;
    return st;
}

static nn_status over_limit(nn__ld *ld) {
    return fatal(ld, nn__err(NN_ERR_LIMIT,
                             "%s: stream exceeds the %lld-byte limit (NN_IO_OPTION_MAX_BYTES)",
                             ld->fn, (long long)ld->max));
}

/* Read up to n bytes from a file or callback source into dst; 0 at EOF. */
static nn_status src_read(nn__ld *ld, uint8_t *dst, size_t n, size_t *got) {
    *got = 0;
    if (ld->eof || n == 0) return NN_OK;
    if (ld->kind == SRC_FD) {
        for (;;) {
            ssize_t k = read(ld->fd, dst, n > (1u << 30) ? (1u << 30) : n);
            if (k < 0 && errno == EINTR) continue;
            if (k < 0)
                return fatal(ld, nn__err(NN_ERR_IO, "%s: reading '%s' failed: %s", ld->fn,
                                         ld->path, strerror(errno)));
            *got = (size_t)k;
            break;
        }
    } else {
        int64_t k = ld->read(dst, n, ld->user);
        if (k < 0)
            return fatal(ld, nn__err(NN_ERR_IO, "%s: the read callback failed after %llu bytes",
                                     ld->fn, (unsigned long long)ld->fetched));
        if ((uint64_t)k > n)
            return fatal(ld, nn__err(NN_ERR_IO,
                                     "%s: the read callback returned %lld for a %zu-byte buffer",
                                     ld->fn, (long long)k, n));
        *got = (size_t)k;
    }
    if (*got == 0) ld->eof = true;
    ld->fetched += *got;
    if (ld->fetched > (uint64_t)ld->max) return over_limit(ld);
    return NN_OK;
}

static void crc_sync(nn__ld *ld);

/* Make at least n (<= WIN_CAP) unconsumed bytes available in the window;
 * fewer only at the end of the input. */
static nn_status fill(nn__ld *ld, size_t n) {
    if (ld->kind == SRC_BUF) return NN_OK;
    if (ld->wlen - ld->wpos >= n || ld->eof) return NN_OK;
    if (ld->wpos > 0) { /* keep the unconsumed bytes, at the front */
        crc_sync(ld);
        ld->csync = 0;
        memmove(ld->win, ld->win + ld->wpos, ld->wlen - ld->wpos);
        ld->wlen -= ld->wpos;
        ld->wpos = 0;
    }
    while (ld->wlen < n && !ld->eof) {
        size_t got;
        nn_status st = src_read(ld, ld->win + ld->wlen, WIN_CAP - ld->wlen, &got);
        if (st) return st;
        ld->wlen += got;
    }
    return NN_OK;
}

static size_t avail(const nn__ld *ld) { return ld->wlen - ld->wpos; }

/* Account for n consumed bytes p: the file CRC (which leaves out the last 4
 * bytes, the stored CRC itself, so it lags 4 bytes behind), the last 8
 * bytes (the trailer, at the end) and the current section's CRC. Bytes
 * consumed from the window are accounted in bulk by crc_sync, before they
 * move, at section boundaries and at the end: a table of 65,536 small
 * fields costs one CRC call per window, not several per field. */
static void account(nn__ld *ld, const uint8_t *p, size_t n) {
    if (n == 0) return;
    if (n >= 4) {
        ld->crc = nn__crc32(ld->crc, ld->held, (size_t)ld->nheld);
        ld->crc = nn__crc32(ld->crc, p, n - 4);
        memcpy(ld->held, p + n - 4, 4);
        ld->nheld = 4;
    } else {
        uint8_t t[8];
        memcpy(t, ld->held, (size_t)ld->nheld);
        memcpy(t + ld->nheld, p, n);
        size_t k = (size_t)ld->nheld + n, out = k > 4 ? k - 4 : 0;
        ld->crc = nn__crc32(ld->crc, t, out);
        memcpy(ld->held, t + out, k - out);
        ld->nheld = (int)(k - out);
    }
    if (n >= 8) {
        memcpy(ld->tail, p + n - 8, 8);
        ld->ntail = 8;
    } else {
        size_t keep = (size_t)ld->ntail + n > 8 ? 8 - n : (size_t)ld->ntail;
        memmove(ld->tail, ld->tail + ld->ntail - keep, keep);
        memcpy(ld->tail + keep, p, n);
        ld->ntail = (int)(keep + n);
    }
    if (ld->in_payload) ld->sec_crc = nn__crc32(ld->sec_crc, p, n);
}

/* Account for the window bytes consumed since the last sync. */
static void crc_sync(nn__ld *ld) {
    account(ld, ld->win + ld->csync, ld->wpos - ld->csync);
    ld->csync = ld->wpos;
}

/* Consume n bytes of the window. */
static void consume(nn__ld *ld, size_t n) {
    ld->wpos += n;
    ld->pos += n;
    if (ld->wpos - ld->csync >= IO_CHUNK) crc_sync(ld); /* while they are in cache */
}

/* The input ended before the bytes the structure promised: the verdict
 * (a truncated file) comes from nn__ld_close. */
static nn_status ended(nn__ld *ld) {
    ld->broken = true;
    return nn__err(NN_ERR_TRUNCATED, "%s: the file ends early", ld->fn);
}

/* Consume n (<= WIN_CAP) bytes and borrow them until the next read. */
static nn_status take(nn__ld *ld, size_t n, const uint8_t **p) {
    nn_status st = fill(ld, n);
    if (st) return st;
    if (avail(ld) < n) return ended(ld);
    *p = ld->win + ld->wpos;
    consume(ld, n);
    return NN_OK;
}

/* Consume n bytes into dst (NULL: discard them). */
static nn_status copy(nn__ld *ld, uint8_t *dst, uint64_t n) {
    while (n > 0) {
        size_t k = avail(ld) < n ? avail(ld) : (size_t)n;
        if (ld->kind == SRC_BUF && k > IO_CHUNK) k = IO_CHUNK; /* CRC while in cache */
        if (k > 0) {
            if (dst) memcpy(dst, ld->win + ld->wpos, k);
            consume(ld, k);
            if (dst) dst += k;
            n -= k;
        } else if (dst && n >= DIRECT_MIN && ld->kind != SRC_BUF) {
            size_t want = n > IO_CHUNK ? IO_CHUNK : (size_t)n, got;
            crc_sync(ld);
            nn_status st = src_read(ld, dst, want, &got);
            if (st) return st;
            if (got == 0) return ended(ld);
            account(ld, dst, got); /* straight into dst: not in the window */
            ld->pos += got;
            dst += got;
            n -= got;
        } else {
            nn_status st = fill(ld, 1);
            if (st) return st;
            if (avail(ld) == 0) return ended(ld);
        }
    }
    return NN_OK;
}

/* Consume everything up to the end of the input (CRC only). */
static nn_status drain(nn__ld *ld) {
    for (;;) {
        nn_status st = avail(ld) ? NN_OK : fill(ld, 1);
        if (st) return st;
        if (avail(ld) == 0) return NN_OK;
        consume(ld, avail(ld) > IO_CHUNK ? IO_CHUNK : avail(ld));
    }
}

/* ------------------------------------------------------- the verdict */

static const char *section_name(uint32_t type) {
    switch (type) {
    case NN__SEC_META: return "metadata section";
    case NN__SEC_MODULE: return "module section";
    case NN__SEC_TENSORS: return "tensor section";
    case NN__SEC_TRAINING: return "training section";
    }
    return "unknown section";
}

static bool known_type(uint32_t type) { return type >= NN__SEC_META && type <= NN__SEC_TRAINING; }

/* Magic, size, version, flags, declared size and end marker of a file of
 * `size` bytes whose first min(size, 32) bytes are hdr and last 8 tail;
 * past the magic and size, nn__io_header_fields. */
static nn_status header_verdict(const nn__ld *ld, uint64_t size, const uint8_t *tail) {
    const char *fn = ld->fn;
    const uint8_t *d = ld->hdr;
    const uint64_t min = NN__IO_HEADER_SIZE + NN__IO_TRAILER_SIZE;
    if (size < 8 || memcmp(d, NN__IO_MAGIC, 8) != 0) {
        if (size < 8 && memcmp(d, NN__IO_MAGIC, (size_t)size) == 0)
            return nn__err(NN_ERR_TRUNCATED, "%s: file of %llu bytes ends inside the magic", fn,
                           (unsigned long long)size);
        return nn__err(NN_ERR_FORMAT, "%s: not a libnn model file (bad magic)", fn);
    }
    if (size < min)
        return nn__err(NN_ERR_TRUNCATED,
                       "%s: file of %llu bytes is shorter than the %llu-byte header and trailer",
                       fn, (unsigned long long)size, (unsigned long long)min);
    return nn__io_header_fields(d, size, tail, fn);
}

nn_status nn__io_header_fields(const uint8_t *d, uint64_t size, const uint8_t *tail,
                               const char *fn) {
    uint16_t major = (uint16_t)(d[8] | d[9] << 8), minor = (uint16_t)(d[10] | d[11] << 8);
    if (major != NN__IO_MAJOR)
        return nn__err(NN_ERR_VERSION, "%s: format version %u.%u, this library reads %d.x (up to %d.%d)",
                       fn, major, minor, NN__IO_MAJOR, NN__IO_MAJOR, NN__IO_MINOR);
    uint32_t flags = nn__get_u32(d + 12), reserved = nn__get_u32(d + 28);
    if ((flags & ~NN__IO_FLAG_ALIGNED) != 0 || reserved != 0)
        return nn__err(NN_ERR_FORMAT, "%s: header flags 0x%x / reserved 0x%x must be 0 (flags: or 1)",
                       fn, flags, reserved);
    if (!tail) return NN_OK; /* size and end marker are checked at the end of a stream */
    uint64_t declared = nn__get_u64(d + 16);
    if (declared > size)
        return nn__err(NN_ERR_TRUNCATED, "%s: file has %llu bytes, its header declares %llu", fn,
                       (unsigned long long)size, (unsigned long long)declared);
    if (declared < size)
        return nn__err(NN_ERR_FORMAT, "%s: %llu trailing bytes after the declared end (%llu of %llu bytes)",
                       fn, (unsigned long long)(size - declared), (unsigned long long)declared,
                       (unsigned long long)size);
    if (memcmp(tail, NN__IO_END_MAGIC, 4) != 0)
        return nn__err(NN_ERR_FORMAT, "%s: missing end marker", fn);
    return NN_OK;
}

/* Framing of section i, whose header starts `off` bytes into the section
 * list and of which `have` bytes lie before the trailer (at most 24
 * recorded); `left` bytes of the list follow the header. */
static const char *const FIELD[5] = {"section type", "section flags", "section length",
                                     "section CRC", "section reserved"};
static const size_t FIELD_SIZE[5] = {4, 4, 8, 4, 4};

static nn_status framing(const nn__ld *ld, uint32_t i, uint64_t off, uint64_t have,
                         const uint8_t *h, bool report) {
    const char *fn = ld->fn;
    size_t o = 0;
    for (int k = 0; k < 5; k++) {
        if (o + FIELD_SIZE[k] > have)
            return report ? nn__err(NN_ERR_FORMAT,
                                    "%s: section list: %s needs %zu bytes at offset %llu, only "
                                    "%llu left",
                                    fn, FIELD[k], FIELD_SIZE[k], (unsigned long long)(off + o),
                                    (unsigned long long)(have - o))
                          : NN_ERR_FORMAT;
        o += FIELD_SIZE[k];
    }
    uint32_t type = nn__get_u32(h), flags = nn__get_u32(h + 4), reserved = nn__get_u32(h + 20);
    uint64_t len = nn__get_u64(h + 8), left = have - 24;
    if ((flags & ~NN__SEC_FLAG_SKIPPABLE) != 0 || reserved != 0)
        return report ? nn__err(NN_ERR_FORMAT, "%s: section %u (type %u): flags 0x%x / reserved 0x%x invalid",
                                fn, i, type, flags, reserved)
                      : NN_ERR_FORMAT;
    if (len > left)
        return report ? nn__err(NN_ERR_FORMAT,
                                "%s: section %u (type %u) length %llu exceeds the %llu bytes left", fn,
                                i, type, (unsigned long long)len, (unsigned long long)left)
                      : NN_ERR_FORMAT;
    return NN_OK;
}

/* Type rules of section i (after its CRC): unknown types must be
 * skippable, known ones appear once. */
static nn_status type_check(const nn__ld *ld, uint32_t i, uint32_t type, uint32_t flags,
                            uint32_t seen, bool report) {
    if (!known_type(type)) {
        if (flags & NN__SEC_FLAG_SKIPPABLE) return NN_OK;
        return report ? nn__err(NN_ERR_UNSUPPORTED,
                                "%s: section %u has unknown type %u and is not marked skippable "
                                "(file version %u.%u)",
                                ld->fn, i, type, ld->hdr[8] | ld->hdr[9] << 8,
                                ld->hdr[10] | ld->hdr[11] << 8)
                      : NN_ERR_UNSUPPORTED;
    }
    if (seen & (1u << type))
        return report ? nn__err(NN_ERR_FORMAT, "%s: duplicate %s (section %u)", ld->fn,
                                section_name(type), i)
                      : NN_ERR_FORMAT;
    return NN_OK;
}

/* The whole-file check, in FORMAT.md's order, once the input is consumed. */
static nn_status verdict(const nn__ld *ld) {
    const char *fn = ld->fn;
    uint64_t size = ld->pos;
    nn_status st = header_verdict(ld, size, ld->tail);
    if (st) return st;
    uint32_t want = nn__get_u32(ld->tail + 4);
    if (want != ld->crc)
        return nn__err(NN_ERR_CHECKSUM, "%s: file CRC-32 is 0x%08x, the trailer says 0x%08x", fn,
                       ld->crc, want);
    uint32_t count = nn__get_u32(ld->hdr + 24);
    if (count > NN__IO_MAX_SECTIONS)
        return nn__err(NN_ERR_LIMIT, "%s: section count %u exceeds the limit of %d", fn, count,
                       NN__IO_MAX_SECTIONS);
    uint64_t list = size - NN__IO_HEADER_SIZE - NN__IO_TRAILER_SIZE, off = 0;
    uint32_t seen = 0;
    for (uint32_t i = 0; i < count; i++) {
        const nn__ld_rec *r = &ld->rec[i];
        uint64_t have = list - off;
        if ((st = framing(ld, i, off, have, r->hdr, true))) return st;
        uint32_t type = nn__get_u32(r->hdr), flags = nn__get_u32(r->hdr + 4);
        uint32_t crc = nn__get_u32(r->hdr + 16);
        if (!r->done) return nn__err(NN_ERR_FORMAT, "%s: section %u was not read", fn, i);
        if (r->crc != crc)
            return nn__err(NN_ERR_CHECKSUM, "%s: %s %u CRC-32 is 0x%08x, its header says 0x%08x",
                           fn, section_name(type), i, r->crc, crc);
        if ((st = type_check(ld, i, type, flags, seen, true))) return st;
        if (known_type(type)) seen |= 1u << type;
        off += 24 + nn__get_u64(r->hdr + 8);
    }
    if (off != list)
        return nn__err(NN_ERR_FORMAT, "%s: %llu bytes between the last of %u sections and the trailer",
                       fn, (unsigned long long)(list - off), count);
    return NN_OK;
}

/* ----------------------------------------------------------- the walk */

static nn_status broke(nn__ld *ld) {
    ld->broken = true;
    return nn__err(NN_ERR_FORMAT, "%s: damaged file", ld->fn);
}

static uint64_t list_end(const nn__ld *ld) { return ld->declared - NN__IO_TRAILER_SIZE; }

/* Finish the current section: skip what the consumer left, check the CRC. */
static nn_status finish_section(nn__ld *ld) {
    nn_status st = copy(ld, NULL, ld->left);
    if (st) return st;
    crc_sync(ld);
    ld->left = 0;
    ld->in_payload = false;
    nn__ld_rec *r = &ld->rec[ld->cur];
    r->done = true;
    r->crc = ld->sec_crc;
    if (r->crc != nn__get_u32(r->hdr + 16)) return broke(ld);
    return NN_OK;
}

/* After the last section: the trailer, then the end of the input. */
static nn_status finish_file(nn__ld *ld) {
    if (ld->pos != list_end(ld)) return broke(ld);
    const uint8_t *p;
    nn_status st = take(ld, NN__IO_TRAILER_SIZE, &p);
    if (st) return st;
    if ((st = fill(ld, 1))) return st;
    crc_sync(ld);
    if (avail(ld) > 0) return broke(ld); /* trailing bytes */
    ld->finished = true;
    return verdict(ld);
}

/* Step to the next section the consumer should see (deliver) or through
 * every section (!deliver); *type = 0 at the end of the file. */
static nn_status advance(nn__ld *ld, bool deliver, uint32_t *type) {
    *type = 0;
    if (ld->fatal || ld->broken) return broke(ld);
    if (ld->finished) return NN_OK;
    nn_status st = NN_OK;
    if (ld->in_payload && (st = finish_section(ld))) return st;
    for (;;) {
        if (ld->next >= ld->count) return finish_file(ld);
        uint32_t i = ld->next++;
        nn__ld_rec *r = &ld->rec[i];
        uint64_t have = list_end(ld) - ld->pos;
        const uint8_t *h = NULL;
        size_t n = have < 24 ? (size_t)have : 24;
        if ((st = take(ld, n, &h))) return st;
        memcpy(r->hdr, h, n);
        if (framing(ld, i, 0, have, r->hdr, false)) return broke(ld);
        uint32_t t = nn__get_u32(r->hdr), flags = nn__get_u32(r->hdr + 4);
        ld->cur = i;
        crc_sync(ld); /* the header is not part of the payload's CRC */
        ld->in_payload = true;
        ld->left = nn__get_u64(r->hdr + 8);
        ld->sec_crc = 0;
        bool skip = !known_type(t);
        if (!skip && type_check(ld, i, t, flags, ld->seen, false)) skip = true;
        if (skip || !deliver) {
            /* An unknown skippable section, or draining: CRC only. A bad
             * type is reported by the verdict, after the CRC. */
            if ((st = finish_section(ld))) return st;
            if (type_check(ld, i, t, flags, ld->seen, false)) return broke(ld);
            if (known_type(t)) ld->seen |= 1u << t;
            continue;
        }
        ld->seen |= 1u << t;
        *type = t;
        return NN_OK;
    }
}

/* ---------------------------------------------------------- interface */

nn_status nn__ld_open(nn__ld *ld, const nn__io_src *src, int64_t max, const char *fn) {
    memset(ld, 0, sizeof *ld);
    ld->fn = fn;
    ld->max = max;
    ld->fd = -1;
    uint8_t tail[8];
    bool known = true;
    uint64_t size = 0;
    if (src->path) {
        ld->kind = SRC_FD;
        ld->path = src->path;
        ld->fd = open(src->path, O_RDONLY | O_CLOEXEC);
        if (ld->fd < 0)
            return fatal(ld, nn__err(errno == ENOENT ? NN_ERR_NOT_FOUND : NN_ERR_IO,
                                     "%s: cannot open '%s': %s", fn, src->path, strerror(errno)));
        struct stat stt;
        if (fstat(ld->fd, &stt) != 0 || !S_ISREG(stt.st_mode))
            return fatal(ld, nn__err(NN_ERR_IO, "%s: '%s' is not a regular file", fn, src->path));
        if ((uint64_t)stt.st_size > (uint64_t)max)
            return fatal(ld, nn__err(NN_ERR_LIMIT,
                                     "%s: '%s' has %lld bytes, over the %lld-byte limit "
                                     "(NN_IO_OPTION_MAX_BYTES)",
                                     fn, src->path, (long long)stt.st_size, (long long)max));
        size = (uint64_t)stt.st_size;
        if (size >= 8 && pread(ld->fd, tail, 8, (off_t)size - 8) != 8)
            return fatal(ld, nn__err(NN_ERR_IO, "%s: reading '%s' failed: %s", fn, src->path,
                                     strerror(errno)));
    } else if (src->read) {
        ld->kind = SRC_READ;
        ld->read = src->read;
        ld->user = src->user;
        known = false;
    } else {
        if (!src->data && src->size) return fatal(ld, nn__err(NN_ERR_NULL, "%s: argument 'data' is NULL", fn));
        if (src->size > (uint64_t)max)
            return fatal(ld, nn__err(NN_ERR_LIMIT,
                                     "%s: %zu bytes exceed the %lld-byte limit "
                                     "(NN_IO_OPTION_MAX_BYTES)",
                                     fn, src->size, (long long)max));
        ld->kind = SRC_BUF;
        ld->win = (uint8_t *)(uintptr_t)(src->data ? src->data : "");
        ld->wlen = src->size;
        ld->eof = true;
        size = src->size;
        if (size >= 8) memcpy(tail, ld->win + size - 8, 8);
    }
    if (ld->kind != SRC_BUF && !(ld->win = nn__malloc(WIN_CAP))) return fatal(ld, NN_ERR_NOMEM);
    /* The header checks that need no more than the first 40 bytes (and, for
     * a file or a buffer, the size and the last 8 bytes) come first: a
     * wrong file is rejected before anything else is read. */
    nn_status st = fill(ld, NN__IO_HEADER_SIZE + NN__IO_TRAILER_SIZE);
    if (st) return st;
    memcpy(ld->hdr, ld->win, avail(ld) < NN__IO_HEADER_SIZE ? avail(ld) : NN__IO_HEADER_SIZE);
    if (!known && avail(ld) < NN__IO_HEADER_SIZE + NN__IO_TRAILER_SIZE) {
        known = true; /* the whole stream is in the window */
        size = avail(ld);
        if (size >= 8) memcpy(tail, ld->win + size - 8, 8);
    }
    if ((st = header_verdict(ld, known ? size : UINT64_MAX, known ? tail : NULL)))
        return fatal(ld, st);
    const uint8_t *h;
    if ((st = take(ld, NN__IO_HEADER_SIZE, &h))) return st;
    ld->declared = nn__get_u64(ld->hdr + 16);
    ld->count = nn__get_u32(ld->hdr + 24);
    if (ld->count > NN__IO_MAX_SECTIONS ||
        ld->declared < NN__IO_HEADER_SIZE + NN__IO_TRAILER_SIZE)
        broke(ld);
    return NN_OK;
}

void nn__ld_init_failed(nn__ld *ld, const char *fn) {
    memset(ld, 0, sizeof *ld);
    ld->fn = fn;
    ld->kind = SRC_BUF; /* no window of its own to free */
    ld->fd = -1;
    ld->fatal = true;
}

nn_status nn__ld_next(nn__ld *ld, uint32_t *type) { return advance(ld, true, type); }

uint64_t nn__ld_left(const nn__ld *ld) { return ld->in_payload ? ld->left : 0; }

/* Consumer reads are confined to the current section's payload. */
static nn_status payload(nn__ld *ld, uint64_t n) {
    if (ld->fatal || ld->broken) return broke(ld);
    if (!ld->in_payload || n > ld->left)
        return nn__err(NN_ERR_FORMAT, "%s: read of %llu bytes past the end of a section", ld->fn,
                       (unsigned long long)n);
    return NN_OK;
}

nn_status nn__ld_take(nn__ld *ld, size_t n, const uint8_t **p) {
    nn_status st = payload(ld, n);
    if (!st && n > WIN_CAP)
        st = nn__err(NN_ERR_LIMIT, "%s: a field of %zu bytes is over %zu", ld->fn, n, WIN_CAP);
    if (!st) st = take(ld, n, p);
    if (!st) ld->left -= n;
    return st;
}

nn_status nn__ld_chunk(nn__ld *ld, size_t max, const uint8_t **p, size_t *n) {
    nn_status st = payload(ld, 0);
    if (st) return st;
    if (max > ld->left) max = (size_t)ld->left;
    if (max > WIN_CAP) max = WIN_CAP;
    *n = 0;
    if (max == 0) return NN_OK;
    if (!avail(ld) && (st = fill(ld, 1))) return st;
    if (!avail(ld)) return ended(ld);
    size_t k = avail(ld) < max ? avail(ld) : max;
    if ((st = take(ld, k, p))) return st;
    ld->left -= k;
    *n = k;
    return NN_OK;
}

nn_status nn__ld_copy(nn__ld *ld, void *dst, uint64_t n) {
    nn_status st = payload(ld, n);
    if (!st) st = copy(ld, dst, n);
    if (!st) ld->left -= n;
    return st;
}

nn_status nn__ld_whole(nn__ld *ld, const uint8_t **p, size_t *len) {
    nn_status st = payload(ld, 0);
    if (st) return st;
    uint64_t n = ld->left;
    if (ld->kind == SRC_BUF) {
        *p = ld->win + ld->wpos;
        st = nn__ld_copy(ld, NULL, n);
    } else {
        /* A callback's real length is unknown until it ends: the buffer
         * grows with the bytes that actually arrive, never ahead of them
         * by more than itself. */
        size_t have = 0, cap = 0;
        nn__free(ld->whole);
        ld->whole = NULL;
        while (!st && have < n) {
            if (have == cap) {
                cap = n - have < (cap ? cap : WIN_CAP) ? (size_t)n : have + (cap ? cap : WIN_CAP);
                uint8_t *w = nn__realloc(ld->whole, cap);
                if (!w) return fatal(ld, NN_ERR_NOMEM);
                ld->whole = w;
            }
            st = nn__ld_copy(ld, ld->whole + have, cap - have);
            have = cap;
        }
        *p = ld->whole ? ld->whole : (const uint8_t *)"";
    }
    if (st) return st;
    *len = (size_t)n;
    /* The section is complete: parse it only if its CRC holds. */
    return finish_section(ld);
}

nn_status nn__ld_close(nn__ld *ld, nn_status st) {
    nn_status out = st;
    if (!ld->fatal && st != NN_ERR_NOMEM && !(st == NN_OK && ld->finished)) {
        /* Keep the consumer's message while the rest is checked. */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", st ? nn_last_error() : "");
        uint32_t type;
        nn_status w = NN_OK;
        if (!ld->broken) w = advance(ld, false, &type);
        if (!ld->fatal && (w == NN_OK || ld->broken)) w = drain(ld);
        crc_sync(ld);
        if (ld->fatal) {
            out = w; /* an I/O error or the limit while draining */
        } else {
            nn_status v = verdict(ld);
            if (v)
                out = v;
            else if (st)
                out = nn__err(st, "%s", msg);
            else if (ld->broken)
                out = broke(ld); /* not reached: a broken walk has a verdict */
        }
    }
    if (ld->kind != SRC_BUF) nn__free(ld->win);
    if (ld->fd >= 0) close(ld->fd);
    nn__free(ld->whole);
    ld->win = NULL;
    ld->whole = NULL;
    ld->fd = -1;
    return out;
}
