/* Backend domain: int8 inference (see backend.h for the conventions every
 * kernel follows). Post-training quantization runs Linear and Conv2d as
 *
 *     y[m, n] = sa[m] * sw[n] * sum_k (qa[m, k] - za[m]) * qw[n, k] + bias[n]
 *
 * with activations qa unsigned 8-bit (scale sa, zero point za, per row or one
 * for all rows) and weights qw signed 8-bit in [-127, 127], symmetric per
 * output channel (scale sw[n]). The sum is exact in 32-bit integers for
 * k <= NN__QK_MAX (255 * 127 * 65536 < 2^31), and computed as
 * sum qa*qw - za * sum_k qw[n, k] (the column sums wsum, once per call).
 *
 * Instructions per tier, all with the same integer results:
 *   reference  plain C (int64 sums);
 *   avx2       full-range weights: vpmovsxbw + vpmaddwd, u8 x s8 products
 *              summed in pairs in 32 bits (exact). vpmaddubsw (u8 x s8 ->
 *              s16, pairs added with saturation) runs twice the products per
 *              instruction, but 255 * 127 * 2 = 64770 overflows int16; with
 *              7-bit weights (w7 below) 255 * 63 * 2 = 32130 fits, so
 *              w7 products take vpmaddubsw + vpmaddwd(ones): exact;
 *   avx512     with AVX-512 VNNI, vpdpbusd (4 u8 x s8 products added into
 *              each 32-bit lane, no intermediate saturation); without VNNI
 *              the AVX2 kernels.
 *
 * Packed weights: output channels in panels of NN__QNR = 16, depth padded to
 * a multiple of 4 (kp = nn__qk_pad(k)); panel p holds, for each group of 4
 * depths g, 16 channels x 4 bytes:
 *     packed[((p * kp/4 + g) * 16 + j) * 4 + i] = qw[p*16 + j, g*4 + i]
 * (0 past n or k). This one layout serves every tier (a 64-byte zmm per
 * panel and depth group for vpdpbusd, two ymm for AVX2), so a packed tensor
 * saved on one machine runs on any other; model files store it as is.
 *
 * Reduced range ("w7", ONNX Runtime's reduce_range): a layer quantized with
 * 7-bit weights holds qw in [-63, 63] and says so (its weight_bits = 7); its
 * products are defined with every weight clamped to [-63, 63] first, on
 * every tier (the reference clamps too). Quantization writes nothing out of
 * that range, so for libnn's own files the clamp changes nothing; a file
 * with other bytes gets the clamped weights everywhere, so every tier still
 * gives the reference's integers. Quantization picks 7-bit weights when the
 * running tier's table says it prefers them (weight_bits: the AVX2 kernels,
 * whose vpmaddubsw path needs them; not AVX-512 VNNI, whose vpdpbusd sums
 * full-range products exactly): it costs one bit of weight precision. */
#ifndef NN_BACKEND_INT8_H
#define NN_BACKEND_INT8_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#define NN__QNR 16             /* output channels per packed panel */
#define NN__QK_MAX (1 << 16)   /* the largest depth k whose sums fit int32 */
#define NN__Q_SLACK 32         /* bytes im2row may touch past xp and col (see there) */

/* Depth padded to the packing's multiple of 4. */
static inline int64_t nn__qk_pad(int64_t k) { return (k + 3) & ~(int64_t)3; }
#define NN__QW7_MAX 63         /* |weight| of a reduced-range (w7) layer */

/* Exact integer Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions with the
 * fused 2x2 pool (the wino_* entries below). Transformed weights U' = (2G) g
 * (2G)^T, 2G = [2 0 0; 1 1 1; 1 -1 1; 0 0 2] (4x the usual U, all integers:
 * |U'| <= 3*3*127 = 1143, int16); input tiles V = B^T d B of the u8 image,
 * B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1] (|V| <= 4*255 = 1020,
 * int16); M = sum over channels of U' V (int32: |M| <= c * 1143 * 1020 <
 * 2^31 for c <= NN__QWG_CMAX); Y = A^T M A, A^T = [1 1 1 0; 0 1 -1 -1], is
 * exactly 4x the direct convolution's integer sum (|4 sum| <= 4 * 9c * 255
 * * 127 < 2^31), so Y / 4 (an exact shift) is im2row + gemm's raw sum.
 * Layout of U' (tier-independent): positions p = 4i + j, ps int16 apart,
 * then panels of 16 output channels, then channel pairs q, then 16 channels
 * x 2 (channels 2q, 2q + 1), 0 past n and c:
 *     u[p * ps + (P * nq + q) * 32 + jj * 2 + e] = U'[p] of (P*16 + jj, 2q + e)
 * (np = ceil(n / 16), nq = ceil(c / 2), ps = nn__qwg_pstride(n, c) = np * nq
 * * 32 + 32: the 64 spare bytes keep the 16 positions out of one L1 set,
 * which a power-of-two stride would put them in): one 32-bit pair per
 * vpmaddwd lane. */
