/* libnn benchmark: the cases of the performance issue, measured the same way
 * as tests/bench/bench_torch.py so tests/bench/compare.py can put them side
 * by side. Prints one line per figure:
 *
 *     BENCH <case> <threads> <value> <unit>
 *
 * Synthetic data of Fashion-MNIST shape (fixed seed), a fixed number of
 * batches, the median over repeats. No arguments: every case at 1 and 2
 * threads in a few minutes. Options: --quick (fewer repeats), --threads N
 * (only N), --case NAME (only cases whose name starts with NAME), --tier
 * ref|avx2|avx512 (an older machine's kernels), --profile (--profile-mlp)
 * prints the profiler's report of the CNN's (MLP's) training steps in the
 * profiler case.
 * cnn_train_contended runs last: CNN training at 1 and 2 threads beside a
 * busy child process that the benchmark starts and kills itself.
 * --rss-child is internal: the peak-RSS case re-runs this program so that
 * the figure covers CNN training alone. */
#include "bench_backend.h"
#include "core/core.h" /* NN__PROF_SPAN: the disabled hook's cost */
#include "nn.h"
#include "bench_models.h"
#include "bench_tier.h"
#include "bench_util.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if BENCH_HAVE_BLIS
#include <blis.h>
#endif

static int g_reps = 7;            /* repeats per figure (median) */
static const char *g_only = NULL; /* --case prefix */
static bool g_show_profile = false; /* --profile: print the profiler's report */
static bool g_profile_cnn = true;   /* --profile-mlp: profile the MLP's steps instead */

static bool wanted(const char *name) { return bench_wanted(g_only, name); }

/* ------------------------------------------------------------- models */

static nn_module *make_cnn(void) { return bench_need(bench_cnn(), "bench_cnn"); }
static nn_module *make_mlp(void) { return bench_need(bench_mlp(), "bench_mlp"); }

static nn_optim *make_opt(nn_module *m, bool adam, double lr) {
    int64_t n = nn_module_num_parameters(m);
    nn_tensor *ps[64];
    CHECK(n > 0 && n <= 64);
    for (int64_t i = 0; i < n; i++) ps[i] = nn_module_parameter(m, i, NULL);
    nn_optim *o = adam ? nn_adam(ps, n, lr) : nn_sgd(ps, n, lr, 0.0);
    CHECK(o);
    return o;
}

/* Synthetic Fashion-MNIST-shaped batch: x [n, 1, 28, 28] in [0, 1), labels
 * [n] i64 in 0..9. */
static void make_batch(nn_generator *g, int64_t n, nn_tensor **x, nn_tensor **y) {
    int64_t xs[4] = {n, 1, 28, 28}, ys[1] = {n};
    *x = nn_rand(g, xs, 4);
    CHECK(*x);
    int64_t *lab = malloc((size_t)n * sizeof *lab);
    CHECK(lab);
    for (int64_t i = 0; i < n; i++) lab[i] = (int64_t)(nn_generator_next(g) % 10);
    *y = nn_tensor_from_data(NN_DTYPE_I64, ys, 1, lab);
    free(lab);
    CHECK(*y);
}

#define NBATCH 8 /* distinct synthetic batches cycled through */

/* A training run: the CNN or the MLP, Adam (lr 1e-3) and NBATCH synthetic
 * batches of 64 from a generator seeded 42; with `seed_init`, the global
 * generator is seeded 1 first (the initial weights). */
typedef struct trainer {
    nn_generator *g;
    nn_module *net;
    nn_optim *opt;
    nn_tensor *x[NBATCH], *y[NBATCH];
} trainer;

static void trainer_init(trainer *t, bool cnn, bool seed_init) {
    t->g = nn_generator_new(42);
    CHECK(t->g);
    if (seed_init) CHECK_OK(nn_generator_seed(NULL, 1));
    t->net = cnn ? make_cnn() : make_mlp();
    t->opt = make_opt(t->net, true, 1e-3);
    for (int i = 0; i < NBATCH; i++) make_batch(t->g, 64, &t->x[i], &t->y[i]);
}

/* `steps` training steps, cycling through the batches from the first. */
static void trainer_steps(trainer *t, int steps) {
    for (int i = 0; i < steps; i++)
        bench_train_step(t->net, t->opt, t->x[i % NBATCH], t->y[i % NBATCH]);
}

static void trainer_free(trainer *t) {
    for (int i = 0; i < NBATCH; i++) nn_tensor_free(t->x[i]), nn_tensor_free(t->y[i]);
    nn_optim_free(t->opt);
    nn_module_free(t->net);
    nn_generator_free(t->g);
}

