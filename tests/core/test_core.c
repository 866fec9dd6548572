/* Status codes, errors, version, threads, allocator hook, size helpers. */
#include "testutil.h"
#include "nn_config.h"
#include "nn_internal.h"

#if NN_HAVE_BLIS
#include <blis.h>
#endif

#include <stdio.h>
#include <string.h>

static void test_version(void **s) {
    (void)s;
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", NN_VERSION_MAJOR, NN_VERSION_MINOR, NN_VERSION_PATCH);
    assert_string_equal(nn_version(), want);
}

static void test_status_strings(void **s) {
    (void)s;
    /* Pinned values: changing one is an ABI break. */
    assert_int_equal(NN_OK, 0);
    assert_int_equal(NN_ERR_NOMEM, -1);
    assert_int_equal(NN_ERR_SHAPE, -4);
    assert_int_equal(NN_ERR_LIMIT, -18);
    for (int c = 0; c >= NN_ERR_LIMIT; c--) {
        const char *m = nn_status_string((nn_status)c);
        assert_non_null(m);
        assert_non_null(strstr(m, c == 0 ? "NN_OK" : "NN_ERR_"));
    }
    assert_string_equal(nn_status_string((nn_status)-999), "unknown nn_status");
}

static void test_last_error(void **s) {
    (void)s;
    nn_clear_error();
    assert_int_equal(nn_last_status(), NN_OK);
    assert_string_equal(nn_last_error(), "");
    assert_int_equal(nn_set_num_threads(0), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "nn_set_num_threads: n = 0");
}

static void test_threads(void **s) {
    (void)s;
    assert_int_equal(nn_get_num_threads(), 1);
    TU_OK(nn_set_num_threads(2));
    assert_int_equal(nn_get_num_threads(), 2);
#if NN_HAVE_BLIS
    /* BLIS's own count follows, through the hook the backend registers with
     * core/runtime.c when the library loads (core never calls the backend).
     * nn_backend_info links the backend into this statically linked test;
     * libnn.so always carries it. */
    assert_non_null(nn_backend_info());
    assert_int_equal(bli_thread_get_num_threads(), 2);
#endif
    TU_OK(nn_set_num_threads(1));
#if NN_HAVE_BLIS
    assert_int_equal(bli_thread_get_num_threads(), 1);
#endif
}

static void test_size_helpers(void **s) {
    (void)s;
    size_t r = 7;
    assert_true(nn__size_mul(3, 4, &r));
    assert_int_equal(r, 12);
    assert_false(nn__size_mul(SIZE_MAX / 2 + 1, 2, &r));
    assert_int_equal(r, 12); /* untouched on overflow */
    assert_false(nn__size_add(SIZE_MAX, 1, &r));
    int64_t n;
    int64_t big[] = {1LL << 31, 1LL << 31, 4};
    assert_false(nn__shape_numel(big, 3, &n, "t"));
    tu_expect_error(NN_ERR_OVERFLOW, "too many elements");
    int64_t neg[] = {2, -1};
    assert_false(nn__shape_numel(neg, 2, &n, "t"));
    tu_expect_error(NN_ERR_SHAPE, "negative");
    assert_false(nn__shape_numel(neg, 9, &n, "t"));
    tu_expect_error(NN_ERR_LIMIT, "ndim = 9");
    int64_t ok[] = {2, 3, 0};
    assert_true(nn__shape_numel(ok, 3, &n, "t"));
    assert_int_equal(n, 0);
}

static void test_allocator_hook(void **s) {
    (void)s;
    assert_int_equal(nn_set_allocator(NULL, NULL, (nn_free_fn)0x1, NULL), NN_ERR_NULL);
    nn_clear_error();
    tu_alloc_install();
    long live = tu_alloc_live();
    int64_t shape[] = {3, 3};
    nn_tensor *t = nn_tensor_zeros(NN_DTYPE_F32, shape, 2);
    assert_non_null(t);
    assert_true(tu_alloc_live() > live);
    nn_tensor_free(t);
    assert_int_equal(tu_alloc_live(), live);
    tu_alloc_fail_at(1);
    assert_null(nn_tensor_zeros(NN_DTYPE_F32, shape, 2));
    tu_expect_error(NN_ERR_NOMEM, "out of memory");
    tu_alloc_fail_at(0);
    tu_alloc_uninstall();
}

static void test_aligned(void **s) {
    (void)s;
    for (size_t n = 1; n < 300; n += 37) {
        void *p = nn__aligned_alloc(n);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 64, 0);
        memset(p, 0xab, n);
        nn__aligned_free(p);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),      cmocka_unit_test(test_status_strings),
        cmocka_unit_test(test_last_error),   cmocka_unit_test(test_threads),
        cmocka_unit_test(test_size_helpers), cmocka_unit_test(test_allocator_hook),
        cmocka_unit_test(test_aligned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
