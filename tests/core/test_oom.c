/* Out-of-memory sweeps: fail the k-th allocation for every k across tensor
 * creation, views, scopes and backward; every run must report NN_ERR_NOMEM
 * (or succeed) and leak nothing. */
#include "testutil.h"

static int body_create(void *ctx) {
    (void)ctx;
    int rc = 1;
    nn_tensor *a = nn_arange(0, 24, 1, NN_DTYPE_F32);
    nn_tensor *b = nn_reshape(a, (int64_t[]){2, 3, 4}, 3);
    nn_tensor *c = nn_tensor_to(b, NN_DTYPE_I64);
    nn_tensor *d = nn_tensor_clone(b);
    nn_generator *g = nn_generator_new(3);
    nn_tensor *r = g ? nn_randn(g, (int64_t[]){5, 5}, 2) : NULL;
    nn_tensor *p = g ? nn_randperm(g, 10) : NULL;
    char *str = b ? nn_tensor_format(b, 3) : NULL;
    if (a && b && c && d && g && r && p && str) rc = 0;
    nn_free(str);
    nn_tensor *ts[] = {a, b, c, d, r, p};
    for (int i = 0; i < 6; i++) nn_tensor_free(ts[i]);
    nn_generator_free(g);
    return rc;
}

static int body_backward(void *ctx) {
    (void)ctx;
    int rc = 1;
    nn_tensor *x = nn_tensor_ones(NN_DTYPE_F32, (int64_t[]){3, 4}, 2);
    if (!x || nn_tensor_set_requires_grad(x, true)) goto out;
    nn_scope *s = nn_scope_begin();
    if (!s) goto out;
    nn_tensor *y = nn_tensor_contiguous(nn_slice(nn_transpose(x, 0, 1), 0, 1, 4, 2));
    nn_tensor *seed = y ? nn_tensor_ones(NN_DTYPE_F32, nn_tensor_shape(y), nn_tensor_ndim(y)) : NULL;
    if (y && seed && nn_backward_ex(y, seed, false) == NN_OK && nn_tensor_grad(x)) rc = 0;
    nn_scope_end(s);
out:
    nn_tensor_free(x);
    return rc;
}

static void test_oom_create(void **s) {
    (void)s;
    long sites = tu_oom_sweep(body_create, NULL);
    assert_true(sites > 10);
}

static void test_oom_backward(void **s) {
    (void)s;
    long sites = tu_oom_sweep(body_backward, NULL);
    assert_true(sites > 10);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oom_create),
        cmocka_unit_test(test_oom_backward),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
