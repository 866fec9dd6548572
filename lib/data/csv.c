/* Numeric CSV datasets: every field a number, one optional integer label
 * column. Structure errors (ragged rows, a bad label column) always fail;
 * the policy only decides what an empty or non-numeric feature cell does. */
#include "data_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FN "nn_dataset_from_csv"

typedef struct csv_rows {
    float *x;
    int64_t *y;
    int64_t n, cap, nfeat;
} csv_rows;

/* Make room for one more row (capacity doubles; sizes overflow-checked). */
static nn_status rows_grow(csv_rows *r) {
    if (r->n < r->cap) return NN_OK;
    size_t ncap = r->cap ? (size_t)r->cap * 2 : 64, xbytes, ybytes;
    if (!nn__size_mul(ncap, (size_t)r->nfeat * sizeof(float), &xbytes) ||
        !nn__size_mul(ncap, sizeof(int64_t), &ybytes) || ncap > (size_t)INT64_MAX / 16)
        return nn__err(NN_ERR_OVERFLOW, FN ": too many rows");
    float *nx = nn__realloc(r->x, xbytes ? xbytes : 1);
    if (!nx) return NN_ERR_NOMEM;
    r->x = nx;
    int64_t *ny = nn__realloc(r->y, ybytes);
    if (!ny) return NN_ERR_NOMEM;
    r->y = ny;
    r->cap = (int64_t)ncap;
    return NN_OK;
}

/* Split line in place at delim; returns the field count (fields up to cap
 * stored). Leading/trailing spaces of each field are trimmed. */
static int64_t split_fields(char *line, char delim, char **fields, int64_t cap) {
    int64_t n = 0;
    char *p = line;
    for (;;) {
        char *end = strchr(p, delim);
        if (end) *end = '\0';
        while (*p == ' ' || *p == '\t') p++;
        char *t = p + strlen(p);
        while (t > p && (t[-1] == ' ' || t[-1] == '\t')) *--t = '\0';
        if (n < cap) fields[n] = p;
        n++;
        if (!end) break;
        p = end + 1;
    }
    return n;
}

static int64_t count_fields(const char *line, char delim) {
    int64_t n = 1;
    for (; *line; line++) n += *line == delim;
    return n;
}

/* A finite number filling the whole field. */
static bool parse_num(const char *s, double *v) {
    if (!*s) return false;
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return *end == '\0' && errno != ERANGE && isfinite(*v);
}

static void chomp(char *line, ssize_t *len) {
    while (*len > 0 && (line[*len - 1] == '\n' || line[*len - 1] == '\r')) line[--*len] = '\0';
}

typedef struct csv_opts {
    char delim;
    bool has_label;
    int64_t label_col;
    nn_csv_policy policy;
    double fill;
    int64_t dropped, filled;
} csv_opts;

/* Parse one data row into r (or drop it). line_no for messages. */
static nn_status parse_row(csv_rows *r, csv_opts *o, char **fields, int64_t nf, long line_no) {
    int64_t ncols = r->nfeat + (o->has_label ? 1 : 0);
    if (nf != ncols)
        return nn__err(NN_ERR_FORMAT, FN ": line %ld has %lld fields, expected %lld", line_no,
                       (long long)nf, (long long)ncols);
    nn_status st = rows_grow(r);
    if (st) return st;
    float *dst = r->x + r->n * r->nfeat;
    int64_t label = 0, filled = 0, k = 0;
    for (int64_t c = 0; c < ncols; c++) {
        double v;
        bool ok = parse_num(fields[c], &v);
        if (o->has_label && c == o->label_col) {
            if (!ok || v < 0 || v != floor(v) || v > 2147483647.0) {
                if (o->policy == NN_CSV_POLICY_DROP) goto drop;
                return nn__err(NN_ERR_FORMAT,
                               FN ": line %ld column %lld: label '%s' is not an integer >= 0",
                               line_no, (long long)c, fields[c]);
            }
            label = (int64_t)v;
            continue;
        }
        if (!ok) {
            if (o->policy == NN_CSV_POLICY_DROP) goto drop;
            if (o->policy == NN_CSV_POLICY_ERROR)
                return nn__err(NN_ERR_FORMAT, FN ": line %ld column %lld: '%s' is not a number",
                               line_no, (long long)c, fields[c]);
            v = o->fill;
            filled++;
        }
        dst[k++] = (float)v;
    }
    r->y[r->n++] = label;
    o->filled += filled > 0; /* rows with at least one filled cell */
    return NN_OK;
drop:
    o->dropped++;
    return NN_OK;
}

/* Read every line of f into r. */
static nn_status read_csv(FILE *f, bool header, csv_opts *o, csv_rows *r) {
    char *line = NULL, **fields = NULL;
    size_t lcap = 0;
    ssize_t len;
    long line_no = 0;
    int64_t ncols = -1;
    nn_status st = NN_OK;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        line_no++;
        chomp(line, &len);
        if (len == 0) continue; /* blank lines carry no row */
        if (ncols < 0) {
            ncols = count_fields(line, o->delim);
            if (o->has_label && (o->label_col < 0 || o->label_col >= ncols)) {
                st = nn__err(NN_ERR_RANGE, FN ": label_column %lld outside [0, %lld)",
                             (long long)o->label_col, (long long)ncols);
                break;
            }
            r->nfeat = ncols - (o->has_label ? 1 : 0);
            if (!(fields = nn__calloc((size_t)ncols, sizeof(char *)))) {
                st = NN_ERR_NOMEM;
                break;
            }
            if (header) continue;
        }
        int64_t nf = split_fields(line, o->delim, fields, ncols);
        if ((st = parse_row(r, o, fields, nf, line_no))) break;
    }
    if (!st && ferror(f)) st = nn__err(NN_ERR_IO, FN ": read error: %s", strerror(errno));
    if (!st && ncols < 0) st = nn__err(NN_ERR_FORMAT, FN ": the file is empty");
    if (!st && r->nfeat < 1) st = nn__err(NN_ERR_FORMAT, FN ": no feature columns");
    if (!st && r->n == 0)
        st = nn__err(NN_ERR_FORMAT, FN ": no data rows (%lld dropped)", (long long)o->dropped);
    free(line); /* from getline: the C allocator, not the hook */
    nn__free(fields);
    return st;
}

static nn_dataset *rows_to_dataset(csv_rows *r) {
    int64_t shape[2] = {r->n, r->nfeat};
    nn_tensor *x = nn__tensor_new(NN_DTYPE_F32, shape, 2);
    nn_tensor *y = nn__tensor_new(NN_DTYPE_I64, &r->n, 1);
    if (!x || !y) {
        nn__tensor_release(x);
        nn__tensor_release(y);
        return NULL;
    }
    memcpy(nn__f32(x), r->x, sizeof(float) * (size_t)(r->n * r->nfeat));
    memcpy(nn__i64(y), r->y, sizeof(int64_t) * (size_t)r->n);
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
    FILE *f = fopen(path, "rb");
    if (!f)
        return NN__FAIL(errno == ENOENT ? NN_ERR_NOT_FOUND : NN_ERR_IO, FN ": cannot open '%s': %s",
                        path, strerror(errno));
    csv_opts o = {delimiter, has_label, label_column, policy, fill_value, 0, 0};
    csv_rows r = {0};
    nn_status st = read_csv(f, header, &o, &r);
    fclose(f);
    nn_dataset *ds = st ? NULL : rows_to_dataset(&r);
    nn__free(r.x);
    nn__free(r.y);
    if (n_dropped) *n_dropped = o.dropped;
    if (n_filled) *n_filled = o.filled;
    return ds;
}
