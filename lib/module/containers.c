/* Select (one index along a dim, PyTorch's x[:, -1]) and the containers
 * without a forward of their own, ModuleList and ModuleDict; plus the
 * generic child accessors. All are built-in kinds, so nn_model_load rebuilds
 * them from a file with no user code. */
#include "module_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* --------------------------------------------------------------- Select */

enum { SEL_DIM, SEL_INDEX };
static const char *const select_keys[] = {"dim", "index"};
static const double select_defaults[] = {NAN, NAN};

#define SEL_MAX_INDEX 4611686018427387904.0 /* 2^62: any real size fits */

static nn_status select_build(nn_module *m) {
    double d = m->cfg[SEL_DIM], i = m->cfg[SEL_INDEX];
    if (d != floor(d) || d < -NN_MAX_DIMS || d > NN_MAX_DIMS - 1)
        return nn__err(NN_ERR_INVALID, "Select: dim = %g, expected an integer in %d..%d", d,
                       -NN_MAX_DIMS, NN_MAX_DIMS - 1);
    if (i != floor(i) || fabs(i) > SEL_MAX_INDEX)
        return nn__err(NN_ERR_INVALID, "Select: index = %g, expected an integer in -2^62..2^62", i);
    return NN_OK;
}

static nn_tensor *select_forward(nn_module *m, nn_tensor *x) {
    int dim = (int)m->cfg[SEL_DIM], d = dim < 0 ? dim + x->ndim : dim;
    if (d < 0 || d >= x->ndim) {
        char s[128];
        return NN__FAIL(NN_ERR_RANGE, "Select: dim %d is out of range for an input of shape %s",
                        dim, nn__shape_str(x->shape, x->ndim, s, sizeof s));
    }
    int64_t index = (int64_t)m->cfg[SEL_INDEX], len = x->shape[d];
    int64_t i = index < 0 ? index + len : index;
    if (i < 0 || i >= len)
        return NN__FAIL(NN_ERR_RANGE, "Select: index %lld is out of range for dim %d of size %lld",
                        (long long)index, dim, (long long)len);
    return nn_squeeze(nn_slice(x, d, i, i + 1, 1), d);
}

static double select_flops(const nn_module *m, const nn_tensor *in, const nn_tensor *out) {
    (void)m, (void)in, (void)out;
    return 0;
}

const nn__mod_kind nn__kind_select = {.type = "Select",
                                      .nkeys = 2,
                                      .keys = select_keys,
                                      .defaults = select_defaults,
                                      .build = select_build,
                                      .forward = select_forward,
                                      .flops = select_flops};

nn_module *nn_select_new(int dim, int64_t index) {
    if (index < -(int64_t)SEL_MAX_INDEX || index > (int64_t)SEL_MAX_INDEX)
        return NN__FAIL(NN_ERR_INVALID, "nn_select_new: index = %lld, expected -2^62..2^62",
                        (long long)index);
    double v[] = {dim, (double)index};
    return nn__mod_new_kind(&nn__kind_select, v);
}

/* ----------------------------------------------- ModuleList, ModuleDict */

static nn_tensor *no_forward(nn_module *m, nn_tensor *x) {
    (void)x;
    return NN__FAIL(NN_ERR_UNSUPPORTED,
                    "nn_module_forward: a %s has no forward of its own: run its children "
                    "(nn_module_child)",
                    m->kind->type);
}

const nn__mod_kind nn__kind_module_list = {
    .type = "ModuleList", .forward = no_forward, .container = true};
const nn__mod_kind nn__kind_module_dict = {
    .type = "ModuleDict", .forward = no_forward, .container = true};

nn_module *nn_module_list_new(void) { return nn__mod_new_kind(&nn__kind_module_list, NULL); }

nn_module *nn_module_dict_new(void) { return nn__mod_new_kind(&nn__kind_module_dict, NULL); }

