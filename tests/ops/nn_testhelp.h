/* Helpers shared by the nn-op tests (test_linalg, test_conv, test_pool,
 * test_norm): building inputs, running golden cases from ops_nn.txt. */
#ifndef NN_TESTHELP_H
#define NN_TESTHELP_H

#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* A leaf f32 tensor with values in [-1, 1) that requires grad. */
static inline nn_tensor *th_param(uint64_t seed, const int64_t *shape, int ndim) {
    nn_tensor *t = tu_rand(seed, shape, ndim, -1.0, 1.0);
    TU_OK(nn_tensor_set_requires_grad(t, true));
    return t;
}

/* A leaf whose values are a random permutation of 0.1*(0..n-1) - shift:
 * distinct and at least 0.1 apart, so max-type ops have no near ties that
 * finite differences could cross. */
static inline nn_tensor *th_spaced(uint64_t seed, const int64_t *shape, int ndim) {
    nn_tensor *t = TU_NN(nn_tensor_empty(NN_DTYPE_F32, shape, ndim));
    int64_t n = nn_tensor_numel(t);
    nn_generator *g = nn_generator_new(seed);
    nn_tensor *perm = TU_NN(nn_randperm(g, n));
    nn_generator_free(g);
    const int64_t *p = nn_tensor_data(perm);
    float *d = nn_tensor_data(t);
    for (int64_t i = 0; i < n; i++) d[i] = 0.1f * (float)p[i] - 0.05f * (float)n;
    nn_tensor_free(perm);
    TU_OK(nn_tensor_set_requires_grad(t, true));
    return t;
}

static inline void th_free_all(nn_tensor **ts, int n) {
    for (int i = 0; i < n; i++) nn_tensor_free(ts[i]);
}

/* i64 parameters of a golden case as a borrowed array (count in *n). */
static inline const int64_t *th_params(tu_golden *g, const char *name, int64_t *n) {
    nn_tensor *t = tu_golden_get(g, name);
    *n = nn_tensor_numel(t);
    return nn_tensor_data(t);
}

/* Golden case k of the family `op`: its name "<op>_<k>" into cs (cs_size
 * bytes) and its i64 parameters "<op>_<k>_params" into *params (borrowed);
 * false when the file has no such case. */
static inline bool th_golden_params(tu_golden *g, const char *op, int k, char *cs, size_t cs_size,
                                    const int64_t **params) {
    char nm[160];
    snprintf(cs, cs_size, "%s_%d", op, k);
    snprintf(nm, sizeof nm, "%s_params", cs);
    if (!tu_golden_has(g, nm)) return false;
    int64_t np;
    *params = th_params(g, nm, &np);
    return true;
}

/* Run one golden case: inputs <case>_in<i> (cloned; f32 ones require grad
 * when <case>_grad<i> exists), forward via fn, compare with <case>_out,
 * backward with seed <case>_gout, compare each input's gradient. */
typedef nn_tensor *(*th_fn)(nn_tensor **in, void *ctx);

static inline void th_golden_case(tu_golden *g, const char *cs, int nin, th_fn fn, void *ctx, double rtol,
                                  double atol) {
    char name[160];
    nn_tensor *in[8] = {0};
    for (int i = 0; i < nin; i++) {
        snprintf(name, sizeof name, "%s_in%d", cs, i);
        if (!tu_golden_has(g, name)) continue; /* an optional input left out (NULL) */
        in[i] = TU_NN(nn_tensor_clone(tu_golden_get(g, name)));
        snprintf(name, sizeof name, "%s_grad%d", cs, i);
        if (tu_golden_has(g, name)) TU_OK(nn_tensor_set_requires_grad(in[i], true));
    }
    nn_tensor *out = fn(in, ctx);
    snprintf(name, sizeof name, "%s_out", cs);
    tu_assert_close(out, tu_golden_get(g, name), rtol, atol, name);
    snprintf(name, sizeof name, "%s_gout", cs);
    if (tu_golden_has(g, name)) {
        TU_OK(nn_backward_ex(out, tu_golden_get(g, name), false));
        for (int i = 0; i < nin; i++) {
            snprintf(name, sizeof name, "%s_grad%d", cs, i);
            if (!tu_golden_has(g, name)) continue;
            tu_assert_close(nn_tensor_grad(in[i]), tu_golden_get(g, name), rtol, atol, name);
        }
    }
    nn_tensor_free(out);
    th_free_all(in, nin);
}

#endif
