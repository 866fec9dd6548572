/* nn_module_summary: run a zero input through the module with a per-thread
 * recorder hooked into nn__mod_forward, one row per layer. */
#include "module_internal.h"

#include <stdio.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct {
    char *name;
    const char *type;
    int64_t shape[NN_MAX_DIMS];
    int ndim;
    int64_t params;
    double flops;
} row;

typedef struct {
    row *rows;
    int nrows, cap;
    const nn_module *stack[MAX_DEPTH];
    char *paths[MAX_DEPTH];
    int depth;
    bool fail;
} recorder;

static _Thread_local recorder *tl_rec;

bool nn__summary_active(void) { return tl_rec != NULL; }

/* Dotted path of m under the module on top of the stack. */
static char *child_path(recorder *r, const nn_module *m) {
    if (r->depth == 0) return nn__strdup("");
    const nn_module *parent = r->stack[r->depth - 1];
    const char *pp = r->paths[r->depth - 1], *cn = "?", *gn = NULL;
    if (!pp) return NULL; /* the parent's path failed already */
    for (int i = 0; i < parent->nchildren; i++)
        if (parent->children[i].m == m) cn = parent->children[i].name;
    /* A child of a container the parent runs itself (a transformer stack's
     * layers.N, held by a ModuleList that has no forward): "layers.N". */
    for (int i = 0; i < parent->nchildren && !strcmp(cn, "?"); i++) {
        const nn_module *c = parent->children[i].m;
        for (int j = 0; j < c->nchildren; j++)
            if (c->children[j].m == m) {
                cn = parent->children[i].name;
                gn = c->children[j].name;
            }
    }
    size_t lp = strlen(pp), lc = strlen(cn), lg = gn ? strlen(gn) + 1 : 0;
    char *s = nn__malloc(lp + lc + lg + 2);
    if (!s) return NULL;
    snprintf(s, lp + lc + lg + 2, "%s%s%s%s%s", pp, lp ? "." : "", cn, gn ? "." : "",
             gn ? gn : "");
    return s;
}

void nn__summary_enter(nn_module *m) {
    recorder *r = tl_rec;
    if (r->depth >= MAX_DEPTH) {
        r->fail = true;
        r->depth++;
        return;
    }
    char *p = child_path(r, m);
    if (!p) r->fail = true;
    r->stack[r->depth] = m;
    r->paths[r->depth] = p ? p : NULL;
    r->depth++;
}

static void add_row(recorder *r, const nn_module *m, char *path, const nn_tensor *y, double flops) {
    if (r->nrows == r->cap) {
        int ncap = r->cap ? r->cap * 2 : 16;
        row *p = nn__realloc(r->rows, (size_t)ncap * sizeof *p);
        if (!p) {
            r->fail = true;
            nn__free(path);
            return;
        }
        r->rows = p;
        r->cap = ncap;
    }
    row *w = &r->rows[r->nrows++];
    w->name = path;
    w->type = nn_module_type_name(m);
    w->ndim = y->ndim;
    memcpy(w->shape, y->shape, sizeof w->shape);
    w->params = nn__mod_own_param_count(m);
    w->flops = flops;
}

void nn__summary_leave(nn_module *m, const nn_tensor *x, const nn_tensor *y) {
    recorder *r = tl_rec;
    r->depth--;
    if (r->depth >= MAX_DEPTH) return;
    char *path = r->paths[r->depth];
    r->paths[r->depth] = NULL;
    /* Rows for leaves and for containers holding parameters of their own. */
    bool show = m->nchildren == 0 || m->params.n > 0;
    if (!y || !path || !show || r->fail) {
        nn__free(path);
        return;
    }
    double fl = m->kind && m->kind->flops ? m->kind->flops(m, x, y) : 0;
    add_row(r, m, path, y, fl);
}

/* ------------------------------------------------------------ formatting */

typedef struct {
    char *s;
    size_t len, cap;
    bool fail;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) NN__PRINTF(2, 3);
static void sb_printf(strbuf *b, const char *fmt, ...) {
    if (b->fail) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->fail = true;
            return;
        }
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t ncap = b->cap ? b->cap : 1024;
        while (ncap <= b->len + (size_t)n) ncap *= 2;
        char *p = nn__realloc(b->s, ncap);
        if (!p) {
            b->fail = true;
            return;
        }
        b->s = p;
        b->cap = ncap;
    }
}

/* 1234567 -> "1,234,567". */
static const char *group(double v, char *buf, size_t cap) {
    char raw[40];
    snprintf(raw, sizeof raw, "%.0f", v);
    size_t n = strlen(raw), o = 0;
    for (size_t i = 0; i < n && o + 2 < cap; i++) {
        buf[o++] = raw[i];
        size_t left = n - i - 1;
        if (left > 0 && left % 3 == 0 && raw[i] != '-') buf[o++] = ',';
    }
    buf[o] = '\0';
    return buf;
}

