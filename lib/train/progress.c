/* Training utilities: a progress line and a CSV metrics log. */
#include "nn_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct nn_progress {
    nn__handle handle; /* NN__KIND_PROGRESS */
    int fd;
    bool tty;
    int64_t epochs, batches, epoch, last_batch, samples, last_plain;
    double t0, loss_sum, loss_n;
};
NN__HANDLE_FIRST(struct nn_progress, handle);

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static bool check_progress(const nn_progress *p, const char *fn) {
    return nn__handle_check(p, NN__KIND_PROGRESS, fn, "p");
}

nn_progress *nn_progress_new(int fd, int64_t epochs, int64_t batches_per_epoch) {
    if (fd < 0 || epochs < 1 || batches_per_epoch < 0)
        return NN__FAIL(NN_ERR_INVALID, "nn_progress_new: fd = %d, epochs = %lld, batches = %lld",
                        fd, (long long)epochs, (long long)batches_per_epoch);
    nn_progress *p = nn__calloc(1, sizeof *p);
    if (!p) return NULL;
    nn__handle_set(&p->handle, NN__KIND_PROGRESS);
    p->fd = fd;
    p->tty = isatty(fd) == 1;
    p->epochs = epochs;
    p->batches = batches_per_epoch;
    p->t0 = now_s();
    return p;
}

void nn_progress_free(nn_progress *p) {
    if (!p || !check_progress(p, "nn_progress_free")) return;
    nn__handle_clear(&p->handle);
    nn__free(p);
}

nn_status nn_progress_begin_epoch(nn_progress *p, int64_t epoch) {
    if (!check_progress(p, "nn_progress_begin_epoch")) return nn_last_status();
    p->epoch = epoch;
    p->last_batch = -1;
    p->last_plain = -1;
    p->samples = 0;
    p->loss_sum = p->loss_n = 0;
    p->t0 = now_s();
    return NN_OK;
}

/* "epoch 2/10  batch  120/938  loss 0.4312  1234 img/s  ETA 0:42" */
static int format_line(const nn_progress *p, char *buf, size_t cap, double elapsed) {
    double rate = elapsed > 0 ? (double)p->samples / elapsed : 0.0;
    int64_t done = p->last_batch + 1;
    double eta = done > 0 ? elapsed / (double)done * (double)(p->batches - done) : 0.0;
    long eta_s = eta > 0 && eta < 1e9 ? (long)(eta + 0.5) : 0;
    double mean = p->loss_n > 0 ? p->loss_sum / p->loss_n : NAN;
    return snprintf(buf, cap,
                    "epoch %lld/%lld  batch %lld/%lld  loss %.4f  %.0f img/s  ETA %ld:%02ld",
                    (long long)p->epoch + 1, (long long)p->epochs, (long long)done,
                    (long long)p->batches, mean, rate, eta_s / 60, eta_s % 60);
}

nn_status nn_progress_update(nn_progress *p, int64_t batch_index, double loss, int64_t batch_size) {
    if (!check_progress(p, "nn_progress_update")) return nn_last_status();
    if (batch_index < 0 || batch_size < 0)
        return nn__err(NN_ERR_INVALID, "nn_progress_update: batch_index = %lld, batch_size = %lld",
                       (long long)batch_index, (long long)batch_size);
    p->last_batch = batch_index;
    p->samples += batch_size;
    if (isfinite(loss)) {
        p->loss_sum += loss * (double)batch_size;
        p->loss_n += (double)batch_size;
    }
    /* Plain output (logs, pipes): about ten lines per epoch. */
    int64_t step = p->batches >= 10 ? p->batches / 10 : 1;
    bool plain_due = (batch_index + 1) % step == 0 && batch_index != p->last_plain;
    if (!p->tty && !plain_due) return NN_OK;
    char line[256];
    format_line(p, line, sizeof line, now_s() - p->t0);
    if (p->tty)
        dprintf(p->fd, "\r%s\033[K", line);
    else {
        dprintf(p->fd, "%s\n", line);
        p->last_plain = batch_index;
    }
    return NN_OK;
}

nn_status nn_progress_end_epoch(nn_progress *p, const char *extra) {
    if (!check_progress(p, "nn_progress_end_epoch")) return nn_last_status();
    char line[256];
    double elapsed = now_s() - p->t0;
    format_line(p, line, sizeof line, elapsed);
    /* The final line replaces the ETA with the epoch's duration. */
    char *eta = strstr(line, "  ETA");
    if (eta) snprintf(eta, sizeof line - (size_t)(eta - line), "  %.1fs", elapsed);
    dprintf(p->fd, "%s%s%s%s\n", p->tty ? "\r" : "", line, extra ? "  " : "", extra ? extra : "");
    return NN_OK;
}

/* ------------------------------------------------------------ metrics log */

struct nn_metrics_log {
    nn__handle handle; /* NN__KIND_METRICS_LOG */
    FILE *f;
};
NN__HANDLE_FIRST(struct nn_metrics_log, handle);

static bool check_log(const nn_metrics_log *log, const char *fn) {
    return nn__handle_check(log, NN__KIND_METRICS_LOG, fn, "log");
}

nn_metrics_log *nn_metrics_log_open(const char *path) {
    if (!nn__check_ptr(path, "nn_metrics_log_open", "path")) return NULL;
    nn_metrics_log *log = nn__calloc(1, sizeof *log);
    if (!log) return NULL;
    log->f = fopen(path, "w");
    if (!log->f) {
        nn__free(log);
        return NN__FAIL(NN_ERR_IO, "nn_metrics_log_open: cannot create '%s': %s", path,
                        strerror(errno));
    }
    nn__handle_set(&log->handle, NN__KIND_METRICS_LOG);
    if (fputs("epoch,train_loss,val_loss,val_acc,lr,seconds\n", log->f) < 0 || fflush(log->f)) {
        fclose(log->f);
        nn__free(log);
        return NN__FAIL(NN_ERR_IO, "nn_metrics_log_open: cannot write '%s'", path);
    }
    return log;
}

nn_status nn_metrics_log_write(nn_metrics_log *log, int64_t epoch, double train_loss,
                               double val_loss, double val_acc, double lr, double seconds) {
    const char *fn = "nn_metrics_log_write";
    if (!check_log(log, fn)) return nn_last_status();
    /* %.9g round-trips f32 values; NaN prints as "nan" (an unknown value). */
    if (fprintf(log->f, "%lld,%.9g,%.9g,%.9g,%.9g,%.3f\n", (long long)epoch, train_loss, val_loss,
                val_acc, lr, seconds) < 0 ||
        fflush(log->f))
        return nn__err(NN_ERR_IO, "%s: write failed: %s", fn, strerror(errno));
    return NN_OK;
}

nn_status nn_metrics_log_close(nn_metrics_log *log) {
    if (!log) return NN_OK;
    if (!check_log(log, "nn_metrics_log_close")) return nn_last_status();
    nn__handle_clear(&log->handle);
    int rc = fclose(log->f);
    nn__free(log);
    return rc ? nn__err(NN_ERR_IO, "nn_metrics_log_close: flush failed") : NN_OK;
}
