/* int8 inference benchmark (issue "Smaller and faster inference"): the demo
 * CNN at batch 1 and 256 and the MLP 784-256-128-10 at batch 1 (and 256),
 * f32 against int8 with dynamic and with static activations, in the same
 * run: the three forwards are interleaved round by round and each figure is
 * the median of its rounds, by the wall clock and by the calling thread's
 * CPU time (the figure a loaded machine distorts least; it covers the work
 * only with one thread). Also the model-file sizes. Then, in the same run,
 * PyTorch's quantize_dynamic / static on the same models (bench_quant_torch.py
 * under /usr/bin/python3; --no-torch skips it, --torch PATH names the
 * script) and the targets against both. One thread unless
 * --threads N; --tier avx2 (or ref) runs an older machine's kernels. Output
 * lines:
 *
 *     BENCH q_<model>_b<batch>_<f32|dyn|static> <threads> <median> us cpu <median> us
 *     RATIO q_<model>_b<batch>_<dyn|static> <int8 latency / f32 latency>
 *     SIZE  q_<model> <f32 bytes> <int8 bytes> <ratio>
 *     BENCH torch_q_<model>_b<batch>_<f32|dyn|static> 1 <median> us cpu <median> us
 *     TARGET <what> <ratio> <bound> <met | NOT met> [wall | cpu]
 *
 * Ratios compare CPU times with one thread, wall times otherwise; batch-256
 * lines are throughput ratios (f32 time / int8 time, higher is better).
 * First, the packed int8 GEMM of the active tier on the CNN's shapes and a
 * square one, against the vpdpbusd peak measured in the same run (it links
 * the internal archive for the kernel table):
 *
 *     BENCH q_gemm_<m>x<n>x<k>[_w7] 1 <median> us cpu <median> us <GOP/s> GOP/s <pct>% of peak
 *
 * (_w7: the tier's reduced-range products, which its quantization picks.)
 *
 * Weights are the default initialisation (timing does not depend on their
 * values); static calibration uses 4 batches of N(0, 1) inputs. Accuracy
 * is examples/quantize.c's business (a trained model and the test set).
 * PyTorch's quantize_dynamic on the same models: bench_quant_torch.py. */
#include "backend/backend.h"
#include "backend/tier.h" /* nn__tier_int8_peak */
#include "nn.h"
#include "bench_models.h"
#include "bench_tier.h"
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

static nn_module *make_cnn(void) { return bench_need(bench_cnn(), "bench_cnn"); }
static nn_module *make_mlp(void) { return bench_need(bench_mlp(), "bench_mlp"); }

static nn_module *copy_of(nn_module *m, size_t *bytes) {
    void *data;
    size_t size;
    if (nn_model_save_buffer(m, NULL, NULL, &data, &size) != NN_OK) bench_die("save");
    nn_model *md = nn_model_load_buffer(data, size, NULL);
    nn_free(data);
    if (!md) bench_die("load");
    nn_module *c = nn_module_retain(nn_model_module(md));
    nn_model_free(md);
    if (bytes) *bytes = size;
    return c;
}

static size_t file_bytes(nn_module *m) {
    void *data;
    size_t size;
    if (nn_model_save_buffer(m, NULL, NULL, &data, &size) != NN_OK) bench_die("save");
    nn_free(data);
    return size;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double cpu_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

/* Mean wall and thread-CPU microseconds of `inner` forwards. */
static double forward_us(nn_module *m, nn_tensor *x, int inner, double *cpu) {
    double t0 = now_us(), c0 = cpu_us();
    for (int i = 0; i < inner; i++) {
        nn_scope *s = nn_scope_begin();
        if (!nn_module_forward(m, x)) bench_die("forward");
        nn_scope_end(s);
    }
    *cpu = (cpu_us() - c0) / inner;
    return (now_us() - t0) / inner;
}

/* Figures kept for the targets: [model][batch 1 | 256][f32, dyn, static]. */
enum { M_CNN, M_MLP };
static double g_lib[2][2][3], g_torch[2][2][3];
static bool g_have_torch;
static int g_threads = 1;

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp);
    return v[n / 2];
}

