/* int8 post-training quantization (nn_quantize_dynamic / _static, the
 * QuantizedLinear / QuantizedConv2d kinds):
 *  - each quantized layer against a double-precision reference computed here
 *    from its dequantized weights and the input quantized by the documented
 *    rule (tight), and against the float model (loose);
 *  - ReLU fusion, static calibration ranges, the report's lines;
 *  - accuracy of a trained classifier kept after quantization;
 *  - model-file round trip (bit-identical outputs) and bad input (NULL
 *    arguments, nothing to quantize, bad hyperparameters from a file). */
#include "testutil.h"
#include "module/module_internal.h"
#include "ops/quant.h"
#include "backend/backend.h"
#include "backend/tier.h"
#include "backend/threadpool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static nn_tensor *rand_tensor(const int64_t *shape, int nd, uint64_t seed, float lo, float hi) {
    nn_generator *g = nn_generator_new(seed);
    nn_tensor *t = nn_rand(g, shape, nd);
    nn_generator_free(g);
    float *p = nn_tensor_data(t);
    for (int64_t i = 0; i < nn_tensor_numel(t); i++) p[i] = lo + (hi - lo) * p[i];
    return t;
}

/* m saved to a model file in memory (*size bytes) and loaded back. */
static nn_model *save_load(nn_module *m, size_t *size) {
    void *file;
    assert_int_equal(nn_model_save_buffer(m, NULL, NULL, &file, size), NN_OK);
    nn_model *back = nn_model_load_buffer(file, *size, NULL);
    if (!back) fail_msg("load: %s", nn_last_error());
    nn_free(file);
    return back;
}

/* The input quantized and dequantized by the documented rule (one range
 * over n values, or the static parameters). */
static void fake_quant(const float *x, int64_t n, float scale_static, int32_t zp_static,
                       double *out) {
    float s = scale_static;
    int32_t zp = zp_static;
    if (!(s > 0)) {
        float mn = INFINITY, mx = -INFINITY;
        for (int64_t i = 0; i < n; i++) mn = fminf(mn, x[i]), mx = fmaxf(mx, x[i]);
        nn__q_act_params(mn, mx, &s, &zp);
    }
    for (int64_t i = 0; i < n; i++) {
        float r = nearbyintf(x[i] * (1.0f / s)) + (float)zp;
        int q = r >= 255.0f ? 255 : r > 0.0f ? (int)r : 0;
        out[i] = (double)s * (double)(q - zp);
    }
}

/* Buffers of a quantized layer: dequantized weights [n, k] and bias. */
static double *dequant(nn_module *q, int64_t n, int64_t k) {
    float *wf = malloc((size_t)(n * k) * sizeof(float));
    nn__qw_dequantize(nn_module_buffer(q, 0, NULL), nn_tensor_data(nn_module_buffer(q, 1, NULL)),
                      n, k, wf);
    double *w = malloc((size_t)(n * k) * sizeof(double));
    for (int64_t i = 0; i < n * k; i++) w[i] = wf[i];
    free(wf);
    return w;
}

static void expect_close(const float *got, const double *want, int64_t n, double rel,
                         const char *what) {
    double scale = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    for (int64_t i = 0; i < n; i++)
        if (!(fabs(got[i] - want[i]) <= rel * scale + 1e-6))
            fail_msg("%s: element %lld is %.8g, reference %.8g (scale %.4g)", what, (long long)i,
                     (double)got[i], want[i], scale);
}

/* Linear -> ReLU -> Linear: int8 vs the dequantized reference (tight) and
 * vs f32 (loose); the ReLU is fused into the first layer. */
static void test_linear_dynamic(void **state) {
    (void)state;
    nn_generator_seed(NULL, 7);
    nn_module *net = nn_sequential_new();
    nn_sequential_append(net, nn_linear_new(37, 23, true));
    nn_sequential_append(net, nn_relu_new());
    nn_sequential_append(net, nn_linear_new(23, 5, false));
    const int64_t xs[2] = {6, 37};
    nn_tensor *x = rand_tensor(xs, 2, 3, -2.0f, 2.0f);
    nn_tensor *yf = nn_module_forward(net, x);
    char *report = NULL;
    assert_int_equal(nn_quantize_dynamic(net, x, &report), NN_OK);
    assert_non_null(report);
    assert_non_null(strstr(report, "QuantizedLinear"));
    assert_non_null(strstr(report, "(whole model)"));
    nn_free(report);
    nn_module *q0 = nn_sequential_get(net, 0), *q2 = nn_sequential_get(net, 2);
    assert_string_equal(nn_module_type_name(q0), "QuantizedLinear");
    assert_string_equal(nn_module_type_name(nn_sequential_get(net, 1)), "Identity");
    assert_string_equal(nn_module_type_name(q2), "QuantizedLinear");

    /* layer 0 alone (with its fused ReLU), per row */
    nn_tensor *y0 = nn_module_forward(q0, x);
    double *w0 = dequant(q0, 23, 37), want0[6 * 23], xq[37];
    const float *X = nn_tensor_data(x), *B = nn_tensor_data(nn_module_buffer(q0, 2, NULL));
    for (int r = 0; r < 6; r++) {
        fake_quant(X + r * 37, 37, 0, 0, xq);
        for (int j = 0; j < 23; j++) {
            double s = B[j];
            for (int i = 0; i < 37; i++) s += xq[i] * w0[j * 37 + i];
            want0[r * 23 + j] = s > 0 ? s : 0;
        }
    }
    expect_close(nn_tensor_data(y0), want0, 6 * 23, 2e-6, "QuantizedLinear vs dequantized");
    /* the whole int8 model vs f32: within a few percent of the output range */
    nn_tensor *yq = nn_module_forward(net, x);
    double wf[30];
    for (int i = 0; i < 30; i++) wf[i] = ((float *)nn_tensor_data(yf))[i];
    expect_close(nn_tensor_data(yq), wf, 30, 0.03, "int8 model vs f32");
    free(w0);
    nn_tensor_free(x), nn_tensor_free(yf), nn_tensor_free(y0),
        nn_tensor_free(yq);
    nn_module_free(net);
}

/* Conv2d (stride 2, padding 1, 3x2 window) -> ReLU -> MaxPool2d(2) ->
 * Conv2d: per-image activations against the dequantized reference; the ReLU
 * and the pool are fused into the first int8 convolution. */
static void test_conv_dynamic(void **state) {
    (void)state;
    nn_generator_seed(NULL, 11);
    nn_module *net = nn_sequential_new();
    nn_sequential_append(net, nn_conv2d_new_ex(3, 17, 3, 2, 2, 1, 1, 1, 1, 1, 1, true));
    nn_sequential_append(net, nn_relu_new());
    nn_sequential_append(net, nn_max_pool2d_new(2, 2, 0));
    nn_sequential_append(net, nn_conv2d_new(17, 4, 1, 1, 0, true));
    const int64_t xs[4] = {2, 3, 9, 7};
    nn_tensor *x = rand_tensor(xs, 4, 5, -1.0f, 3.0f);
    nn_tensor *yf = nn_module_forward(net, x);
    assert_int_equal(nn_quantize_dynamic(net, NULL, NULL), NN_OK);
    nn_module *q0 = nn_sequential_get(net, 0);
    assert_string_equal(nn_module_type_name(q0), "QuantizedConv2d");
    assert_string_equal(nn_module_type_name(nn_sequential_get(net, 1)), "Identity");
    assert_string_equal(nn_module_type_name(nn_sequential_get(net, 2)), "Identity");
    nn_tensor *y0 = nn_module_forward(q0, x);
    const int64_t *ys = nn_tensor_shape(y0);
    const int64_t oh = 5, ow = 8, c = 3, h = 9, w = 7, kh = 3, kw = 2, k = c * kh * kw;
    assert_int_equal(ys[2], oh / 2);
    assert_int_equal(ys[3], ow / 2);
    double *wq = dequant(q0, 17, k), *xq = malloc(sizeof(double) * (size_t)(c * h * w));
    double *want = malloc(sizeof(double) * (size_t)(2 * 17 * oh * ow));
    const float *X = nn_tensor_data(x), *B = nn_tensor_data(nn_module_buffer(q0, 2, NULL));
    for (int b = 0; b < 2; b++) {
        fake_quant(X + b * c * h * w, c * h * w, 0, 0, xq);
        for (int o = 0; o < 17; o++)
            for (int64_t oy = 0; oy < oh; oy++)
                for (int64_t ox = 0; ox < ow; ox++) {
                    double s = B[o];
                    for (int ch = 0; ch < c; ch++)
                        for (int i = 0; i < kh; i++)
                            for (int j = 0; j < kw; j++) {
                                int64_t yy = oy * 2 - 1 + i, xx = ox - 1 + j;
                                if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                                s += wq[o * k + (i * kw + j) * c + ch] * xq[(ch * h + yy) * w + xx];
                            }
                    want[((b * 17 + o) * oh + oy) * ow + ox] = s > 0 ? s : 0; /* fused ReLU */
                }
    }
    /* the fused 2x2 max pool */
    double *pooled = malloc(sizeof(double) * (size_t)(2 * 17 * (oh / 2) * (ow / 2)));
    for (int bo = 0; bo < 2 * 17; bo++)
        for (int64_t py = 0; py < oh / 2; py++)
            for (int64_t px = 0; px < ow / 2; px++) {
                const double *p0 = want + (bo * oh + 2 * py) * ow + 2 * px;
                pooled[(bo * (oh / 2) + py) * (ow / 2) + px] =
                    fmax(fmax(p0[0], p0[1]), fmax(p0[ow], p0[ow + 1]));
            }
    expect_close(nn_tensor_data(y0), pooled, 2 * 17 * (oh / 2) * (ow / 2), 2e-6,
                 "QuantizedConv2d (+ReLU+pool) vs dequantized");
    free(pooled);
    nn_tensor *yq = nn_module_forward(net, x);
    const int64_t n = nn_tensor_numel(yq);
    double *wf = malloc(sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < n; i++) wf[i] = ((float *)nn_tensor_data(yf))[i];
    expect_close(nn_tensor_data(yq), wf, n, 0.04, "int8 conv model vs f32");
    free(wq), free(xq), free(want), free(wf);
    nn_tensor_free(x), nn_tensor_free(yf), nn_tensor_free(y0), nn_tensor_free(yq);
    nn_module_free(net);
}

