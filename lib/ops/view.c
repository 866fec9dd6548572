/* View ops: reshape, flatten, squeeze, unsqueeze, expand, transpose, permute,
 * slice. Each returns a tensor sharing its input's data (reshape copies when
 * the input is not contiguous). Forward and backward side by side. */
#include "nn_internal.h"

#include <string.h>

/* Backward shared by reshape / flatten / squeeze / unsqueeze: the gradient
 * is the output gradient reshaped to the input's shape. */
static nn_status reshape_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    const nn_tensor *in = nd->inputs[0];
    int64_t str[NN_MAX_DIMS];
    nn__contiguous_strides(in->shape, in->ndim, str);
    gin[0] = nn__view(gout, in->shape, str, in->ndim, gout->offset);
    return gin[0] ? NN_OK : nn__forward(nd->name);
}

/* Make a view of a with the given geometry and record `backward`. */
static nn_tensor *make_view(nn_tensor *a, const int64_t *shape, const int64_t *strides, int ndim,
                            int64_t offset, const char *name, nn_backward_fn backward,
                            nn_node **node) {
    nn_tensor *v = nn__view(a, shape, strides, ndim, offset);
    if (!v) return NULL;
    nn_node *nd;
    if (nn__record(v, name, backward, &a, 1, &nd) != NN_OK) {
        nn__tensor_release(v);
        return NULL;
    }
    if (node) *node = nd;
    return v;
}

static nn_tensor *reshape_impl(nn_tensor *a, const int64_t *shape_in, int ndim, const char *fn) {
    if (ndim < 0 || ndim > NN_MAX_DIMS)
        return NN__FAIL(NN_ERR_LIMIT, "%s: ndim = %d, expected 0..%d", fn, ndim, NN_MAX_DIMS);
    if (ndim > 0 && !shape_in) return NN__FAIL(NN_ERR_NULL, "%s: shape is NULL", fn);
    int64_t shape[NN_MAX_DIMS];
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < ndim; i++) {
        shape[i] = shape_in[i];
        if (shape[i] == -1) {
            if (infer >= 0) return NN__FAIL(NN_ERR_SHAPE, "%s: more than one -1 in the shape", fn);
            infer = i;
        } else if (shape[i] < 0) {
            return NN__FAIL(NN_ERR_SHAPE, "%s: negative size %lld", fn, (long long)shape[i]);
        } else if (__builtin_mul_overflow(known, shape[i], &known)) {
            return NN__FAIL(NN_ERR_OVERFLOW, "%s: shape product overflows", fn);
        }
    }
    if (infer >= 0) {
        if (known == 0 || a->numel % known != 0) {
            char s[128];
            return NN__FAIL(NN_ERR_SHAPE, "%s: cannot infer -1 to reshape %lld elements into %s",
                            fn, (long long)a->numel, nn__shape_str(shape_in, ndim, s, sizeof s));
        }
        shape[infer] = a->numel / known;
        known = a->numel;
    }
    if (known != a->numel) {
        char s1[128], s2[128];
        return NN__FAIL(NN_ERR_SHAPE, "%s: cannot reshape %s (%lld elements) into %s", fn,
                        nn__shape_str(a->shape, a->ndim, s1, sizeof s1), (long long)a->numel,
                        nn__shape_str(shape, ndim, s2, sizeof s2));
    }
    int64_t numel, str[NN_MAX_DIMS];
    if (!nn__shape_numel(shape, ndim, &numel, fn)) return NULL; /* strides must fit too */
    nn__contiguous_strides(shape, ndim, str);
    if (nn__is_contiguous(a))
        return make_view(a, shape, str, ndim, a->offset, fn, reshape_backward, NULL);
    /* Not contiguous: copy, then view the copy; the graph still points at a. */
    nn_tensor *c = nn__clone(a);
    if (!c) return NULL;
    nn_tensor *v = nn__view(c, shape, str, ndim, 0);
    nn__tensor_release(c);
    if (!v) return NULL;
    nn_node *nd;
    if (nn__record(v, fn, reshape_backward, &a, 1, &nd) != NN_OK) {
        nn__tensor_release(v);
        return NULL;
    }
    return v;
}