/* Training throughput (img/s): median over g_reps runs of `steps` steps. */
static double bench_train(bool cnn, int steps) {
    trainer t;
    trainer_init(&t, cnn, true);
    trainer_steps(&t, 3); /* warm-up */
    double r[64];
    for (int rep = 0; rep < g_reps; rep++) {
        double t0 = bench_now_s();
        trainer_steps(&t, steps);
        r[rep] = 64.0 * steps / (bench_now_s() - t0);
    }
    trainer_free(&t);
    return bench_median(r, g_reps);
}

/* Inference: batch-1 latency (us, median of single calls) or batch-n
 * throughput (img/s). Eval mode, grad recording off. */
static double bench_infer(bool cnn, int64_t batch, int calls) {
    nn_generator *g = nn_generator_new(7);
    nn_module *net = cnn ? make_cnn() : make_mlp();
    CHECK_OK(nn_module_train(net, false));
    bool was = nn_set_grad_enabled(false);
    nn_tensor *x, *y;
    make_batch(g, batch, &x, &y);
    for (int i = 0; i < 5; i++) nn_tensor_free(nn_module_forward(net, x));
    int n = calls * g_reps;
    double *r = malloc((size_t)n * sizeof *r);
    CHECK(r);
    for (int i = 0; i < n; i++) {
        double t0 = bench_now_s();
        nn_tensor *out = nn_module_forward(net, x);
        double dt = bench_now_s() - t0;
        CHECK(out);
        nn_tensor_free(out);
        r[i] = batch == 1 ? dt * 1e6 : (double)batch / dt;
    }
    double med = bench_median(r, n);
    free(r);
    nn_set_grad_enabled(was);
    nn_tensor_free(x), nn_tensor_free(y);
    nn_module_free(net);
    nn_generator_free(g);
    return med;
}

/* Linear(10, 10), batch 1, MSE loss, one full SGD step (zero_grad, forward,
 * loss, backward, update), in us. */
static double bench_tiny_step(void) {
    nn_generator *g = nn_generator_new(3);
    nn_module *net = nn_linear_new(10, 10, true);
    CHECK(net);
    nn_optim *opt = make_opt(net, false, 0.01);
    int64_t s[2] = {1, 10};
    nn_tensor *x = nn_rand(g, s, 2), *t = nn_rand(g, s, 2);
    CHECK(x && t);
    const int n = 400 * g_reps;
    double *r = malloc((size_t)n * sizeof *r);
    CHECK(r);
    for (int i = -50; i < n; i++) {
        double t0 = bench_now_s();
        nn_scope *sc = nn_scope_begin();
        CHECK_OK(nn_optim_zero_grad(opt));
        nn_tensor *loss = nn_mse_loss(nn_module_forward(net, x), t, NN_REDUCTION_MEAN);
        CHECK(loss);
        CHECK_OK(nn_backward(loss));
        CHECK_OK(nn_optim_step(opt));
        nn_scope_end(sc);
        if (i >= 0) r[i] = (bench_now_s() - t0) * 1e6;
    }
    double med = bench_median(r, n);
    free(r);
    nn_tensor_free(x), nn_tensor_free(t);
    nn_optim_free(opt);
    nn_module_free(net);
    nn_generator_free(g);
    return med;
}

/* ------------------------------------------------------ per-layer figures */

typedef nn_tensor *(*layer_fn)(nn_tensor *x, nn_tensor **params);

static nn_tensor *l_conv(nn_tensor *x, nn_tensor **p) {
    return nn_conv2d(x, p[0], p[1], 1, 1, 1, 1, 1, 1, 1);
}
static nn_tensor *l_relu(nn_tensor *x, nn_tensor **p) { (void)p; return nn_relu(x); }
static nn_tensor *l_pool(nn_tensor *x, nn_tensor **p) {
    (void)p;
    return nn_max_pool2d(x, 2, 2, 2, 2, 0, 0, 1, 1, false, NULL);
}
static nn_tensor *l_linear(nn_tensor *x, nn_tensor **p) { return nn_linear(x, p[0], p[1]); }

/* Forward and backward time (us, medians) of one layer of the CNN at batch
 * 64; the input and parameters require grad, as in training. */