/* A separable 4-class problem in 16-D, an MLP trained on it, then both
 * quantization modes: accuracy within one point of f32; static parameters
 * equal the rule applied to the calibration range. */
/* argmax over classes of the model's output (a new i64 tensor). */
static nn_tensor *predict_class(nn_module *m, nn_model *model, nn_tensor *x) {
    nn_scope *s = nn_scope_begin();
    nn_tensor *p = nn_argmax(m ? nn_module_forward(m, x) : nn_model_predict(model, x), 1, false);
    nn_tensor_retain(p);
    nn_scope_end(s);
    return p;
}

static void test_trained_accuracy_and_static(void **state) {
    (void)state;
    nn_generator_seed(NULL, 1);
    const int64_t n = 512, d = 16;
    const int64_t xs[2] = {n, d};
    nn_tensor *x = rand_tensor(xs, 2, 9, -1.0f, 1.0f);
    nn_tensor *y = nn_tensor_zeros(NN_DTYPE_I64, &n, 1);
    float *X = nn_tensor_data(x);
    int64_t *Y = nn_tensor_data(y);
    for (int64_t i = 0; i < n; i++) { /* class = quadrant of (x0 + x1, x2 - x3) */
        float a = X[i * d] + X[i * d + 1], b = X[i * d + 2] - X[i * d + 3];
        Y[i] = (a > 0) * 2 + (b > 0);
    }
    nn_module *net = nn_sequential_new();
    nn_sequential_append(net, nn_linear_new(d, 32, true));
    nn_sequential_append(net, nn_relu_new());
    nn_sequential_append(net, nn_linear_new(32, 4, true));
    nn_tensor *params[8];
    int64_t np = nn_module_num_parameters(net);
    for (int64_t i = 0; i < np; i++) params[i] = nn_module_parameter(net, i, NULL);
    nn_optim *opt = nn_adam(params, np, 0.02);
    for (int step = 0; step < 150; step++) {
        nn_scope *s = nn_scope_begin();
        nn_optim_zero_grad(opt);
        nn_backward(nn_cross_entropy(nn_module_forward(net, x), y));
        nn_optim_step(opt);
        nn_scope_end(s);
    }
    nn_optim_free(opt);
    nn_module_train(net, false);
    nn_set_grad_enabled(false);
    int64_t ok_f = 0, ok_d = 0, ok_s = 0;
    nn_tensor *pf = predict_class(net, NULL, x);
    for (int64_t i = 0; i < n; i++) ok_f += ((int64_t *)nn_tensor_data(pf))[i] == Y[i];
    assert_true(ok_f > n * 9 / 10); /* the float model learned it */

    size_t size;
    nn_model *copy = save_load(net, &size);

    assert_int_equal(nn_quantize_dynamic(net, NULL, NULL), NN_OK);
    nn_tensor *pd = predict_class(net, NULL, x);
    for (int64_t i = 0; i < n; i++) ok_d += ((int64_t *)nn_tensor_data(pd))[i] == Y[i];

    nn_module *net2 = nn_model_module(copy);
    nn_dataset *ds = nn_dataset_from_tensors(x, y);
    nn_loader *ld = nn_loader_new(ds, 128, false, 0);
    char *report = NULL;
    assert_int_equal(nn_quantize_static(net2, ld, 2, &report), NN_OK);
    assert_non_null(strstr(report, "static"));
    assert_non_null(strstr(report, "argmax agrees"));
    nn_free(report);
    /* layer 0's static range: the first two batches (rows 0..255) */
    float mn = INFINITY, mx = -INFINITY, s;
    int32_t zp;
    for (int64_t i = 0; i < 256 * d; i++) mn = fminf(mn, X[i]), mx = fmaxf(mx, X[i]);
    nn__q_act_params(mn, mx, &s, &zp);
    nn_module *q0 = nn_sequential_get(net2, 0);
    const char *key;
    double v;
    assert_int_equal(nn__module_config_get(q0, 4, &key, &v), NN_OK);
    assert_string_equal(key, "act_scale");
    assert_true(v == (double)s);
    assert_int_equal(nn__module_config_get(q0, 5, &key, &v), NN_OK);
    assert_true(v == zp);
    nn_tensor *ps = predict_class(NULL, copy, x);
    for (int64_t i = 0; i < n; i++) ok_s += ((int64_t *)nn_tensor_data(ps))[i] == Y[i];
    print_message("accuracy f32 %.2f%%, int8 dynamic %.2f%%, static %.2f%%\n", 100.0 * ok_f / n,
                  100.0 * ok_d / n, 100.0 * ok_s / n);
    assert_true(llabs(ok_d - ok_f) <= n / 100);
    assert_true(llabs(ok_s - ok_f) <= n / 100);
    nn_set_grad_enabled(true);
    nn_loader_free(ld), nn_dataset_free(ds), nn_model_free(copy);
    nn_tensor_free(x), nn_tensor_free(y), nn_tensor_free(pf), nn_tensor_free(pd),
        nn_tensor_free(ps);
    nn_module_free(net);
}

/* Save and load a quantized model: same kinds, bit-identical outputs, the
 * int8 weights stored as one byte each. */
static void test_round_trip(void **state) {
    (void)state;
    nn_generator_seed(NULL, 3);
    nn_module *net = nn_sequential_new();
    nn_sequential_append(net, nn_conv2d_new(2, 6, 3, 1, 1, true));
    nn_sequential_append(net, nn_relu_new());
    nn_sequential_append(net, nn_flatten_new(1, -1));
    nn_sequential_append(net, nn_linear_new(6 * 5 * 5, 300, true));
    const int64_t xs[4] = {3, 2, 5, 5};
    nn_tensor *x = rand_tensor(xs, 4, 8, -1.0f, 1.0f);
    void *f32file;
    size_t f32size, size;
    assert_int_equal(nn_model_save_buffer(net, NULL, NULL, &f32file, &f32size), NN_OK);
    assert_int_equal(nn_quantize_dynamic(net, NULL, NULL), NN_OK);
    nn_tensor *y = nn_module_forward(net, x);
    nn_model *m = save_load(net, &size);
    print_message("f32 file %zu bytes, int8 file %zu bytes\n", f32size, size);
    assert_true(size * 3 < f32size); /* 1 byte per weight instead of 4 */
    assert_string_equal(nn_module_type_name(nn_sequential_get(nn_model_module(m), 3)),
                        "QuantizedLinear");
    nn_tensor *y2 = nn_model_predict(m, x);
    assert_memory_equal(nn_tensor_data(y), nn_tensor_data(y2), sizeof(float) * 3 * 300);
    nn_free(f32file);
    nn_model_free(m);
    nn_tensor_free(x), nn_tensor_free(y), nn_tensor_free(y2);
    nn_module_free(net);
}

