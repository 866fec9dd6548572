/* Built-in layers: hyperparameter tables, default init, forward (through the
 * public ops), FLOP estimates and the public constructors. */
#include "module_internal.h"
#include "ops/conv_fuse.h"
#include "ops/linear_fuse.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAX_SIZE ((double)(1LL << 40)) /* features, channels, table rows */
#define MAX_INT 2147483647.0

/* ------------------------------------------------------------- helpers */

/* cfg[k] must be an integer in [lo, hi]. */
static bool cfg_int(nn_module *m, int k, double lo, double hi) {
    double v = m->cfg[k];
    if (v == floor(v) && v >= lo && v <= hi) return true;
    nn__err(NN_ERR_INVALID, "%s: %s = %g, expected an integer in %.0f..%.0f", m->kind->type,
            m->kind->keys[k], v, lo, hi);
    return false;
}

/* cfg[k] must be 0 or 1. */
static bool cfg_bool(nn_module *m, int k) { return cfg_int(m, k, 0, 1); }

/* cfg[k] must lie in [lo, hi] (reals). */
static bool cfg_real(nn_module *m, int k, double lo, double hi) {
    double v = m->cfg[k];
    if (v >= lo && v <= hi) return true;
    nn__err(NN_ERR_INVALID, "%s: %s = %g, expected a value in [%g, %g]", m->kind->type,
            m->kind->keys[k], v, lo, hi);
    return false;
}

static int64_t ci(const nn_module *m, int k) { return (int64_t)m->cfg[k]; }

nn_tensor *nn__mod_uniform_param(const int64_t *shape, int ndim, double bound) {
    nn_tensor *t = nn__tensor_new(NN_DTYPE_F32, shape, ndim);
    if (!t || nn__tensor_init_skipped()) return t;
    nn_generator *g = nn__gen(NULL);
    float *p = nn__f32(t);
    for (int64_t i = 0; i < t->numel; i++)
        p[i] = (float)(bound * (2.0 * nn__gen_uniform_f64(g) - 1.0));
    return t;
}

/* Create a parameter (uniform init) and register it. */
static nn_status add_uniform(nn_module *m, const char *name, const int64_t *shape, int ndim,
                             double bound) {
    nn_tensor *t = nn__mod_uniform_param(shape, ndim, bound);
    if (!t) return nn_last_status();
    nn_status st = nn__mod_add_param(m, name, t);
    if (st != NN_OK) nn__tensor_release(t);
    return st;
}

/* Create a tensor filled with v and register it as a parameter or buffer. */
static nn_status add_filled(nn_module *m, const char *name, nn_dtype dt, const int64_t *shape,
                            int ndim, double v, bool param) {
    nn_tensor *t = nn__zeros(dt, shape, ndim);
    if (!t) return nn_last_status();
    if (v != 0 && !nn__tensor_init_skipped()) nn_tensor_fill(t, v);
    nn_status st = param ? nn__mod_add_param(m, name, t) : nn__mod_add_buffer(m, name, t);
    if (st != NN_OK) nn__tensor_release(t);
    return st;
}

/* weight_dtype (cfg[k]): the dtype of the weight of the layers that compute
 * with half weights (Linear, Conv2d, Embedding): 0 f32, 2 f16, 3 bf16. Set
 * by nn_module_convert (convert.c); written to model files only when not
 * f32, so a file rebuilds the layer with a weight of that dtype. */
static bool cfg_wdt(nn_module *m, int k) {
    double v = m->cfg[k];
    if (v == NN_DTYPE_F32 || v == NN_DTYPE_F16 || v == NN_DTYPE_BF16) return true;
    nn__err(NN_ERR_INVALID, "%s: weight_dtype = %g, expected 0 (f32), 2 (f16) or 3 (bf16)",
            m->kind->type, v);
    return false;
}

/* Register the weight: uniform init for f32; for f16 / bf16 zeros, which a
 * model file or nn_module_convert fills (no f32 copy is made, so a half
 * model's load stays within the bytes its file holds). */
static nn_status add_weight(nn_module *m, int wdt_key, const int64_t *shape, int ndim,
                            double bound) {
    nn_dtype dt = (nn_dtype)m->cfg[wdt_key];
    if (dt == NN_DTYPE_F32) return add_uniform(m, "weight", shape, ndim, bound);
    nn_tensor *t = nn__zeros(dt, shape, ndim);
    if (!t) return nn_last_status();
    nn_status st = nn__mod_add_param(m, "weight", t);
    if (st != NN_OK) nn__tensor_release(t);
    return st;
}

/* Fail with "<Type>: expected input <want>, got [..]". */
static nn_tensor *bad_input(const nn_module *m, const nn_tensor *x, const char *want) {
    char s[128];
    return NN__FAIL(NN_ERR_SHAPE, "%s: expected input %s, got %s", m->kind->type, want,
                    nn__shape_str(x->shape, x->ndim, s, sizeof s));
}

static bool need_f32(const nn_module *m, const nn_tensor *x) {
    if (x->dtype == NN_DTYPE_F32) return true;
    nn__err(NN_ERR_DTYPE, "%s: expected an f32 input, got %s", m->kind->type,
            nn_dtype_name(x->dtype));
    return false;
}

static double out_numel(const nn_tensor *out) { return out ? (double)out->numel : 0; }

static double flops_elementwise(const nn_module *m, const nn_tensor *in, const nn_tensor *out) {
    (void)m, (void)in;
    return out_numel(out);
}

static double flops_none(const nn_module *m, const nn_tensor *in, const nn_tensor *out) {
    (void)m, (void)in, (void)out;
    return 0;
}

#define KIND(var, name, keyarr, defarr, buildf, fwd, fl)                                           \
    static const nn__mod_kind var = {.type = name,                                                 \
                                     .nkeys = (int)(sizeof keyarr / sizeof keyarr[0]),             \
                                     .keys = keyarr,                                               \
                                     .defaults = defarr,                                           \
                                     .build = buildf,                                              \
                                     .forward = fwd,                                               \
                                     .flops = fl}
#define KIND0(var, name, fwd, fl)                                                                  \
    static const nn__mod_kind var = {.type = name, .forward = fwd, .flops = fl}

/* --------------------------------------------------------------- Linear */

enum { LIN_IN, LIN_OUT, LIN_BIAS, LIN_WDT };
static const char *const linear_keys[] = {"in_features", "out_features", "bias", "weight_dtype"};
static const double linear_defaults[] = {NAN, NAN, 1, 0};

static nn_status linear_build(nn_module *m) {
    if (!cfg_int(m, LIN_IN, 1, MAX_SIZE) || !cfg_int(m, LIN_OUT, 1, MAX_SIZE) ||
        !cfg_bool(m, LIN_BIAS) || !cfg_wdt(m, LIN_WDT))
        return nn_last_status();
    int64_t shape[2] = {ci(m, LIN_OUT), ci(m, LIN_IN)};
    double bound = 1.0 / sqrt((double)shape[1]);
    nn_status st = add_weight(m, LIN_WDT, shape, 2, bound);
    if (st == NN_OK && ci(m, LIN_BIAS)) st = add_uniform(m, "bias", shape, 1, bound);
    return st;
}