nn_tensor *nn_reshape(nn_tensor *a, const int64_t *shape, int ndim) {
    NN__PROF_OP("nn_reshape");
    if (!nn__check_tensor(a, "nn_reshape", "a")) return NULL;
    return nn__track(reshape_impl(a, shape, ndim, "nn_reshape"));
}

/* An op, not a tensor method: a copy is a reshape to the same shape, so
 * contiguous(x) is differentiable like clone. */
nn_tensor *nn_tensor_contiguous(nn_tensor *t) {
    NN__PROF_OP("nn_tensor_contiguous");
    if (!nn__check_tensor(t, "nn_tensor_contiguous", "t")) return NULL;
    if (nn__is_contiguous(t)) {
        t->refs++;
        return nn__track(t);
    }
    int64_t shp[NN_MAX_DIMS];
    memcpy(shp, t->shape, sizeof shp);
    return nn__track(reshape_impl(t, shp, t->ndim, "nn_tensor_contiguous"));
}

nn_tensor *nn_flatten(nn_tensor *a, int start_dim, int end_dim) {
    NN__PROF_OP("nn_flatten");
    const char *fn = "nn_flatten";
    if (!nn__check_tensor(a, fn, "a")) return NULL;
    if (a->ndim == 0) {
        int64_t one = 1;
        return nn__track(reshape_impl(a, &one, 1, fn));
    }
    if (!nn__norm_dim(&start_dim, a->ndim, fn) || !nn__norm_dim(&end_dim, a->ndim, fn)) return NULL;
    if (start_dim > end_dim)
        return NN__FAIL(NN_ERR_RANGE, "%s: start_dim %d > end_dim %d", fn, start_dim, end_dim);
    int64_t shape[NN_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < start_dim; i++) shape[n++] = a->shape[i];
    int64_t m = 1;
    for (int i = start_dim; i <= end_dim; i++) m *= a->shape[i];
    shape[n++] = m;
    for (int i = end_dim + 1; i < a->ndim; i++) shape[n++] = a->shape[i];
    return nn__track(reshape_impl(a, shape, n, fn));
}

nn_tensor *nn_squeeze(nn_tensor *a, int dim) {
    NN__PROF_OP("nn_squeeze");
    const char *fn = "nn_squeeze";
    if (!nn__check_tensor(a, fn, "a")) return NULL;
    if (a->ndim == 0)
        return nn__track(make_view(a, NULL, NULL, 0, a->offset, fn, reshape_backward, NULL));
    if (!nn__norm_dim(&dim, a->ndim, fn)) return NULL;
    int64_t shape[NN_MAX_DIMS], str[NN_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < a->ndim; i++) {
        if (i == dim && a->shape[i] == 1) continue;
        shape[n] = a->shape[i];
        str[n++] = a->strides[i];
    }
    return nn__track(make_view(a, shape, str, n, a->offset, fn, reshape_backward, NULL));
}

nn_tensor *nn_unsqueeze(nn_tensor *a, int dim) {
    NN__PROF_OP("nn_unsqueeze");
    const char *fn = "nn_unsqueeze";
    if (!nn__check_tensor(a, fn, "a")) return NULL;
    if (a->ndim >= NN_MAX_DIMS)
        return NN__FAIL(NN_ERR_LIMIT, "%s: tensor already has %d dims", fn, NN_MAX_DIMS);
    if (dim < -(a->ndim + 1) || dim > a->ndim)
        return NN__FAIL(NN_ERR_RANGE, "%s: dim %d out of range for inserting into a %d-d tensor",
                        fn, dim, a->ndim);
    if (dim < 0) dim += a->ndim + 1;
    int64_t shape[NN_MAX_DIMS], str[NN_MAX_DIMS];
    int n = 0;
    for (int i = 0; i <= a->ndim; i++) {
        if (i == dim) {
            shape[n] = 1;
            str[n++] = i < a->ndim ? a->strides[i] * a->shape[i] : 1;
        }
        if (i < a->ndim) {
            shape[n] = a->shape[i];
            str[n++] = a->strides[i];
        }
    }
    return nn__track(make_view(a, shape, str, n, a->offset, fn, reshape_backward, NULL));
}

