/* Section of nn.h (merged into nn.h before release). Include <nn.h>, not this. */
#ifndef NN_PART_DATA_H
#define NN_PART_DATA_H
#ifndef NN_H
#error "include <nn.h> instead"
#endif

/* ====================================================================== */
/*  Datasets                                                              */
/* ====================================================================== */
/*
 * A dataset is an indexed collection of samples (x, y): x is a tensor of a
 * fixed sample shape (u8 or f32 in memory), y an integer class label. The
 * loader turns samples into f32 batches, applying the dataset's transforms.
 *
 * Ownership: datasets are reference-counted. Each constructor returns a new
 * reference released with nn_dataset_free (NULL-safe). Subsets, splits and
 * loaders hold their own references to the samples, so freeing order never
 * matters. Subsets share the samples (no copy) and start with a copy of the
 * parent's transform settings; changing one afterwards does not affect the
 * other.
 *
 * Threads: a dataset may be read by many loaders (and their workers) at
 * once; do not change its transforms while a loader over it is mid-epoch.
 */

/* Dataset over in-memory tensors: x [N, ...] (u8 or f32), y [N] (i64 labels,
 * >= 0; NULL gives all-zero labels). The dataset keeps references (x and y
 * are made contiguous; contiguous inputs are shared, not copied). */
NN_API nn_dataset *nn_dataset_from_tensors(nn_tensor *x, nn_tensor *y);

/* MNIST / Fashion-MNIST IDX files (gzip or plain, detected by magic): images
 * u8 [N, 1, rows, cols] kept as u8, labels as i64 [N]. Every header field is
 * checked; errors: NN_ERR_IO (open/read), NN_ERR_FORMAT (magic, ndim, count
 * mismatch, trailing bytes, corrupt gzip), NN_ERR_UNSUPPORTED (an IDX dtype
 * other than u8), NN_ERR_OVERFLOW (dims product), NN_ERR_TRUNCATED. */
NN_API nn_dataset *nn_dataset_from_idx(const char *images_path, const char *labels_path);

/* What the CSV reader does with an empty or non-numeric cell. */
typedef enum nn_csv_policy {
    NN_CSV_POLICY_ERROR = 0, /* fail with NN_ERR_FORMAT naming line and column */
    NN_CSV_POLICY_DROP = 1,  /* skip the row */
    NN_CSV_POLICY_FILL = 2   /* use fill_value for a bad feature cell (a bad label still fails) */
} nn_csv_policy;

/* Numeric CSV (no quoting; blank lines skipped): x f32 [N, F] (every column but the label), y i64 [N] from
 * column label_column when has_label (integral, >= 0), else zeros. Rows with
 * a different field count fail (NN_ERR_FORMAT). n_dropped / n_filled (may be
 * NULL) receive how many rows were dropped and how many kept rows had
 * cells filled. */
NN_API nn_dataset *nn_dataset_from_csv(const char *path, bool header, char delimiter,
                                       bool has_label, int32_t label_column,
                                       nn_csv_policy policy, double fill_value,
                                       int64_t *n_dropped, int64_t *n_filled);

/* Image folder: root/<class>/<image>.png|.jpg|.jpeg, classes in sorted name
 * order, files sorted; each image decoded, converted to RGB (channels 3) or
 * gray (channels 1) and resized (bilinear) to height x width: x u8
 * [N, channels, height, width]. NN_ERR_UNSUPPORTED when built without
 * libpng/libjpeg; NN_ERR_FORMAT naming a file that does not decode. */
NN_API nn_dataset *nn_dataset_from_image_folder(const char *root, int64_t height, int64_t width,
                                                int channels);

/* Add a reference (ds itself is returned; NULL-safe). */
NN_API nn_dataset *nn_dataset_retain(nn_dataset *ds);
/* Drop a reference; the last one frees the dataset. NULL is a no-op. */
NN_API void nn_dataset_free(nn_dataset *ds);