static nn_tensor *linear_forward(nn_module *m, nn_tensor *x) {
    if (x->ndim < 1 || x->shape[x->ndim - 1] != ci(m, LIN_IN)) {
        char want[64];
        snprintf(want, sizeof want, "[*,%lld]", (long long)ci(m, LIN_IN));
        return bad_input(m, x, want);
    }
    return nn_linear(x, nn__mod_param(m, "weight"), nn__mod_param(m, "bias"));
}

static double linear_flops(const nn_module *m, const nn_tensor *in, const nn_tensor *out) {
    (void)in;
    return out_numel(out) * (2.0 * (double)ci(m, LIN_IN) + (ci(m, LIN_BIAS) ? 1 : 0));
}

/* weight_dtype is written only when not f32: f32 files stay as they were. */
static int linear_ncfg(const nn_module *m) { return ci(m, LIN_WDT) ? 4 : 3; }

static const nn__mod_kind kind_linear = {.type = "Linear",
                                         .nkeys = 4,
                                         .keys = linear_keys,
                                         .defaults = linear_defaults,
                                         .build = linear_build,
                                         .forward = linear_forward,
                                         .flops = linear_flops,
                                         .ncfg = linear_ncfg};

nn_module *nn_linear_new(int64_t in_features, int64_t out_features, bool bias) {
    double v[] = {(double)in_features, (double)out_features, bias, 0};
    return nn__mod_new_kind(&kind_linear, v);
}

/* ----------------------------------------------------------- convolutions */

/* Conv2d / ConvTranspose2d share the first 12 keys. */
enum {
    CV_IN,
    CV_OUT,
    CV_KH,
    CV_KW,
    CV_SH,
    CV_SW,
    CV_PH,
    CV_PW,
    CV_DH,
    CV_DW,
    CV_GROUPS,
    CV_BIAS,
    CV_OPH,
    CV_OPW
};
static const char *const conv2d_keys[] = {
    "in_channels", "out_channels", "kernel_h",         "kernel_w",        "stride_h",
    "stride_w",    "padding_h",    "padding_w",        "dilation_h",      "dilation_w",
    "groups",      "bias",         "output_padding_h", "output_padding_w"};
static const double conv2d_defaults[] = {NAN, NAN, NAN, NAN, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0};
/* Conv2d's own keys: the first 12 above, then weight_dtype (index CV2_WDT). */
enum { CV2_WDT = 12 };
static const char *const conv2d_only_keys[] = {
    "in_channels", "out_channels", "kernel_h",   "kernel_w", "stride_h",
    "stride_w",    "padding_h",    "padding_w",  "dilation_h", "dilation_w",
    "groups",      "bias",         "weight_dtype"};
static const double conv2d_only_defaults[] = {NAN, NAN, NAN, NAN, 1, 1, 0, 0, 1, 1, 1, 1, 0};

static bool conv_common_ok(nn_module *m, int nspatial) {
    if (!cfg_int(m, CV_IN, 1, MAX_SIZE) || !cfg_int(m, CV_OUT, 1, MAX_SIZE) ||
        !cfg_int(m, CV_GROUPS, 1, MAX_INT) || !cfg_bool(m, CV_BIAS))
        return false;
    for (int d = 0; d < nspatial; d++)
        if (!cfg_int(m, CV_KH + d, 1, 1 << 20) || !cfg_int(m, CV_SH + d, 1, 1 << 20) ||
            !cfg_int(m, CV_PH + d, 0, 1 << 20) || !cfg_int(m, CV_DH + d, 1, 1 << 20))
            return false;
    int64_t g = ci(m, CV_GROUPS);
    if (ci(m, CV_IN) % g || ci(m, CV_OUT) % g) {
        nn__err(NN_ERR_INVALID,
                "%s: in_channels %lld and out_channels %lld must be divisible by groups %lld",
                m->kind->type, (long long)ci(m, CV_IN), (long long)ci(m, CV_OUT), (long long)g);
        return false;
    }
    return true;
}

/* weight shape; fan_in = size(1) * receptive field (PyTorch's rule). */
static nn_status conv_params(nn_module *m, const int64_t *wshape, int nd) {
    int64_t fan_in = wshape[1];
    for (int i = 2; i < nd; i++) fan_in *= wshape[i];
    double bound = 1.0 / sqrt((double)fan_in);
    nn_status st = add_uniform(m, "weight", wshape, nd, bound);
    int64_t nb = ci(m, CV_OUT);
    if (st == NN_OK && ci(m, CV_BIAS)) st = add_uniform(m, "bias", &nb, 1, bound);
    return st;
}

static nn_status conv2d_build(nn_module *m) {
    if (!conv_common_ok(m, 2) || !cfg_wdt(m, CV2_WDT)) return nn_last_status();
    int64_t w[4] = {ci(m, CV_OUT), ci(m, CV_IN) / ci(m, CV_GROUPS), ci(m, CV_KH), ci(m, CV_KW)};
    if (ci(m, CV2_WDT) == NN_DTYPE_F32) return conv_params(m, w, 4);
    nn_status st = add_weight(m, CV2_WDT, w, 4, 0);
    int64_t nb = ci(m, CV_OUT);
    if (st == NN_OK && ci(m, CV_BIAS)) st = add_filled(m, "bias", NN_DTYPE_F32, &nb, 1, 0, true);
    return st;
}

static int conv2d_ncfg(const nn_module *m) { return ci(m, CV2_WDT) ? 13 : 12; }

static bool check_channels(const nn_module *m, const nn_tensor *x, int ndim, int64_t c,
                           const char *pat) {
    if (x->ndim == ndim && x->shape[1] == c) return true;
    char want[96];
    snprintf(want, sizeof want, pat, (long long)c);
    bad_input(m, x, want);
    return false;
}

static nn_tensor *conv2d_forward(nn_module *m, nn_tensor *x) {
    if (!check_channels(m, x, 4, ci(m, CV_IN), "[N,%lld,H,W]")) return NULL;
    return nn_conv2d(x, nn__mod_param(m, "weight"), nn__mod_param(m, "bias"), (int)ci(m, CV_SH),
                     (int)ci(m, CV_SW), (int)ci(m, CV_PH), (int)ci(m, CV_PW), (int)ci(m, CV_DH),
                     (int)ci(m, CV_DW), (int)ci(m, CV_GROUPS));
}

static double conv_flops(const nn_module *m, const nn_tensor *in, const nn_tensor *out) {
    (void)in;
    /* Each output element: (in/groups) * kernel multiply-adds. */
    const nn_tensor *w = m->params.e[0].t;
    double k = 1;
    for (int i = 1; i < w->ndim; i++) k *= (double)w->shape[i];
    if (!strcmp(m->kind->type, "ConvTranspose2d")) {
        /* Every input element scatters into out/groups * kernel outputs. */
        return in ? (double)in->numel * 2.0 * k + (ci(m, CV_BIAS) ? out_numel(out) : 0) : 0;
    }
    return out_numel(out) * (2.0 * k + (ci(m, CV_BIAS) ? 1 : 0));
}

static const nn__mod_kind kind_conv2d = {.type = "Conv2d",
                                         .nkeys = 13,
                                         .keys = conv2d_only_keys,
                                         .defaults = conv2d_only_defaults,
                                         .build = conv2d_build,
                                         .forward = conv2d_forward,
                                         .flops = conv_flops,
                                         .ncfg = conv2d_ncfg};

