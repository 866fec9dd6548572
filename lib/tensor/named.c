/* nn__named_list: the growable list of (name, tensor) entries shared by
 * modules (flattened lists) and state dicts. */
#include "nn_internal.h"

nn_status nn__named_list_push(nn__named_list *l, const char *name, nn_tensor *t, const char *fn) {
    if (l->n == l->cap) {
        int64_t ncap = l->cap ? l->cap * 2 : 4;
        size_t bytes;
        if (ncap < l->cap || !nn__size_mul((size_t)ncap, sizeof *l->e, &bytes))
            return nn__err(NN_ERR_OVERFLOW, "%s: too many entries", fn);
        nn__named_tensor *e = nn__realloc(l->e, bytes);
        if (!e) return NN_ERR_NOMEM;
        l->e = e;
        l->cap = ncap;
    }
    char *nm = nn__strdup(name);
    if (!nm) return NN_ERR_NOMEM;
    l->e[l->n].name = nm;
    l->e[l->n].t = t;
    l->n++;
    return NN_OK;
}

void nn__named_list_clear(nn__named_list *l, bool owned) {
    for (int64_t i = 0; i < l->n; i++) {
        nn__free(l->e[i].name);
        if (owned) nn__tensor_release(l->e[i].t);
    }
    nn__free(l->e);
    l->e = NULL;
    l->n = l->cap = 0;
}