/* Number of samples (-1 on NULL). */
NN_API int64_t nn_dataset_len(const nn_dataset *ds);
/* The shape of one sample as stored (before crop): writes up to cap dims
 * into shape and returns ndim (-1 on error). */
NN_API int nn_dataset_sample_shape(const nn_dataset *ds, int64_t *shape, int cap);
/* Number of classes: 1 + the largest label (folder count for image folders). */
NN_API int64_t nn_dataset_num_classes(const nn_dataset *ds);
/* Name of class i for image folders (borrowed), else NULL + NN_ERR_NOT_FOUND. */
NN_API const char *nn_dataset_class_name(const nn_dataset *ds, int64_t i);
/* Label of sample i (-1 and NN_ERR_RANGE when out of range). */
NN_API int64_t nn_dataset_label(const nn_dataset *ds, int64_t i);
/* Sample i after transforms, as a batch of one: *x f32 [1, ...], *y i64 [1]
 * (or f32 [1, C] with one-hot); new references. Random transforms draw as
 * in epoch 0, batch position 0. */
NN_API nn_status nn_dataset_get(const nn_dataset *ds, int64_t i, nn_tensor **x, nn_tensor **y);

/* --- subsets and splits (views: the samples are not copied) -------------- */

/* The samples at indices[0..n-1] (each checked against the length). */
NN_API nn_dataset *nn_dataset_subset(nn_dataset *ds, const int64_t *indices, int64_t n);
/* Seeded random split into n parts of sizes floor(fractions[i] * len); when
 * the fractions sum to 1 the remainder goes one each to the first parts, so
 * every sample lands in exactly one part. out[0..n-1] receive new datasets. */
NN_API nn_status nn_dataset_split(nn_dataset *ds, const double *fractions, int n, uint64_t seed,
                                  nn_dataset **out);

/* --- transforms (applied per batch in this fixed order: scale, random crop,
 *     random horizontal flip, normalize; labels: one-hot) ------------------ */

/* u8 samples are divided by 255 (on by default for u8 data; f32 data is
 * never scaled). */
NN_API nn_status nn_dataset_set_scale(nn_dataset *ds, bool on);
/* Per-channel (x - mean[c]) / std[c]; channels = dim 0 of a sample of ndim 3
 * ([C, H, W]), 1 for ndim 2, F for ndim 1 ([F] features). n must match;
 * n 0 turns normalization off. */
NN_API nn_status nn_dataset_set_normalize(nn_dataset *ds, const float *mean, const float *std,
                                          int64_t n);
/* Compute per-channel mean and population std over every sample (after
 * scale) and set them as the normalization. Returns the status. */
NN_API nn_status nn_dataset_compute_normalize(nn_dataset *ds);
/* Copy the normalization in use into mean/std (cap entries each); returns
 * the channel count (0 when off, -1 on error). */
NN_API int64_t nn_dataset_get_normalize(const nn_dataset *ds, float *mean, float *std,
                                        int64_t cap);
/* Flip each sample left-right with probability p (samples of ndim 2 or 3);
 * seeded: the draws depend only on (seed, epoch, position in the epoch). */
NN_API nn_status nn_dataset_set_random_flip(nn_dataset *ds, double p, uint64_t seed);
/* Pad each sample by `padding` zeros on every side, then crop a random
 * window of the original size (padding 0 turns it off). Seeded like flip. */
NN_API nn_status nn_dataset_set_random_crop(nn_dataset *ds, int64_t padding, uint64_t seed);
/* Labels become one-hot f32 [B, num_classes] (0 turns it off). */
NN_API nn_status nn_dataset_set_one_hot(nn_dataset *ds, int64_t num_classes);

