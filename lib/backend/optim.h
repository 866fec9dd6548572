/* Backend domain: optimizer updates (see backend.h for the conventions). */
#ifndef NN_BACKEND_OPTIM_H
#define NN_BACKEND_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

/* One Adam / AdamW step (torch.optim.Adam/AdamW semantics). The caller
 * computes the per-step coefficients (in double, then rounded), so every
 * kernel runs the same float arithmetic:
 *   g' = ±g (+ wd*p unless decoupled);  p *= decay (= 1 - lr*wd) when decoupled;
 *   m = m*beta1 + c1*g';  v = v*beta2 + c2*g'*g';  vmax = max(vmax, v) (amsgrad);
 *   p += neg_step * (m / (sqrt(v or vmax) / bc2_sqrt + eps))
 * with c1 = 1-beta1, c2 = 1-beta2, neg_step = -lr/(1-beta1^t),
 * bc2_sqrt = sqrt(1-beta2^t). */
typedef struct nn__adam_hp {
    float beta1, beta2, c1, c2, eps, weight_decay, decay, neg_step, bc2_sqrt;
    bool decoupled; /* AdamW */
    bool maximize;  /* ascend: use -g */
} nn__adam_hp;

/* One SGD step (torch.optim.SGD semantics): g' = ±g + wd*p; with momentum:
 * buf = first ? g' : buf*momentum + damp1*g' (damp1 = 1 - dampening),
 * g' = nesterov ? g' + momentum*buf : buf; then p += neg_lr * g'.
 * buf is NULL (and unused) when momentum == 0. */
typedef struct nn__sgd_hp {
    float neg_lr, momentum, damp1, weight_decay;
    bool nesterov;
    bool first;    /* the momentum buffer is uninitialised (first step) */
    bool maximize; /* ascend: use -g */
} nn__sgd_hp;

typedef struct nn__optim_kernels {
    /* In place on p and the state buffers; vmax NULL: no amsgrad. */
    void (*adam)(int64_t n, float *p, const float *g, float *m, float *v, float *vmax,
                 const nn__adam_hp *hp);
    void (*sgd)(int64_t n, float *p, const float *g, float *buf, const nn__sgd_hp *hp);
} nn__optim_kernels;

#endif
