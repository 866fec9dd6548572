/* Seedable random generators: xoshiro256** seeded by splitmix64.
 * The same seed gives the same bits on every platform. */
#include "nn_internal.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void gen_seed(nn_generator *g, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) g->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t nn__gen_next(nn_generator *g) {
    uint64_t *s = g->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float nn__gen_uniform_f32(nn_generator *g) { return (float)(nn__gen_next(g) >> 40) * 0x1.0p-24f; }
double nn__gen_uniform_f64(nn_generator *g) { return (double)(nn__gen_next(g) >> 11) * 0x1.0p-53; }

double nn__gen_normal(nn_generator *g) {
    /* Box-Muller; u1 in (0, 1] so log is finite. */
    double u1 = 1.0 - nn__gen_uniform_f64(g);
    double u2 = nn__gen_uniform_f64(g);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t nn__gen_below(nn_generator *g, uint64_t n) {
    if (n <= 1) return 0;
    /* Rejection sampling: unbiased. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do r = nn__gen_next(g);
    while (r >= limit);
    return r % n;
}

static _Thread_local nn_generator tl_default;
static _Thread_local bool tl_default_ready;

nn_generator *nn__gen(nn_generator *g) {
    if (g) return g;
    if (!tl_default_ready) {
        nn__handle_set(&tl_default.handle, NN__KIND_GENERATOR);
        gen_seed(&tl_default, 0);
        tl_default_ready = true;
    }
    return &tl_default;
}

bool nn__check_gen(const nn_generator *g, const char *fn) {
    return !g || nn__handle_check(g, NN__KIND_GENERATOR, fn, "g");
}

nn_generator *nn_generator_new(uint64_t seed) {
    nn_generator *g = nn__calloc(1, sizeof *g);
    if (!g) return NULL;
    nn__handle_set(&g->handle, NN__KIND_GENERATOR);
    gen_seed(g, seed);
    return g;
}

void nn_generator_free(nn_generator *g) {
    if (!g || !nn__check_gen(g, "nn_generator_free")) return;
    nn__handle_clear(&g->handle);
    nn__free(g);
}

nn_status nn_generator_seed(nn_generator *g, uint64_t seed) {
    if (!nn__check_gen(g, "nn_generator_seed")) return nn_last_status();
    gen_seed(nn__gen(g), seed);
    return NN_OK;
}

nn_status nn_generator_get_state(const nn_generator *g, uint64_t state[4]) {
    if (!nn__check_gen(g, "nn_generator_get_state")) return nn_last_status();
    if (!state) return nn__err(NN_ERR_NULL, "nn_generator_get_state: state is NULL");
    const nn_generator *s = nn__gen((nn_generator *)g);
    for (int i = 0; i < 4; i++) state[i] = s->s[i];
    return NN_OK;
}

nn_status nn_generator_set_state(nn_generator *g, const uint64_t state[4]) {
    if (!nn__check_gen(g, "nn_generator_set_state")) return nn_last_status();
    if (!state) return nn__err(NN_ERR_NULL, "nn_generator_set_state: state is NULL");
    if (!(state[0] | state[1] | state[2] | state[3]))
        return nn__err(NN_ERR_INVALID, "nn_generator_set_state: the all-zero state is invalid");
    nn_generator *s = nn__gen(g);
    for (int i = 0; i < 4; i++) s->s[i] = state[i];
    return NN_OK;
}

uint64_t nn_generator_next(nn_generator *g) {
    if (!nn__check_gen(g, "nn_generator_next")) return 0;
    return nn__gen_next(nn__gen(g));
}

typedef enum { R_UNIFORM, R_NORMAL, R_BERNOULLI } rkind;

static nn_tensor *random_tensor(nn_generator *g, const int64_t *shape, int ndim, rkind kind,
                                double a, double b, const char *fn) {
    if (!nn__check_gen(g, fn)) return NULL;
    g = nn__gen(g);
    nn_tensor *t = nn__tensor_new(NN_DTYPE_F32, shape, ndim);
    if (!t) return NULL;
    float *p = nn__f32(t);
    for (int64_t i = 0; i < t->numel; i++) {
        switch (kind) {
        case R_UNIFORM: p[i] = (float)(a + (b - a) * nn__gen_uniform_f64(g)); break;
        case R_NORMAL: p[i] = (float)(a + b * nn__gen_normal(g)); break;
        case R_BERNOULLI: p[i] = nn__gen_uniform_f64(g) < a ? 1.0f : 0.0f; break;
        }
    }
    return nn__track(t);
}

nn_tensor *nn_rand(nn_generator *g, const int64_t *shape, int ndim) {
    return random_tensor(g, shape, ndim, R_UNIFORM, 0.0, 1.0, "nn_rand");
}

nn_tensor *nn_randn(nn_generator *g, const int64_t *shape, int ndim) {
    return random_tensor(g, shape, ndim, R_NORMAL, 0.0, 1.0, "nn_randn");
}

nn_tensor *nn_uniform(nn_generator *g, const int64_t *shape, int ndim, double low, double high) {
    if (!(isfinite(low) && isfinite(high) && low <= high))
        return NN__FAIL(NN_ERR_INVALID, "nn_uniform: need finite low <= high, got %g, %g", low,
                        high);
    return random_tensor(g, shape, ndim, R_UNIFORM, low, high, "nn_uniform");
}

nn_tensor *nn_normal(nn_generator *g, const int64_t *shape, int ndim, double mean, double std) {
    if (!(isfinite(mean) && isfinite(std) && std >= 0))
        return NN__FAIL(NN_ERR_INVALID, "nn_normal: need finite mean and std >= 0, got %g, %g",
                        mean, std);
    return random_tensor(g, shape, ndim, R_NORMAL, mean, std, "nn_normal");
}

nn_tensor *nn_bernoulli(nn_generator *g, const int64_t *shape, int ndim, double p) {
    if (!(p >= 0 && p <= 1))
        return NN__FAIL(NN_ERR_INVALID, "nn_bernoulli: p = %g, expected 0 <= p <= 1", p);
    return random_tensor(g, shape, ndim, R_BERNOULLI, p, 0, "nn_bernoulli");
}

nn_tensor *nn_randperm(nn_generator *g, int64_t n) {
    if (!nn__check_gen(g, "nn_randperm")) return NULL;
    if (n < 0) return NN__FAIL(NN_ERR_INVALID, "nn_randperm: n = %lld < 0", (long long)n);
    g = nn__gen(g);
    nn_tensor *t = nn__tensor_new(NN_DTYPE_I64, &n, 1);
    if (!t) return NULL;
    int64_t *p = nn__i64(t);
    for (int64_t i = 0; i < n; i++) p[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)nn__gen_below(g, (uint64_t)i + 1);
        int64_t tmp = p[i];
        p[i] = p[j];
        p[j] = tmp;
    }
    return nn__track(t);
}
