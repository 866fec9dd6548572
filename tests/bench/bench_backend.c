/* Backend figures for the benchmark (bench.c calls bench_backend): the FMA
 * peak of the selected ISA tier, and sgemm at 1024^3 and at the demo models'
 * GEMM shapes (with the transposes the layers really use) through libnn's
 * kernel table and straight through BLIS in the same run. Medians of
 * repeats; each repeat loops a shape for at least ~2 ms. */
#include "bench_backend.h"

#include "backend/backend.h"
#include "backend/conv.h"
#include "backend/tier.h"
#include "nn.h"
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static float *rand_buf(int64_t n, unsigned seed) {
    float *p = NULL;
    if (posix_memalign((void **)&p, 64, (size_t)n * sizeof(float) + 64) != 0) return NULL;
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)(seed >> 8) * (1.0f / 16777216.0f) - 0.5f;
    }
    return p;
}

/* GFLOP/s of f on one shape: median over `reps` repeats, each as many
 * calls as fill ~2 ms (at least one). *cpu_gflops: the same from the calling
 * thread's CPU time (what the kernel runs at when it runs: on a busy host
 * the wall figure also counts the time other processes held the core; only
 * meaningful at 1 thread). */
static double time_shape(nn__sgemm_fn f, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                         const float *a, const float *b, float *c, int reps, double *cpu_gflops) {
    const int64_t lda = ta ? m : k, ldb = tb ? k : n;
    const double flop = 2.0 * (double)m * (double)n * (double)k;
    double t0 = bench_now_s();
    f(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, n); /* warm up: buffers, caches */
    double one = bench_now_s() - t0;
    int calls = one > 0 ? (int)(2e-3 / one) : 1;
    if (calls < 1) calls = 1;
    if (calls > 10000) calls = 10000;
    double r[64], rc[64];
    if (reps > 64) reps = 64;
    for (int i = 0; i < reps; i++) {
        double c0 = bench_thread_cpu_s();
        t0 = bench_now_s();
        for (int j = 0; j < calls; j++) f(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, n);
        r[i] = flop * calls / (bench_now_s() - t0) * 1e-9;
        rc[i] = flop * calls / (bench_thread_cpu_s() - c0) * 1e-9;
    }
    *cpu_gflops = bench_median(rc, reps);
    return bench_median(r, reps);
}

typedef struct gemm_shape {
    const char *layer; /* where the models run it */
    bool ta, tb;
    int64_t m, n, k;
    int conv;        /* 1 or 2: the CNN's conv layer of this im2col GEMM, 0: none */
    unsigned pass;   /* that conv's pass (NN_CONV_*) */
    const char *off; /* why the models never run it, NULL: they do */
} gemm_shape;

/* The GEMMs of one CNN / MLP training step at batch 64 (tests/bench's
 * models; conv layers as im2col + GEMM: conv1 in chunks of 9 images, conv2
 * per image), plus the 1024^3 reference product. The conv GEMMs run only for
 * the passes the tier's direct convolution does not take (route()). */
static const gemm_shape g_shapes[] = {
    {"1024", false, false, 1024, 1024, 1024, 0, 0, NULL},
    {"cnn_conv1_fwd", false, false, 32, 7056, 9, 1, NN_CONV_FWD, NULL},
    {"cnn_conv1_bwd_w", false, true, 32, 9, 7056, 1, NN_CONV_BWD_WEIGHTS, NULL},
    {"cnn_conv2_fwd", false, false, 64, 196, 288, 2, NN_CONV_FWD, NULL},
    {"cnn_conv2_bwd_w", false, true, 64, 288, 196, 2, NN_CONV_BWD_WEIGHTS, NULL},
    {"cnn_conv2_bwd_x", true, false, 288, 196, 64, 2, NN_CONV_BWD_DATA, NULL},
    {"cnn_fc1_fwd", false, true, 64, 128, 3136, 0, 0, NULL},
    {"cnn_fc1_bwd_x", false, false, 64, 3136, 128, 0, 0, NULL},
    {"cnn_fc1_bwd_w", true, false, 128, 3136, 64, 0, 0, NULL},
    {"mlp_fc1_fwd", false, true, 64, 256, 784, 0, 0, NULL},
    {"mlp_fc1_bwd_x", false, false, 64, 784, 256, 0, 0,
     "the data gradient of the first layer, run only when the input needs a gradient: never in "
     "the models' training"},
    {"mlp_fc1_bwd_w", true, false, 256, 784, 64, 0, 0, NULL},
    {"mlp_fc2_fwd", false, true, 64, 128, 256, 0, 0, NULL},
    {"mlp_fc2_bwd_x", false, false, 64, 256, 128, 0, 0, NULL},
    {"mlp_fc2_bwd_w", true, false, 128, 256, 64, 0, 0, NULL},
};