/* expand: sum the gradient back over the broadcast dims. */
static nn_status expand_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    const nn_tensor *in = nd->inputs[0];
    gin[0] = nn__sum_to_shape(gout, in->shape, in->ndim);
    return gin[0] ? NN_OK : nn__forward(nd->name);
}

nn_tensor *nn_expand(nn_tensor *a, const int64_t *shape_in, int ndim) {
    NN__PROF_OP("nn_expand");
    const char *fn = "nn_expand";
    if (!nn__check_tensor(a, fn, "a")) return NULL;
    if (ndim < a->ndim || ndim > NN_MAX_DIMS)
        return NN__FAIL(NN_ERR_SHAPE, "%s: cannot expand a %d-d tensor to %d dims", fn, a->ndim,
                        ndim);
    if (ndim > 0 && !shape_in) return NN__FAIL(NN_ERR_NULL, "%s: shape is NULL", fn);
    int64_t shape[NN_MAX_DIMS], str[NN_MAX_DIMS];
    int lead = ndim - a->ndim;
    for (int i = 0; i < ndim; i++) {
        int ai = i - lead;
        int64_t want = shape_in[i];
        if (ai < 0) {
            if (want < 0)
                return NN__FAIL(NN_ERR_SHAPE, "%s: -1 not allowed for a new leading dim %d", fn, i);
            shape[i] = want;
            str[i] = 0;
        } else if (want == -1 || want == a->shape[ai]) {
            shape[i] = a->shape[ai];
            str[i] = a->strides[ai];
        } else if (a->shape[ai] == 1 && want >= 0) {
            shape[i] = want;
            str[i] = 0;
        } else {
            char s1[128], s2[128];
            return NN__FAIL(NN_ERR_SHAPE, "%s: cannot expand %s to %s", fn,
                            nn__shape_str(a->shape, a->ndim, s1, sizeof s1),
                            nn__shape_str(shape_in, ndim, s2, sizeof s2));
        }
    }
    return nn__track(make_view(a, shape, str, ndim, a->offset, fn, expand_backward, NULL));
}

/* permute: the gradient is permuted back by the inverse permutation. */
static nn_status permute_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    int nd_ = gout->ndim;
    int64_t shape[NN_MAX_DIMS], str[NN_MAX_DIMS];
    /* out dim i came from input dim perm[i]; so input dim perm[i] = out dim i. */
    for (int i = 0; i < nd_; i++) {
        int src = (int)nd->i[i];
        shape[src] = gout->shape[i];
        str[src] = gout->strides[i];
    }
    nn_tensor *v = nn__view(gout, shape, str, nd_, gout->offset);
    NN__FORWARD_IF(!v, nd->name);
    gin[0] = nn__clone(v);
    nn__tensor_release(v);
    return gin[0] ? NN_OK : nn__forward(nd->name);
}

static nn_tensor *permute_impl(nn_tensor *a, const int *perm, int n, const char *fn) {
    if (n != a->ndim)
        return NN__FAIL(NN_ERR_SHAPE, "%s: permutation of %d dims for a %d-d tensor", fn, n,
                        a->ndim);
    if (n > 0 && !perm) return NN__FAIL(NN_ERR_NULL, "%s: perm is NULL", fn);
    bool seen[NN_MAX_DIMS] = {false};
    int p[NN_MAX_DIMS];
    int64_t shape[NN_MAX_DIMS], str[NN_MAX_DIMS];
    for (int i = 0; i < n; i++) {
        p[i] = perm[i];
        if (!nn__norm_dim(&p[i], n, fn)) return NULL;
        if (seen[p[i]])
            return NN__FAIL(NN_ERR_INVALID, "%s: dim %d appears twice in the permutation", fn,
                            p[i]);
        seen[p[i]] = true;
        shape[i] = a->shape[p[i]];
        str[i] = a->strides[p[i]];
    }
    nn_node *nd = NULL;
    nn_tensor *v = make_view(a, shape, str, n, a->offset, fn, permute_backward, &nd);
    if (v && nd)
        for (int i = 0; i < n; i++) nd->i[i] = p[i];
    return v;
}

