/* Section of nn.h (merged into nn.h before release). Include <nn.h>, not this. */
#ifndef NN_PART_IO_H
#define NN_PART_IO_H
#ifndef NN_H
#error "include <nn.h> instead"
#endif

/* ====================================================================== */
/*  Model files                                                           */
/* ====================================================================== */
/*
 * One file format (lib/io/FORMAT.md, ".nnm") holds, in CRC-32-checked
 * sections: metadata, the module tree (type names, hyperparameters, named
 * children: a model loads without the code that built it), named tensors
 * (zlib-compressed or stored) and, for checkpoints, the training state.
 * It is pure data: no code, no callbacks, no references to other files.
 *
 * Saving to a path is atomic: a temporary file in the same directory is
 * written, synced and renamed over the target, then the directory is
 * synced; on any failure the old file is untouched and the temporary
 * removed. Files are built in memory before they are written, and read
 * whole into memory before they are parsed (both bounded by the file).
 *
 * Loading rejects anything malformed with NN_ERR_FORMAT, NN_ERR_TRUNCATED,
 * NN_ERR_CHECKSUM, NN_ERR_VERSION (a future major version), NN_ERR_LIMIT,
 * NN_ERR_OVERFLOW, NN_ERR_RANGE or NN_ERR_DTYPE, and a message naming the
 * offending field and values; no allocation exceeds what the file justifies.
 *
 * Threads: an nn_model may be shared by any number of threads calling
 * nn_model_predict (and the getters) concurrently, provided nobody modifies
 * it meanwhile (no training, no nn_module_* setters on nn_model_module, no
 * nn_model_free). Options, metadata and state dict handles are not
 * synchronised: share them read-only or not at all.
 */

/* ----------------------------------------------------------- callbacks */

/* Writes all `size` bytes of data; returns 0 on success, nonzero on failure. */
typedef int (*nn_write_fn)(const void *data, size_t size, void *user);
/* Reads up to `size` bytes into buf; returns the count read (0 at the end),
 * or a negative value on failure. */
typedef int64_t (*nn_read_fn)(void *buf, size_t size, void *user);

/* ------------------------------------------------------------- options */

typedef struct nn_io_options nn_io_options;

/* Keys of nn_io_options_set (pinned values). */
typedef enum nn_io_option {
    NN_IO_OPTION_COMPRESSION = 0, /* save: zlib level 0..9 (0 = stored); default 6 */
    NN_IO_OPTION_MODULE_TREE = 1, /* save: 1 = write the module tree (default), 0 = weights only */
    NN_IO_OPTION_MAX_BYTES = 2,   /* load: cap on file size and on total tensor bytes;
                                     >= 1, default 4 GiB */
    NN_IO_OPTION_STRICT = 3       /* load weights: 1 = names must match exactly (default) */
} nn_io_option;

/* New options holding the defaults; free with nn_io_options_free. NULL
 * options anywhere below mean the defaults. */
NN_API nn_io_options *nn_io_options_new(void);
NN_API void nn_io_options_free(nn_io_options *opts);
/* Set one option; NN_ERR_INVALID for an unknown key or a value outside its range. */
NN_API nn_status nn_io_options_set(nn_io_options *opts, nn_io_option key, int64_t value);
/* Read one option into *value. */
NN_API nn_status nn_io_options_get(const nn_io_options *opts, nn_io_option key, int64_t *value);
/* Attach training state so that nn_model_save writes a checkpoint: the
 * optimizer's state dict, the schedule's state (sched may be NULL), the
 * generator's state (NULL: this thread's default generator), epoch and step.
 * The objects are borrowed and must live until the save returns; opt NULL
 * detaches. */
NN_API nn_status nn_io_options_set_training(nn_io_options *opts, nn_optim *opt, nn_sched *sched,
                                            nn_generator *gen, int64_t epoch, int64_t step);

/* ------------------------------------------------------------ metadata */

typedef struct nn_meta nn_meta;

/* Kinds of metadata values (pinned values). */
typedef enum nn_meta_kind {
    NN_META_KIND_NONE = 0,    /* no such key */
    NN_META_KIND_STRING = 1,  /* UTF-8 text, e.g. "description" */
    NN_META_KIND_NUMBER = 2,  /* one f64 */
    NN_META_KIND_ARRAY = 3,   /* f64 array, e.g. normalization mean/std */
    NN_META_KIND_STRINGS = 4  /* string array, e.g. class names */
} nn_meta_kind;

/* An empty key -> value map (keys kept in insertion order). Free with nn_meta_free. */
NN_API nn_meta *nn_meta_new(void);
NN_API void nn_meta_free(nn_meta *meta);
/* Insert or replace key (non-empty, < 64 KiB) with a copy of the value. */
NN_API nn_status nn_meta_set_string(nn_meta *meta, const char *key, const char *value);
NN_API nn_status nn_meta_set_number(nn_meta *meta, const char *key, double value);
NN_API nn_status nn_meta_set_array(nn_meta *meta, const char *key, const double *values,
                                   int64_t n);
NN_API nn_status nn_meta_set_strings(nn_meta *meta, const char *key,
                                     const char *const *values, int64_t n);
