/* The storage dtypes f16, bf16 and i8: conversion from f32 against PyTorch's
 * bits (tests/golden/half.txt, tests/golden/make_golden_half.py) and against
 * exhaustive properties that need no second implementation (every f16 / bf16
 * converts to f32 and back unchanged; every midpoint between two neighbours
 * rounds to the even one, and one f32 ulp either side to the nearer); the
 * f16 -> f32 values against ldexp; creation, element access, views, copies,
 * assignment between dtypes, printing, state-dict files; and ops that do not
 * take these dtypes failing with NN_ERR_DTYPE. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t fbits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float bitsf(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Convert n f32 values to dtype with nn_tensor_to; out gets the raw bits. */
static void to_half(const float *x, int64_t n, nn_dtype dt, uint16_t *out) {
    nn_tensor *t = TU_NN(nn_tensor_from_data(NN_DTYPE_F32, &n, 1, x));
    nn_tensor *h = TU_NN(nn_tensor_to(t, dt));
    assert_int_equal(nn_tensor_dtype(h), dt);
    TU_OK(nn_tensor_copy_to(h, out, (size_t)n * 2));
    nn_tensor_free(h);
    nn_tensor_free(t);
}

static void from_half(const uint16_t *h, int64_t n, nn_dtype dt, float *out) {
    nn_tensor *t = TU_NN(nn_tensor_from_data(dt, &n, 1, h));
    nn_tensor *f = TU_NN(nn_tensor_to(t, NN_DTYPE_F32));
    TU_OK(nn_tensor_copy_to(f, out, (size_t)n * 4));
    nn_tensor_free(f);
    nn_tensor_free(t);
}

static void test_golden_torch(void **state) {
    (void)state;
    FILE *f = fopen(tu_data_path("golden/half.txt"), "r");
    assert_non_null(f);
    enum { MAXN = 8192 };
    float *x = calloc(MAXN, 4);
    uint16_t *wh = calloc(MAXN, 2), *wb = calloc(MAXN, 2), *gh = calloc(MAXN, 2),
             *gb = calloc(MAXN, 2);
    char line[128];
    int64_t n = 0;
    while (fgets(line, sizeof line, f) && n < MAXN) {
        unsigned v, h, b;
        if (line[0] == '#') continue;
        assert_int_equal(sscanf(line, "%x %x %x", &v, &h, &b), 3);
        x[n] = bitsf(v), wh[n] = (uint16_t)h, wb[n] = (uint16_t)b, n++;
    }
    fclose(f);
    assert_true(n > 4000);
    to_half(x, n, NN_DTYPE_F16, gh);
    to_half(x, n, NN_DTYPE_BF16, gb);
    int64_t nans = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(x[i])) { /* PyTorch canonicalises NaN; we keep sign + payload top bits */
            nans++;
            assert_true((gh[i] & 0x7c00) == 0x7c00 && (gh[i] & 0x3ff) != 0);
            assert_true((gb[i] & 0x7f80) == 0x7f80 && (gb[i] & 0x7f) != 0);
            assert_int_equal(gh[i] >> 15, fbits(x[i]) >> 31);
            assert_int_equal(gb[i] >> 15, fbits(x[i]) >> 31);
            assert_int_equal(gh[i], 0x7e00 | ((fbits(x[i]) >> 16) & 0x8000) |
                                        ((fbits(x[i]) >> 13) & 0x3ff));
            assert_int_equal(gb[i], (fbits(x[i]) >> 16) | 0x40);
            continue;
        }
        if (gh[i] != wh[i])
            fail_msg("f16 of %08x: %04x, PyTorch %04x", fbits(x[i]), gh[i], wh[i]);
        if (gb[i] != wb[i])
            fail_msg("bf16 of %08x: %04x, PyTorch %04x", fbits(x[i]), gb[i], wb[i]);
    }
    assert_true(nans >= 6);
    free(x), free(wh), free(wb), free(gh), free(gb);
}

/* The value of f16 bits h by the definition (ldexp), independent of the library. */
static double f16_value(uint16_t h) {
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double s = (h & 0x8000) ? -1.0 : 1.0;
    if (e == 31) return m ? NAN : s * INFINITY;
    if (e == 0) return s * ldexp(m, -24);
    return s * ldexp(1024 + m, e - 25);
}

/* Every 16-bit pattern: to f32 (exact, as the definition says), back to the
 * same bits; the midpoint to each next pattern rounds to the even one, and a
 * f32 ulp either side of it to the nearer. */
