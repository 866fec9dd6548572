/* Numeric CSV datasets: every field a number, one optional integer label
 * column, RFC 4180 quoting. Structure errors (ragged rows, bad quoting, a
 * NUL byte, a bad label column) always fail; the policy only decides what an
 * empty or non-numeric cell does.
 *
 * Memory: the file is read twice through one fixed buffer. The first pass
 * checks the structure and counts the rows (parsing the cells only under
 * the DROP policy, to know which rows survive); then x and y are allocated
 * at their final size and the second pass parses straight into them. Peak
 * memory is what is returned plus about 70 KiB, whatever the row shape. */
#include "data_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FN "nn_dataset_from_csv"
#define CSV_BUF (64 * 1024)
#define CSV_CELL_MAX 4096 /* longer cells are kept only in part: never numbers */

/* ------------------------------------------------------------ reading */

typedef struct csv_in {
    int fd;
    const char *path;
    size_t pos, len;
    bool eof;
    nn_status err;  /* a read error, recorded once */
    long line;      /* physical line of the next byte, 1-based */
    unsigned char buf[CSV_BUF];
} csv_in;

/* One cell as read: text without quotes (at most CSV_CELL_MAX bytes kept). */
typedef struct csv_cell {
    char text[CSV_CELL_MAX + 1];
    size_t len;
    bool truncated;
    bool quoted;
    size_t raw;     /* bytes read for the cell, '\r' not counted (blank lines) */
    long line;      /* where the cell starts */
} csv_cell;

enum { CSV_END_FIELD, CSV_END_RECORD, CSV_END_FILE };

static bool refill(csv_in *in) {
    if (in->eof || in->err) return false;
    for (;;) {
        ssize_t k = read(in->fd, in->buf, CSV_BUF);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            in->err = nn__err(NN_ERR_IO, FN ": reading '%s' failed: %s", in->path, strerror(errno));
            return false;
        }
        in->pos = 0;
        in->len = (size_t)k;
        in->eof = k == 0;
        return k > 0;
    }
}

/* The next byte without consuming it; -1 at the end or after an error. */
static inline int peek(csv_in *in) {
    if (in->pos == in->len && !refill(in)) return -1;
    return in->buf[in->pos];
}

static inline int get(csv_in *in) {
    int c = peek(in);
    if (c >= 0) {
        in->pos++;
        if (c == '\n') in->line++;
    }
    return c;
}

/* Start (again) at the first byte, skipping a UTF-8 byte-order mark. */
static nn_status rewind_in(csv_in *in) {
    if (lseek(in->fd, 0, SEEK_SET) != 0)
        return nn__err(NN_ERR_IO, FN ": cannot seek in '%s': %s", in->path, strerror(errno));
    in->pos = in->len = 0;
    in->eof = false;
    in->line = 1;
    while (in->len < 3 && !in->eof && !in->err) { /* the BOM may straddle short reads */
        ssize_t k = read(in->fd, in->buf + in->len, CSV_BUF - in->len);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0)
            return in->err = nn__err(NN_ERR_IO, FN ": reading '%s' failed: %s", in->path,
                                     strerror(errno));
        in->len += (size_t)k;
        in->eof = k == 0;
    }
    if (in->len >= 3 && !memcmp(in->buf, "\xef\xbb\xbf", 3)) in->pos = 3;
    in->eof = false; /* the next refill finds the end again */
    return NN_OK;
}

static void cell_put(csv_cell *f, int c) {
    if (f->len < CSV_CELL_MAX)
        f->text[f->len++] = (char)c;
    else
        f->truncated = true;
}

static nn_status nul_error(const csv_in *in, int64_t col) {
    return nn__err(NN_ERR_FORMAT, FN ": line %ld column %lld: embedded NUL byte", in->line,
                   (long long)col);
}

static bool is_blank(int c, char delim) { return (c == ' ' || c == '\t') && c != delim; }

/* Rest of a quoted cell after its opening quote: "" is one quote; delimiters
 * and newlines are data. */