/* A 3x3 convolution (padding 1, bias) + ReLU + 2x2 max pool on net: the
 * triple quantization fuses. */
static void add_conv_relu_pool(nn_module *net, int64_t cin, int64_t cout) {
    nn_sequential_append(net, nn_conv2d_new(cin, cout, 3, 1, 1, true));
    nn_sequential_append(net, nn_relu_new());
    nn_sequential_append(net, nn_max_pool2d_new(2, 2, 0));
}

/* Reduced-range (7-bit) weights: quantization under each tier picks the
 * tier's preference (weight_bits 7 with weights in [-63, 63], or 8), and a
 * model of either kind gives the same bits on every tier, also after a
 * weight byte out of the 7-bit range is written into it (the clamp every
 * tier applies, backend/int8.h). */
static void test_reduced_range(void **state) {
    (void)state;
    const int64_t xs[4] = {3, 1, 9, 7};
    nn_tensor *x = rand_tensor(xs, 4, 21, -1.0f, 2.0f);
    for (int qt = NN_TIER_REF; qt < NN_TIER_COUNT; qt++) {
        if (!nn__backend_force_tier(qt)) continue;
        nn_generator_seed(NULL, 5);
        nn_module *net = nn_sequential_new();
        add_conv_relu_pool(net, 1, 20);
        nn_sequential_append(net, nn_conv2d_new(20, 17, 3, 1, 1, true));
        nn_sequential_append(net, nn_flatten_new(1, -1));
        nn_sequential_append(net, nn_linear_new(17 * 4 * 3, 5, true));
        assert_int_equal(nn_quantize_dynamic(net, NULL, NULL), NN_OK);
        const bool w7 = nn__kernels()->int8.weight_bits() == 7;
        const int idx[3] = {0, 3, 5};
        for (int l = 0; l < 3; l++) {
            nn_module *q = nn_sequential_get(net, idx[l]);
            const bool lin = !strcmp(nn_module_type_name(q), "QuantizedLinear");
            assert_true(q->cfg[lin ? 6 : 13] == (w7 ? 7 : 8));
            nn_tensor *w = nn_module_buffer(q, 0, NULL);
            const int8_t *b = nn_tensor_data(w);
            int amax = 0;
            for (int64_t i = 0; i < nn_tensor_numel(w); i++) amax = abs(b[i]) > amax ? abs(b[i]) : amax;
            assert_true(amax == (w7 ? 63 : 127)); /* each row's largest weight hits the bound */
        }
        for (int hostile = 0; hostile < 2; hostile++) {
            if (hostile) { /* bytes past the 7-bit range in every layer */
                for (int l = 0; l < 3; l++) {
                    int8_t *b = nn_tensor_data(nn_module_buffer(nn_sequential_get(net, idx[l]), 0, NULL));
                    b[0] = 127, b[5] = -128, b[6] = 100;
                }
            }
            nn__backend_force_tier(NN_TIER_REF);
            nn_tensor *want = nn_module_forward(net, x);
            assert_non_null(want);
            for (int t = NN_TIER_REF + 1; t < NN_TIER_COUNT; t++) {
                if (!nn__backend_force_tier(t)) continue;
                nn_tensor *got = nn_module_forward(net, x);
                assert_non_null(got);
                assert_memory_equal(nn_tensor_data(got), nn_tensor_data(want),
                                    sizeof(float) * (size_t)nn_tensor_numel(want));
                nn_tensor_free(got);
            }
            /* a model file keeps weight_bits and the same outputs */
            size_t size;
            nn_model *md = save_load(net, &size);
            nn_module *lq = nn_sequential_get(nn_model_module(md), 5);
            assert_true(lq->cfg[6] == (w7 ? 7 : 8));
            nn_tensor *y2 = nn_model_predict(md, x);
            assert_non_null(y2);
            assert_memory_equal(nn_tensor_data(y2), nn_tensor_data(want),
                                sizeof(float) * (size_t)nn_tensor_numel(want));
            nn_tensor_free(y2);
            nn_model_free(md);
            nn_tensor_free(want);
        }
        nn_module_free(net);
    }
    nn__backend_force_tier(-1);
    nn_tensor_free(x);
}

/* Pooled 3x3 stride-1 QuantizedConv2d layers, which tiers with an integer
 * Winograd (backend/int8.h, wino_*) run through it: every tier's floats
 * equal the reference tier's (im2row + GEMM), bit for bit, with the model
 * quantized under each tier (7-bit weights where the tier prefers them, else
 * full range), dynamic and static activations (zero points not 0: inputs
 * with negatives), with and without the ReLU, odd channel counts and planes,
 * padding 1 and 0, and weight bytes past the 7-bit range written in (the
 * clamp every tier applies). */
static void test_wino_conv(void **state) {
    (void)state;
    static const int64_t cfgs[][6] = {/* c, n, h, w, pad, relu */
                                      {32, 64, 14, 14, 1, 1}, {5, 17, 9, 11, 1, 0},
                                      {7, 33, 7, 10, 0, 1},   {16, 8, 5, 5, 1, 0}};
    const nn_kernels *a2 = nn__tier_kernels(NN_TIER_AVX2);
    if (a2) assert_true(a2->int8.wino_takes(32, 64)); /* the AVX2 tier runs these */
    for (int qt = NN_TIER_REF; qt < NN_TIER_COUNT; qt++) {
        if (!nn__backend_force_tier(qt)) continue;
        for (size_t f = 0; f < sizeof cfgs / sizeof cfgs[0]; f++)
            for (int stat = 0; stat < 2; stat++) {
                const int64_t c = cfgs[f][0], n = cfgs[f][1];
                const int64_t xs[4] = {3, c, cfgs[f][2], cfgs[f][3]}, ls[1] = {3};
                nn__backend_force_tier(qt);
                nn_tensor *x = rand_tensor(xs, 4, 40 + f, -1.0f, 2.0f);
                nn_generator_seed(NULL, 11 + f);
                nn_module *net = nn_sequential_new();
                nn_sequential_append(net, nn_conv2d_new(c, n, 3, 1, cfgs[f][4], true));
                nn_sequential_append(net, nn_relu_new()); /* the pool fuses after a ReLU */
                nn_sequential_append(net, nn_max_pool2d_new(2, 2, 0));
                if (stat) {
                    nn_tensor *lab = nn_tensor_zeros(NN_DTYPE_I64, ls, 1);
                    nn_dataset *ds = nn_dataset_from_tensors(x, lab);
                    nn_loader *ld = nn_loader_new(ds, 3, false, 0);
                    assert_int_equal(nn_quantize_static(net, ld, 1, NULL), NN_OK);
                    nn_loader_free(ld), nn_dataset_free(ds), nn_tensor_free(lab);
                } else {
                    assert_int_equal(nn_quantize_dynamic(net, NULL, NULL), NN_OK);
                }
                nn_module *q = nn_sequential_get(net, 0);
                assert_string_equal(nn_module_type_name(q), "QuantizedConv2d");
                assert_true(q->cfg[12] == 1 && q->cfg[9] == 1); /* the ReLU and pool fused */
                q->cfg[9] = (double)cfgs[f][5]; /* and the epilogue without a ReLU */
                for (int hostile = 0; hostile < 2; hostile++) {
                    if (hostile) {
                        int8_t *b = nn_tensor_data(nn_module_buffer(q, 0, NULL));
                        b[0] = 127, b[5] = -128, b[6] = 100, b[70] = -100;
                    }
                    nn__backend_force_tier(NN_TIER_REF);
                    nn_tensor *want = nn_module_forward(net, x);
                    assert_non_null(want);
                    for (int t = NN_TIER_REF + 1; t < NN_TIER_COUNT; t++) {
                        if (!nn__backend_force_tier(t)) continue;
                        nn_tensor *got = nn_module_forward(net, x);
                        assert_non_null(got);
                        if (memcmp(nn_tensor_data(got), nn_tensor_data(want),
                                   sizeof(float) * (size_t)nn_tensor_numel(want)))
                            fail_msg("tier %d (quantized under %d) c %lld n %lld %s hostile %d: "
                                     "differs from the reference tier",
                                     t, qt, (long long)c, (long long)n,
                                     stat ? "static" : "dynamic", hostile);
                        nn_tensor_free(got);
                    }
                    nn_tensor_free(want);
                }
                nn_module_free(net);
                nn_tensor_free(x);
            }
    }
    nn__backend_force_tier(-1);
}