static void bench_model(const char *name, nn_module *(*make)(void), const int64_t *in, int nd,
                        int64_t batch, int rounds, int threads) {
    nn_generator_seed(NULL, 1);
    nn_module *f32 = make();
    nn_module_train(f32, false);
    size_t f32_bytes;
    nn_module *dyn = copy_of(f32, &f32_bytes), *sta = copy_of(f32, NULL);
    int64_t shape[4];
    memcpy(shape, in, sizeof(int64_t) * (size_t)nd);
    shape[0] = batch;
    nn_generator *g = nn_generator_new(7);
    nn_tensor *x = nn_randn(g, shape, nd);
    /* static calibration: 4 batches of 64 N(0,1) inputs */
    shape[0] = 256;
    nn_tensor *cx = nn_randn(g, shape, nd);
    nn_tensor *cy = nn_tensor_zeros(NN_DTYPE_I64, shape, 1);
    nn_dataset *ds = nn_dataset_from_tensors(cx, cy);
    nn_loader *ld = nn_loader_new(ds, 64, false, 0);
    if (nn_quantize_dynamic(dyn, NULL, NULL) != NN_OK) bench_die("nn_quantize_dynamic");
    if (nn_quantize_static(sta, ld, 4, NULL) != NN_OK) bench_die("nn_quantize_static");
    nn_module *ms[3] = {f32, dyn, sta};
    static const char *const tag[3] = {"f32", "dyn", "static"};
    const int inner = batch == 1 ? 20 : 1;
    bool grad = nn_set_grad_enabled(false);
    double *t[3], *c[3], dummy;
    for (int k = 0; k < 3; k++) {
        t[k] = malloc(sizeof(double) * (size_t)rounds);
        c[k] = malloc(sizeof(double) * (size_t)rounds);
        forward_us(ms[k], x, 2, &dummy); /* warm-up */
    }
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < 3; k++) t[k][r] = forward_us(ms[k], x, inner, &c[k][r]);
    nn_set_grad_enabled(grad);
    double med[3], cmed[3];
    for (int k = 0; k < 3; k++) {
        med[k] = median(t[k], rounds);
        cmed[k] = median(c[k], rounds);
        printf("BENCH q_%s_b%lld_%s %d %.2f us cpu %.2f us\n", name, (long long)batch, tag[k],
               threads, med[k], cmed[k]);
        free(t[k]), free(c[k]);
        g_lib[!strcmp(name, "mlp")][batch != 1][k] = threads == 1 ? cmed[k] : med[k];
    }
    for (int k = 1; k < 3; k++)
        printf("RATIO q_%s_b%lld_%s %.3f\n", name, (long long)batch, tag[k],
               threads == 1 ? cmed[k] / cmed[0] : med[k] / med[0]);
    if (batch == 1) {
        size_t q = file_bytes(sta);
        printf("SIZE q_%s %zu %zu %.3f\n", name, f32_bytes, q, (double)q / (double)f32_bytes);
    }
    fflush(stdout);
    nn_loader_free(ld), nn_dataset_free(ds);
    nn_tensor_free(x), nn_tensor_free(cx), nn_tensor_free(cy);
    nn_generator_free(g);
    nn_module_free(f32), nn_module_free(dyn), nn_module_free(sta);
}

#ifndef BENCH_QUANT_TORCH
#define BENCH_QUANT_TORCH "tests/bench/bench_quant_torch.py"
#endif

/* The int8 GEMM alone (raw sums, one thread): medians by thread CPU time. */
static void bench_gemm(int64_t m, int64_t n, int64_t k, int rounds, double peak) {
    const int64_t kp = (k + 3) & ~(int64_t)3;
    uint8_t *a = malloc((size_t)(m * kp));
    int8_t *qw = malloc((size_t)(n * k)), *w = malloc((size_t)nn__qpacked_bytes(n, k));
    int32_t *c = malloc(sizeof(int32_t) * (size_t)(m * n));
    for (int64_t i = 0; i < m * kp; i++) a[i] = (uint8_t)(i * 7 + 3);
    const nn__int8_kernels *k8 = &nn__kernels()->int8;
    /* the weight range quantization gives this tier (backend/int8.h: w7) */
    const bool w7 = k8->weight_bits() == 7;
    for (int64_t i = 0; i < n * k; i++)
        qw[i] = (int8_t)(w7 ? (i * 13) % 127 - 63 : (i * 13) % 255 - 127);
    k8->pack(n, k, qw, k, w);
    static const float one = 1.0f;
    static const int32_t zero = 0;
    nn__qgemm g = {.m = m, .n = n, .k = k, .a = a, .lda = kp, .w = w, .a_scale = &one,
                   .a_zp = &zero, .ldc = n, .c32 = c, .w7 = w7};
    const double ops = 2.0 * (double)m * (double)n * (double)k;
    const int inner = ops < 1e8 ? (int)(1e8 / ops) + 1 : 1;
    double *t = malloc(sizeof(double) * (size_t)rounds), *cp = malloc(sizeof(double) * (size_t)rounds);
    k8->gemm(&g);
    for (int r = 0; r < rounds; r++) {
        double t0 = now_us(), c0 = cpu_us();
        for (int i = 0; i < inner; i++) k8->gemm(&g);
        cp[r] = (cpu_us() - c0) / inner;
        t[r] = (now_us() - t0) / inner;
    }
    const double tw = median(t, rounds), tc = median(cp, rounds), gops = ops / tc * 1e-3;
    printf("BENCH q_gemm_%lldx%lldx%lld%s 1 %.2f us cpu %.2f us %.1f GOP/s %.0f%% of peak\n",
           (long long)m, (long long)n, (long long)k, w7 ? "_w7" : "", tw, tc, gops,
           peak > 0 ? 100.0 * gops / peak : 0.0);
    free(a), free(qw), free(w), free(c), free(t), free(cp);
}

/* Run PyTorch's side (one thread) and keep its medians; its lines are
 * echoed. A missing python or torch skips the comparison, it does not fail. */
