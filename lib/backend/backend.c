/* Kernel tables: reference kernels first, then the best ISA tier this CPU
 * runs (tier.h), chosen once at first use. BLIS's thread count always follows
 * nn_set_num_threads (set explicitly here, never read from BLIS_NUM_THREADS or
 * OMP_NUM_THREADS); nothing here reads the environment.
 *
 * GEMM provider rule, per tier (documented in the README's design section):
 *   - reference tier: BLIS when built with it, else the reference loop;
 *   - SIMD tiers: libnn's own blocked GEMM (gemm_blocked.c with the tier's
 *     micro-kernel) when the build has no BLIS, when BLIS reports its
 *     `generic` configuration (it does not know this CPU: 34 GFLOP/s against
 *     a 229 GFLOP/s AVX-512 peak on Zen 5), or when the tier is AVX-512 and
 *     BLIS's configuration has no AVX-512 kernels (half the vector width);
 *     otherwise BLIS knows the CPU at this tier's width and both are timed
 *     once on a 256^3 product at start-up: libnn's GEMM replaces BLIS only
 *     when it is at least 1.25x faster (the margin keeps a noisy host from
 *     flipping the choice, and so the rounding of results, between runs).
 *   Small shapes and batch-1 rows always take the tier's small-matrix path.
 */
#include "backend/backend.h"
#include "backend/nn_backend_config.h"
#include "backend/ref/ref.h"
#include "backend/threadpool.h"
#include "backend/tier.h"
#include "nn.h"
#include "nn_config.h"
#include "core/core.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if NN_HAVE_AVX2
#include "backend/x86/avx2/avx2.h"
#endif
#if NN_HAVE_AVX512
#include "backend/x86/avx512/avx512.h"
#endif

static nn_kernels g_ref;
static nn_kernels g_tier[NN_TIER_COUNT];
static bool g_runnable[NN_TIER_COUNT];
static const char *g_provider[NN_TIER_COUNT];
static const char *g_provider_why[NN_TIER_COUNT];
static int g_best;
static const nn_kernels *volatile g_active;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static char g_info[512];

static const char *const g_tier_names[NN_TIER_COUNT] = {"reference", "avx2", "avx512"};

const char *nn__tier_name(int tier) {
    return tier >= 0 && tier < NN_TIER_COUNT ? g_tier_names[tier] : "unknown";
}

/* ------------------------------------------------------- provider choice */

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#if NN_HAVE_AVX2
/* Best of 2 single-threaded 256^3 products through f (seconds), after one
 * that warms caches and packing buffers. */
static double time_gemm(nn__sgemm_nt_fn f, float *a, float *b, float *c) {
    const int64_t n = 256;
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_s();
        f(1, false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double dt = now_s() - t0;
        if (rep > 0 && dt < best) best = dt;
    }
    return best;
}

/* Decide between BLIS and libnn's blocked GEMM for a SIMD tier whose blocked
 * GEMM is `own` (see the rule at the top). Returns the large-shape provider
 * to install (NULL: libnn's own). */
static nn__sgemm_nt_fn choose_large(int tier, nn__sgemm_nt_fn own) {
    nn__sgemm_nt_fn blis = nn__blis_sgemm_nt();
    g_provider[tier] = "libnn";
    if (!blis) {
        g_provider_why[tier] = "built without BLIS";
        return NULL;
    }
    const char *arch = nn__blis_arch();
    if (strcmp(arch, "generic") == 0) {
        g_provider_why[tier] = "BLIS picked its generic configuration";
        return NULL;
    }
    if (tier == NN_TIER_AVX512 && strcmp(arch, "skx") != 0 && strcmp(arch, "knl") != 0) {
        g_provider_why[tier] = "BLIS's configuration has no AVX-512 kernels";
        return NULL;
    }
    const size_t bytes = 256 * 256 * sizeof(float);
    float *a = malloc(bytes), *b = malloc(bytes), *c = malloc(bytes);
    nn__sgemm_nt_fn pick = blis;
    g_provider[tier] = "blis";
    g_provider_why[tier] = "BLIS knows this CPU";
    if (a && b && c) {
        for (size_t i = 0; i < 256 * 256; i++)
            a[i] = (float)(i % 7) * 0.25f, b[i] = (float)(i % 5) * 0.5f;
        double t_blis = time_gemm(blis, a, b, c), t_own = time_gemm(own, a, b, c);
        if (t_own > 0 && t_own * 1.25 < t_blis) {
            pick = NULL;
            g_provider[tier] = "libnn";
            g_provider_why[tier] = "faster than BLIS at start-up";
        } else {
            g_provider_why[tier] = "BLIS knows this CPU and measured as fast";
        }
    }
    free(a), free(b), free(c);
    return pick;
}

