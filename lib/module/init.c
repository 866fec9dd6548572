/* In-place initialisers (PyTorch's torch.nn.init) on f32 tensors. Values
 * are generated into a scratch buffer and copied in, so strided views work
 * too; nothing is recorded by autograd. */
#include "module_internal.h"

#include <math.h>
#include <string.h>

/* Scratch buffer of t's numel floats, after checking t. */
static float *scratch(nn_tensor *t, const char *fn) {
    if (!nn__check_f32(t, fn, "t")) return NULL;
    size_t bytes;
    if (!nn__size_mul((size_t)(t->numel ? t->numel : 1), sizeof(float), &bytes))
        return NN__FAIL(NN_ERR_OVERFLOW, "%s: tensor too large", fn);
    return nn__malloc(bytes);
}

static nn_status commit(nn_tensor *t, float *buf) {
    nn_status st = nn_tensor_copy_from(t, buf, (size_t)t->numel * sizeof(float));
    nn__free(buf);
    return st;
}

static nn_status fill_uniform(nn_tensor *t, double lo, double hi, nn_generator *g, const char *fn) {
    float *buf = scratch(t, fn);
    if (!buf) return nn_last_status();
    g = nn__gen(g);
    for (int64_t i = 0; i < t->numel; i++)
        buf[i] = (float)(lo + (hi - lo) * nn__gen_uniform_f64(g));
    return commit(t, buf);
}

static nn_status fill_normal(nn_tensor *t, double mean, double std, nn_generator *g,
                             const char *fn) {
    float *buf = scratch(t, fn);
    if (!buf) return nn_last_status();
    g = nn__gen(g);
    for (int64_t i = 0; i < t->numel; i++) buf[i] = (float)(mean + std * nn__gen_normal(g));
    return commit(t, buf);
}


nn_status nn_init_uniform(nn_tensor *t, double low, double high, nn_generator *g) {
    const char *fn = "nn_init_uniform";
    if (!nn__check_gen(g, fn)) return nn_last_status();
    if (!(low <= high) || !isfinite(low) || !isfinite(high))
        return nn__err(NN_ERR_INVALID, "%s: low %g, high %g: need finite low <= high", fn, low,
                       high);
    return fill_uniform(t, low, high, g, fn);
}

nn_status nn_init_normal(nn_tensor *t, double mean, double std, nn_generator *g) {
    const char *fn = "nn_init_normal";
    if (!nn__check_gen(g, fn)) return nn_last_status();
    if (!(std >= 0) || !isfinite(std) || !isfinite(mean))
        return nn__err(NN_ERR_INVALID, "%s: mean %g, std %g: need finite mean and std >= 0", fn,
                       mean, std);
    return fill_normal(t, mean, std, g, fn);
}

nn_status nn_init_constant(nn_tensor *t, double value) {
    if (!nn__check_f32(t, "nn_init_constant", "t")) return nn_last_status();
    return nn_tensor_fill(t, value);
}

nn_status nn_init_zeros(nn_tensor *t) { return nn_init_constant(t, 0); }
nn_status nn_init_ones(nn_tensor *t) { return nn_init_constant(t, 1); }

double nn_init_calculate_gain(nn_nonlinearity nonlinearity, double param) {
    switch (nonlinearity) {
    case NN_NONLINEARITY_LINEAR:
    case NN_NONLINEARITY_SIGMOID: return 1.0;
    case NN_NONLINEARITY_TANH: return 5.0 / 3.0;
    case NN_NONLINEARITY_RELU: return sqrt(2.0);
    case NN_NONLINEARITY_LEAKY_RELU: return sqrt(2.0 / (1.0 + param * param));
    case NN_NONLINEARITY_SELU: return 0.75;
    }
    nn__err(NN_ERR_INVALID, "nn_init_calculate_gain: unknown nonlinearity %d", (int)nonlinearity);
    return NAN;
}

