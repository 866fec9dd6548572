/* The lifetime of graph nodes. A tensor holds a reference to the node that
 * produced it and a node holds references to its input tensors, so releasing
 * either may release the other: that bookkeeping lives here, beside the
 * tensors, while lib/autograd records nodes and runs backward. */
#include "nn_internal.h"

void nn__node_free_saved(nn_node *nd) {
    for (int i = 0; i < NN__NODE_SAVED; i++) {
        nn__tensor_release(nd->saved[i]);
        nd->saved[i] = NULL;
    }
    if (nd->ctx_free && nd->ctx) nd->ctx_free(nd->ctx);
    nd->ctx = NULL;
}

static void node_destroy(nn_node *nd) {
    nn__node_free_saved(nd);
    nn__tensor_release(nd->grad_acc);
    for (int i = 0; i < nd->ninputs; i++) nn__tensor_release(nd->inputs[i]);
    nn__free(nd->inputs);
    nn__free(nd);
}

/* Releasing a node releases its inputs, which may release their nodes, and
 * so on down the graph: done recursively, a chain of a few hundred thousand
 * nodes (a long RNN unroll) would overflow the C stack. Instead, nodes whose
 * count reaches zero go on a per-thread worklist that the outermost release
 * drains. The list is a fixed array (no allocation while freeing); only if
 * it fills up (a graph both very wide and deep) does a node get destroyed
 * in place. */
#define NN__RELEASE_LIST 1024
static _Thread_local nn_node *tl_dying[NN__RELEASE_LIST];
static _Thread_local int tl_ndying;
static _Thread_local bool tl_draining;

void nn__node_release(nn_node *nd) {
    if (!nd) return;
    if (--nd->refs > 0) return;
    if (tl_ndying < NN__RELEASE_LIST)
        tl_dying[tl_ndying++] = nd;
    else
        node_destroy(nd);
    if (tl_draining) return;
    tl_draining = true;
    while (tl_ndying > 0) node_destroy(tl_dying[--tl_ndying]);
    tl_draining = false;
}
