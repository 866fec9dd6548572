/* nn_fit end to end on a linearly separable problem, the metrics log it
 * writes, and early stopping restoring the best weights. */
#include "testutil.h"
#include "nn_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* n points in [-1,1]^2, label (x0 + 0.5 x1 > 0): separable by a line. */
static nn_dataset *separable(int64_t n, uint64_t seed) {
    int64_t shape[2] = {n, 2};
    nn_generator *g = nn_generator_new(seed);
    nn_tensor *x = nn_uniform(g, shape, 2, -1, 1);
    nn_tensor *y = nn_tensor_empty(NN_DTYPE_I64, &n, 1);
    const float *px = nn_tensor_data(x);
    for (int64_t i = 0; i < n; i++)
        ((int64_t *)nn_tensor_data(y))[i] = px[2 * i] + 0.5f * px[2 * i + 1] > 0;
    nn_dataset *ds = TU_NN(nn_dataset_from_tensors(x, y));
    nn_tensor_free(x);
    nn_tensor_free(y);
    nn_generator_free(g);
    return ds;
}

static nn_optim *sgd_for(nn_module *m, double lr) {
    nn_tensor *ps[8];
    int64_t n = nn_module_num_parameters(m);
    assert_true(n > 0 && n <= 8);
    for (int64_t i = 0; i < n; i++) ps[i] = nn_module_parameter(m, i, NULL);
    return TU_NN(nn_sgd(ps, n, lr, 0.0));
}

/* A Linear(2, 2) trained by SGD (lr 0.5) on separable(ntrain, seed_train)
 * (batches of 20, shuffled) and validated on separable(nval, seed_val). */
typedef struct problem {
    nn_dataset *train, *val;
    nn_loader *lt, *lv;
    nn_module *m;
    nn_optim *opt;
} problem;

static problem problem_new(int64_t ntrain, uint64_t seed_train, int64_t nval, uint64_t seed_val) {
    problem p;
    p.train = separable(ntrain, seed_train);
    p.val = separable(nval, seed_val);
    p.lt = TU_NN(nn_loader_new(p.train, 20, true, 3));
    p.lv = TU_NN(nn_loader_new(p.val, 50, false, 0));
    p.m = TU_NN(nn_linear_new(2, 2, true));
    p.opt = sgd_for(p.m, 0.5);
    return p;
}

static void problem_free(problem *p) {
    nn_optim_free(p->opt);
    nn_module_free(p->m);
    nn_loader_free(p->lt);
    nn_loader_free(p->lv);
    nn_dataset_free(p->train);
    nn_dataset_free(p->val);
}

typedef struct record {
    int calls;
    double last_acc;
} record;

static bool on_epoch(int64_t epoch, double tl, double vl, double va, double secs, void *user) {
    record *r = user;
    assert_int_equal(epoch, r->calls);
    assert_true(isfinite(tl) && isfinite(vl) && secs >= 0);
    r->calls++;
    r->last_acc = va;
    return true;
}

static void test_fit_learns(void **s) {
    (void)s;
    problem p = problem_new(400, 1, 200, 2);
    nn_module *m = p.m;
    nn_optim *opt = p.opt;
    nn_loader *lt = p.lt, *lv = p.lv;
    char path[] = "/tmp/nn_fit_log_XXXXXX";
    close(mkstemp(path));
    nn_metrics_log *log = TU_NN(nn_metrics_log_open(path));
    record r = {0};
    TU_OK(nn_fit(m, opt, NN_FIT_LOSS_CROSS_ENTROPY, lt, lv, 15, 0, NULL, log, on_epoch, &r));
    TU_OK(nn_metrics_log_close(log));
    assert_int_equal(r.calls, 15);
    assert_true(r.last_acc >= 0.95); /* a separable problem is learnt */
    FILE *f = fopen(path, "r");
    char line[256];
    int rows = 0;
    while (fgets(line, sizeof line, f)) rows++;
    fclose(f);
    unlink(path);
    assert_int_equal(rows, 16);
    /* argument errors */
    assert_int_equal(nn_fit(m, opt, NN_FIT_LOSS_CROSS_ENTROPY, lt, NULL, 1, 2, NULL, NULL, NULL,
                            NULL),
                     NN_ERR_INVALID);
    tu_expect_error(NN_ERR_INVALID, "needs a val loader");
    assert_int_equal(nn_fit(NULL, opt, NN_FIT_LOSS_CROSS_ENTROPY, lt, NULL, 1, 0, NULL, NULL, NULL,
                            NULL),
                     NN_ERR_NULL);
    problem_free(&p);
}

