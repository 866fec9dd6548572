/* Half-precision weights end to end: nn_linear / nn_matmul / nn_conv2d /
 * nn_embedding with f16 and bf16 weights against the same ops in f32 on the
 * weights rounded to that dtype (the exact oracle: what a half weight means),
 * on the direct small-row path and on the converted path, with and without
 * a graph (the gradient of x through a half weight equals the f32 one);
 * nn_module_convert on a small CNN and an embedding model with a tied output
 * layer (ties kept, biases f32, errors leave everything unchanged); model
 * files store the half weights natively (about half the bytes) and
 * nn_model_load + nn_model_predict give the converted module's outputs bit
 * for bit; optimizers refuse half parameters. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A copy of t rounded to dtype and back to f32: the caller owns it (also
 * inside a scope) and frees it. */
static nn_tensor *rounded(nn_tensor *t, nn_dtype dt) {
    nn_scope *s = nn_scope_begin();
    nn_tensor *f = TU_NN(nn_tensor_to(TU_NN(nn_tensor_to(t, dt)), NN_DTYPE_F32));
    nn_tensor_retain(f);
    nn_scope_end(s);
    return f;
}

static double max_abs(nn_tensor *t) {
    double m = 0;
    int64_t n = nn_tensor_numel(t);
    float *v = malloc(sizeof(float) * (size_t)n);
    TU_OK(nn_tensor_copy_to(t, v, sizeof(float) * (size_t)n));
    for (int64_t i = 0; i < n; i++)
        if (fabs(v[i]) > m) m = fabs(v[i]);
    free(v);
    return m;
}

/* |got - want| <= rtol * max|want| elementwise. */
static void expect_near(nn_tensor *got, nn_tensor *want, double rtol, const char *what) {
    assert_int_equal(nn_tensor_numel(got), nn_tensor_numel(want));
    double scale = max_abs(want) + 1e-30;
    if (!nn_tensor_allclose(got, want, 0, rtol * scale)) {
        char *a = nn_tensor_format(got, 6), *b = nn_tensor_format(want, 6);
        fail_msg("%s: outputs differ beyond %.3g x %.3g\n%s\n%s", what, rtol, scale, a, b);
    }
}

/* Tolerance of a half-weight product against f32 on the rounded weights:
 * sums in another order (f32 rounding), or, for bf16 where AVX-512 BF16
 * exists, activations rounded to bf16 too (relative 2^-9 per product). */
#define TOL_F16 1e-5
#define TOL_BF16 1e-2

