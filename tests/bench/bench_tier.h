/* --tier NAME, for the benchmarks that measure an older machine's kernels
 * on this one (bench, bench_half, bench_quant): forces the backend tier
 * through the internal hook, so these programs link the internal archive. */
#ifndef NN_BENCH_TIER_H
#define NN_BENCH_TIER_H

#include <stdbool.h>

/* Force tier "ref", "avx2" or "avx512". False, with a message on stderr
 * that starts with bench_prog, for another name or a tier this CPU cannot
 * run. */
bool bench_force_tier(const char *name);

#endif
