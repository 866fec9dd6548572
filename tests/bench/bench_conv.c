/* Convolution figures for the benchmark (bench.c calls bench_conv): each
 * pass of the demo CNN's two conv layers through nn_conv2d, once with the
 * backend's direct kernels and once with im2col + GEMM (forced through the
 * test hook nn__backend_force_conv), interleaved in the same run so a noisy
 * host hits both alike; and the fused inference layer (conv + ReLU + 2x2
 * max pool in one pass) against the three ops one after the other. These
 * are the measurements behind the tier's rule (conv.direct_passes).
 *
 *     BENCH conv_<layer>_b<N>_<pass>_<method> <threads> <us> us
 *
 * pass: fwd, bwd_data (x needs a gradient, w does not), bwd_weights (w and
 * b do, x does not); method: direct, im2col; and
 * conv_<layer>_b<N>_relu_pool_{fused,separate}. Medians. */
#include "bench_backend.h"

#include "backend/backend.h"
#include "backend/tier.h"
#include "nn.h"
#include "ops/conv_fuse.h"
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { P_FWD, P_BWD_DATA, P_BWD_WEIGHTS, P_FUSED };
static const char *const g_pass_name[] = {"fwd", "bwd_data", "bwd_weights", "relu_pool"};

typedef struct layer {
    const char *name;
    int64_t c, hw, o;
} layer;

/* One timed call of a pass (us); method 0: the first variant (direct or
 * fused), 1: the second (im2col or separate). */
static double run_once(int pass, int method, nn_tensor *x, nn_tensor *w, nn_tensor *b) {
    nn_scope *s = nn_scope_begin();
    double t0 = bench_now_s(), dt = 0.0;
    if (pass == P_FUSED) {
        nn_tensor *y;
        if (method == 0) {
            y = nn__conv2d_relu(x, w, b, 1, 1, 1, 1, 1, 1, 1, true);
        } else {
            y = nn_max_pool2d(nn_relu(nn_conv2d(x, w, b, 1, 1, 1, 1, 1, 1, 1)), 2, 2, 2, 2, 0, 0, 1,
                              1, false, NULL);
        }
        dt = bench_now_s() - t0;
        if (!y) fprintf(stderr, "bench_conv: %s\n", nn_last_error());
        nn_tensor_free(y);
    } else {
        nn_tensor *y = nn_conv2d(x, w, b, 1, 1, 1, 1, 1, 1, 1);
        if (pass == P_FWD) {
            dt = bench_now_s() - t0;
        } else if (y) {
            nn_tensor *seed = nn_tensor_ones(NN_DTYPE_F32, nn_tensor_shape(y), nn_tensor_ndim(y));
            t0 = bench_now_s();
            if (nn_backward_ex(y, seed, false) != NN_OK)
                fprintf(stderr, "bench_conv: %s\n", nn_last_error());
            dt = bench_now_s() - t0;
        }
    }
    nn_scope_end(s);
    nn_tensor_zero_grad(x), nn_tensor_zero_grad(w), nn_tensor_zero_grad(b);
    return dt * 1e6;
}

/* wino: the two methods are the direct kernels with Winograd F(2x2, 3x3)
 * forced on and off (nn__backend_force_winograd) for the unpooled forward,
 * the data gradient and the weight gradient, else direct and im2col (or fused and separate). */
