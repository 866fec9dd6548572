/* Datasets: in-memory samples, subsets and splits (index views), transforms
 * and the batch builder the loader calls. */
#include "data_internal.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ lifecycle */

bool nn__check_dataset(const nn_dataset *ds, const char *fn) {
    return nn__handle_check(ds, NN__KIND_DATASET, fn, "ds");
}

static bool labels_valid(const nn_tensor *y, int64_t *num_classes, const char *fn) {
    const int64_t *lab = nn__i64(y);
    int64_t mx = -1;
    for (int64_t i = 0; i < y->numel; i++) {
        if (lab[i] < 0) {
            nn__err(NN_ERR_RANGE, "%s: label %lld of sample %lld is negative", fn,
                    (long long)lab[i], (long long)i);
            return false;
        }
        if (lab[i] > mx) mx = lab[i];
    }
    *num_classes = mx + 1;
    return true;
}

nn_dataset *nn__dataset_new(nn_tensor *x, nn_tensor *y, const char *fn) {
    int64_t classes = 0;
    if (!labels_valid(y, &classes, fn)) goto fail;
    nn_dataset *ds = nn__calloc(1, sizeof *ds);
    if (!ds) goto fail;
    nn__handle_set(&ds->handle, NN__KIND_DATASET);
    ds->refs = 1;
    ds->x = x;
    ds->y = y;
    nn__tensor_mem_tag(x, NN_MEM_DATA);
    nn__tensor_mem_tag(y, NN_MEM_DATA);
    ds->n = x->shape[0];
    ds->num_classes = classes;
    ds->scale = x->dtype == NN_DTYPE_U8;
    return ds;
fail:
    nn__tensor_release(x);
    nn__tensor_release(y);
    return NULL;
}

nn_dataset *nn_dataset_from_tensors(nn_tensor *x, nn_tensor *y) {
    const char *fn = "nn_dataset_from_tensors";
    if (!nn__check_tensor(x, fn, "x")) return NULL;
    if (y && !nn__check_tensor(y, fn, "y")) return NULL;
    if (x->dtype != NN_DTYPE_U8 && x->dtype != NN_DTYPE_F32)
        return NN__FAIL(NN_ERR_DTYPE, "%s: x has dtype %s, expected u8 or f32", fn,
                        nn_dtype_name(x->dtype));
    if (x->ndim < 1) return NN__FAIL(NN_ERR_SHAPE, "%s: x must have a sample dim [N, ...]", fn);
    if (y && (y->dtype != NN_DTYPE_I64 || y->ndim != 1 || y->shape[0] != x->shape[0]))
        return NN__FAIL(NN_ERR_SHAPE, "%s: y must be i64 [%lld], got %s of ndim %d", fn,
                        (long long)x->shape[0], nn_dtype_name(y->dtype), y->ndim);
    nn_tensor *xc = nn__contig(x);
    nn_tensor *yc = y ? nn__contig(y) : nn__zeros(NN_DTYPE_I64, x->shape, 1);
    if (!xc || !yc) {
        nn__tensor_release(xc);
        nn__tensor_release(yc);
        return NULL;
    }
    return nn__dataset_new(xc, yc, fn);
}

nn_dataset *nn_dataset_retain(nn_dataset *ds) {
    if (!nn__check_dataset(ds, "nn_dataset_retain")) return NULL;
    ds->refs++;
    return ds;
}

void nn_dataset_free(nn_dataset *ds) {
    if (!ds) return;
    if (!nn__check_dataset(ds, "nn_dataset_free")) return;
    if (--ds->refs > 0) return;
    nn__handle_clear(&ds->handle);
    nn__tensor_release(ds->x);
    nn__tensor_release(ds->y);
    nn__free(ds->index);
    if (ds->class_names)
        for (int64_t i = 0; i < ds->num_classes; i++) nn__free(ds->class_names[i]);
    nn__free(ds->class_names);
    nn__free(ds->norm_mean);
    nn__free(ds->norm_std);
    nn__free(ds);
}