nn_module *nn_conv2d_new_ex(int64_t in_channels, int64_t out_channels, int kernel_h, int kernel_w,
                            int stride_h, int stride_w, int pad_h, int pad_w, int dilation_h,
                            int dilation_w, int groups, bool bias) {
    double v[] = {(double)in_channels,
                  (double)out_channels,
                  kernel_h,
                  kernel_w,
                  stride_h,
                  stride_w,
                  pad_h,
                  pad_w,
                  dilation_h,
                  dilation_w,
                  groups,
                  bias,
                  NN_DTYPE_F32};
    return nn__mod_new_kind(&kind_conv2d, v);
}

nn_module *nn_conv2d_new(int64_t in_channels, int64_t out_channels, int kernel_size, int stride,
                         int padding, bool bias) {
    return nn_conv2d_new_ex(in_channels, out_channels, kernel_size, kernel_size, stride, stride,
                            padding, padding, 1, 1, 1, bias);
}

static nn_status convt2d_build(nn_module *m) {
    if (!conv_common_ok(m, 2) || !cfg_int(m, CV_OPH, 0, 1 << 20) || !cfg_int(m, CV_OPW, 0, 1 << 20))
        return nn_last_status();
    int64_t w[4] = {ci(m, CV_IN), ci(m, CV_OUT) / ci(m, CV_GROUPS), ci(m, CV_KH), ci(m, CV_KW)};
    return conv_params(m, w, 4);
}

static nn_tensor *convt2d_forward(nn_module *m, nn_tensor *x) {
    if (!check_channels(m, x, 4, ci(m, CV_IN), "[N,%lld,H,W]")) return NULL;
    return nn_conv_transpose2d(x, nn__mod_param(m, "weight"), nn__mod_param(m, "bias"),
                               (int)ci(m, CV_SH), (int)ci(m, CV_SW), (int)ci(m, CV_PH),
                               (int)ci(m, CV_PW), (int)ci(m, CV_OPH), (int)ci(m, CV_OPW),
                               (int)ci(m, CV_DH), (int)ci(m, CV_DW), (int)ci(m, CV_GROUPS));
}

static const nn__mod_kind kind_convt2d = {.type = "ConvTranspose2d",
                                          .nkeys = 14,
                                          .keys = conv2d_keys,
                                          .defaults = conv2d_defaults,
                                          .build = convt2d_build,
                                          .forward = convt2d_forward,
                                          .flops = conv_flops};

nn_module *nn_conv_transpose2d_new_ex(int64_t in_channels, int64_t out_channels, int kernel_h,
                                      int kernel_w, int stride_h, int stride_w, int pad_h,
                                      int pad_w, int output_pad_h, int output_pad_w, int dilation_h,
                                      int dilation_w, int groups, bool bias) {
    double v[] = {(double)in_channels,
                  (double)out_channels,
                  kernel_h,
                  kernel_w,
                  stride_h,
                  stride_w,
                  pad_h,
                  pad_w,
                  dilation_h,
                  dilation_w,
                  groups,
                  bias,
                  output_pad_h,
                  output_pad_w};
    return nn__mod_new_kind(&kind_convt2d, v);
}

nn_module *nn_conv_transpose2d_new(int64_t in_channels, int64_t out_channels, int kernel_size,
                                   int stride, int padding, int output_padding, bool bias) {
    return nn_conv_transpose2d_new_ex(in_channels, out_channels, kernel_size, kernel_size, stride,
                                      stride, padding, padding, output_padding, output_padding, 1,
                                      1, 1, bias);
}

/* Conv1d: keys in the Conv2d order with one spatial dim. */
enum { C1_IN, C1_OUT, C1_K, C1_S, C1_P, C1_D, C1_GROUPS, C1_BIAS };
static const char *const conv1d_keys[] = {"in_channels", "out_channels", "kernel_size", "stride",
                                          "padding",     "dilation",     "groups",      "bias"};
static const double conv1d_defaults[] = {NAN, NAN, NAN, 1, 0, 1, 1, 1};

static nn_status conv1d_build(nn_module *m) {
    if (!cfg_int(m, C1_IN, 1, MAX_SIZE) || !cfg_int(m, C1_OUT, 1, MAX_SIZE) ||
        !cfg_int(m, C1_K, 1, 1 << 20) || !cfg_int(m, C1_S, 1, 1 << 20) ||
        !cfg_int(m, C1_P, 0, 1 << 20) || !cfg_int(m, C1_D, 1, 1 << 20) ||
        !cfg_int(m, C1_GROUPS, 1, MAX_INT) || !cfg_bool(m, C1_BIAS))
        return nn_last_status();
    int64_t g = ci(m, C1_GROUPS);
    if (ci(m, C1_IN) % g || ci(m, C1_OUT) % g)
        return nn__err(
            NN_ERR_INVALID,
            "Conv1d: in_channels %lld and out_channels %lld must be divisible by groups %lld",
            (long long)ci(m, C1_IN), (long long)ci(m, C1_OUT), (long long)g);
    int64_t w[3] = {ci(m, C1_OUT), ci(m, C1_IN) / g, ci(m, C1_K)};
    double bound = 1.0 / sqrt((double)(w[1] * w[2]));
    nn_status st = add_uniform(m, "weight", w, 3, bound);
    if (st == NN_OK && ci(m, C1_BIAS)) st = add_uniform(m, "bias", w, 1, bound);
    return st;
}

static nn_tensor *conv1d_forward(nn_module *m, nn_tensor *x) {
    if (!check_channels(m, x, 3, ci(m, C1_IN), "[N,%lld,L]")) return NULL;
    return nn_conv1d(x, nn__mod_param(m, "weight"), nn__mod_param(m, "bias"), (int)ci(m, C1_S),
                     (int)ci(m, C1_P), (int)ci(m, C1_D), (int)ci(m, C1_GROUPS));
}

static double conv1d_flops(const nn_module *m, const nn_tensor *in, const nn_tensor *out) {
    (void)in;
    double k = (double)(ci(m, C1_IN) / ci(m, C1_GROUPS) * ci(m, C1_K));
    return out_numel(out) * (2.0 * k + (ci(m, C1_BIAS) ? 1 : 0));
}

KIND(kind_conv1d, "Conv1d", conv1d_keys, conv1d_defaults, conv1d_build, conv1d_forward,
     conv1d_flops);

nn_module *nn_conv1d_new(int64_t in_channels, int64_t out_channels, int kernel_size, int stride,
                         int padding, int dilation, int groups, bool bias) {
    double v[] = {(double)in_channels,
                  (double)out_channels,
                  kernel_size,
                  stride,
                  padding,
                  dilation,
                  groups,
                  bias};
    return nn__mod_new_kind(&kind_conv1d, v);
}

/* --------------------------------------------------------------- pooling */

enum { MP_KH, MP_KW, MP_SH, MP_SW, MP_PH, MP_PW, MP_DH, MP_DW, MP_CEIL };
static const char *const maxpool_keys[] = {"kernel_h",   "kernel_w",   "stride_h",
                                           "stride_w",   "padding_h",  "padding_w",
                                           "dilation_h", "dilation_w", "ceil_mode"};
