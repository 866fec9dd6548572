/* Post-training int8 quantization (nn.h, "Quantization"): the loops over
 * data around the module side's plan (module/quantized.c): calibration
 * batches from a loader, the report pass on one batch, the conversion. */
#include "module/module_internal.h"
#include "nn.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* The model in eval mode with grad off for the duration of a call. */
typedef struct mode_guard {
    bool training, grad;
} mode_guard;

static mode_guard guard_begin(nn_module *m) {
    mode_guard g = {nn_module_is_training(m), nn_set_grad_enabled(false)};
    nn_module_train(m, false);
    return g;
}

static void guard_end(nn_module *m, mode_guard g) {
    nn_module_train(m, g.training);
    nn_set_grad_enabled(g.grad);
}

/* The model's output on x (untracked copy; NULL on error). */
static nn_tensor *forward_copy(nn_module *m, nn_tensor *x) {
    nn_scope *s = nn_scope_begin();
    if (!s) return NULL;
    nn_tensor *y = nn_module_forward(m, x);
    nn_tensor *c = y ? nn__clone(y) : NULL;
    nn_scope_end(s);
    if (c && c->dtype != NN_DTYPE_F32) {
        nn__err(NN_ERR_DTYPE, "quantize report: the model's output is %s, expected f32",
                nn_dtype_name(c->dtype));
        nn__tensor_release(c);
        return NULL;
    }
    return c;
}

/* Report pass on x, then conversion; *report gets the table. */
static nn_status report_and_convert(nn__qplan *p, nn_module *m, nn_tensor *x, char **report,
                                    const char *fn) {
    nn__quant_mode(p, true);
    nn_tensor *yf = forward_copy(m, x);
    if (!yf) return nn_last_status();
    nn_status st = nn__quant_convert(p, fn);
    nn_tensor *yq = st == NN_OK ? forward_copy(m, x) : NULL;
    if (st == NN_OK && !yq) st = nn_last_status();
    if (st == NN_OK && yq->numel != yf->numel)
        st = nn__err(NN_ERR_SHAPE, "%s: the int8 model's output has %lld elements, the float "
                                   "model's %lld", fn, (long long)yq->numel, (long long)yf->numel);
    if (st == NN_OK) {
        const float *a = nn__f32(yq), *b = nn__f32(yf);
        double err = 0, ref = 0;
        for (int64_t i = 0; i < yf->numel; i++) {
            double d = fabs((double)a[i] - (double)b[i]);
            if (d > err || d != d) err = d;
            if (fabs((double)b[i]) > ref) ref = fabs((double)b[i]);
        }
        char tail[256];
        int len = snprintf(tail, sizeof tail, "%-16s %-16s %-26s %12.4g %12.4g %7.3f%%\n",
                           "(whole model)", "output", "", err, ref, ref > 0 ? 100 * err / ref : 0);
        /* rows: every index but the last (a GPT's logits [B, T, V]: B*T rows) */
        const int64_t cols = yf->ndim >= 2 ? yf->shape[yf->ndim - 1] : 0;
        if (cols > 0 && yf->numel > 0) {
            const int64_t rows = yf->numel / cols;
            int64_t agree = 0;
            for (int64_t r = 0; r < rows; r++) {
                int64_t ia = 0, ib = 0;
                for (int64_t c = 1; c < cols; c++) {
                    if (a[r * cols + c] > a[r * cols + ia]) ia = c;
                    if (b[r * cols + c] > b[r * cols + ib]) ib = c;
                }
                agree += ia == ib;
            }
            snprintf(tail + len, sizeof tail - (size_t)len,
                     "argmax agrees with the float model on %lld of %lld rows (%.2f%%)\n",
                     (long long)agree, (long long)rows, 100.0 * (double)agree / (double)rows);
        }
        *report = nn__quant_report(p, tail);
        if (!*report) st = NN_ERR_NOMEM;
    }
    nn__tensor_release(yf);
    nn__tensor_release(yq);
    return st;
}