/* -------------------------------------------------------------- getters */

int64_t nn_dataset_len(const nn_dataset *ds) {
    return nn__check_dataset(ds, "nn_dataset_len") ? ds->n : -1;
}

int nn_dataset_sample_shape(const nn_dataset *ds, int64_t *shape, int cap) {
    if (!nn__check_dataset(ds, "nn_dataset_sample_shape")) return -1;
    int nd = ds->x->ndim - 1;
    if (cap > 0 && !nn__check_ptr(shape, "nn_dataset_sample_shape", "shape")) return -1;
    for (int i = 0; i < nd && i < cap; i++) shape[i] = ds->x->shape[i + 1];
    return nd;
}

int64_t nn_dataset_num_classes(const nn_dataset *ds) {
    return nn__check_dataset(ds, "nn_dataset_num_classes") ? ds->num_classes : -1;
}

const char *nn_dataset_class_name(const nn_dataset *ds, int64_t i) {
    if (!nn__check_dataset(ds, "nn_dataset_class_name")) return NULL;
    if (!ds->class_names || i < 0 || i >= ds->num_classes)
        return NN__FAIL(NN_ERR_NOT_FOUND, "nn_dataset_class_name: no name for class %lld",
                        (long long)i);
    return ds->class_names[i];
}

int64_t nn_dataset_label(const nn_dataset *ds, int64_t i) {
    if (!nn__check_dataset(ds, "nn_dataset_label")) return -1;
    if (i < 0 || i >= ds->n) {
        nn__err(NN_ERR_RANGE, "nn_dataset_label: index %lld outside [0, %lld)", (long long)i,
                (long long)ds->n);
        return -1;
    }
    return nn__i64(ds->y)[nn__dataset_row(ds, i)];
}

nn_status nn_dataset_get(const nn_dataset *ds, int64_t i, nn_tensor **x, nn_tensor **y) {
    const char *fn = "nn_dataset_get";
    if (!nn__check_dataset(ds, fn)) return nn_last_status();
    if (!nn__check_ptr(x, fn, "x") || !nn__check_ptr(y, fn, "y")) return NN_ERR_NULL;
    *x = *y = NULL;
    if (i < 0 || i >= ds->n)
        return nn__err(NN_ERR_RANGE, "%s: index %lld outside [0, %lld)", fn, (long long)i,
                       (long long)ds->n);
    nn_tensor *bx, *by;
    nn_status st = nn__dataset_batch(ds, &i, 1, 0, 0, &bx, &by);
    if (st) return st;
    *x = nn__track(bx);
    *y = nn__track(by);
    if (!*x || !*y) {
        if (*x) nn_tensor_free(*x);
        if (*y) nn_tensor_free(*y);
        *x = *y = NULL;
        return NN_ERR_NOMEM;
    }
    return NN_OK;
}

/* ------------------------------------------------------ subsets, splits */

/* A view over the same base tensors with positions `pos` of ds. */
static nn_dataset *subset_of(nn_dataset *ds, const int64_t *pos, int64_t n) {
    nn_dataset *s = nn__calloc(1, sizeof *s);
    if (!s) return NULL;
    *s = *ds; /* transforms and geometry; pointers are replaced below */
    s->refs = 1;
    s->index = NULL;
    s->class_names = NULL;
    s->norm_mean = s->norm_std = NULL;
    s->n = n;
    s->index = nn__calloc(n > 0 ? (size_t)n : 1, sizeof(int64_t));
    if (!s->index) goto fail;
    for (int64_t i = 0; i < n; i++) s->index[i] = nn__dataset_row(ds, pos[i]);
    if (ds->norm_n > 0) {
        s->norm_mean = nn__calloc((size_t)ds->norm_n, sizeof(float));
        s->norm_std = nn__calloc((size_t)ds->norm_n, sizeof(float));
        if (!s->norm_mean || !s->norm_std) goto fail;
        memcpy(s->norm_mean, ds->norm_mean, sizeof(float) * (size_t)ds->norm_n);
        memcpy(s->norm_std, ds->norm_std, sizeof(float) * (size_t)ds->norm_n);
    }
    if (ds->class_names) {
        s->class_names = nn__calloc((size_t)ds->num_classes, sizeof(char *));
        if (!s->class_names) goto fail;
        for (int64_t c = 0; c < ds->num_classes; c++)
            if (!(s->class_names[c] = nn__strdup(ds->class_names[c]))) goto fail;
    }
    nn__tensor_retain(s->x);
    nn__tensor_retain(s->y);
    return s;
fail:
    s->x = s->y = NULL; /* not yet retained */
    nn__handle_set(&s->handle, NN__KIND_DATASET);
    s->refs = 1;
    nn_dataset_free(s);
    return NULL;
}

