/* nn_fit: the training loop most users would write, with validation,
 * progress, a metrics log and early stopping that keeps the best weights.
 * Built only from the public API (modules, losses, optimizers), inside
 * scopes so every temporary of a step is released at its end. */
#include "nn_internal.h"
#include "train/train_internal.h"

#include <math.h>
#include <stdio.h>
#include <time.h>

#define FN "nn_fit"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Cross-entropy takes i64 labels, or f32 class probabilities (one-hot). */
static nn_tensor *compute_loss(nn_fit_loss kind, nn_tensor *out, nn_tensor *y) {
    if (kind == NN_FIT_LOSS_MSE) return nn_mse_loss(out, y, NN_REDUCTION_MEAN);
    if (y && nn_tensor_dtype(y) == NN_DTYPE_F32)
        return nn_cross_entropy_ex(out, y, NULL, -100, 0.0, NN_REDUCTION_MEAN);
    return nn_cross_entropy(out, y);
}

/* One step on batch (x, y); *loss_value receives the loss. */
static nn_status train_step(nn_module *m, nn_optim *opt, nn_fit_loss kind, nn_tensor *x,
                            nn_tensor *y, double *loss_value) {
    NN__PROF_SPAN(NN__PROF_STEP, "nn_fit train step", NULL);
    nn_scope *s = nn_scope_begin();
    if (!s) return nn_last_status();
    nn_status st = nn_optim_zero_grad(opt);
    nn_tensor *loss = st ? NULL : compute_loss(kind, nn_module_forward(m, x), y);
    if (!st && !loss) st = nn__forward(FN);
    if (!st) st = nn_backward(loss);
    if (!st) st = nn_optim_step(opt);
    if (!st) *loss_value = nn_tensor_item(loss);
    nn_scope_end(s);
    return st;
}

static nn_status train_epoch(nn_module *m, nn_optim *opt, nn_fit_loss kind, nn_loader *train,
                             nn_progress *progress, double *mean_loss) {
    nn_status st = nn_module_train(m, true);
    if (!st) st = nn_loader_reset(train);
    if (st) return st;
    double sum = 0, count = 0;
    int64_t batch = 0;
    nn_tensor *x, *y;
    nn_monitor *mon = nn__fit_monitor();
    while (nn_loader_next(train, &x, &y)) {
        double lv = NAN, t0 = mon ? now_s() : 0;
        if ((st = train_step(m, opt, kind, x, y, &lv))) return st;
        int64_t b = nn_tensor_size(x, 0);
        double dt = mon ? now_s() - t0 : 0;
        if (mon && (st = nn_monitor_record_step(mon, lv, b, dt > 0 ? dt : 1e-9))) return st;
        sum += lv * (double)b;
        count += (double)b;
        if (progress) nn_progress_update(progress, batch, lv, b);
        batch++;
    }
    if ((st = nn_loader_status(train))) return st;
    *mean_loss = count > 0 ? sum / count : NAN;
    return NN_OK;
}

/* Loss and accuracy over val, in eval mode without grad. */
static nn_status evaluate(nn_module *m, nn_fit_loss kind, nn_loader *val, double *val_loss,
                          double *val_acc) {
    nn_status st = nn_module_train(m, false);
    if (!st) st = nn_loader_reset(val);
    if (st) return st;
    bool grad = nn_set_grad_enabled(false);
    double lsum = 0, asum = 0, count = 0;
    bool labels = true;
    nn_tensor *x, *y;
    while (!st && nn_loader_next(val, &x, &y)) {
        nn_scope *s = nn_scope_begin();
        if (!s) {
            st = nn_last_status();
            break;
        }
        nn_tensor *out = nn_module_forward(m, x);
        nn_tensor *loss = compute_loss(kind, out, y);
        double acc = NAN, b = (double)nn_tensor_size(x, 0);
        if (!loss)
            st = nn__forward(FN);
        else
            lsum += nn_tensor_item(loss) * b;
        labels = labels && nn_tensor_dtype(y) == NN_DTYPE_I64 && nn_tensor_ndim(out) == 2;
        if (!st && labels && (st = nn_accuracy(out, y, &acc)) == NN_OK) asum += acc * b;
        count += b;
        nn_scope_end(s);
    }
    nn_set_grad_enabled(grad);
    if (!st) st = nn_loader_status(val);
    if (st) return st;
    *val_loss = count > 0 ? lsum / count : NAN;
    *val_acc = count > 0 && labels ? asum / count : NAN;
    return NN_OK;
}

