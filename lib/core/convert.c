/* f32 <-> f16 / bf16 conversion of contiguous runs: the backend's active
 * kernels once it has registered them (it does so at load), else the scalar
 * formulas of core/half.h. Core never calls into the backend otherwise. */
#include "core/half.h"

static _Atomic(nn__cvt_hook) g_cvt_hook;

void nn__on_convert(nn__cvt_hook hook) { g_cvt_hook = hook; }

static void scalar_to(nn_dtype to, const float *s, uint16_t *d, size_t n) {
    if (to == NN_DTYPE_F16)
        for (size_t i = 0; i < n; i++) d[i] = nn__f32_to_f16(s[i]);
    else
        for (size_t i = 0; i < n; i++) d[i] = nn__f32_to_bf16(s[i]);
}

static void scalar_from(nn_dtype from, const uint16_t *s, float *d, size_t n) {
    if (from == NN_DTYPE_F16)
        for (size_t i = 0; i < n; i++) d[i] = nn__f16_to_f32(s[i]);
    else
        for (size_t i = 0; i < n; i++) d[i] = nn__bf16_to_f32(s[i]);
}

bool nn__convert(nn_dtype from, nn_dtype to, const void *src, void *dst, size_t n) {
    nn__cvt_hook hook = g_cvt_hook;
    const nn__cvt_kernels *k = hook ? hook() : NULL;
    if (from == NN_DTYPE_F32 && (to == NN_DTYPE_F16 || to == NN_DTYPE_BF16)) {
        nn__cvt_to_half_fn f = k ? (to == NN_DTYPE_F16 ? k->f32_to_f16 : k->f32_to_bf16) : NULL;
        if (f)
            f(src, dst, n);
        else
            scalar_to(to, src, dst, n);
        return true;
    }
    if (to == NN_DTYPE_F32 && (from == NN_DTYPE_F16 || from == NN_DTYPE_BF16)) {
        nn__cvt_from_half_fn f =
            k ? (from == NN_DTYPE_F16 ? k->f16_to_f32 : k->bf16_to_f32) : NULL;
        if (f)
            f(src, dst, n);
        else
            scalar_from(from, src, dst, n);
        return true;
    }
    return false;
}
