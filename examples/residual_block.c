/* A user-defined module: a residual block, trained for a few steps.
 *
 * The PyTorch version:
 *
 *   class ResidualBlock(nn.Module):
 *       def __init__(self, channels):
 *           super().__init__()
 *           self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
 *           self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
 *           self.scale = nn.Parameter(torch.ones(1))    # a parameter of the block itself
 *       def forward(self, x):
 *           return x + self.scale * self.conv2(F.relu(self.conv1(x)))
 *
 *   model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
 *                         ResidualBlock(16), nn.ReLU(), nn.MaxPool2d(2),
 *                         nn.Flatten(), nn.Linear(16 * 7 * 7, 10))
 *   opt = torch.optim.Adam(model.parameters(), lr=2e-3)
 *   ... a few epochs over 2048 Fashion-MNIST images; the loss must go down.
 *
 * In libnn a custom module is nn_module_custom_new(name, forward, user, free)
 * plus nn_module_register_parameter / _module, the equivalents of assigning
 * nn.Parameter and nn.Module attributes in __init__. The forward callback
 * runs inside a scope that nn_module_forward opens, so its intermediate
 * tensors need no freeing.
 *
 * Usage: residual_block [--data DIR] [--epochs N] [--subset N]
 * Exits non-zero if the last epoch's mean loss is not below the first's.
 */
#include <nn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------- the custom module */

/* forward(self, x): x + scale * conv2(relu(conv1(x))). Submodules and
 * parameters are looked up by name, like self.conv1 in Python. */
static nn_tensor *residual_forward(nn_module *self, nn_tensor *x, void *user) {
    (void)user;
    nn_module *conv1 = nn_module_get_module(self, "conv1");
    nn_module *conv2 = nn_module_get_module(self, "conv2");
    nn_tensor *scale = nn_module_get_parameter(self, "scale");
    nn_tensor *h = nn_module_forward(conv2, nn_relu(nn_module_forward(conv1, x)));
    return nn_add(x, nn_mul(scale, h));  /* NULL anywhere above propagates as NULL */
}

/* ResidualBlock(channels): registers conv1, conv2 and scale. */
static nn_module *residual_block_new(int64_t channels) {
    nn_module *m = nn_module_custom_new("ResidualBlock", residual_forward, NULL, NULL);
    if (!m) return NULL;
    int64_t one = 1;
    nn_tensor *scale = nn_tensor_ones(NN_DTYPE_F32, &one, 1);
    /* register_module takes over the constructor's reference, even on failure */
    if (nn_module_register_module(m, "conv1", nn_conv2d_new(channels, channels, 3, 1, 1, true)) ||
        nn_module_register_module(m, "conv2", nn_conv2d_new(channels, channels, 3, 1, 1, true)) ||
        nn_module_register_parameter(m, "scale", scale)) {
        nn_tensor_free(scale);
        nn_module_free(m);
        return NULL;
    }
    nn_tensor_free(scale);  /* the module holds its own reference */
    return m;
}

/* ------------------------------------------------------------- the model */

static nn_module *build_model(void) {
    nn_module *seq = nn_sequential_new();
    nn_module *layers[] = {
        nn_conv2d_new(1, 16, 3, 1, 1, true), nn_relu_new(), nn_max_pool2d_new(2, 2, 0),  /* [N,16,14,14] */
        residual_block_new(16), nn_relu_new(), nn_max_pool2d_new(2, 2, 0),               /* [N,16,7,7] */
        nn_flatten_new(1, -1), nn_linear_new(16 * 7 * 7, 10, true),
    };
    nn_status st = seq ? NN_OK : NN_ERR_NOMEM;
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
        if (st == NN_OK) st = nn_sequential_append(seq, layers[i]);  /* takes the reference */
        else nn_module_free(layers[i]);
    }
    if (st == NN_OK) return seq;
    nn_module_free(seq);
    return NULL;
}

static int fail(const char *what) {
    fprintf(stderr, "residual_block: %s: %s\n", what, nn_last_error());
    return 1;
}

