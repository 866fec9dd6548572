/* Regressions for the error state and for size arithmetic:
 *  - the "pending" error: a NULL argument reports the error that produced it
 *    only while no public call has succeeded since (a chain keeps its root
 *    cause; an unrelated old error is never blamed);
 *  - nn_slice with a huge step and shapes whose strides do not fit in int64
 *    (both were signed overflow, i.e. undefined behaviour: run this suite
 *    under .ci/sanitize.sh to see UBSan's view). */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

/* Assert the last error without clearing it (tu_expect_error clears). */
static void expect_last(nn_status st, const char *substr) {
    if (nn_last_status() != st)
        fail_msg("expected status %d, got %d: '%s'", (int)st, (int)nn_last_status(),
                 nn_last_error());
    if (!strstr(nn_last_error(), substr))
        fail_msg("message '%s' lacks '%s'", nn_last_error(), substr);
}

static nn_tensor *vec(int64_t n, float start) {
    nn_tensor *t = TU_NN(nn_tensor_empty(NN_DTYPE_F32, &n, 1));
    float *p = nn_tensor_data(t);
    for (int64_t i = 0; i < n; i++) p[i] = start + (float)i;
    return t;
}

/* ------------------------------------------------------- pending error */

static void test_chain_keeps_root_cause(void **st) {
    (void)st;
    nn_clear_error();
    nn_scope *s = nn_scope_begin();
    nn_tensor *a = vec(3, 0.0f), *b = vec(4, 0.0f);
    /* nn_add fails on shapes; relu, sum and backward are handed its NULL */
    assert_null(nn_relu(nn_add(a, b)));
    expect_last(NN_ERR_SHAPE, "nn_add");
    assert_null(nn_sum(nn_relu(nn_mul(a, b)), NULL, 0, false));
    expect_last(NN_ERR_SHAPE, "nn_mul");
    assert_int_equal(nn_backward(nn_sum(nn_relu(nn_sub(a, b)), NULL, 0, false)), NN_ERR_SHAPE);
    expect_last(NN_ERR_SHAPE, "nn_sub");
    /* a NULL argument at the start of a chain names the first function
     * (once the error above is no longer pending) */
    nn_clear_error();
    assert_null(nn_relu(nn_add(a, NULL)));
    expect_last(NN_ERR_NULL, "nn_add: argument 'b' is NULL");
    nn_scope_end(s);
    nn_clear_error();
}

static void test_stale_error_not_blamed(void **st) {
    (void)st;
    nn_clear_error();
    nn_scope *s = nn_scope_begin();
    nn_tensor *a = vec(3, 1.0f), *b = vec(4, 0.0f);

    /* error, then a successful op: a later NULL is the caller's own */
    assert_null(nn_add(a, b));
    expect_last(NN_ERR_SHAPE, "nn_add");
    TU_NN(nn_mul(a, a));
    assert_null(nn_relu(NULL));
    expect_last(NN_ERR_NULL, "nn_relu: argument");

    /* the same after a successful status-returning call */
    assert_null(nn_add(a, b));
    TU_OK(nn_tensor_fill(b, 2.0));
    assert_null(nn_exp(NULL));
    expect_last(NN_ERR_NULL, "nn_exp: argument");

    /* ... and after a successful backward */
    nn_tensor *w = vec(3, 0.5f);
    TU_OK(nn_tensor_set_requires_grad(w, true));
    nn_tensor *l = TU_NN(nn_sum(nn_mul(w, a), NULL, 0, false));
    assert_null(nn_add(a, b));
    TU_OK(nn_backward(l));
    assert_int_equal(nn_tensor_zero_grad(NULL), NN_ERR_NULL);
    expect_last(NN_ERR_NULL, "nn_tensor_zero_grad: argument");

    /* a failed call in between keeps its own error pending, not the older one */
    assert_null(nn_add(a, b));
    assert_null(nn_reshape(a, (const int64_t[]){7}, 1));
    assert_null(nn_neg(NULL));
    expect_last(NN_ERR_SHAPE, "nn_reshape");
    nn_scope_end(s);
    nn_clear_error();
}

/* nn_last_error() itself still describes the last error until cleared. */
static void test_last_error_stays_readable(void **st) {
    (void)st;
    nn_clear_error();
    nn_scope *s = nn_scope_begin();
    nn_tensor *a = vec(3, 0.0f), *b = vec(4, 0.0f);
    assert_null(nn_add(a, b));
    TU_NN(nn_relu(a));
    TU_OK(nn_tensor_fill(a, 1.0));
    expect_last(NN_ERR_SHAPE, "nn_add");
    nn_clear_error();
    assert_int_equal(nn_last_status(), NN_OK);
    assert_string_equal(nn_last_error(), "");
    /* after nn_clear_error nothing is pending either */
    assert_null(nn_relu(NULL));
    expect_last(NN_ERR_NULL, "nn_relu");
    nn_scope_end(s);
    nn_clear_error();
}

/* A chain through a module and a loss keeps the constructor's error. */
static void test_chain_through_module(void **st) {
    (void)st;
    nn_clear_error();
    nn_scope *s = nn_scope_begin();
    int64_t sh[] = {2, 3};
    nn_tensor *x = TU_NN(nn_tensor_ones(NN_DTYPE_F32, sh, 2));
    nn_module *lin = TU_NN(nn_linear_new(4, 2, true)); /* expects 4 features, gets 3 */
    int64_t n2 = 2;
    nn_tensor *y = TU_NN(nn_tensor_zeros(NN_DTYPE_I64, &n2, 1));
    assert_null(nn_cross_entropy(nn_module_forward(lin, x), y));
    if (nn_last_status() != NN_ERR_SHAPE || strstr(nn_last_error(), "nn_cross_entropy"))
        fail_msg("root cause lost: %d '%s'", (int)nn_last_status(), nn_last_error());
    nn_module_free(lin);
    nn_scope_end(s);
    nn_clear_error();
}

