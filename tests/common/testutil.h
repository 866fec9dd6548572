/* Shared test helpers: cmocka glue, failing allocator, gradcheck, golden files. */
#ifndef NN_TESTUTIL_H
#define NN_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "nn.h"

/* Assert that a status is NN_OK, printing nn_last_error() otherwise. */
#define TU_OK(expr)                                                                        \
    do {                                                                                   \
        nn_status tu_st_ = (expr);                                                         \
        if (tu_st_ != NN_OK) fail_msg("%s -> %d: %s", #expr, (int)tu_st_, nn_last_error()); \
    } while (0)
/* Assert that a pointer result is non-NULL, printing nn_last_error() otherwise. */
#define TU_NN(expr) tu_nonnull_((expr), #expr, __FILE__, __LINE__)
void *tu_nonnull_(void *p, const char *expr, const char *file, int line);
/* Assert that the last error has the given status and a message containing substr. */
void tu_expect_error(nn_status status, const char *substr);

/* Failing allocator: after tu_alloc_fail_at(k) the k-th allocation (1-based)
 * from now on fails (0: never). tu_alloc_count() is the number made. */
void tu_alloc_install(void);
void tu_alloc_uninstall(void);
void tu_alloc_fail_at(long k);
long tu_alloc_count(void);
long tu_alloc_live(void); /* blocks allocated through the hook and not freed */
/* Run body(k) for k = 1, 2, ... failing the k-th allocation until body
 * succeeds with no failure injected; asserts no leak after each run. body
 * returns 0 on success. Returns the number of allocation sites swept. */
long tu_oom_sweep(int (*body)(void *ctx), void *ctx);

/* f32 tensor from literal values. */
nn_tensor *tu_tensor(const int64_t *shape, int ndim, const float *values);
/* Deterministic random f32 tensor in [lo, hi). */
nn_tensor *tu_rand(uint64_t seed, const int64_t *shape, int ndim, double lo, double hi);

/* Gradient check. fn builds the output from inputs (all f32, those with
 * requires_grad are checked). The check forms L = sum(out * R) with a fixed
 * random R, backpropagates, and compares each input's gradient with central
 * differences (step eps, evaluated in f32, accumulated in double).
 * Fails the test if |analytic - numeric| > atol + rtol * |numeric|. */
typedef nn_tensor *(*tu_fn)(nn_tensor **inputs, void *ctx);
void tu_gradcheck(tu_fn fn, nn_tensor **inputs, int n, void *ctx, double eps, double atol,
                  double rtol);

/* Golden files (written by tests/golden/make_golden.py): text records
 *   tensor <name> <dtype f32|i64> <ndim> <d0> ... <dn-1>
 *   <numel values separated by whitespace>
 * tu_golden_open reads $NN_TEST_DATA/golden/<file>. */
typedef struct tu_golden tu_golden;
tu_golden *tu_golden_open(const char *file);
/* Borrowed tensor by name; fails the test if missing. */
nn_tensor *tu_golden_get(tu_golden *g, const char *name);
/* Whether name exists. */
int tu_golden_has(tu_golden *g, const char *name);
void tu_golden_close(tu_golden *g);
/* Assert allclose with a useful message (max abs/rel error and position). */
void tu_assert_close(const nn_tensor *got, const nn_tensor *want, double rtol, double atol,
                     const char *what);

/* Path under $NN_TEST_DATA (tests/ in the source tree); static buffer. */
const char *tu_data_path(const char *rel);

/* A private scratch directory for one test file. tu_tmpdir_setup (a cmocka
 * group setup) creates /tmp/nn_test_XXXXXX; tu_tmpdir() is its path;
 * tu_tmp_path(name) is name inside it (static buffer, valid until the next
 * call); tu_tmpdir_teardown (the group teardown) removes it with everything
 * in it, subdirectories included. */
int tu_tmpdir_setup(void **state);
/* A whole file into malloc'd memory (*n bytes; the caller frees), failing
 * the test if it cannot be read; and n bytes written to a file. */
uint8_t *tu_read_file(const char *path, size_t *n);
void tu_write_file(const char *path, const void *data, size_t n);
int tu_tmpdir_teardown(void **state);
/* kB of /proc/self/smaps field `key` ("Rss", "Private_Dirty", ...) summed
 * over this process's mappings of path. */
long tu_smaps_kb(const char *path, const char *key);
/* A second process (fork) runs child(path, ctx) (typically: map path and
 * sum a tensor) and keeps what it made while this process reads its own
 * Shared_Clean and Private_Dirty kB of path; returns child's value. */
double tu_in_second_process(const char *path, double (*child)(const char *path, void *ctx),
                            void *ctx, long *shared_kb, long *private_kb);
const char *tu_tmpdir(void);
const char *tu_tmp_path(const char *name);

#endif