static const double maxpool_defaults[] = {NAN, NAN, NAN, NAN, 0, 0, 1, 1, 0};

/* The window shared by MaxPool2d and AvgPool2d: config slots 0..5 hold
 * kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w; padding may
 * be at most half the kernel (PyTorch's rule). */
static bool pool_window_ok(nn_module *m) {
    for (int k = 0; k <= 3; k++)
        if (!cfg_int(m, k, 1, 1 << 20)) return false;
    if (!cfg_int(m, 4, 0, 1 << 20) || !cfg_int(m, 5, 0, 1 << 20)) return false;
    if (2 * ci(m, 4) > ci(m, 0) || 2 * ci(m, 5) > ci(m, 1)) {
        nn__err(NN_ERR_INVALID,
                "%s: padding (%lld, %lld) must be at most half the kernel (%lld, %lld)",
                m->kind->type, (long long)ci(m, 4), (long long)ci(m, 5), (long long)ci(m, 0),
                (long long)ci(m, 1));
        return false;
    }
    return true;
}

static nn_status maxpool_build(nn_module *m) {
    if (!pool_window_ok(m) || !cfg_int(m, MP_DH, 1, 1 << 20) || !cfg_int(m, MP_DW, 1, 1 << 20) ||
        !cfg_bool(m, MP_CEIL))
        return nn_last_status();
    return NN_OK;
}

static nn_tensor *maxpool_forward(nn_module *m, nn_tensor *x) {
    if (x->ndim != 4) return bad_input(m, x, "[N,C,H,W]");
    return nn_max_pool2d(x, (int)ci(m, MP_KH), (int)ci(m, MP_KW), (int)ci(m, MP_SH),
                         (int)ci(m, MP_SW), (int)ci(m, MP_PH), (int)ci(m, MP_PW), (int)ci(m, MP_DH),
                         (int)ci(m, MP_DW), ci(m, MP_CEIL) != 0, NULL);
}

static double pool_flops(const nn_module *m, const nn_tensor *in, const nn_tensor *out) {
    (void)in;
    return out_numel(out) * m->cfg[0] * m->cfg[1];
}

KIND(kind_maxpool, "MaxPool2d", maxpool_keys, maxpool_defaults, maxpool_build, maxpool_forward,
     pool_flops);

nn_module *nn_max_pool2d_new_ex(int kernel_h, int kernel_w, int stride_h, int stride_w, int pad_h,
                                int pad_w, int dilation_h, int dilation_w, bool ceil_mode) {
    double v[] = {kernel_h, kernel_w,   stride_h,   stride_w, pad_h,
                  pad_w,    dilation_h, dilation_w, ceil_mode};
    return nn__mod_new_kind(&kind_maxpool, v);
}

nn_module *nn_max_pool2d_new(int kernel_size, int stride, int padding) {
    return nn_max_pool2d_new_ex(kernel_size, kernel_size, stride, stride, padding, padding, 1, 1,
                                false);
}

enum { AP_KH, AP_KW, AP_SH, AP_SW, AP_PH, AP_PW, AP_CEIL, AP_CIP };
static const char *const avgpool_keys[] = {"kernel_h",  "kernel_w",         "stride_h",
                                           "stride_w",  "padding_h",        "padding_w",
                                           "ceil_mode", "count_include_pad"};
static const double avgpool_defaults[] = {NAN, NAN, NAN, NAN, 0, 0, 0, 1};

static nn_status avgpool_build(nn_module *m) {
    if (!pool_window_ok(m) || !cfg_bool(m, AP_CEIL) || !cfg_bool(m, AP_CIP))
        return nn_last_status();
    return NN_OK;
}

static nn_tensor *avgpool_forward(nn_module *m, nn_tensor *x) {
    if (x->ndim != 4) return bad_input(m, x, "[N,C,H,W]");
    return nn_avg_pool2d(x, (int)ci(m, AP_KH), (int)ci(m, AP_KW), (int)ci(m, AP_SH),
                         (int)ci(m, AP_SW), (int)ci(m, AP_PH), (int)ci(m, AP_PW),
                         ci(m, AP_CEIL) != 0, ci(m, AP_CIP) != 0);
}

KIND(kind_avgpool, "AvgPool2d", avgpool_keys, avgpool_defaults, avgpool_build, avgpool_forward,
     pool_flops);

nn_module *nn_avg_pool2d_new_ex(int kernel_h, int kernel_w, int stride_h, int stride_w, int pad_h,
                                int pad_w, bool ceil_mode, bool count_include_pad) {
    double v[] = {kernel_h, kernel_w, stride_h,  stride_w,
                  pad_h,    pad_w,    ceil_mode, count_include_pad};
    return nn__mod_new_kind(&kind_avgpool, v);
}

nn_module *nn_avg_pool2d_new(int kernel_size, int stride, int padding) {
    return nn_avg_pool2d_new_ex(kernel_size, kernel_size, stride, stride, padding, padding, false,
                                true);
}

static const char *const adapt_keys[] = {"output_h", "output_w"};
static const double adapt_defaults[] = {NAN, NAN};

static nn_status adapt_build(nn_module *m) {
    if (!cfg_int(m, 0, 1, MAX_SIZE) || !cfg_int(m, 1, 1, MAX_SIZE)) return nn_last_status();
    return NN_OK;
}

static nn_tensor *adapt_forward(nn_module *m, nn_tensor *x) {
    if (x->ndim != 4) return bad_input(m, x, "[N,C,H,W]");
    return nn_adaptive_avg_pool2d(x, ci(m, 0), ci(m, 1));
}

static double adapt_flops(const nn_module *m, const nn_tensor *in, const nn_tensor *out) {
    (void)m, (void)out;
    return in ? (double)in->numel : 0;
}

KIND(kind_adapt, "AdaptiveAvgPool2d", adapt_keys, adapt_defaults, adapt_build, adapt_forward,
     adapt_flops);

nn_module *nn_adaptive_avg_pool2d_new(int64_t out_h, int64_t out_w) {
    double v[] = {(double)out_h, (double)out_w};
    return nn__mod_new_kind(&kind_adapt, v);
}

/* --------------------------------------------------------------- Flatten */

static const char *const flatten_keys[] = {"start_dim", "end_dim"};
static const double flatten_defaults[] = {1, -1};

static nn_status flatten_build(nn_module *m) {
    if (!cfg_int(m, 0, -NN_MAX_DIMS, NN_MAX_DIMS - 1) ||
        !cfg_int(m, 1, -NN_MAX_DIMS, NN_MAX_DIMS - 1))
        return nn_last_status();
    return NN_OK;
}

static nn_tensor *flatten_forward(nn_module *m, nn_tensor *x) {
    return nn_flatten(x, (int)ci(m, 0), (int)ci(m, 1));
}

KIND(kind_flatten, "Flatten", flatten_keys, flatten_defaults, flatten_build, flatten_forward,
     flops_none);

nn_module *nn_flatten_new(int start_dim, int end_dim) {
    double v[] = {start_dim, end_dim};
    return nn__mod_new_kind(&kind_flatten, v);
}

/* --------------------------------------------------------------- Dropout */

static const char *const dropout_keys[] = {"p"};
static const double dropout_defaults[] = {0.5};