static nn_status read_quoted(csv_in *in, csv_cell *f, int64_t col) {
    for (;;) {
        int c = get(in);
        if (c < 0)
            return in->err ? in->err
                           : nn__err(NN_ERR_FORMAT,
                                     FN ": line %ld column %lld: the quoted field is not closed "
                                        "before the end of the file",
                                     f->line, (long long)col);
        f->raw++;
        if (c == 0) return nul_error(in, col);
        if (c == '"') {
            if (peek(in) != '"') return NN_OK;
            get(in);
            f->raw++;
        }
        cell_put(f, c);
    }
}

/* An unquoted cell up to the delimiter, newline or end; blanks around it
 * (and a '\r' before the newline) are trimmed. */
static nn_status read_plain(csv_in *in, char delim, csv_cell *f, int64_t col) {
    size_t pending = 0; /* blanks seen since the last other byte */
    for (int c; (c = peek(in)) >= 0 && c != delim && c != '\n';) {
        get(in);
        if (c != '\r') f->raw++;
        if (c == 0) return nul_error(in, col);
        if (c == '"')
            return nn__err(NN_ERR_FORMAT,
                           FN ": line %ld column %lld: a quote inside an unquoted field "
                              "(quote the whole field and double the quote)",
                           in->line, (long long)col);
        if (c == ' ' || c == '\t' || c == '\r') {
            pending++;
            continue;
        }
        for (; pending; pending--) cell_put(f, ' ');
        cell_put(f, c);
    }
    return in->err;
}

/* Read one cell into f; *end says what ended it. col: its index (messages).
 * Inner blanks of a plain cell are kept as spaces (enough for a number). */
static nn_status read_cell(csv_in *in, char delim, csv_cell *f, int64_t col, int *end) {
    f->len = f->raw = 0;
    f->truncated = f->quoted = false;
    f->line = in->line;
    int c;
    while (is_blank(c = peek(in), delim)) {
        get(in);
        f->raw++;
    }
    nn_status st;
    if (c == '"') {
        get(in);
        f->raw++;
        f->quoted = true;
        if ((st = read_quoted(in, f, col))) return st;
        while ((c = peek(in)) == '\r' || is_blank(c, delim)) get(in);
    } else if ((st = read_plain(in, delim, f, col))) {
        return st;
    }
    f->text[f->len] = '\0';
    c = get(in);
    if (c < 0 && in->err) return in->err;
    if (c < 0)
        *end = CSV_END_FILE;
    else if (c == delim)
        *end = CSV_END_FIELD;
    else if (c == '\n')
        *end = CSV_END_RECORD;
    else if (c == 0)
        return nul_error(in, col);
    else
        return nn__err(NN_ERR_FORMAT,
                       FN ": line %ld column %lld: unexpected byte 0x%02x ('%c') after a closing "
                          "quote",
                       in->line, (long long)col, c, c >= 0x20 && c < 0x7f ? c : '?');
    return NN_OK;
}

/* ------------------------------------------------------------ parsing */

typedef struct csv_opts {
    const char *path;
    char delim;
    bool header;
    bool has_label;
    int64_t label_col;
    nn_csv_policy policy;
    double fill;
} csv_opts;

/* What a pass learns or fills. */
typedef struct csv_pass {
    bool parse;         /* parse cells (always in the fill pass) */
    float *x;           /* NULL in the counting pass */
    int64_t *y;
    int64_t cap;        /* rows x and y hold */
    int64_t ncols;      /* -1 until the first record */
    int64_t nfeat;
    int64_t rows;       /* rows kept */
    int64_t dropped, filled;
} csv_pass;

/* A finite number filling the whole cell (blanks around it allowed). */
static bool parse_num(const csv_cell *f, double *v) {
    if (f->truncated) return false;
    const char *s = f->text;
    while (*s == ' ' || *s == '\t') s++;
    if (!*s) return false;
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    while (*end == ' ' || *end == '\t') end++;
    return *end == '\0' && errno != ERANGE && isfinite(*v);
}