static void test_bad_input(void **state) {
    (void)state;
    char *report = (char *)1;
    assert_int_equal(nn_quantize_dynamic(NULL, NULL, &report), NN_ERR_NULL);
    assert_null(report);
    nn_module *lin = nn_linear_new(3, 2, true);
    assert_int_equal(nn_quantize_dynamic(lin, NULL, NULL), NN_ERR_INVALID);
    assert_non_null(strstr(nn_last_error(), "wrap it in a Sequential"));
    nn_module *seq = nn_sequential_new();
    nn_sequential_append(seq, nn_relu_new());
    assert_int_equal(nn_quantize_dynamic(seq, NULL, NULL), NN_ERR_INVALID);
    assert_non_null(strstr(nn_last_error(), "no Linear or Conv2d"));
    nn_sequential_append(seq, lin);
    assert_int_equal(nn_quantize_dynamic(seq, NULL, &report), NN_ERR_INVALID); /* no calib */
    assert_string_equal(nn_module_type_name(nn_sequential_get(seq, 1)), "Linear"); /* untouched */
    const int64_t s2[2] = {2, 3};
    nn_tensor *xi = nn_tensor_zeros(NN_DTYPE_I64, s2, 2);
    assert_int_equal(nn_quantize_dynamic(seq, xi, &report), NN_ERR_DTYPE);
    nn__call_ok(); /* the error above is no longer pending: NULL is reported as itself */
    assert_int_equal(nn_quantize_static(seq, NULL, 1, NULL), NN_ERR_NULL);
    nn_tensor *x = nn_tensor_zeros(NN_DTYPE_F32, s2, 2), *y = nn_tensor_zeros(NN_DTYPE_I64, s2, 1);
    nn_dataset *ds = nn_dataset_from_tensors(x, y);
    nn_loader *ld = nn_loader_new(ds, 2, false, 0);
    assert_int_equal(nn_quantize_static(seq, ld, 0, NULL), NN_ERR_INVALID);
    assert_string_equal(nn_module_type_name(nn_sequential_get(seq, 1)), "Linear");
    /* wrong input to a quantized layer */
    assert_int_equal(nn_quantize_static(seq, ld, 1, NULL), NN_OK);
    nn_module *q = nn_sequential_get(seq, 1);
    assert_string_equal(nn_module_type_name(q), "QuantizedLinear");
    const int64_t s3[2] = {2, 4};
    nn_tensor *bad = nn_tensor_zeros(NN_DTYPE_F32, s3, 2);
    assert_null(nn_module_forward(q, bad));
    assert_int_equal(nn_last_status(), NN_ERR_SHAPE);
    assert_null(nn_module_forward(q, xi));
    assert_int_equal(nn_last_status(), NN_ERR_DTYPE);
    /* hyperparameters as a file would give them */
    const char *keys[] = {"in_features", "out_features", "bias", "relu", "act_scale",
                          "act_zero_point"};
    double ok[] = {4, 3, 1, 0, 0.5, 10};
    nn_module *m = nn__module_create("QuantizedLinear", keys, ok, 6);
    assert_non_null(m);
    nn_module_free(m);
    double bad_zp[] = {4, 3, 1, 0, 0.5, 300}, bad_scale[] = {4, 3, 1, 0, -1, 0},
           too_deep[] = {70000, 3, 1, 0, 0, 0}, bad_relu[] = {4, 3, 1, 2, 0, 0};
    assert_null(nn__module_create("QuantizedLinear", keys, bad_zp, 6));
    assert_int_equal(nn_last_status(), NN_ERR_FORMAT); /* a malformed file */
    assert_null(nn__module_create("QuantizedLinear", keys, bad_scale, 6));
    assert_int_equal(nn_last_status(), NN_ERR_FORMAT); /* a malformed file */
    assert_null(nn__module_create("QuantizedLinear", keys, too_deep, 6));
    assert_int_equal(nn_last_status(), NN_ERR_FORMAT); /* a malformed file */
    assert_null(nn__module_create("QuantizedLinear", keys, bad_relu, 6));
    assert_int_equal(nn_last_status(), NN_ERR_FORMAT); /* a malformed file */
    /* weight_bits: 8 (full range) or 7 (reduced range, backend/int8.h) */
    const char *wkeys[] = {"in_features", "out_features", "weight_bits"};
    double w7[] = {4, 3, 7}, w6[] = {4, 3, 6}, w9[] = {4, 3, 9}, wfrac[] = {4, 3, 7.5};
    m = nn__module_create("QuantizedLinear", wkeys, w7, 3);
    assert_non_null(m);
    nn_module_free(m);
    assert_null(nn__module_create("QuantizedLinear", wkeys, w6, 3));
    assert_int_equal(nn_last_status(), NN_ERR_FORMAT);
    assert_null(nn__module_create("QuantizedLinear", wkeys, w9, 3));
    assert_int_equal(nn_last_status(), NN_ERR_FORMAT);
    assert_null(nn__module_create("QuantizedLinear", wkeys, wfrac, 3));
    assert_int_equal(nn_last_status(), NN_ERR_FORMAT);
    const char *cwkeys[] = {"in_channels", "out_channels", "kernel_h", "kernel_w", "weight_bits"};
    double cw0[] = {1, 2, 3, 3, 0};
    assert_null(nn__module_create("QuantizedConv2d", cwkeys, cw0, 5));
    assert_int_equal(nn_last_status(), NN_ERR_FORMAT);
    const char *ckeys[] = {"in_channels", "out_channels", "kernel_h", "kernel_w"};
    double deep_conv[] = {4096, 2, 5, 5};
    assert_null(nn__module_create("QuantizedConv2d", ckeys, deep_conv, 4));
    assert_int_equal(nn_last_status(), NN_ERR_LIMIT);
    nn_loader_free(ld), nn_dataset_free(ds);
    nn_tensor_free(x), nn_tensor_free(y), nn_tensor_free(xi), nn_tensor_free(bad);
    nn_module_free(seq);
}


/* ------------------------------------- MultiheadAttention in-projections */

/* A child's int8 weights decoded by the documented layout (FORMAT.md 6.1:
 * byte ((p*kp/4 + g)*16 + c)*4 + r of `weight` holds q[p*16 + c][g*4 + r])
 * times weight_scale: w [n, k] in double. */
static void decode_packed(nn_module *q, int64_t n, int64_t k, double *w) {
    const int8_t *b = nn_tensor_data(nn_module_get_buffer(q, "weight"));
    const float *sc = nn_tensor_data(nn_module_get_buffer(q, "weight_scale"));
    const int64_t kp = (k + 3) / 4 * 4;
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < k; i++)
            w[j * k + i] = (double)sc[j] *
                           b[((j / 16 * (kp / 4) + i / 4) * 16 + j % 16) * 4 + i % 4];
}

/* Values on the grid of 1/8 in [-16, 15.875], each row of `row` values
 * holding both ends: a row's dynamic u8 scale is then exactly 1/8 and its
 * values quantize exactly (the int8 product equals the dequantized one). */
static nn_tensor *grid_input(const int64_t *shape, int nd, uint64_t seed, int64_t row) {
    nn_tensor *t = rand_tensor(shape, nd, seed, 0.0f, 1.0f);
    float *p = nn_tensor_data(t);
    for (int64_t i = 0; i < nn_tensor_numel(t); i++)
        p[i] = i % row == 0 ? -16.0f
               : i % row == 1 ? 15.875f
                              : (float)((int)(p[i] * 255.0f) - 128) / 8.0f;
    return t;
}

static float *data_copy(nn_tensor *t) {
    nn_tensor *c = nn_tensor_contiguous(t);
    size_t n = (size_t)nn_tensor_numel(c);
    float *d = malloc(n * sizeof(float));
    memcpy(d, nn_tensor_data(c), n * sizeof(float));
    return d;
}

/* Fill the f32 parameter `name` of m from a double array. */
static void set_param(nn_module *m, const char *name, const double *v) {
    nn_tensor *t = nn_module_get_parameter(m, name);
    assert_non_null(t);
    float *p = nn_tensor_data(t);
    for (int64_t i = 0; i < nn_tensor_numel(t); i++) p[i] = (float)v[i];
}

