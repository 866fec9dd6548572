/* Attention benchmark (never a unit test). Lines:
 *     BENCH <case> <threads> <value> <unit>
 * sdpa_mem_t4096: peak RSS growth of nn_scaled_dot_product_attention
 *   forward + backward at B=1, H=4, T=4096, D=64, divided by the bytes of
 *   q, k, v, out and their four gradients (the tensors themselves); the
 *   target is <= 2. Measured first, with the peak reset through
 *   /proc/self/clear_refs, so nothing else in the run inflates it.
 * sdpa_<causal|full>_t<T> / sdpa_naive_...: ms per forward + backward
 *   (median of repeats) of the tiled op and of the materialised
 *   softmax(q kᵀ / sqrt(D) + mask) v built from nn_matmul / nn_softmax, and
 *   their ratio (speedup, > 1 = the tiled op is faster). */
#include "nn.h"
#include "bench_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* VmRSS or VmHWM of this process in bytes (-1 if unreadable). */
static long long proc_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long long v = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0) {
            v = atoll(line + n + 1) * 1024;
            break;
        }
    fclose(f);
    return v;
}

static void reset_peak(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

static nn_tensor *param(nn_generator *g, const int64_t *shape) {
    nn_tensor *t = nn_randn(g, shape, 4);
    nn_tensor_set_requires_grad(t, true);
    return t;
}

static void bench_memory(void) {
    const int64_t shape[] = {1, 4, 4096, 64};
    nn_generator *g = nn_generator_new(1);
    nn_tensor *warm = nn_randn(g, shape, 4); /* touch the allocator and the pool once */
    nn_tensor_free(warm);
    reset_peak();
    long long base = proc_kb("VmRSS:");
    nn_tensor *q = param(g, shape), *k = param(g, shape), *v = param(g, shape);
    nn_tensor *out = nn_scaled_dot_product_attention(q, k, v, NULL, true, 0.0, 0.0, NULL);
    if (!out) bench_die("forward");
    nn_tensor *gout = nn_randn(g, shape, 4);
    if (nn_backward_ex(out, gout, false) != NN_OK) bench_die("backward");
    long long peak = proc_kb("VmHWM:");
    const double tensors = 8.0 * 4 * 4096 * 64 * sizeof(float);
    if (base > 0 && peak > 0) {
        printf("# sdpa memory: peak RSS growth %.1f MiB for %.1f MiB of q/k/v/out/gradients\n",
               (double)(peak - base) / 1048576.0, tensors / 1048576.0);
        printf("BENCH sdpa_mem_t4096 1 %.3f x\n", (double)(peak - base) / tensors);
    }
    nn_tensor_free(gout);
    nn_tensor_free(out);
    nn_tensor_free(q);
    nn_tensor_free(k);
    nn_tensor_free(v);
    nn_generator_free(g);
}

/* The materialised reference: scores [B, H, T, T] in memory. */
static nn_tensor *naive(nn_tensor *q, nn_tensor *k, nn_tensor *v, nn_tensor *add, double scale) {
    nn_tensor *s = nn_mul_scalar(nn_matmul(q, nn_transpose(k, 2, 3)), scale);
    if (add) s = nn_add(s, add);
    return nn_matmul(nn_softmax(s, 3), v);
}

static double time_case(int T, bool causal, bool tiled, int reps) {
    const int64_t shape[] = {1, 4, T, 64}, ms[] = {T, T};
    nn_generator *g = nn_generator_new(2);
    nn_tensor *q = param(g, shape), *k = param(g, shape), *v = param(g, shape);
    nn_tensor *gout = nn_randn(g, shape, 4);
    nn_tensor *add = NULL;
    if (causal && !tiled) { /* 0 on and below the diagonal, -inf above */
        add = nn_tensor_zeros(NN_DTYPE_F32, ms, 2);
        float *a = nn_tensor_data(add);
        for (int i = 0; i < T; i++)
            for (int j = i + 1; j < T; j++) a[(size_t)i * T + j] = -INFINITY;
    }
    double *r = malloc(sizeof(double) * (size_t)reps);
    for (int it = 0; it < reps + 1; it++) {
        nn_scope *sc = nn_scope_begin();
        double t0 = bench_now_s();
        nn_tensor *out = tiled ? nn_scaled_dot_product_attention(q, k, v, NULL, causal, 0.0, 0.0, NULL)
                               : naive(q, k, v, add, 1.0 / sqrt(64.0));
        if (!out || nn_backward_ex(out, gout, false) != NN_OK) bench_die("timing");
        double t1 = bench_now_s();
        nn_scope_end(sc);
        nn_tensor_zero_grad(q);
        nn_tensor_zero_grad(k);
        nn_tensor_zero_grad(v);
        if (it > 0) r[it - 1] = (t1 - t0) * 1e3; /* the first run warms up */
    }
    qsort(r, (size_t)reps, sizeof *r, bench_cmp_double);
    double med = r[reps / 2];
    free(r);
    nn_tensor_free(add);
    nn_tensor_free(gout);
    nn_tensor_free(q);
    nn_tensor_free(k);
    nn_tensor_free(v);
    nn_generator_free(g);
    return med;
}

int main(void) {
    bench_prog = "bench_attention";
    printf("# backend: %s\n", nn_backend_info());
    bench_memory();
    const int threads[] = {1, 2};
    for (int ti = 0; ti < 2; ti++) {
        nn_set_num_threads(threads[ti]);
        for (int c = 0; c < 2; c++) {
            const bool causal = c == 0;
            const int T = 1024, reps = 5;
            double tiled = time_case(T, causal, true, reps);
            double ref = time_case(T, causal, false, reps);
            const char *kind = causal ? "causal" : "full";
            printf("BENCH sdpa_%s_t%d %d %.3f ms\n", kind, T, threads[ti], tiled);
            printf("BENCH sdpa_naive_%s_t%d %d %.3f ms\n", kind, T, threads[ti], ref);
            printf("BENCH sdpa_speedup_%s_t%d %d %.3f x\n", kind, T, threads[ti], ref / tiled);
            fflush(stdout);
        }
    }
    return 0;
}