#define NN__QWG_CMAX 1024
static inline int64_t nn__qwg_pstride(int64_t n, int64_t c) {
    return (n + NN__QNR - 1) / NN__QNR * ((c + 1) / 2) * 32 + 32;
}
static inline int64_t nn__qwg_elems(int64_t n, int64_t c) { return 16 * nn__qwg_pstride(n, c); }

/* Bytes of a packed [n, k] weight matrix. */
static inline int64_t nn__qpacked_bytes(int64_t n, int64_t k) {
    return (n + NN__QNR - 1) / NN__QNR * NN__QNR * nn__qk_pad(k);
}

/* Activation quantization parameters for values in [mn, mx] (the range is
 * widened to hold 0, so 0 is exact): scale = (hi - lo) / 255 (1 when the
 * range is empty or not finite) and zero point round(-lo / scale) in
 * [0, 255]. Shared by every tier, so every tier quantizes alike. */
static inline void nn__qparams_u8(float mn, float mx, float *scale, int32_t *zp) {
    float lo = mn < 0.0f ? mn : 0.0f, hi = mx > 0.0f ? mx : 0.0f;
    float s = (hi - lo) / 255.0f;
    if (!(s > 0.0f) || !isfinite(s)) {
        *scale = 1.0f;
        *zp = 0;
        return;
    }
    float z = nearbyintf(-lo / s);
    *scale = s;
    *zp = z >= 255.0f ? 255 : z > 0.0f ? (int32_t)z : 0;
}

/* One quantized product (see the top of this file):
 *   a     [m rows of kp bytes] u8 activations, row i at a + i*lda; bytes
 *         [k, kp) of each row must be initialised (any value: the packed
 *         weights are 0 there);
 *   w     packed weights [n, k] (layout above), wsum[n] their column sums;
 *         wsum NULL (only where the tier's folds_zp(m, w7) says so): the
 *         tier computes acc - za*wsum as sum_k (qa - za)*qw itself, the
 *         same integers (mod 2^32, as the epilogue's) without the column sums;
 *   a_scale[i * a_step], a_zp[i * a_step]: row i's parameters (a_step 0: one
 *         pair for all rows);
 *   w_scale[n], bias[n] (NULL: none); relu: max(y, 0), NaN kept;
 *   c     [m, n] f32, row i at c + i*ldc.
 * The epilogue in every tier: y = (float)(acc - za*wsum) * (sa * sw) (+ bias)
 * with float products and sums in that order, so results are bit-identical.
 *   c32   when not NULL: no epilogue; row i's raw sums acc = sum_k qa*qw go
 *         to c32 + i*ldc as int32 (c, wsum, scales, bias, relu unused). A
 *         caller that pools (max) before the epilogue uses it: the epilogue
 *         is non-decreasing in acc for positive scales, so pooling the
 *         integers then applying it gives the floats of the other order.
 *   w7    the weights are reduced range: each is clamped to [-63, 63]
 *         before its products (see the top of this file). */
typedef struct nn__qgemm {
    int64_t m, n, k;
    const uint8_t *a;
    int64_t lda;
    const int8_t *w;
    const int32_t *wsum;
    const float *a_scale;
    const int32_t *a_zp;
    int64_t a_step;
    const float *w_scale, *bias;
    bool relu;
    float *c;
    int64_t ldc;
    int32_t *c32;
    bool w7;
} nn__qgemm;