/* m is a live module of kind k; else an error naming fn (child released). */
static bool is_kind(nn_module *m, const nn__mod_kind *k, const char *fn, nn_module *child) {
    if (nn__mod_check(m, fn, k == &nn__kind_module_list ? "list" : "dict") && m->kind == k)
        return true;
    if (nn__handle_is(m, NN__KIND_MODULE))
        nn__err(NN_ERR_INVALID, "%s: module is a %s, not a %s", fn, nn_module_type_name(m),
                k->type);
    if (nn__handle_is(child, NN__KIND_MODULE)) nn_module_free(child);
    return false;
}

nn_status nn_module_list_append(nn_module *list, nn_module *child) {
    const char *fn = "nn_module_list_append";
    if (!is_kind(list, &nn__kind_module_list, fn, child)) return nn_last_status();
    char name[24];
    snprintf(name, sizeof name, "%d", list->nchildren);
    return nn__mod_attach(list, name, child, fn);
}

nn_status nn_module_dict_set(nn_module *dict, const char *key, nn_module *child) {
    const char *fn = "nn_module_dict_set";
    if (!is_kind(dict, &nn__kind_module_dict, fn, child)) return nn_last_status();
    return nn__mod_replace_child(dict, key, child, fn);
}

/* ------------------------------------------------------ child accessors */

int64_t nn_module_num_children(const nn_module *m) {
    if (!nn__mod_check(m, "nn_module_num_children", "m")) return -1;
    return m->nchildren;
}

nn_module *nn_module_child(const nn_module *m, int64_t i, const char **name) {
    const char *fn = "nn_module_child";
    if (name) *name = NULL;
    if (!nn__mod_check(m, fn, "m")) return NULL;
    int64_t n = m->nchildren;
    if (i < -n || i >= n)
        return NN__FAIL(NN_ERR_RANGE, "%s: index %lld out of range for %lld children", fn,
                        (long long)i, (long long)n);
    if (i < 0) i += n;
    if (name) *name = m->children[i].name;
    return m->children[i].m;
}

/* ------------------------------------------------------- weight tying */

nn_status nn_module_tie(nn_module *m, const char *dst, const char *src) {
    const char *fn = "nn_module_tie";
    if (!nn__mod_check(m, fn, "m") || !nn__check_ptr(dst, fn, "dst") ||
        !nn__check_ptr(src, fn, "src"))
        return nn_last_status();
    if (!strcmp(dst, src)) return nn__err(NN_ERR_INVALID, "%s: cannot tie '%s' to itself", fn, dst);
    nn_tensor *s = nn_module_get_parameter(m, src);
    if (!s || !nn_module_get_parameter(m, dst)) return nn_last_status();
    /* The module owning dst: everything before the last '.'. */
    const char *dot = strrchr(dst, '.');
    nn_module *owner = m;
    if (dot) {
        size_t len = (size_t)(dot - dst);
        char *path = nn__malloc(len + 1);
        if (!path) return nn_last_status();
        memcpy(path, dst, len);
        path[len] = '\0';
        owner = nn_module_get_module(m, path);
        nn__free(path);
        if (!owner) return nn_last_status();
    }
    return nn__module_tie_own(owner, dot ? dot + 1 : dst, s, fn);
}

/* ------------------------------------------------------------- Residual */

/* y = body(x) + shortcut(x), the identity when there is no shortcut: the
 * skip connection of a ResNet block (the activation after the sum is the
 * next module of a Sequential). Children "body" and, when cfg shortcut is
 * 1, "shortcut"; a model file's children are checked against that. */
enum { RES_SHORTCUT };
static const char *const res_keys[] = {"shortcut"};
static const double res_defaults[] = {0};

static nn_status res_build(nn_module *m) {
    double s = m->cfg[RES_SHORTCUT];
    if (s != 0 && s != 1)
        return nn__err(NN_ERR_INVALID, "Residual: shortcut = %g, expected 0 or 1", s);
    return NN_OK;
}

