/* Issue "running it in production": the profiler and the memory statistics.
 *
 * Oracles: the FLOPs of a Linear layer from its shapes; the profiler's self
 * times against the test's own clock around the same steps; trained
 * parameters with the profiler on against the same steps with it off (bit
 * for bit); event counts in the trace against the calls each thread made;
 * byte counts by category against the tensors' shapes. */
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (s) s[n] = '\0';
    fclose(f);
    return s;
}

static int count_substr(const char *s, const char *sub) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, sub)); p += strlen(sub)) n++;
    return n;
}

/* i64 labels i % classes. */
static nn_tensor *labels(int64_t n, int64_t classes) {
    int64_t *v = malloc(sizeof *v * (size_t)n);
    for (int64_t i = 0; i < n; i++) v[i] = (i * 7) % classes;
    nn_tensor *t = nn_tensor_from_data(NN_DTYPE_I64, &n, 1, v);
    free(v);
    return t;
}

/* The demo CNN (examples/fashion_mnist_cnn.c) at width `w` (32 there). */
static nn_module *demo_cnn(int w) {
    nn_module *seq = TU_NN(nn_sequential_new());
    nn_module *layers[] = {
        nn_conv2d_new(1, w, 3, 1, 1, true),      nn_relu_new(), nn_max_pool2d_new(2, 2, 0),
        nn_conv2d_new(w, 2 * w, 3, 1, 1, true),  nn_relu_new(), nn_max_pool2d_new(2, 2, 0),
        nn_flatten_new(1, -1),
        nn_linear_new(2 * w * 7 * 7, 128, true), nn_relu_new(),
        nn_linear_new(128, 10, true),
    };
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++)
        TU_OK(nn_sequential_append(seq, layers[i]));
    return seq;
}

typedef struct run {
    nn_module *net;
    nn_dataset *ds;
    int64_t batch;
} run;

/* Train `steps` steps from the current weights with a fresh Adam and loader;
 * returns the wall time of the loop. */
static double train(run *r, int steps) {
    nn_optim *opt = TU_NN(nn_optim_new_module(NN_OPTIM_TYPE_ADAM, r->net, 1e-3));
    nn_loader *ld = TU_NN(nn_loader_new(r->ds, r->batch, true, 7));
    nn_tensor *x, *y;
    int done = 0;
    double t0 = now_s();
    while (done < steps && nn_loader_next(ld, &x, &y)) {
        nn_scope *s = nn_scope_begin();
        TU_OK(nn_optim_zero_grad(opt));
        nn_tensor *loss = TU_NN(nn_cross_entropy(nn_module_forward(r->net, x), y));
        TU_OK(nn_backward(loss));
        TU_OK(nn_optim_step(opt));
        TU_OK(nn_scope_end(s));
        done++;
    }
    double t = now_s() - t0;
    assert_int_equal(done, steps);
    nn_loader_free(ld);
    nn_optim_free(opt);
    return t;
}

static void setup_run(run *r, int64_t n, int64_t batch, int width) {
    nn_generator *g = TU_NN(nn_generator_new(3));
    nn_tensor *x = TU_NN(nn_uniform(g, (int64_t[]){n, 1, 28, 28}, 4, 0.0, 1.0));
    nn_tensor *y = TU_NN(labels(n, 10));
    r->ds = TU_NN(nn_dataset_from_tensors(x, y));
    nn_tensor_free(x);
    nn_tensor_free(y);
    nn_generator_free(g);
    r->net = demo_cnn(width);
    r->batch = batch;
}

static void free_run(run *r) {
    nn_module_free(r->net);
    nn_dataset_free(r->ds);
}

/* Copies of every parameter's values (to restart from the same weights). */
static float **snapshot_params(nn_module *m, int64_t *np) {
    *np = nn_module_num_parameters(m);
    float **v = calloc((size_t)*np, sizeof *v);
    for (int64_t i = 0; i < *np; i++) {
        nn_tensor *p = nn_module_parameter(m, i, NULL);
        size_t bytes = (size_t)nn_tensor_numel(p) * sizeof(float);
        v[i] = malloc(bytes);
        memcpy(v[i], nn_tensor_data(p), bytes);
    }
    return v;
}

static void restore_params(nn_module *m, float **v, int64_t np) {
    for (int64_t i = 0; i < np; i++) {
        nn_tensor *p = nn_module_parameter(m, i, NULL);
        memcpy(nn_tensor_data(p), v[i], (size_t)nn_tensor_numel(p) * sizeof(float));
    }
}

static void free_snapshot(float **v, int64_t np) {
    for (int64_t i = 0; i < np; i++) free(v[i]);
    free(v);
}