/* ====================================================================== */
/*  Loader                                                                */
/* ====================================================================== */
/*
 *     nn_loader *train = nn_loader_new(ds, 64, true, 42);
 *     for (epoch ...) {
 *         nn_loader_reset(train);
 *         nn_tensor *x, *y;
 *         while (nn_loader_next(train, &x, &y)) { ... }
 *         if (nn_loader_status(train)) ... error ...
 *     }
 *
 * Each epoch yields every sample exactly once (a shuffled permutation drawn
 * from a generator seeded once with `seed`, so epoch k's order depends only
 * on seed and k). With prefetch (default on) one background thread prepares
 * the next batch while the caller trains; batches are identical either way.
 * A loader must be used from one thread at a time.
 */

/* A loader over ds (it keeps a reference) with batch_size >= 1. */
NN_API nn_loader *nn_loader_new(nn_dataset *ds, int64_t batch_size, bool shuffle, uint64_t seed);
/* Stop the worker (joined) and free the loader; NULL is a no-op. */
NN_API void nn_loader_free(nn_loader *l);
/* Drop the last incomplete batch (default false). Applies from the next epoch. */
NN_API nn_status nn_loader_set_drop_last(nn_loader *l, bool drop_last);
/* Background prefetch on/off (default on). Applies from the next epoch. */
NN_API nn_status nn_loader_set_prefetch(nn_loader *l, bool prefetch);
/* Start the next epoch (reshuffled when shuffling). The first nn_loader_next
 * without a reset starts epoch 0 itself. */
NN_API nn_status nn_loader_reset(nn_loader *l);
/* The next batch: *x f32 [B, ...], *y i64 [B] (f32 [B, C] with one-hot),
 * borrowed until the next nn_loader_next / reset / free (retain to keep).
 * Returns false at the end of the epoch or on error (see nn_loader_status). */
NN_API bool nn_loader_next(nn_loader *l, nn_tensor **x, nn_tensor **y);
/* NN_OK, or the error that ended the last nn_loader_next. */
NN_API nn_status nn_loader_status(const nn_loader *l);
/* Batches per epoch with the current settings (-1 on NULL). */
NN_API int64_t nn_loader_num_batches(const nn_loader *l);
/* The dataset (borrowed). */
NN_API nn_dataset *nn_loader_dataset(const nn_loader *l);

/* ====================================================================== */
/*  Metrics                                                               */
/* ====================================================================== */

/* Fraction of rows of logits [B, C] whose argmax (first maximum) equals
 * labels [B] (i64) into *out. */
NN_API nn_status nn_accuracy(const nn_tensor *logits, const nn_tensor *labels, double *out);
/* Fraction of rows whose label is among the k highest logits (ties broken
 * towards the lower class index, as argmax does); 1 <= k <= C. */
NN_API nn_status nn_topk_accuracy(const nn_tensor *logits, const nn_tensor *labels, int64_t k,
                                  double *out);
/* Confusion matrix i64 [C, C]: row = true label, column = prediction.
 * pred is logits f32 [B, C] (argmax is taken) or predictions i64 [B]. */
NN_API nn_tensor *nn_confusion_matrix(const nn_tensor *pred, const nn_tensor *labels,
                                      int64_t num_classes);
/* Per-class precision and recall from a confusion matrix [C, C] into
 * precision[C] and recall[C] (either may be NULL); 0 where undefined. */
NN_API nn_status nn_precision_recall(const nn_tensor *confusion, double *precision,
                                     double *recall, int64_t num_classes);

/* A running mean (of losses): add values with weights, read the mean. */
typedef struct nn_meter nn_meter;
/* A new, empty meter (free with nn_meter_free; NULL on out-of-memory). */
NN_API nn_meter *nn_meter_new(void);
/* Free m; NULL is a no-op. */
NN_API void nn_meter_free(nn_meter *m);
/* Add `value` with weight `count` (>= 0, e.g. the batch size). */
NN_API nn_status nn_meter_add(nn_meter *m, double value, double count);
/* Weighted mean so far (NaN when empty or NULL). */
NN_API double nn_meter_mean(const nn_meter *m);
/* Total weight added so far (NaN on NULL). */
NN_API double nn_meter_count(const nn_meter *m);
/* Forget every value (the mean becomes NaN). */
NN_API nn_status nn_meter_reset(nn_meter *m);