/* fan_in = size(1) * receptive, fan_out = size(0) * receptive. */
static bool fans(const nn_tensor *t, double *fan_in, double *fan_out, const char *fn) {
    if (!nn__check_f32(t, fn, "t")) return false;
    if (t->ndim < 2) {
        char s[128];
        nn__err(NN_ERR_SHAPE, "%s: fans need a tensor of at least 2 dims, got %s", fn,
                nn__shape_str(t->shape, t->ndim, s, sizeof s));
        return false;
    }
    double rf = 1;
    for (int i = 2; i < t->ndim; i++) rf *= (double)t->shape[i];
    *fan_in = (double)t->shape[1] * rf;
    *fan_out = (double)t->shape[0] * rf;
    if (*fan_in <= 0 || *fan_out <= 0) {
        nn__err(NN_ERR_SHAPE, "%s: zero-element tensor has no fans", fn);
        return false;
    }
    return true;
}

nn_status nn_init_xavier_uniform(nn_tensor *t, double gain, nn_generator *g) {
    const char *fn = "nn_init_xavier_uniform";
    double fi, fo;
    if (!nn__check_gen(g, fn) || !fans(t, &fi, &fo, fn)) return nn_last_status();
    double a = gain * sqrt(6.0 / (fi + fo));
    return fill_uniform(t, -a, a, g, fn);
}

nn_status nn_init_xavier_normal(nn_tensor *t, double gain, nn_generator *g) {
    const char *fn = "nn_init_xavier_normal";
    double fi, fo;
    if (!nn__check_gen(g, fn) || !fans(t, &fi, &fo, fn)) return nn_last_status();
    return fill_normal(t, 0, gain * sqrt(2.0 / (fi + fo)), g, fn);
}

static bool kaiming_std(nn_tensor *t, double a, nn_fan_mode mode, nn_nonlinearity nl, double *std,
                        const char *fn) {
    double fi, fo;
    if (!fans(t, &fi, &fo, fn)) return false;
    if (mode != NN_FAN_MODE_IN && mode != NN_FAN_MODE_OUT) {
        nn__err(NN_ERR_INVALID, "%s: mode %d, expected NN_FAN_MODE_IN or NN_FAN_MODE_OUT", fn,
                (int)mode);
        return false;
    }
    double gain = nn_init_calculate_gain(nl, a);
    if (isnan(gain)) {
        nn__err(NN_ERR_INVALID, "%s: unknown nonlinearity %d", fn, (int)nl);
        return false;
    }
    *std = gain / sqrt(mode == NN_FAN_MODE_IN ? fi : fo);
    return true;
}

nn_status nn_init_kaiming_uniform(nn_tensor *t, double a, nn_fan_mode mode,
                                  nn_nonlinearity nonlinearity, nn_generator *g) {
    const char *fn = "nn_init_kaiming_uniform";
    double std;
    if (!nn__check_gen(g, fn) || !kaiming_std(t, a, mode, nonlinearity, &std, fn))
        return nn_last_status();
    double bound = sqrt(3.0) * std;
    return fill_uniform(t, -bound, bound, g, fn);
}

nn_status nn_init_kaiming_normal(nn_tensor *t, double a, nn_fan_mode mode,
                                 nn_nonlinearity nonlinearity, nn_generator *g) {
    const char *fn = "nn_init_kaiming_normal";
    double std;
    if (!nn__check_gen(g, fn) || !kaiming_std(t, a, mode, nonlinearity, &std, fn))
        return nn_last_status();
    return fill_normal(t, 0, std, g, fn);
}

/* Householder QR of a [r, c] row-major matrix a (r >= c): on return the
 * first c columns of q (r x c, row-major) are orthonormal and
 * q * diag(sign(diag(R))) matches PyTorch's sign convention. */
