/* The optimizer updates' loops, shared by the x86 tiers (each includes this
 * into a file built with its own vector extensions, and the compiler
 * vectorises the loops to that width): the reference arithmetic, bit for bit
 * (sqrtf and division are exact IEEE operations and nothing is contracted,
 * so every lane matches the scalar loop). */
#ifndef NN_BACKEND_X86_OPTIM_LOOPS_H
#define NN_BACKEND_X86_OPTIM_LOOPS_H

#include "backend/optim.h"
#include "backend/parallel.h"

#include <math.h>
#include <stdint.h>

/* Work per thread below which an update stays on one thread (elements). */
#define OPTIM_GRAIN (1 << 15)

typedef struct adam_args {
    float *p, *m, *v, *vmax;
    const float *g;
    const nn__adam_hp *hp;
} adam_args;

static void adam_body(void *ctx, int64_t lo, int64_t hi) {
    const adam_args *q = ctx;
    const nn__adam_hp *hp = q->hp;
    float *restrict p = q->p, *restrict m = q->m, *restrict v = q->v;
    const float *restrict g = q->g;
    const float b1 = hp->beta1, b2 = hp->beta2, c1 = hp->c1, c2 = hp->c2, eps = hp->eps;
    const float wd = hp->weight_decay, decay = hp->decay, ns = hp->neg_step, bc = hp->bc2_sqrt;
    const float sg = hp->maximize ? -1.0f : 1.0f;
    if (q->vmax) {
        float *restrict vm = q->vmax;
        for (int64_t i = lo; i < hi; i++) {
            float gi = sg * g[i];
            if (hp->decoupled)
                p[i] *= decay;
            else
                gi = gi + wd * p[i];
            m[i] = m[i] * b1 + c1 * gi;
            v[i] = v[i] * b2 + c2 * gi * gi;
            float vv = vm[i] = vm[i] > v[i] ? vm[i] : v[i];
            p[i] += ns * (m[i] / (sqrtf(vv) / bc + eps));
        }
    } else if (hp->decoupled) {
        for (int64_t i = lo; i < hi; i++) {
            float gi = sg * g[i];
            p[i] *= decay;
            m[i] = m[i] * b1 + c1 * gi;
            v[i] = v[i] * b2 + c2 * gi * gi;
            p[i] += ns * (m[i] / (sqrtf(v[i]) / bc + eps));
        }
    } else {
        for (int64_t i = lo; i < hi; i++) {
            float gi = sg * g[i] + wd * p[i];
            m[i] = m[i] * b1 + c1 * gi;
            v[i] = v[i] * b2 + c2 * gi * gi;
            p[i] += ns * (m[i] / (sqrtf(v[i]) / bc + eps));
        }
    }
}

typedef struct sgd_args {
    float *p, *buf;
    const float *g;
    const nn__sgd_hp *hp;
} sgd_args;

static void sgd_body(void *ctx, int64_t lo, int64_t hi) {
    const sgd_args *q = ctx;
    const nn__sgd_hp *hp = q->hp;
    float *restrict p = q->p;
    const float *restrict g = q->g;
    const float nlr = hp->neg_lr, wd = hp->weight_decay, mom = hp->momentum;
    const float damp1 = hp->damp1, sg = hp->maximize ? -1.0f : 1.0f;
    if (mom == 0.0f || !q->buf) {
        for (int64_t i = lo; i < hi; i++) p[i] += nlr * (sg * g[i] + wd * p[i]);
        return;
    }
    float *restrict b = q->buf;
    for (int64_t i = lo; i < hi; i++) {
        float d = sg * g[i] + wd * p[i];
        b[i] = hp->first ? d : b[i] * mom + damp1 * d;
        d = hp->nesterov ? d + mom * b[i] : b[i];
        p[i] += nlr * d;
    }
}

static void x86_adam(int64_t n, float *p, const float *g, float *m, float *v, float *vmax,
                     const nn__adam_hp *hp) {
    adam_args q = {p, m, v, vmax, g, hp};
    nn__parallel_range(n, nn__threads_for(n * 4, OPTIM_GRAIN), 64, adam_body, &q);
}

static void x86_sgd(int64_t n, float *p, const float *g, float *buf, const nn__sgd_hp *hp) {
    sgd_args q = {p, buf, g, hp};
    nn__parallel_range(n, nn__threads_for(n * 2, OPTIM_GRAIN), 64, sgd_body, &q);
}

#endif
