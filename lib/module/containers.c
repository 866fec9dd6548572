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