/* Early stopping: after epoch 0 the callback saves the weights, then wipes
 * them and sets lr 0, so validation accuracy never improves again: training
 * stops after `patience` more epochs and the epoch-0 weights come back. */
typedef struct wipe {
    nn_module *m;
    nn_optim *opt;
    nn_tensor *saved[2];
    int calls;
} wipe;

static bool wipe_epoch(int64_t epoch, double tl, double vl, double va, double secs, void *user) {
    wipe *w = user;
    w->calls++;
    if (epoch == 0) {
        for (int i = 0; i < 2; i++) {
            nn_tensor *p = nn_module_parameter(w->m, i, NULL);
            w->saved[i] = nn_tensor_clone(p);
            nn_tensor_fill(p, 0.0);
        }
        TU_OK(nn_optim_set(w->opt, NN_OPTIM_LR, 0.0));
    }
    return true;
}

static void test_fit_early_stopping(void **s) {
    (void)s;
    problem p = problem_new(200, 4, 100, 5);
    wipe w = {.m = p.m, .opt = p.opt};
    TU_OK(nn_fit(p.m, p.opt, NN_FIT_LOSS_CROSS_ENTROPY, p.lt, p.lv, 10, 2, NULL, NULL, wipe_epoch,
                 &w));
    assert_int_equal(w.calls, 3); /* epoch 0 best, then 2 epochs without progress */
    for (int i = 0; i < 2; i++) {
        assert_true(nn_tensor_equal(nn_module_parameter(p.m, i, NULL), w.saved[i]));
        nn_tensor_free(w.saved[i]);
    }
    problem_free(&p);
}

/* One-hot targets train through cross-entropy with probabilities. */
static void test_fit_one_hot(void **s) {
    (void)s;
    nn_dataset *train = separable(200, 6);
    TU_OK(nn_dataset_set_one_hot(train, 2));
    nn_loader *lt = TU_NN(nn_loader_new(train, 20, true, 3));
    nn_module *m = TU_NN(nn_linear_new(2, 2, true));
    nn_optim *opt = sgd_for(m, 0.5);
    TU_OK(nn_fit(m, opt, NN_FIT_LOSS_CROSS_ENTROPY, lt, NULL, 2, 0, NULL, NULL, NULL, NULL));
    TU_OK(nn_fit(m, opt, NN_FIT_LOSS_MSE, lt, NULL, 1, 0, NULL, NULL, NULL, NULL));
    nn_optim_free(opt);
    nn_module_free(m);
    nn_loader_free(lt);
    nn_dataset_free(train);
}

