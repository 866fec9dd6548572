/* Classification metrics and a running mean. Metrics are evaluation only:
 * they read tensors (any layout) and never record autograd nodes. */
#include "nn_internal.h"

#include <math.h>

/* logits f32 [B, C] and labels i64 [B], labels in [0, C). */
static bool check_logits_labels(const nn_tensor *logits, const nn_tensor *labels, const char *fn) {
    if (!nn__check_f32(logits, fn, "logits") || !nn__check_tensor(labels, fn, "labels"))
        return false;
    if (logits->ndim != 2 || logits->shape[1] < 1)
        return nn__err(NN_ERR_SHAPE, "%s: logits must be [B, C] with C >= 1, got ndim %d", fn,
                       logits->ndim) == NN_OK;
    if (labels->dtype != NN_DTYPE_I64 || labels->ndim != 1 || labels->shape[0] != logits->shape[0])
        return nn__err(NN_ERR_SHAPE, "%s: labels must be i64 [%lld], got %s of ndim %d", fn,
                       (long long)logits->shape[0], nn_dtype_name(labels->dtype),
                       labels->ndim) == NN_OK;
    int64_t c = logits->shape[1];
    for (int64_t i = 0; i < labels->numel; i++) {
        double v = nn__get_flat(labels, i);
        if (v < 0 || v >= (double)c)
            return nn__err(NN_ERR_RANGE, "%s: labels[%lld] = %lld outside [0, %lld)", fn,
                           (long long)i, (long long)v, (long long)c) == NN_OK;
    }
    return true;
}

static inline float logit(const nn_tensor *t, int64_t i, int64_t j) {
    return ((const float *)t->storage->data)[t->offset + i * t->strides[0] + j * t->strides[1]];
}

/* Rank of class `label` in row i: how many classes beat it (greater score,
 * or equal score at a lower index, matching first-maximum argmax). */
static int64_t rank_of(const nn_tensor *lg, int64_t i, int64_t label) {
    float s = logit(lg, i, label);
    int64_t r = 0;
    for (int64_t j = 0; j < lg->shape[1]; j++) {
        float v = logit(lg, i, j);
        if (v > s || (v == s && j < label)) r++;
    }
    return r;
}

nn_status nn_topk_accuracy(const nn_tensor *logits, const nn_tensor *labels, int64_t k,
                           double *out) {
    const char *fn = "nn_topk_accuracy";
    if (!nn__check_ptr(out, fn, "out")) return NN_ERR_NULL;
    *out = NAN;
    if (!check_logits_labels(logits, labels, fn)) return nn_last_status();
    if (k < 1 || k > logits->shape[1])
        return nn__err(NN_ERR_INVALID, "%s: k = %lld outside [1, %lld]", fn, (long long)k,
                       (long long)logits->shape[1]);
    int64_t b = logits->shape[0], hits = 0;
    for (int64_t i = 0; i < b; i++)
        if (rank_of(logits, i, (int64_t)nn__get_flat(labels, i)) < k) hits++;
    *out = b > 0 ? (double)hits / (double)b : 0.0;
    return NN_OK;
}

nn_status nn_accuracy(const nn_tensor *logits, const nn_tensor *labels, double *out) {
    if (!nn__check_ptr(out, "nn_accuracy", "out")) return NN_ERR_NULL;
    *out = NAN;
    if (!check_logits_labels(logits, labels, "nn_accuracy")) return nn_last_status();
    return nn_topk_accuracy(logits, labels, 1, out);
}

static int64_t argmax_row(const nn_tensor *lg, int64_t i) {
    int64_t best = 0;
    for (int64_t j = 1; j < lg->shape[1]; j++)
        if (logit(lg, i, j) > logit(lg, i, best)) best = j;
    return best;
}

