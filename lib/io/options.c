/* nn_io_options: enum-keyed save/load settings. */
#include "io_internal.h"

static void defaults(nn_io_options *o) {
    *o = (nn_io_options){0};
    nn__handle_set(&o->handle, NN__KIND_IO_OPTIONS);
    o->compression = 6;
    o->module_tree = 1;
    o->max_bytes = NN__IO_DEFAULT_MAX_BYTES;
    o->strict = 1;
}

const nn_io_options *nn__io_opts(const nn_io_options *opts, nn_io_options *tmp, const char *fn) {
    if (!opts) {
        defaults(tmp);
        return tmp;
    }
    return nn__handle_check(opts, NN__KIND_IO_OPTIONS, fn, "opts") ? opts : NULL;
}

nn_io_options *nn_io_options_new(void) {
    nn_io_options *o = nn__malloc(sizeof *o);
    if (o) defaults(o);
    return o;
}

void nn_io_options_free(nn_io_options *opts) {
    if (!opts || !nn__handle_check(opts, NN__KIND_IO_OPTIONS, "nn_io_options_free", "opts"))
        return;
    nn__handle_clear(&opts->handle);
    nn__io_options_wipe(opts);
    nn__free(opts);
}

static bool check(const nn_io_options *o, const char *fn) {
    return nn__handle_check(o, NN__KIND_IO_OPTIONS, fn, "opts");
}

nn_status nn_io_options_set(nn_io_options *opts, nn_io_option key, int64_t value) {
    const char *fn = "nn_io_options_set";
    if (!check(opts, fn)) return nn_last_status();
    int64_t lo, hi, *slot;
    switch (key) {
    case NN_IO_OPTION_COMPRESSION: lo = 0, hi = 9, slot = &opts->compression; break;
    case NN_IO_OPTION_MODULE_TREE: lo = 0, hi = 1, slot = &opts->module_tree; break;
    case NN_IO_OPTION_MAX_BYTES: lo = 1, hi = INT64_MAX, slot = &opts->max_bytes; break;
    case NN_IO_OPTION_STRICT: lo = 0, hi = 1, slot = &opts->strict; break;
    case NN_IO_OPTION_MMAP: lo = 0, hi = 2, slot = &opts->mmap; break;
    case NN_IO_OPTION_REQUIRE_SIGNATURE: lo = 0, hi = 1, slot = &opts->require_signature; break;
    case NN_IO_OPTION_ALIGNED: lo = 0, hi = 1, slot = &opts->aligned; break;
    default: return nn__err(NN_ERR_INVALID, "%s: unknown key %d", fn, (int)key);
    }
    if (value < lo || value > hi)
        return nn__err(NN_ERR_INVALID, "%s: key %d: value %lld outside [%lld, %lld]", fn, (int)key,
                       (long long)value, (long long)lo, (long long)hi);
    *slot = value;
    return NN_OK;
}

nn_status nn_io_options_get(const nn_io_options *opts, nn_io_option key, int64_t *value) {
    const char *fn = "nn_io_options_get";
    if (!check(opts, fn) || !nn__check_ptr(value, fn, "value")) return nn_last_status();
    switch (key) {
    case NN_IO_OPTION_COMPRESSION: *value = opts->compression; return NN_OK;
    case NN_IO_OPTION_MODULE_TREE: *value = opts->module_tree; return NN_OK;
    case NN_IO_OPTION_MAX_BYTES: *value = opts->max_bytes; return NN_OK;
    case NN_IO_OPTION_STRICT: *value = opts->strict; return NN_OK;
    case NN_IO_OPTION_ALIGNED: *value = opts->aligned; return NN_OK;
    case NN_IO_OPTION_MMAP: *value = opts->mmap; return NN_OK;
    case NN_IO_OPTION_REQUIRE_SIGNATURE: *value = opts->require_signature; return NN_OK;
    }
    return nn__err(NN_ERR_INVALID, "%s: unknown key %d", fn, (int)key);
}

nn_status nn_io_options_set_training(nn_io_options *opts, nn_optim *opt, nn_sched *sched,
                                     nn_generator *gen, int64_t epoch, int64_t step) {
    const char *fn = "nn_io_options_set_training";
    if (!check(opts, fn)) return nn_last_status();
    if (opt && (epoch < 0 || step < 0))
        return nn__err(NN_ERR_INVALID, "%s: epoch %lld and step %lld must be >= 0", fn,
                       (long long)epoch, (long long)step);
    opts->opt = opt;
    opts->sched = opt ? sched : NULL;
    opts->gen = opt ? gen : NULL;
    opts->epoch = opt ? epoch : 0;
    opts->step = opt ? step : 0;
    return NN_OK;
}
