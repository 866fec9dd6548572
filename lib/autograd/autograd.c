/* Define-by-run reverse-mode autograd: recording nodes and the backward engine. */
#include "nn_internal.h"

#include <string.h>

static _Thread_local int tl_grad_disabled; /* 0: grad mode on */

bool nn_set_grad_enabled(bool enabled) {
    bool prev = tl_grad_disabled == 0;
    tl_grad_disabled = enabled ? 0 : 1;
    return prev;
}

bool nn_is_grad_enabled(void) { return tl_grad_disabled == 0; }

/* The leaf-gradient-ready hook of this thread (nn__set_grad_ready_hook). */
static _Thread_local nn__grad_ready_fn tl_ready;
static _Thread_local void *tl_ready_ctx;

void nn__set_grad_ready_hook(nn__grad_ready_fn fn, void *ctx) {
    tl_ready = fn;
    tl_ready_ctx = fn ? ctx : NULL;
}

/* A leaf whose gradient the engine accumulates (not a node's output). */
static bool grad_leaf(const nn_tensor *t) { return t && !t->grad_fn && t->requires_grad; }

bool nn__needs_grad(nn_tensor *const *inputs, int n) {
    if (tl_grad_disabled) return false;
    for (int i = 0; i < n; i++)
        if (inputs[i] && inputs[i]->requires_grad) return true;
    return false;
}

nn_status nn__record(nn_tensor *out, const char *name, nn_backward_fn backward,
                     nn_tensor *const *inputs, int n, nn_node **node) {
    *node = NULL;
    if (!nn__needs_grad(inputs, n)) return NN_OK;
    nn_node *nd = nn__calloc(1, sizeof *nd);
    if (!nd) return NN_ERR_NOMEM;
    nd->inputs = nn__calloc((size_t)n, sizeof *nd->inputs);
    if (!nd->inputs) {
        nn__free(nd);
        return NN_ERR_NOMEM;
    }
    nd->refs = 1;
    nd->name = name;
    nd->backward = backward;
    nd->ninputs = n;
    for (int i = 0; i < n; i++) {
        nd->inputs[i] = inputs[i];
        nn__tensor_retain(inputs[i]);
    }
    nd->out_ndim = out->ndim;
    memcpy(nd->out_shape, out->shape, sizeof nd->out_shape);
    out->grad_fn = nd;
    out->requires_grad = true;
    *node = nd;
    return NN_OK;
}

/* ---------------------------------------------------------- public API */

nn_status nn_tensor_set_requires_grad(nn_tensor *t, bool requires_grad) {
    if (!nn__check_tensor(t, "nn_tensor_set_requires_grad", "t")) return nn_last_status();
    if (requires_grad && t->dtype != NN_DTYPE_F32)
        return nn__err(NN_ERR_DTYPE,
                       "nn_tensor_set_requires_grad: only f32 tensors can require grad (got %s)",
                       nn_dtype_name(t->dtype));
    if (!requires_grad && t->grad_fn)
        return nn__err(NN_ERR_STATE,
                       "nn_tensor_set_requires_grad: tensor is not a leaf; use nn_detach");
    t->requires_grad = requires_grad;
    return nn__ok();
}

bool nn_tensor_requires_grad(const nn_tensor *t) {
    return nn__check_tensor(t, "nn_tensor_requires_grad", "t") && t->requires_grad;
}

bool nn_tensor_is_leaf(const nn_tensor *t) {
    return nn__check_tensor(t, "nn_tensor_is_leaf", "t") && t->grad_fn == NULL;
}

nn_tensor *nn_tensor_grad(const nn_tensor *t) {
    if (!nn__check_tensor(t, "nn_tensor_grad", "t")) return NULL;
    return t->grad;
}

nn_status nn_tensor_zero_grad(nn_tensor *t) {
    if (!nn__check_tensor(t, "nn_tensor_zero_grad", "t")) return nn_last_status();
    nn__tensor_release(t->grad);
    t->grad = NULL;
    return nn__ok();
}

nn_tensor *nn_detach(nn_tensor *t) {
    if (!nn__check_tensor(t, "nn_detach", "t")) return NULL;
    return nn__track(nn__alias(t));
}