/* The int8 MHA (qm, quantized from the float MHA fm, whose in-projection
 * rows were w[3] / biases b[3]) against:
 *  - its float source, weight by weight: q_proj/k_proj/v_proj hold rows
 *    0..E, E..2E, 2E..3E of the in-projection within half a quantization
 *    step (scale/2) and the biases exactly;
 *  - a float MHA ref built from the dequantized weights (in-projections and
 *    out_proj): on grid inputs the in-projections are exact, so the outputs
 *    differ only by the rounding of out_proj's input, at most half its row
 *    scale per value: |dy_j| <= sum_i |Wo[j,i]| * s/2 with s <= 2 max|v|/255
 *    (attention rows are convex combinations of v's rows); `vmax` bounds
 *    |v|. Returns the bound used. */
static double check_mha_int8(nn_module *qm, const double *const w[3], const double *const b[3],
                             const int64_t in[3], int64_t e, bool bias, nn_module *ref,
                             double vmax) {
    static const char *const names[3] = {"q_proj", "k_proj", "v_proj"};
    double *cat = malloc(sizeof(double) * (size_t)(3 * e * (in[0] + in[1] + in[2])));
    double *bcat = malloc(sizeof(double) * (size_t)(3 * e));
    const bool packed = in[1] == e && in[2] == e;
    for (int p = 0; p < 3; p++) {
        nn_module *c = nn_module_get_module(qm, names[p]);
        assert_non_null(c);
        assert_string_equal(nn_module_type_name(c), "QuantizedLinear");
        double *d = malloc(sizeof(double) * (size_t)(e * in[p]));
        decode_packed(c, e, in[p], d);
        const float *sc = nn_tensor_data(nn_module_get_buffer(c, "weight_scale"));
        for (int64_t j = 0; j < e; j++)
            for (int64_t i = 0; i < in[p]; i++)
                if (!(fabs(d[j * in[p] + i] - w[p][j * in[p] + i]) <= sc[j] * 0.5000001))
                    fail_msg("%s[%lld, %lld] = %.8g, float %.8g, scale %.4g", names[p],
                             (long long)j, (long long)i, d[j * in[p] + i], w[p][j * in[p] + i],
                             (double)sc[j]);
        if (bias) {
            const float *qb = nn_tensor_data(nn_module_get_buffer(c, "bias"));
            for (int64_t j = 0; j < e; j++) assert_true(qb[j] == (float)b[p][j]);
            for (int64_t j = 0; j < e; j++) bcat[p * e + j] = b[p][j];
        } else {
            assert_null(nn_module_get_buffer(c, "bias"));
            nn_clear_error();
        }
        if (packed) {
            memcpy(cat + p * e * e, d, sizeof(double) * (size_t)(e * e));
        } else {
            static const char *const pn[3] = {"q_proj_weight", "k_proj_weight", "v_proj_weight"};
            set_param(ref, pn[p], d);
        }
        free(d);
    }
    if (packed) set_param(ref, "in_proj_weight", cat);
    if (bias) set_param(ref, "in_proj_bias", bcat);
    nn_module *qo = nn_module_get_module(qm, "out_proj");
    assert_string_equal(nn_module_type_name(qo), "QuantizedLinear");
    double *wo = malloc(sizeof(double) * (size_t)(e * e));
    decode_packed(qo, e, e, wo);
    set_param(ref, "out_proj.weight", wo);
    if (bias) {
        const float *qb = nn_tensor_data(nn_module_get_buffer(qo, "bias"));
        for (int64_t j = 0; j < e; j++) bcat[j] = qb[j];
        set_param(ref, "out_proj.bias", bcat);
    }
    double bound = 0;
    for (int64_t j = 0; j < e; j++) {
        double r = 0;
        for (int64_t i = 0; i < e; i++) r += fabs(wo[j * e + i]);
        bound = fmax(bound, r * (2.0 * vmax / 255.0) / 2.0);
    }
    free(wo), free(cat), free(bcat);
    return bound;
}

static void expect_within(const float *got, const float *want, int64_t n, double bound,
                          const char *what) {
    double mx = 0;
    for (int64_t i = 0; i < n; i++) mx = fmax(mx, fabs((double)want[i]));
    for (int64_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= bound + 1e-5 * mx))
            fail_msg("%s: element %lld is %.8g, reference %.8g (bound %.4g, max %.4g)", what,
                     (long long)i, (double)got[i], (double)want[i], bound, mx);
}

/* max |v| over the value projection of x (rows of k inputs) with weights
 * w [e, k] and bias b (NULL: none), in double. */
static double vmax_of(const float *x, int64_t rows, int64_t k, const double *w, const double *b,
                      int64_t e) {
    double mx = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < e; j++) {
            double s = b ? b[j] : 0;
            for (int64_t i = 0; i < k; i++) s += (double)x[r * k + i] * w[j * k + i];
            mx = fmax(mx, fabs(s));
        }
    return mx;
}

static double *param_copy(nn_module *m, const char *name, int64_t off, int64_t n) {
    const float *p = nn_tensor_data(nn_module_get_parameter(m, name));
    double *d = malloc(sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < n; i++) d[i] = p[off + i];
    return d;
}

/* Self-attention with the packed in_proj_weight (batch_first, biases): the
 * in-projections become int8 children, the float parameters go; against
 * the weight-by-weight and dequantized references above, against the float
 * module (loose: weight and activation rounding through softmax), the
 * report's lines, and a model-file round trip (bit-identical). */
static void test_mha_packed_self(void **state) {
    (void)state;
    nn_scope *sc = nn_scope_begin();
    nn_generator_seed(NULL, 21);
    const int64_t E = 24, H = 4, xs[3] = {2, 5, 24};
    nn_module *m = nn_multihead_attention_new(E, H, 0.0, true, 0, 0, true);
    assert_int_equal(nn_module_train(m, false), NN_OK);
    /* nonzero biases, so that their slices are checked */
    nn_tensor *bt = rand_tensor((int64_t[]){3 * E}, 1, 4, -0.5f, 0.5f);
    memcpy(nn_tensor_data(nn_module_get_parameter(m, "in_proj_bias")), nn_tensor_data(bt),
           sizeof(float) * (size_t)(3 * E));
    memcpy(nn_tensor_data(nn_module_get_parameter(m, "out_proj.bias")), nn_tensor_data(bt),
           sizeof(float) * (size_t)E);
    nn_tensor *x = grid_input(xs, 3, 5, E);
    /* against the float module: typical inputs (the grid's +-16 saturate
     * the softmax, where a weight's rounding moves a score by whole units) */
    nn_tensor *x2 = rand_tensor(xs, 3, 6, -1.0f, 1.0f);
    float *yf = data_copy(nn_module_forward(m, x2));
    double *w[3], *b[3];
    for (int p = 0; p < 3; p++) {
        w[p] = param_copy(m, "in_proj_weight", p * E * E, E * E);
        b[p] = param_copy(m, "in_proj_bias", p * E, E);
    }
    char *report = NULL;
    assert_int_equal(nn_quantize_dynamic(m, x, &report), NN_OK);
    assert_non_null(report);
    const char *rows[4] = {"\nq_proj ", "\nk_proj ", "\nv_proj ", "\nout_proj "};
    for (int i = 0; i < 4; i++)
        if (!strstr(report, rows[i])) fail_msg("report has no line %s:\n%s", rows[i] + 1, report);
    nn_free(report);
    assert_null(nn_module_get_parameter(m, "in_proj_weight"));
    assert_null(nn_module_get_parameter(m, "in_proj_bias"));
    nn_clear_error();
    assert_int_equal(nn_module_num_parameters(m), 0);
    float *yq = data_copy(nn_module_forward(m, x)), *yq2 = data_copy(nn_module_forward(m, x2));

    nn_module *ref = nn_multihead_attention_new(E, H, 0.0, true, 0, 0, true);
    assert_int_equal(nn_module_train(ref, false), NN_OK);
    const int64_t in[3] = {E, E, E};
    const double vmax = vmax_of(nn_tensor_data(x), 10, E, w[2], b[2], E) * 1.01;
    double bound = check_mha_int8(m, (const double *const *)w, (const double *const *)b, in, E,
                                  true, ref, vmax);
    float *yr = data_copy(nn_module_forward(ref, x));
    expect_within(yq, yr, 2 * 5 * E, bound, "int8 MHA vs dequantized float MHA");
    double d = 0, mx = 0, dr = 0;
    for (int i = 0; i < 2 * 5 * E; i++) {
        d = fmax(d, fabs((double)yq2[i] - yf[i]));
        mx = fmax(mx, fabs((double)yf[i]));
        dr = fmax(dr, fabs((double)yq[i] - yr[i]));
    }
    print_message("packed MHA: int8 vs f32 max|dy| %.4g of max|y| %.4g; vs dequantized %.4g "
                  "(bound %.4g)\n", d, mx, dr, bound);
    assert_true(d > 0 && d <= 0.03 * mx);

    /* model file: quantized = 1, no float in-projection, same outputs */
    size_t len;
    nn_model *back = save_load(m, &len);
    nn_module *bm = nn_model_module(back);
    assert_string_equal(nn_module_type_name(nn_module_get_module(bm, "v_proj")),
                        "QuantizedLinear");
    float *y2 = data_copy(nn_model_predict(back, x));
    assert_memory_equal(y2, yq, sizeof(float) * (size_t)(2 * 5 * E));
    nn_model_free(back);
    for (int p = 0; p < 3; p++) free(w[p]), free(b[p]);
    free(yf), free(yq), free(yq2), free(yr), free(y2);
    nn_module_free(m), nn_module_free(ref);
    nn_scope_end(sc);
}