typedef struct nn__int8_kernels {
    /* The weight bits quantization should give this tier: 7 (w7, reduced
     * range) or 8. (A function, as every entry of the table is.) */
    int (*weight_bits)(void);
    /* *mn, *mx = the least and greatest of x[0..n) (n >= 1; NaNs skipped
     * unless all are NaN, then NaN). */
    void (*minmax)(int64_t n, const float *x, float *mn, float *mx);
    /* q[i] = clamp(round_half_even(x[i] * inv_scale) + zp, 0, 255), computed
     * in float (NaN -> 0, +inf -> 255). */
    void (*quantize_u8)(int64_t n, const float *x, float inv_scale, int32_t zp, uint8_t *q);
    /* wsum[j] = sum_k qw[j, k] of packed weights [n, k] (w7: of the
     * weights clamped to [-63, 63]). */
    void (*colsum)(int64_t n, int64_t k, const int8_t *w, bool w7, int32_t *wsum);
    /* The product above, on up to nn__num_threads() threads (split over
     * independent outputs: the same bits on any count). */
    void (*gemm)(const nn__qgemm *p);
    /* true: gemm with m rows and these weights (w7) takes wsum NULL and folds
     * the zero points into its products (a pass over the weights saved for
     * a batch-1 layer whose zero point is not 0). Every tier that sets gemm
     * sets this too. */
    bool (*folds_zp)(int64_t m, bool w7);
    /* Pack row-major s8 weights qw [n, k] (row stride ldw) into w. */
    void (*pack)(int64_t n, int64_t k, const int8_t *qw, int64_t ldw, int8_t *w);
    /* One image for im2row: x [c, h, w] u8 -> xp [h + 2ph, w + 2pw, c]
     * (channels last), `pad` in the border. */
    void (*pad_hwc)(const uint8_t *x, int64_t c, int64_t h, int64_t w, int64_t ph, int64_t pw,
                    uint8_t pad, uint8_t *xp);
    /* Patches of a padded channels-last image xp [hp, wp, c] (window kh x kw,
     * stride sh x sw, output oh x ow): row s = oy*ow + ox of col (stride
     * ldcol >= kp) holds depth (i*kw + j)*c + ch = xp[oy*sh + i, ox*sw + j,
     * ch], then 0 in [k, ldcol). Each window row is kw*c contiguous bytes of
     * xp, copied at once. Convolution weights are packed in the same depth
     * order. Tiers copy in fixed 32-byte pieces: they may read up to
     * NN__Q_SLACK bytes past the end of xp (initialised memory) and write up
     * to NN__Q_SLACK bytes past col's last row; callers allocate both. */
    void (*im2row)(const uint8_t *xp, int64_t c, int64_t wp, int64_t kh, int64_t kw, int64_t sh,
                   int64_t sw, int64_t oh, int64_t ow, uint8_t *col, int64_t ldcol);
    /* A convolution's fused ReLU + 2x2 stride-2 max pool, from raw sums:
     * t [oh x ow pixels, o channels] (a gemm's c32, ldc o, oh >= 2*yh,
     * ow >= 2*yw) -> y [o, yh, yw] (planes of yh*yw floats), each output
     * the epilogue of the gemm (za, wsum[o], sa, sw[o], bias[o] or NULL,
     * relu) applied to the max of its 4 window sums. The epilogue is
     * non-decreasing in the sum for positive scales, so this equals pooling
     * the epilogue's floats; every tier computes the floats of the gemm's
     * epilogue, bit for bit. ldy 0: y is planes as above; ldy >= o: y is
     * channels-last, output (channel c, pooled pixel (py, px)) at
     * y[(py*yw + px)*ldy + c] (the layout the next convolution quantizes
     * without a transpose; nothing else in y written). */
    /* quantize_u8 and pad_hwc in one pass: x [c, h, w] f32 -> xp [h + 2ph,
     * w + 2pw, c] u8 (channels last), each value quantized as quantize_u8
     * does, zp in the border. */
    void (*quantize_pad_hwc)(const float *x, int64_t c, int64_t h, int64_t w, int64_t ph,
                             int64_t pw, float inv_scale, int32_t zp, uint8_t *xp);
    void (*pool_epilogue)(const int32_t *t, int64_t o, int64_t ow, int64_t yh, int64_t yw,
                          const int32_t *wsum, float sa, int32_t za, const float *sw,
                          const float *bias, bool relu, float *y, int64_t ldy);
    /* A one-channel convolution with the fused 2x2 pool, without im2row:
     * y [n, yh, yw] = pool_epilogue(t, n, 2*yw, yh, yw, wsum, sa, za, sw,
     * bias, relu, ldy) of the raw sums t[(oy*2yw + ox) * n + j] = sum over i < kh,
     * q < kw of xp[(oy*sh + i) * wp + ox*sw + q] * qw[j, i*kw + q] (what
     * im2row + gemm give), bit for bit, from a padded one-channel image xp
     * [hp, wp] with NN__Q_SLACK initialised bytes past its end and weights w
     * packed by `pack` as [n, kh*kw]; on up to nn__num_threads() threads
     * (split over pooled rows). conv1_takes says whether the tier runs a
     * window directly (the reference twin takes none: the front end then
     * runs im2row + gemm + pool_epilogue). false: no scratch memory (y may be
     * partly written; the caller takes the other path). w7: reduced-range
     * weights, clamped as gemm's w7 does (the AVX2 tier runs only those).
     * conv_hwc takes full-range weights (the front end runs w7 layers
     * through im2row + gemm). */
    bool (*conv1_takes)(int64_t kh, int64_t kw, bool w7);
    bool (*conv1_pool)(const uint8_t *xp, int64_t wp, const int8_t *w, int64_t n, int64_t kh,
                       int64_t kw, int64_t sh, int64_t sw, int64_t yh, int64_t yw,
                       const int32_t *wsum, float sa, int32_t za, const float *wscale,
                       const float *bias, bool relu, bool w7, float *y, int64_t ldy);
    /* A convolution whose activation rows are read in place from a padded
     * channels-last image xp [hp, wp, c] (pad_hwc's layout, NN__Q_SLACK
     * bytes past its end): raw sums as gemm's c32 of im2row(xp) x w,
     * c32[(oy*ow + ox) * ldc + j] for j < n (columns [n, ldc) untouched), w
     * packed by `pack` as [n, kh*kw*c]; the integers of im2row + gemm. On up
     * to nn__num_threads() threads (split over output rows). conv_hwc_takes
     * says whether the tier's kernel runs a shape (the reference twin,
     * im2row + gemm itself, takes none); false: no scratch memory. */
    bool (*conv_hwc_takes)(int64_t c, int64_t kw);
    bool (*conv_hwc)(const uint8_t *xp, int64_t c, int64_t wp, int64_t kh, int64_t kw, int64_t sh,
                     int64_t sw, int64_t oh, int64_t ow, const int8_t *w, int64_t n, int32_t *c32,
                     int64_t ldc);
    /* The integer Winograd above for a 3x3 stride-1 convolution of c
     * channels (c <= NN__QWG_CMAX) into n whose output a 2x2 pool reads.
     * wino_weight: u (nn__qwg_elems(n, c) int16) = U' of weights w packed by
     * `pack` as [n, 9c] (im2row's depth order; w7: clamped first).
     * wino_conv: from a padded channels-last image xp [hp, wp, c] (pad_hwc's
     * layout, NN__Q_SLACK bytes past its end), the raw sums of the conv
     * pixels the pool reads, oy < 2*yh and ox < 2*yw (one 4x4 input tile per
     * pooled pixel), as conv_hwc's c32[(oy*ow + ox) * ldc + j], j < n
     * (other pixels and columns untouched): the integers of im2row + gemm.
     * wino_pool: the same convolution with the fused ReLU + 2x2 pool, y =
     * pool_epilogue(those raw sums, n, 2*yw, yh, yw, wsum, sa, za, sw, bias,
     * relu, ldy) bit for bit, without the raw sums in memory (the layout of
     * y as pool_epilogue's). On up to nn__num_threads() threads (split over
     * tiles). wino_takes says whether the tier runs them (the reference
     * twin, plain C with the same integers, takes none); false from
     * wino_conv / wino_pool: no scratch memory (y may be partly written). */
    bool (*wino_takes)(int64_t c, int64_t n);
    void (*wino_weight)(int64_t n, int64_t c, const int8_t *w, bool w7, int16_t *u);
    bool (*wino_conv)(const uint8_t *xp, int64_t c, int64_t wp, int64_t yh, int64_t yw,
                      const int16_t *u, int64_t n, int64_t ow, int32_t *c32, int64_t ldc);
    bool (*wino_pool)(const uint8_t *xp, int64_t c, int64_t wp, int64_t yh, int64_t yw,
                      const int16_t *u, int64_t n, const int32_t *wsum, float sa, int32_t za,
                      const float *sw, const float *bias, bool relu, float *y, int64_t ldy);
} nn__int8_kernels;

#endif
