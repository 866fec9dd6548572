/* Broadcasting helpers shared by the elementwise ops and their backward. */
#include "nn_internal.h"

#include <string.h>

bool nn__broadcast_shapes(const int64_t *a, int an, const int64_t *b, int bn, int64_t *out, int *on,
                          const char *fn) {
    int n = an > bn ? an : bn;
    for (int i = 0; i < n; i++) {
        int64_t da = i < n - an ? 1 : a[i - (n - an)];
        int64_t db = i < n - bn ? 1 : b[i - (n - bn)];
        if (da != db && da != 1 && db != 1) {
            char sa[128], sb[128];
            nn__err(NN_ERR_SHAPE, "%s: shapes %s and %s cannot be broadcast (dim %d: %lld vs %lld)",
                    fn, nn__shape_str(a, an, sa, sizeof sa), nn__shape_str(b, bn, sb, sizeof sb), i,
                    (long long)da, (long long)db);
            return false;
        }
        out[i] = da == 1 ? db : da;
    }
    *on = n;
    return true;
}

nn_tensor *nn__sum_to_shape(const nn_tensor *g, const int64_t *shape, int ndim) {
    /* g has the broadcast shape; sum over leading extra dims and over dims
     * where the target has size 1. */
    if (g->ndim == ndim && memcmp(g->shape, shape, sizeof(int64_t) * (size_t)ndim) == 0)
        return nn__clone(g);
    nn_tensor *gc = nn__contig(g);
    if (!gc) return NULL;
    nn_tensor *out = nn__zeros(NN_DTYPE_F32, shape, ndim);
    if (!out) {
        nn__tensor_release(gc);
        return NULL;
    }
    int lead = g->ndim - ndim;
    /* out strides aligned to g's dims (0 where broadcast). */
    int64_t ostr[NN_MAX_DIMS], ocontig[NN_MAX_DIMS];
    nn__contiguous_strides(shape, ndim, ocontig);
    for (int d = 0; d < g->ndim; d++) {
        int od = d - lead;
        ostr[d] = (od < 0 || shape[od] == 1) ? 0 : ocontig[od];
    }
    const float *src = nn__f32(gc);
    float *dst = nn__f32(out);
    int64_t idx[NN_MAX_DIMS] = {0};
    int64_t off = 0;
    int nd = g->ndim;
    for (int64_t i = 0; i < gc->numel; i++) {
        dst[off] += src[i];
        for (int d = nd - 1; d >= 0; d--) {
            idx[d]++;
            off += ostr[d];
            if (idx[d] < g->shape[d]) break;
            off -= ostr[d] * idx[d];
            idx[d] = 0;
        }
    }
    nn__tensor_release(gc);
    return out;
}