/* The first n Fashion-MNIST training images, normalized. */
static nn_dataset *load_data(const char *dir, int64_t n) {
    char images[4096], labels[4096];
    snprintf(images, sizeof images, "%s/train-images-idx3-ubyte.gz", dir);
    snprintf(labels, sizeof labels, "%s/train-labels-idx1-ubyte.gz", dir);
    if (access(images, R_OK) != 0 || access(labels, R_OK) != 0) {
        fprintf(stderr, "residual_block: Fashion-MNIST not found in %s; install it with\n"
                        "  apt-get install dataset-fashion-mnist  (or pass --data DIR)\n", dir);
        return NULL;
    }
    nn_dataset *full = nn_dataset_from_idx(images, labels), *sub = NULL;
    if (!full) {
        fail("reading the IDX files");
        return NULL;
    }
    if (n > nn_dataset_len(full)) n = nn_dataset_len(full);
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    if (idx) {
        for (int64_t i = 0; i < n; i++) idx[i] = i;
        sub = nn_dataset_subset(full, idx, n);
    }
    free(idx);
    nn_dataset_free(full);
    if (!sub || nn_dataset_compute_normalize(sub) != NN_OK) {
        fail("preparing the subset");
        nn_dataset_free(sub);
        return NULL;
    }
    return sub;
}

/* One epoch; *mean_loss receives the sample-weighted mean loss. */
static int train_epoch(nn_module *model, nn_optim *opt, nn_loader *loader, double *mean_loss) {
    double sum = 0, count = 0;
    nn_tensor *x, *y;
    if (nn_loader_reset(loader) != NN_OK) return fail("nn_loader_reset");
    while (nn_loader_next(loader, &x, &y)) {
        nn_scope *step = nn_scope_begin();
        nn_optim_zero_grad(opt);
        nn_tensor *loss = nn_cross_entropy(nn_module_forward(model, x), y);
        bool ok = step && loss && nn_backward(loss) == NN_OK && nn_optim_step(opt) == NN_OK;
        if (ok) {
            double n = (double)nn_tensor_size(y, 0);
            sum += nn_tensor_item(loss) * n;
            count += n;
        }
        nn_scope_end(step);
        if (!ok) return fail("training step");
    }
    if (nn_loader_status(loader) != NN_OK) return fail("loading a batch");
    *mean_loss = count > 0 ? sum / count : 0.0;
    return 0;
}

static void print_parameters(nn_module *model) {
    int64_t n = nn_module_num_parameters(model);
    printf("parameters (%lld tensors, %lld values):\n", (long long)n,
           (long long)nn_module_param_count(model));
    for (int64_t i = 0; i < n; i++) {
        const char *name;
        nn_tensor *p = nn_module_parameter(model, i, &name);
        printf("  %-20s %lld\n", name, (long long)nn_tensor_numel(p));
    }
}

int main(int argc, char **argv) {
    const char *env_dir = getenv("NN_FASHION_MNIST");
    const char *dir = env_dir && *env_dir ? env_dir : "/usr/share/datasets/fashion-mnist";
    const char *smoke = getenv("NN_EXAMPLE_SMOKE");
    bool is_smoke = smoke && *smoke && strcmp(smoke, "0") != 0;
    int epochs = is_smoke ? 3 : 5;
    int64_t subset = is_smoke ? 1024 : 4096;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--data")) dir = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--epochs")) epochs = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--subset")) subset = atoll(argv[++i]);
        else {
            fprintf(stderr, "usage: residual_block [--data DIR] [--epochs N] [--subset N]\n");
            return 2;
        }
    }
    if (epochs < 2 || subset < 64) {
        fprintf(stderr, "residual_block: need --epochs >= 2 and --subset >= 64\n");
        return 2;
    }

    int rc = 1;
    nn_module *model = NULL;
    nn_optim *opt = NULL;
    nn_loader *loader = NULL;
    nn_generator_seed(NULL, 3);
    nn_dataset *data = load_data(dir, subset);
    if (!data) goto done;
    model = build_model();
    if (!model) { fail("building the model"); goto done; }
    print_parameters(model);  /* "3.conv1.weight", "3.scale", ... as in PyTorch */
    opt = nn_optim_new_module(NN_OPTIM_TYPE_ADAM, model, 2e-3);
    loader = nn_loader_new(data, 64, true, 5);
    if (!opt || !loader) { fail("setting up"); goto done; }

    double first = 0, last = 0;
    for (int epoch = 0; epoch < epochs; epoch++) {
        if (train_epoch(model, opt, loader, &last)) goto done;
        if (epoch == 0) first = last;
        printf("epoch %d/%d: loss %.4f\n", epoch + 1, epochs, last);
    }
    printf("block scale after training: %.4f\n",
           nn_tensor_item(nn_module_get_parameter(model, "3.scale")));
    if (!(last < first)) {
        fprintf(stderr, "residual_block: the loss did not decrease (%.4f -> %.4f)\n", first, last);
        goto done;
    }
    printf("loss decreased: %.4f -> %.4f\n", first, last);
    rc = 0;

done:
    nn_loader_free(loader);
    nn_optim_free(opt);
    nn_module_free(model);
    nn_dataset_free(data);
    return rc;
}