static void blocked_avx2_nt(int nt, bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                            const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                            float *c, int64_t ldc) {
    nn__gemm_blocked(nn__avx2_gemm_plan(), nt, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c,
                     ldc);
}
#endif

#if NN_HAVE_AVX512
static void blocked_avx512_nt(int nt, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                              float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                              float beta, float *c, int64_t ldc) {
    nn__gemm_blocked(nn__avx512_gemm_plan(), nt, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c,
                     ldc);
}
#endif

/* --------------------------------------------------------------- tables */

static void ref_fill(nn_kernels *t) {
    t->name = "reference";
    t->gemm.sgemm = nn__ref_sgemm;
    t->gemm.sgemm_batched = nn__ref_sgemm_batched;
    nn__ref_fill_conv(&t->conv);
    nn__ref_fill_pool(&t->pool);
    nn__ref_fill_eltwise(&t->eltwise);
    nn__ref_fill_optim(&t->optim);
    nn__ref_fill_half(&t->half);
    nn__ref_fill_int8(&t->int8);
}

#if NN_HAVE_BLIS
static void blis_batched(int64_t batch, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                         float alpha, const float *a, int64_t lda, int64_t sa, const float *b,
                         int64_t ldb, int64_t sb, float beta, float *c, int64_t ldc, int64_t sc) {
    nn__gemm_batched(nn__blis_sgemm_nt(), batch, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb,
                     beta, c, ldc, sc);
}
#endif

static void wrap_conv_rules(void);

static void init_kernels(void) {
    const nn__cpu_info *cpu = nn__cpu();
    (void)cpu; /* unused in builds without SIMD tiers */
    ref_fill(&g_ref);

    /* reference tier: the reference kernels, BLIS's GEMM when built with it */
    g_tier[NN_TIER_REF] = g_ref;
    g_runnable[NN_TIER_REF] = true;
    g_provider[NN_TIER_REF] = "reference";
    g_provider_why[NN_TIER_REF] = "built without BLIS";
#if NN_HAVE_BLIS
    nn__blis_set_threads(nn__num_threads());
    g_tier[NN_TIER_REF].gemm.sgemm = nn__blis_sgemm();
    g_tier[NN_TIER_REF].gemm.sgemm_batched = blis_batched;
    g_provider[NN_TIER_REF] = "blis";
    g_provider_why[NN_TIER_REF] = "no SIMD tier";
#endif

#if NN_HAVE_AVX2
    if (cpu->avx2_fma) {
        nn_kernels *t = &g_tier[NN_TIER_AVX2];
        *t = g_ref;
        t->name = "avx2";
        nn__avx2_fill_gemm(&t->gemm, NULL, cpu->l1d, cpu->l2, cpu->l3);
        nn__avx2_fill_conv(&t->conv);
        nn__avx2_fill_conv_direct(&t->conv);
        nn__avx2_fill_pool(&t->pool);
        nn__avx2_fill_eltwise(&t->eltwise);
        nn__avx2_fill_optim(&t->optim);
        if (cpu->f16c) {
            nn__avx2_fill_half(&t->half);
            nn__avx2_fill_half_gemm(&t->half);
        }
        nn__avx2_fill_int8(&t->int8);
        nn__sgemm_nt_fn large = choose_large(NN_TIER_AVX2, blocked_avx2_nt);
        nn__avx2_fill_gemm(&t->gemm, large, cpu->l1d, cpu->l2, cpu->l3);
        g_runnable[NN_TIER_AVX2] = true;
    }
#endif
#if NN_HAVE_AVX512
    if (cpu->avx512 && g_runnable[NN_TIER_AVX2]) {
        nn_kernels *t = &g_tier[NN_TIER_AVX512];
        *t = g_tier[NN_TIER_AVX2];
        t->name = "avx512";
        nn__avx512_fill_gemm(&t->gemm, NULL, cpu->l1d, cpu->l2, cpu->l3);
        nn__avx512_fill_eltwise(&t->eltwise);
        nn__avx512_fill_pool(&t->pool);
        nn__avx512_fill_optim(&t->optim);
        nn__avx512_fill_conv_direct(&t->conv);
#if NN_HAVE_AVX512_VNNI
        if (cpu->avx512_vnni) nn__avx512vnni_fill_int8(&t->int8);
#endif
        nn__avx512_fill_half(&t->half);
        nn__avx512_hg_nt_fn dp = NULL;
#if NN_HAVE_AVX512_BF16
        if (cpu->avx512_bf16) {
            nn__avx512bf16_fill_half(&t->half);
            dp = nn__avx512bf16_gemm_nt;
        }
#endif
        nn__avx512_fill_half_gemm(&t->half, dp);
        nn__sgemm_nt_fn large = choose_large(NN_TIER_AVX512, blocked_avx512_nt);
        nn__avx512_fill_gemm(&t->gemm, large, cpu->l1d, cpu->l2, cpu->l3);
        g_runnable[NN_TIER_AVX512] = true;
    }
#endif
    wrap_conv_rules();
    g_best = NN_TIER_REF;
    for (int i = 0; i < NN_TIER_COUNT; i++)
        if (g_runnable[i]) g_best = i;
    g_active = &g_tier[g_best];
}

