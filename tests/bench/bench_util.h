/* What every benchmark program in tests/bench needs besides libnn: clocks,
 * medians, BENCH lines, leaving with libnn's message when a call fails.
 * Public API and libc only, so the programs that measure an older
 * libnn.so (hostile_load, ...) can use it too. */
#ifndef NN_BENCH_UTIL_H
#define NN_BENCH_UTIL_H

#include "nn.h"

#include <stdbool.h>

/* The name die messages start with ("bench", "bench_half", ...): set by
 * main before anything can fail. */
extern const char *bench_prog;

/* Wall-clock time (CLOCK_MONOTONIC), in seconds. */
double bench_now_s(void);
/* CPU time of the calling thread (on a shared host, the figure preemption
 * does not inflate), in seconds. */
double bench_thread_cpu_s(void);
/* CPU time of the whole process (all its threads), in seconds. */
double bench_process_cpu_s(void);

/* qsort comparison of doubles, ascending. */
int bench_cmp_double(const void *a, const void *b);
/* Median of v[0..n), n >= 1 (sorts v in place). */
double bench_median(double *v, int n);

/* "BENCH <name> <threads> <value %.6g> <unit>" on stdout, flushed. */
void bench_report(const char *name, int threads, double value, const char *unit);
/* Whether a case named `name` runs under the prefix filter `only` (NULL:
 * every case). */
bool bench_wanted(const char *only, const char *name);

/* "<bench_prog>: <what> failed: <nn_last_error()>" on stderr, exit 1. */
_Noreturn void bench_die(const char *what);
/* One training step in a scope of its own: zero_grad, cross-entropy of
 * net(x) against labels y, backward, optimizer step. */
void bench_train_step(nn_module *net, nn_optim *opt, nn_tensor *x, nn_tensor *y);
/* p, or bench_die(what) when p is NULL (a constructor that failed). */
void *bench_need(void *p, const char *what);
#define CHECK(expr) ((expr) ? (void)0 : bench_die(#expr))
#define CHECK_OK(expr) ((expr) == NN_OK ? (void)0 : bench_die(#expr))

#endif
