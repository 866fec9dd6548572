/* The compute backend: the only part of libnn that knows about BLIS or SIMD.
 *
 * Front ends (ops/, module/, optim/ ...) call kernels through the table
 * returned by nn__kernels(). The table is filled once with the portable
 * reference kernels (backend/ref_*.c), then entries are overridden by faster
 * ones (BLIS GEMM, AVX2/FMA + OpenMP in backend/kern_avx2.c) chosen by CPU
 * detection. Every fast kernel has its reference twin in nn__ref_kernels(),
 * which tests compare it against.
 *
 * Conventions:
 *  - All matrices are row-major with explicit leading dimensions (elements).
 *  - Kernels never allocate and never fail: the front end validates shapes
 *    and sizes (overflow-checked) before calling.
 *  - Threading: fast kernels split work over independent outputs only, using
 *    nn__num_threads() threads, so a result is bit-identical for any thread
 *    count (and therefore for a given one). Fast and reference kernels agree
 *    exactly on elementwise work and up to rounding on sums.
 *  - Output buffers may alias an input of the same shape only where stated.
 */
#ifndef NN_BACKEND_H
#define NN_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

/* Geometry of a 2-D window op (convolution or pooling) on one plane. */
typedef struct nn__win2d {
    int64_t kh, kw; /* window */
    int64_t sh, sw; /* stride (>= 1) */
    int64_t ph, pw; /* zero (conv) / -inf (pool) padding (>= 0) */
    int64_t dh, dw; /* dilation (>= 1) */
    int64_t oh, ow; /* output size, computed by the front end */
} nn__win2d;

/* One Adam / AdamW step (torch.optim.Adam/AdamW semantics). The caller
 * computes the per-step coefficients (in double, then rounded), so every
 * kernel runs the same float arithmetic:
 *   g' = ±g (+ wd*p unless decoupled);  p *= decay (= 1 - lr*wd) when decoupled;
 *   m = m*beta1 + c1*g';  v = v*beta2 + c2*g'*g';  vmax = max(vmax, v) (amsgrad);
 *   p += neg_step * (m / (sqrt(v or vmax) / bc2_sqrt + eps))
 * with c1 = 1-beta1, c2 = 1-beta2, neg_step = -lr/(1-beta1^t),
 * bc2_sqrt = sqrt(1-beta2^t). */
typedef struct nn__adam_hp {
    float beta1, beta2, c1, c2, eps, weight_decay, decay, neg_step, bc2_sqrt;
    bool decoupled; /* AdamW */
    bool maximize;  /* ascend: use -g */
} nn__adam_hp;

/* One SGD step (torch.optim.SGD semantics): g' = ±g + wd*p; with momentum:
 * buf = first ? g' : buf*momentum + damp1*g' (damp1 = 1 - dampening),
 * g' = nesterov ? g' + momentum*buf : buf; then p += neg_lr * g'.
 * buf is NULL (and unused) when momentum == 0. */
typedef struct nn__sgd_hp {
    float neg_lr, momentum, damp1, weight_decay;
    bool nesterov;
    bool first;    /* the momentum buffer is uninitialised (first step) */
    bool maximize; /* ascend: use -g */
} nn__sgd_hp;

typedef void (*nn__sgemm_fn)(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
                             float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                             float beta, float *c, int64_t ldc);

