/* Transformer building blocks: rotary position embedding (rope), RMSNorm,
 * and the sin / cos elementwise ops rope-style code needs. Forward and
 * backward side by side. */
#include "nn_ops_internal.h"
#include "ops_internal.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ sin, cos */

static void sin_fwd(int64_t n, const float *x, float *y, const double *p) {
    for (int64_t i = 0; i < n; i++) y[i] = sinf(x[i]);
}
static void sin_bwd(int64_t n, const float *g, const float *x, const float *y, float *gx,
                    const double *p) {
    for (int64_t i = 0; i < n; i++) gx[i] = g[i] * cosf(x[i]);
}
static const nn__unary_desc SIN = {"nn_sin", sin_fwd, sin_bwd, true, false};
nn_tensor *nn_sin(nn_tensor *a) { return nn__track(nn__unary(a, &SIN, NULL, 0)); }

static void cos_fwd(int64_t n, const float *x, float *y, const double *p) {
    for (int64_t i = 0; i < n; i++) y[i] = cosf(x[i]);
}
static void cos_bwd(int64_t n, const float *g, const float *x, const float *y, float *gx,
                    const double *p) {
    for (int64_t i = 0; i < n; i++) gx[i] = -g[i] * sinf(x[i]);
}
static const nn__unary_desc COS = {"nn_cos", cos_fwd, cos_bwd, true, false};
nn_tensor *nn_cos(nn_tensor *a) { return nn__track(nn__unary(a, &COS, NULL, 0)); }

/* ---------------------------------------------------------------- rope */

/* Rotary embedding, GPT-NeoX / LLaMA "rotate half" convention. For each row
 * (the last dim, D features) at position pos, with R = rotary_dim (even,
 * <= D), h = R/2 and angle_k = pos · base^(-2k/R) for k < h:
 *   y[k]     = x[k] cos_k - x[k + h] sin_k
 *   y[k + h] = x[k + h] cos_k + x[k] sin_k       (features >= R pass through)
 * Backward rotates by -angle:
 *   gx[k] = g[k] cos_k + g[k + h] sin_k,  gx[k + h] = g[k + h] cos_k - g[k] sin_k.
 * Angles and their cos/sin are computed in double. */

typedef struct rope_plan {
    int64_t d, rd, rows, t; /* features, rotated features, rows, positions dim */
    double base;
    int64_t offset;
    const int64_t *pos; /* storage base of positions or NULL */
    int64_t pstr[NN_MAX_DIMS];
    int64_t poff;
    int64_t lead_shape[NN_MAX_DIMS]; /* x.shape[:-1] */
    int lead;
} rope_plan;

static const char *const ROPE = "nn_rope";

/* Position of each row into pos_of[rows]. */
static void rope_positions(const rope_plan *p, int64_t *pos_of) {
    if (!p->pos) {
        for (int64_t r = 0; r < p->rows; r++) pos_of[r] = p->offset + r % p->t;
        return;
    }
    int64_t idx[NN_MAX_DIMS] = {0}, o = p->poff;
    for (int64_t r = 0; r < p->rows; r++) {
        pos_of[r] = p->offset + p->pos[o];
        for (int d = p->lead - 1; d >= 0; d--) {
            idx[d]++;
            o += p->pstr[d];
            if (idx[d] < p->lead_shape[d]) break;
            o -= p->pstr[d] * idx[d];
            idx[d] = 0;
        }
    }
}

/* cos / sin of angle_k for one position into cs[2h]: cos first, then sin. */
static void rope_angles(const rope_plan *p, int64_t pos, float *cs) {
    const int64_t h = p->rd / 2;
    for (int64_t k = 0; k < h; k++) {
        const double a = (double)pos * pow(p->base, -2.0 * (double)k / (double)p->rd);
        cs[k] = (float)cos(a);
        cs[h + k] = (float)sin(a);
    }
}

/* y = rotate(x) (dir = +1) or the inverse rotation (dir = -1), rows of d. */
static nn_status rope_apply(const rope_plan *p, const float *x, float *y, int dir) {
    const int64_t h = p->rd / 2;
    int64_t *pos_of = nn__malloc(sizeof(int64_t) * (size_t)(p->rows + 1));
    float *cs = nn__malloc(sizeof(float) * (size_t)(2 * h + 1));
    if (!pos_of || !cs) {
        nn__free(pos_of);
        nn__free(cs);
        return NN_ERR_NOMEM;
    }
    rope_positions(p, pos_of);
    for (int64_t r = 0; r < p->rows; r++) {
        if (r == 0 || pos_of[r] != pos_of[r - 1]) rope_angles(p, pos_of[r], cs);
        const float *xr = x + r * p->d;
        float *yr = y + r * p->d;
        for (int64_t k = 0; k < h; k++) {
            const float c = cs[k], s = dir * cs[h + k], a = xr[k], b = xr[k + h];
            yr[k] = a * c - b * s;
            yr[k + h] = b * c + a * s;
        }
        if (p->rd < p->d) memcpy(yr + p->rd, xr + p->rd, sizeof(float) * (size_t)(p->d - p->rd));
    }
    nn__free(pos_of);
    nn__free(cs);
    return NN_OK;
}