static void test_linear_matmul_ops(void **state) {
    (void)state;
    const nn_dtype dts[2] = {NN_DTYPE_F16, NN_DTYPE_BF16};
    const int64_t rows[3] = {1, 5, 40}; /* direct, direct, converted */
    for (int d = 0; d < 2; d++)
        for (int r = 0; r < 3; r++) {
            nn_scope *s = nn_scope_begin();
            nn_tensor *x = nn_randn(NULL, (int64_t[]){rows[r], 37}, 2);
            nn_tensor *w = nn_randn(NULL, (int64_t[]){19, 37}, 2);
            nn_tensor *b = nn_randn(NULL, (int64_t[]){19}, 1);
            nn_tensor *wh = TU_NN(nn_tensor_to(w, dts[d]));
            nn_tensor *wr = rounded(w, dts[d]);
            const double tol = dts[d] == NN_DTYPE_F16 ? TOL_F16 : TOL_BF16;
            expect_near(TU_NN(nn_linear(x, wh, b)), TU_NN(nn_linear(x, wr, b)), tol, "linear");
            expect_near(TU_NN(nn_linear(x, wh, NULL)), TU_NN(nn_linear(x, wr, NULL)), tol,
                        "linear, no bias");
            /* matmul: x [rows, 37] @ B [37, 19] */
            nn_tensor *bt = TU_NN(nn_tensor_contiguous(TU_NN(nn_transpose(w, 0, 1))));
            nn_tensor *bh = TU_NN(nn_tensor_to(bt, dts[d]));
            nn_tensor *br = rounded(bt, dts[d]);
            expect_near(TU_NN(nn_matmul(x, bh)), TU_NN(nn_matmul(x, br)), TOL_F16, "matmul");
            /* a 1-D left operand and a batched one */
            nn_tensor *v = nn_randn(NULL, (int64_t[]){37}, 1);
            expect_near(TU_NN(nn_matmul(v, bh)), TU_NN(nn_matmul(v, br)), TOL_F16, "matmul 1-D");
            nn_tensor *x3 = nn_randn(NULL, (int64_t[]){2, rows[r], 37}, 3);
            expect_near(TU_NN(nn_matmul(x3, bh)), TU_NN(nn_matmul(x3, br)), TOL_F16,
                        "matmul batched a");
            /* the gradient of x through a half weight: the f32 one on the
             * rounded weight (the node holds the converted copy) */
            nn_tensor *xg = TU_NN(nn_tensor_clone(x)), *xr = TU_NN(nn_tensor_clone(x));
            TU_OK(nn_tensor_set_requires_grad(xg, true));
            TU_OK(nn_tensor_set_requires_grad(xr, true));
            TU_OK(nn_backward(TU_NN(nn_sum(nn_mul(nn_linear(xg, wh, b), nn_linear(xg, wh, b)), NULL, 0, false))));
            TU_OK(nn_backward(TU_NN(nn_sum(nn_mul(nn_linear(xr, wr, b), nn_linear(xr, wr, b)), NULL, 0, false))));
            expect_near(nn_tensor_grad(xg), nn_tensor_grad(xr), 1e-5, "dx through a half weight");
            nn_tensor *mg = TU_NN(nn_tensor_clone(x));
            TU_OK(nn_tensor_set_requires_grad(mg, true));
            TU_OK(nn_backward(TU_NN(nn_sum(nn_matmul(mg, bh), NULL, 0, false))));
            nn_tensor *mr = TU_NN(nn_tensor_clone(x));
            TU_OK(nn_tensor_set_requires_grad(mr, true));
            TU_OK(nn_backward(TU_NN(nn_sum(nn_matmul(mr, br), NULL, 0, false))));
            expect_near(nn_tensor_grad(mg), nn_tensor_grad(mr), 1e-6, "matmul dx");
            /* a half weight cannot require grad; half activations are refused */
            assert_int_equal(nn_tensor_set_requires_grad(wh, true), NN_ERR_DTYPE);
            assert_null(nn_linear(wh, wh, NULL));
            tu_expect_error(NN_ERR_DTYPE, "nn_linear");
            assert_null(nn_matmul(bh, x));
            tu_expect_error(NN_ERR_DTYPE, "nn_matmul");
            nn_tensor_free(wr), nn_tensor_free(br);
            nn_scope_end(s);
        }
}

static void test_conv_embedding_ops(void **state) {
    (void)state;
    const nn_dtype dts[2] = {NN_DTYPE_F16, NN_DTYPE_BF16};
    for (int d = 0; d < 2; d++) {
        nn_scope *s = nn_scope_begin();
        nn_tensor *x = nn_randn(NULL, (int64_t[]){2, 3, 9, 7}, 4);
        nn_tensor *w = nn_randn(NULL, (int64_t[]){5, 3, 3, 3}, 4);
        nn_tensor *b = nn_randn(NULL, (int64_t[]){5}, 1);
        nn_tensor *wh = TU_NN(nn_tensor_to(w, dts[d])), *wr = rounded(w, dts[d]);
        expect_near(TU_NN(nn_conv2d(x, wh, b, 1, 2, 1, 0, 1, 1, 1)),
                    TU_NN(nn_conv2d(x, wr, b, 1, 2, 1, 0, 1, 1, 1)), 1e-6, "conv2d");
        /* stride 1: the tier's half kernel where it takes the shape (bf16 on
         * AVX-512 BF16; test_convert_cnn covers the fused ReLU and pool) */
        nn_tensor *x1 = nn_randn(NULL, (int64_t[]){3, 3, 10, 9}, 4);
        expect_near(TU_NN(nn_conv2d(x1, wh, b, 1, 1, 1, 1, 1, 1, 1)),
                    TU_NN(nn_conv2d(x1, wr, b, 1, 1, 1, 1, 1, 1, 1)),
                    dts[d] == NN_DTYPE_F16 ? 1e-6 : TOL_BF16, "conv2d stride 1");
        /* conv1d keeps f32 weights only */
        nn_tensor *w1 = TU_NN(nn_tensor_to(nn_randn(NULL, (int64_t[]){4, 3, 3}, 3), dts[d]));
        assert_null(nn_conv1d(nn_randn(NULL, (int64_t[]){1, 3, 8}, 3), w1, NULL, 1, 0, 1, 1));
        tu_expect_error(NN_ERR_DTYPE, NULL);
        /* embedding: rows gathered and converted exactly */
        nn_tensor *table = nn_randn(NULL, (int64_t[]){11, 13}, 2);
        nn_tensor *th = TU_NN(nn_tensor_to(table, dts[d])), *tr = rounded(table, dts[d]);
        int64_t idx[6] = {0, 10, 3, 3, 7, 1};
        nn_tensor *ix = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, (int64_t[]){2, 3}, 2, idx));
        assert_true(nn_tensor_equal(TU_NN(nn_embedding(th, ix)), TU_NN(nn_embedding(tr, ix))));
        nn_tensor_free(wr), nn_tensor_free(tr);
        nn_scope_end(s);
    }
}