static void bench_layer(const char *name, layer_fn fn, const int64_t *xs, int xn,
                        const int64_t *ws, int wn, int64_t nb, int threads) {
    char buf[96];
    snprintf(buf, sizeof buf, "layer_%s", name);
    if (!wanted(buf)) return;
    nn_generator *g = nn_generator_new(5);
    nn_tensor *x = nn_rand(g, xs, xn), *p[2] = {NULL, NULL};
    CHECK(x);
    CHECK_OK(nn_tensor_set_requires_grad(x, true));
    if (ws) {
        p[0] = nn_uniform(g, ws, wn, -0.1, 0.1);
        p[1] = nn_uniform(g, &nb, 1, -0.1, 0.1);
        CHECK(p[0] && p[1]);
        CHECK_OK(nn_tensor_set_requires_grad(p[0], true));
        CHECK_OK(nn_tensor_set_requires_grad(p[1], true));
    }
    const int n = 3 * g_reps;
    double fw[64], bw[64];
    for (int i = -2; i < n; i++) {
        nn_scope *s = nn_scope_begin();
        double t0 = bench_now_s();
        nn_tensor *y = fn(x, p);
        double t1 = bench_now_s();
        CHECK(y);
        nn_tensor *seed = nn_tensor_ones(NN_DTYPE_F32, nn_tensor_shape(y), nn_tensor_ndim(y));
        double t2 = bench_now_s();
        CHECK_OK(nn_backward_ex(y, seed, false));
        double t3 = bench_now_s();
        nn_scope_end(s);
        CHECK_OK(nn_tensor_zero_grad(x));
        if (p[0]) nn_tensor_zero_grad(p[0]), nn_tensor_zero_grad(p[1]);
        if (i >= 0) fw[i] = (t1 - t0) * 1e6, bw[i] = (t3 - t2) * 1e6;
    }
    snprintf(buf, sizeof buf, "layer_%s_fwd", name);
    bench_report(buf, threads, bench_median(fw, n), "us");
    snprintf(buf, sizeof buf, "layer_%s_bwd", name);
    bench_report(buf, threads, bench_median(bw, n), "us");
    nn_tensor_free(x), nn_tensor_free(p[0]), nn_tensor_free(p[1]);
    nn_generator_free(g);
}

static void bench_layers(int threads) {
    const int64_t x1[4] = {64, 1, 28, 28}, w1[4] = {32, 1, 3, 3};
    const int64_t a1[4] = {64, 32, 28, 28}, x2[4] = {64, 32, 14, 14}, w2[4] = {64, 32, 3, 3};
    const int64_t a2[4] = {64, 64, 14, 14}, x3[2] = {64, 3136}, w3[2] = {128, 3136};
    const int64_t x4[2] = {64, 128}, w4[2] = {10, 128};
    bench_layer("conv1", l_conv, x1, 4, w1, 4, 32, threads);
    bench_layer("relu1", l_relu, a1, 4, NULL, 0, 0, threads);
    bench_layer("pool1", l_pool, a1, 4, NULL, 0, 0, threads);
    bench_layer("conv2", l_conv, x2, 4, w2, 4, 64, threads);
    bench_layer("relu2", l_relu, a2, 4, NULL, 0, 0, threads);
    bench_layer("pool2", l_pool, a2, 4, NULL, 0, 0, threads);
    bench_layer("fc1", l_linear, x3, 2, w3, 2, 128, threads);
    bench_layer("fc2", l_linear, x4, 2, w4, 2, 10, threads);
}

/* ------------------------------------------------------ matmul vs BLIS */

/* GFLOP/s of nn_matmul at the models' GEMM shapes, and of the same product
 * straight through bli_sgemm (the ">= 95% of direct BLIS" figure). */
