/* Issue "ops and autograd": a 1000-step forward + backward + release loop on
 * a small CNN leaks nothing and its RSS stays flat. Leaks are counted through
 * the allocator hook (every block the library allocates); RSS is read from
 * /proc/self/statm. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, res = 0;
    if (!f) return 0;
    if (fscanf(f, "%ld %ld", &pages, &res) != 2) res = 0;
    fclose(f);
    return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static void test_cnn_loop(void **s) {
    (void)s;
    tu_alloc_install();
    long live0 = tu_alloc_live();
    nn_generator *g = nn_generator_new(1);
    nn_tensor *w1 = TU_NN(nn_normal(g, (int64_t[]){4, 1, 3, 3}, 4, 0, 0.3));
    nn_tensor *b1 = TU_NN(nn_tensor_zeros(NN_DTYPE_F32, (int64_t[]){4}, 1));
    nn_tensor *w2 = TU_NN(nn_normal(g, (int64_t[]){3, 4 * 4 * 4}, 2, 0, 0.1));
    nn_tensor *b2 = TU_NN(nn_tensor_zeros(NN_DTYPE_F32, (int64_t[]){3}, 1));
    nn_tensor *ps[] = {w1, b1, w2, b2};
    for (int i = 0; i < 4; i++) TU_OK(nn_tensor_set_requires_grad(ps[i], true));
    nn_tensor *x = TU_NN(nn_randn(g, (int64_t[]){2, 1, 8, 8}, 4));
    long rss_mid = 0;
    for (int step = 0; step < 1000; step++) {
        nn_scope *sc = TU_NN(nn_scope_begin());
        nn_tensor *h = nn_max_pool2d(nn_relu(nn_conv2d(x, w1, b1, 1, 1, 1, 1, 1, 1, 1)), 2, 2, 2, 2, 0,
                                     0, 1, 1, false, NULL);
        nn_tensor *logits = nn_linear(nn_flatten(h, 1, -1), w2, b2);
        nn_tensor *loss = nn_mean(nn_neg(nn_log_softmax(logits, 1)), NULL, 0, false);
        TU_NN(loss);
        TU_OK(nn_backward(loss));
        /* a plain SGD update under no-grad */
        bool prev = nn_set_grad_enabled(false);
        for (int i = 0; i < 4; i++) {
            float *p = nn_tensor_data(ps[i]);
            const float *gr = nn_tensor_data(nn_tensor_grad(ps[i]));
            for (int64_t k = 0; k < nn_tensor_numel(ps[i]); k++) p[k] -= 0.01f * gr[k];
            nn_tensor_zero_grad(ps[i]);
        }
        nn_set_grad_enabled(prev);
        TU_OK(nn_scope_end(sc));
        if (step == 100) rss_mid = rss_kb();
    }
    long rss_end = rss_kb();
    for (int i = 0; i < 4; i++) nn_tensor_free(ps[i]);
    nn_tensor_free(x);
    nn_generator_free(g);
    assert_int_equal(tu_alloc_live(), live0); /* every block returned */
    /* RSS flat: allow 2 MB of allocator noise between step 100 and 1000.
     * Under valgrind, its free-block quarantine grows RSS by design: there
     * the block count above is the check. */
    const char *pre = getenv("LD_PRELOAD");
    bool under_valgrind = pre && strstr(pre, "valgrind");
#if defined(__SANITIZE_ADDRESS__)
    under_valgrind = true; /* ASan's quarantine grows RSS the same way */
#endif
    if (!under_valgrind && rss_mid && rss_end - rss_mid > 2048)
        fail_msg("RSS grew from %ld KB to %ld KB", rss_mid, rss_end);
    tu_alloc_uninstall();
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_cnn_loop)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