/* Accumulate g into *slot (+=); takes ownership of g. */
static nn_status accumulate(nn_tensor **slot, nn_tensor *g) {
    if (!*slot) {
        /* g may share storage with something else (e.g. an identity
         * backward); own a private copy so in-place += later is safe. */
        if (g->storage->refs > 1 || !nn__is_contiguous(g)) {
            nn_tensor *c = nn__clone(g);
            nn__tensor_release(g);
            if (!c) return NN_ERR_NOMEM;
            g = c;
        }
        *slot = g;
        return NN_OK;
    }
    nn_tensor *s = *slot;
    nn_tensor *gc = nn__contig(g);
    nn__tensor_release(g);
    if (!gc) return NN_ERR_NOMEM;
    float *d = nn__f32(s);
    const float *x = nn__f32(gc);
    for (int64_t i = 0; i < s->numel; i++) d[i] += x[i];
    nn__tensor_release(gc);
    return NN_OK;
}

/* Topological order of nodes reachable from root (post-order DFS with an
 * explicit stack, so deep graphs cannot overflow the C stack). */
typedef struct {
    nn_node **v;
    size_t n, cap;
} nodevec;

static bool vec_push(nodevec *a, nn_node *x) {
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        nn_node **nv = nn__realloc(a->v, nc * sizeof *nv);
        if (!nv) return false;
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = x;
    return true;
}

static bool contains(const nodevec *a, const nn_node *x) {
    /* Linear scans would be O(n^2); use `pending` as a visit mark instead. */
    (void)a;
    return x->pending != 0;
}

static nn_status topo_sort(nn_node *root, nodevec *order) {
    nodevec stack = {0};
    nodevec idx = {0}; /* parallel: next input index to visit, stored as pointer-size ints */
    nn_status st = NN_OK;
    root->pending = 1;
    if (!vec_push(&stack, root) || !vec_push(&idx, NULL)) goto oom;
    while (stack.n) {
        nn_node *nd = stack.v[stack.n - 1];
        uintptr_t k = (uintptr_t)idx.v[idx.n - 1];
        if ((int)k < nd->ninputs) {
            idx.v[idx.n - 1] = (nn_node *)(k + 1);
            nn_tensor *in = nd->inputs[k];
            nn_node *child = in ? in->grad_fn : NULL;
            if (child && !contains(order, child)) {
                child->pending = 1;
                if (!vec_push(&stack, child) || !vec_push(&idx, NULL)) goto oom;
            }
        } else {
            stack.n--;
            idx.n--;
            if (!vec_push(order, nd)) goto oom;
        }
    }
    goto done;
oom:
    st = nn__err(NN_ERR_NOMEM, "nn_backward: out of memory sorting the graph");
done:
    nn__free(stack.v);
    nn__free(idx.v);
    return st;
}

/* Node nd has run (or was reached by no gradient): one consumer fewer for
 * each leaf among its inputs; a leaf with none left is final. */
static void leaf_uses_done(nn_node *nd, nn__grad_ready_fn ready, void *ctx) {
    for (int k = 0; k < nd->ninputs; k++) {
        nn_tensor *in = nd->inputs[k];
        if (grad_leaf(in) && in->bw_uses > 0 && --in->bw_uses == 0) ready(in, ctx);
    }
}