static void bench_matmul(int threads) {
    static const int64_t shapes[][3] = {{64, 128, 3136}, {64, 256, 784}, {64, 3136, 128},
                                        {64, 784, 256},  {128, 3136, 64}, {256, 784, 64}};
    nn_generator *g = nn_generator_new(9);
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int64_t m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
        char name[96];
        snprintf(name, sizeof name, "matmul_%lldx%lldx%lld", (long long)m, (long long)n,
                 (long long)k);
        if (!wanted(name)) continue;
        int64_t as[2] = {m, k}, bs[2] = {k, n};
        nn_tensor *a = nn_rand(g, as, 2), *b = nn_rand(g, bs, 2);
        CHECK(a && b);
        const double flop = 2.0 * (double)(m * n * k);
        double r[64], rb[64];
        for (int i = -2; i < g_reps; i++) {
            double t0 = bench_now_s();
            nn_tensor *c = nn_matmul(a, b);
            double dt = bench_now_s() - t0;
            CHECK(c);
            nn_tensor_free(c);
            if (i >= 0) r[i] = flop / dt * 1e-9;
        }
        bench_report(name, threads, bench_median(r, g_reps), "GFLOP/s");
#if BENCH_HAVE_BLIS
        float *cbuf = malloc((size_t)(m * n) * sizeof(float));
        CHECK(cbuf);
        float one = 1.0f, zero = 0.0f;
        for (int i = -2; i < g_reps; i++) {
            double t0 = bench_now_s();
            bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, m, n, k, &one, nn_tensor_data(a), k,
                      1, nn_tensor_data(b), n, 1, &zero, cbuf, n, 1);
            double dt = bench_now_s() - t0;
            if (i >= 0) rb[i] = flop / dt * 1e-9;
        }
        free(cbuf);
        snprintf(name, sizeof name, "blis_%lldx%lldx%lld", (long long)m, (long long)n,
                 (long long)k);
        bench_report(name, threads, bench_median(rb, g_reps), "GFLOP/s");
#else
        (void)rb;
#endif
        nn_tensor_free(a), nn_tensor_free(b);
    }
    nn_generator_free(g);
}

/* ------------------------------------------------ training beside a busy process */

/* CNN training throughput (img/s) while another process keeps one core
 * busy, as when a host program does not own the machine: the benchmark forks
 * a child that spins until it is killed, then times 1 and 2 threads in
 * alternation (same model, same batches) and reports the median of each. */
static void bench_contended(int only_threads) {
    if (!wanted("cnn_train_contended")) return;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "bench: fork failed; no contended figures\n");
        return;
    }
    if (pid == 0) {
        volatile unsigned long spin = 0;
        for (;;) spin++;
    }
    trainer tr;
    trainer_init(&tr, true, true);
    const int steps = g_reps > 3 ? 10 : 4;
    double r[2][64];
    for (int rep = -1; rep < g_reps; rep++) /* rep -1: warm-up at each count */
        for (int t = 1; t <= 2; t++) {
            if (only_threads && only_threads != t) continue;
            CHECK_OK(nn_set_num_threads(t));
            double t0 = bench_now_s();
            trainer_steps(&tr, steps);
            if (rep >= 0) r[t - 1][rep] = 64.0 * steps / (bench_now_s() - t0);
        }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    for (int t = 1; t <= 2; t++)
        if (!only_threads || only_threads == t)
            bench_report("cnn_train_contended", t, bench_median(r[t - 1], g_reps), "img/s");
    trainer_free(&tr);
}

/* ------------------------------------------------------------ peak RSS */

/* In a fresh process: 20 CNN training steps; prints the peak RSS (MB). */
static int rss_child(void) {
    CHECK_OK(nn_set_num_threads(1));
    trainer t;
    trainer_init(&t, true, false);
    trainer_steps(&t, 20);
    trainer_free(&t);
    return 0;
}

static void bench_rss(void) {
    const char *self = "/proc/self/exe";
    if (!wanted("cnn_train_peak_rss")) return;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return;
    if (pid == 0) {
        execl(self, self, "--rss-child", (char *)NULL);
        _exit(127);
    }
    int st;
    struct rusage ru;
    if (wait4(pid, &st, 0, &ru) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0)
        bench_report("cnn_train_peak_rss", 1, (double)ru.ru_maxrss / 1024.0, "MB");
    else
        fprintf(stderr, "bench: the peak-RSS child failed\n");
}


/* ---- profiler overhead (issue "running it in production") ----------------
 * CNN training steps with the profiler off and on, interleaved repeats,
 * medians; and the cost of one disabled hook (a call through a function
 * holding an NN__PROF_SPAN against the same function without it) times the
 * spans a step records: what the hooks cost when nobody profiles. */
__attribute__((noinline)) static int64_t prof_hooked(int64_t i) {
    NN__PROF_SPAN(NN__PROF_OP, "bench", NULL);
    return i * 3 + 1;
}
__attribute__((noinline)) static int64_t prof_plain(int64_t i) { return i * 3 + 1; }

static double hook_ns(int64_t (*fn)(int64_t)) {
    volatile int64_t sink = 0;
    const int64_t n = 20000000;
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = bench_now_s();
        for (int64_t i = 0; i < n; i++) sink = sink + fn(i);
        double dt = (bench_now_s() - t0) * 1e9 / (double)n;
        if (dt < best) best = dt;
    }
    return best;
}

