/* AVX2 tier: optimizer updates (x86/optim_loops.h at 8 lanes; bit-identical
 * to the reference). */
#include "backend/x86/avx2/avx2.h"
#include "backend/x86/optim_loops.h"

void nn__avx2_fill_optim(nn__optim_kernels *t) {
    t->adam = x86_adam;
    t->sgd = x86_sgd;
}