nn_status nn_backward_ex(nn_tensor *t, const nn_tensor *seed, bool retain_graph) {
    const char *fn = "nn_backward";
    NN__PROF_SPAN(NN__PROF_OTHER, fn, NULL);
    if (!nn__check_tensor(t, fn, "t")) return nn_last_status();
    if (!t->requires_grad)
        return nn__err(NN_ERR_NO_GRAD,
                       "%s: tensor does not require grad (no graph to differentiate)", fn);
    nn_tensor *g0;
    if (seed) {
        if (!nn__check_f32(seed, fn, "seed")) return nn_last_status();
        if (!nn__same_shape(seed, t)) {
            char a[128], b[128];
            return nn__err(NN_ERR_SHAPE, "%s: seed shape %s differs from tensor shape %s", fn,
                           nn__shape_str(seed->shape, seed->ndim, a, sizeof a),
                           nn__shape_str(t->shape, t->ndim, b, sizeof b));
        }
        g0 = nn__clone(seed);
    } else {
        if (t->numel != 1) {
            char a[128];
            return nn__err(
                NN_ERR_SHAPE,
                "%s: tensor of shape %s is not a scalar; pass a seed gradient (nn_backward_ex)", fn,
                nn__shape_str(t->shape, t->ndim, a, sizeof a));
        }
        g0 = nn__tensor_new(NN_DTYPE_F32, t->shape, t->ndim);
        if (g0) nn__f32(g0)[0] = 1.0f;
    }
    if (!g0) return nn_last_status();

    if (!t->grad_fn) { /* a leaf: its gradient is the seed */
        nn_status st = accumulate(&t->grad, g0);
        if (st) return nn__err(st, "%s: out of memory", fn);
        if (tl_ready) tl_ready(t, tl_ready_ctx);
        return nn__ok();
    }

    nodevec order = {0};
    nn_status st = topo_sort(t->grad_fn, &order);
    for (size_t i = 0; i < order.n; i++) order.v[i]->pending = 0;
    if (st) {
        nn__tensor_release(g0);
        nn__free(order.v);
        return st;
    }
    for (size_t i = 0; i < order.n; i++) {
        if (order.v[i]->released) {
            st = nn__err(NN_ERR_STATE,
                         "%s: the graph through %s was already used by a backward and released; "
                         "pass retain_graph to backward twice",
                         fn, order.v[i]->name);
            nn__tensor_release(g0);
            nn__free(order.v);
            return st;
        }
    }
    t->grad_fn->grad_acc = g0;

    /* With a ready hook, count each leaf's consumers in this graph; the
     * hook fires when the last of them has run (leaf_uses_done). */
    nn__grad_ready_fn ready = tl_ready;
    void *ready_ctx = tl_ready_ctx;
    if (ready)
        for (size_t i = 0; i < order.n; i++)
            for (int k = 0; k < order.v[i]->ninputs; k++)
                if (grad_leaf(order.v[i]->inputs[k])) order.v[i]->inputs[k]->bw_uses++;

    bool prev = nn_set_grad_enabled(false);
    /* Reverse post-order: each node runs after every node that consumes it. */
    for (size_t oi = order.n; oi-- > 0 && st == NN_OK;) {
        nn_node *nd = order.v[oi];
        nn_tensor *gout = nd->grad_acc;
        nd->grad_acc = NULL;
        if (!gout) { /* no gradient reached this node */
            if (ready) leaf_uses_done(nd, ready, ready_ctx);
            continue;
        }
        nn_tensor *gin_stack[8];
        nn_tensor **gin =
            nd->ninputs <= 8 ? gin_stack : nn__calloc((size_t)nd->ninputs, sizeof *gin);
        if (!gin) {
            nn__tensor_release(gout);
            st = nn_last_status();
            break;
        }
        for (int k = 0; k < nd->ninputs; k++) gin[k] = NULL;
        {
            NN__PROF_SPAN(NN__PROF_BACKWARD, nd->name, NULL);
            st = nd->backward(nd, gout, gin);
        }
        nn__tensor_release(gout);
        for (int k = 0; k < nd->ninputs; k++) {
            nn_tensor *in = nd->inputs[k], *g = gin[k];
            if (!g) continue;
            if (st != NN_OK || !in || !in->requires_grad) {
                nn__tensor_release(g);
                continue;
            }
            if (!nn__same_shape(g, in)) {
                char a[128], b[128];
                st = nn__err(NN_ERR_STATE,
                             "%s: internal error: %s produced a gradient of shape %s for an input "
                             "of shape %s",
                             fn, nd->name, nn__shape_str(g->shape, g->ndim, a, sizeof a),
                             nn__shape_str(in->shape, in->ndim, b, sizeof b));
                nn__tensor_release(g);
                continue;
            }
            nn_status as =
                in->grad_fn ? accumulate(&in->grad_fn->grad_acc, g) : accumulate(&in->grad, g);
            if (!in->grad_fn) nn__tensor_mem_tag(in->grad, NN_MEM_GRADIENTS);
            if (as) st = nn__err(as, "%s: out of memory accumulating gradients", fn);
        }
        if (gin != gin_stack) nn__free(gin);
        if (ready && st == NN_OK) leaf_uses_done(nd, ready, ready_ctx);
        if (!retain_graph) {
            nn__node_free_saved(nd);
            nd->released = true;
        }
    }
    nn_set_grad_enabled(prev);
    /* Drop partial sums left behind by an error. */
    for (size_t i = 0; i < order.n; i++) {
        nn__tensor_release(order.v[i]->grad_acc);
        order.v[i]->grad_acc = NULL;
        /* After an error, counts of the nodes that did not run remain. */
        if (ready)
            for (int k = 0; k < order.v[i]->ninputs; k++)
                if (grad_leaf(order.v[i]->inputs[k])) order.v[i]->inputs[k]->bw_uses = 0;
    }
    nn__free(order.v);
    if (st != NN_OK && !nn__err_pending()) st = nn__err(st, "%s: backward failed", fn);
    return st != NN_OK ? st : nn__ok();
}

nn_status nn_backward(nn_tensor *loss) { return nn_backward_ex(loss, NULL, false); }
