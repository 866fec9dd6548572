/* Internal interface of the data area (datasets, loader, readers). */
#ifndef NN_DATA_INTERNAL_H
#define NN_DATA_INTERNAL_H

#include "nn_internal.h"

struct nn_dataset {
    nn__handle handle; /* NN__KIND_DATASET */
    _Atomic long refs;
    nn_tensor *x;   /* base samples [M, ...], contiguous u8 or f32 (shared by subsets) */
    nn_tensor *y;   /* base labels [M], contiguous i64 (shared) */
    int64_t *index; /* n positions into the base; NULL means identity (n == M) */
    int64_t n;
    int64_t num_classes;
    char **class_names; /* image folders: num_classes names (owned copies) */
    /* transforms */
    bool scale;     /* u8 -> f32 / 255 */
    int64_t norm_n; /* channels normalised (0: off) */
    float *norm_mean, *norm_std;
    double flip_p;
    uint64_t flip_seed;
    int64_t crop_pad;
    uint64_t crop_seed;
    int64_t one_hot; /* classes of one-hot labels (0: off) */
};
NN__HANDLE_FIRST(struct nn_dataset, handle);

/* Check a dataset argument (NULL / freed) like nn__check_tensor. */
bool nn__check_dataset(const nn_dataset *ds, const char *fn);
/* New dataset owning references to x (contiguous u8/f32 [M, ...]) and y
 * (contiguous i64 [M]); the caller's references are stolen (released on
 * failure too). Labels are validated (>= 0). */
nn_dataset *nn__dataset_new(nn_tensor *x, nn_tensor *y, const char *fn);
/* Base row of sample i (0 <= i < n). */
static inline int64_t nn__dataset_row(const nn_dataset *ds, int64_t i) {
    return ds->index ? ds->index[i] : i;
}
/* Build one batch from samples pos[0..b-1] (positions in ds): *x f32
 * [b, ...], *y i64 [b] or one-hot f32 [b, C]; untracked new references.
 * Random transforms are drawn from (seed, epoch, first + j) for sample j, so
 * the result does not depend on which thread builds it. */
nn_status nn__dataset_batch(const nn_dataset *ds, const int64_t *pos, int64_t b, uint64_t epoch,
                            int64_t first, nn_tensor **x, nn_tensor **y);

#endif
