/* Half-precision weights against f32, same run, interleaved: the demo CNN
 * and the MLP of bench.c, converted with nn_module_convert, saved and loaded
 * again, run with nn_model_predict as an embedding program would.
 *
 *     bench_half [--quick] [--threads N] [--tier ref|avx2|avx512] [--widen]
 *
 * --tier runs an older machine's kernels (avx2: no AVX-512, no AVX512_BF16:
 * half convolutions convert their weights while packing); --widen adds, per
 * model, the half dtypes with convolutions that widen the whole weight to
 * an f32 copy first (the path before; dtype names *_widen), same run.
 *
 * Prints, per model and dtype (f32, bf16, f16):
 *     BENCH half_<model>_<dtype>_b1 <threads> <median us> us
 *     BENCH half_<model>_<dtype>_b1_cpu 1 <median us> us    (thread CPU time, 1 thread)
 *     BENCH half_<model>_<dtype>_b256 <threads> <median img/s> img/s
 *     BENCH half_<model>_<dtype>_file 1 <bytes> bytes       (default compression)
 *     BENCH half_<model>_<dtype>_stored 1 <bytes> bytes     (uncompressed)
 *     BENCH half_<model>_<dtype>_relerr 1 <max |y - y32| / max |y32|> x
 * and the ratios against f32 (b1 latency, file sizes) as *_ratio lines.
 * Outputs compare on 256 inputs of Fashion-MNIST shape in [0, 1). The
 * models have PyTorch's default init plus 30 Adam steps on a synthetic task
 * (so the weights are not just uniform noise). */
#include "nn.h"
#include "backend/tier.h" /* the half kernels, --widen */
#include "bench_models.h"
#include "bench_tier.h"
#include "bench_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_reps = 9;

static nn_module *make_cnn(void) { return bench_need(bench_cnn(), "bench_cnn"); }
static nn_module *make_mlp(void) { return bench_need(bench_mlp(), "bench_mlp"); }

/* 30 Adam steps on a synthetic task: the label is the brightest quadrant of
 * the image (+ its row parity), so the weights move away from their init. */
static void train_briefly(nn_module *net, nn_generator *g) {
    nn_optim *opt = nn_optim_new_module(NN_OPTIM_TYPE_ADAM, net, 1e-3);
    CHECK(opt);
    int64_t xs[4] = {32, 1, 28, 28};
    for (int step = 0; step < 30; step++) {
        nn_scope *s = nn_scope_begin();
        nn_tensor *x = nn_rand(g, xs, 4);
        CHECK(x);
        const float *px = nn_tensor_data(x);
        int64_t lab[32];
        for (int i = 0; i < 32; i++) {
            double q[4] = {0};
            for (int r = 0; r < 28; r++)
                for (int c = 0; c < 28; c++) q[(r / 14) * 2 + c / 14] += px[i * 784 + r * 28 + c];
            int best = 0;
            for (int k = 1; k < 4; k++)
                if (q[k] > q[best]) best = k;
            lab[i] = best * 2 + (px[i * 784] > 0.5f);
        }
        nn_tensor *y = nn_tensor_from_data(NN_DTYPE_I64, (int64_t[]){32}, 1, lab);
        bench_train_step(net, opt, x, y);
        nn_scope_end(s);
    }
    nn_optim_free(opt);
    CHECK_OK(nn_module_train(net, false));
}

static size_t saved(nn_module *m, int level, void **out) {
    nn_io_options *o = nn_io_options_new();
    CHECK(o);
    CHECK_OK(nn_io_options_set(o, NN_IO_OPTION_COMPRESSION, level));
    void *buf;
    size_t size;
    CHECK_OK(nn_model_save_buffer(m, NULL, o, &buf, &size));
    nn_io_options_free(o);
    if (out) *out = buf;
    else nn_free(buf);
    return size;
}

static double max_abs_diff(nn_tensor *a, nn_tensor *b, double *scale) {
    int64_t n = nn_tensor_numel(a);
    const float *x = nn_tensor_data(a), *y = nn_tensor_data(b);
    double d = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        if (fabs((double)x[i] - (double)y[i]) > d) d = fabs((double)x[i] - (double)y[i]);
        if (fabs((double)y[i]) > s) s = fabs((double)y[i]);
    }
    *scale = s;
    return d;
}

static bool g_widen; /* --widen: also the half dtypes through widened convolutions */

