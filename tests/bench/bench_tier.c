#include "bench_tier.h"

#include "backend/tier.h"
#include "bench_util.h"

#include <stdio.h>
#include <string.h>

bool bench_force_tier(const char *name) {
    const int tier = !strcmp(name, "ref")      ? NN_TIER_REF
                     : !strcmp(name, "avx2")   ? NN_TIER_AVX2
                     : !strcmp(name, "avx512") ? NN_TIER_AVX512
                                               : -2;
    if (tier == -2 || !nn__backend_force_tier(tier)) {
        fprintf(stderr, "%s: tier '%s' is not runnable here\n", bench_prog, name);
        return false;
    }
    return true;
}
