/* Winograd F(2x2, 3x3)'s weight transform, U = G g Gᵀ, for the x86 tiers'
 * f32 kernels (x86/conv_direct.h) and the AVX512_BF16 kernel
 * (avx512/conv_bf16.c), which rounds U to bf16 afterwards: one definition,
 * so both transform alike. Written on the includer's vector layer (cd_vec,
 * cd_set1, cd_mul, cd_add, cd_sub: x86/<tier>/conv_direct.c,
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

#endif