static bool rope_plan_make(const nn_tensor *x, const nn_tensor *positions, int64_t offset,
                           double base, int64_t rotary_dim, rope_plan *p) {
    char s1[128], s2[128];
    memset(p, 0, sizeof *p);
    if (x->ndim < 2)
        return NN__FAIL(NN_ERR_SHAPE, "%s: x %s must be [..., T, D] (at least 2 dims)", ROPE,
                        nn__shape_str(x->shape, x->ndim, s1, sizeof s1)) != NULL;
    p->d = x->shape[x->ndim - 1];
    p->t = x->shape[x->ndim - 2];
    p->rd = rotary_dim == 0 ? p->d : rotary_dim;
    if (p->rd < 0 || p->rd > p->d || p->rd % 2 != 0)
        return NN__FAIL(NN_ERR_INVALID,
                        "%s: rotary_dim %lld must be even and in [0, D = %lld] (0: all of D)", ROPE,
                        (long long)rotary_dim, (long long)p->d) != NULL;
    if (!(base > 0.0) || !isfinite(base))
        return NN__FAIL(NN_ERR_INVALID, "%s: base %g must be a positive number", ROPE, base) !=
               NULL;
    p->base = base;
    p->offset = offset;
    p->rows = p->d ? x->numel / p->d : 0;
    p->lead = x->ndim - 1;
    memcpy(p->lead_shape, x->shape, sizeof(int64_t) * (size_t)p->lead);
    if (!positions) return true;
    if (positions->dtype != NN_DTYPE_I64)
        return NN__FAIL(NN_ERR_DTYPE, "%s: positions has dtype %s, expected i64", ROPE,
                        nn_dtype_name(positions->dtype)) != NULL;
    if (positions->ndim > p->lead) goto bad;
    for (int d = 0; d < p->lead; d++) {
        const int pd = d - (p->lead - positions->ndim);
        if (pd < 0) continue;
        if (positions->shape[pd] != p->lead_shape[d] && positions->shape[pd] != 1) goto bad;
        p->pstr[d] = positions->shape[pd] == 1 ? 0 : positions->strides[pd];
    }
    p->pos = (const int64_t *)nn__raw_base(positions);
    p->poff = positions->offset;
    return true;
bad:
    return NN__FAIL(NN_ERR_SHAPE, "%s: positions %s does not broadcast to x's rows %s", ROPE,
                    nn__shape_str(positions->shape, positions->ndim, s1, sizeof s1),
                    nn__shape_str(p->lead_shape, p->lead, s2, sizeof s2)) != NULL;
}

/* inputs: x, positions; i[0] = offset, i[1] = rotary_dim; f[0] = base. */
static nn_status rope_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    rope_plan p;
    if (!rope_plan_make(nd->inputs[0], nd->inputs[1], nd->i[0], nd->f[0], nd->i[1], &p))
        return NN_ERR_STATE;
    gin[0] = nn__tensor_new(NN_DTYPE_F32, gout->shape, gout->ndim);
    if (!gin[0]) return NN_ERR_NOMEM;
    return rope_apply(&p, nn__f32(gout), nn__f32(gin[0]), -1);
}

nn_tensor *nn_rope(nn_tensor *x, nn_tensor *positions, int64_t offset, double base,
                   int64_t rotary_dim) {
    NN__PROF_OP("nn_rope");
    if (!nn__check_f32(x, ROPE, "x")) return NULL;
    if (positions && !nn__check_tensor(positions, ROPE, "positions")) return NULL;
    rope_plan p;
    if (!rope_plan_make(x, positions, offset, base, rotary_dim, &p)) return NULL;
    nn_tensor *xc = nn__contig(x);
    nn_tensor *y = xc ? nn__tensor_new(NN_DTYPE_F32, x->shape, x->ndim) : NULL;
    if (!y || rope_apply(&p, nn__f32(xc), nn__f32(y), 1) != NN_OK) {
        nn__tensor_release(xc);
        nn__tensor_release(y);
        return NULL;
    }
    nn__tensor_release(xc);
    nn_node *node = NULL;
    nn_tensor *in[2] = {x, positions};
    y = nn__ops_record(y, ROPE, rope_backward, in, 2, &node);
    if (node) {
        node->i[0] = offset;
        node->i[1] = rotary_dim;
        node->f[0] = base;
    }
    return nn__track(y);
}

/* ------------------------------------------------------------ rms_norm */

/* y = x · r · w with r = 1/sqrt(mean(x²) + eps) over the last n dims.
 * Backward, per row (D values, gw = g · w):
 *   dx = r gw - x r³ mean(gw · x),   dw += g x r. */

static const char *const RMS = "nn_rms_norm";