/* An independent copy of the module's weights (the state dict shares data). */
static nn_statedict *snapshot(nn_module *m) {
    nn_statedict *sd = nn_module_state_dict(m), *copy = nn_statedict_new();
    nn_status st = sd && copy ? NN_OK : NN_ERR_NOMEM;
    for (int64_t i = 0; !st && i < nn_statedict_size(sd); i++) {
        nn_tensor *c = nn__clone(nn_statedict_tensor(sd, i));
        st = c ? nn_statedict_set(copy, nn_statedict_name(sd, i), c) : NN_ERR_NOMEM;
        nn__tensor_release(c);
    }
    nn_statedict_free(sd);
    if (st) {
        nn_statedict_free(copy);
        return NULL;
    }
    return copy;
}

static double current_lr(nn_optim *opt) {
    double lr = NAN;
    if (nn_optim_get(opt, 0, NN_OPTIM_LR, &lr)) nn_clear_error();
    return lr;
}

static nn_status check_args(nn_module *model, nn_optim *opt, nn_fit_loss loss, nn_loader *train,
                            nn_loader *val, int64_t epochs, int64_t patience) {
    if (!nn__check_ptr(model, FN, "model") || !nn__check_ptr(opt, FN, "opt") ||
        !nn__check_ptr(train, FN, "train"))
        return NN_ERR_NULL;
    if (loss != NN_FIT_LOSS_CROSS_ENTROPY && loss != NN_FIT_LOSS_MSE)
        return nn__err(NN_ERR_INVALID, FN ": unknown loss %d", (int)loss);
    if (epochs < 0 || patience < 0)
        return nn__err(NN_ERR_INVALID, FN ": epochs = %lld, patience = %lld must be >= 0",
                       (long long)epochs, (long long)patience);
    if (patience > 0 && !val)
        return nn__err(NN_ERR_INVALID, FN ": early stopping (patience %lld) needs a val loader",
                       (long long)patience);
    return NN_OK;
}

nn_status nn_fit(nn_module *model, nn_optim *opt, nn_fit_loss loss, nn_loader *train,
                 nn_loader *val, int64_t epochs, int64_t patience, nn_progress *progress,
                 nn_metrics_log *log, nn_fit_epoch_fn on_epoch, void *user) {
    nn_status st = check_args(model, opt, loss, train, val, epochs, patience);
    if (st) return st;
    nn_statedict *best = NULL;
    double best_acc = -INFINITY;
    int64_t since_best = 0;
    for (int64_t e = 0; e < epochs && !st; e++) {
        double t0 = now_s(), tl = NAN, vl = NAN, va = NAN;
        if (progress) nn_progress_begin_epoch(progress, e);
        st = train_epoch(model, opt, loss, train, progress, &tl);
        if (!st && val) st = evaluate(model, loss, val, &vl, &va);
        if (st) break;
        double secs = now_s() - t0;
        if (progress) {
            char extra[96];
            snprintf(extra, sizeof extra, "val_loss %.4f  val_acc %.4f", vl, va);
            nn_progress_end_epoch(progress, val ? extra : NULL);
        }
        if (log && (st = nn_metrics_log_write(log, e, tl, vl, va, current_lr(opt), secs))) break;
        nn_monitor *mon = nn__fit_monitor();
        if (mon && (st = nn_monitor_record_epoch(mon, e, tl, vl, va, current_lr(opt), secs))) break;
        bool stop = false;
        if (patience > 0) {
            if (va > best_acc) {
                best_acc = va;
                since_best = 0;
                nn_statedict_free(best);
                if (!(best = snapshot(model))) st = nn_last_status();
            } else {
                stop = ++since_best >= patience;
            }
        }
        if (on_epoch && !st && !on_epoch(e, tl, vl, va, secs, user)) stop = true;
        if (stop) break;
    }
    if (!st && best) st = nn_module_load_state_dict(model, best, true, NULL);
    nn_statedict_free(best);
    return st;
}