const nn_kernels *nn__kernels(void) {
    pthread_once(&g_once, init_kernels);
    return g_active;
}

const nn_kernels *nn__ref_kernels(void) {
    pthread_once(&g_once, init_kernels);
    return &g_ref;
}

bool nn__tier_runnable(int tier) {
    pthread_once(&g_once, init_kernels);
    return tier >= 0 && tier < NN_TIER_COUNT && g_runnable[tier];
}

const nn_kernels *nn__tier_kernels(int tier) {
    return nn__tier_runnable(tier) ? &g_tier[tier] : NULL;
}

int nn__backend_tier(void) {
    const nn_kernels *k = nn__kernels();
    return (int)(k - g_tier);
}

/* The direct-convolution rule of each tier, behind nn__backend_force_conv. */
static unsigned (*g_conv_rule[NN_TIER_COUNT])(const nn__conv2d *d);
static int g_conv_force = -1;
#define CONV_RULE(T)                                                                               \
    static unsigned conv_rule_##T(const nn__conv2d *d) {                                           \
        return g_conv_force < 0 ? g_conv_rule[T](d) : (unsigned)g_conv_force;                      \
    }
CONV_RULE(0)
CONV_RULE(1)
CONV_RULE(2)
_Static_assert(NN_TIER_COUNT == 3, "one conv_rule_<tier> per tier");
static unsigned (*const g_conv_wrap[NN_TIER_COUNT])(const nn__conv2d *) = {conv_rule_0, conv_rule_1,
                                                                           conv_rule_2};

/* Each tier's half-weight convolution rule, behind nn__backend_half_conv. */
static unsigned (*g_half_rule[NN_TIER_COUNT])(bool bf16, const nn__conv2d *d);
static bool g_half_off;
#define HALF_RULE(T)                                                                               \
    static unsigned half_rule_##T(bool bf16, const nn__conv2d *d) {                                \
        return g_half_off ? 0 : g_half_rule[T](bf16, d);                                           \
    }
HALF_RULE(0)
HALF_RULE(1)
HALF_RULE(2)
static unsigned (*const g_half_wrap[NN_TIER_COUNT])(bool, const nn__conv2d *) = {
    half_rule_0, half_rule_1, half_rule_2};

static void wrap_conv_rules(void) {
    for (int t = 0; t < NN_TIER_COUNT; t++) {
        g_conv_rule[t] = g_tier[t].conv.direct_passes;
        if (g_conv_rule[t]) g_tier[t].conv.direct_passes = g_conv_wrap[t];
        g_half_rule[t] = g_tier[t].half.conv_passes;
        if (g_half_rule[t]) g_tier[t].half.conv_passes = g_half_wrap[t];
    }
}

void nn__backend_half_conv(bool on) {
    pthread_once(&g_once, init_kernels);
    g_half_off = !on;
}

void nn__backend_force_conv(int passes) {
    pthread_once(&g_once, init_kernels);
    g_conv_force = passes < 0 ? -1 : passes;
}

/* Read by the x86 tiers' direct convolution on every call (a plain int: the
 * setter is for tests and the benchmark, between kernel calls). */
static int g_wino_force = -1;

void nn__backend_force_winograd(int mode) { g_wino_force = mode < 0 ? -1 : mode > 0; }

int nn__backend_winograd_mode(void) { return g_wino_force; }

bool nn__backend_force_tier(int tier) {
    pthread_once(&g_once, init_kernels);
    if (tier < 0) tier = g_best;
    if (!nn__tier_runnable(tier)) return false;
    g_active = &g_tier[tier];
    return true;
}

const char *nn__tier_gemm_provider(int tier) {
    return nn__tier_runnable(tier) ? g_provider[tier] : "none";
}

nn__sgemm_fn nn__tier_blocked_sgemm(int tier) {
    if (!nn__tier_runnable(tier)) return NULL;
#if NN_HAVE_AVX2
    if (tier == NN_TIER_AVX2) return nn__avx2_sgemm_blocked;
#endif
#if NN_HAVE_AVX512
    if (tier == NN_TIER_AVX512) return nn__avx512_sgemm_blocked;
#endif
    return NULL;
}

/* The profiler's report measures the FMA peak of the tier in use, once. */
static double active_fma_peak(const char **tier) {
    pthread_once(&g_once, init_kernels);
    *tier = g_tier_names[g_best];
    return nn__tier_fma_peak(g_best);
}

/* BLIS's thread count follows nn_set_num_threads through the one hook core
 * offers (core owns the count and never calls into the backend). */
