/* Internal interface of the model file code (lib/io). See FORMAT.md. */
#ifndef NN_IO_INTERNAL_H
#define NN_IO_INTERNAL_H

#include "nn_internal.h"
#include "core/index.h"

#include <sys/types.h>

/* ------------------------------------------------------------ constants */

#define NN__IO_MAGIC "\x89NNM\r\n\x1a\n" /* 8 bytes */
#define NN__IO_END_MAGIC "NEND"          /* 4 bytes */
#define NN__IO_MAJOR 1
#define NN__IO_MINOR 1 /* 1.1: aligned files (FORMAT.md 11) */
#define NN__IO_HEADER_SIZE 32
#define NN__IO_SECTION_HEADER_SIZE 24
#define NN__IO_TRAILER_SIZE 8
#define NN__IO_MAX_SECTIONS 256
#define NN__IO_FLAG_ALIGNED 1u /* header flag: stored tensors at 64-byte file offsets */
#define NN__IO_ALIGN 64

enum {
    NN__SEC_META = 1,
    NN__SEC_MODULE = 2,
    NN__SEC_TENSORS = 3,
    NN__SEC_TRAINING = 4,
};
#define NN__SEC_FLAG_SKIPPABLE 1u

#define NN__IO_MAX_NAME 65535u        /* keys, tensor names, module types */
#define NN__IO_MAX_STRING (16u << 20) /* metadata string values */
#define NN__IO_MAX_DEPTH 32           /* module tree nesting */
#define NN__IO_MAX_NODES 65536        /* module tree nodes */
#define NN__IO_MAX_ENTRIES 65536u     /* tensors / metadata entries / strings */
#define NN__IO_ZLIB_MAX_RATIO 1032u   /* deflate's maximum expansion on inflate */
#define NN__IO_DEFAULT_MAX_BYTES ((int64_t)4 << 30)

/* ----------------------------------------------------------- options */

struct nn_io_options {
    nn__handle handle; /* NN__KIND_IO_OPTIONS */
    int64_t compression;
    int64_t module_tree;
    int64_t max_bytes;
    int64_t strict;
    int64_t aligned; /* save: stored tensors at 64-byte file offsets (FORMAT.md 5) */
    int64_t mmap;    /* load from a path: 0 copy, 1 map, 2 map and verify CRCs */
    nn_optim *opt; /* attached training state (borrowed) */
    nn_sched *sched;
    nn_generator *gen;
    int64_t epoch, step;
    /* Keys (seal.c): copies, wiped when replaced and when the options are freed. */
    int64_t require_signature;
    bool has_sign_key, has_verify_key, has_encrypt_key;
    uint8_t sign_key[64], verify_key[32], encrypt_key[32];
};
NN__HANDLE_FIRST(struct nn_io_options, handle);
/* Wipe the key copies of o (seal.c; sodium_memzero where available). */
void nn__io_options_wipe(nn_io_options *o);
/* opts or the defaults (copied into *tmp); NULL + error if opts is a bad handle. */
const nn_io_options *nn__io_opts(const nn_io_options *opts, nn_io_options *tmp, const char *fn);

/* ------------------------------------------------------- write buffer */

/* A growable byte buffer; the first failure sticks (status in err). */
typedef struct nn__wbuf {
    uint8_t *p;
    size_t len, cap;
    nn_status err;
} nn__wbuf;

void nn__wbuf_bytes(nn__wbuf *w, const void *data, size_t n);
void nn__wbuf_u8(nn__wbuf *w, uint8_t v);
void nn__wbuf_u16(nn__wbuf *w, uint16_t v);
void nn__wbuf_u32(nn__wbuf *w, uint32_t v);
void nn__wbuf_u64(nn__wbuf *w, uint64_t v);
void nn__wbuf_f64(nn__wbuf *w, double v);
/* u32 length + bytes (no terminator). */
void nn__wbuf_str(nn__wbuf *w, const char *s);
/* Reserve n bytes and return a pointer to them (NULL on failure). */
uint8_t *nn__wbuf_reserve(nn__wbuf *w, size_t n);
void nn__wbuf_free(nn__wbuf *w);
/* Patch little-endian values at an earlier offset. */
void nn__put_u32(uint8_t *p, uint32_t v);
void nn__put_u64(uint8_t *p, uint64_t v);

/* ------------------------------------------------------------- reader */

typedef struct nn__ld nn__ld; /* a file being read in one pass (load.c) */