/* Every entry point given NULL: an error status or NULL, never a crash. */
static void test_null_arguments(void **s) {
    (void)s;
    nn_tensor *x = NULL, *y = NULL;
    int64_t sh[2];
    double d;
    float f;
    assert_null(nn_dataset_from_tensors(NULL, NULL));
    assert_null(nn_dataset_from_csv(NULL, true, ',', false, 0, NN_CSV_POLICY_ERROR, 0, NULL, NULL));
    assert_null(nn_dataset_from_image_folder(NULL, 1, 1, 1));
    assert_null(nn_dataset_retain(NULL));
    nn_dataset_free(NULL);
    assert_int_equal(nn_dataset_len(NULL), -1);
    assert_int_equal(nn_dataset_sample_shape(NULL, sh, 2), -1);
    assert_int_equal(nn_dataset_num_classes(NULL), -1);
    assert_null(nn_dataset_class_name(NULL, 0));
    assert_int_equal(nn_dataset_label(NULL, 0), -1);
    assert_int_not_equal(nn_dataset_get(NULL, 0, &x, &y), NN_OK);
    assert_null(nn_dataset_subset(NULL, NULL, 0));
    assert_int_not_equal(nn_dataset_split(NULL, NULL, 1, 0, NULL), NN_OK);
    assert_int_not_equal(nn_dataset_set_scale(NULL, true), NN_OK);
    assert_int_not_equal(nn_dataset_set_normalize(NULL, &f, &f, 1), NN_OK);
    assert_int_not_equal(nn_dataset_compute_normalize(NULL), NN_OK);
    assert_int_equal(nn_dataset_get_normalize(NULL, &f, &f, 1), -1);
    assert_int_not_equal(nn_dataset_set_random_flip(NULL, 0.5, 0), NN_OK);
    assert_int_not_equal(nn_dataset_set_random_crop(NULL, 1, 0), NN_OK);
    assert_int_not_equal(nn_dataset_set_one_hot(NULL, 2), NN_OK);
    assert_null(nn_loader_new(NULL, 1, true, 0));
    nn_loader_free(NULL);
    assert_int_not_equal(nn_loader_set_drop_last(NULL, true), NN_OK);
    assert_int_not_equal(nn_loader_set_prefetch(NULL, true), NN_OK);
    assert_int_not_equal(nn_loader_reset(NULL), NN_OK);
    assert_false(nn_loader_next(NULL, &x, &y));
    assert_int_not_equal(nn_loader_status(NULL), NN_OK);
    assert_int_equal(nn_loader_num_batches(NULL), -1);
    assert_null(nn_loader_dataset(NULL));
    assert_int_not_equal(nn_accuracy(NULL, NULL, &d), NN_OK);
    assert_int_not_equal(nn_topk_accuracy(NULL, NULL, 1, &d), NN_OK);
    assert_null(nn_confusion_matrix(NULL, NULL, 2));
    assert_int_not_equal(nn_precision_recall(NULL, &d, &d, 1), NN_OK);
    nn_meter_free(NULL);
    assert_int_not_equal(nn_meter_add(NULL, 1, 1), NN_OK);
    assert_true(isnan(nn_meter_mean(NULL)));
    assert_int_not_equal(nn_meter_reset(NULL), NN_OK);
    nn_progress_free(NULL);
    assert_int_not_equal(nn_progress_begin_epoch(NULL, 0), NN_OK);
    assert_int_not_equal(nn_progress_update(NULL, 0, 1, 1), NN_OK);
    assert_int_not_equal(nn_progress_end_epoch(NULL, NULL), NN_OK);
    assert_null(nn_metrics_log_open(NULL));
    assert_int_not_equal(nn_metrics_log_write(NULL, 0, 0, 0, 0, 0, 0), NN_OK);
    TU_OK(nn_metrics_log_close(NULL));
    /* a dataset with NULL output pointers */
    nn_dataset *ds = separable(4, 1);
    assert_int_equal(nn_dataset_get(ds, 0, NULL, &y), NN_ERR_NULL);
    nn_loader *l = TU_NN(nn_loader_new(ds, 2, false, 0));
    assert_false(nn_loader_next(l, NULL, &y));
    assert_int_equal(nn_loader_status(l), NN_ERR_NULL);
    nn_loader_free(l);
    nn_dataset_free(ds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fit_learns),
        cmocka_unit_test(test_fit_early_stopping),
        cmocka_unit_test(test_fit_one_hot),
        cmocka_unit_test(test_null_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