nn_dataset *nn_dataset_subset(nn_dataset *ds, const int64_t *indices, int64_t n) {
    const char *fn = "nn_dataset_subset";
    if (!nn__check_dataset(ds, fn)) return NULL;
    if (n < 0) return NN__FAIL(NN_ERR_INVALID, "%s: n = %lld is negative", fn, (long long)n);
    if (n > 0 && !nn__check_ptr(indices, fn, "indices")) return NULL;
    for (int64_t i = 0; i < n; i++)
        if (indices[i] < 0 || indices[i] >= ds->n)
            return NN__FAIL(NN_ERR_RANGE, "%s: indices[%lld] = %lld outside [0, %lld)", fn,
                            (long long)i, (long long)indices[i], (long long)ds->n);
    return subset_of(ds, indices, n);
}

/* Part sizes: floor(f * len); if the fractions sum to 1, spread the rest. */
static nn_status split_sizes(const double *fr, int n, int64_t len, int64_t *sizes) {
    double sum = 0;
    for (int i = 0; i < n; i++) {
        if (!(fr[i] >= 0.0 && fr[i] <= 1.0))
            return nn__err(NN_ERR_INVALID, "nn_dataset_split: fractions[%d] = %g outside [0, 1]", i,
                           fr[i]);
        sum += fr[i];
    }
    if (sum > 1.0 + 1e-9)
        return nn__err(NN_ERR_INVALID, "nn_dataset_split: fractions sum to %g > 1", sum);
    int64_t used = 0;
    for (int i = 0; i < n; i++) {
        sizes[i] = (int64_t)floor(fr[i] * (double)len);
        used += sizes[i];
    }
    if (fabs(sum - 1.0) <= 1e-9)
        for (int i = 0; used < len; i = (i + 1) % n, used++) sizes[i]++;
    return NN_OK;
}

