#include "bench_models.h"

#include <stddef.h>

/* A Sequential of n layers; it takes every layer's reference, also on
 * failure (a NULL layer fails the append and frees the rest). */
static nn_module *sequential_of(nn_module **layers, size_t n) {
    nn_module *seq = nn_sequential_new();
    nn_status st = seq ? NN_OK : NN_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        if (st == NN_OK) st = nn_sequential_append(seq, layers[i]);
        else nn_module_free(layers[i]);
    }
    if (st == NN_OK) return seq;
    nn_module_free(seq);
    return NULL;
}

nn_module *bench_cnn(void) {
    nn_module *l[] = {nn_conv2d_new(1, 32, 3, 1, 1, true),  nn_relu_new(),
                      nn_max_pool2d_new(2, 2, 0),           nn_conv2d_new(32, 64, 3, 1, 1, true),
                      nn_relu_new(),                        nn_max_pool2d_new(2, 2, 0),
                      nn_flatten_new(1, -1),                nn_linear_new(3136, 128, true),
                      nn_relu_new(),                        nn_linear_new(128, 10, true)};
    return sequential_of(l, sizeof l / sizeof l[0]);
}

nn_module *bench_mlp(void) {
    nn_module *l[] = {nn_flatten_new(1, -1),  nn_linear_new(784, 256, true),
                      nn_relu_new(),          nn_linear_new(256, 128, true),
                      nn_relu_new(),          nn_linear_new(128, 10, true)};
    return sequential_of(l, sizeof l / sizeof l[0]);
}