/* saved[0] = r per row; i[0] = D. */
static nn_status rms_norm_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    nn_tensor *x = nd->inputs[0], *wt = nd->inputs[1];
    const int64_t D = nd->i[0], rows = D ? x->numel / D : 0;
    nn_tensor *xc = nn__contig(x), *wc = wt ? nn__contig(wt) : NULL;
    nn_status st = NN_ERR_NOMEM;
    if (!xc || (wt && !wc)) goto done;
    if (nn__ops_wants(nd, 0) && !(gin[0] = nn__tensor_new(NN_DTYPE_F32, x->shape, x->ndim)))
        goto done;
    if (nn__ops_wants(nd, 1) && !(gin[1] = nn__zeros(NN_DTYPE_F32, wt->shape, wt->ndim))) goto done;
    const float *R = nn__f32(nd->saved[0]), *W = wc ? nn__f32(wc) : NULL;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = nn__f32(xc) + r * D, *g = nn__f32(gout) + r * D;
        const float rs = R[r];
        if (gin[1]) {
            float *dw = nn__f32(gin[1]);
            for (int64_t j = 0; j < D; j++) dw[j] += g[j] * xr[j] * rs;
        }
        if (!gin[0]) continue;
        double s = 0.0;
        for (int64_t j = 0; j < D; j++) s += (double)g[j] * (W ? W[j] : 1.0f) * xr[j];
        const float k = (float)(s / (double)D) * rs * rs * rs;
        float *dx = nn__f32(gin[0]) + r * D;
        for (int64_t j = 0; j < D; j++) dx[j] = rs * g[j] * (W ? W[j] : 1.0f) - xr[j] * k;
    }
    st = NN_OK;
done:
    nn__tensor_release(xc);
    nn__tensor_release(wc);
    return st;
}

nn_tensor *nn_rms_norm(nn_tensor *x, const int64_t *normalized_shape, int n, nn_tensor *weight,
                       double eps) {
    NN__PROF_OP("nn_rms_norm");
    char s1[128], s2[128];
    if (!nn__check_f32(x, RMS, "x")) return NULL;
    if (!nn__check_ptr(normalized_shape, RMS, "normalized_shape")) return NULL;
    if (weight && !nn__check_f32(weight, RMS, "weight")) return NULL;
    if (n < 1 || n > x->ndim)
        return NN__FAIL(NN_ERR_SHAPE, "%s: normalized_shape has %d dims, x %s has %d", RMS, n,
                        nn__shape_str(x->shape, x->ndim, s1, sizeof s1), x->ndim);
    if (memcmp(x->shape + x->ndim - n, normalized_shape, sizeof(int64_t) * (size_t)n) != 0)
        return NN__FAIL(NN_ERR_SHAPE, "%s: x %s does not end in normalized_shape %s", RMS,
                        nn__shape_str(x->shape, x->ndim, s1, sizeof s1),
                        nn__shape_str(normalized_shape, n, s2, sizeof s2));
    if (weight && (weight->ndim != n ||
                   memcmp(weight->shape, normalized_shape, sizeof(int64_t) * (size_t)n) != 0))
        return NN__FAIL(NN_ERR_SHAPE, "%s: weight %s must have the shape normalized_shape %s", RMS,
                        nn__shape_str(weight->shape, weight->ndim, s1, sizeof s1),
                        nn__shape_str(normalized_shape, n, s2, sizeof s2));
    if (!(eps >= 0.0) || !isfinite(eps))
        return NN__FAIL(NN_ERR_INVALID, "%s: eps %g must be >= 0", RMS, eps);
    int64_t D = 1;
    for (int i = x->ndim - n; i < x->ndim; i++) D *= x->shape[i];
    int64_t rows = D ? x->numel / D : 0;
    nn_tensor *rstd = nn__tensor_new(NN_DTYPE_F32, &rows, 1);
    nn_tensor *y = rstd ? nn__tensor_new(NN_DTYPE_F32, x->shape, x->ndim) : NULL;
    nn_tensor *xc = y ? nn__contig(x) : NULL;
    nn_tensor *wc = weight && xc ? nn__contig(weight) : NULL;
    if (!xc || (weight && !wc)) {
        nn__tensor_release(y);
        nn__tensor_release(rstd);
        nn__tensor_release(xc);
        return NULL;
    }
    float *R = nn__f32(rstd);
    const float *W = wc ? nn__f32(wc) : NULL;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = nn__f32(xc) + r * D;
        float *yr = nn__f32(y) + r * D;
        double s = 0.0;
        for (int64_t j = 0; j < D; j++) s += (double)xr[j] * xr[j];
        const float rs = (float)(1.0 / sqrt(s / (double)D + eps));
        R[r] = rs;
        for (int64_t j = 0; j < D; j++) yr[j] = xr[j] * rs * (W ? W[j] : 1.0f);
    }
    nn__tensor_release(xc);
    nn__tensor_release(wc);
    nn_node *node = NULL;
    nn_tensor *in[2] = {x, weight};
    y = nn__ops_record(y, RMS, rms_norm_backward, in, 2, &node);
    if (node) {
        node->saved[0] = rstd;
        rstd = NULL;
        node->i[0] = D;
    }
    nn__tensor_release(rstd);
    return nn__track(y);
}