/* ------------------------------------------------------- size overflow */

static void test_slice_huge_step(void **st) {
    (void)st;
    nn_scope *s = nn_scope_begin();
    nn_tensor *a = vec(10, 0.0f);
    TU_OK(nn_tensor_set_requires_grad(a, true));
    /* a[3::INT64_MAX] is [a[3]] (Python: list(range(10))[3::2**63-1] == [3]) */
    nn_tensor *v = TU_NN(nn_slice(a, 0, 3, 10, INT64_MAX));
    assert_int_equal(nn_tensor_ndim(v), 1);
    assert_int_equal(nn_tensor_shape(v)[0], 1);
    assert_true(nn_tensor_item(v) == 3.0);
    /* stop = INT64_MAX and negative start, too */
    nn_tensor *v2 = TU_NN(nn_slice(a, 0, -2, INT64_MAX, INT64_MAX));
    assert_int_equal(nn_tensor_shape(v2)[0], 1);
    assert_true(nn_tensor_item(v2) == 8.0);
    /* empty results */
    nn_tensor *e = TU_NN(nn_slice(a, 0, 10, INT64_MAX, INT64_MAX));
    assert_int_equal(nn_tensor_shape(e)[0], 0);
    nn_tensor *e2 = TU_NN(nn_slice(a, 0, 7, 3, INT64_MAX - 1));
    assert_int_equal(nn_tensor_shape(e2)[0], 0);
    /* the backward scatters into position 3 only */
    TU_OK(nn_backward(nn_sum(nn_mul_scalar(v, 5.0), NULL, 0, false)));
    const float *g = nn_tensor_data(nn_tensor_grad(a));
    for (int i = 0; i < 10; i++) assert_true(g[i] == (i == 3 ? 5.0f : 0.0f));
    /* a huge step on a 2-D tensor's inner dim, then a view of the view */
    int64_t sh[] = {3, 4};
    nn_tensor *m = TU_NN(nn_reshape(vec(12, 0.0f), sh, 2));
    nn_tensor *c = TU_NN(nn_slice(m, 1, 1, INT64_MAX, INT64_MAX));
    assert_int_equal(nn_tensor_shape(c)[0], 3);
    assert_int_equal(nn_tensor_shape(c)[1], 1);
    nn_tensor *cc = TU_NN(nn_tensor_contiguous(c));
    const float *cp = nn_tensor_data(cc);
    assert_true(cp[0] == 1.0f && cp[1] == 5.0f && cp[2] == 9.0f);
    nn_scope_end(s);
}

static void test_shape_strides_overflow(void **st) {
    (void)st;
    nn_scope *s = nn_scope_begin();
    /* [0, 2^62, 4]: no elements, but the row-major stride of dim 0 would be
     * 2^64; rejected (it was created with an overflowed stride) */
    const int64_t big[] = {0, (int64_t)1 << 62, 4};
    assert_null(nn_tensor_empty(NN_DTYPE_F32, big, 3));
    tu_expect_error(NN_ERR_OVERFLOW, "nn_tensor_empty: shape [0,4611686018427387904,4]");
    assert_null(nn_tensor_zeros(NN_DTYPE_U8, big, 3));
    tu_expect_error(NN_ERR_OVERFLOW, "too many elements");
    const int64_t big2[] = {(int64_t)1 << 40, 0, (int64_t)1 << 40};
    assert_null(nn_tensor_empty(NN_DTYPE_F32, big2, 3));
    tu_expect_error(NN_ERR_OVERFLOW, "nn_tensor_empty");
    /* a reshape or expand of an empty tensor to such a shape fails the same way */
    const int64_t z[] = {0, 4};
    nn_tensor *e = TU_NN(nn_tensor_empty(NN_DTYPE_F32, z, 2));
    assert_null(nn_reshape(e, big, 3));
    tu_expect_error(NN_ERR_OVERFLOW, "nn_reshape");
    const int64_t one[] = {1, 1, 4};
    nn_tensor *o = TU_NN(nn_tensor_ones(NN_DTYPE_F32, one, 3));
    assert_null(nn_expand(o, big, 3));
    tu_expect_error(NN_ERR_OVERFLOW, "too many elements");
    /* zero-size tensors whose strides fit still work */
    const int64_t ok[] = {0, (int64_t)1 << 40, 4};
    nn_tensor *t = TU_NN(nn_tensor_empty(NN_DTYPE_F32, ok, 3));
    assert_int_equal(nn_tensor_numel(t), 0);
    nn_tensor *tt = TU_NN(nn_transpose(t, 0, 2));
    assert_int_equal(nn_tensor_shape(tt)[0], 4);
    nn_tensor *r = TU_NN(nn_reshape(t, (const int64_t[]){4, 0, (int64_t)1 << 40}, 3));
    assert_int_equal(nn_tensor_numel(r), 0);
    nn_tensor *sl = TU_NN(nn_slice(t, 1, 5, INT64_MAX, INT64_MAX));
    assert_int_equal(nn_tensor_shape(sl)[1], 1);
    nn_scope_end(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_keeps_root_cause),
        cmocka_unit_test(test_stale_error_not_blamed),
        cmocka_unit_test(test_last_error_stays_readable),
        cmocka_unit_test(test_chain_through_module),
        cmocka_unit_test(test_slice_huge_step),
        cmocka_unit_test(test_shape_strides_overflow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