static void run_torch(const char *script, bool quick) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s'%s 2>&1", script, quick ? " --quick" : "");
    FILE *f = popen(cmd, "r");
    if (!f) {
        printf("# PyTorch comparison skipped: cannot run %s\n", cmd);
        return;
    }
    char line[512];
    int got = 0;
    while (fgets(line, sizeof line, f)) {
        char model[16], tag[16];
        long long batch;
        int thr;
        double wall, cpu;
        if (sscanf(line, "BENCH torch_q_%15[a-z]_b%lld_%15[a-z0-9] %d %lf us cpu %lf us", model,
                   &batch, tag, &thr, &wall, &cpu) == 6) {
            const int mi = !strcmp(model, "mlp"), bi = batch != 1;
            const int ki = !strcmp(tag, "f32") ? 0 : !strcmp(tag, "dyn") ? 1 : 2;
            g_torch[mi][bi][ki] = g_threads == 1 ? cpu : wall;
            got++;
        }
        fputs(line, stdout);
    }
    const int rc = pclose(f);
    g_have_torch = rc == 0 && got == 12;
    if (!g_have_torch) printf("# PyTorch comparison incomplete (exit %d, %d lines)\n", rc, got);
}

static void target(const char *what, double ratio, double bound, bool at_most) {
    const bool met = at_most ? ratio <= bound : ratio >= bound;
    printf("TARGET %s %.3f %s %.2f %s %s\n", what, ratio, at_most ? "<=" : ">=", bound,
           met ? "met" : "NOT met", g_threads == 1 ? "cpu" : "wall");
}

static void targets(void) {
    static const char *const tag[3] = {"f32", "dyn", "static"};
    for (int k = 1; k < 3; k++) {
        char what[96];
        snprintf(what, sizeof what, "cnn_b1_%s/libnn_f32", tag[k]);
        target(what, g_lib[M_CNN][0][k] / g_lib[M_CNN][0][0], 0.5, true);
        if (g_have_torch) {
            snprintf(what, sizeof what, "cnn_b1_%s/torch_%s", tag[k], tag[k]);
            target(what, g_lib[M_CNN][0][k] / g_torch[M_CNN][0][k], 0.5, true);
        }
        snprintf(what, sizeof what, "cnn_b256_%s_throughput/libnn_f32", tag[k]);
        target(what, g_lib[M_CNN][1][0] / g_lib[M_CNN][1][k], 1.8, false);
        snprintf(what, sizeof what, "mlp_b1_%s/libnn_f32", tag[k]);
        target(what, g_lib[M_MLP][0][k] / g_lib[M_MLP][0][0], 0.6, true);
    }
}

int main(int argc, char **argv) {
    bench_prog = "bench_quant";
    int threads = 1, rounds = 31;
    bool torch = true;
    const char *script = BENCH_QUANT_TORCH;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick")) rounds = 7;
        else if (!strcmp(argv[i], "--no-torch")) torch = false;
        else if (!strcmp(argv[i], "--torch") && i + 1 < argc) script = argv[++i];
        else if (!strcmp(argv[i], "--tier") && i + 1 < argc) {
            /* measure an older machine's kernels: ref, avx2 or avx512 */
            const char *t = argv[++i];
            if (!bench_force_tier(t)) return 2;
        } else {
            fprintf(stderr,
                    "usage: bench_quant [--threads N] [--quick] [--no-torch] [--torch SCRIPT]"
                    " [--tier ref|avx2|avx512]\n");
            return 2;
        }
    }
    if (threads < 1) threads = 1;
    g_threads = threads;
    nn_set_num_threads(threads);
    printf("# libnn %s; backend: %s\n", nn_version(), nn_backend_info());
    {
        const int saved = nn_get_num_threads();
        nn_set_num_threads(1);
        const double peak = nn__tier_int8_peak();
        printf("# int8 kernels: tier %s; vpdpbusd peak %.1f GOP/s (1 thread, measured; 0: no VNNI)\n",
               nn__kernels()->name, peak);
        bench_gemm(196, 64, 288, rounds, peak);   /* the CNN's conv2, one image */
        bench_gemm(784, 32, 9, rounds, peak);     /* conv1, one image */
        bench_gemm(1, 128, 3136, rounds, peak);   /* fc1 at batch 1 */
        bench_gemm(256, 128, 3136, rounds, peak); /* fc1 at batch 256 */
        bench_gemm(512, 512, 512, rounds, peak);
        nn_set_num_threads(saved);
    }
    const int64_t img[4] = {1, 1, 28, 28}, flat[2] = {1, 784};
    bench_model("cnn", make_cnn, img, 4, 1, rounds, threads);
    bench_model("cnn", make_cnn, img, 4, 256, rounds, threads);
    bench_model("mlp", make_mlp, flat, 2, 1, rounds, threads);
    bench_model("mlp", make_mlp, flat, 2, 256, rounds, threads);
    if (torch) run_torch(script, rounds == 7);
    targets();
    return 0;
}
