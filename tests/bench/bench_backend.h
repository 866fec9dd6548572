/* Backend figures of the benchmark (bench_backend.c). */
#ifndef NN_BENCH_BACKEND_H
#define NN_BENCH_BACKEND_H

/* Prints BENCH lines: fma_peak_<tier> (threads == 1 only), sgemm_<case> and
 * blis_sgemm_<case> in GFLOP/s at the current thread count. `only`: a case
 * name prefix (NULL: all). */
void bench_backend(int threads, int reps, const char *only);

/* Prints BENCH conv_<layer>_b<N>_<pass>_<method> lines (bench_conv.c): the
 * direct convolution kernels against im2col + GEMM, and the fused inference
 * layer against separate ops, per pass of the demo CNN's conv layers. */
void bench_conv(int threads, int reps, const char *only);

#endif