static void bench_pass_k(const layer *l, int64_t batch, int pass, int threads, int reps,
                         const char *only, bool wino) {
    char name[2][96];
    const char *const meth[3][2] = {
        {"direct", "im2col"}, {"fused", "separate"}, {"wino", "direct"}};
    for (int m = 0; m < 2; m++)
        snprintf(name[m], sizeof name[m], "conv_%s_b%lld_%s_%s", l->name, (long long)batch,
                 g_pass_name[pass], meth[wino ? 2 : pass == P_FUSED][m]);
    if (only && strncmp(name[0], only, strlen(only)) != 0 &&
        strncmp(name[1], only, strlen(only)) != 0)
        return;
    nn_generator *g = nn_generator_new(11);
    const int64_t xs[4] = {batch, l->c, l->hw, l->hw}, ws[4] = {l->o, l->c, 3, 3};
    nn_tensor *x = nn_rand(g, xs, 4), *w = nn_uniform(g, ws, 4, -0.1, 0.1);
    nn_tensor *b = nn_uniform(g, &l->o, 1, -0.1, 0.1);
    if (!x || !w || !b) {
        fprintf(stderr, "bench_conv: %s\n", nn_last_error());
        return;
    }
    const bool grad = pass == P_BWD_DATA || pass == P_BWD_WEIGHTS;
    const bool was = nn_set_grad_enabled(grad);
    nn_tensor_set_requires_grad(x, pass == P_BWD_DATA);
    nn_tensor_set_requires_grad(w, pass == P_BWD_WEIGHTS);
    nn_tensor_set_requires_grad(b, pass == P_BWD_WEIGHTS);
    /* repeats of ~2 ms at least, alternating the two methods */
    double *r[2] = {malloc(sizeof(double) * (size_t)reps * 3),
                    malloc(sizeof(double) * (size_t)reps * 3)};
    const int n = reps * 3;
    for (int i = -2; i < n && r[0] && r[1]; i++)
        for (int m = 0; m < 2; m++) {
            if (wino)
                nn__backend_force_winograd(m == 0);
            else if (pass != P_FUSED)
                nn__backend_force_conv(m == 0 ? NN_CONV_FWD | NN_CONV_FWD_POOL | NN_CONV_BWD_DATA |
                                                    NN_CONV_BWD_WEIGHTS
                                              : 0);
            const double us = run_once(pass, m, x, w, b);
            if (i >= 0) r[m][i] = us;
        }
    nn__backend_force_conv(-1);
    nn__backend_force_winograd(-1);
    for (int m = 0; m < 2 && r[0] && r[1]; m++)
        printf("BENCH %s %d %.6g us\n", name[m], threads, bench_median(r[m], n));
    free(r[0]), free(r[1]);
    nn_set_grad_enabled(was);
    nn_tensor_free(x), nn_tensor_free(w), nn_tensor_free(b);
    nn_generator_free(g);
}

static void bench_pass(const layer *l, int64_t batch, int pass, int threads, int reps,
                       const char *only) {
    bench_pass_k(l, batch, pass, threads, reps, only, false);
}

/* Winograd against the direct tile on 3x3 layers around the demo CNN's
 * (conv_wino_c<C>o<O>s<HW>_b<N>_{fwd,bwd_data,bwd_weights}_{wino,direct}): the
 * measurements behind the x86 tiers' wg_fast_rule. Run only when asked
 * for by name (--case conv_wino). */
static void bench_wino(int threads, int reps, const char *only) {
    static const int64_t shapes[][4] = {
        /* c, o, hw, batch */
        {32, 64, 14, 64}, {8, 16, 14, 64},  {16, 16, 14, 64},  {16, 32, 14, 64}, {32, 32, 14, 64},
        {64, 64, 14, 64}, {64, 32, 14, 64}, {16, 16, 28, 32},  {32, 32, 28, 32}, {8, 32, 28, 32},
        {32, 64, 7, 64},  {64, 64, 7, 64},  {128, 128, 7, 64}, {64, 64, 4, 64},  {32, 64, 14, 4},
        {32, 64, 13, 64}, {32, 64, 15, 64}, {32, 64, 9, 64},   {32, 64, 8, 64},  {32, 64, 6, 64},
        {64, 64, 5, 64},  {64, 64, 3, 64},  {32, 64, 27, 16},
    };
    if (!only || strncmp(only, "conv_wino", 9) != 0) return;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        char nm[48];
        snprintf(nm, sizeof nm, "wino_c%lldo%llds%lld", (long long)shapes[i][0],
                 (long long)shapes[i][1], (long long)shapes[i][2]);
        const layer l = {nm, shapes[i][0], shapes[i][2], shapes[i][1]};
        bench_pass_k(&l, shapes[i][3], P_FWD, threads, reps, only, true);
        bench_pass_k(&l, shapes[i][3], P_BWD_DATA, threads, reps, only, true);
        bench_pass_k(&l, shapes[i][3], P_BWD_WEIGHTS, threads, reps, only, true);
    }
}

void bench_conv(int threads, int reps, const char *only) {
    bench_wino(threads, reps, only);
    static const layer layers[] = {{"conv1", 1, 28, 32}, {"conv2", 32, 14, 64}};
    for (int li = 0; li < 2; li++) {
        for (int pass = P_FWD; pass <= P_BWD_WEIGHTS; pass++)
            bench_pass(&layers[li], 64, pass, threads, reps, only);
        bench_pass(&layers[li], 1, P_FWD, threads, reps, only);
        bench_pass(&layers[li], 256, P_FWD, threads, reps, only);
        bench_pass(&layers[li], 1, P_FUSED, threads, reps, only);
        bench_pass(&layers[li], 256, P_FUSED, threads, reps, only);
    }
}