/* The cell's text for a message: at most 64 bytes, "..." when cut. */
static const char *shown(const csv_cell *f, char *buf, size_t cap) {
    bool cut = f->truncated || f->len > 64;
    snprintf(buf, cap, "%.64s%s", f->text, cut ? "..." : "");
    return buf;
}

/* Handle one cell of a data record. *keep turns false when the row is to be
 * dropped; *filled when a cell was filled. */
static nn_status take_cell(const csv_opts *o, csv_pass *p, const csv_cell *f, int64_t col,
                           bool *keep, bool *filled, int64_t *label) {
    char msg[80];
    double v;
    bool ok = parse_num(f, &v);
    if (o->has_label && col == o->label_col) {
        if (!ok || v < 0 || v != floor(v) || v > 2147483647.0) {
            if (o->policy == NN_CSV_POLICY_DROP) {
                *keep = false;
                return NN_OK;
            }
            return nn__err(NN_ERR_FORMAT,
                           FN ": line %ld column %lld: label '%s' is not an integer >= 0",
                           f->line, (long long)col, shown(f, msg, sizeof msg));
        }
        *label = (int64_t)v;
        return NN_OK;
    }
    if (!ok) {
        if (o->policy == NN_CSV_POLICY_DROP) {
            *keep = false;
            return NN_OK;
        }
        if (o->policy == NN_CSV_POLICY_ERROR)
            return nn__err(NN_ERR_FORMAT, FN ": line %ld column %lld: '%s' is not a number",
                           f->line, (long long)col, shown(f, msg, sizeof msg));
        v = o->fill;
        *filled = true;
    }
    /* Past the rows counted, only a row that will be dropped can follow
     * (anything else is reported by scan): nothing to write. */
    if (p->x && p->rows < p->cap) {
        int64_t k = col - (o->has_label && col > o->label_col ? 1 : 0);
        p->x[p->rows * p->nfeat + k] = (float)v;
    }
    return NN_OK;
}

static nn_status changed(const csv_opts *o) {
    return nn__err(NN_ERR_IO, FN ": '%s' changed while it was read", o->path);
}

/* The first record fixed the column count: check it against the options. */
static nn_status set_columns(const csv_opts *o, csv_pass *p, int64_t ncols) {
    if (o->has_label && (o->label_col < 0 || o->label_col >= ncols))
        return nn__err(NN_ERR_RANGE, FN ": label_column %lld outside [0, %lld)",
                       (long long)o->label_col, (long long)ncols);
    if (ncols - (o->has_label ? 1 : 0) < 1) return nn__err(NN_ERR_FORMAT, FN ": no feature columns");
    if (p->ncols >= 0 && p->ncols != ncols) /* the fill pass knows it already */
        return changed(o);
    p->ncols = ncols;
    p->nfeat = ncols - (o->has_label ? 1 : 0);
    return NN_OK;
}

/* One pass over the whole file. The fill pass (p->x set) writes row
 * p->rows in place, so a dropped row is simply overwritten by the next. */
static nn_status scan(csv_in *in, const csv_opts *o, csv_pass *p, csv_cell *f) {
    nn_status st = rewind_in(in);
    bool header = o->header;
    int64_t known = p->ncols; /* from the counting pass; -1 before it */
    p->rows = p->dropped = p->filled = 0;
    for (int end = CSV_END_RECORD; !st && end != CSV_END_FILE;) {
        long line = in->line;
        int64_t col = 0, label = 0;
        bool keep = true, filled = false, blank = false;
        for (end = CSV_END_FIELD; end == CSV_END_FIELD; col++) {
            if ((st = read_cell(in, o->delim, f, col, &end))) break;
            if (col == 0 && end != CSV_END_FIELD && !f->raw && !f->quoted) {
                blank = true; /* an empty line carries no row */
                break;
            }
            bool data = !header && (known < 0 || col < known);
            if (data && p->parse && keep && (st = take_cell(o, p, f, col, &keep, &filled, &label)))
                break;
        }
        if (st || blank) continue;
        if (p->ncols < 0 || header) {
            if ((st = set_columns(o, p, col))) break;
            known = col;
            if (header) {
                header = false;
                continue;
            }
        }
        if (col != p->ncols) {
            st = nn__err(NN_ERR_FORMAT, FN ": line %ld has %lld fields, expected %lld", line,
                         (long long)col, (long long)p->ncols);
        } else if (!keep) {
            p->dropped++;
        } else if (p->y && p->rows >= p->cap) {
            st = changed(o); /* more rows than the counting pass found */
        } else {
            if (p->y) p->y[p->rows] = label;
            p->rows++;
            p->filled += filled;
        }
    }
    if (!st && p->ncols < 0) st = nn__err(NN_ERR_FORMAT, FN ": the file is empty");
    return st;
}