static void format_table(strbuf *b, const recorder *r, nn_module *m, const int64_t *in_shape,
                         int in_ndim) {
    int wn = 5, wt = 4;
    for (int i = 0; i < r->nrows; i++) {
        int ln = r->rows[i].name[0] ? (int)strlen(r->rows[i].name) : 6,
            lt = (int)strlen(r->rows[i].type);
        if (ln > wn) wn = ln;
        if (lt > wt) wt = lt;
    }
    int width = wn + wt + 20 + 14 + 18 + 8;
    char sh[160], n1[48], n2[48];
    sb_printf(b, "%-*s  %-*s  %-20s  %14s  %18s\n", wn, "Layer", wt, "Type", "Output shape",
              "Params", "FLOPs");
    for (int i = 0; i < width; i++) sb_printf(b, "-");
    sb_printf(b, "\n");
    double total_flops = 0;
    for (int i = 0; i < r->nrows; i++) {
        const row *w = &r->rows[i];
        sb_printf(b, "%-*s  %-*s  %-20s  %14s  %18s\n", wn, w->name[0] ? w->name : "(root)", wt,
                  w->type, nn__shape_str(w->shape, w->ndim, sh, sizeof sh),
                  group((double)w->params, n1, sizeof n1), group(w->flops, n2, sizeof n2));
        total_flops += w->flops;
    }
    for (int i = 0; i < width; i++) sb_printf(b, "-");
    sb_printf(b, "\n");
    int64_t total = nn_module_param_count(m), trainable = 0;
    for (int64_t i = 0; i < nn_module_num_parameters(m); i++) {
        nn_tensor *p = nn_module_parameter(m, i, NULL);
        if (p && p->requires_grad) trainable += p->numel;
    }
    sb_printf(b, "Input shape: %s\n", nn__shape_str(in_shape, in_ndim, sh, sizeof sh));
    sb_printf(b, "Total params: %s\n", group((double)total, n1, sizeof n1));
    sb_printf(b, "Trainable params: %s\n", group((double)trainable, n1, sizeof n1));
    sb_printf(b, "Non-trainable params: %s\n", group((double)(total - trainable), n1, sizeof n1));
    sb_printf(b, "Total FLOPs: %s\n", group(total_flops, n1, sizeof n1));
    nn_memory_stats_t ms;
    nn__mem_snapshot(&ms);
    sb_printf(b, "Process memory held by libnn, MiB (current / peak):");
    for (int c = 0; c < NN_MEM_CATEGORIES; c++)
        sb_printf(b, "%s %s %.2f / %.2f", c ? ";" : "", nn_memory_category_name(c),
                  (double)ms.current[c] / 1048576.0, (double)ms.peak[c] / 1048576.0);
    sb_printf(b, "; total %.2f / %.2f\n", (double)ms.current_total / 1048576.0,
              (double)ms.peak_total / 1048576.0);
}

/* Embedding first: the zero input must be i64 indices. */
static nn_dtype input_dtype(const nn_module *m) {
    while (m->nchildren > 0 && m->params.n == 0) m = m->children[0].m;
    return m->kind && !strcmp(m->kind->type, "Embedding") ? NN_DTYPE_I64 : NN_DTYPE_F32;
}

char *nn_module_summary(nn_module *m, const int64_t *input_shape, int ndim) {
    const char *fn = "nn_module_summary";
    if (!nn__mod_check(m, fn, "m")) return NULL;
    if (ndim > 0 && !nn__check_ptr(input_shape, fn, "input_shape")) return NULL;
    int64_t numel;
    if (!nn__shape_numel(input_shape, ndim, &numel, fn)) return NULL;
    if (tl_rec) return NN__FAIL(NN_ERR_STATE, "%s: called from inside a module's forward", fn);
    nn_tensor *x = nn__zeros(input_dtype(m), input_shape, ndim);
    if (!x) return NULL;
    recorder rec = {0};
    bool grad = nn_set_grad_enabled(false);
    tl_rec = &rec;
    nn_tensor *y = nn__mod_forward(m, x);
    tl_rec = NULL;
    nn_set_grad_enabled(grad);
    strbuf b = {0};
    if (y && !rec.fail) format_table(&b, &rec, m, input_shape, ndim);
    for (int i = 0; i < rec.nrows; i++) nn__free(rec.rows[i].name);
    for (int i = 0; i < MAX_DEPTH; i++) nn__free(rec.paths[i]);
    nn__free(rec.rows);
    nn__tensor_release(x);
    if (!y) return NULL; /* the forward's error names the layer */
    nn__tensor_release(y);
    if (rec.fail || b.fail || !b.s) {
        nn__free(b.s);
        return NN__FAIL(NN_ERR_NOMEM, "%s: out of memory", fn);
    }
    return b.s;
}