/* Cross-attention with separate q/k/v weights (kdim 12, vdim 20, no bias,
 * [L, N, E] layout), quantized as the root module (no Sequential needed):
 * the same references on three different inputs through forward_n. */
static void test_mha_separate_cross(void **state) {
    (void)state;
    nn_scope *sc = nn_scope_begin();
    nn_generator_seed(NULL, 22);
    const int64_t E = 16, H = 2, KD = 12, VD = 20;
    nn_module *m = nn_multihead_attention_new(E, H, 0.0, false, KD, VD, false);
    assert_int_equal(nn_module_train(m, false), NN_OK);
    nn_tensor *q = grid_input((int64_t[]){3, 2, E}, 3, 6, E);
    nn_tensor *k = grid_input((int64_t[]){4, 2, KD}, 3, 7, KD);
    nn_tensor *v = grid_input((int64_t[]){4, 2, VD}, 3, 8, VD);
    nn_tensor *xs[3] = {q, k, v};
    nn_tensor *q2 = rand_tensor((int64_t[]){3, 2, E}, 3, 16, -1.0f, 1.0f);
    nn_tensor *k2 = rand_tensor((int64_t[]){4, 2, KD}, 3, 17, -1.0f, 1.0f);
    nn_tensor *v2 = rand_tensor((int64_t[]){4, 2, VD}, 3, 18, -1.0f, 1.0f);
    nn_tensor *xs2[3] = {q2, k2, v2};
    float *yf = data_copy(nn_module_forward_n(m, xs2, 3));
    static const char *const pn[3] = {"q_proj_weight", "k_proj_weight", "v_proj_weight"};
    const int64_t in[3] = {E, KD, VD};
    double *w[3], *b[3] = {NULL, NULL, NULL};
    for (int p = 0; p < 3; p++) w[p] = param_copy(m, pn[p], 0, E * in[p]);
    assert_int_equal(nn_quantize_dynamic(m, NULL, NULL), NN_OK);
    assert_null(nn_module_get_parameter(m, "k_proj_weight"));
    nn_clear_error();
    float *yq = data_copy(nn_module_forward_n(m, xs, 3));
    float *yq2 = data_copy(nn_module_forward_n(m, xs2, 3));
    nn_module *ref = nn_multihead_attention_new(E, H, 0.0, false, KD, VD, false);
    assert_int_equal(nn_module_train(ref, false), NN_OK);
    const double vmax = vmax_of(nn_tensor_data(v), 8, VD, w[2], NULL, E) * 1.01;
    double bound = check_mha_int8(m, (const double *const *)w, (const double *const *)b, in, E,
                                  false, ref, vmax);
    float *yr = data_copy(nn_module_forward_n(ref, xs, 3));
    expect_within(yq, yr, 3 * 2 * E, bound, "int8 cross MHA vs dequantized float MHA");
    double d = 0, mx = 0;
    for (int i = 0; i < 3 * 2 * E; i++) {
        d = fmax(d, fabs((double)yq2[i] - yf[i]));
        mx = fmax(mx, fabs((double)yf[i]));
    }
    assert_true(d > 0 && d <= 0.03 * mx);
    /* the explicit-weights forward runs the int8 children too */
    nn_tensor *aw = NULL;
    nn_tensor *ye = nn_multihead_attention_forward(m, q, k, v, NULL, NULL, true, true, &aw);
    assert_non_null(ye);
    assert_non_null(aw);
    float *yed = data_copy(ye);
    expect_within(yed, yq, 3 * 2 * E, 0, "need_weights path vs SDPA path");
    size_t len;
    nn_model *back = save_load(m, &len);
    float *y2 = data_copy(nn_module_forward_n(nn_model_module(back), xs, 3));
    assert_memory_equal(y2, yq, sizeof(float) * (size_t)(3 * 2 * E));
    nn_model_free(back);
    for (int p = 0; p < 3; p++) free(w[p]);
    free(yf), free(yq), free(yq2), free(yr), free(yed), free(y2);
    nn_module_free(m), nn_module_free(ref);
    nn_scope_end(sc);
}

/* A quantization that fails after the plan was made (static: the loader's
 * batches are not f32) leaves a MultiheadAttention as it was: its float
 * parameters, no q_proj/k_proj/v_proj children, bit-identical outputs. */
static void test_mha_restored_on_failure(void **state) {
    (void)state;
    nn_scope *sc = nn_scope_begin();
    nn_generator_seed(NULL, 23);
    nn_module *seq = nn_sequential_new();
    nn_module *m = nn_multihead_attention_new(8, 2, 0.0, true, 0, 0, true);
    assert_int_equal(nn_sequential_append(seq, m), NN_OK);
    assert_int_equal(nn_module_train(seq, false), NN_OK);
    const int64_t xs[3] = {2, 3, 8};
    nn_tensor *x = rand_tensor(xs, 3, 9, -1.0f, 1.0f);
    float *y0 = data_copy(nn_module_forward(seq, x));
    const int64_t np = nn_module_num_parameters(seq);
    nn_tensor *xi = nn_tensor_zeros(NN_DTYPE_I64, xs, 3), *lab = nn_tensor_zeros(NN_DTYPE_I64, xs, 1);
    nn_dataset *ds = nn_dataset_from_tensors(xi, lab);
    nn_loader *ld = nn_loader_new(ds, 2, false, 0);
    assert_int_equal(nn_quantize_static(seq, ld, 1, NULL), NN_ERR_DTYPE);
    assert_int_equal(nn_module_num_parameters(seq), np);
    assert_non_null(nn_module_get_parameter(m, "in_proj_weight"));
    assert_null(nn_module_get_module(m, "q_proj"));
    nn_clear_error();
    assert_string_equal(nn_module_type_name(nn_module_get_module(m, "out_proj")), "Linear");
    float *y1 = data_copy(nn_module_forward(seq, x));
    assert_memory_equal(y0, y1, sizeof(float) * 2 * 3 * 8);
    /* static calibration then works on f32 batches (a Sequential's MHA is
     * self-attention on one input) */
    nn_loader_free(ld), nn_dataset_free(ds);
    ds = nn_dataset_from_tensors(x, lab);
    ld = nn_loader_new(ds, 2, false, 0);
    char *report = NULL;
    assert_int_equal(nn_quantize_static(seq, ld, 1, &report), NN_OK);
    assert_non_null(strstr(report, "0.q_proj"));
    assert_non_null(strstr(report, "static"));
    nn_free(report);
    float *y2 = data_copy(nn_module_forward(seq, x));
    double d = 0, mx = 0;
    for (int i = 0; i < 2 * 3 * 8; i++) {
        d = fmax(d, fabs((double)y2[i] - y0[i]));
        mx = fmax(mx, fabs((double)y0[i]));
    }
    assert_true(d <= 0.03 * mx);
    free(y0), free(y1), free(y2);
    nn_loader_free(ld), nn_dataset_free(ds);
    nn_module_free(seq);
    nn_scope_end(sc);
}