/* The demo CNN's shape, small: conv -> relu -> pool -> flatten -> linear -> relu -> linear. */
static nn_module *small_cnn(void) {
    nn_module *net = TU_NN(nn_sequential_new());
    TU_OK(nn_sequential_append(net, nn_conv2d_new(1, 8, 3, 1, 1, true)));
    TU_OK(nn_sequential_append(net, nn_relu_new()));
    TU_OK(nn_sequential_append(net, nn_max_pool2d_new(2, 2, 0)));
    TU_OK(nn_sequential_append(net, nn_conv2d_new(8, 16, 3, 1, 1, true)));
    TU_OK(nn_sequential_append(net, nn_relu_new()));
    TU_OK(nn_sequential_append(net, nn_flatten_new(1, -1)));
    TU_OK(nn_sequential_append(net, nn_linear_new(16 * 6 * 6, 64, true)));
    TU_OK(nn_sequential_append(net, nn_relu_new()));
    TU_OK(nn_sequential_append(net, nn_linear_new(64, 10, true)));
    TU_OK(nn_module_train(net, false));
    return net;
}

static nn_module *copy_of(nn_module *m) {
    void *buf;
    size_t size;
    TU_OK(nn_model_save_buffer(m, NULL, NULL, &buf, &size));
    nn_model *md = TU_NN(nn_model_load_buffer(buf, size, NULL));
    nn_module *c = nn_model_module(md);
    nn_module_retain(c);
    nn_model_free(md);
    nn_free(buf);
    return c;
}

static size_t file_size(nn_module *m, int level) {
    nn_io_options *o = TU_NN(nn_io_options_new());
    TU_OK(nn_io_options_set(o, NN_IO_OPTION_COMPRESSION, level));
    void *buf;
    size_t size;
    TU_OK(nn_model_save_buffer(m, NULL, o, &buf, &size));
    nn_free(buf);
    nn_io_options_free(o);
    return size;
}

