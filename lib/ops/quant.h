/* Int8 inference ops (ops/quant.c) behind the quantized module kinds
 * (module/quantized.c): per-output-channel symmetric int8 weights, packed
 * for the backend's int8 GEMM (backend/int8.h), and u8 activations with a
 * zero point, quantized per row (Linear) or per image (Conv2d) at run time
 * ("dynamic") or with a scale and zero point fixed by calibration
 * ("static"). Inference only: no graph is recorded. */
#ifndef NN_OPS_QUANT_H
#define NN_OPS_QUANT_H

#include "nn_internal.h"

/* The dtype that holds packed int8 weights in tensors and model files. */
#define NN__QW_DTYPE NN_DTYPE_I8

/* The largest depth (inputs per output) the int8 kernels sum exactly
 * (backend/int8.h: NN__QK_MAX). */
#define NN__Q_DEPTH_MAX 65536

/* Activation scale and zero point for inputs in [mn, mx] (the backend's
 * rule, nn__qparams_u8: the range widened to hold 0, 255 steps). */
void nn__q_act_params(float mn, float mx, float *scale, int32_t *zp);

/* Shape of the packed weights of an [n, k] matrix: [ceil(n/16), kp/4, 64]. */
void nn__qw_shape(int64_t n, int64_t k, int64_t shape[3]);

/* Quantize f32 weights w [n, k] (row-major) per output channel: scale[j] =
 * max_k |w[j,k]| / qmax (1 for an all-zero row), q = round_half_even(w /
 * scale) in [-qmax, qmax], packed into `packed` (contiguous NN__QW_DTYPE of
 * nn__qw_shape); qmax = 127, or 63 with w7 (reduced range, backend/int8.h).
 * NN_ERR_NOMEM, or NN_ERR_LIMIT past the backend's depth limit (65536),
 * naming fn. */
nn_status nn__qw_quantize(const float *w, int64_t n, int64_t k, bool w7, nn_tensor *packed,
                          float *scale, const char *fn);
/* Whether quantization should make 7-bit weights on this machine: the
 * running tier's preference (the AVX2 kernels' vpmaddubsw path). */
bool nn__qw_prefer_w7(void);
/* Dequantized weights: wf [n, k] = scale[j] * q[j, k] (tests, reports). */
void nn__qw_dequantize(const nn_tensor *packed, const float *scale, int64_t n, int64_t k,
                       float *wf);

/* One quantized layer. act_scale > 0: static activations with act_zp in
 * [0, 255]; else dynamic. */
typedef struct nn__qlayer {
    const nn_tensor *w;       /* packed, NN__QW_DTYPE */
    const nn_tensor *w_scale; /* f32 [n] */
    const nn_tensor *bias;    /* f32 [n] or NULL */
    int64_t n, k;
    bool relu;
    bool w7; /* weights in [-63, 63], clamped there by every tier */
    float act_scale;
    int32_t act_zp;
} nn__qlayer;

/* y [*, n] from x [*, k] (f32, any layout). Tracked result, NULL on error. */
nn_tensor *nn__qlinear(nn_tensor *x, const nn__qlayer *L, const char *fn);
/* The same on raw rows, for callers that keep their own scratch (a decode
 * session): x [rows, k] contiguous f32 -> y [rows, n]; a [rows, kp] u8
 * (kp = nn__qk_pad(k)), sa and zp [rows] are scratch; wsum: the layer's
 * column sums (nn__qw_colsum, computed once by the caller), or NULL to have
 * them computed into wsum_tmp [n] when a zero point needs them. */
void nn__qlinear_rows(const nn__qlayer *L, const float *x, int64_t rows, uint8_t *a, float *sa,
                      int32_t *zp, const int32_t *wsum, int32_t *wsum_tmp, float *y);
/* wsum [n] = the column sums of the layer's packed weights. */
void nn__qw_colsum(const nn__qlayer *L, int32_t *wsum);
/* y [N, O, OH, OW] from x [N, C, H, W]; L->k = C*KH*KW, L->n = O; groups
 * and dilation 1. pool: then a 2x2 stride-2 max pool (floor; NaN
 * propagates): y [N, O, OH/2, OW/2]. Tracked result, NULL on error. */
nn_tensor *nn__qconv2d(nn_tensor *x, const nn__qlayer *L, int64_t c, int64_t kh, int64_t kw,
                       int64_t sh, int64_t sw, int64_t ph, int64_t pw, bool pool, const char *fn);

/* A convolution's geometry: input channels, kernel, stride, padding, pool. */
typedef struct nn__qconv_spec {
    int64_t c, kh, kw, sh, sw, ph, pw;
    bool pool;
} nn__qconv_spec;
#define NN__QCHAIN_MAX 8
/* Consecutive quantized convolutions L[0..nl) (nl <= NN__QCHAIN_MAX), each
 * as nn__qconv2d with sp[i], run image by image: one image goes through
 * every layer before the next starts, so the intermediate outputs (one
 * image's, small) stay in cache instead of batch-sized tensors going to
 * memory and back. Activations are quantized per image in both orders, so
 * the result is bit-identical to nn__qconv2d layer after layer. lin, when
 * not NULL: a linear layer after the last convolution, on its flattened
 * output ([N, C*H*W] rows, lin->k = C*H*W): each image's row is quantized
 * while it is in cache (per row when dynamic, as nn__qlinear does), then
 * all rows go through one GEMM; the result [N, lin->n] is bit-identical to
 * Flatten + nn__qlinear. Untracked result (the caller owns it), NULL on
 * error. */
nn_tensor *nn__qconv2d_chain(nn_tensor *x, const nn__qlayer *const *L, const nn__qconv_spec *sp,
                             int nl, const nn__qlayer *lin, const char *fn);

#endif