static nn_module *res_child(const nn_module *m, const char *name) {
    for (int i = 0; i < m->nchildren; i++)
        if (!strcmp(m->children[i].name, name)) return m->children[i].m;
    return NULL;
}

static nn_tensor *res_forward(nn_module *m, nn_tensor *x) {
    nn_module *body = res_child(m, "body"), *sc = res_child(m, "shortcut");
    if (!body)
        return NN__FAIL(NN_ERR_STATE, "Residual: no child 'body' (a damaged model?)");
    nn_tensor *y = nn_module_forward(body, x);
    nn_tensor *s = sc ? nn_module_forward(sc, x) : x;
    if (!y || !s) return NULL;
    if (y->ndim != s->ndim || memcmp(y->shape, s->shape, (size_t)y->ndim * sizeof *y->shape)) {
        char a[128], b[128];
        return NN__FAIL(NN_ERR_SHAPE,
                        "Residual: body gives %s but the %s gives %s (they are added)",
                        nn__shape_str(y->shape, y->ndim, a, sizeof a), sc ? "shortcut" : "input",
                        nn__shape_str(s->shape, s->ndim, b, sizeof b));
    }
    return nn_add(y, s);
}

static nn_status res_check_child(const nn_module *m, const char *name, const nn_module *child) {
    (void)child;
    if (!strcmp(name, "body") || (!strcmp(name, "shortcut") && m->cfg[RES_SHORTCUT] != 0))
        return NN_OK;
    return nn__err(NN_ERR_FORMAT, "Residual: unexpected child '%.64s' (body%s)", name,
                   m->cfg[RES_SHORTCUT] != 0 ? ", shortcut" : "");
}

static nn_status res_check_complete(const nn_module *m) {
    if (!res_child(m, "body")) return nn__err(NN_ERR_FORMAT, "Residual: child 'body' is missing");
    if (m->cfg[RES_SHORTCUT] != 0 && !res_child(m, "shortcut"))
        return nn__err(NN_ERR_FORMAT, "Residual: child 'shortcut' is missing");
    return NN_OK;
}

const nn__mod_kind nn__kind_residual = {.type = "Residual",
                                        .nkeys = 1,
                                        .keys = res_keys,
                                        .defaults = res_defaults,
                                        .build = res_build,
                                        .forward = res_forward,
                                        .container = true,
                                        .check_child = res_check_child,
                                        .check_complete = res_check_complete};

nn_module *nn_residual_new(nn_module *body, nn_module *shortcut) {
    const char *fn = "nn_residual_new";
    bool pending = !shortcut && nn__err_pending(); /* NULL from a failed constructor */
    nn_status st = NN_OK;
    if (!body) st = nn__err_null(fn, "body");
    else if (!nn__mod_check(body, fn, "body")) st = nn_last_status();
    else if (pending) st = nn_last_status();
    else if (shortcut && !nn__mod_check(shortcut, fn, "shortcut")) st = nn_last_status();
    else if (shortcut == body) {
        st = nn__err(NN_ERR_INVALID, "%s: body and shortcut are the same module", fn);
        shortcut = NULL; /* one reference, released once below */
    }
    nn_module *m = NULL;
    if (!st) {
        double v[1] = {shortcut != NULL};
        m = nn__mod_new_kind(&nn__kind_residual, v);
        if (!m) st = nn_last_status();
    }
    if (!st) {
        st = nn__mod_attach(m, "body", body, fn);
        body = NULL;
    }
    if (!st && shortcut) {
        st = nn__mod_attach(m, "shortcut", shortcut, fn);
        shortcut = NULL;
    }
    if (nn__handle_is(body, NN__KIND_MODULE)) nn_module_free(body);
    if (nn__handle_is(shortcut, NN__KIND_MODULE)) nn_module_free(shortcut);
    if (st) {
        nn_module_free(m);
        return NULL;
    }
    return m;
}