static void bench_model(const char *name, nn_module *net, int threads) {
    static const nn_dtype dts[3] = {NN_DTYPE_F32, NN_DTYPE_BF16, NN_DTYPE_F16};
    nn_model *models[3];
    size_t file[3], stored[3];
    for (int d = 0; d < 3; d++) {
        /* convert a copy (the f32 file, loaded), then save and load that */
        void *buf;
        size_t size = saved(net, 6, &buf);
        nn_model *tmp = nn_model_load_buffer(buf, size, NULL);
        CHECK(tmp);
        nn_free(buf);
        nn_module *m = nn_model_module(tmp);
        CHECK_OK(nn_module_convert(m, dts[d]));
        file[d] = saved(m, 6, &buf);
        stored[d] = saved(m, 0, NULL);
        models[d] = nn_model_load_buffer(buf, file[d], NULL);
        CHECK(models[d]);
        nn_free(buf);
        nn_model_free(tmp);
    }
    /* variants: f32, bf16, f16, then (--widen) bf16 and f16 with the half
     * convolution kernels off (weights widened to f32 per call) */
    const int nvar = g_widen ? 5 : 3;
    static const int model_of[5] = {0, 1, 2, 1, 2};
    nn_generator *g = nn_generator_new(5);
    int64_t s1[4] = {1, 1, 28, 28}, s256[4] = {256, 1, 28, 28};
    nn_tensor *x1 = nn_rand(g, s1, 4), *x256 = nn_rand(g, s256, 4);
    CHECK(x1 && x256);
    CHECK_OK(nn_set_num_threads(threads));
    /* batch 1: 200 predictions per timing, variants interleaved */
    double b1[5][64], b1c[5][64], b256[5][64];
    const int n1 = 200;
    for (int rep = -2; rep < g_reps; rep++)
        for (int d = 0; d < nvar; d++) {
            nn__backend_half_conv(d < 3);
            nn_model *mod = models[model_of[d]];
            double t0 = bench_now_s(), c0 = bench_thread_cpu_s();
            for (int i = 0; i < n1; i++) {
                nn_tensor *y = nn_model_predict(mod, x1);
                CHECK(y);
                nn_tensor_free(y);
            }
            double us = (bench_now_s() - t0) / n1 * 1e6, cus = (bench_thread_cpu_s() - c0) / n1 * 1e6;
            t0 = bench_now_s();
            nn_tensor *y = nn_model_predict(mod, x256);
            CHECK(y);
            double ips = 256.0 / (bench_now_s() - t0);
            nn_tensor_free(y);
            if (rep >= 0) b1[d][rep] = us, b1c[d][rep] = cus, b256[d][rep] = ips;
        }
    nn__backend_half_conv(true);
    nn_tensor *y32 = nn_model_predict(models[0], x256);
    CHECK(y32);
    char line[128];
    double m1[5], mc[5];
    for (int d = 0; d < nvar; d++) {
        char dn[32];
        snprintf(dn, sizeof dn, "%s%s", nn_dtype_name(dts[model_of[d]]), d >= 3 ? "_widen" : "");
        const int md = model_of[d];
        m1[d] = bench_median(b1[d], g_reps);
        mc[d] = bench_median(b1c[d], g_reps);
        snprintf(line, sizeof line, "half_%s_%s_b1", name, dn);
        bench_report(line, threads, m1[d], "us");
        if (threads == 1) {
            snprintf(line, sizeof line, "half_%s_%s_b1_cpu", name, dn);
            bench_report(line, 1, mc[d], "us");
        }
        snprintf(line, sizeof line, "half_%s_%s_b256", name, dn);
        bench_report(line, threads, bench_median(b256[d], g_reps), "img/s");
        if (threads == 1 && d < 3) {
            snprintf(line, sizeof line, "half_%s_%s_file", name, dn);
            bench_report(line, 1, (double)file[md], "bytes");
            snprintf(line, sizeof line, "half_%s_%s_stored", name, dn);
            bench_report(line, 1, (double)stored[md], "bytes");
        }
        if (d == 0) continue;
        nn__backend_half_conv(d < 3);
        nn_tensor *y = nn_model_predict(models[md], x256);
        nn__backend_half_conv(true);
        CHECK(y);
        double scale, diff = max_abs_diff(y, y32, &scale);
        nn_tensor_free(y);
        snprintf(line, sizeof line, "half_%s_%s_relerr", name, dn);
        bench_report(line, threads, diff / scale, "x");
        snprintf(line, sizeof line, "half_%s_%s_b1_ratio", name, dn);
        bench_report(line, threads, m1[d] / m1[0], "x");
        if (threads == 1) {
            snprintf(line, sizeof line, "half_%s_%s_b1_cpu_ratio", name, dn);
            bench_report(line, 1, mc[d] / mc[0], "x");
        }
        if (threads == 1 && d < 3) {
            snprintf(line, sizeof line, "half_%s_%s_file_ratio", name, dn);
            bench_report(line, 1, (double)file[md] / (double)file[0], "x");
            snprintf(line, sizeof line, "half_%s_%s_stored_ratio", name, dn);
            bench_report(line, 1, (double)stored[md] / (double)stored[0], "x");
        }
    }
    nn_tensor_free(y32), nn_tensor_free(x1), nn_tensor_free(x256);
    for (int d = 0; d < 3; d++) nn_model_free(models[d]);
    nn_generator_free(g);
}

int main(int argc, char **argv) {
    bench_prog = "bench_half";
    int only = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) g_reps = 3;
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) only = atoi(argv[++i]);
        else if (strcmp(argv[i], "--widen") == 0) g_widen = true;
        else if (strcmp(argv[i], "--tier") == 0 && i + 1 < argc) {
            const char *t = argv[++i];
            if (!bench_force_tier(t)) return 2;
        } else {
            fprintf(stderr,
                    "usage: %s [--quick] [--threads N] [--tier ref|avx2|avx512] [--widen]\n",
                    argv[0]);
            return 2;
        }
    }
    printf("# libnn %s; %s; tier %s\n", nn_version(), nn_backend_info(), nn__kernels()->name);
    CHECK_OK(nn_generator_seed(NULL, 1));
    nn_generator *g = nn_generator_new(3);
    nn_module *cnn = make_cnn(), *mlp = make_mlp();
    CHECK_OK(nn_set_num_threads(1));
    train_briefly(cnn, g);
    train_briefly(mlp, g);
    for (int t = 1; t <= 2; t++) {
        if (only && only != t) continue;
        bench_model("cnn", cnn, t);
        bench_model("mlp", mlp, t);
    }
    nn_module_free(cnn), nn_module_free(mlp);
    nn_generator_free(g);
    return 0;
}
