/* Shared helpers of the benchmark programs (bench_util.h). */
#include "bench_util.h"
#include "nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *bench_prog = "bench";

static double clock_s(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

double bench_now_s(void) { return clock_s(CLOCK_MONOTONIC); }
double bench_thread_cpu_s(void) { return clock_s(CLOCK_THREAD_CPUTIME_ID); }
double bench_process_cpu_s(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }

int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void bench_report(const char *name, int threads, double value, const char *unit) {
    printf("BENCH %s %d %.6g %s\n", name, threads, value, unit);
    fflush(stdout);
}

bool bench_wanted(const char *only, const char *name) {
    return !only || strncmp(name, only, strlen(only)) == 0;
}

void bench_die(const char *what) {
    fprintf(stderr, "%s: %s failed: %s\n", bench_prog, what, nn_last_error());
    exit(1);
}

void *bench_need(void *p, const char *what) {
    if (!p) bench_die(what);
    return p;
}

void bench_train_step(nn_module *net, nn_optim *opt, nn_tensor *x, nn_tensor *y) {
    nn_scope *s = nn_scope_begin();
    CHECK(s);
    CHECK_OK(nn_optim_zero_grad(opt));
    nn_tensor *loss = nn_cross_entropy(nn_module_forward(net, x), y);
    CHECK(loss);
    CHECK_OK(nn_backward(loss));
    CHECK_OK(nn_optim_step(opt));
    nn_scope_end(s);
}
