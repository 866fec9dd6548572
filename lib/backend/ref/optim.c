/* Reference optimizer updates: plain, single-threaded C (the test oracle). */
#include "backend/ref/ref.h"

#include <math.h>

static void ref_adam(int64_t n, float *p, const float *g, float *m, float *v, float *vmax,
                     const nn__adam_hp *hp) {
    for (int64_t i = 0; i < n; i++) {
        float gi = hp->maximize ? -g[i] : g[i];
        if (hp->decoupled)
            p[i] *= hp->decay; /* AdamW: shrink the weights first */
        else
            gi = gi + hp->weight_decay * p[i]; /* Adam: L2 penalty in the gradient */
        m[i] = m[i] * hp->beta1 + hp->c1 * gi;
        v[i] = v[i] * hp->beta2 + hp->c2 * gi * gi;
        float vv = v[i];
        if (vmax) vv = vmax[i] = vmax[i] > v[i] ? vmax[i] : v[i];
        float denom = sqrtf(vv) / hp->bc2_sqrt + hp->eps;
        p[i] += hp->neg_step * (m[i] / denom);
    }
}

static void ref_sgd(int64_t n, float *p, const float *g, float *buf, const nn__sgd_hp *hp) {
    for (int64_t i = 0; i < n; i++) {
        float d = (hp->maximize ? -g[i] : g[i]) + hp->weight_decay * p[i];
        if (hp->momentum != 0.0f && buf) {
            buf[i] = hp->first ? d : buf[i] * hp->momentum + hp->damp1 * d;
            d = hp->nesterov ? d + hp->momentum * buf[i] : buf[i];
        }
        p[i] += hp->neg_lr * d;
    }
}

void nn__ref_fill_optim(nn__optim_kernels *t) {
    t->adam = ref_adam;
    t->sgd = ref_sgd;
}