/* Why the models do not run this GEMM on the selected tier, NULL when they
 * do: a conv pass the direct kernels take never reaches the GEMM (the tier's
 * rule on the layer's geometry at batch 64: conv1 1->32 channels on 28x28,
 * conv2 32->64 on 14x14, 3x3, padding 1). */
static const char *route(const gemm_shape *s) {
    if (s->off || !s->conv) return s->off;
    const nn_kernels *kr = nn__kernels();
    if (!kr->conv.direct_passes) return NULL;
    const int64_t hw = s->conv == 1 ? 28 : 14;
    nn__conv2d d = {.n = 64,
                    .c = s->conv == 1 ? 1 : 32,
                    .h = hw,
                    .w = hw,
                    .o = s->conv == 1 ? 32 : 64,
                    .g = {.kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1, .pw = 1, .dh = 1, .dw = 1,
                          .oh = hw, .ow = hw}};
    return kr->conv.direct_passes(&d) & s->pass
               ? "this pass runs as a direct convolution on this tier, not through GEMM"
               : NULL;
}

void bench_backend(int threads, int reps, const char *only) {
    const int tier = nn__backend_tier();
    char name[128];
    /* at 2+ threads the peak of that many threads running at once (on a
     * VM two vCPUs need not reach twice one's: compare.py takes this figure
     * for the sgemm shares at that thread count) */
    snprintf(name, sizeof name, "fma_peak_%s", nn__tier_name(tier));
    if (bench_wanted(only, name) && tier != NN_TIER_REF) {
        printf("BENCH %s %d %.6g GFLOP/s\n", name, threads,
               nn__tier_fma_peak_threads(tier, threads));
        fflush(stdout);
    }
    nn__sgemm_fn ours = nn__kernels()->gemm.sgemm, blis = nn__blis_sgemm();
    for (size_t i = 0; i < sizeof g_shapes / sizeof g_shapes[0]; i++) {
        const gemm_shape *s = &g_shapes[i];
        snprintf(name, sizeof name, "sgemm_%s", s->layer);
        char bname[128];
        snprintf(bname, sizeof bname, "blis_sgemm_%s", s->layer);
        if (!bench_wanted(only, name) && !bench_wanted(only, bname)) continue;
        float *a = rand_buf(s->m * s->k, 1), *b = rand_buf(s->k * s->n, 2);
        float *c = rand_buf(s->m * s->n, 3);
        if (!a || !b || !c) {
            fprintf(stderr, "bench: out of memory for %s\n", name);
            free(a), free(b), free(c);
            continue;
        }
        char shape[64];
        snprintf(shape, sizeof shape, "%s%s %lldx%lldx%lld", s->ta ? "T" : "N", s->tb ? "T" : "N",
                 (long long)s->m, (long long)s->n, (long long)s->k);
        /* interleave the two providers so both see the same machine load */
        double g_ours = 0, g_blis = 0, c_ours = 0, c_blis = 0;
        /* the peak again beside the shape (the higher of just before and
         * just after it): a VM's host can change the clock within seconds,
         * which the run's first peak does not see */
        double adj = 0.0; /* 0 on the reference tier: no peak */
        if (bench_wanted(only, name)) {
            const double before = nn__tier_fma_peak_threads(tier, threads);
            g_ours = time_shape(ours, s->ta, s->tb, s->m, s->n, s->k, a, b, c, reps, &c_ours);
            adj = nn__tier_fma_peak_threads(tier, threads);
            if (before > adj) adj = before;
        }
        if (blis && bench_wanted(only, bname))
            g_blis = time_shape(blis, s->ta, s->tb, s->m, s->n, s->k, a, b, c, reps, &c_blis);
        if (g_ours > 0) printf("BENCH %s %d %.6g GFLOP/s\n", name, threads, g_ours);
        if (adj > 0) printf("# adjacent peak: %s %d %.6g GFLOP/s\n", name, threads, adj);
        if (g_blis > 0) printf("BENCH %s %d %.6g GFLOP/s\n", bname, threads, g_blis);
        const char *off = route(s);
        if (threads == 1)
            printf("# %s: %s; by thread CPU time: libnn %.4g, BLIS %.4g GFLOP/s\n", s->layer, shape,
                   c_ours, c_blis);
        else
            printf("# %s: %s\n", s->layer, shape);
        /* compare.py reads this line: the shape stays in the table, marked */
        if (off) printf("# off the models' path: %s (%s)\n", name, off);
        fflush(stdout);
        free(a), free(b), free(c);
    }
}