/* Number of keys (-1 on NULL) and key i in insertion order (borrowed). */
NN_API int64_t nn_meta_count(const nn_meta *meta);
NN_API const char *nn_meta_key(const nn_meta *meta, int64_t i);
/* Kind of the value stored under key (NN_META_KIND_NONE if absent). */
NN_API nn_meta_kind nn_meta_kind_of(const nn_meta *meta, const char *key);
/* The string under key (borrowed), or NULL + NN_ERR_NOT_FOUND / NN_ERR_INVALID (other kind). */
NN_API const char *nn_meta_get_string(const nn_meta *meta, const char *key);
/* The number under key into *value. */
NN_API nn_status nn_meta_get_number(const nn_meta *meta, const char *key, double *value);
/* The array under key: *values (borrowed, valid while meta lives) and *n. */
NN_API nn_status nn_meta_get_array(const nn_meta *meta, const char *key, const double **values,
                                   int64_t *n);
/* Number of strings under key (-1 + error if absent or another kind), and string i (borrowed). */
NN_API int64_t nn_meta_strings_count(const nn_meta *meta, const char *key);
NN_API const char *nn_meta_strings_get(const nn_meta *meta, const char *key, int64_t i);

/* ------------------------------------------------- named tensors (weights) */

/* Save a state dict (names -> tensors) as a weights-only file. */
NN_API nn_status nn_statedict_save(const nn_statedict *sd, const char *path,
                                   const nn_io_options *opts);
/* Same, into a new buffer *data of *size bytes (free with nn_free). */
NN_API nn_status nn_statedict_save_buffer(const nn_statedict *sd, const nn_io_options *opts,
                                          void **data, size_t *size);
/* Same, through a write callback. */
NN_API nn_status nn_statedict_save_stream(const nn_statedict *sd, nn_write_fn write, void *user,
                                          const nn_io_options *opts);
/* Load the named tensors of any model, weights or checkpoint file as a new
 * state dict (free with nn_statedict_free); NULL on error. */
NN_API nn_statedict *nn_statedict_load(const char *path, const nn_io_options *opts);
NN_API nn_statedict *nn_statedict_load_buffer(const void *data, size_t size,
                                              const nn_io_options *opts);
NN_API nn_statedict *nn_statedict_load_stream(nn_read_fn read, void *user,
                                              const nn_io_options *opts);

/* --------------------------------------------------------------- models */

/* Save m (module tree + parameters and buffers), meta (may be NULL) and, if
 * attached to opts, the training state, atomically to path. */
NN_API nn_status nn_model_save(nn_module *m, const char *path, const nn_meta *meta,
                               const nn_io_options *opts);
/* Same, into a new buffer *data of *size bytes (free with nn_free). */
NN_API nn_status nn_model_save_buffer(nn_module *m, const nn_meta *meta,
                                      const nn_io_options *opts, void **data, size_t *size);
/* Same, through a write callback. */
NN_API nn_status nn_model_save_stream(nn_module *m, nn_write_fn write, void *user,
                                      const nn_meta *meta, const nn_io_options *opts);

/* Load a whole model (module tree + weights + metadata), put in eval mode.
 * Returns a new nn_model (free with nn_model_free), or NULL on error. */
NN_API nn_model *nn_model_load(const char *path, const nn_io_options *opts);
NN_API nn_model *nn_model_load_buffer(const void *data, size_t size, const nn_io_options *opts);
NN_API nn_model *nn_model_load_stream(nn_read_fn read, void *user, const nn_io_options *opts);
/* Free a model (NULL is a no-op); a module retained from it stays valid. */
NN_API void nn_model_free(nn_model *model);
/* The model's module (borrowed; nn_module_retain it to keep it longer). */
NN_API nn_module *nn_model_module(const nn_model *model);
/* The model's metadata (borrowed; empty, never NULL, for a valid model). */
NN_API const nn_meta *nn_model_meta(const nn_model *model);
/* Inference: forward x through the module in eval mode with grad mode off
 * on the calling thread. Thread-safe (see the contract above). Returns a new
 * tensor, owned like any op result. */
NN_API nn_tensor *nn_model_predict(const nn_model *model, nn_tensor *x);

/* Load the named tensors of a file into an existing module by name
 * (nn_module_load_state_dict); NN_IO_OPTION_STRICT 0 tolerates missing and
 * unexpected names. If report != NULL it receives a new string listing them
 * (free with nn_free). */
NN_API nn_status nn_module_load_weights(nn_module *m, const char *path,
                                        const nn_io_options *opts, char **report);
NN_API nn_status nn_module_load_weights_buffer(nn_module *m, const void *data, size_t size,
                                               const nn_io_options *opts, char **report);

/* ---------------------------------------------------------- checkpoints */

/* Resume from a checkpoint written by nn_model_save with training state:
 * load the weights into m (strict), the optimizer state into opt, the
 * schedule state into sched (may be NULL), the RNG state into gen (NULL:
 * this thread's default generator), and epoch / step (each may be NULL).
 * The whole file is validated before anything is modified; the objects are
 * then updated in the order optimizer, schedule, module, generator, and a
 * mismatch (another architecture) stops there with the error. */
NN_API nn_status nn_checkpoint_load(const char *path, nn_module *m, nn_optim *opt,
                                    nn_sched *sched, nn_generator *gen, int64_t *epoch,
                                    int64_t *step, const nn_io_options *opts);
NN_API nn_status nn_checkpoint_load_buffer(const void *data, size_t size, nn_module *m,
                                           nn_optim *opt, nn_sched *sched, nn_generator *gen,
                                           int64_t *epoch, int64_t *step,
                                           const nn_io_options *opts);

#endif