/* A bounds-checked cursor over bytes that came from a file. Every read
 * checks the bytes that remain first; failures record an error naming fn
 * and what (the field) and leave the cursor unusable (ok = false). The
 * bytes are either in memory (p) or the next len bytes of a section of a
 * file being read (ld): then a borrowed pointer lasts until the next read. */
typedef struct nn__rd {
    const uint8_t *p;
    size_t len, pos;
    const char *fn;   /* public function name, for messages */
    const char *what; /* section name, for messages */
    bool ok;
    nn__ld *ld;
} nn__rd;

void nn__rd_init(nn__rd *r, const void *p, size_t len, const char *fn, const char *what);
size_t nn__rd_left(const nn__rd *r);
bool nn__rd_u8(nn__rd *r, uint8_t *v, const char *field);
bool nn__rd_u16(nn__rd *r, uint16_t *v, const char *field);
bool nn__rd_u32(nn__rd *r, uint32_t *v, const char *field);
bool nn__rd_u64(nn__rd *r, uint64_t *v, const char *field);
bool nn__rd_i64(nn__rd *r, int64_t *v, const char *field);
bool nn__rd_f64(nn__rd *r, double *v, const char *field);
/* Borrow n bytes. */
bool nn__rd_bytes(nn__rd *r, const uint8_t **p, size_t n, const char *field);
/* A string: u32 length (<= cap, else NN_ERR_LIMIT; <= bytes left, else
 * NN_ERR_FORMAT; no NUL byte inside) copied into a new NUL-terminated
 * allocation (nn__free). */
bool nn__rd_str(nn__rd *r, char **s, uint32_t cap, const char *field);
/* A count whose items each take at least min_item bytes: checked against
 * cap (NN_ERR_LIMIT) and the bytes left (NN_ERR_FORMAT) before any use. */
bool nn__rd_count(nn__rd *r, uint32_t *n, uint32_t cap, size_t min_item, const char *field);
/* The whole input must have been consumed (else NN_ERR_FORMAT). */
bool nn__rd_end(nn__rd *r);
/* A cursor over the next len bytes of ld's current section. */
void nn__rd_init_ld(nn__rd *r, nn__ld *ld, size_t len, const char *fn, const char *what);
/* Carve the next n bytes off r as the cursor sub (r moves past them); n
 * longer than what is left is NN_ERR_FORMAT naming field. */
bool nn__rd_sub(nn__rd *r, nn__rd *sub, uint64_t n, const char *what, const char *field);
/* Borrow the next 1..max bytes (*n of them; 0 only when none are left). */
bool nn__rd_chunk(nn__rd *r, size_t max, const uint8_t **p, size_t *n, const char *field);
/* Copy the next n bytes to dst (NULL: skip them). */
bool nn__rd_copy(nn__rd *r, void *dst, size_t n, const char *field);

uint32_t nn__get_u32(const uint8_t *p);
uint64_t nn__get_u64(const uint8_t *p);

/* ------------------------------------------------------ CRC and zlib */

uint32_t nn__crc32(uint32_t crc, const void *data, size_t n);
/* Compress src at level 1..9 into a new allocation (*out, *out_len). */
nn_status nn__deflate(const void *src, size_t n, int level, uint8_t **out, size_t *out_len);
/* Inflate exactly the next in_len bytes of r into exactly out_len bytes
 * (else NN_ERR_FORMAT naming tensor `name`). */
nn_status nn__inflate_rd(nn__rd *r, size_t in_len, void *out, size_t out_len, const char *fn,
                         const char *name);

/* ---------------------------------------------------------- container */

/* Builds a file: header, then sections appended one by one, then finish. */
typedef struct nn__filew {
    nn__wbuf w;
    uint32_t nsections;
    uint32_t flags; /* header flags (NN__IO_FLAG_ALIGNED: minor version 1) */
} nn__filew;

void nn__filew_begin(nn__filew *f);
/* Append a section whose payload is the bytes of body (consumed: freed). */
void nn__filew_section(nn__filew *f, uint32_t type, uint32_t flags, nn__wbuf *body);
/* Patch the header, append the trailer; on success the caller owns *data (of *size bytes). */
nn_status nn__filew_finish(nn__filew *f, uint8_t **data, size_t *size, const char *fn);

/* -------------------------------------------------------- sinks/sources */

/* Write a finished file to path atomically / through a callback. */
nn_status nn__io_write_path(const char *path, const uint8_t *data, size_t size, const char *fn);
nn_status nn__io_write_stream(nn_write_fn write, void *user, const uint8_t *data, size_t size,
                              const char *fn);

