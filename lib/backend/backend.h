/* The compute backend: the only part of libnn that knows about BLIS, SIMD
 * intrinsics or CPUID.
 *
 * Front ends (ops/, module/, optim/ ...) call kernels through the table
 * returned by nn__kernels(), one struct per domain:
 *
 *     nn__kernels()->gemm.sgemm(...)      backend/gemm.h
 *     nn__kernels()->conv.im2col(...)     backend/conv.h
 *     nn__kernels()->pool.maxpool2d(...)  backend/pool.h
 *     nn__kernels()->eltwise.relu(...)    backend/eltwise.h
 *     nn__kernels()->optim.adam(...)      backend/optim.h
 *     nn__kernels()->half.gemm(...)       backend/half.h (f16 / bf16)
 *     nn__kernels()->int8.gemm(...)       backend/int8.h
 *
 * Layout of the sources (a new ISA is a new folder plus one line in
 * backend.c and meson.build):
 *     backend.c        tier detection and selection, nn_backend_info()
 *     cpu.c            CPUID / XGETBV: ISA support and cache sizes
 *     blis.c           BLIS as a GEMM provider (when built with it)
 *     gemm_blocked.c   the cache-blocked, packed GEMM driver (portable C)
 *                      run with a tier's micro-kernel and packing routines
 *     parallel.c       splitting work over threads
 *     ref/             the reference kernels, one file per domain
 *     x86/avx2/        AVX2+FMA tier (built with -mavx2 -mfma)
 *     x86/avx512/      AVX-512 F/BW/VL/DQ tier (built with -mavx512*)
 *
 * The table is filled once with the portable reference kernels (ref/), then
 * entries are overridden by those of the best ISA tier the CPU runs (see
 * tier.h). Every fast kernel has its reference twin in nn__ref_kernels(),
 * which tests compare it against for every tier the machine runs.
 *
 * Conventions:
 *  - All matrices are row-major with explicit leading dimensions (elements).
 *  - Kernels never fail and never allocate through the library's allocator
 *    hook: the front end validates shapes and sizes (overflow-checked)
 *    before calling. (The blocked GEMM keeps per-thread packing buffers,
 *    allocated on first use with posix_memalign and reused; if that fails it
 *    computes through the reference path instead of failing.)
 *  - Threading: fast kernels split work over independent outputs only, using
 *    nn__num_threads() threads, so a result is bit-identical for any thread
 *    count. Fast and reference kernels agree exactly on elementwise work and
 *    up to rounding on sums.
 *  - Output buffers may alias an input of the same shape only where stated.
 */
#ifndef NN_BACKEND_H
#define NN_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/conv.h"
#include "backend/eltwise.h"
#include "backend/gemm.h"
#include "backend/half.h"
#include "backend/int8.h"
#include "backend/optim.h"
#include "backend/pool.h"

typedef struct nn_kernels {
    const char *name; /* "reference", "avx2", "avx512" */
    nn__gemm_kernels gemm;
    nn__conv_kernels conv;
    nn__pool_kernels pool;
    nn__eltwise_kernels eltwise;
    nn__optim_kernels optim;
    nn__half_kernels half;
    nn__int8_kernels int8;
} nn_kernels;

/* The active kernel table (initialised on first use, thread-safe). */
const nn_kernels *nn__kernels(void);
/* The portable reference kernels (the test oracle). */
const nn_kernels *nn__ref_kernels(void);

#endif