static void exhaustive(nn_dtype dt) {
    const int64_t n = 65536;
    uint16_t *h = malloc(n * 2), *back = malloc(n * 2);
    float *f = malloc(n * 4);
    for (int64_t i = 0; i < n; i++) h[i] = (uint16_t)i;
    from_half(h, n, dt, f);
    for (int64_t i = 0; i < n; i++) {
        double want = dt == NN_DTYPE_F16 ? f16_value(h[i]) : (double)bitsf((uint32_t)i << 16);
        if (isnan(want)) {
            assert_true(isnan(f[i]));
            continue;
        }
        if ((double)f[i] != want || (want == 0 && (signbit(f[i]) != 0) != (h[i] >> 15 != 0)))
            fail_msg("%s %04llx -> %.9g, want %.9g", dt == NN_DTYPE_F16 ? "f16" : "bf16",
                     (long long)i, (double)f[i], want);
    }
    to_half(f, n, dt, back);
    for (int64_t i = 0; i < n; i++)
        if (!isnan(f[i]) && back[i] != h[i])
            fail_msg("round trip of %04llx gives %04x", (long long)i, back[i]);
    /* midpoints between i and i+1 within one sign and below Inf */
    const uint16_t inf = dt == NN_DTYPE_F16 ? 0x7c00 : 0x7f80;
    float *mid = malloc(n * 3 * 4);
    uint16_t *r = malloc(n * 3 * 2);
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        uint16_t a = (uint16_t)i;
        if ((a & 0x7fff) >= inf) continue;
        /* next pattern away from zero: a+1 (same sign), up to and including Inf */
        double va = dt == NN_DTYPE_F16 ? f16_value(a) : (double)bitsf((uint32_t)a << 16);
        double vb = dt == NN_DTYPE_F16 ? f16_value((uint16_t)(a + 1))
                                       : (double)bitsf((uint32_t)(a + 1) << 16);
        if (isinf(vb)) vb = (va < 0 ? -1 : 1) * (dt == NN_DTYPE_F16 ? 65536.0 : ldexp(1, 128));
        double md = (va + vb) / 2; /* exact in f32: 11 or 8 significant bits + 1 */
        if (fabs(md) >= ldexp(1, 128)) continue;
        float mf = (float)md;
        assert_true((double)mf == md);
        mid[m] = mf;
        mid[m + 1] = nextafterf(mf, 0.0f);
        mid[m + 2] = nextafterf(mf, mf < 0 ? -INFINITY : INFINITY);
        m += 3;
    }
    to_half(mid, m, dt, r);
    for (int64_t j = 0; j < m; j += 3) {
        /* lo, hi: the neighbours toward and away from zero, found by
         * converting the values one f32 ulp either side of the midpoint */
        float mf = mid[j];
        uint16_t lo = r[j + 1], hi = r[j + 2];
        assert_int_equal(hi, (uint16_t)(lo + 1));
        uint16_t even = (lo & 1) ? hi : lo;
        if (r[j] != even)
            fail_msg("%s midpoint %.9g gives %04x, want the even %04x",
                     dt == NN_DTYPE_F16 ? "f16" : "bf16", (double)mf, r[j], even);
    }
    free(h), free(back), free(f), free(mid), free(r);
}

static void test_exhaustive_f16(void **state) {
    (void)state;
    exhaustive(NN_DTYPE_F16);
}

static void test_exhaustive_bf16(void **state) {
    (void)state;
    exhaustive(NN_DTYPE_BF16);
}

static void test_sizes_and_names(void **state) {
    (void)state;
    assert_int_equal(nn_dtype_size(NN_DTYPE_F16), 2);
    assert_int_equal(nn_dtype_size(NN_DTYPE_BF16), 2);
    assert_int_equal(nn_dtype_size(NN_DTYPE_I8), 1);
    assert_string_equal(nn_dtype_name(NN_DTYPE_BF16), "bf16");
    assert_int_equal(nn_dtype_size(NN_DTYPE_F64), 0);
    assert_int_equal(nn_dtype_size(NN_DTYPE_I32), 0);
}

