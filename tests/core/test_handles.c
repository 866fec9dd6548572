/* Handle kinds: every *_free and one method of each of the 15 handle kinds,
 * handed a live handle of every other kind, records NN_ERR_BAD_HANDLE with a
 * message naming the function, the kind expected and the kind found, and
 * leaves the handle it was given untouched (it still works and is freed
 * normally at the end; valgrind and ASan see no error and no leak).
 *
 * Before the registry of handle kinds, four pairs of kinds shared a magic
 * number (dataset/state dict, meter/module, metrics log/optimizer,
 * schedule/scope), so e.g. nn_meter_free(module) freed the module. */
#include "testutil.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum {
    K_TENSOR,
    K_GENERATOR,
    K_SCOPE,
    K_MODULE,
    K_STATEDICT,
    K_OPTIM,
    K_SCHED,
    K_DATASET,
    K_LOADER,
    K_MODEL,
    K_METER,
    K_PROGRESS,
    K_METRICS_LOG,
    K_IO_OPTIONS,
    K_META,
    NKINDS
};

/* How the library names each kind in messages (lib/core/handle.c). */
static const char *const kind_word[NKINDS] = {
    "a tensor",          "a generator",
    "a scope",           "a module",
    "a state dict",      "an optimizer",
    "a schedule",        "a dataset",
    "a loader",          "a model",
    "a meter",           "a progress display",
    "a metrics log",     "an I/O options object",
    "a metadata object",
};

typedef struct {
    void *h[NKINDS];
    int devnull;
    char log_path[64];
} handles;

static void make_handles(handles *hs) {
    memset(hs, 0, sizeof *hs);
    int64_t shape[2] = {4, 3};
    nn_tensor *x = TU_NN(nn_tensor_zeros(NN_DTYPE_F32, shape, 2));
    int64_t n = 4;
    nn_tensor *y = TU_NN(nn_tensor_zeros(NN_DTYPE_I64, &n, 1));
    hs->h[K_TENSOR] = TU_NN(nn_tensor_zeros(NN_DTYPE_F32, shape, 2));
    hs->h[K_GENERATOR] = TU_NN(nn_generator_new(7));
    nn_module *m = TU_NN(nn_linear_new(3, 2, true));
    hs->h[K_MODULE] = m;
    hs->h[K_STATEDICT] = TU_NN(nn_module_state_dict(m));
    nn_optim *opt = TU_NN(nn_optim_new_module(NN_OPTIM_TYPE_SGD, m, 0.1));
    hs->h[K_OPTIM] = opt;
    hs->h[K_SCHED] = TU_NN(nn_sched_step_lr(opt, 1, 0.5));
    nn_dataset *ds = TU_NN(nn_dataset_from_tensors(x, y)); /* keeps its own references */
    nn_tensor_free(x);
    nn_tensor_free(y);
    hs->h[K_DATASET] = ds;
    hs->h[K_LOADER] = TU_NN(nn_loader_new(ds, 2, false, 1));
    void *buf = NULL;
    size_t size = 0;
    TU_OK(nn_model_save_buffer(m, NULL, NULL, &buf, &size));
    hs->h[K_MODEL] = TU_NN(nn_model_load_buffer(buf, size, NULL));
    nn_free(buf);
    hs->h[K_METER] = TU_NN(nn_meter_new());
    hs->devnull = open("/dev/null", O_WRONLY);
    assert_true(hs->devnull >= 0);
    hs->h[K_PROGRESS] = TU_NN(nn_progress_new(hs->devnull, 1, 1));
    snprintf(hs->log_path, sizeof hs->log_path, "test_handles_%d.csv", (int)getpid());
    hs->h[K_METRICS_LOG] = TU_NN(nn_metrics_log_open(hs->log_path));
    hs->h[K_IO_OPTIONS] = TU_NN(nn_io_options_new());
    hs->h[K_META] = TU_NN(nn_meta_new());
    /* Last: tensors made from here on would belong to the scope. */
    hs->h[K_SCOPE] = TU_NN(nn_scope_begin());
}

