/* Reference kernels of the half-precision domain (backend/half.h): the scalar
 * formulas of core/half.h in loops, and the f32 x half product summed in k
 * order. The oracle the x86 tiers are tested against. */
#include "backend/ref/ref.h"

#include <stdlib.h>

static void ref_f32_to_f16(const float *s, uint16_t *d, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = nn__f32_to_f16(s[i]);
}
static void ref_f32_to_bf16(const float *s, uint16_t *d, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = nn__f32_to_bf16(s[i]);
}
static void ref_f16_to_f32(const uint16_t *s, float *d, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = nn__f16_to_f32(s[i]);
}
static void ref_bf16_to_f32(const uint16_t *s, float *d, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = nn__bf16_to_f32(s[i]);
}

static void ref_half_gemm(bool bf16, bool trans_b, int64_t m, int64_t n, int64_t k, const float *a,
                          int64_t lda, const uint16_t *b, int64_t ldb, float *c, int64_t ldc) {
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float s = 0.0f;
            for (int64_t p = 0; p < k; p++) {
                uint16_t h = trans_b ? b[j * ldb + p] : b[p * ldb + j];
                s += a[i * lda + p] * (bf16 ? nn__bf16_to_f32(h) : nn__f16_to_f32(h));
            }
            c[i * ldc + j] = s;
        }
}

static bool no(void) { return false; }

static unsigned ref_conv_passes(bool bf16, const nn__conv2d *d) {
    (void)bf16, (void)d;
    return 0; /* the front end widens the weights and runs the f32 convolution */
}

/* The twin of the tiers' half-weight convolutions: w widened to f32, then
 * the reference direct convolution. */
static bool ref_conv_fwd(bool bf16, const nn__conv2d *d, const float *x, const uint16_t *w,
                         const float *bias, bool relu, bool pool, float *y) {
    const size_t nw = (size_t)(d->o * d->c * d->g.kh * d->g.kw);
    float *wf = malloc(nw ? nw * sizeof(float) : 1);
    if (!wf) return false;
    (bf16 ? ref_bf16_to_f32 : ref_f16_to_f32)(w, wf, nw);
    nn__conv_kernels ck;
    nn__ref_fill_conv(&ck);
    const bool ok = ck.direct_fwd(d, x, wf, bias, relu, pool, y);
    free(wf);
    return ok;
}

void nn__ref_fill_half(nn__half_kernels *t) {
    t->cvt.f32_to_f16 = ref_f32_to_f16;
    t->cvt.f32_to_bf16 = ref_f32_to_bf16;
    t->cvt.f16_to_f32 = ref_f16_to_f32;
    t->cvt.bf16_to_f32 = ref_bf16_to_f32;
    t->gemm = ref_half_gemm;
    t->gemm_rounds_a = no;
    t->conv_passes = ref_conv_passes;
    t->conv_fwd = ref_conv_fwd;
}
