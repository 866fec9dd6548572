/* The int8 convolution chain on wider images and small batches (issue 14):
 * conv 1->32 3x3 + ReLU + 2x2 pool, conv 32->64 3x3 + ReLU + 2x2 pool, f32
 * against int8 (dynamic activations) in the same run, the two forwards
 * interleaved round by round, each figure the median of its rounds by the
 * wall clock and by the calling thread's CPU time. Images HxH for H in 28,
 * 56, 112 at batch 1 and 8. One thread unless --threads N; --tier avx2 (or
 * ref) runs an older machine's kernels. Output lines:
 *
 *     BENCH qchain_<H>_b<batch>_<f32|dyn> <threads> <median> us cpu <median> us
 *     RATIO qchain_<H>_b<batch>_dyn <int8 time / f32 time>
 *
 * (ratios of thread CPU times with one thread, of wall times otherwise.)
 * What it watches: the chain's per-thread scratch kept between calls (a
 * 56x56 image cost 10x more when it was allocated per call), and whole
 * images per thread from batch 2. */
#include "nn.h"
#include "bench_tier.h"
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double us(clockid_t clk) {
    struct timespec t;
    clock_gettime(clk, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

static nn_module *make_net(void) {
    nn_module *m = nn_sequential_new();
    nn_sequential_append(m, nn_conv2d_new(1, 32, 3, 1, 1, true));
    nn_sequential_append(m, nn_relu_new());
    nn_sequential_append(m, nn_max_pool2d_new(2, 2, 0));
    nn_sequential_append(m, nn_conv2d_new(32, 64, 3, 1, 1, true));
    nn_sequential_append(m, nn_relu_new());
    nn_sequential_append(m, nn_max_pool2d_new(2, 2, 0));
    nn_module_train(m, false);
    return m;
}

/* Wall and thread-CPU microseconds of one forward, averaged over `inner`. */
static double forward_us(nn_module *m, nn_tensor *x, int inner, double *cpu) {
    double t0 = us(CLOCK_MONOTONIC), c0 = us(CLOCK_THREAD_CPUTIME_ID);
    for (int i = 0; i < inner; i++) {
        nn_scope *s = nn_scope_begin();
        if (!nn_module_forward(m, x)) {
            fprintf(stderr, "forward: %s\n", nn_last_error());
            exit(1);
        }
        nn_scope_end(s);
    }
    *cpu = (us(CLOCK_THREAD_CPUTIME_ID) - c0) / inner;
    return (us(CLOCK_MONOTONIC) - t0) / inner;
}

int main(int argc, char **argv) {
    int threads = 1, rounds = 15;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--tier") && i + 1 < argc) {
            if (!bench_force_tier(argv[++i])) return 2;
        } else if (!strcmp(argv[i], "--quick")) {
            rounds = 7;
        } else {
            fprintf(stderr, "usage: bench_qchain [--threads N] [--quick] [--tier ref|avx2|avx512]\n");
            return 2;
        }
    }
    if (nn_set_num_threads(threads) != NN_OK) return 2;
    nn_set_grad_enabled(false);
    nn_generator_seed(NULL, 1);
    nn_module *f32 = make_net(), *dyn = make_net();
    /* the same weights in both */
    for (int i = 0; i < 2; i++) {
        nn_module *a = nn_sequential_get(f32, 3 * i), *b = nn_sequential_get(dyn, 3 * i);
        for (int p = 0; p < 2; p++) {
            nn_tensor *src = nn_module_parameter(a, p, NULL), *dst = nn_module_parameter(b, p, NULL);
            memcpy(nn_tensor_data(dst), nn_tensor_data(src),
                   sizeof(float) * (size_t)nn_tensor_numel(src));
        }
    }
    if (nn_quantize_dynamic(dyn, NULL, NULL) != NN_OK) {
        fprintf(stderr, "nn_quantize_dynamic: %s\n", nn_last_error());
        return 1;
    }
    static const int sizes[3] = {28, 56, 112}, batches[2] = {1, 8};
    nn_generator *g = nn_generator_new(7);
    for (int si = 0; si < 3; si++)
        for (int bi = 0; bi < 2; bi++) {
            const int h = sizes[si], nb = batches[bi];
            const int64_t shape[4] = {nb, 1, h, h};
            nn_tensor *x = nn_randn(g, shape, 4);
            /* enough forwards per round for ~1 ms of f32 work */
            const int inner = 1 + 40000 / (h * h * nb);
            nn_module *ms[2] = {f32, dyn};
            double t[2][64], c[2][64], dummy;
            for (int k = 0; k < 2; k++) forward_us(ms[k], x, inner, &dummy); /* warm-up */
            for (int r = 0; r < rounds; r++)
                for (int k = 0; k < 2; k++) t[k][r] = forward_us(ms[k], x, inner, &c[k][r]);
            double wall[2], cpu[2];
            for (int k = 0; k < 2; k++) {
                wall[k] = bench_median(t[k], rounds), cpu[k] = bench_median(c[k], rounds);
                printf("BENCH qchain_%d_b%d_%s %d %.2f us cpu %.2f us\n", h, nb,
                       k ? "dyn" : "f32", threads, wall[k], cpu[k]);
            }
            printf("RATIO qchain_%d_b%d_dyn %.3f\n", h, nb,
                   threads == 1 ? cpu[1] / cpu[0] : wall[1] / wall[0]);
            fflush(stdout);
            nn_tensor_free(x);
        }
    nn_generator_free(g);
    nn_module_free(f32);
    nn_module_free(dyn);
    return 0;
}