static void bench_profiler(int threads, int steps) {
    trainer t;
    trainer_init(&t, g_profile_cnn, true);
    trainer_steps(&t, 3);
    double off[64], on[64];
    long long events = 0;
    for (int rep = 0; rep < g_reps; rep++) {
        double t0 = bench_now_s();
        trainer_steps(&t, steps);
        off[rep] = (bench_now_s() - t0) / steps;
        CHECK_OK(nn_profiler_start(0));
        t0 = bench_now_s();
        trainer_steps(&t, steps);
        on[rep] = (bench_now_s() - t0) / steps;
        CHECK_OK(nn_profiler_stop());
        char *rep_txt = nn_profiler_report();
        CHECK(rep_txt);
        double wall;
        if (sscanf(rep_txt, "libnn profile: %lf s of session, %lld events", &wall, &events) != 2)
            events = 0;
        if (g_show_profile && rep == g_reps - 1)
            fprintf(stderr, "# %d-thread training steps (%s), the last run:\n%s", threads,
                    g_profile_cnn ? "cnn" : "mlp", rep_txt);
        nn_free(rep_txt);
    }
    const double t_off = bench_median(off, g_reps), t_on = bench_median(on, g_reps);
    const double per_step = (double)events / steps;
    const double h = hook_ns(prof_hooked) - hook_ns(prof_plain);
    bench_report("profiler_step_off", threads, t_off * 1e3, "ms");
    bench_report("profiler_step_on", threads, t_on * 1e3, "ms");
    bench_report("profiler_overhead_on", threads, 100.0 * (t_on / t_off - 1.0), "%");
    bench_report("profiler_spans_per_step", threads, per_step, "spans");
    bench_report("profiler_hook_off", threads, h, "ns");
    bench_report("profiler_overhead_off", threads,
                 100.0 * per_step * (h > 0 ? h : 0) * 1e-9 / t_off, "%");
    trainer_free(&t);
}

/* ------------------------------------------------------------------ main */

static void run_threads(int t, bool quick) {
    CHECK_OK(nn_set_num_threads(t));
    int steps = quick ? 4 : 10;
    if (wanted("cnn_train")) bench_report("cnn_train", t, bench_train(true, steps), "img/s");
    if (wanted("mlp_train")) bench_report("mlp_train", t, bench_train(false, steps * 4), "img/s");
    if (wanted("cnn_infer_b1")) bench_report("cnn_infer_b1", t, bench_infer(true, 1, 30), "us");
    if (wanted("mlp_infer_b1")) bench_report("mlp_infer_b1", t, bench_infer(false, 1, 100), "us");
    if (wanted("cnn_infer_b256"))
        bench_report("cnn_infer_b256", t, bench_infer(true, 256, 1), "img/s");
    if (wanted("tiny_sgd_step")) bench_report("tiny_sgd_step", t, bench_tiny_step(), "us");
    if (wanted("profiler")) bench_profiler(t, steps);
    bench_backend(t, g_reps, g_only);
    bench_conv(t, g_reps, g_only);
    bench_matmul(t);
    bench_layers(t);
}

int main(int argc, char **argv) {
    bench_prog = "bench";
    bool quick = false;
    int only_threads = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rss-child") == 0) return rss_child();
        if (strcmp(argv[i], "--quick") == 0) quick = true;
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) only_threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--case") == 0 && i + 1 < argc) g_only = argv[++i];
        else if (strcmp(argv[i], "--profile") == 0) g_show_profile = true;
        else if (strcmp(argv[i], "--profile-mlp") == 0) g_show_profile = true, g_profile_cnn = false;
        else if (strcmp(argv[i], "--tier") == 0 && i + 1 < argc) {
            /* measure an older machine's kernels: ref, avx2 or avx512 */
            const char *t = argv[++i];
            if (!bench_force_tier(t)) return 2;
            printf("# forced tier: %s\n", t);
        } else {
            fprintf(stderr,
                    "usage: %s [--quick] [--threads N] [--case PREFIX] [--tier ref|avx2|avx512] "
                    "[--profile|--profile-mlp]\n",
                    argv[0]);
            return 2;
        }
    }
    if (quick) g_reps = 3;
    printf("# libnn %s, %s\n", nn_version(), quick ? "quick" : "full");
    printf("# backend: %s\n", nn_backend_info());
    bench_rss();
    for (int t = 1; t <= 2; t++)
        if (!only_threads || only_threads == t) run_threads(t, quick);
    bench_contended(only_threads);
    return 0;
}