/* ------------------------------------------------------------------ tests */

static void test_off_by_default_and_misuse(void **s) {
    (void)s;
    assert_false(nn_profiler_running());
    assert_null(nn_profiler_report());
    tu_expect_error(NN_ERR_STATE, "nn_profiler_report: no profiler session");
    assert_int_equal(nn_profiler_stop(), NN_ERR_STATE);
    tu_expect_error(NN_ERR_STATE, "nn_profiler_stop: no session is running");
    assert_int_equal(nn_profiler_write_trace("x.json"), NN_ERR_STATE);
    assert_true(isnan(nn_profiler_total_seconds()));
    assert_int_equal(nn_profiler_start(0x80), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "unknown flag bits 0x80");
    assert_false(nn_profiler_running());

    TU_OK(nn_profiler_start(0));
    assert_true(nn_profiler_running());
    assert_int_equal(nn_profiler_start(0), NN_ERR_STATE);
    tu_expect_error(NN_ERR_STATE, "already running");
    assert_int_equal(nn_profiler_write_trace("x.json"), NN_ERR_STATE);
    tu_expect_error(NN_ERR_STATE, "still running");
    char *rep = TU_NN(nn_profiler_report()); /* a report while running is allowed */
    assert_non_null(strstr(rep, "(running)"));
    nn_free(rep);
    TU_OK(nn_profiler_stop());
    assert_int_equal(nn_profiler_stop(), NN_ERR_STATE);
    nn_clear_error(); /* else a NULL argument reports the pending error, its root cause */
    assert_int_equal(nn_profiler_write_trace(NULL), NN_ERR_NULL);
    assert_int_equal(nn_profiler_write_report(-1), NN_ERR_INVALID);
    assert_int_equal(nn_profiler_write_trace("/nonexistent-dir/t.json"), NN_ERR_IO);
    tu_expect_error(NN_ERR_IO, "nn_profiler_write_trace");

    assert_int_equal(nn_memory_stats(NULL), NN_ERR_NULL);
    nn_memory_stats_t st = {.size = 4};
    assert_int_equal(nn_memory_stats(&st), NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "out->size = 4");
    assert_string_equal(nn_memory_category_name(NN_MEM_GRADIENTS), "gradients");
    assert_string_equal(nn_memory_category_name(-1), "unknown");
    assert_string_equal(nn_memory_category_name(NN_MEM_CATEGORIES), "unknown");
}

/* An older caller's smaller struct gets only its prefix. */
static void test_memory_stats_prefix(void **s) {
    (void)s;
    unsigned char buf[sizeof(nn_memory_stats_t) + 16];
    memset(buf, 0xAB, sizeof buf);
    nn_memory_stats_t *st = (nn_memory_stats_t *)buf;
    const uint32_t small = (uint32_t)(offsetof(nn_memory_stats_t, current) + 8);
    st->size = small;
    TU_OK(nn_memory_stats(st));
    assert_int_equal(st->size, small);
    assert_int_equal(st->ncategories, NN_MEM_CATEGORIES);
    for (size_t i = small; i < sizeof buf; i++) assert_int_equal(buf[i], 0xAB);
}

/* Bytes by category against the shapes: Linear(256, 128) parameters,
 * its gradients after a backward, Adam's two moments, a loader batch. */