static void test_create_access(void **state) {
    (void)state;
    int64_t shape[2] = {3, 5};
    const nn_dtype dts[3] = {NN_DTYPE_F16, NN_DTYPE_BF16, NN_DTYPE_I8};
    for (int d = 0; d < 3; d++) {
        nn_dtype dt = dts[d];
        nn_tensor *z = TU_NN(nn_tensor_zeros(dt, shape, 2));
        nn_tensor *o = TU_NN(nn_tensor_ones(dt, shape, 2));
        nn_tensor *v = TU_NN(nn_tensor_full(dt, shape, 2, -2.5));
        assert_int_equal(nn_tensor_dtype(z), dt);
        double x;
        int64_t idx[2] = {2, 4};
        TU_OK(nn_tensor_get(z, idx, &x));
        assert_true(x == 0.0);
        TU_OK(nn_tensor_get(o, idx, &x));
        assert_true(x == 1.0);
        TU_OK(nn_tensor_get(v, idx, &x));
        assert_true(x == (dt == NN_DTYPE_I8 ? -2.0 : -2.5));
        /* set / get, with the dtype's rounding */
        TU_OK(nn_tensor_set(v, (int64_t[]){1, 1}, 1000.7));
        TU_OK(nn_tensor_get(v, (int64_t[]){-2, -4}, &x));
        assert_true(x == (dt == NN_DTYPE_F16 ? 1000.5 : dt == NN_DTYPE_BF16 ? 1000.0 : 127.0));
        /* a transposed view made contiguous keeps every element */
        for (int64_t i = 0; i < 15; i++)
            TU_OK(nn_tensor_set(o, (int64_t[]){i / 5, i % 5}, (double)i - 7));
        nn_tensor *tr = TU_NN(nn_transpose(o, 0, 1));
        nn_tensor *c = TU_NN(nn_tensor_contiguous(tr));
        assert_true(nn_tensor_is_contiguous(c));
        for (int64_t i = 0; i < 15; i++) {
            TU_OK(nn_tensor_get(c, (int64_t[]){i % 5, i / 5}, &x));
            assert_true(x == (double)i - 7);
        }
        nn_tensor *cl = TU_NN(nn_tensor_clone(tr));
        assert_true(nn_tensor_equal(cl, c));
        nn_tensor *f = TU_NN(nn_tensor_to(c, NN_DTYPE_F32));
        nn_tensor *back = TU_NN(nn_tensor_to(f, dt));
        assert_true(nn_tensor_equal(back, c));
        /* assign across dtypes, into a strided view */
        nn_tensor *ft = TU_NN(nn_tensor_full(NN_DTYPE_F32, (int64_t[]){5, 3}, 2, 0.25));
        TU_OK(nn_tensor_assign(tr, ft));
        TU_OK(nn_tensor_get(o, (int64_t[]){2, 3}, &x));
        assert_true(x == (dt == NN_DTYPE_I8 ? 0.0 : 0.25));
        TU_OK(nn_tensor_fill(tr, 3.0));
        TU_OK(nn_tensor_get(o, (int64_t[]){0, 0}, &x));
        assert_true(x == 3.0);
        char *s = TU_NN(nn_tensor_format(z, 4));
        assert_non_null(strstr(s, nn_dtype_name(dt)));
        nn_free(s);
        nn_tensor *it = TU_NN(nn_tensor_full(dt, NULL, 0, 1.5));
        assert_true(nn_tensor_item(it) == (dt == NN_DTYPE_I8 ? 1.0 : 1.5));
        nn_tensor *cat = TU_NN(nn_concat((nn_tensor *[]){z, o}, 2, 0));
        assert_int_equal(nn_tensor_dtype(cat), dt);
        assert_int_equal(nn_tensor_shape(cat)[0], 6);
        nn_tensor_free(cat), nn_tensor_free(it), nn_tensor_free(ft), nn_tensor_free(back);
        nn_tensor_free(f), nn_tensor_free(cl), nn_tensor_free(c), nn_tensor_free(tr);
        nn_tensor_free(z), nn_tensor_free(o), nn_tensor_free(v);
    }
}

static void test_i8_and_cross(void **state) {
    (void)state;
    float x[8] = {-200.0f, -128.9f, -1.9f, -0.5f, 0.5f, 126.99f, 300.0f, NAN};
    int8_t want[8] = {-128, -128, -1, 0, 0, 126, 127, 0};
    int64_t n = 8;
    nn_tensor *f = TU_NN(nn_tensor_from_data(NN_DTYPE_F32, &n, 1, x));
    nn_tensor *q = TU_NN(nn_tensor_to(f, NN_DTYPE_I8));
    int8_t got[8];
    TU_OK(nn_tensor_copy_to(q, got, sizeof got));
    assert_memory_equal(got, want, 8);
    nn_tensor *back = TU_NN(nn_tensor_to(q, NN_DTYPE_F32));
    float fb[8];
    TU_OK(nn_tensor_copy_to(back, fb, sizeof fb));
    for (int i = 0; i < 8; i++) assert_true(fb[i] == (float)want[i]);
    /* f16 <-> bf16 (through f32, rounded once), f16 -> i64 */
    float y[3] = {1.0f + 1.0f / 1024, 65504.0f, -3.75f};
    n = 3;
    nn_tensor *fy = TU_NN(nn_tensor_from_data(NN_DTYPE_F32, &n, 1, y));
    nn_tensor *h = TU_NN(nn_tensor_to(fy, NN_DTYPE_F16));
    nn_tensor *b = TU_NN(nn_tensor_to(h, NN_DTYPE_BF16));
    nn_tensor *i64 = TU_NN(nn_tensor_to(h, NN_DTYPE_I64));
    double v;
    TU_OK(nn_tensor_get(b, (int64_t[]){0}, &v));
    assert_true(v == 1.0); /* 1 + 2^-10 is below bf16's resolution: ties to even */
    TU_OK(nn_tensor_get(b, (int64_t[]){1}, &v));
    assert_true(v == 65536.0);
    TU_OK(nn_tensor_get(i64, (int64_t[]){2}, &v));
    assert_true(v == -3.0);
    nn_tensor_free(i64), nn_tensor_free(b), nn_tensor_free(h), nn_tensor_free(fy);
    nn_tensor_free(back), nn_tensor_free(q), nn_tensor_free(f);
}