static void test_convert_cnn(void **state) {
    (void)state;
    const nn_dtype dts[2] = {NN_DTYPE_F16, NN_DTYPE_BF16};
    for (int d = 0; d < 2; d++) {
        nn_module *net = small_cnn();
        nn_module *half = copy_of(net), *ref = copy_of(net);
        TU_OK(nn_module_convert(half, dts[d]));
        assert_int_equal(nn_tensor_dtype(nn_module_get_parameter(half, "0.weight")), dts[d]);
        assert_int_equal(nn_tensor_dtype(nn_module_get_parameter(half, "6.weight")), dts[d]);
        assert_int_equal(nn_tensor_dtype(nn_module_get_parameter(half, "6.bias")), NN_DTYPE_F32);
        /* the oracle: f32 with every converted weight rounded */
        const char *ws[4] = {"0.weight", "3.weight", "6.weight", "8.weight"};
        for (int i = 0; i < 4; i++) {
            nn_tensor *p = nn_module_get_parameter(ref, ws[i]);
            nn_tensor *r = rounded(p, dts[d]);
            TU_OK(nn_tensor_assign(p, r));
            nn_tensor_free(r);
        }
        for (int64_t batch = 1; batch <= 33; batch += 32) {
            nn_scope *s = nn_scope_begin();
            nn_tensor *x = nn_rand(NULL, (int64_t[]){batch, 1, 12, 12}, 4);
            nn_tensor *yh = TU_NN(nn_module_forward(half, x));
            nn_tensor *yr = TU_NN(nn_module_forward(ref, x));
            expect_near(yh, yr, dts[d] == NN_DTYPE_F16 ? 1e-5 : TOL_BF16, "converted CNN");
            /* the file stores them natively; loading gives the same outputs */
            void *buf;
            size_t size;
            TU_OK(nn_model_save_buffer(half, NULL, NULL, &buf, &size));
            nn_model *md = TU_NN(nn_model_load_buffer(buf, size, NULL));
            nn_free(buf);
            nn_module *lm = nn_model_module(md);
            assert_int_equal(nn_tensor_dtype(nn_module_get_parameter(lm, "3.weight")), dts[d]);
            assert_true(nn_tensor_equal(nn_module_get_parameter(lm, "3.weight"),
                                        nn_module_get_parameter(half, "3.weight")));
            /* predict runs without a graph, as the no-grad forward does (with
             * grad mode on, activations need gradients for the f32 biases,
             * so products take the converted-weight path) */
            nn_tensor *yp = TU_NN(nn_model_predict(md, x));
            bool was = nn_set_grad_enabled(false);
            nn_tensor *yn = TU_NN(nn_module_forward(half, x));
            nn_set_grad_enabled(was);
            assert_true(nn_tensor_equal(yp, yn));
            expect_near(yn, yr, dts[d] == NN_DTYPE_F16 ? 1e-5 : TOL_BF16, "no-grad forward");
            nn_model_free(md);
            nn_scope_end(s);
        }
        /* stored: about half the bytes of the f32 file */
        size_t f32_size = file_size(net, 0), half_size = file_size(half, 0);
        printf("%s: stored file %zu bytes vs f32 %zu (%.3fx)\n", nn_dtype_name(dts[d]), half_size,
               f32_size, (double)half_size / (double)f32_size);
        assert_true((double)half_size <= 0.52 * (double)f32_size);
        /* back to f32: the rounded weights exactly */
        TU_OK(nn_module_convert(half, NN_DTYPE_F32));
        assert_true(nn_tensor_equal(nn_module_get_parameter(half, "6.weight"),
                                    nn_module_get_parameter(ref, "6.weight")));
        nn_module_free(net), nn_module_free(half), nn_module_free(ref);
    }
}

/* The demo CNN's shape (bench_half's model) in bf16 against f32 with the
 * weights rounded, inference (no graph: the fused conv + ReLU + pool, i.e.
 * bf16 Winograd on conv2 and the batch-1 vdpbf16ps GEMV on fc1 where
 * AVX512_BF16 runs), batch 1 and 5, within 1e-2 of the largest output; the
 * pooled layers run Winograd in f32 too, so the layers alone are compared
 * with the f32 ones on the rounded weights. */
static void test_convert_demo_cnn_bf16(void **state) {
    (void)state;
    nn_module *net = TU_NN(nn_sequential_new());
    nn_module *l[] = {nn_conv2d_new(1, 32, 3, 1, 1, true),  nn_relu_new(),
                      nn_max_pool2d_new(2, 2, 0),           nn_conv2d_new(32, 64, 3, 1, 1, true),
                      nn_relu_new(),                        nn_max_pool2d_new(2, 2, 0),
                      nn_flatten_new(1, -1),                nn_linear_new(3136, 128, true),
                      nn_relu_new(),                        nn_linear_new(128, 10, true)};
    for (size_t i = 0; i < sizeof l / sizeof l[0]; i++) TU_OK(nn_sequential_append(net, l[i]));
    TU_OK(nn_module_train(net, false));
    nn_module *half = copy_of(net), *ref = copy_of(net);
    TU_OK(nn_module_convert(half, NN_DTYPE_BF16));
    const char *ws[4] = {"0.weight", "3.weight", "7.weight", "9.weight"};
    for (int i = 0; i < 4; i++) {
        nn_tensor *p = nn_module_get_parameter(ref, ws[i]);
        nn_tensor *r = rounded(p, NN_DTYPE_BF16);
        TU_OK(nn_tensor_assign(p, r));
        nn_tensor_free(r);
    }
    bool was = nn_set_grad_enabled(false);
    for (int64_t batch = 1; batch <= 5; batch += 4) {
        nn_scope *s = nn_scope_begin();
        nn_tensor *x = nn_rand(NULL, (int64_t[]){batch, 1, 28, 28}, 4);
        expect_near(TU_NN(nn_module_forward(half, x)), TU_NN(nn_module_forward(ref, x)), TOL_BF16,
                    "bf16 demo CNN");
        nn_scope_end(s);
    }
    nn_set_grad_enabled(was);
    nn_module_free(net), nn_module_free(half), nn_module_free(ref);
}