static void test_memory_categories(void **s) {
    (void)s;
    nn_memory_stats_t a = {.size = sizeof a}, b = {.size = sizeof b};
    const uint64_t pbytes = (256 * 128 + 128) * 4;
    TU_OK(nn_memory_stats(&a));
    nn_module *lin = TU_NN(nn_linear_new(256, 128, true));
    TU_OK(nn_memory_stats(&b));
    assert_int_equal(b.current[NN_MEM_PARAMETERS] - a.current[NN_MEM_PARAMETERS], pbytes);

    nn_generator *g = TU_NN(nn_generator_new(1));
    nn_tensor *x = TU_NN(nn_randn(g, (int64_t[]){96, 256}, 2));
    nn_tensor *y = TU_NN(labels(96, 128));
    TU_OK(nn_memory_stats(&a));
    nn_dataset *ds = TU_NN(nn_dataset_from_tensors(x, y));
    TU_OK(nn_memory_stats(&b));
    /* the dataset holds x and y: they are now counted as data */
    assert_int_equal(b.current[NN_MEM_DATA] - a.current[NN_MEM_DATA], 96 * 256 * 4 + 96 * 8);
    nn_loader *ld = TU_NN(nn_loader_new(ds, 32, false, 0));
    TU_OK(nn_loader_set_prefetch(ld, false));
    nn_optim *opt = TU_NN(nn_optim_new_module(NN_OPTIM_TYPE_ADAM, lin, 1e-3));
    nn_tensor *bx, *by;
    TU_OK(nn_memory_stats(&a));
    assert_true(nn_loader_next(ld, &bx, &by));
    TU_OK(nn_memory_stats(&b));
    assert_int_equal(b.current[NN_MEM_DATA] - a.current[NN_MEM_DATA], 32 * 256 * 4 + 32 * 8);

    nn_scope *sc = TU_NN(nn_scope_begin());
    nn_tensor *loss = TU_NN(nn_cross_entropy(nn_module_forward(lin, bx), by));
    TU_OK(nn_memory_stats(&a));
    assert_true(a.current[NN_MEM_ACTIVATIONS] >= 32 * 128 * 4); /* the logits at least */
    TU_OK(nn_backward(loss));
    TU_OK(nn_memory_stats(&b));
    assert_int_equal(b.current[NN_MEM_GRADIENTS], pbytes);
    assert_int_equal(b.current[NN_MEM_OPTIMIZER], 0);
    TU_OK(nn_optim_step(opt));
    TU_OK(nn_memory_stats(&b));
    assert_int_equal(b.current[NN_MEM_OPTIMIZER], 2 * pbytes);
    TU_OK(nn_optim_zero_grad(opt));
    TU_OK(nn_memory_stats(&b));
    assert_int_equal(b.current[NN_MEM_GRADIENTS], 0);
    assert_true(b.peak[NN_MEM_GRADIENTS] >= pbytes);
    TU_OK(nn_scope_end(sc));

    /* the peak resets to the current figure; totals add up */
    TU_OK(nn_memory_reset_peak());
    TU_OK(nn_memory_stats(&b));
    uint64_t sum = 0;
    for (int c = 0; c < NN_MEM_CATEGORIES; c++) {
        assert_int_equal(b.peak[c], b.current[c]);
        sum += b.current[c];
    }
    assert_int_equal(b.current_total, sum);
    assert_int_equal(b.peak_total, b.current_total);

    /* the summary shows the figures */
    char *sum_txt = TU_NN(nn_module_summary(lin, (int64_t[]){4, 256}, 2));
    assert_non_null(strstr(sum_txt, "memory"));
    nn_free(sum_txt);

    nn_optim_free(opt);
    nn_loader_free(ld);
    nn_dataset_free(ds);
    nn_tensor_free(x);
    nn_tensor_free(y);
    nn_generator_free(g);
    nn_module_free(lin);
    TU_OK(nn_memory_stats(&b));
    assert_int_equal(b.current[NN_MEM_PARAMETERS], 0);
    assert_int_equal(b.current[NN_MEM_OPTIMIZER], 0);
    assert_int_equal(b.current[NN_MEM_DATA], 0);
}

/* The demo CNN: results are the same bits with the profiler on; the report's
 * self times add up to the measured loop within 5%; FLOPs of the Linear
 * layers match their shapes; the trace is written and names the events. */
static void test_cnn_profile(void **s) {
    (void)s;
    run r;
    setup_run(&r, 256, 64, 16);
    int64_t np;
    float **init = snapshot_params(r.net, &np);
    const int steps = 4;

    train(&r, steps);
    float **off = snapshot_params(r.net, &np);

    /* Self times partition the time the recorded calls cover; the loop
     * around them (scope begin, the while test) is all that is left out.
     * The test's own clock also sees preemption by other processes, so a
     * session whose sum misses by more than 5% is retried (a new session
     * replaces the old one): the partition must hold in one of five. */
    double wall = 0, covered = 0;
    for (int attempt = 0; attempt < 5; attempt++) {
        restore_params(r.net, init, np);
        TU_OK(nn_profiler_start(NN_PROFILER_MEMORY));
        wall = train(&r, steps);
        TU_OK(nn_profiler_stop());
        covered = nn_profiler_total_seconds();
        if (fabs(covered - wall) <= 0.05 * wall) break;
    }
    for (int64_t i = 0; i < np; i++) {
        nn_tensor *p = nn_module_parameter(r.net, i, NULL);
        assert_memory_equal(nn_tensor_data(p), off[i], (size_t)nn_tensor_numel(p) * 4);
    }
    if (fabs(covered - wall) > 0.05 * wall)
        fail_msg("profiled self time %.6f s vs measured loop %.6f s", covered, wall);

    char *rep = TU_NN(nn_profiler_report());
    const char *want[] = {"Top ops by self time", "nn_conv2d", "nn_linear", "nn_optim_step",
                          "backward", "Per-module totals", "Linear#1", "Linear#2",
                          "Conv2d+ReLU", "nn_loader_next", "Memory held by libnn", "main"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(rep, want[i])) fail_msg("report lacks '%s':\n%s", want[i], rep);
    nn_free(rep);

    char path[64];
    snprintf(path, sizeof path, "prof-test-%ld.json", (long)getpid());
    TU_OK(nn_profiler_write_trace(path));
    char *js = TU_NN(slurp(path));
    assert_non_null(strstr(js, "\"traceEvents\""));
    assert_non_null(strstr(js, "\"ph\":\"C\"")); /* memory samples */
    /* one forward event per step of each Linear, one optimizer step per step */
    assert_int_equal(count_substr(js, "{\"name\":\"nn_linear\",\"cat\":\"op\""), 2 * steps);
    assert_int_equal(count_substr(js, "{\"name\":\"nn_optim_step\",\"cat\":\"optimizer\""), steps);
    /* FLOPs of the first Linear's forward: 2 * batch * in * out */
    char want_fl[64];
    snprintf(want_fl, sizeof want_fl, "\"flops\":%.0f,", 2.0 * 64 * (32 * 7 * 7) * 128);
    assert_int_equal(count_substr(js, want_fl), steps);
    free(js);
    remove(path);

    free_snapshot(init, np);
    free_snapshot(off, np);
    free_run(&r);
}

