/* Issue "running it in production": nn_memory_stats' peak against the
 * process's own figure. A few training steps of the demo CNN (the
 * configuration of examples/fashion_mnist_cnn.c) on synthetic data, with a
 * batch large enough that libnn's allocations dominate the process's growth;
 * the growth of the resident set's high-water mark (VmHWM, reset through
 * /proc/self/clear_refs first) must agree with libnn's peak within 10%.
 * Its own process (a fresh heap), one thread, Linux only. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A field of /proc/self/status in KiB, or -1. */
static long status_kb(const char *field) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* Reset VmHWM to the current RSS (Linux >= 4.0); false when not allowed. */
static bool reset_hwm(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return false;
    bool ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok;
}

static void test_peak_vs_rss(void **s) {
    (void)s;
    const char *pre = getenv("LD_PRELOAD");
    if ((pre && strstr(pre, "valgrind")) || getenv("NN_UNDER_VALGRIND")) skip();
#if defined(__SANITIZE_ADDRESS__)
    skip(); /* ASan's shadow memory and quarantine are not libnn's */
#endif
    if (status_kb("VmHWM") < 0) skip();
    TU_OK(nn_set_num_threads(1));
    /* Touch the library's code paths once on a tiny problem, so that the
     * measured growth is data, not the first use of code pages. */
    const int64_t batch = 256, n = 512;
    nn_module *net = TU_NN(nn_sequential_new());
    nn_module *layers[] = {
        nn_conv2d_new(1, 32, 3, 1, 1, true),  nn_relu_new(), nn_max_pool2d_new(2, 2, 0),
        nn_conv2d_new(32, 64, 3, 1, 1, true), nn_relu_new(), nn_max_pool2d_new(2, 2, 0),
        nn_flatten_new(1, -1),
        nn_linear_new(64 * 7 * 7, 128, true), nn_relu_new(),
        nn_linear_new(128, 10, true),
    };
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++)
        TU_OK(nn_sequential_append(net, layers[i]));
    {
        nn_scope *sc = TU_NN(nn_scope_begin());
        nn_tensor *x = TU_NN(nn_tensor_zeros(NN_DTYPE_F32, (int64_t[]){2, 1, 28, 28}, 4));
        nn_tensor *y = TU_NN(nn_tensor_zeros(NN_DTYPE_I64, (int64_t[]){2}, 1));
        TU_OK(nn_backward(TU_NN(nn_cross_entropy(nn_module_forward(net, x), y))));
        TU_OK(nn_scope_end(sc));
        for (int64_t i = 0; i < nn_module_num_parameters(net); i++)
            TU_OK(nn_tensor_zero_grad(nn_module_parameter(net, i, NULL)));
    }

    nn_memory_stats_t st = {.size = sizeof st};
    TU_OK(nn_memory_reset_peak());
    TU_OK(nn_memory_stats(&st));
    const uint64_t base = st.current_total;
    if (!reset_hwm()) skip();
    const long rss0 = status_kb("VmRSS");

    nn_generator *g = TU_NN(nn_generator_new(5));
    nn_tensor *x = TU_NN(nn_uniform(g, (int64_t[]){n, 1, 28, 28}, 4, 0.0, 1.0));
    int64_t *lv = malloc(sizeof *lv * (size_t)n);
    for (int64_t i = 0; i < n; i++) lv[i] = i % 10;
    nn_tensor *y = TU_NN(nn_tensor_from_data(NN_DTYPE_I64, &n, 1, lv));
    free(lv);
    nn_dataset *ds = TU_NN(nn_dataset_from_tensors(x, y));
    nn_loader *ld = TU_NN(nn_loader_new(ds, batch, true, 1));
    nn_optim *opt = TU_NN(nn_optim_new_module(NN_OPTIM_TYPE_ADAM, net, 1e-3));
    nn_tensor *bx, *by;
    for (int epoch = 0; epoch < 2; epoch++) {
        TU_OK(nn_loader_reset(ld));
        while (nn_loader_next(ld, &bx, &by)) {
            nn_scope *sc = TU_NN(nn_scope_begin());
            TU_OK(nn_optim_zero_grad(opt));
            TU_OK(nn_backward(TU_NN(nn_cross_entropy(nn_module_forward(net, bx), by))));
            TU_OK(nn_optim_step(opt));
            TU_OK(nn_scope_end(sc));
        }
    }
    const long hwm = status_kb("VmHWM");
    TU_OK(nn_memory_stats(&st));
    const double lib = (double)(st.peak_total - base) / 1024.0; /* KiB */
    const double proc = (double)(hwm - rss0);
    printf("libnn peak growth %.0f KiB (parameters %.0f, gradients %.0f, optimizer %.0f, "
           "activations %.0f, cache %.0f, data %.0f, other %.0f peaks), process VmHWM growth "
           "%.0f KiB: ratio %.3f\n",
           lib, st.peak[0] / 1024.0, st.peak[1] / 1024.0, st.peak[2] / 1024.0,
           st.peak[3] / 1024.0, st.peak[4] / 1024.0, st.peak[5] / 1024.0, st.peak[6] / 1024.0,
           proc, proc / lib);
    assert_true(lib > 50 * 1024.0); /* the configuration is big enough to measure */
    if (proc < 0.9 * lib || proc > 1.1 * lib)
        fail_msg("libnn's peak (%.0f KiB) and the RSS growth (%.0f KiB) differ by more than 10%%",
                 lib, proc);
    nn_optim_free(opt);
    nn_loader_free(ld);
    nn_dataset_free(ds);
    nn_tensor_free(x);
    nn_tensor_free(y);
    nn_generator_free(g);
    nn_module_free(net);
}

int main(int argc, char **argv) {
    (void)argc;
    /* glibc's MALLOC_PERTURB_ (set by `meson test`) writes every block it
     * hands out and takes back, which makes untouched memory resident: the
     * comparison is about libnn's use, so run without it. */
    const char *perturb = getenv("MALLOC_PERTURB_"), *pre = getenv("LD_PRELOAD");
    if (perturb && strcmp(perturb, "0") != 0 && !(pre && strstr(pre, "valgrind"))) {
        setenv("MALLOC_PERTURB_", "0", 1);
        execv("/proc/self/exe", argv);
        /* exec failed: measure anyway (the test may then fail honestly) */
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_peak_vs_rss)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