static void test_convert_tied_embedding(void **state) {
    (void)state;
    nn_module *net = TU_NN(nn_sequential_new());
    TU_OK(nn_sequential_append(net, nn_embedding_new(17, 8)));
    TU_OK(nn_sequential_append(net, nn_linear_new(8, 17, false)));
    TU_OK(nn_module_tie(net, "1.weight", "0.weight"));
    TU_OK(nn_module_convert(net, NN_DTYPE_BF16));
    nn_tensor *e = nn_module_get_parameter(net, "0.weight"), *l = nn_module_get_parameter(net, "1.weight");
    assert_ptr_equal(e, l); /* still one tensor */
    assert_int_equal(nn_tensor_dtype(e), NN_DTYPE_BF16);
    int64_t idx[3] = {4, 16, 0};
    nn_tensor *ix = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, (int64_t[]){3}, 1, idx));
    nn_tensor *y = TU_NN(nn_module_forward(net, ix));
    void *buf;
    size_t size;
    TU_OK(nn_model_save_buffer(net, NULL, NULL, &buf, &size));
    nn_model *md = TU_NN(nn_model_load_buffer(buf, size, NULL));
    nn_free(buf);
    nn_module *lm = nn_model_module(md);
    assert_ptr_equal(nn_module_get_parameter(lm, "0.weight"), nn_module_get_parameter(lm, "1.weight"));
    nn_tensor *yp = TU_NN(nn_model_predict(md, ix));
    assert_true(nn_tensor_equal(y, yp));
    nn_tensor_free(yp), nn_tensor_free(y), nn_tensor_free(ix);
    nn_model_free(md);
    nn_module_free(net);
}

static void test_convert_errors(void **state) {
    (void)state;
    assert_int_equal(nn_module_convert(NULL, NN_DTYPE_BF16), NN_ERR_NULL);
    nn_module *net = small_cnn();
    assert_int_equal(nn_module_convert(net, NN_DTYPE_I8), NN_ERR_DTYPE);
    tu_expect_error(NN_ERR_DTYPE, "nn_module_convert");
    assert_int_equal(nn_module_convert(net, (nn_dtype)42), NN_ERR_DTYPE);
    assert_int_equal(nn_tensor_dtype(nn_module_get_parameter(net, "0.weight")), NN_DTYPE_F32);
    /* out of memory at every allocation: an error, nothing changed, no leak */
    for (long k = 1; k < 40; k++) {
        tu_alloc_install();
        tu_alloc_fail_at(k);
        nn_status st = nn_module_convert(net, NN_DTYPE_F16);
        tu_alloc_uninstall();
        if (st == NN_OK) {
            TU_OK(nn_module_convert(net, NN_DTYPE_F32));
            break;
        }
        assert_int_equal(st, NN_ERR_NOMEM);
        assert_int_equal(nn_tensor_dtype(nn_module_get_parameter(net, "0.weight")), NN_DTYPE_F32);
        assert_int_equal(nn_tensor_dtype(nn_module_get_parameter(net, "8.weight")), NN_DTYPE_F32);
    }
    /* an optimizer over half weights is refused */
    TU_OK(nn_module_convert(net, NN_DTYPE_BF16));
    assert_null(nn_optim_new_module(NN_OPTIM_TYPE_SGD, net, 0.1));
    tu_expect_error(NN_ERR_DTYPE, "bf16");
    nn_module_free(net);
}

int main(void) {
    nn_generator_seed(NULL, 7);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear_matmul_ops),     cmocka_unit_test(test_conv_embedding_ops),
        cmocka_unit_test(test_convert_cnn),           cmocka_unit_test(test_convert_tied_embedding),
        cmocka_unit_test(test_convert_errors),        cmocka_unit_test(test_convert_demo_cnn_bf16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