/* The system calls used by the atomic save; tests replace them to inject
 * failures (nn__io_sys_reset restores the real ones). Not thread-safe to
 * change while saving. */
typedef struct nn__io_sys {
    int (*open)(const char *path, int flags, int mode);
    ssize_t (*write)(int fd, const void *buf, size_t n);
    int (*fsync)(int fd);
    int (*close)(int fd);
    int (*rename)(const char *from, const char *to);
    int (*unlink)(const char *path);
} nn__io_sys;
extern nn__io_sys nn__io_sys_ops;
void nn__io_sys_reset(void);

/* ----------------------------------------------------------- metadata */

typedef struct nn__meta_entry {
    char *key;
    nn_meta_kind kind;
    char *str;   /* STRING */
    double num;  /* NUMBER */
    double *arr; /* ARRAY */
    char **strs; /* STRINGS */
    int64_t n;   /* ARRAY / STRINGS count */
} nn__meta_entry;

struct nn_meta {
    nn__handle handle; /* NN__KIND_META */
    int64_t n, cap;
    nn__meta_entry *e;
    nn__index keys; /* key -> entry, once past NN__INDEX_MIN entries */
};
NN__HANDLE_FIRST(struct nn_meta, handle);

nn_meta *nn__meta_new(void);
bool nn__meta_check(const nn_meta *m, const char *fn);
/* Append the META section payload for m (m may be NULL: no entries). */
void nn__meta_encode(const nn_meta *m, nn__wbuf *w);
/* Parse a META payload into a new nn_meta. */
nn_meta *nn__meta_decode(const uint8_t *p, size_t len, const char *fn);

/* ------------------------------------------------------ tensor tables */

/* Tensor lists are nn__named_list (nn_internal.h): names and tensors
 * borrowed when encoding; owned, untracked, when decoded (clear with
 * nn__named_list_clear(l, true)). */

/* Append a tensor table (FORMAT.md "Tensor table") for the list. */
nn_status nn__tensors_encode(const nn__named_list *l, int level, nn__wbuf *w, const char *fn);
/* Same; base >= 0: the table will start at file offset base and every
 * tensor is stored at a file offset that is a multiple of 64 (aligned
 * files, FORMAT.md 5), whatever the level. */
nn_status nn__tensors_encode_ex(const nn__named_list *l, int level, nn__wbuf *w, int64_t base,
                                const char *fn);

/* One tensor of a table, as declared (checked by nn__ttable_read). */
typedef struct nn__tentry {
    char *name;
    uint8_t dtype, ndim, codec;
    int64_t shape[NN_MAX_DIMS];
    uint64_t offset, stored, raw;
} nn__tentry;

/* A tensor table whose entries are read and checked and whose data area
 * is still to come, in table order (FORMAT.md 5). */
typedef struct nn__ttable {
    uint32_t n, next; /* entries; entries whose data has been consumed */
    nn__tentry *e;
    uint64_t raw_bytes; /* sum of the entries' raw sizes */
    uint64_t data_at;   /* aligned tables: the data area's file offset */
    uint64_t consumed;  /* bytes of the data area read so far */
    nn__rd data;        /* the data area */
} nn__ttable;

/* Read the table that occupies all of r: header, entries, data size, every
 * rule of FORMAT.md 5 checked before any data is touched. *budget: tensor
 * bytes still allowed (decremented). */
nn_status nn__ttable_read(nn__rd *r, int64_t *budget, nn__ttable *t, const char *fn);
/* Same for the tensor section of an aligned file whose payload (the first
 * byte of r) is at file offset r_file_off (< 0: not aligned). */
nn_status nn__ttable_read_ex(nn__rd *r, int64_t *budget, nn__ttable *t, int64_t r_file_off,
                             const char *fn);
/* Decode the data of entry t->next into dst (its raw bytes, host order), or
 * skip it (dst NULL). Entries are consumed in order. */
nn_status nn__ttable_data(nn__ttable *t, void *dst, const char *fn);
/* Decode every remaining entry into new tensors appended to out (names
 * move to out). */
nn_status nn__ttable_list(nn__ttable *t, nn__named_list *out, const char *fn);
/* Skip the rest of the data area (it must end exactly there). */
nn_status nn__ttable_finish(nn__ttable *t, const char *fn);
void nn__ttable_free(nn__ttable *t);

/* ------------------------------------------------ whole files (file.c) */