static void householder_q(double *a, int64_t r, int64_t c, double *q, double *v) {
    double *dsign = v + r; /* c signs */
    for (int64_t k = 0; k < c; k++) {
        double norm = 0;
        for (int64_t i = k; i < r; i++) norm += a[i * c + k] * a[i * c + k];
        norm = sqrt(norm);
        double alpha = a[k * c + k] > 0 ? -norm : norm; /* R[k][k] = alpha */
        for (int64_t i = 0; i < r; i++) v[i] = i < k ? 0 : a[i * c + k];
        v[k] -= alpha;
        double vn = 0;
        for (int64_t i = k; i < r; i++) vn += v[i] * v[i];
        dsign[k] = alpha < 0 ? -1 : 1;
        if (vn == 0) continue;
        /* A <- (I - 2 v vᵀ / vᵀv) A on columns k.. */
        for (int64_t j = k; j < c; j++) {
            double d = 0;
            for (int64_t i = k; i < r; i++) d += v[i] * a[i * c + j];
            d = 2 * d / vn;
            for (int64_t i = k; i < r; i++) a[i * c + j] -= d * v[i];
        }
        /* Store v in the (now zero) column below the diagonal, scaled. */
        for (int64_t i = k; i < r; i++) q[i * c + k] = v[i];
        v[r + c + k] = vn; /* remembered norms after the signs */
    }
    /* Accumulate Q = H0 H1 ... H(c-1) applied to the first c columns of I. */
    double *vs = v + r + 2 * c; /* scratch column */
    double *out = vs + r;       /* r x c result */
    for (int64_t i = 0; i < r; i++)
        for (int64_t j = 0; j < c; j++) out[i * c + j] = i == j ? 1 : 0;
    for (int64_t k = c - 1; k >= 0; k--) {
        double vn = v[r + c + k];
        if (vn == 0) continue;
        for (int64_t i = 0; i < r; i++) vs[i] = i < k ? 0 : q[i * c + k];
        for (int64_t j = 0; j < c; j++) {
            double d = 0;
            for (int64_t i = k; i < r; i++) d += vs[i] * out[i * c + j];
            d = 2 * d / vn;
            for (int64_t i = k; i < r; i++) out[i * c + j] -= d * vs[i];
        }
    }
    /* PyTorch: q *= sign(diag(r)), making R's diagonal positive. */
    for (int64_t i = 0; i < r; i++)
        for (int64_t j = 0; j < c; j++) q[i * c + j] = out[i * c + j] * dsign[j];
}

nn_status nn_init_orthogonal(nn_tensor *t, double gain, nn_generator *g) {
    const char *fn = "nn_init_orthogonal";
    if (!nn__check_gen(g, fn) || !nn__check_f32(t, fn, "t")) return nn_last_status();
    if (t->ndim < 2)
        return nn__err(NN_ERR_SHAPE, "%s: need a tensor of at least 2 dims, got %d", fn, t->ndim);
    if (t->numel == 0) return NN_OK;
    int64_t rows = t->shape[0], cols = t->numel / rows;
    /* Factor the tall orientation: QR of [max, min], transposed back if needed. */
    int64_t r = rows > cols ? rows : cols, c = rows > cols ? cols : rows;
    size_t n1, n2, total;
    if (!nn__size_mul((size_t)r, (size_t)c, &n1) || !nn__size_mul(n1, 3, &n2) ||
        !nn__size_add(n2, (size_t)(2 * r + 3 * c), &total) ||
        !nn__size_mul(total, sizeof(double), &total))
        return nn__err(NN_ERR_OVERFLOW, "%s: tensor too large", fn);
    double *work = nn__malloc(total);
    float *buf = work ? scratch(t, fn) : NULL;
    if (!buf) {
        nn__free(work);
        return nn_last_status();
    }
    double *a = work, *q = a + n1, *v = q + n1; /* v: r + 2c + r + r*c */
    g = nn__gen(g);
    /* Draw the [rows, cols] normal matrix, then lay it out as [r, c]. */
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            double x = nn__gen_normal(g);
            if (rows >= cols)
                a[i * c + j] = x;
            else
                a[j * c + i] = x;
        }
    householder_q(a, r, c, q, v);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            buf[i * cols + j] = (float)(gain * (rows >= cols ? q[i * c + j] : q[j * c + i]));
    nn__free(work);
    return commit(t, buf);
}