typedef struct nn_kernels {
    const char *name; /* "reference", "blis", "avx2+blis", ... */

    /* ---- GEMM ---------------------------------------------------------- */
    /* C[M,N] = alpha * op(A) op(B) + beta * C, op(X) = X or Xᵀ.
     * op(A) is M x K, op(B) is K x N. beta == 0 ignores C's old contents. */
    nn__sgemm_fn sgemm;

    /* ---- convolution helpers -------------------------------------------- */
    /* x [N, C, H, W] -> columns: for image b, row r = (c*KH + i)*KW + j and
     * output position s = oy*OW + ox, col[r*ldcol + b*OH*OW + s] (ldcol >=
     * N*OH*OW; ldcol == OH*OW with N == 1 is the per-image layout).
     * Out-of-image taps are 0. */
    void (*im2col)(const float *x, int64_t n, int64_t c, int64_t h, int64_t w, const nn__win2d *g,
                   float *col, int64_t ldcol);
    /* The adjoint of im2col: x [N, C, H, W] is OVERWRITTEN with the sum of
     * every column entry that im2col would have read from each pixel. */
    void (*col2im)(const float *col, int64_t ldcol, int64_t n, int64_t c, int64_t h, int64_t w,
                   const nn__win2d *g, float *x);
    /* y[j, i, :] = x[i, j, :] for x [A, B, S] (y [B, A, S]); swaps the batch
     * and channel axes between im2col's layout and NCHW. No aliasing. */
    void (*swap01)(const float *x, int64_t a, int64_t b, int64_t s, float *y);

    /* ---- activations ---------------------------------------------------- */
    /* y = max(x, 0) (NaN propagates); y may alias x. */
    void (*relu)(int64_t n, const float *x, float *y);
    /* gx = y > 0 ? gy : 0, with y the relu output (or input); gx may alias gy. */
    void (*relu_bwd)(int64_t n, const float *y, const float *gy, float *gx);
    /* In place on Y [M, N] (row stride ldy): Y[i,j] += bias[per_row ? i : j]
     * (bias NULL: no bias), then max(., 0) when relu. */
    void (*bias_act)(int64_t m, int64_t n, const float *bias, bool per_row, bool relu, float *y,
                     int64_t ldy);

    /* ---- pooling -------------------------------------------------------- */
    /* Max pooling of `planes` planes x [planes, H, W] -> y [planes, OH, OW];
     * idx (may be NULL) receives the flat h*W+w position of each maximum
     * (first one on ties; the last NaN wins, as in PyTorch; -1 when a window
     * has no tap inside the input). Padding acts as -inf. */
    void (*maxpool2d)(const float *x, int64_t planes, int64_t h, int64_t w, const nn__win2d *g,
                      float *y, int64_t *idx);
    /* gx [planes, H, W] is OVERWRITTEN: zero, then gx[idx] += gy (indices
     * outside [0, H*W), e.g. -1 for a window with no tap, are skipped). */
    void (*maxpool2d_bwd)(const float *gy, const int64_t *idx, int64_t planes, int64_t h, int64_t w,
                          int64_t oh, int64_t ow, float *gx);

    /* ---- elementwise (y may alias an input) ------------------------------ */
    void (*add)(int64_t n, const float *a, const float *b, float *y); /* y = a + b */
    void (*sub)(int64_t n, const float *a, const float *b, float *y); /* y = a - b */
    void (*mul)(int64_t n, const float *a, const float *b, float *y); /* y = a * b */
    void (*axpy)(int64_t n, float alpha, const float *x, float *y);   /* y += alpha x */
    void (*scale)(int64_t n, float alpha, const float *x, float *y);  /* y = alpha x */

    /* ---- reductions ------------------------------------------------------ */
    /* y[j] (+)= sum_i X[i, j] over X [M, N] (row stride ldx): bias gradient
     * of a linear layer. accumulate false overwrites y. */
    void (*sum_rows)(int64_t m, int64_t n, const float *x, int64_t ldx, float *y, bool accumulate);
    /* y[i] (+)= sum_j X[i, j]: per-channel sums (conv bias gradient). */
    void (*sum_cols)(int64_t m, int64_t n, const float *x, int64_t ldx, float *y, bool accumulate);

    /* ---- softmax over the rows of X [M, N] (contiguous) ------------------ */
    /* y = softmax(x) or log_softmax(x) row by row; y may alias x. */
    void (*softmax_rows)(int64_t m, int64_t n, const float *x, float *y, bool log);
    /* Backward from the output y: softmax gx = y*(gy - sum(gy*y));
     * log-softmax gx = gy - exp(y)*sum(gy). gx may alias gy. */
    void (*softmax_bwd_rows)(int64_t m, int64_t n, const float *y, const float *gy, float *gx,
                             bool log);

    /* ---- optimizer updates (in place on p and the state buffers) ---------- */
    /* vmax NULL: no amsgrad. */
    void (*adam)(int64_t n, float *p, const float *g, float *m, float *v, float *vmax,
                 const nn__adam_hp *hp);
    void (*sgd)(int64_t n, float *p, const float *g, float *buf, const nn__sgd_hp *hp);
} nn_kernels;

/* The active kernel table (initialised on first use, thread-safe). */
const nn_kernels *nn__kernels(void);
/* The portable reference kernels (the test oracle). */
const nn_kernels *nn__ref_kernels(void);
/* Tell the backend the thread count changed (sets BLIS's count). */
void nn__backend_set_threads(int n);

/* Reference kernels (backend/ref_gemm.c, backend/ref_kernels.c). */
void nn__ref_sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                   const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                   int64_t ldc);
/* Fill every non-GEMM entry of t with the reference kernels. */
void nn__ref_fill(nn_kernels *t);

/* AVX2/FMA kernels (backend/kern_avx2.c, built with -mavx2 -mfma only on
 * x86-64 when the simd option allows). Overrides the entries it speeds up;
 * `large_gemm` (BLIS or the reference) handles shapes too big for the
 * small-matrix path. */
void nn__avx2_fill(nn_kernels *t, nn__sgemm_fn large_gemm);
/* The small-matrix GEMM path on its own (for tests and the benchmark). */
void nn__avx2_sgemm_small(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                          const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                          float *c, int64_t ldc);
/* Direct BLIS (for the benchmark's "same shape, straight to BLIS" figure);
 * NULL when built without BLIS. */
nn__sgemm_fn nn__blis_sgemm(void);

#endif