/* Consecutive QuantizedConv2d layers of a Sequential run image by image
 * (nn__mod_fuse_qconv -> nn__qconv2d_chain): the chain's output equals the
 * layers run one after another on the whole batch, bit for bit, on every
 * tier, with dynamic and with static activations, on odd shapes (one- and
 * many-channel convolutions, pooled and not). */
static void test_conv_chain(void **state) {
    (void)state;
    const int64_t xs[4] = {3, 1, 13, 11};
    nn_tensor *x = rand_tensor(xs, 4, 31, -1.0f, 2.0f);
    const int64_t ls[1] = {3};
    nn_tensor *lab = nn_tensor_zeros(NN_DTYPE_I64, ls, 1);
    const int64_t chans[2][2] = {{16, 32}, {19, 21}};
    for (int qt = NN_TIER_REF; qt < NN_TIER_COUNT; qt++) {
        if (!nn__backend_force_tier(qt)) continue;
        for (int cfg = 0; cfg < 8; cfg++) {
            const int64_t c1 = chans[cfg & 1][0], c2 = chans[cfg & 1][1];
            const bool stat = cfg & 2, tail = cfg & 4; /* tail: Flatten + Linear fused too */
            nn_generator_seed(NULL, 7 + (uint64_t)cfg);
            nn_module *net = nn_sequential_new();
            add_conv_relu_pool(net, 1, c1);
            add_conv_relu_pool(net, c1, c2);
            nn_sequential_append(net, nn_conv2d_new(c2, 5, 1, 1, 0, true));
            nn_sequential_append(net, tail ? nn_flatten_new(1, -1) : nn_relu_new());
            nn_sequential_append(net, nn_linear_new(tail ? 5 * 3 * 2 : 2, 4, true));
            nn_sequential_append(net, nn_relu_new());
            nn_sequential_append(net, nn_linear_new(4, 3, true));
            if (stat) {
                nn_dataset *ds = nn_dataset_from_tensors(x, lab);
                nn_loader *ld = nn_loader_new(ds, 3, false, 0);
                assert_int_equal(nn_quantize_static(net, ld, 1, NULL), NN_OK);
                nn_loader_free(ld);
                nn_dataset_free(ds);
            } else {
                assert_int_equal(nn_quantize_dynamic(net, NULL, NULL), NN_OK);
            }
            /* the chain: the three convolutions and the Identities between
             * (with tail, also the Flatten and the first QuantizedLinear) */
            const int used = tail ? 9 : 7;
            nn_scope *sc = nn_scope_begin();
            nn_tensor *yc = NULL;
            assert_int_equal(nn__mod_fuse_qconv(net->children, net->nchildren, x, &yc), used);
            assert_non_null(yc);
            /* layer after layer over the whole batch */
            nn_tensor *cur = x;
            for (int i = 0; i < used; i++) cur = nn_module_forward(nn_sequential_get(net, i), cur);
            assert_int_equal(nn_tensor_ndim(cur), nn_tensor_ndim(yc));
            for (int d = 0; d < nn_tensor_ndim(yc); d++)
                assert_int_equal(nn_tensor_shape(cur)[d], nn_tensor_shape(yc)[d]);
            if (memcmp(nn_tensor_data(cur), nn_tensor_data(yc),
                       sizeof(float) * (size_t)nn_tensor_numel(yc)))
                fail_msg("tier %d, channels %lld/%lld, %s%s: chain differs from the layers", qt,
                         (long long)c1, (long long)c2, stat ? "static" : "dynamic",
                         tail ? " + linear" : "");
            /* and the whole model through Sequential's forward (with tail,
             * the ReLU after the chain's output does the non-chain half) */
            if (tail) {
                nn_tensor *yq = nn_module_forward(net, x);
                nn_tensor *ys = cur;
                for (int i = used; i < 11; i++)
                    ys = nn_module_forward(nn_sequential_get(net, i), ys);
                assert_memory_equal(nn_tensor_data(yq), nn_tensor_data(ys),
                                    sizeof(float) * (size_t)nn_tensor_numel(ys));
            }
            nn__tensor_release(yc);
            nn_scope_end(sc);
            nn_module_free(net);
        }
    }
    nn__backend_force_tier(-1);
    nn_tensor_free(lab);
    nn_tensor_free(x);
}

/* The chain on several threads gives whole images to each thread (batches
 * of two or more) or runs one image on the caller, kernels serial: either way
 * the output is the 1-thread output bit for bit, on every tier, dynamic and
 * static, with and without the fused linear layer, on odd batch sizes
 * (fewer images than threads, an odd share per thread), and the 2-thread
 * chain still equals the layers run one after another on the batch. */
static void test_chain_threads(void **state) {
    (void)state;
    const int64_t xs[4] = {7, 2, 12, 10};
    nn_tensor *x = rand_tensor(xs, 4, 41, -0.5f, 1.5f);
    const int64_t ls[1] = {7};
    nn_tensor *lab = nn_tensor_zeros(NN_DTYPE_I64, ls, 1);
    const int64_t batches[4] = {1, 2, 3, 7};
    for (int qt = NN_TIER_REF; qt < NN_TIER_COUNT; qt++) {
        if (!nn__backend_force_tier(qt)) continue;
        for (int cfg = 0; cfg < 4; cfg++) {
            const bool stat = cfg & 1, tail = cfg & 2;
            nn_generator_seed(NULL, 11 + (uint64_t)cfg);
            nn_module *net = nn_sequential_new();
            add_conv_relu_pool(net, 2, 24);
            add_conv_relu_pool(net, 24, 20);
            nn_sequential_append(net, tail ? nn_flatten_new(1, -1) : nn_relu_new());
            nn_sequential_append(net, nn_linear_new(tail ? 20 * 3 * 2 : 2, 5, true));
            if (stat) {
                nn_dataset *ds = nn_dataset_from_tensors(x, lab);
                nn_loader *ld = nn_loader_new(ds, 7, false, 0);
                assert_int_equal(nn_quantize_static(net, ld, 1, NULL), NN_OK);
                nn_loader_free(ld);
                nn_dataset_free(ds);
            } else {
                assert_int_equal(nn_quantize_dynamic(net, NULL, NULL), NN_OK);
            }
            const int used = tail ? 8 : 4;
            for (int bi = 0; bi < 4; bi++) {
                const int64_t nb = batches[bi];
                const int64_t bs[4] = {nb, xs[1], xs[2], xs[3]};
                nn_scope *sc = nn_scope_begin();
                nn_tensor *xb = nn_tensor_empty(NN_DTYPE_F32, bs, 4);
                memcpy(nn_tensor_data(xb), nn_tensor_data(x),
                       sizeof(float) * (size_t)nn_tensor_numel(xb));
                nn_tensor *y[3] = {NULL, NULL, NULL};
                for (int t = 1; t <= 3; t++) {
                    assert_int_equal(nn_set_num_threads(t), NN_OK);
                    const int64_t forks = nn__pool_forks();
                    assert_int_equal(nn__mod_fuse_qconv(net->children, net->nchildren, xb,
                                                        &y[t - 1]),
                                     used);
                    assert_non_null(y[t - 1]);
                    /* whole images: one fork and join for the call; one
                     * image: none (its kernels run serially on the caller) */
                    if (t > 1) assert_int_equal(nn__pool_forks() - forks, nb > 1 ? 1 : 0);
                }
                /* the layers one after another over the batch, 2 threads */
                assert_int_equal(nn_set_num_threads(2), NN_OK);
                nn_tensor *cur = xb;
                for (int i = 0; i < used; i++)
                    cur = nn_module_forward(nn_sequential_get(net, i), cur);
                assert_int_equal(nn_tensor_numel(cur), nn_tensor_numel(y[0]));
                const size_t bytes = sizeof(float) * (size_t)nn_tensor_numel(y[0]);
                for (int t = 1; t <= 3; t++)
                    if (memcmp(nn_tensor_data(y[0]), nn_tensor_data(y[t - 1]), bytes))
                        fail_msg("tier %d, batch %lld, %s%s: %d threads differ from 1", qt,
                                 (long long)nb, stat ? "static" : "dynamic",
                                 tail ? " + linear" : "", t);
                if (memcmp(nn_tensor_data(cur), nn_tensor_data(y[1]), bytes))
                    fail_msg("tier %d, batch %lld, %s%s: 2-thread chain differs from the layers",
                             qt, (long long)nb, stat ? "static" : "dynamic",
                             tail ? " + linear" : "");
                for (int t = 0; t < 3; t++) nn__tensor_release(y[t]);
                nn_scope_end(sc);
            }
            assert_int_equal(nn_set_num_threads(1), NN_OK);
            nn_module_free(net);
        }
    }
    nn__backend_force_tier(-1);
    nn_tensor_free(lab);
    nn_tensor_free(x);
}