/* ====================================================================== */
/*  Training utilities                                                    */
/* ====================================================================== */
/* Meters, progress displays and metrics logs are small single-owner objects
 * (free / close them once); each must be used from one thread at a time. */

/* Progress display on file descriptor fd (1 stdout, 2 stderr): "epoch e/E
 * batch i/n loss images/s ETA", redrawn in place on a terminal, plain
 * lines (about ten per epoch) otherwise. */
typedef struct nn_progress nn_progress;
/* A display for `epochs` epochs of batches_per_epoch batches; it does not
 * own fd. Free with nn_progress_free (NULL-safe). */
NN_API nn_progress *nn_progress_new(int fd, int64_t epochs, int64_t batches_per_epoch);
NN_API void nn_progress_free(nn_progress *p);
/* Start epoch (0-based) and its clock. */
NN_API nn_status nn_progress_begin_epoch(nn_progress *p, int64_t epoch);
/* Batch batch_index (0-based) of batch_size samples is done with this loss. */
NN_API nn_status nn_progress_update(nn_progress *p, int64_t batch_index, double loss,
                                    int64_t batch_size);
/* End the epoch with a final line; extra (may be NULL) is appended. */
NN_API nn_status nn_progress_end_epoch(nn_progress *p, const char *extra);

/* CSV metrics log, one row per epoch:
 * epoch,train_loss,val_loss,val_acc,lr,seconds (flushed after each row). */
typedef struct nn_metrics_log nn_metrics_log;
/* Create or truncate path and write the header (NULL + NN_ERR_IO if it
 * cannot); close with nn_metrics_log_close. */
NN_API nn_metrics_log *nn_metrics_log_open(const char *path);
/* Append one row (NaN values print as "nan"). */
NN_API nn_status nn_metrics_log_write(nn_metrics_log *log, int64_t epoch, double train_loss,
                                      double val_loss, double val_acc, double lr,
                                      double seconds);
/* Close the file (NULL-safe); returns NN_ERR_IO if the final flush failed. */
NN_API nn_status nn_metrics_log_close(nn_metrics_log *log);

/* ====================================================================== */
/*  Fit: a ready-made training loop                                       */
/* ====================================================================== */

/* The loss nn_fit minimises. Values are pinned. */
typedef enum nn_fit_loss {
    NN_FIT_LOSS_CROSS_ENTROPY = 0, /* logits [B, C] against i64 labels [B] or one-hot f32 [B, C] */
    NN_FIT_LOSS_MSE = 1            /* outputs against f32 targets (e.g. one-hot) */
} nn_fit_loss;

/* Called after each epoch (0-based) with its results (val_* are NaN without
 * a validation loader; val_acc is NaN for non-label targets). Return false
 * to stop training. Step a learning-rate schedule here (nn_sched_step). */
typedef bool (*nn_fit_epoch_fn)(int64_t epoch, double train_loss, double val_loss,
                                double val_acc, double seconds, void *user);

/* Train model with opt for `epochs` epochs over train (reset each epoch),
 * evaluating on val (may be NULL) in eval mode without grad. patience > 0
 * stops after that many epochs without a better validation accuracy and
 * restores the best weights (needs val); 0 disables it. progress and log
 * (may be NULL) receive per-batch / per-epoch updates; on_epoch may be NULL.
 * Returns the first error of any step (the model keeps its last weights). */
NN_API nn_status nn_fit(nn_module *model, nn_optim *opt, nn_fit_loss loss, nn_loader *train,
                        nn_loader *val, int64_t epochs, int64_t patience, nn_progress *progress,
                        nn_metrics_log *log, nn_fit_epoch_fn on_epoch, void *user);

#endif
