/* ISA tiers and CPU facts (backend-internal; the hooks marked "tests" are for
 * tests/backend and the benchmark only, never for the library itself). */
#ifndef NN_BACKEND_TIER_H
#define NN_BACKEND_TIER_H

#include "backend/backend.h"
#include "backend/gemm_blocked.h"

/* Kernel tiers, in increasing order of preference. */
typedef enum nn__tier {
    NN_TIER_REF = 0,    /* portable C (GEMM: BLIS when built with it) */
    NN_TIER_AVX2 = 1,   /* AVX2 + FMA */
    NN_TIER_AVX512 = 2, /* AVX-512 F/BW/VL/DQ */
    NN_TIER_COUNT = 3
} nn__tier;

/* What this CPU and OS support, and its cache sizes (cpu.c). */
typedef struct nn__cpu_info {
    bool avx2_fma;            /* AVX2 and FMA, and the OS saves YMM state */
    bool avx512;              /* AVX-512 F/BW/VL/DQ, and the OS saves ZMM and opmask state */
    bool f16c;                /* F16C (with avx2_fma: the AVX2 tier's f16 conversions) */
    bool avx512_bf16;         /* AVX512_BF16 (with avx512: vcvtneps2bf16, vdpbf16ps) */
    bool avx512_vnni;         /* and AVX-512 VNNI (vpdpbusd) */
    int64_t l1d, l2, l3;      /* data cache bytes per core (L3: the whole shared cache) */
    const char *cache_source; /* "cpuid leaf 4", "cpuid 0x8000001d", ... or "defaults" */
} nn__cpu_info;
const nn__cpu_info *nn__cpu(void);

/* "reference", "avx2", "avx512". */
const char *nn__tier_name(int tier);
/* Built into this library and runnable on this CPU. */
bool nn__tier_runnable(int tier);
/* The tier nn__kernels() currently uses. */
int nn__backend_tier(void);
/* The kernel table of one tier (NULL when not runnable here). */
const nn_kernels *nn__tier_kernels(int tier);
/* Tests: make `tier` the active one (-1: back to the best runnable). Returns
 * false (and changes nothing) when the tier is not runnable here. Not
 * thread-safe against concurrent kernel calls. */
bool nn__backend_force_tier(int tier);
/* Tests and benchmark: which convolution passes run direct (NN_CONV_* bits
 * of backend/conv.h) in every tier: -1 (the default) the tier's own rule,
 * else exactly `passes` (a kernel that does not take a shape still falls
 * back to im2col + GEMM). Not thread-safe against concurrent kernel calls. */
void nn__backend_force_conv(int passes);
/* Tests and benchmark: whether the x86 tiers' direct convolution runs its
 * unpooled forward, its data gradient and its weight gradient as Winograd
 * F(2x2, 3x3): -1 (the default) where their rule measured it faster, 0
 * never, 1 for every shape it can run (3x3, unit stride and dilation). Not
 * thread-safe against concurrent kernel calls. */
void nn__backend_force_winograd(int mode);
/* Tests and benchmark: false makes every tier's half.conv_passes take no
 * shape, so a convolution with f16 / bf16 weights widens them to an f32 copy
 * and runs the f32 convolution (the path before the half kernels); true (the
 * default) restores the tiers' rules. Not thread-safe against concurrent
 * kernel calls. */
void nn__backend_half_conv(bool on);
/* Tests: the blocked GEMM of a tier (libnn's own, whatever the provider of
 * the tier's table is); NULL for the reference tier or when not runnable. */
nn__sgemm_fn nn__tier_blocked_sgemm(int tier);
/* Benchmark: the single-thread fp32 FMA throughput of a tier's vector
 * width (GFLOP/s, best of 40 ~1 ms runs of independent FMA chains); 0
 * for the reference tier or when not runnable. */
double nn__tier_fma_peak(int tier);
/* The same on `threads` threads at once (the pool's, at most
 * nn_set_num_threads'), one probe loop each, timed together: the summed
 * GFLOP/s. */
double nn__tier_fma_peak_threads(int tier, int threads);
/* Benchmark: the single-thread int8 throughput of vpdpbusd (GOP/s, one
 * product and one add counted as 2 operations, same method as
 * nn__tier_fma_peak); 0 without AVX-512 VNNI. */
double nn__tier_int8_peak(void);
/* The GEMM provider a tier's table uses for large shapes: "libnn" or "blis". */
const char *nn__tier_gemm_provider(int tier);

/* BLIS as a GEMM provider (blis.c). nn__blis_sgemm_nt is NULL when built
 * without BLIS; nn__blis_arch names the configuration BLIS picked for this
 * CPU ("generic" when it does not know it); nn__blis_version its version. */
nn__sgemm_nt_fn nn__blis_sgemm_nt(void);
const char *nn__blis_arch(void);
const char *nn__blis_version(void);
/* BLIS's own thread count (a no-op without BLIS). */
void nn__blis_set_threads(int n);
/* Direct BLIS with libnn's thread count (the benchmark's "same shape,
 * straight to BLIS" figure); NULL when built without BLIS. */
nn__sgemm_fn nn__blis_sgemm(void);

#endif