/* Every handle still works: one successful call per kind. */
static void check_alive(handles *hs) {
    assert_int_equal(nn_tensor_numel(hs->h[K_TENSOR]), 12);
    TU_OK(nn_generator_seed(hs->h[K_GENERATOR], 3));
    TU_OK(nn_module_train(hs->h[K_MODULE], true));
    assert_int_equal(nn_statedict_size(hs->h[K_STATEDICT]), 2);
    TU_OK(nn_optim_zero_grad(hs->h[K_OPTIM]));
    assert_int_equal(nn_sched_last_epoch(hs->h[K_SCHED]), 0);
    assert_int_equal(nn_dataset_len(hs->h[K_DATASET]), 4);
    assert_int_equal(nn_loader_num_batches(hs->h[K_LOADER]), 2);
    assert_non_null(nn_model_module(hs->h[K_MODEL]));
    TU_OK(nn_meter_add(hs->h[K_METER], 1.0, 1.0));
    TU_OK(nn_progress_begin_epoch(hs->h[K_PROGRESS], 0));
    TU_OK(nn_metrics_log_write(hs->h[K_METRICS_LOG], 0, 1.0, 1.0, 0.5, 0.1, 0.0));
    TU_OK(nn_io_options_set(hs->h[K_IO_OPTIONS], NN_IO_OPTION_COMPRESSION, 1));
    TU_OK(nn_meta_set_number(hs->h[K_META], "k", 1.0));
}

static void free_handles(handles *hs) {
    TU_OK(nn_scope_end(hs->h[K_SCOPE]));
    nn_meta_free(hs->h[K_META]);
    nn_io_options_free(hs->h[K_IO_OPTIONS]);
    TU_OK(nn_metrics_log_close(hs->h[K_METRICS_LOG]));
    nn_progress_free(hs->h[K_PROGRESS]);
    nn_meter_free(hs->h[K_METER]);
    nn_model_free(hs->h[K_MODEL]);
    nn_loader_free(hs->h[K_LOADER]);
    nn_dataset_free(hs->h[K_DATASET]);
    nn_sched_free(hs->h[K_SCHED]);
    nn_optim_free(hs->h[K_OPTIM]);
    nn_statedict_free(hs->h[K_STATEDICT]);
    nn_module_free(hs->h[K_MODULE]);
    nn_generator_free(hs->h[K_GENERATOR]);
    nn_tensor_free(hs->h[K_TENSOR]);
    assert_int_equal(nn_last_status(), NN_OK);
    close(hs->devnull);
    remove(hs->log_path);
}

/* The free function of kind k, called on p. */
static void call_free(int k, void *p) {
    switch (k) {
    case K_TENSOR: nn_tensor_free(p); break;
    case K_GENERATOR: nn_generator_free(p); break;
    case K_SCOPE: (void)nn_scope_end(p); break;
    case K_MODULE: nn_module_free(p); break;
    case K_STATEDICT: nn_statedict_free(p); break;
    case K_OPTIM: nn_optim_free(p); break;
    case K_SCHED: nn_sched_free(p); break;
    case K_DATASET: nn_dataset_free(p); break;
    case K_LOADER: nn_loader_free(p); break;
    case K_MODEL: nn_model_free(p); break;
    case K_METER: nn_meter_free(p); break;
    case K_PROGRESS: nn_progress_free(p); break;
    case K_METRICS_LOG: (void)nn_metrics_log_close(p); break;
    case K_IO_OPTIONS: nn_io_options_free(p); break;
    case K_META: nn_meta_free(p); break;
    }
}

static const char *const free_name[NKINDS] = {
    "nn_tensor_free",       "nn_generator_free",  "nn_scope_end",  "nn_module_free",
    "nn_statedict_free",    "nn_optim_free",      "nn_sched_free", "nn_dataset_free",
    "nn_loader_free",       "nn_model_free",      "nn_meter_free", "nn_progress_free",
    "nn_metrics_log_close", "nn_io_options_free", "nn_meta_free",
};

/* A representative method of kind k, called on p. */
static void call_method(int k, void *p) {
    switch (k) {
    case K_TENSOR: (void)nn_tensor_numel(p); break;
    case K_GENERATOR: (void)nn_generator_seed(p, 1); break;
    case K_SCOPE: (void)nn_scope_end(p); break; /* a scope's only method */
    case K_MODULE: (void)nn_module_train(p, false); break;
    case K_STATEDICT: (void)nn_statedict_size(p); break;
    case K_OPTIM: (void)nn_optim_zero_grad(p); break;
    case K_SCHED: (void)nn_sched_step(p); break;
    case K_DATASET: (void)nn_dataset_len(p); break;
    case K_LOADER: (void)nn_loader_reset(p); break;
    case K_MODEL: (void)nn_model_module(p); break;
    case K_METER: (void)nn_meter_add(p, 1.0, 1.0); break;
    case K_PROGRESS: (void)nn_progress_begin_epoch(p, 1); break;
    case K_METRICS_LOG: (void)nn_metrics_log_write(p, 1, 0, 0, 0, 0, 0); break;
    case K_IO_OPTIONS: (void)nn_io_options_set(p, NN_IO_OPTION_COMPRESSION, 2); break;
    case K_META: (void)nn_meta_count(p); break;
    }
}

