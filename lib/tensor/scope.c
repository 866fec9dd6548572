/* Scopes: per-thread stacks of tensor references released together. */
#include "nn_internal.h"

struct nn_scope {
    nn__handle handle; /* NN__KIND_SCOPE */
    size_t start; /* index into the thread's tracked list */
    nn_scope *parent;
};
NN__HANDLE_FIRST(struct nn_scope, handle);

static _Thread_local nn_tensor **tl_tracked;
static _Thread_local size_t tl_len, tl_cap;
static _Thread_local nn_scope *tl_top;

nn_tensor *nn__track(nn_tensor *t) {
    if (!t) return NULL;
    nn__call_ok(); /* every public tensor result passes here: the call succeeded */
    if (!tl_top) return t;
    if (tl_len == tl_cap) {
        size_t ncap = tl_cap ? tl_cap * 2 : 256;
        nn_tensor **n = nn__realloc(tl_tracked, ncap * sizeof *n);
        if (!n) {
            nn__tensor_release(t);
            return NULL;
        }
        tl_tracked = n;
        tl_cap = ncap;
    }
    tl_tracked[tl_len++] = t;
    t->scope_refs++;
    return t;
}

nn_scope *nn_scope_begin(void) {
    nn_scope *s = nn__malloc(sizeof *s);
    if (!s) return NULL;
    nn__handle_set(&s->handle, NN__KIND_SCOPE);
    s->start = tl_len;
    s->parent = tl_top;
    tl_top = s;
    return s;
}

static bool scope_is_open(const nn_scope *s) {
    for (const nn_scope *p = tl_top; p; p = p->parent)
        if (p == s) return true;
    return false;
}

nn_status nn_scope_end(nn_scope *scope) {
    if (!scope) return NN_OK;
    NN__PROF_SPAN(NN__PROF_OTHER, "nn_scope_end", NULL);
    if (!scope_is_open(scope))
        return nn__err(NN_ERR_BAD_HANDLE,
                       "nn_scope_end: scope is not open on this thread (ended twice?)");
    /* Close inner scopes that were left open, then this one. */
    while (tl_top != scope) {
        nn_scope *inner = tl_top;
        tl_top = inner->parent;
        nn__handle_clear(&inner->handle);
        nn__free(inner);
    }
    size_t start = scope->start;
    tl_top = scope->parent;
    nn__handle_clear(&scope->handle);
    nn__free(scope);
    /* Release newest first. */
    while (tl_len > start) {
        nn_tensor *t = tl_tracked[--tl_len];
        t->scope_refs--;
        nn__tensor_release(t);
    }
    if (!tl_top) {
        nn__free(tl_tracked);
        tl_tracked = NULL;
        tl_len = tl_cap = 0;
    }
    /* NN_OK without ending a pending error: nn__compose_end comes here
     * right after a composite op's step failed. */
    return NN_OK;
}

nn_scope *nn__compose_begin(void) { return nn_scope_begin(); }

nn_tensor *nn__compose_end(nn_scope *s, nn_tensor *result) {
    if (result) result->refs++;
    if (!s) {
        /* No scope could be opened: result is untracked already. */
        return result;
    }
    nn_scope_end(s);
    return result;
}
