/* The registry of handle kinds (see handle.h): names and the one check. */
#include "core/core.h"

static const char *const kind_names[NN__KIND_COUNT] = {
    [NN__KIND_TENSOR] = "a tensor",
    [NN__KIND_GENERATOR] = "a generator",
    [NN__KIND_SCOPE] = "a scope",
    [NN__KIND_MODULE] = "a module",
    [NN__KIND_STATEDICT] = "a state dict",
    [NN__KIND_OPTIM] = "an optimizer",
    [NN__KIND_SCHED] = "a schedule",
    [NN__KIND_DATASET] = "a dataset",
    [NN__KIND_LOADER] = "a loader",
    [NN__KIND_MODEL] = "a model",
    [NN__KIND_METER] = "a meter",
    [NN__KIND_PROGRESS] = "a progress display",
    [NN__KIND_METRICS_LOG] = "a metrics log",
    [NN__KIND_IO_OPTIONS] = "an I/O options object",
    [NN__KIND_META] = "a metadata object",
    [NN__KIND_SESSION] = "a generation session",
    [NN__KIND_MONITOR] = "a monitor",
};

const char *nn__kind_name(nn__kind kind) {
    if ((int)kind <= 0 || kind >= NN__KIND_COUNT) return "an unknown kind";
    return kind_names[kind];
}

bool nn__handle_check(const void *p, nn__kind kind, const char *fn, const char *name) {
    if (!p) return nn__check_ptr(p, fn, name);
    uint32_t tag = ((const nn__handle *)p)->tag;
    if (tag == NN__HANDLE_TAG(kind)) return true;
    uint32_t found = tag ^ NN__HANDLE_TAG(0);
    if (found > 0 && found < NN__KIND_COUNT)
        nn__err(NN_ERR_BAD_HANDLE, "%s: argument '%s' is %s, expected %s", fn, name,
                nn__kind_name((nn__kind)found), nn__kind_name(kind));
    else
        nn__err(NN_ERR_BAD_HANDLE,
                "%s: argument '%s' is not %s (a freed handle, or not a libnn handle)", fn,
                name, nn__kind_name(kind));
    return false;
}
