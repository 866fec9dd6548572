/* Half-precision weights (f16 / bf16) for the ops that take them: Linear
 * (nn_linear), nn_matmul's right operand, Conv2d and Embedding. Activations
 * and accumulation stay f32. Small products (fewer than NN__HALF_ROWS rows:
 * batch-1 inference and GEMV) go to the backend's half GEMM, which reads the
 * 16-bit weights and converts them in registers: half the bytes of an f32
 * weight move. Larger products convert the weight once per call into an
 * f32 copy and take the f32 path (its cost, one pass over the weight, is
 * small beside rows x weight multiply-adds). A gradient never flows into a
 * half weight (only f32 tensors require grad); when x needs one, the op
 * records its node on the f32 copy, so backward reads f32 as always. */
#include "backend/backend.h"
#include "nn_ops_internal.h"

bool nn__check_weight(const nn_tensor *w, const char *fn, const char *name) {
    if (!nn__check_tensor(w, fn, name)) return false;
    if (w->dtype == NN_DTYPE_F32 || nn__is_half(w->dtype)) return true;
    nn__err(NN_ERR_DTYPE, "%s: argument '%s' has dtype %s, expected f32, f16 or bf16", fn, name,
            nn_dtype_name(w->dtype));
    return false;
}

nn_tensor *nn__weight_f32(const nn_tensor *w) {
    return nn__is_half(w->dtype) ? nn__cast(w, NN_DTYPE_F32) : nn__contig(w);
}

void nn__half_gemm(bool trans_b, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                   const nn_tensor *b, int64_t ldb, float *c, int64_t ldc) {
    const uint16_t *bp = nn__u16(b);
    nn__kernels()->half.gemm(b->dtype == NN_DTYPE_BF16, trans_b, m, n, k, a, lda, bp, ldb, c, ldc);
}
