/* CPU facts for tier selection and GEMM blocking: ISA support (CPUID plus
 * the OS's XSAVE state, read with XGETBV) and data-cache sizes (CPUID leaf 4
 * on Intel, 0x8000001D or the legacy 0x80000005/6 leaves on AMD), with safe
 * defaults wherever a hypervisor or an older CPU reports nothing usable. The
 * environment is never read. */
#include "backend/tier.h"

#include <pthread.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define NN_X86 1
#else
#define NN_X86 0
#endif

static nn__cpu_info g_cpu;
static pthread_once_t g_cpu_once = PTHREAD_ONCE_INIT;

/* Defaults: the smallest caches of the x86-64 cores this library targets. */
#define DEF_L1D (32 * 1024)
#define DEF_L2 (512 * 1024)
#define DEF_L3 (8 * 1024 * 1024)

#if NN_X86
static void cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
}

/* XCR0: which register state the OS saves on context switches. */
static uint64_t xgetbv0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* Deterministic cache parameters (leaf 4 on Intel, 0x8000001D on AMD share
 * the layout): type in EAX[4:0] (1 data, 3 unified), level EAX[7:5]. */
static bool caches_from_leaf(unsigned leaf, int64_t *l1d, int64_t *l2, int64_t *l3) {
    bool any = false;
    for (unsigned i = 0; i < 16; i++) {
        unsigned r[4];
        cpuid(leaf, i, r);
        unsigned type = r[0] & 31, level = (r[0] >> 5) & 7;
        if (type == 0) break;
        if (type != 1 && type != 3) continue; /* instruction caches */
        int64_t ways = ((r[1] >> 22) & 0x3ff) + 1, parts = ((r[1] >> 12) & 0x3ff) + 1;
        int64_t line = (r[1] & 0xfff) + 1, sets = (int64_t)r[2] + 1;
        int64_t size = ways * parts * line * sets;
        if (level == 1) *l1d = size, any = true;
        if (level == 2) *l2 = size, any = true;
        if (level == 3) *l3 = size, any = true;
    }
    return any;
}

static void detect(nn__cpu_info *ci) {
    unsigned r[4];
    cpuid(0, 0, r);
    const unsigned max_leaf = r[0];
    const bool amd =
        (r[1] == 0x68747541u && r[3] == 0x69746e65u && r[2] == 0x444d4163u) || /* AuthenticAMD */
        (r[1] == 0x6f677948u && r[3] == 0x6e65476eu && r[2] == 0x656e6975u);   /* HygonGenuine */
    cpuid(0x80000000u, 0, r);
    const unsigned max_ext = r[0];

    /* ---- ISA: the CPU's flags and the OS's saved state */
    if (max_leaf >= 7) {
        cpuid(1, 0, r);
        const bool osxsave = (r[2] >> 27) & 1, fma = (r[2] >> 12) & 1, avx = (r[2] >> 28) & 1;
        const uint64_t xcr0 = osxsave ? xgetbv0() : 0;
        const bool ymm_os = (xcr0 & 0x6) == 0x6;   /* SSE and AVX state */
        const bool zmm_os = (xcr0 & 0xe6) == 0xe6; /* + opmask, ZMM_Hi256, Hi16_ZMM */
        cpuid(7, 0, r);
        const bool avx2 = (r[1] >> 5) & 1;
        const bool f = (r[1] >> 16) & 1, dq = (r[1] >> 17) & 1, bw = (r[1] >> 30) & 1,
                   vl = (r[1] >> 31) & 1;
        ci->avx2_fma = avx && avx2 && fma && ymm_os;
        ci->avx512 = ci->avx2_fma && f && dq && bw && vl && zmm_os;
        ci->avx512_vnni = ci->avx512 && ((r[2] >> 11) & 1);
        cpuid(1, 0, r);
        ci->f16c = ci->avx2_fma && ((r[2] >> 29) & 1);
        cpuid(7, 1, r);
        ci->avx512_bf16 = ci->avx512 && ((r[0] >> 5) & 1);
    }
    /* Cross-check with the compiler runtime's view (it also consults XCR0). */
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) ci->avx2_fma = false;
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")))
        ci->avx512 = false;
    if (!ci->avx512 || !__builtin_cpu_supports("avx512vnni")) ci->avx512_vnni = false;

    /* ---- caches */
    int64_t l1d = 0, l2 = 0, l3 = 0;
    ci->cache_source = "defaults";
    bool topoext = false;
    if (max_ext >= 0x80000001u) {
        cpuid(0x80000001u, 0, r);
        topoext = (r[2] >> 22) & 1;
    }
    if (amd && topoext && max_ext >= 0x8000001Du && caches_from_leaf(0x8000001Du, &l1d, &l2, &l3))
        ci->cache_source = "cpuid 0x8000001d";
    else if (!amd && max_leaf >= 4 && caches_from_leaf(4, &l1d, &l2, &l3))
        ci->cache_source = "cpuid leaf 4";
    else if (amd && max_ext >= 0x80000006u) {
        cpuid(0x80000005u, 0, r);
        l1d = (int64_t)(r[2] >> 24) * 1024;
        cpuid(0x80000006u, 0, r);
        l2 = (int64_t)(r[2] >> 16) * 1024;
        l3 = (int64_t)(r[3] >> 18) * 512 * 1024;
        ci->cache_source = "cpuid 0x80000005/6";
    }
    ci->l1d = l1d, ci->l2 = l2, ci->l3 = l3;
}
#endif

static void cpu_init(void) {
    nn__cpu_info *ci = &g_cpu;
#if NN_X86
    detect(ci);
#else
    ci->cache_source = "defaults";
#endif
    /* Implausible or missing sizes (hypervisors report zeros or nonsense):
     * the defaults. */
    if (ci->l1d < 8 * 1024 || ci->l1d > 1024 * 1024) ci->l1d = DEF_L1D;
    if (ci->l2 < 64 * 1024 || ci->l2 > 64 * 1024 * 1024 || ci->l2 < ci->l1d) ci->l2 = DEF_L2;
    if (ci->l3 < ci->l2 || ci->l3 > (int64_t)1024 * 1024 * 1024)
        ci->l3 = ci->l2 > DEF_L3 ? ci->l2 : DEF_L3;
}

const nn__cpu_info *nn__cpu(void) {
    pthread_once(&g_cpu_once, cpu_init);
    return &g_cpu;
}