nn_tensor *nn_permute(nn_tensor *a, const int *perm, int ndims) {
    NN__PROF_OP("nn_permute");
    if (!nn__check_tensor(a, "nn_permute", "a")) return NULL;
    return nn__track(permute_impl(a, perm, ndims, "nn_permute"));
}

nn_tensor *nn_transpose(nn_tensor *a, int d0, int d1) {
    NN__PROF_OP("nn_transpose");
    const char *fn = "nn_transpose";
    if (!nn__check_tensor(a, fn, "a")) return NULL;
    if (a->ndim == 0) return nn__track(permute_impl(a, NULL, 0, fn));
    if (!nn__norm_dim(&d0, a->ndim, fn) || !nn__norm_dim(&d1, a->ndim, fn)) return NULL;
    int perm[NN_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++) perm[i] = i;
    perm[d0] = d1;
    perm[d1] = d0;
    return nn__track(permute_impl(a, perm, a->ndim, fn));
}

/* slice: scatter the gradient into zeros of the input's shape. */
static nn_status slice_backward(nn_node *nd, nn_tensor *gout, nn_tensor **gin) {
    const nn_tensor *in = nd->inputs[0];
    nn_tensor *z = nn__zeros(NN_DTYPE_F32, in->shape, in->ndim);
    NN__FORWARD_IF(!z, nd->name);
    int dim = (int)nd->i[0];
    int64_t start = nd->i[1], step = nd->i[2];
    int64_t shape[NN_MAX_DIMS], str[NN_MAX_DIMS];
    memcpy(shape, gout->shape, sizeof shape);
    memcpy(str, z->strides, sizeof str);
    str[dim] *= step;
    nn_tensor *v = nn__view(z, shape, str, in->ndim, start * z->strides[dim]);
    if (!v) {
        nn__tensor_release(z);
        return nn__forward(nd->name);
    }
    nn_status st = nn_tensor_copy_from(v, nn__f32(gout), (size_t)gout->numel * sizeof(float));
    nn__tensor_release(v);
    if (st) {
        nn__tensor_release(z);
        return st;
    }
    gin[0] = z;
    return NN_OK;
}

nn_tensor *nn_slice(nn_tensor *a, int dim, int64_t start, int64_t stop, int64_t step) {
    NN__PROF_OP("nn_slice");
    const char *fn = "nn_slice";
    if (!nn__check_tensor(a, fn, "a")) return NULL;
    if (a->ndim == 0) return NN__FAIL(NN_ERR_RANGE, "%s: cannot slice a 0-d tensor", fn);
    if (!nn__norm_dim(&dim, a->ndim, fn)) return NULL;
    if (step < 1)
        return NN__FAIL(NN_ERR_INVALID, "%s: step %lld, expected >= 1", fn, (long long)step);
    int64_t n = a->shape[dim];
    if (start < 0) start += n;
    if (stop < 0) stop += n;
    if (start < 0) start = 0;
    if (start > n) start = n;
    if (stop > n) stop = n;
    if (stop < start) stop = start;
    /* ceil((stop - start) / step) without forming stop - start + step - 1,
     * which overflows for a huge step (0 <= start <= stop <= n here). */
    int64_t len = stop == start ? 0 : (stop - start - 1) / step + 1;
    /* With at most one element the step never moves: use 1, so that neither
     * stride * step here nor the backward's view can overflow. With two or
     * more, step < n and stride * step is a distance inside the tensor. */
    if (len <= 1) step = 1;
    int64_t shape[NN_MAX_DIMS], str[NN_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    memcpy(str, a->strides, sizeof str);
    shape[dim] = len;
    if (__builtin_mul_overflow(a->strides[dim], step, &str[dim]))
        return NN__FAIL(NN_ERR_OVERFLOW, "%s: stride %lld x step %lld overflows", fn,
                        (long long)a->strides[dim], (long long)step);
    nn_node *nd = NULL;
    nn_tensor *v = make_view(a, shape, str, a->ndim, a->offset + start * a->strides[dim], fn,
                             slice_backward, &nd);
    if (v && nd) {
        nd->i[0] = dim;
        nd->i[1] = start;
        nd->i[2] = step;
    }
    return nn__track(v);
}
