/* What the mpirun-driven checks (dist_check.c, dist_overlap.c) share: the
 * rank's failure flag and its CHECK macros, MPI start-up, the labelled
 * dataset and one forward/backward on a subset of its rows. Each program is
 * one translation unit that includes this once. */
#ifndef NN_TESTS_DIST_UTIL_H
#define NN_TESTS_DIST_UTIL_H

#include "nn.h"

#include <stdio.h>
#include <stdlib.h>

static int g_rank, g_size, g_failed;

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "rank %d: %s:%d: ", g_rank, __FILE__, __LINE__);    \
            fprintf(stderr, __VA_ARGS__);                                       \
            fprintf(stderr, " [%s]\n", nn_last_error());                        \
            g_failed = 1;                                                       \
        }                                                                       \
    } while (0)
#define CHECK_OK(expr) CHECK((expr) == NN_OK, "%s failed", #expr)

/* nn_dist_init, then g_rank and g_size; false (said on stderr) if it failed. */
static inline bool dist_start(int *argc, char ***argv) {
    if (nn_dist_init(argc, argv) != NN_OK) {
        fprintf(stderr, "nn_dist_init: %s\n", nn_last_error());
        return false;
    }
    g_rank = nn_dist_rank();
    g_size = nn_dist_size();
    return true;
}

/* x f32 [n, f] uniform in [-1, 1) from generator `seed`, y i64 [n] = i % c. */
static inline void dist_make_data(int64_t n, int64_t f, int64_t c, uint64_t seed, nn_tensor **x,
                                  nn_tensor **y) {
    nn_generator *g = nn_generator_new(seed);
    int64_t xs[2] = {n, f};
    int64_t *lab = malloc(sizeof(int64_t) * (size_t)n);
    CHECK(lab, "out of memory");
    for (int64_t i = 0; lab && i < n; i++) lab[i] = i % c;
    *x = nn_uniform(g, xs, 2, -1, 1);
    *y = lab ? nn_tensor_from_data(NN_DTYPE_I64, &n, 1, lab) : NULL;
    free(lab);
    nn_generator_free(g);
}

/* Forward (in the module's mode) and backward of the cross-entropy on rows
 * idx[0..n) of x and y. */
static inline void dist_backward_on(nn_module *net, nn_tensor *x, nn_tensor *y,
                                    const int64_t *idx, int64_t n) {
    nn_scope *s = nn_scope_begin();
    nn_tensor *it = nn_tensor_from_data(NN_DTYPE_I64, &n, 1, idx);
    nn_tensor *xr = nn_index_select(x, 0, it), *yr = nn_index_select(y, 0, it);
    CHECK_OK(nn_backward(nn_cross_entropy(nn_module_forward(net, xr), yr)));
    nn_scope_end(s);
}

#endif