/* Several host threads and the pool's workers record at once: every call
 * is counted once, each thread is named in the trace. */
#define NTHREADS 4
#define CALLS 200

static void *adder(void *arg) {
    (void)arg;
    nn_tensor *a = nn_tensor_full(NN_DTYPE_F32, (int64_t[]){64}, 1, 1.0);
    for (int i = 0; i < CALLS; i++) nn_tensor_free(nn_add(a, a));
    nn_tensor_free(a);
    return NULL;
}

static void test_threads(void **s) {
    (void)s;
    TU_OK(nn_set_num_threads(2));
    TU_OK(nn_profiler_start(0));
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) assert_int_equal(pthread_create(&t[i], NULL, adder, NULL), 0);
    /* meanwhile a threaded GEMM on this thread wakes the pool */
    nn_generator *g = TU_NN(nn_generator_new(2));
    nn_tensor *a = TU_NN(nn_randn(g, (int64_t[]){256, 256}, 2));
    for (int i = 0; i < 5; i++) nn_tensor_free(TU_NN(nn_matmul(a, a)));
    for (int i = 0; i < NTHREADS; i++) pthread_join(t[i], NULL);
    TU_OK(nn_profiler_stop());
    char path[64];
    snprintf(path, sizeof path, "prof-threads-%ld.json", (long)getpid());
    TU_OK(nn_profiler_write_trace(path));
    char *js = TU_NN(slurp(path));
    assert_int_equal(count_substr(js, "{\"name\":\"nn_add\",\"cat\":\"op\""), NTHREADS * CALLS);
    assert_int_equal(count_substr(js, "{\"name\":\"nn_matmul\",\"cat\":\"op\""), 5);
    /* the main thread and the adders (the pool joins when the host lets it) */
    assert_true(count_substr(js, "\"thread_name\"") >= NTHREADS + 1);
    free(js);
    remove(path);
    char *rep = TU_NN(nn_profiler_report());
    char line[64];
    snprintf(line, sizeof line, "%d", NTHREADS * CALLS);
    assert_non_null(strstr(rep, line)); /* the calls column of nn_add */
    nn_free(rep);
    nn_tensor_free(a);
    nn_generator_free(g);
    TU_OK(nn_set_num_threads(1));
}

/* A new session drops the previous one's records. */
static void test_sessions(void **s) {
    (void)s;
    nn_tensor *a = TU_NN(nn_tensor_full(NN_DTYPE_F32, (int64_t[]){8}, 1, 1.0));
    TU_OK(nn_profiler_start(0));
    for (int i = 0; i < 3; i++) nn_tensor_free(nn_neg(a));
    TU_OK(nn_profiler_stop());
    for (int i = 0; i < 3; i++) nn_tensor_free(nn_neg(a)); /* not recorded */
    TU_OK(nn_profiler_start(0));
    nn_tensor_free(nn_exp(a));
    TU_OK(nn_profiler_stop());
    char *rep = TU_NN(nn_profiler_report());
    assert_null(strstr(rep, "nn_neg"));
    assert_non_null(strstr(rep, "nn_exp"));
    nn_free(rep);
    nn_tensor_free(a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off_by_default_and_misuse), cmocka_unit_test(test_memory_stats_prefix),
        cmocka_unit_test(test_memory_categories), cmocka_unit_test(test_cnn_profile),
        cmocka_unit_test(test_threads), cmocka_unit_test(test_sessions)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