__attribute__((constructor)) static void follow_num_threads(void) {
    nn__on_num_threads(nn__blis_set_threads);
    nn__prof_on_peak(active_fma_peak);
}

/* The tensor layer converts f32 <-> f16 / bf16 through core (nn__convert),
 * which reaches the active tier's kernels through this hook. */
static const nn__cvt_kernels *active_cvt(void) { return &nn__kernels()->half.cvt; }
__attribute__((constructor)) static void offer_conversions(void) { nn__on_convert(active_cvt); }

/* One thread's part of nn__tier_fma_peak_threads: the probe loop. */
typedef struct fma_probe {
    float (*loop)(int64_t);
    int64_t iters;
    float sink[64];
} fma_probe;

static void fma_probe_task(void *ctx, int64_t t, int thread) {
    fma_probe *f = ctx;
    (void)thread;
    f->sink[t % 64] += f->loop(f->iters);
}

double nn__tier_fma_peak_threads(int tier, int threads) {
    if (!nn__tier_runnable(tier) || threads < 1) return 0.0;
    float (*loop)(int64_t) = NULL;
    double lanes = 0;
#if NN_HAVE_AVX2
    if (tier == NN_TIER_AVX2) loop = nn__avx2_fma_loop, lanes = 8;
#endif
#if NN_HAVE_AVX512
    if (tier == NN_TIER_AVX512) loop = nn__avx512_fma_loop, lanes = 16;
#endif
    if (!loop) return 0.0;
    /* Best of 40 runs of ~1 ms: short enough that most runs escape
     * preemption on a busy host, long enough for the timer. Several
     * threads: one loop each through the pool, timed as a whole (what a
     * kernel on that many threads could reach at most). */
    fma_probe f = {.loop = loop, .iters = 500000};
    double best = 0.0;
    for (int rep = 0; rep < 40; rep++) {
        double t0 = now_s();
        nn__parallel_for_max(threads, threads, fma_probe_task, &f);
        double dt = now_s() - t0,
               g = (double)threads * (double)f.iters * 12.0 * lanes * 2.0 / dt * 1e-9;
        if (g > best) best = g;
    }
    volatile float sink = f.sink[0];
    (void)sink;
    return best;
}

double nn__tier_fma_peak(int tier) { return nn__tier_fma_peak_threads(tier, 1); }

double nn__tier_int8_peak(void) {
#if NN_HAVE_AVX512 && NN_HAVE_AVX512_VNNI
    if (!nn__tier_runnable(NN_TIER_AVX512) || !nn__cpu()->avx512_vnni) return 0.0;
    const int64_t iters = 500000;
    volatile int32_t sink = 0;
    double best = 0.0;
    for (int rep = 0; rep < 40; rep++) {
        double t0 = now_s();
        sink = sink + nn__avx512vnni_dpbusd_loop(iters);
        double dt = now_s() - t0, g = (double)iters * 12.0 * 64.0 * 2.0 / dt * 1e-9;
        if (g > best) best = g;
    }
    return best;
#else
    return 0.0;
#endif
}

/* ------------------------------------------------------------------ info */

static const nn__gemm_plan *tier_plan(int tier) {
#if NN_HAVE_AVX2
    if (tier == NN_TIER_AVX2) return nn__avx2_gemm_plan();
#endif
#if NN_HAVE_AVX512
    if (tier == NN_TIER_AVX512) return nn__avx512_gemm_plan();
#endif
    (void)tier;
    return NULL;
}

static void info_init(void) {
    pthread_once(&g_once, init_kernels);
    const nn__cpu_info *cpu = nn__cpu();
    const int t = g_best;
    char gemm[224];
    const nn__gemm_plan *p = tier_plan(t);
    if (strcmp(g_provider[t], "libnn") == 0 && p)
        snprintf(gemm, sizeof gemm, "libnn %s, blocks mc %lld kc %lld nc %lld (%s", p->name,
                 (long long)p->mc, (long long)p->kc, (long long)p->nc, g_provider_why[t]);
    else
        snprintf(gemm, sizeof gemm, "%s (%s", g_provider[t], g_provider_why[t]);
#if NN_HAVE_BLIS
    char blis[96];
    snprintf(blis, sizeof blis, "; BLIS %s, configuration %s)", nn__blis_version(),
             nn__blis_arch());
#else
    const char *blis = ")";
#endif
    snprintf(g_info, sizeof g_info,
             "tier %s; gemm %s%s; caches L1d %lld KiB, L2 %lld KiB, L3 %lld KiB (%s)",
             g_tier_names[t], gemm, blis, (long long)(cpu->l1d / 1024), (long long)(cpu->l2 / 1024),
             (long long)(cpu->l3 / 1024), cpu->cache_source);
}

const char *nn_backend_info(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, info_init);
    return g_info;
}
