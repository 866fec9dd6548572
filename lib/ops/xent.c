/* The backend's cross-entropy row kernels for lib/loss (which may not call
 * the backend itself: tests/layers/check_layers.py). */
#include "backend/backend.h"
#include "nn_internal.h"

void nn__xent_lse_rows(int64_t m, int64_t n, const float *x, float *lse) {
    nn__kernels()->eltwise.xent_lse(m, n, x, lse);
}

void nn__xent_bwd_rows(int64_t m, int64_t n, const float *x, const float *lse, const int64_t *t,
                       const float *s, float *g) {
    nn__kernels()->eltwise.xent_bwd(m, n, x, lse, t, s, g);
}