/* Ops that compute in f32 refuse the storage dtypes with NN_ERR_DTYPE (they
 * must never read 2-byte elements as floats). */
static void test_ops_refuse(void **state) {
    (void)state;
    int64_t shape[2] = {2, 3};
    const nn_dtype dts[3] = {NN_DTYPE_F16, NN_DTYPE_BF16, NN_DTYPE_I8};
    for (int d = 0; d < 3; d++) {
        nn_tensor *a = TU_NN(nn_tensor_ones(dts[d], shape, 2));
        nn_tensor *f = TU_NN(nn_tensor_ones(NN_DTYPE_F32, shape, 2));
        assert_null(nn_add(a, f));
        tu_expect_error(NN_ERR_DTYPE, nn_dtype_name(dts[d]));
        assert_null(nn_relu(a));
        tu_expect_error(NN_ERR_DTYPE, NULL);
        assert_null(nn_sum(a, NULL, 0, false));
        tu_expect_error(NN_ERR_DTYPE, NULL);
        assert_null(nn_softmax(a, 1));
        tu_expect_error(NN_ERR_DTYPE, NULL);
        assert_null(nn_argmax(a, 1, false));
        tu_expect_error(NN_ERR_DTYPE, NULL);
        assert_null(nn_eq(a, f));
        tu_expect_error(NN_ERR_DTYPE, NULL);
        assert_int_equal(nn_tensor_set_requires_grad(a, true), NN_ERR_DTYPE);
        nn_tensor_free(a), nn_tensor_free(f);
    }
}

static void test_statedict_file(void **state) {
    (void)state;
    nn_statedict *sd = TU_NN(nn_statedict_new());
    int64_t shape[2] = {7, 3};
    float x[21];
    for (int i = 0; i < 21; i++) x[i] = (float)(i * 0.37 - 3.1);
    x[4] = NAN, x[5] = -INFINITY, x[6] = 1e-6f;
    nn_tensor *f = TU_NN(nn_tensor_from_data(NN_DTYPE_F32, shape, 2, x));
    nn_tensor *h = TU_NN(nn_tensor_to(f, NN_DTYPE_F16));
    nn_tensor *b = TU_NN(nn_tensor_to(f, NN_DTYPE_BF16));
    nn_tensor *q = TU_NN(nn_tensor_to(f, NN_DTYPE_I8));
    TU_OK(nn_statedict_set(sd, "h", h));
    TU_OK(nn_statedict_set(sd, "b", b));
    TU_OK(nn_statedict_set(sd, "q", q));
    for (int level = 0; level <= 6; level += 6) {
        nn_io_options *o = TU_NN(nn_io_options_new());
        TU_OK(nn_io_options_set(o, NN_IO_OPTION_COMPRESSION, level));
        void *buf = NULL;
        size_t size = 0;
        TU_OK(nn_statedict_save_buffer(sd, o, &buf, &size));
        nn_statedict *ld = TU_NN(nn_statedict_load_buffer(buf, size, NULL));
        const char *names[3] = {"h", "b", "q"};
        nn_tensor *want[3] = {h, b, q};
        for (int i = 0; i < 3; i++) {
            nn_tensor *t = nn_statedict_get(ld, names[i]);
            assert_non_null(t);
            assert_int_equal(nn_tensor_dtype(t), nn_tensor_dtype(want[i]));
            uint8_t g[64], w[64];
            size_t nb = 21 * nn_dtype_size(nn_tensor_dtype(t));
            TU_OK(nn_tensor_copy_to(t, g, sizeof g));
            TU_OK(nn_tensor_copy_to(want[i], w, sizeof w));
            assert_memory_equal(g, w, nb); /* bit for bit, NaN included */
        }
        nn_statedict_free(ld);
        nn_free(buf);
        nn_io_options_free(o);
    }
    nn_statedict_free(sd);
    nn_tensor_free(f), nn_tensor_free(h), nn_tensor_free(b), nn_tensor_free(q);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes_and_names), cmocka_unit_test(test_golden_torch),
        cmocka_unit_test(test_exhaustive_f16),  cmocka_unit_test(test_exhaustive_bf16),
        cmocka_unit_test(test_create_access),   cmocka_unit_test(test_i8_and_cross),
        cmocka_unit_test(test_ops_refuse),      cmocka_unit_test(test_statedict_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