/* Where a file comes from: exactly one of path, data (borrowed), read. */
typedef struct nn__io_src {
    const char *path;
    const void *data;
    size_t size;
    nn_read_fn read;
    void *user;
} nn__io_src;

/* Where a file goes: exactly one of path, out_data/out_size, write. */
typedef struct nn__io_dst {
    const char *path;
    void **out_data;
    size_t *out_size;
    nn_write_fn write;
    void *user;
} nn__io_dst;

/* The sections of a file being saved; NULL bodies are left out. */
typedef struct nn__io_parts {
    const nn_meta *meta;      /* META (always written, maybe empty) */
    const nn__named_list *tensors; /* TENSORS (required) */
    nn__wbuf *module;         /* MODULE payload (consumed) */
    nn__wbuf *training;       /* TRAINING payload (consumed) */
    const nn_io_options *seal; /* signing / encryption keys (NULL: none) */
} nn__io_parts;

/* Hand a finished file (data, consumed: freed or given to the caller) to dst. */
nn_status nn__io_deliver(const nn__io_dst *dst, uint8_t *data, size_t size, const char *fn);
/* Encode parts at the compression level and deliver the file to dst;
 * level < 0: an aligned file (stored tensors at 64-byte offsets). */
nn_status nn__io_save(const nn__io_parts *parts, int level, const nn__io_dst *dst, const char *fn);

/* ------------------------------------------------ one-pass reading (load.c) */

/* A section seen by the walk: its raw header, and its payload's CRC once
 * the payload has been consumed. */
typedef struct nn__ld_rec {
    uint8_t hdr[24];
    bool done;
    uint32_t crc;
} nn__ld_rec;

struct nn__ld {
    const char *fn;
    int kind; /* buffer, file or callback */
    int fd;
    const char *path;
    nn_read_fn read;
    void *user;
    int64_t max;
    uint64_t fetched; /* bytes taken from a file or callback */
    uint8_t *win;     /* the window (a buffer source: the buffer itself) */
    size_t wpos, wlen, csync; /* consumed up to wpos, CRC'd up to csync */
    bool eof;
    uint64_t pos;     /* bytes consumed */
    uint32_t crc;     /* CRC-32 of the consumed bytes but the last nheld */
    uint8_t held[4], tail[8], hdr[NN__IO_HEADER_SIZE];
    int nheld, ntail;
    uint64_t declared, left; /* file size in the header; payload bytes left */
    uint32_t count, next, cur, seen, sec_crc;
    bool in_payload, broken, finished, fatal;
    uint8_t *whole; /* nn__ld_whole's copy */
    nn__ld_rec rec[NN__IO_MAX_SECTIONS];
};

/* The header's version and flags (d: its 32 bytes, past a checked magic)
 * and, when tail (the file's last 8 bytes) is given, its declared size
 * against the file's `size` and the end marker: FORMAT.md 2. Shared by the
 * reader and the memory-mapped load. */
nn_status nn__io_header_fields(const uint8_t *d, uint64_t size, const uint8_t *tail,
                               const char *fn);
/* Start reading src (at most max bytes): the header checks that need no
 * more than the header (and a file's size and last 8 bytes) are made here. */
nn_status nn__ld_open(nn__ld *ld, const nn__io_src *src, int64_t max, const char *fn);
/* The next section to read (unknown skippable ones are passed over); the
 * rest of the previous one is skipped and its CRC checked. *type = 0 at the
 * end of the file, once every whole-file check has passed. */
nn_status nn__ld_next(nn__ld *ld, uint32_t *type);
/* Payload bytes of the current section not yet consumed. */
uint64_t nn__ld_left(const nn__ld *ld);
/* The rest of the current section in memory, CRC-checked (borrowed until
 * the next call). */
nn_status nn__ld_whole(nn__ld *ld, const uint8_t **p, size_t *len);
/* Consume n (<= 256 KiB) bytes of the current section, borrowed until the next read. */
nn_status nn__ld_take(nn__ld *ld, size_t n, const uint8_t **p);
/* Consume 1..max bytes of the current section (*n; 0 if none are left). */
nn_status nn__ld_chunk(nn__ld *ld, size_t max, const uint8_t **p, size_t *n);
/* Consume n bytes of the current section into dst (NULL: skip). */
nn_status nn__ld_copy(nn__ld *ld, void *dst, uint64_t n);
/* Finish with st, the consumer's status: on an error, the rest of the
 * input is read (CRC only) and the first failure in FORMAT.md's check order
 * is returned, the consumer's own error when the container is sound. */