static nn_status dropout_build(nn_module *m) {
    if (!cfg_real(m, 0, 0, 1)) return nn_last_status();
    /* Own generator, seeded from the default one so that seeding the
     * default generator before building makes training reproducible. */
    m->gen = nn_generator_new(nn__gen_next(nn__gen(NULL)));
    return m->gen ? NN_OK : nn_last_status();
}

static nn_tensor *dropout_forward(nn_module *m, nn_tensor *x) {
    if (!need_f32(m, x)) return NULL;
    return nn_dropout(x, m->cfg[0], nn__mod_training(m), m->gen);
}

KIND(kind_dropout, "Dropout", dropout_keys, dropout_defaults, dropout_build, dropout_forward,
     flops_elementwise);

nn_module *nn_dropout_new(double p) {
    double v[] = {p};
    return nn__mod_new_kind(&kind_dropout, v);
}

nn_status nn_dropout_seed(nn_module *dropout, uint64_t seed) {
    const char *fn = "nn_dropout_seed";
    if (!nn__mod_check(dropout, fn, "dropout")) return nn_last_status();
    if (dropout->kind != &kind_dropout)
        return nn__err(NN_ERR_INVALID, "%s: module is a %s, not a Dropout", fn,
                       nn_module_type_name(dropout));
    return nn_generator_seed(dropout->gen, seed);
}

/* ------------------------------------------------------------- BatchNorm */

enum { BN_C, BN_EPS, BN_MOM, BN_AFFINE };
static const char *const bn_keys[] = {"num_features", "eps", "momentum", "affine"};
static const double bn_defaults[] = {NAN, 1e-5, 0.1, 1};

static nn_status bn_build(nn_module *m) {
    if (!cfg_int(m, BN_C, 1, MAX_SIZE) || !cfg_real(m, BN_EPS, 1e-300, 1) ||
        !cfg_real(m, BN_MOM, 0, 1) || !cfg_bool(m, BN_AFFINE))
        return nn_last_status();
    int64_t c = ci(m, BN_C);
    nn_status st = NN_OK;
    if (ci(m, BN_AFFINE)) {
        st = add_filled(m, "weight", NN_DTYPE_F32, &c, 1, 1, true);
        if (st == NN_OK) st = add_filled(m, "bias", NN_DTYPE_F32, &c, 1, 0, true);
    }
    if (st == NN_OK) st = add_filled(m, "running_mean", NN_DTYPE_F32, &c, 1, 0, false);
    if (st == NN_OK) st = add_filled(m, "running_var", NN_DTYPE_F32, &c, 1, 1, false);
    if (st == NN_OK) st = add_filled(m, "num_batches_tracked", NN_DTYPE_I64, NULL, 0, 0, false);
    return st;
}

static nn_tensor *bn_forward(nn_module *m, nn_tensor *x) {
    int64_t c = ci(m, BN_C);
    bool two_d = !strcmp(m->kind->type, "BatchNorm2d");
    bool ok = two_d ? (x->ndim == 4 && x->shape[1] == c)
                    : ((x->ndim == 2 || x->ndim == 3) && x->shape[1] == c);
    if (!ok) {
        char want[96];
        snprintf(want, sizeof want, two_d ? "[N,%lld,H,W]" : "[N,%lld] or [N,%lld,L]",
                 (long long)c, (long long)c);
        return bad_input(m, x, want);
    }
    bool training = nn__mod_training(m);
    nn_tensor *y =
        nn_batch_norm(x, m->bufs.e[0].t, m->bufs.e[1].t, nn__mod_param(m, "weight"),
                      nn__mod_param(m, "bias"), training, m->cfg[BN_MOM], m->cfg[BN_EPS]);
    if (y && training) nn__i64(m->bufs.e[2].t)[0]++;
    return y;
}

static double bn_flops(const nn_module *m, const nn_tensor *in, const nn_tensor *out) {
    (void)m, (void)in;
    return 2 * out_numel(out);
}

KIND(kind_bn1d, "BatchNorm1d", bn_keys, bn_defaults, bn_build, bn_forward, bn_flops);
KIND(kind_bn2d, "BatchNorm2d", bn_keys, bn_defaults, bn_build, bn_forward, bn_flops);

nn_module *nn_batch_norm1d_new(int64_t num_features, double eps, double momentum, bool affine) {
    double v[] = {(double)num_features, eps, momentum, affine};
    return nn__mod_new_kind(&kind_bn1d, v);
}

nn_module *nn_batch_norm2d_new(int64_t num_features, double eps, double momentum, bool affine) {
    double v[] = {(double)num_features, eps, momentum, affine};
    return nn__mod_new_kind(&kind_bn2d, v);
}

/* ------------------------------------------------------ LayerNorm, GroupNorm */

/* bias (PyTorch's LayerNorm(bias=False), as nanoGPT uses it): written only
 * when 0, after the eight shape slots, so older files read as before. */
enum { LN_EPS, LN_AFFINE, LN_NDIM, LN_SHAPE0, LN_BIAS = LN_SHAPE0 + NN_MAX_DIMS };
static const char *const ln_keys[] = {"eps",    "elementwise_affine",
                                      "ndim",   "shape0",
                                      "shape1", "shape2",
                                      "shape3", "shape4",
                                      "shape5", "shape6",
                                      "shape7", "bias"};
static const double ln_defaults[] = {1e-5, 1, NAN, 0, 0, 0, 0, 0, 0, 0, 0, 1};

static nn_status ln_build(nn_module *m) {
    if (!cfg_real(m, LN_EPS, 1e-300, 1) || !cfg_bool(m, LN_AFFINE) ||
        !cfg_int(m, LN_NDIM, 1, NN_MAX_DIMS) || !cfg_bool(m, LN_BIAS))
        return nn_last_status();
    int nd = (int)ci(m, LN_NDIM);
    int64_t shape[NN_MAX_DIMS];
    for (int i = 0; i < nd; i++) {
        if (!cfg_int(m, LN_SHAPE0 + i, 1, MAX_SIZE)) return nn_last_status();
        shape[i] = ci(m, LN_SHAPE0 + i);
    }
    for (int i = nd; i < NN_MAX_DIMS; i++) m->cfg[LN_SHAPE0 + i] = 0;
    if (!ci(m, LN_AFFINE)) return NN_OK;
    nn_status st = add_filled(m, "weight", NN_DTYPE_F32, shape, nd, 1, true);
    if (st == NN_OK && ci(m, LN_BIAS)) st = add_filled(m, "bias", NN_DTYPE_F32, shape, nd, 0, true);
    return st;
}

static int ln_ncfg(const nn_module *m) {
    return ci(m, LN_BIAS) ? LN_SHAPE0 + (int)ci(m, LN_NDIM) : LN_BIAS + 1;
}

static nn_tensor *ln_forward(nn_module *m, nn_tensor *x) {
    int nd = (int)ci(m, LN_NDIM);
    int64_t shape[NN_MAX_DIMS];
    bool ok = x->ndim >= nd;
    for (int i = 0; i < nd; i++) {
        shape[i] = ci(m, LN_SHAPE0 + i);
        if (ok && x->shape[x->ndim - nd + i] != shape[i]) ok = false;
    }
    if (!ok) {
        char s[128], want[160];
        snprintf(want, sizeof want, "[*,%s", nn__shape_str(shape, nd, s, sizeof s) + 1);
        return bad_input(m, x, want);
    }
    return nn_layer_norm(x, shape, nd, nn__mod_param(m, "weight"), nn__mod_param(m, "bias"),
                         m->cfg[LN_EPS]);
}