static const char *const method_name[NKINDS] = {
    "nn_tensor_numel",      "nn_generator_seed",  "nn_scope_end",  "nn_module_train",
    "nn_statedict_size",    "nn_optim_zero_grad", "nn_sched_step", "nn_dataset_len",
    "nn_loader_reset",      "nn_model_module",    "nn_meter_add",  "nn_progress_begin_epoch",
    "nn_metrics_log_write", "nn_io_options_set",  "nn_meta_count",
};

static void expect_bad_handle(const char *fn, int expected, int found) {
    if (nn_last_status() != NN_ERR_BAD_HANDLE)
        fail_msg("%s given %s: status %d, expected NN_ERR_BAD_HANDLE (%s)", fn, kind_word[found],
                 (int)nn_last_status(), nn_last_error());
    const char *msg = nn_last_error();
    if (!strstr(msg, fn)) fail_msg("%s: message does not name the function: %s", fn, msg);
    /* nn_scope_end checks its list of open scopes and never reads a handle
     * (an ended scope is freed memory), so it cannot say what it was given. */
    if (expected == K_SCOPE) return;
    if (!strstr(msg, kind_word[expected]) || !strstr(msg, kind_word[found]))
        fail_msg("%s given %s: message should name both kinds: %s", fn, kind_word[found], msg);
}

/* call(k, h) (the function names[k] for kind k) given a handle h of every
 * other kind: each refused, and every handle still alive afterwards. */
static void expect_other_kinds_refused(void (*call)(int k, void *p), const char *const *names) {
    handles hs;
    make_handles(&hs);
    for (int k = 0; k < NKINDS; k++)
        for (int j = 0; j < NKINDS; j++) {
            if (j == k) continue;
            nn_clear_error();
            call(k, hs.h[j]);
            expect_bad_handle(names[k], k, j);
        }
    nn_clear_error();
    check_alive(&hs);
    free_handles(&hs);
}

static void test_free_rejects_other_kinds(void **state) {
    (void)state;
    expect_other_kinds_refused(call_free, free_name);
}

static void test_method_rejects_other_kinds(void **state) {
    (void)state;
    expect_other_kinds_refused(call_method, method_name);
}

/* A handle whose first bytes are no kind tag at all (here a plain block):
 * still NN_ERR_BAD_HANDLE, and the message says what was expected. */
static void test_not_a_handle(void **state) {
    (void)state;
    uint64_t junk[32] = {0x1234567890abcdefu};
    nn_clear_error();
    nn_meter_free((nn_meter *)junk);
    tu_expect_error(NN_ERR_BAD_HANDLE, "nn_meter_free: argument 'm' is not a meter");
    nn_clear_error();
    assert_int_equal(nn_optim_zero_grad((nn_optim *)junk), NN_ERR_BAD_HANDLE);
    tu_expect_error(NN_ERR_BAD_HANDLE, "not an optimizer");
}

/* The four pairs that used to collide, spelled out. */
static void test_former_collisions(void **state) {
    (void)state;
    handles hs;
    make_handles(&hs);
    nn_clear_error();
    nn_meter_free(hs.h[K_MODULE]);
    tu_expect_error(NN_ERR_BAD_HANDLE, "nn_meter_free: argument 'm' is a module, expected a meter");
    nn_clear_error();
    nn_dataset_free(hs.h[K_STATEDICT]);
    tu_expect_error(NN_ERR_BAD_HANDLE, "is a state dict, expected a dataset");
    nn_clear_error();
    assert_int_equal(nn_metrics_log_close(hs.h[K_OPTIM]), NN_ERR_BAD_HANDLE);
    tu_expect_error(NN_ERR_BAD_HANDLE, "is an optimizer, expected a metrics log");
    nn_clear_error();
    nn_sched_free(hs.h[K_SCOPE]);
    tu_expect_error(NN_ERR_BAD_HANDLE, "is a scope, expected a schedule");
    nn_clear_error();
    check_alive(&hs);
    free_handles(&hs);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_former_collisions),
        cmocka_unit_test(test_free_rejects_other_kinds),
        cmocka_unit_test(test_method_rejects_other_kinds),
        cmocka_unit_test(test_not_a_handle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