nn_status nn_quantize_dynamic(nn_module *model, nn_tensor *calib, char **report) {
    const char *fn = "nn_quantize_dynamic";
    if (report) *report = NULL;
    if (!model) return nn__err_null(fn, "model");
    if (!nn_module_type_name(model)) return nn__forward(fn); /* a freed handle */
    /* a GPT's calibration batch is token ids (i64 [B, T]: its forward checks) */
    if (calib && !(nn__is_gpt(model) ? nn__check_tensor(calib, fn, "calib")
                                     : nn__check_f32(calib, fn, "calib")))
        return nn__forward(fn);
    if (!calib && report)
        return nn__err(NN_ERR_INVALID, "%s: a report needs a calibration batch (calib is NULL)",
                       fn);
    nn__qplan *p = nn__quant_prepare(model, fn);
    if (!p) return nn__forward(fn);
    mode_guard g = guard_begin(model);
    nn_status st = report ? report_and_convert(p, model, calib, report, fn)
                          : nn__quant_convert(p, fn);
    guard_end(model, g);
    nn__quant_free(p);
    return st == NN_OK ? nn__ok() : st;
}

/* An f32 batch of token ids as i64 (untracked), or NULL with NN_ERR_DTYPE
 * when a value is not an integer in [0, 2^24] (f32 holds those exactly;
 * the GPT's forward then checks them against its vocabulary). */
static nn_tensor *token_ids(nn_tensor *x, const char *fn) {
    nn_tensor *xc = nn__contig(x);
    nn_tensor *t = xc ? nn__tensor_new(NN_DTYPE_I64, x->shape, x->ndim) : NULL;
    if (!t) {
        nn__tensor_release(xc);
        return NULL;
    }
    const float *p = nn__f32(xc);
    int64_t *q = nn__i64(t);
    for (int64_t i = 0; i < xc->numel; i++) {
        if (!(p[i] >= 0.0f && p[i] <= 16777216.0f && p[i] == floorf(p[i]))) {
            nn__err(NN_ERR_DTYPE,
                    "%s: loader batch element %lld is %g: a GPT calibrates on token ids "
                    "(integers, i64 or f32)",
                    fn, (long long)i, (double)p[i]);
            nn__tensor_release(xc);
            nn__tensor_release(t);
            return NULL;
        }
        q[i] = (int64_t)p[i];
    }
    nn__tensor_release(xc);
    return t;
}

nn_status nn_quantize_static(nn_module *model, nn_loader *loader, int64_t batches,
                             char **report) {
    const char *fn = "nn_quantize_static";
    if (report) *report = NULL;
    if (!model) return nn__err_null(fn, "model");
    if (!nn_module_type_name(model)) return nn__forward(fn);
    if (!loader) return nn__err_null(fn, "loader");
    if (batches < 1)
        return nn__err(NN_ERR_INVALID, "%s: batches = %lld, expected at least 1", fn,
                       (long long)batches);
    nn_status st = nn_loader_reset(loader);
    if (st != NN_OK) return st;
    nn__qplan *p = nn__quant_prepare(model, fn);
    if (!p) return nn__forward(fn);
    mode_guard g = guard_begin(model);
    nn__quant_mode(p, false);
    nn_tensor *first = NULL, *x, *y;
    int64_t seen = 0;
    /* a GPT's batches are token ids [B, T]: i64, or f32 holding integers
     * (what nn_dataset_from_tensors gives), converted exactly */
    const bool gpt = nn__is_gpt(model);
    while (st == NN_OK && seen < batches && nn_loader_next(loader, &x, &y)) {
        if (!(gpt ? nn__check_tensor(x, fn, "loader batch") : nn__check_f32(x, fn, "loader batch"))) {
            st = nn_last_status();
            break;
        }
        nn_tensor *ids = NULL;
        if (gpt && x->dtype == NN_DTYPE_F32) {
            if (!(ids = token_ids(x, fn))) {
                st = nn_last_status();
                break;
            }
            x = ids;
        }
        if (!first && !(first = nn__clone(x))) st = nn_last_status();
        nn_scope *s = st == NN_OK ? nn_scope_begin() : NULL;
        if (s && !nn_module_forward(model, x)) st = nn_last_status();
        if (s) nn_scope_end(s);
        else if (st == NN_OK) st = nn_last_status();
        nn__tensor_release(ids);
        seen++;
    }
    if (st == NN_OK && nn_loader_status(loader) != NN_OK) st = nn_loader_status(loader);
    if (st == NN_OK && seen == 0)
        st = nn__err(NN_ERR_INVALID, "%s: the loader gave no batch", fn);
    if (st == NN_OK) st = nn__quant_set_static(p, fn);
    if (st == NN_OK)
        st = report ? report_and_convert(p, model, first, report, fn) : nn__quant_convert(p, fn);
    guard_end(model, g);
    nn__quant_free(p);
    nn__tensor_release(first);
    return st == NN_OK ? nn__ok() : st;
}
