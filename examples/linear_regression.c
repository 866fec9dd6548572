/* Linear regression: fit y = 2x + 1 + noise with one Linear(1, 1) layer.
 *
 * The PyTorch version, line for line:
 *
 *   torch.manual_seed(0)
 *   x = torch.rand(100, 1) * 2 - 1                 # 100 samples in [-1, 1)
 *   y = 2 * x + 1 + 0.1 * torch.randn(100, 1)
 *   perm = torch.randperm(100)                     # 80/20 train/validation split
 *   x_train, y_train = x[perm[:80]], y[perm[:80]]
 *   x_val, y_val = x[perm[80:]], y[perm[80:]]
 *   model = nn.Linear(1, 1)
 *   loss_fn = nn.MSELoss()
 *   opt = torch.optim.SGD(model.parameters(), lr=0.01)
 *   for epoch in range(300):
 *       for idx in torch.randperm(80).split(16):   # shuffled mini-batches of 16
 *           opt.zero_grad()
 *           loss = loss_fn(model(x_train[idx]), y_train[idx])
 *           loss.backward()
 *           opt.step()
 *   with torch.no_grad():
 *       val_mse = loss_fn(model(x_val), y_val)
 *
 * Exits 0 only if the learned weight and bias are within 0.1 of 2 and 1.
 */
#include <nn.h>
#include <math.h>
#include <stdio.h>

enum { N_SAMPLES = 100, N_TRAIN = 80, BATCH = 16, EPOCHS = 300 };

/* Print the root cause of the last failure and return the exit status 1. */
static int fail(const char *what) {
    fprintf(stderr, "linear_regression: %s failed: %s\n", what, nn_last_error());
    return 1;
}

/* x[idx], a row selection (PyTorch's fancy indexing); owned by the open scope. */
static nn_tensor *rows(nn_tensor *x, nn_tensor *idx) { return nn_index_select(x, 0, idx); }

/* One epoch of shuffled mini-batch SGD; *loss_out receives the mean batch loss. */
static int train_epoch(nn_module *model, nn_optim *opt, nn_tensor *x, nn_tensor *y,
                       double *loss_out) {
    nn_scope *scope = nn_scope_begin();
    if (!scope) return fail("nn_scope_begin");
    nn_tensor *perm = nn_randperm(NULL, N_TRAIN);
    double sum = 0;
    int batches = 0;
    for (int64_t start = 0; start < N_TRAIN; start += BATCH, batches++) {
        nn_tensor *idx = nn_slice(perm, 0, start, start + BATCH, 1);
        nn_optim_zero_grad(opt);
        nn_tensor *loss = nn_mse_loss(nn_module_forward(model, rows(x, idx)), rows(y, idx),
                                      NN_REDUCTION_MEAN);
        if (!loss || nn_backward(loss) != NN_OK || nn_optim_step(opt) != NN_OK) {
            nn_scope_end(scope);
            return fail("training step");
        }
        sum += nn_tensor_item(loss);
    }
    nn_scope_end(scope);  /* releases every batch, output and loss of the epoch */
    *loss_out = sum / batches;
    return 0;
}

/* MSE of the model on (x, y) without recording a graph (torch.no_grad()). */
static int evaluate(nn_module *model, nn_tensor *x, nn_tensor *y, double *mse) {
    bool was = nn_set_grad_enabled(false);
    nn_scope *scope = nn_scope_begin();
    nn_tensor *loss = nn_mse_loss(nn_module_forward(model, x), y, NN_REDUCTION_MEAN);
    *mse = loss ? nn_tensor_item(loss) : NAN;
    nn_scope_end(scope);
    nn_set_grad_enabled(was);
    return loss ? 0 : fail("validation");
}

int main(void) {
    int rc = 1;
    nn_module *model = NULL;
    nn_optim *opt = NULL;
    nn_tensor *x_train = NULL, *y_train = NULL, *x_val = NULL, *y_val = NULL;

    /* The data: y = 2x + 1 + N(0, 0.1^2), split 80/20 at random. */
    nn_generator_seed(NULL, 0);  /* torch.manual_seed(0) */
    nn_scope *data = nn_scope_begin();
    int64_t shape[] = {N_SAMPLES, 1};
    nn_tensor *x = nn_uniform(NULL, shape, 2, -1.0, 1.0);
    nn_tensor *y = nn_add(nn_add_scalar(nn_mul_scalar(x, 2.0), 1.0),
                          nn_normal(NULL, shape, 2, 0.0, 0.1));
    nn_tensor *perm = nn_randperm(NULL, N_SAMPLES);
    nn_tensor *train_idx = nn_slice(perm, 0, 0, N_TRAIN, 1);
    nn_tensor *val_idx = nn_slice(perm, 0, N_TRAIN, N_SAMPLES, 1);
    /* Keep the four splits beyond the scope: retain them, free them at the end. */
    x_train = nn_tensor_retain(rows(x, train_idx));
    y_train = nn_tensor_retain(rows(y, train_idx));
    x_val = nn_tensor_retain(rows(x, val_idx));
    y_val = nn_tensor_retain(rows(y, val_idx));
    nn_scope_end(data);
    if (!x_train || !y_train || !x_val || !y_val) {
        fail("making the data");
        goto done;
    }

    model = nn_linear_new(1, 1, true);                          /* nn.Linear(1, 1) */
    opt = nn_optim_new_module(NN_OPTIM_TYPE_SGD, model, 0.01);  /* SGD(lr=0.01) */
    if (!model || !opt) {
        fail("creating the model and optimizer");
        goto done;
    }

    for (int epoch = 0; epoch < EPOCHS; epoch++) {
        double train_loss;
        if (train_epoch(model, opt, x_train, y_train, &train_loss)) goto done;
        if (epoch % 50 == 0 || epoch == EPOCHS - 1)
            printf("epoch %3d: train MSE %.4f\n", epoch + 1, train_loss);
    }

    double val_mse;
    if (evaluate(model, x_val, y_val, &val_mse)) goto done;
    double w = nn_tensor_item(nn_module_get_parameter(model, "weight"));
    double b = nn_tensor_item(nn_module_get_parameter(model, "bias"));
    printf("learned: y = %.4f x + %.4f (true: y = 2x + 1)\n", w, b);
    printf("validation MSE: %.5f (noise variance 0.01)\n", val_mse);
    if (!(fabs(w - 2.0) < 0.1 && fabs(b - 1.0) < 0.1)) {
        fprintf(stderr, "linear_regression: did not converge (w = %g, b = %g)\n", w, b);
        goto done;
    }
    rc = 0;

done:
    nn_optim_free(opt);
    nn_module_free(model);
    nn_tensor_free(x_train);
    nn_tensor_free(y_train);
    nn_tensor_free(x_val);
    nn_tensor_free(y_val);
    return rc;
}