/* One image on several threads runs the whole chain on the calling thread,
 * its kernels serial (splitting them measured slower than one thread): no
 * fork at all for the demo CNN's shapes at batch 1, whose kernels are large
 * enough to split when called alone, and the 1-thread bits, on every tier. */
static void test_chain_one_image_serial(void **state) {
    (void)state;
    const int64_t xs[4] = {1, 1, 28, 28};
    nn_tensor *x = rand_tensor(xs, 4, 43, -0.5f, 1.5f);
    for (int qt = NN_TIER_REF; qt < NN_TIER_COUNT; qt++) {
        if (!nn__backend_force_tier(qt)) continue;
        nn_generator_seed(NULL, 17);
        nn_module *net = nn_sequential_new();
        add_conv_relu_pool(net, 1, 32);
        add_conv_relu_pool(net, 32, 64);
        nn_sequential_append(net, nn_flatten_new(1, -1));
        nn_sequential_append(net, nn_linear_new(64 * 7 * 7, 10, true));
        assert_int_equal(nn_quantize_dynamic(net, NULL, NULL), NN_OK);
        nn_scope *sc = nn_scope_begin();
        nn_tensor *y[2] = {NULL, NULL};
        for (int t = 1; t <= 2; t++) {
            assert_int_equal(nn_set_num_threads(t), NN_OK);
            const int64_t forks = nn__pool_forks();
            assert_int_equal(nn__mod_fuse_qconv(net->children, net->nchildren, x, &y[t - 1]), 8);
            assert_non_null(y[t - 1]);
            if (t == 2) assert_int_equal(nn__pool_forks() - forks, 0);
        }
        assert_memory_equal(nn_tensor_data(y[0]), nn_tensor_data(y[1]), 10 * sizeof(float));
        nn__tensor_release(y[0]);
        nn__tensor_release(y[1]);
        nn_scope_end(sc);
        assert_int_equal(nn_set_num_threads(1), NN_OK);
        nn_module_free(net);
    }
    nn__backend_force_tier(-1);
    nn_tensor_free(x);
}

/* The chain keeps each thread's scratch between calls (grown on demand,
 * set up again on every call): a large image, a small one (the kept scratch
 * bigger than needed, stale sums and padding in it), the large one again,
 * on 1 and 2 threads and every tier, each bit for bit the layers run one
 * after another. */
static void test_chain_scratch_reuse(void **state) {
    (void)state;
    const int64_t sizes[3][2] = {{40, 36}, {8, 6}, {40, 36}};
    for (int qt = NN_TIER_REF; qt < NN_TIER_COUNT; qt++) {
        if (!nn__backend_force_tier(qt)) continue;
        nn_generator_seed(NULL, 5);
        nn_module *net = nn_sequential_new();
        add_conv_relu_pool(net, 3, 20);
        nn_sequential_append(net, nn_conv2d_new(20, 24, 3, 1, 1, true));
        nn_sequential_append(net, nn_max_pool2d_new(2, 2, 0));
        assert_int_equal(nn_quantize_dynamic(net, NULL, NULL), NN_OK);
        for (int t = 1; t <= 2; t++) {
            assert_int_equal(nn_set_num_threads(t), NN_OK);
            for (int i = 0; i < 3; i++) {
                nn_scope *sc = nn_scope_begin();
                const int64_t xs[4] = {2, 3, sizes[i][0], sizes[i][1]};
                nn_tensor *x = rand_tensor(xs, 4, 50 + (uint64_t)i, -1.0f, 1.0f);
                nn_tensor *yc = NULL;
                assert_int_equal(nn__mod_fuse_qconv(net->children, net->nchildren, x, &yc), 4);
                assert_non_null(yc);
                nn_tensor *cur = x;
                for (int l = 0; l < 4; l++) cur = nn_module_forward(nn_sequential_get(net, l), cur);
                assert_int_equal(nn_tensor_numel(cur), nn_tensor_numel(yc));
                if (memcmp(nn_tensor_data(cur), nn_tensor_data(yc),
                           sizeof(float) * (size_t)nn_tensor_numel(yc)))
                    fail_msg("tier %d, %d threads, image %lldx%lld (call %d): chain differs", qt,
                             t, (long long)sizes[i][0], (long long)sizes[i][1], i);
                nn__tensor_release(yc);
                nn_scope_end(sc);
            }
        }
        assert_int_equal(nn_set_num_threads(1), NN_OK);
        nn_module_free(net);
    }
    nn__backend_force_tier(-1);
}

/* Bytes the library asks of the allocator hook (test_chain_allocations). */
static size_t g_hook_bytes;
static void *count_malloc(size_t n, void *u) {
    (void)u;
    g_hook_bytes += n;
    return malloc(n);
}
static void *count_realloc(void *p, size_t n, void *u) {
    (void)u;
    g_hook_bytes += n;
    return realloc(p, n);
}
static void count_free(void *p, void *u) {
    (void)u;
    free(p);
}

typedef struct chain_oom {
    nn_module *net;
    nn_tensor *x;
    int used;
} chain_oom;

static int chain_oom_body(void *ctx) {
    chain_oom *c = ctx;
    nn_tensor *y = NULL;
    if (nn__mod_fuse_qconv(c->net->children, c->net->nchildren, c->x, &y) != c->used) return 2;
    if (!y) return 1;
    nn__tensor_release(y);
    return 0;
}

/* The chain's allocations: every one of them failing in turn (2 threads,
 * whole images per thread, the fused linear layer) gives an error and
 * leaks nothing; and a repeated call asks the allocator for little beyond
 * its output (the per-thread scratch is kept between calls: before, each
 * call allocated its few hundred KB again, and glibc trimmed and faulted
 * them in on every call). */
static void test_chain_allocations(void **state) {
    (void)state;
    nn_generator_seed(NULL, 9);
    nn_module *net = nn_sequential_new();
    add_conv_relu_pool(net, 3, 20);
    add_conv_relu_pool(net, 20, 24);
    nn_sequential_append(net, nn_flatten_new(1, -1));
    nn_sequential_append(net, nn_linear_new(24 * 10 * 9, 6, true));
    assert_int_equal(nn_quantize_dynamic(net, NULL, NULL), NN_OK);
    const int64_t xs[4] = {3, 3, 40, 36};
    nn_tensor *x = rand_tensor(xs, 4, 77, -1.0f, 1.0f);
    assert_int_equal(nn_set_num_threads(2), NN_OK);
    chain_oom c = {net, x, 8};
    assert_int_equal(chain_oom_body(&c), 0); /* warm: the threads' scratch exists */
    const long sites = tu_oom_sweep(chain_oom_body, &c);
    assert_true(sites >= 5);
    /* a repeated call: its output, the runs' bookkeeping and the linear
     * rows (3 x ~2 KB), not the layers' buffers (~200 KB per thread) */
    assert_int_equal(nn_set_allocator(count_malloc, count_realloc, count_free, NULL), NN_OK);
    g_hook_bytes = 0;
    assert_int_equal(chain_oom_body(&c), 0);
    const size_t bytes = g_hook_bytes;
    assert_int_equal(nn_set_allocator(NULL, NULL, NULL, NULL), NN_OK);
    if (bytes > 24 * 1024)
        fail_msg("a repeated chain call allocated %zu bytes through the hook", bytes);
    assert_int_equal(nn_set_num_threads(1), NN_OK);
    nn_tensor_free(x);
    nn_module_free(net);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_dynamic),
        cmocka_unit_test(test_conv_dynamic),
        cmocka_unit_test(test_trained_accuracy_and_static),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_reduced_range),
        cmocka_unit_test(test_conv_chain),
        cmocka_unit_test(test_chain_threads),
        cmocka_unit_test(test_chain_one_image_serial),
        cmocka_unit_test(test_wino_conv),
        cmocka_unit_test(test_chain_scratch_reuse),
        cmocka_unit_test(test_chain_allocations),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_mha_packed_self),
        cmocka_unit_test(test_mha_separate_cross),
        cmocka_unit_test(test_mha_restored_on_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