static const nn__mod_kind kind_ln = {.type = "LayerNorm",
                                     .nkeys = LN_BIAS + 1,
                                     .keys = ln_keys,
                                     .defaults = ln_defaults,
                                     .build = ln_build,
                                     .forward = ln_forward,
                                     .flops = bn_flops,
                                     .ncfg = ln_ncfg};

nn_module *nn_layer_norm_new(const int64_t *shape, int ndim, double eps, bool elementwise_affine) {
    const char *fn = "nn_layer_norm_new";
    if (ndim < 1 || ndim > NN_MAX_DIMS)
        return NN__FAIL(NN_ERR_INVALID, "%s: ndim = %d, expected 1..%d", fn, ndim, NN_MAX_DIMS);
    if (!nn__check_ptr(shape, fn, "shape")) return NULL;
    double v[LN_BIAS + 1] = {eps, elementwise_affine, ndim};
    for (int i = 0; i < ndim; i++) v[LN_SHAPE0 + i] = (double)shape[i];
    v[LN_BIAS] = 1;
    return nn__mod_new_kind(&kind_ln, v);
}

nn_module *nn__layer_norm_new_nobias(int64_t features, double eps) {
    double v[LN_BIAS + 1] = {eps, 1, 1, (double)features};
    return nn__mod_new_kind(&kind_ln, v);
}

enum { GN_G, GN_C, GN_EPS, GN_AFFINE };
static const char *const gn_keys[] = {"num_groups", "num_channels", "eps", "affine"};
static const double gn_defaults[] = {NAN, NAN, 1e-5, 1};

static nn_status gn_build(nn_module *m) {
    if (!cfg_int(m, GN_G, 1, MAX_INT) || !cfg_int(m, GN_C, 1, MAX_SIZE) ||
        !cfg_real(m, GN_EPS, 1e-300, 1) || !cfg_bool(m, GN_AFFINE))
        return nn_last_status();
    int64_t c = ci(m, GN_C);
    if (c % ci(m, GN_G))
        return nn__err(NN_ERR_INVALID,
                       "GroupNorm: num_channels %lld is not divisible by num_groups %lld",
                       (long long)c, (long long)ci(m, GN_G));
    if (!ci(m, GN_AFFINE)) return NN_OK;
    nn_status st = add_filled(m, "weight", NN_DTYPE_F32, &c, 1, 1, true);
    if (st == NN_OK) st = add_filled(m, "bias", NN_DTYPE_F32, &c, 1, 0, true);
    return st;
}

static nn_tensor *gn_forward(nn_module *m, nn_tensor *x) {
    if (x->ndim < 2 || x->shape[1] != ci(m, GN_C)) {
        char want[64];
        snprintf(want, sizeof want, "[N,%lld,*]", (long long)ci(m, GN_C));
        return bad_input(m, x, want);
    }
    return nn_group_norm(x, (int)ci(m, GN_G), nn__mod_param(m, "weight"), nn__mod_param(m, "bias"),
                         m->cfg[GN_EPS]);
}

KIND(kind_gn, "GroupNorm", gn_keys, gn_defaults, gn_build, gn_forward, bn_flops);

nn_module *nn_group_norm_new(int groups, int64_t num_channels, double eps, bool affine) {
    double v[] = {groups, (double)num_channels, eps, affine};
    return nn__mod_new_kind(&kind_gn, v);
}

/* ------------------------------------------------------------- Embedding */

/* padding_idx: the row (normalised to 0..num-1) that starts at zero and
 * gets no gradient; -1: none (also for files written before it existed). */
enum { EMB_NUM, EMB_DIM, EMB_PAD, EMB_WDT };
static const char *const emb_keys[] = {"num_embeddings", "embedding_dim", "padding_idx",
                                       "weight_dtype"};
static const double emb_defaults[] = {NAN, NAN, -1, 0};

static nn_status emb_build(nn_module *m) {
    if (!cfg_int(m, EMB_NUM, 1, MAX_SIZE) || !cfg_int(m, EMB_DIM, 1, MAX_SIZE) ||
        !cfg_int(m, EMB_PAD, -1, m->cfg[EMB_NUM] - 1) || !cfg_wdt(m, EMB_WDT))
        return nn_last_status();
    int64_t shape[2] = {ci(m, EMB_NUM), ci(m, EMB_DIM)};
    if (ci(m, EMB_WDT) != NN_DTYPE_F32) return add_weight(m, EMB_WDT, shape, 2, 0);
    nn_tensor *w = nn__tensor_new(NN_DTYPE_F32, shape, 2);
    if (!w) return nn_last_status();
    nn_generator *g = nn__gen(NULL);
    float *p = nn__f32(w);
    for (int64_t i = 0; i < w->numel && !nn__tensor_init_skipped(); i++)
        p[i] = (float)nn__gen_normal(g);
    if (ci(m, EMB_PAD) >= 0 && !nn__tensor_init_skipped()) /* PyTorch zeroes the padding row */
        memset(p + ci(m, EMB_PAD) * shape[1], 0, sizeof(float) * (size_t)shape[1]);
    nn_status st = nn__mod_add_param(m, "weight", w);
    if (st != NN_OK) nn__tensor_release(w);
    return st;
}

/* Written only when set, so files of unpadded tables stay as they were. */
static int emb_ncfg(const nn_module *m) {
    return ci(m, EMB_WDT) ? 4 : ci(m, EMB_PAD) >= 0 ? 3 : 2;
}

static nn_tensor *emb_forward(nn_module *m, nn_tensor *x) {
    if (x->dtype != NN_DTYPE_I64)
        return NN__FAIL(NN_ERR_DTYPE, "Embedding: expected i64 indices, got %s",
                        nn_dtype_name(x->dtype));
    if (ci(m, EMB_PAD) >= 0) return nn_embedding_padded(m->params.e[0].t, x, ci(m, EMB_PAD));
    return nn_embedding(m->params.e[0].t, x);
}

static const nn__mod_kind kind_emb = {.type = "Embedding",
                                      .nkeys = 4,
                                      .keys = emb_keys,
                                      .defaults = emb_defaults,
                                      .build = emb_build,
                                      .forward = emb_forward,
                                      .flops = flops_none,
                                      .ncfg = emb_ncfg};

nn_module *nn_embedding_new(int64_t num_embeddings, int64_t embedding_dim) {
    double v[] = {(double)num_embeddings, (double)embedding_dim, -1, NN_DTYPE_F32};
    return nn__mod_new_kind(&kind_emb, v);
}

nn_module *nn_embedding_new_padded(int64_t num_embeddings, int64_t embedding_dim,
                                   int64_t padding_idx) {
    if (padding_idx < -num_embeddings || padding_idx >= num_embeddings)
        return NN__FAIL(NN_ERR_INVALID,
                        "nn_embedding_new_padded: padding_idx %lld out of range [%lld, %lld)",
                        (long long)padding_idx, (long long)-num_embeddings,
                        (long long)num_embeddings);
    double v[] = {(double)num_embeddings, (double)embedding_dim,
                  (double)(padding_idx < 0 ? padding_idx + num_embeddings : padding_idx),
                  NN_DTYPE_F32};
    return nn__mod_new_kind(&kind_emb, v);
}