nn_status nn_dataset_split(nn_dataset *ds, const double *fractions, int n, uint64_t seed,
                           nn_dataset **out) {
    const char *fn = "nn_dataset_split";
    if (!nn__check_dataset(ds, fn)) return nn_last_status();
    if (!nn__check_ptr(fractions, fn, "fractions") || !nn__check_ptr(out, fn, "out"))
        return NN_ERR_NULL;
    if (n < 1 || n > 1024) return nn__err(NN_ERR_INVALID, "%s: n = %d outside [1, 1024]", fn, n);
    for (int i = 0; i < n; i++) out[i] = NULL;
    int64_t sizes[1024];
    nn_status st = split_sizes(fractions, n, ds->n, sizes);
    if (st) return st;
    int64_t *perm = nn__calloc(ds->n > 0 ? (size_t)ds->n : 1, sizeof(int64_t));
    if (!perm) return NN_ERR_NOMEM;
    /* Fisher-Yates with a private generator: the split depends only on seed. */
    nn_generator g = {.handle = NN__HANDLE_INIT(NN__KIND_GENERATOR)};
    nn_generator_seed(&g, seed);
    for (int64_t i = 0; i < ds->n; i++) perm[i] = i;
    for (int64_t i = ds->n - 1; i > 0; i--) {
        int64_t j = (int64_t)nn__gen_below(&g, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        out[i] = subset_of(ds, perm + at, sizes[i]);
        if (!out[i]) {
            for (int k = 0; k < i; k++) {
                nn_dataset_free(out[k]);
                out[k] = NULL;
            }
            nn__free(perm);
            return NN_ERR_NOMEM;
        }
        at += sizes[i];
    }
    nn__free(perm);
    return NN_OK;
}

/* ----------------------------------------------------------- transforms */

/* Normalisation channels of a sample: [C,H,W,...] -> C, [H,W] -> 1,
 * [F] -> F, scalar -> 1. */
static int64_t sample_channels(const nn_dataset *ds) {
    int nd = ds->x->ndim - 1;
    if (nd == 1) return ds->x->shape[1];
    if (nd >= 3) return ds->x->shape[1];
    return 1;
}

nn_status nn_dataset_set_scale(nn_dataset *ds, bool on) {
    if (!nn__check_dataset(ds, "nn_dataset_set_scale")) return nn_last_status();
    ds->scale = on;
    return NN_OK;
}

nn_status nn_dataset_set_normalize(nn_dataset *ds, const float *mean, const float *std, int64_t n) {
    const char *fn = "nn_dataset_set_normalize";
    if (!nn__check_dataset(ds, fn)) return nn_last_status();
    if (n == 0) {
        ds->norm_n = 0;
        return NN_OK;
    }
    if (!nn__check_ptr(mean, fn, "mean") || !nn__check_ptr(std, fn, "std")) return NN_ERR_NULL;
    int64_t c = sample_channels(ds);
    if (n != c)
        return nn__err(NN_ERR_SHAPE, "%s: n = %lld but samples have %lld channels", fn,
                       (long long)n, (long long)c);
    for (int64_t i = 0; i < n; i++)
        if (!(std[i] > 0.0f) || !isfinite(mean[i]) || !isfinite(std[i]))
            return nn__err(NN_ERR_INVALID, "%s: channel %lld has mean %g std %g (std must be > 0)",
                           fn, (long long)i, mean[i], std[i]);
    float *m = nn__calloc((size_t)n, sizeof(float));
    float *s = nn__calloc((size_t)n, sizeof(float));
    if (!m || !s) {
        nn__free(m);
        nn__free(s);
        return NN_ERR_NOMEM;
    }
    memcpy(m, mean, sizeof(float) * (size_t)n);
    memcpy(s, std, sizeof(float) * (size_t)n);
    nn__free(ds->norm_mean);
    nn__free(ds->norm_std);
    ds->norm_mean = m;
    ds->norm_std = s;
    ds->norm_n = n;
    return NN_OK;
}

/* Sample geometry. Channel of element e is e / per_channel in every case:
 * [C,H,W,...] -> runs of H*W*..., [F] -> runs of 1, [H,W] / scalar -> one run. */
typedef struct geom {
    int nd;
    int64_t snumel, planes, h, w, channels, per_channel;
} geom;

static geom sample_geom(const nn_dataset *ds) {
    geom g = {.nd = ds->x->ndim - 1, .snumel = 1};
    for (int i = 1; i < ds->x->ndim; i++) g.snumel *= ds->x->shape[i];
    g.h = g.nd >= 2 ? ds->x->shape[ds->x->ndim - 2] : 1;
    g.w = g.nd >= 2 ? ds->x->shape[ds->x->ndim - 1] : 1;
    g.planes = (g.h * g.w) > 0 ? g.snumel / (g.h * g.w) : 0;
    g.channels = sample_channels(ds);
    g.per_channel = g.channels > 0 ? g.snumel / g.channels : 0;
    return g;
}

/* Per-channel sum and count of values (after scale), and the sum of squared
 * deviations from mean[] when mean != NULL. u8 data goes through 256-bin
 * histograms (exact, one pass over the bytes); f32 is summed in double. */
static nn_status channel_moments(const nn_dataset *ds, const geom *g, const double *mean,
                                 double *acc) {
    int64_t C = g->channels, run = g->per_channel;
    double scale = ds->x->dtype == NN_DTYPE_U8 && ds->scale ? 1.0 / 255.0 : 1.0;
    if (ds->x->dtype == NN_DTYPE_U8) {
        int64_t *hist = nn__calloc((size_t)C * 256, sizeof(int64_t));
        if (!hist) return NN_ERR_NOMEM;
        for (int64_t i = 0; i < ds->n; i++) {
            const uint8_t *src = nn__u8(ds->x) + nn__dataset_row(ds, i) * g->snumel;
            for (int64_t c = 0; c < C; c++)
                for (int64_t e = 0; e < run; e++) hist[c * 256 + src[c * run + e]]++;
        }
        for (int64_t c = 0; c < C; c++)
            for (int v = 0; v < 256; v++) {
                double x = v * scale, cnt = (double)hist[c * 256 + v];
                acc[c] += mean ? (x - mean[c]) * (x - mean[c]) * cnt : x * cnt;
            }
        nn__free(hist);
        return NN_OK;
    }
    for (int64_t i = 0; i < ds->n; i++) {
        const float *src = nn__f32(ds->x) + nn__dataset_row(ds, i) * g->snumel;
        for (int64_t c = 0; c < C; c++)
            for (int64_t e = 0; e < run; e++) {
                double x = src[c * run + e];
                acc[c] += mean ? (x - mean[c]) * (x - mean[c]) : x;
            }
    }
    return NN_OK;
}

nn_status nn_dataset_compute_normalize(nn_dataset *ds) {
    const char *fn = "nn_dataset_compute_normalize";
    if (!nn__check_dataset(ds, fn)) return nn_last_status();
    if (ds->n == 0) return nn__err(NN_ERR_STATE, "%s: the dataset is empty", fn);
    geom g = sample_geom(ds);
    int64_t c = g.channels;
    if (c < 1 || g.per_channel < 1)
        return nn__err(NN_ERR_SHAPE, "%s: samples have no elements", fn);
    double *acc = nn__calloc((size_t)c * 2, sizeof(double));
    float *m = nn__calloc((size_t)c, sizeof(float)), *s = nn__calloc((size_t)c, sizeof(float));
    nn_status st = acc && m && s ? NN_OK : NN_ERR_NOMEM;
    double count = (double)ds->n * (double)g.per_channel;
    /* Two passes (mean, then squared deviations) for accuracy on large N. */
    if (!st) st = channel_moments(ds, &g, NULL, acc);
    for (int64_t k = 0; !st && k < c; k++) acc[k] /= count;
    if (!st) st = channel_moments(ds, &g, acc, acc + c);
    for (int64_t k = 0; !st && k < c; k++) {
        m[k] = (float)acc[k];
        double sd = sqrt(acc[c + k] / count);
        s[k] = sd > 1e-12 ? (float)sd : 1.0f; /* a constant channel is left unscaled */
    }
    if (!st) st = nn_dataset_set_normalize(ds, m, s, c);
    nn__free(acc);
    nn__free(m);
    nn__free(s);
    return st;
}

int64_t nn_dataset_get_normalize(const nn_dataset *ds, float *mean, float *std, int64_t cap) {
    if (!nn__check_dataset(ds, "nn_dataset_get_normalize")) return -1;
    for (int64_t i = 0; i < ds->norm_n && i < cap; i++) {
        if (mean) mean[i] = ds->norm_mean[i];
        if (std) std[i] = ds->norm_std[i];
    }
    return ds->norm_n;
}

static nn_status need_image(const nn_dataset *ds, const char *fn) {
    if (ds->x->ndim - 1 < 2)
        return nn__err(NN_ERR_SHAPE, "%s: needs image samples [C, H, W] or [H, W], got ndim %d", fn,
                       ds->x->ndim - 1);
    return NN_OK;
}

nn_status nn_dataset_set_random_flip(nn_dataset *ds, double p, uint64_t seed) {
    const char *fn = "nn_dataset_set_random_flip";
    if (!nn__check_dataset(ds, fn)) return nn_last_status();
    if (!(p >= 0.0 && p <= 1.0)) return nn__err(NN_ERR_INVALID, "%s: p = %g outside [0, 1]", fn, p);
    if (p > 0.0 && need_image(ds, fn)) return nn_last_status();
    ds->flip_p = p;
    ds->flip_seed = seed;
    return NN_OK;
}

nn_status nn_dataset_set_random_crop(nn_dataset *ds, int64_t padding, uint64_t seed) {
    const char *fn = "nn_dataset_set_random_crop";
    if (!nn__check_dataset(ds, fn)) return nn_last_status();
    if (padding < 0 || padding > 4096)
        return nn__err(NN_ERR_INVALID, "%s: padding = %lld outside [0, 4096]", fn,
                       (long long)padding);
    if (padding > 0 && need_image(ds, fn)) return nn_last_status();
    ds->crop_pad = padding;
    ds->crop_seed = seed;
    return NN_OK;
}

nn_status nn_dataset_set_one_hot(nn_dataset *ds, int64_t num_classes) {
    const char *fn = "nn_dataset_set_one_hot";
    if (!nn__check_dataset(ds, fn)) return nn_last_status();
    if (num_classes < 0 || num_classes > (1 << 24))
        return nn__err(NN_ERR_INVALID, "%s: num_classes = %lld outside [0, 2^24]", fn,
                       (long long)num_classes);
    ds->one_hot = num_classes;
    return NN_OK;
}

/* ------------------------------------------------------- batch building */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A uniform double in [0,1) that depends only on (seed, epoch, position). */
static double draw(uint64_t seed, uint64_t epoch, int64_t pos, uint64_t salt) {
    uint64_t h = mix64(seed ^ 0x9e3779b97f4a7c15ULL);
    h = mix64(h ^ (epoch * 0xd1b54a32d192ed03ULL));
    h = mix64(h ^ ((uint64_t)pos * 0xabc98388fb8fac03ULL) ^ salt);
    return (double)(h >> 11) * 0x1.0p-53;
}

/* Sample row of the base tensor as floats (scaled u8 or a copy of f32). */
static void convert_row(const nn_dataset *ds, const geom *g, int64_t row, float *dst) {
    if (ds->x->dtype == NN_DTYPE_F32) {
        memcpy(dst, nn__f32(ds->x) + row * g->snumel, sizeof(float) * (size_t)g->snumel);
        return;
    }
    const uint8_t *src = nn__u8(ds->x) + row * g->snumel;
    if (ds->scale)
        for (int64_t e = 0; e < g->snumel; e++) dst[e] = (float)src[e] / 255.0f;
    else
        for (int64_t e = 0; e < g->snumel; e++) dst[e] = (float)src[e];
}

/* out(i, j) = padded(i + dy, j' + dx) with j' = flip ? W-1-j : j and zero
 * padding of p on every side; src and dst are [planes, H, W]. */
static void crop_flip(const geom *g, const float *src, int64_t p, int64_t dy, int64_t dx, bool flip,
                      float *dst) {
    for (int64_t c = 0; c < g->planes; c++)
        for (int64_t i = 0; i < g->h; i++) {
            int64_t si = i + dy - p;
            float *out = dst + (c * g->h + i) * g->w;
            if (si < 0 || si >= g->h) {
                memset(out, 0, sizeof(float) * (size_t)g->w);
                continue;
            }
            const float *in = src + (c * g->h + si) * g->w;
            for (int64_t j = 0; j < g->w; j++) {
                int64_t sj = (flip ? g->w - 1 - j : j) + dx - p;
                out[j] = sj >= 0 && sj < g->w ? in[sj] : 0.0f;
            }
        }
}

/* One sample into dst (snumel floats): scale, crop, flip, normalize.
 * scratch holds snumel floats for the crop/flip source. */
static void build_sample(const nn_dataset *ds, const geom *g, int64_t row, uint64_t epoch,
                         int64_t pos, float *scratch, float *dst) {
    int64_t dy = 0, dx = 0, p = ds->crop_pad;
    bool flip = false;
    if (p > 0) {
        dy = (int64_t)(draw(ds->crop_seed, epoch, pos, 1) * (double)(2 * p + 1));
        dx = (int64_t)(draw(ds->crop_seed, epoch, pos, 2) * (double)(2 * p + 1));
    }
    if (ds->flip_p > 0.0) flip = draw(ds->flip_seed, epoch, pos, 3) < ds->flip_p;
    if (p == 0 && !flip) {
        convert_row(ds, g, row, dst);
    } else {
        convert_row(ds, g, row, scratch);
        crop_flip(g, scratch, p, dy, dx, flip, dst);
    }
    if (ds->norm_n > 0)
        for (int64_t c = 0; c < g->channels; c++) {
            float m = ds->norm_mean[c], sd = ds->norm_std[c];
            float *v = dst + c * g->per_channel;
            for (int64_t e = 0; e < g->per_channel; e++) v[e] = (v[e] - m) / sd;
        }
}

static nn_tensor *build_labels(const nn_dataset *ds, const int64_t *pos, int64_t b) {
    const int64_t *lab = nn__i64(ds->y);
    if (ds->one_hot == 0) {
        nn_tensor *y = nn__tensor_new(NN_DTYPE_I64, &b, 1);
        if (y)
            for (int64_t j = 0; j < b; j++) nn__i64(y)[j] = lab[nn__dataset_row(ds, pos[j])];
        return y;
    }
    int64_t shape[2] = {b, ds->one_hot};
    nn_tensor *y = nn__zeros(NN_DTYPE_F32, shape, 2);
    if (!y) return NULL;
    for (int64_t j = 0; j < b; j++) {
        int64_t c = lab[nn__dataset_row(ds, pos[j])];
        if (c >= ds->one_hot) {
            nn__tensor_release(y);
            return NN__FAIL(NN_ERR_RANGE, "nn_loader_next: label %lld >= one-hot classes %lld",
                            (long long)c, (long long)ds->one_hot);
        }
        nn__f32(y)[j * ds->one_hot + c] = 1.0f;
    }
    return y;
}

nn_status nn__dataset_batch(const nn_dataset *ds, const int64_t *pos, int64_t b, uint64_t epoch,
                            int64_t first, nn_tensor **x, nn_tensor **y) {
    *x = *y = NULL;
    geom g = sample_geom(ds);
    int64_t shape[NN_MAX_DIMS];
    shape[0] = b;
    for (int i = 1; i < ds->x->ndim; i++) shape[i] = ds->x->shape[i];
    nn_tensor *bx = nn__tensor_new(NN_DTYPE_F32, shape, ds->x->ndim);
    if (!bx) return nn_last_status();
    float *scratch = NULL;
    if ((ds->crop_pad > 0 || ds->flip_p > 0.0) &&
        !(scratch = nn__calloc((size_t)g.snumel, sizeof(float)))) {
        nn__tensor_release(bx);
        return NN_ERR_NOMEM;
    }
    for (int64_t j = 0; j < b; j++)
        build_sample(ds, &g, nn__dataset_row(ds, pos[j]), epoch, first + j, scratch,
                     nn__f32(bx) + j * g.snumel);
    nn__free(scratch);
    nn_tensor *by = build_labels(ds, pos, b);
    if (!by) {
        nn__tensor_release(bx);
        return nn_last_status();
    }
    *x = bx;
    *y = by;
    return NN_OK;
}
