/* Winograd F(2x2, 3x3), with or without the 2x2 pool: the weight, input and
 * output transforms for the x86 tiers' f32 kernels (x86/conv_direct.h) and the
 * AVX512_BF16 kernel (avx512/conv_bf16.c, which rounds U and V to bf16
 * after them): one definition, so both transform alike. Written on the
 * includer's vector layer (cd_*: x86/<tier>/conv_direct.c,
 * avx512/conv_vec.h). */
#ifndef NN_BACKEND_X86_WINOGRAD_H
#define NN_BACKEND_X86_WINOGRAD_H

/* u[4i + j] = (G g Gᵀ)[i][j] for VL windows at once, g[k] = tap k (row-major
 * 3x3) of each, G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1]. */
NN_INLINE void wg_weight(const cd_vec g[9], cd_vec u[16]) {
    const cd_vec half = cd_set1(0.5f);
    cd_vec t[4][3]; /* G g */
#pragma GCC unroll 3
    for (int k = 0; k < 3; k++) {
        const cd_vec a = g[k], b = cd_mul(half, g[3 + k]), c = g[6 + k];
        const cd_vec h = cd_mul(half, cd_add(a, c));
        t[0][k] = a, t[1][k] = cd_add(h, b), t[2][k] = cd_sub(h, b), t[3][k] = c;
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        const cd_vec a = t[i][0], b = cd_mul(half, t[i][1]), c = t[i][2];
        const cd_vec h = cd_mul(half, cd_add(a, c));
        u[4 * i] = a, u[4 * i + 1] = cd_add(h, b), u[4 * i + 2] = cd_sub(h, b), u[4 * i + 3] = c;
    }
}

/* V = Bᵀ d B, Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], for the VL tiles
 * [tx0, tx0 + VL) of one tile row of one channel: r0 is the first of the
 * tile row's four padded input rows (wpf floats apart); v[p] lanes = tiles,
 * p = 4i + j. half: the tiles end within the first VL columns (columns
 * +VL.. feed no tile and are not read). Rows, then columns. */
NN_INLINE void wg_input(const float *r0, int64_t wpf, int64_t tx0, bool half, cd_vec v[16]) {
    enum { VL = sizeof(cd_vec) / sizeof(float) };
    const float *r1 = r0 + wpf, *r2 = r1 + wpf, *r3 = r2 + wpf;
    cd_vec t[4][4]; /* [row combination][columns from 2tx0 + 0, +2, +VL, +2+VL] */
    static const int off[4] = {0, 2, VL, 2 + VL};
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        if (k >= 2 && half) {
            for (int i = 0; i < 4; i++) t[i][k] = t[i][k - 2];
            continue;
        }
        const int64_t x = 2 * tx0 + off[k];
        const cd_vec d0 = cd_loadu(r0 + x), d1 = cd_loadu(r1 + x);
        const cd_vec d2 = cd_loadu(r2 + x), d3 = cd_loadu(r3 + x);
        t[0][k] = cd_sub(d0, d2), t[1][k] = cd_add(d1, d2);
        t[2][k] = cd_sub(d2, d1), t[3][k] = cd_sub(d1, d3);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        cd_vec e0, o0, e2, o2; /* columns 2t, 2t + 1, 2t + 2, 2t + 3 */
        cd_deint(t[i][0], t[i][2], &e0, &o0);
        cd_deint(t[i][1], t[i][3], &e2, &o2);
        v[4 * i + 0] = cd_sub(e0, e2), v[4 * i + 1] = cd_add(o0, e2);
        v[4 * i + 2] = cd_sub(e2, o0), v[4 * i + 3] = cd_sub(o0, o2);
    }
}

/* One tile's output for VL channels: y[2a + b] = (Aᵀ M A)[a][b], Aᵀ = [1 1
 * 1 0; 0 1 -1 -1]; M[p] (p = 4i + j) is at m + p * ps. Rows, then columns. */
NN_INLINE void wg_output(const float *m, int64_t ps, cd_vec y[4]) {
    cd_vec s0[4], s1[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        const cd_vec a = cd_loadu(m + k * ps), b = cd_loadu(m + (4 + k) * ps);
        const cd_vec c = cd_loadu(m + (8 + k) * ps), d = cd_loadu(m + (12 + k) * ps);
        s0[k] = cd_add(cd_add(a, b), c);
        s1[k] = cd_sub(cd_sub(b, c), d);
    }
    y[0] = cd_add(cd_add(s0[0], s0[1]), s0[2]);
    y[1] = cd_sub(cd_sub(s0[1], s0[2]), s0[3]);
    y[2] = cd_add(cd_add(s1[0], s1[1]), s1[2]);
    y[3] = cd_sub(cd_sub(s1[1], s1[2]), s1[3]);
}

/* One tile's pooled output for VL channels: the max of its four values
 * (wg_output; NaN rule), + bias (NULL: none; max(a) + b is exact), ReLU. */
NN_INLINE cd_vec wg_pool_out(const float *m, int64_t ps, const float *bias, bool relu) {
    cd_vec y[4];
    wg_output(m, ps, y);
    cd_vec mx = cd_max_nan(cd_max_nan(cd_max_nan(y[0], y[1]), y[2]), y[3]);
    if (bias) mx = cd_add(mx, cd_loadu(bias));
    if (relu) mx = cd_relu(mx);
    return mx;
}

#endif