/* ------------------------------------------------------------ activations */

static nn_tensor *relu_fwd(nn_module *m, nn_tensor *x) {
    (void)m;
    return nn_relu(x);
}
static nn_tensor *silu_fwd(nn_module *m, nn_tensor *x) {
    (void)m;
    return nn_silu(x);
}
static nn_tensor *sigmoid_fwd(nn_module *m, nn_tensor *x) {
    (void)m;
    return nn_sigmoid(x);
}
static nn_tensor *tanh_fwd(nn_module *m, nn_tensor *x) {
    (void)m;
    return nn_tanh(x);
}
static nn_tensor *identity_fwd(nn_module *m, nn_tensor *x) {
    (void)m;
    return x;
}
static nn_tensor *leaky_fwd(nn_module *m, nn_tensor *x) { return nn_leaky_relu(x, m->cfg[0]); }
static nn_tensor *elu_fwd(nn_module *m, nn_tensor *x) { return nn_elu(x, m->cfg[0]); }
static nn_tensor *gelu_fwd(nn_module *m, nn_tensor *x) { return nn_gelu(x, m->cfg[0] != 0); }
static nn_tensor *softplus_fwd(nn_module *m, nn_tensor *x) {
    return nn_softplus(x, m->cfg[0], m->cfg[1]);
}
static nn_tensor *hardtanh_fwd(nn_module *m, nn_tensor *x) {
    return nn_hardtanh(x, m->cfg[0], m->cfg[1]);
}
static nn_tensor *softmax_fwd(nn_module *m, nn_tensor *x) { return nn_softmax(x, (int)ci(m, 0)); }
static nn_tensor *logsoftmax_fwd(nn_module *m, nn_tensor *x) {
    return nn_log_softmax(x, (int)ci(m, 0));
}

KIND0(kind_relu, "ReLU", relu_fwd, flops_elementwise);
KIND0(kind_silu, "SiLU", silu_fwd, flops_elementwise);
KIND0(kind_sigmoid, "Sigmoid", sigmoid_fwd, flops_elementwise);
KIND0(kind_tanh, "Tanh", tanh_fwd, flops_elementwise);
KIND0(kind_identity, "Identity", identity_fwd, flops_none);

static const char *const leaky_keys[] = {"negative_slope"};
static const double leaky_defaults[] = {0.01};
static nn_status finite_build(nn_module *m) {
    for (int i = 0; i < m->kind->nkeys; i++)
        if (!cfg_real(m, i, -1e30, 1e30)) return nn_last_status();
    return NN_OK;
}
KIND(kind_leaky, "LeakyReLU", leaky_keys, leaky_defaults, finite_build, leaky_fwd,
     flops_elementwise);

static const char *const elu_keys[] = {"alpha"};
static const double elu_defaults[] = {1.0};
KIND(kind_elu, "ELU", elu_keys, elu_defaults, finite_build, elu_fwd, flops_elementwise);

static const char *const gelu_keys[] = {"approximate_tanh"};
static const double gelu_defaults[] = {0};
static nn_status gelu_build(nn_module *m) { return cfg_bool(m, 0) ? NN_OK : nn_last_status(); }
KIND(kind_gelu, "GELU", gelu_keys, gelu_defaults, gelu_build, gelu_fwd, flops_elementwise);

static const char *const softplus_keys[] = {"beta", "threshold"};
static const double softplus_defaults[] = {1, 20};
static nn_status softplus_build(nn_module *m) {
    if (!cfg_real(m, 0, 1e-30, 1e30) || !cfg_real(m, 1, -1e30, 1e30)) return nn_last_status();
    return NN_OK;
}
KIND(kind_softplus, "Softplus", softplus_keys, softplus_defaults, softplus_build, softplus_fwd,
     flops_elementwise);

static const char *const hardtanh_keys[] = {"min_val", "max_val"};
static const double hardtanh_defaults[] = {-1, 1};
static nn_status hardtanh_build(nn_module *m) {
    if (finite_build(m) != NN_OK) return nn_last_status();
    if (m->cfg[0] > m->cfg[1])
        return nn__err(NN_ERR_INVALID, "Hardtanh: min_val %g > max_val %g", m->cfg[0], m->cfg[1]);
    return NN_OK;
}
KIND(kind_hardtanh, "Hardtanh", hardtanh_keys, hardtanh_defaults, hardtanh_build, hardtanh_fwd,
     flops_elementwise);

static const char *const dim_keys[] = {"dim"};
static const double dim_defaults[] = {NAN};
static nn_status dim_build(nn_module *m) {
    return cfg_int(m, 0, -NN_MAX_DIMS, NN_MAX_DIMS - 1) ? NN_OK : nn_last_status();
}
KIND(kind_softmax, "Softmax", dim_keys, dim_defaults, dim_build, softmax_fwd, flops_elementwise);
KIND(kind_logsoftmax, "LogSoftmax", dim_keys, dim_defaults, dim_build, logsoftmax_fwd,
     flops_elementwise);

nn_module *nn_relu_new(void) { return nn__mod_new_kind(&kind_relu, NULL); }
nn_module *nn_silu_new(void) { return nn__mod_new_kind(&kind_silu, NULL); }
nn_module *nn_sigmoid_new(void) { return nn__mod_new_kind(&kind_sigmoid, NULL); }
nn_module *nn_tanh_new(void) { return nn__mod_new_kind(&kind_tanh, NULL); }
nn_module *nn_identity_new(void) { return nn__mod_new_kind(&kind_identity, NULL); }
nn_module *nn_leaky_relu_new(double negative_slope) {
    return nn__mod_new_kind(&kind_leaky, &negative_slope);
}
nn_module *nn_elu_new(double alpha) { return nn__mod_new_kind(&kind_elu, &alpha); }
nn_module *nn_gelu_new(bool tanh_approx) {
    double v = tanh_approx;
    return nn__mod_new_kind(&kind_gelu, &v);
}
nn_module *nn_softplus_new(double beta, double threshold) {
    double v[] = {beta, threshold};
    return nn__mod_new_kind(&kind_softplus, v);
}
nn_module *nn_hardtanh_new(double min_val, double max_val) {
    double v[] = {min_val, max_val};
    return nn__mod_new_kind(&kind_hardtanh, v);
}
nn_module *nn_softmax_new(int dim) {
    double v = dim;
    return nn__mod_new_kind(&kind_softmax, &v);
}
nn_module *nn_log_softmax_new(int dim) {
    double v = dim;
    return nn__mod_new_kind(&kind_logsoftmax, &v);
}

int nn__mod_weight_dtype_key(const nn_module *m) {
    if (m->kind == &kind_linear) return LIN_WDT;
    if (m->kind == &kind_conv2d) return CV2_WDT;
    if (m->kind == &kind_emb) return EMB_WDT;
    return -1;
}

/* ----------------------------------------------------- Sequential fusion */