nn_tensor *nn_confusion_matrix(const nn_tensor *pred, const nn_tensor *labels,
                               int64_t num_classes) {
    const char *fn = "nn_confusion_matrix";
    if (!nn__check_tensor(pred, fn, "pred") || !nn__check_tensor(labels, fn, "labels")) return NULL;
    if (num_classes < 1 || num_classes > (1 << 16))
        return NN__FAIL(NN_ERR_INVALID, "%s: num_classes = %lld outside [1, 65536]", fn,
                        (long long)num_classes);
    bool is_logits = pred->dtype == NN_DTYPE_F32 && pred->ndim == 2;
    if (is_logits && pred->shape[1] != num_classes)
        return NN__FAIL(NN_ERR_SHAPE, "%s: logits have %lld classes, num_classes = %lld", fn,
                        (long long)pred->shape[1], (long long)num_classes);
    if (!is_logits && !(pred->dtype == NN_DTYPE_I64 && pred->ndim == 1))
        return NN__FAIL(NN_ERR_SHAPE, "%s: pred must be logits f32 [B, C] or i64 [B]", fn);
    int64_t b = pred->shape[0];
    if (labels->dtype != NN_DTYPE_I64 || labels->ndim != 1 || labels->shape[0] != b)
        return NN__FAIL(NN_ERR_SHAPE, "%s: labels must be i64 [%lld]", fn, (long long)b);
    int64_t shape[2] = {num_classes, num_classes};
    nn_tensor *cm = nn__zeros(NN_DTYPE_I64, shape, 2);
    if (!cm) return NULL;
    for (int64_t i = 0; i < b; i++) {
        int64_t t = (int64_t)nn__get_flat(labels, i);
        int64_t p = is_logits ? argmax_row(pred, i) : (int64_t)nn__get_flat(pred, i);
        if (t < 0 || t >= num_classes || p < 0 || p >= num_classes) {
            nn__tensor_release(cm);
            return NN__FAIL(NN_ERR_RANGE,
                            "%s: sample %lld has label %lld, prediction %lld outside [0, %lld)", fn,
                            (long long)i, (long long)t, (long long)p, (long long)num_classes);
        }
        nn__i64(cm)[t * num_classes + p]++;
    }
    return nn__track(cm);
}

nn_status nn_precision_recall(const nn_tensor *confusion, double *precision, double *recall,
                              int64_t num_classes) {
    const char *fn = "nn_precision_recall";
    if (!nn__check_tensor(confusion, fn, "confusion")) return nn_last_status();
    if (confusion->ndim != 2 || confusion->shape[0] != num_classes ||
        confusion->shape[1] != num_classes)
        return nn__err(NN_ERR_SHAPE, "%s: confusion must be [%lld, %lld]", fn,
                       (long long)num_classes, (long long)num_classes);
    for (int64_t c = 0; c < num_classes; c++) {
        double tp = nn__get_flat(confusion, c * num_classes + c), col = 0, row = 0;
        for (int64_t k = 0; k < num_classes; k++) {
            col += nn__get_flat(confusion, k * num_classes + c); /* predicted c */
            row += nn__get_flat(confusion, c * num_classes + k); /* truly c */
        }
        if (precision) precision[c] = col > 0 ? tp / col : 0.0;
        if (recall) recall[c] = row > 0 ? tp / row : 0.0;
    }
    return NN_OK;
}

/* ---------------------------------------------------------------- meter */

struct nn_meter {
    nn__handle handle; /* NN__KIND_METER */
    double sum, count;
};
NN__HANDLE_FIRST(struct nn_meter, handle);

static bool check_meter(const nn_meter *m, const char *fn) {
    return nn__handle_check(m, NN__KIND_METER, fn, "m");
}

nn_meter *nn_meter_new(void) {
    nn_meter *m = nn__calloc(1, sizeof *m);
    if (m) nn__handle_set(&m->handle, NN__KIND_METER);
    return m;
}

void nn_meter_free(nn_meter *m) {
    if (!m || !check_meter(m, "nn_meter_free")) return;
    nn__handle_clear(&m->handle);
    nn__free(m);
}

nn_status nn_meter_add(nn_meter *m, double value, double count) {
    if (!check_meter(m, "nn_meter_add")) return nn_last_status();
    if (!(count >= 0) || !isfinite(count))
        return nn__err(NN_ERR_INVALID, "nn_meter_add: count = %g must be finite and >= 0", count);
    m->sum += value * count;
    m->count += count;
    return NN_OK;
}

double nn_meter_mean(const nn_meter *m) {
    if (!check_meter(m, "nn_meter_mean") || m->count == 0) return NAN;
    return m->sum / m->count;
}

double nn_meter_count(const nn_meter *m) {
    return check_meter(m, "nn_meter_count") ? m->count : NAN;
}

nn_status nn_meter_reset(nn_meter *m) {
    if (!check_meter(m, "nn_meter_reset")) return nn_last_status();
    m->sum = m->count = 0;
    return NN_OK;
}