nn_status nn__ld_close(nn__ld *ld, nn_status st);

/* ---- model.c: an nn_model around module m and metadata meta (both taken
 * over, also on failure: then freed and NULL returned), for importers of
 * other formats (lib/onnx). */
nn_model *nn__model_wrap(nn_module *m, nn_meta *meta);
/* ------------------------------- signed and encrypted files (seal.c) */

/* Wrap the finished file *data (*size bytes, an nn__malloc block) in place:
 * signed with o's signing key, then encrypted with its encryption key
 * (FORMAT.md 10); nothing happens without keys. On failure *data is
 * still the caller's to free. */
nn_status nn__seal(const nn_io_options *o, uint8_t **data, size_t *size, const char *fn);

typedef struct nn__unseal nn__unseal;
/* nn__ld_open for src as o's keys say: a signed or encrypted file (or any
 * file when o has keys or requires a signature) is read through a filter
 * that decrypts and verifies as the bytes go by (*u, else NULL). A failure
 * leaves ld closed-safe: nn__ld_close_sealed must still be called. */
nn_status nn__ld_open_sealed(nn__ld *ld, nn__unseal **u, const nn__io_src *src,
                             const nn_io_options *o, const char *fn);
/* nn__ld_close, then the filter's verdict: the rest of the input is read
 * and checked, and an envelope failure (decryption, truncation, signature)
 * replaces the consumer's status. Frees u. */
nn_status nn__ld_close_sealed(nn__ld *ld, nn__unseal *u, nn_status st);
/* A closed-safe ld that failed before opening (for nn__ld_close). */
void nn__ld_init_failed(nn__ld *ld, const char *fn);

/* ---- ties.c: tied parameters in the module section (FORMAT.md, 6) */
typedef struct nn__ties {
    uint32_t n;
    char **dst, **src;  /* tie i: parameter dst is the tensor of src (owned names) */
    nn_tensor **src_t;  /* reading: per source (first tie naming it), once created */
    bool *done;         /* reading: tie i applied */
    uint64_t src_bytes; /* reading: bytes of the sources made so far */
    nn__index by_dst;   /* dst name -> tie */
    nn__index by_src;   /* reading: source name -> first tie naming it */
} nn__ties;
/* Saving: every tensor of m listed a second time (by pre-order name) is a
 * tie to its first name. */
nn_status nn__ties_collect(nn_module *m, nn__ties *out);
/* The ties prefix of the module section (nothing when there are none). */
void nn__ties_encode(const nn__ties *t, nn__wbuf *w);
/* Reading: the optional ties prefix (out->n = 0 without one). */
nn_status nn__ties_decode(nn__rd *r, nn__ties *out, const char *fn);
/* Module m, just created at dotted prefix path ("" or "a.b."): note its
 * parameters that are sources, tie those that are destinations (their own
 * bytes, now freed, in *tied_bytes). NN_ERR_FORMAT on a bad tie. */
nn_status nn__ties_attach(nn__ties *t, const char *path, nn_module *m, uint64_t *tied_bytes,
                          const char *fn);
/* After the whole tree: every tie applied, else NN_ERR_FORMAT. */
nn_status nn__ties_check_done(const nn__ties *t, const char *fn);
/* Whether name is the destination of a tie (NULL t: no). */
bool nn__ties_is_dst(const nn__ties *t, const char *name);
void nn__ties_free(nn__ties *t);

/* model.c: give sd m's other names for the tensors it stores once (the
 * destinations of m's ties read their source's entry). */
nn_status nn__io_add_tied_names(nn_module *m, nn_statedict *sd);

/* ---- mapped.c: a whole file mapped privately (copy-on-write) */
typedef struct nn__map nn__map;
/* Map the regular file at path (min..max bytes, at least 1, else
 * NN_ERR_TRUNCATED / NN_ERR_LIMIT; NN_ERR_IO naming the path otherwise). */
nn_status nn__map_open(const char *path, size_t min, int64_t max, nn__map **out,
                       const uint8_t **base, size_t *size, const char *fn);
/* Drop the caller's reference (the mapping goes with the last tensor). NULL-safe. */
void nn__map_release(nn__map *m);
/* An untracked tensor viewing the mapping at byte offset off (its bytes
 * checked against the mapping's size; data aligned for dtype, else
 * NN_ERR_INVALID); it holds a reference to the mapping. */
nn_tensor *nn__map_tensor(nn__map *m, uint64_t off, nn_dtype dtype, const int64_t *shape,
                          int ndim, const char *fn);

#endif