/* Conv2d -> ReLU (-> MaxPool2d 2x2, stride 2, no padding, floor) at the
 * head of ch[0..n) for an input of per-image shape in[0..3) (channels,
 * height, width), `grad` whether a graph is recorded: the children one fused
 * op consumes (0: none, 2, or 3 with the pool, which fuses only when no
 * graph is recorded: its indices are not kept); out[0..3) the fused op's
 * per-image output shape (a dimension < 1 when the Conv2d will reject the
 * input). */
static int fuse_plan(const nn__named_module *ch, int n, const int64_t *in, bool grad,
                     int64_t *out) {
    if (n < 2) return 0;
    const nn_module *cv = ch[0].m;
    if (cv->kind != &kind_conv2d || ch[1].m->kind != &kind_relu) return 0;
    if (in[0] != ci(cv, CV_IN)) return 0;
    /* the conv's output plane: (in + 2 pad - dil (k - 1) - 1) / stride + 1 */
    out[0] = ci(cv, CV_OUT);
    for (int a = 0; a < 2; a++)
        out[1 + a] = (in[1 + a] + 2 * ci(cv, CV_PH + a) -
                      ci(cv, CV_DH + a) * (ci(cv, CV_KH + a) - 1) - 1) /
                         ci(cv, CV_SH + a) +
                     1;
    if (n < 3 || ch[2].m->kind != &kind_maxpool || grad) return 2;
    const nn_module *mp = ch[2].m;
    const bool pool = ci(mp, MP_KH) == 2 && ci(mp, MP_KW) == 2 && ci(mp, MP_SH) == 2 &&
                      ci(mp, MP_SW) == 2 && ci(mp, MP_PH) == 0 && ci(mp, MP_PW) == 0 &&
                      ci(mp, MP_DH) == 1 && ci(mp, MP_DW) == 1 && !ci(mp, MP_CEIL) &&
                      out[1] >= 2 && out[2] >= 2;
    if (!pool) return 2;
    out[1] /= 2, out[2] /= 2;
    return 3;
}

/* The fused op of fuse_plan (ops/conv_fuse.h): one pass over the
 * activations instead of two or three. Not while a summary runs (it reports
 * per layer), and not for inputs the Conv2d would reject (its own forward
 * reports those). Returns the children consumed (0: none; *y untouched). */
int nn__mod_fuse_conv(const nn__named_module *ch, int n, nn_tensor *x, nn_tensor **y) {
    if (n < 2 || nn__summary_active() || x->ndim != 4) return 0;
    nn_module *cv = ch[0].m;
    if (cv->kind != &kind_conv2d) return 0;
    nn_tensor *w = nn__mod_param(cv, "weight"), *b = nn__mod_param(cv, "bias");
    nn_tensor *in[3] = {x, w, b};
    int64_t out[3];
    const int fused = fuse_plan(ch, n, x->shape + 1, nn__needs_grad(in, 3), out);
    if (!fused) return 0;
    const bool pool = fused == 3;
    NN__PROF_SPAN(NN__PROF_MODULE, pool ? "Conv2d+ReLU+MaxPool2d" : "Conv2d+ReLU", cv);
    *y = nn__conv2d_relu(x, w, b, (int)ci(cv, CV_SH), (int)ci(cv, CV_SW), (int)ci(cv, CV_PH),
                         (int)ci(cv, CV_PW), (int)ci(cv, CV_DH), (int)ci(cv, CV_DW),
                         (int)ci(cv, CV_GROUPS), pool);
    return fused;
}

int nn__mod_fuse_conv_run(const nn__named_module *ch, int n, const nn_tensor *x,
                          int64_t *peak) {
    *peak = 0;
    if (nn__summary_active() || x->ndim != 4 || x->dtype != NN_DTYPE_F32) return 0;
    int64_t shape[3] = {x->shape[1], x->shape[2], x->shape[3]};
    int k = 0;
    for (;;) {
        nn_module *cv = ch[k].m;
        if (n - k < 2 || cv->kind != &kind_conv2d) break;
        /* the first op reads x, the later ones untracked results */
        nn_tensor *in[3] = {k ? NULL : (nn_tensor *)x, nn__mod_param(cv, "weight"),
                            nn__mod_param(cv, "bias")};
        int64_t out[3];
        if (nn__needs_grad(in, 3)) break;
        const int fused = fuse_plan(ch + k, n - k, shape, false, out);
        if (!fused || out[1] < 1 || out[2] < 1) break;
        const int64_t bytes = 4 * (shape[0] * shape[1] * shape[2] + out[0] * out[1] * out[2]);
        if (bytes > *peak) *peak = bytes;
        memcpy(shape, out, sizeof shape);
        k += fused;
    }
    return k;
}

/* Linear -> ReLU with no graph recorded: one op (ops/linear_fuse.h), the
 * bias and the ReLU in the GEMM's output pass, no tensor for the Linear's
 * output (batch-1 MLP inference: the ReLU op cost ~0.2 us a layer, most of
 * it the tensor). Not while a summary runs (it reports per layer), and not
 * for inputs the Linear would reject (its own forward reports those). */
int nn__mod_fuse_linear(const nn__named_module *ch, int n, nn_tensor *x, nn_tensor **y) {
    if (n < 2 || nn__summary_active()) return 0;
    nn_module *ln = ch[0].m;
    if (ln->kind != &kind_linear || ch[1].m->kind != &kind_relu) return 0;
    if (x->ndim < 1 || x->shape[x->ndim - 1] != ci(ln, LIN_IN)) return 0;
    nn_tensor *in[3] = {x, nn__mod_param(ln, "weight"), nn__mod_param(ln, "bias")};
    if (nn__needs_grad(in, 3)) return 0;
    NN__PROF_SPAN(NN__PROF_MODULE, "Linear+ReLU", ln);
    *y = nn__linear_relu(in[0], in[1], in[2]);
    return 2;
}

/* ------------------------------------------------------------ type table */

static const nn__mod_kind *const all_kinds[] = {
    &kind_linear,     &kind_conv1d,   &kind_conv2d,  &kind_convt2d,  &kind_maxpool,  &kind_avgpool,
    &kind_adapt,      &kind_flatten,  &kind_dropout, &kind_bn1d,     &kind_bn2d,     &kind_ln,
    &kind_gn,         &kind_emb,      &kind_relu,    &kind_leaky,    &kind_elu,      &kind_gelu,
    &kind_silu,       &kind_sigmoid,  &kind_tanh,    &kind_softplus, &kind_hardtanh, &kind_softmax,
    &kind_logsoftmax, &kind_identity, &nn__kind_rnn, &nn__kind_lstm, &nn__kind_gru,
    &nn__kind_select, &nn__kind_module_list, &nn__kind_module_dict, &nn__kind_mha,
    &nn__kind_enc_layer, &nn__kind_dec_layer, &nn__kind_encoder, &nn__kind_decoder, &nn__kind_gpt,
    &nn__kind_qlinear, &nn__kind_qconv, &nn__kind_residual};

const nn__mod_kind *nn__mod_find_kind(const char *type) {
    for (size_t i = 0; i < sizeof all_kinds / sizeof all_kinds[0]; i++)
        if (!strcmp(all_kinds[i]->type, type)) return all_kinds[i];
    return NULL;
}