static nn_dataset *read_dataset(csv_in *in, const csv_opts *o, csv_cell *f, int64_t *dropped,
                                int64_t *filled) {
    csv_pass count = {.parse = o->policy == NN_CSV_POLICY_DROP, .ncols = -1};
    nn_status st = scan(in, o, &count, f);
    *dropped = count.dropped;
    if (st) return NULL;
    if (count.rows == 0)
        return NN__FAIL(NN_ERR_FORMAT, FN ": no data rows (%lld dropped)",
                        (long long)count.dropped);
    int64_t shape[2] = {count.rows, count.nfeat};
    nn_tensor *x = nn__tensor_new(NN_DTYPE_F32, shape, 2);
    nn_tensor *y = x ? nn__tensor_new(NN_DTYPE_I64, shape, 1) : NULL;
    if (!y) {
        nn__tensor_release(x);
        return NULL;
    }
    csv_pass fill = {.parse = true, .x = nn__f32(x), .y = nn__i64(y), .cap = count.rows,
                     .ncols = count.ncols, .nfeat = count.nfeat};
    st = scan(in, o, &fill, f);
    *dropped = fill.dropped;
    *filled = fill.filled;
    if (!st && fill.rows != count.rows) st = changed(o);
    if (st) {
        nn__tensor_release(x);
        nn__tensor_release(y);
        return NULL;
    }
    return nn__dataset_new(x, y, FN);
}

nn_dataset *nn_dataset_from_csv(const char *path, bool header, char delimiter, bool has_label,
                                int32_t label_column, nn_csv_policy policy, double fill_value,
                                int64_t *n_dropped, int64_t *n_filled) {
    if (n_dropped) *n_dropped = 0;
    if (n_filled) *n_filled = 0;
    if (!nn__check_ptr(path, FN, "path")) return NULL;
    if (policy != NN_CSV_POLICY_ERROR && policy != NN_CSV_POLICY_DROP &&
        policy != NN_CSV_POLICY_FILL)
        return NN__FAIL(NN_ERR_INVALID, FN ": unknown policy %d", (int)policy);
    if (delimiter == '\0' || delimiter == '\n' || delimiter == '\r' || delimiter == '"')
        return NN__FAIL(NN_ERR_INVALID, FN ": invalid delimiter 0x%02x", (unsigned char)delimiter);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NN__FAIL(errno == ENOENT ? NN_ERR_NOT_FOUND : NN_ERR_IO, FN ": cannot open '%s': %s",
                        path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return NN__FAIL(NN_ERR_IO, FN ": '%s' is not a regular file (it is read twice)", path);
    }
    /* One block for the read buffer and the cell: nothing else grows. */
    struct {
        csv_in in;
        csv_cell cell;
    } *work = nn__malloc(sizeof *work);
    nn_dataset *ds = NULL;
    int64_t dropped = 0, filled = 0;
    if (work) {
        work->in = (csv_in){.fd = fd, .path = path};
        csv_opts o = {path, delimiter, header, has_label, label_column, policy, fill_value};
        ds = read_dataset(&work->in, &o, &work->cell, &dropped, &filled);
    }
    nn__free(work);
    close(fd);
    if (n_dropped) *n_dropped = dropped;
    if (n_filled) *n_filled = filled;
    return ds;
}
