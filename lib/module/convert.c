/* nn_module_convert: a trained model's weights to f16 / bf16 (or back to
 * f32) for inference. Only the weights of the kinds that compute with half
 * weights (Linear, Conv2d, Embedding: layers.c, nn__mod_weight_dtype_key)
 * change; biases, norms, recurrent layers and buffers stay f32 (they are
 * small, and norms lose accuracy in 16 bits). The kind records the dtype
 * in its `weight_dtype` hyperparameter (written to model files only when
 * not f32), so a loaded file rebuilds the layer with a weight of that dtype
 * and its tensor decodes straight into it. A weight shared by several
 * modules (tied) is converted once and stays shared. Nothing changes unless
 * every new tensor could be made. */
#include "module_internal.h"

#include <string.h>

typedef struct conv_item {
    nn_module *m;
    int slot;         /* index in m->params */
    nn_tensor *old, *neu;
} conv_item;

typedef struct conv_list {
    conv_item *v;
    int64_t n, cap;
} conv_list;

static nn_status collect(nn_module *m, conv_list *l, int depth, const char *fn) {
    if (depth > 4096)
        return nn__err(NN_ERR_LIMIT, "%s: the module tree is deeper than 4096 levels", fn);
    if (nn__mod_weight_dtype_key(m) >= 0) {
        for (int i = 0; i < (int)m->params.n; i++) {
            if (strcmp(m->params.e[i].name, "weight") != 0) continue;
            if (l->n == l->cap) {
                int64_t cap = l->cap ? l->cap * 2 : 16;
                conv_item *v = nn__realloc(l->v, sizeof *v * (size_t)cap);
                if (!v) return NN_ERR_NOMEM;
                l->v = v;
                l->cap = cap;
            }
            l->v[l->n++] = (conv_item){m, i, m->params.e[i].t, NULL};
        }
    }
    for (int c = 0; c < m->nchildren; c++) {
        nn_status st = collect(m->children[c].m, l, depth + 1, fn);
        if (st) return st;
    }
    return NN_OK;
}

nn_status nn_module_convert(nn_module *m, nn_dtype dtype) {
    const char *fn = "nn_module_convert";
    if (!nn__mod_check(m, fn, "m")) return nn_last_status();
    if (dtype != NN_DTYPE_F32 && dtype != NN_DTYPE_F16 && dtype != NN_DTYPE_BF16)
        return nn__err(NN_ERR_DTYPE, "%s: dtype %d (%s): weights convert to f32, f16 or bf16", fn,
                       (int)dtype, nn_dtype_name(dtype));
    conv_list l = {0};
    nn_status st = collect(m, &l, 0, fn);
    /* Make every new tensor first; a tied weight (seen before) reuses its
     * conversion. */
    for (int64_t i = 0; !st && i < l.n; i++) {
        conv_item *it = &l.v[i];
        for (int64_t j = 0; j < i && !it->neu; j++)
            if (l.v[j].old == it->old) {
                it->neu = l.v[j].neu;
                nn__tensor_retain(it->neu);
            }
        if (it->neu) continue;
        if (it->old->dtype == dtype) {
            it->neu = it->old;
            nn__tensor_retain(it->neu);
            continue;
        }
        it->neu = nn__cast(it->old, dtype);
        if (!it->neu) st = nn__forward(fn);
    }
    if (!st) {
        for (int64_t i = 0; i < l.n; i++) {
            conv_item *it = &l.v[i];
            nn__named_tensor *slot = &it->m->params.e[it->slot];
            nn__tensor_release(slot->t);
            slot->t = it->neu;
            it->neu = NULL;
            it->m->cfg[nn__mod_weight_dtype_key(it->m)] = (double)dtype;
        }
        nn__mod_bump_generation();
    }
    for (int64_t i = 0; i < l.n; i++) nn__tensor_release(l.v[i].neu);
    nn__free(l.v);
    return st ? st : nn__ok();
}
