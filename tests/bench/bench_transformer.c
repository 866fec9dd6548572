/* Transformer layer benchmark (never a unit test). Usage:
 *     bench_transformer [THREADS [REPEATS]]
 * Prints
 *     BENCH enc_layer_train <threads> <ms> ms
 * the median time of one forward + backward of a TransformerEncoderLayer
 * (d_model 256, nhead 4, dim_feedforward 1024, relu, dropout 0,
 * batch_first, post-norm) on x [8, 128, 256] with loss sum(y), gradients
 * zeroed first; and enc_layer_infer, the forward alone without grad.
 * tests/bench/bench_transformer.py runs it beside PyTorch's identical layer
 * in the same session and prints the ratios. */
#include "nn.h"
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return 1e3 * (double)t.tv_sec + 1e-6 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    bench_prog = "bench_transformer";
    int threads = argc > 1 ? atoi(argv[1]) : 1, reps = argc > 2 ? atoi(argv[2]) : 10;
    if (threads < 1 || reps < 1 || reps > 1000) {
        fprintf(stderr, "usage: %s [THREADS [REPEATS]]\n", argv[0]);
        return 2;
    }
    if (nn_set_num_threads(threads)) bench_die("threads");
    nn_generator_seed(NULL, 1);
    nn_module *m = nn_transformer_encoder_layer_new(256, 4, 1024, 0.0,
                                                    NN_TRANSFORMER_ACTIVATION_RELU, 1e-5, true,
                                                    false);
    if (!m) bench_die("layer");
    const int64_t shape[3] = {8, 128, 256};
    nn_tensor *x = nn_randn(NULL, shape, 3);
    if (!x) bench_die("input");
    double *t = malloc(sizeof *t * (size_t)reps);
    for (int pass = 0; pass < 2; pass++) {
        bool train = pass == 0;
        for (int i = -2; i < reps; i++) { /* two warm-up runs */
            double t0 = now_ms();
            nn_scope *s = nn_scope_begin();
            if (train) {
                nn_module_zero_grad(m);
                nn_tensor *y = nn_module_forward(m, x);
                if (!y || nn_backward(nn_sum(y, NULL, 0, false))) bench_die("train step");
            } else {
                bool prev = nn_set_grad_enabled(false);
                if (!nn_module_forward(m, x)) bench_die("forward");
                nn_set_grad_enabled(prev);
            }
            nn_scope_end(s);
            if (i >= 0) t[i] = now_ms() - t0;
        }
        qsort(t, (size_t)reps, sizeof *t, bench_cmp_double);
        printf("BENCH %s %d %.3f ms\n", train ? "enc_layer_train" : "enc_layer_infer", threads,
               t[reps / 2]);
        fflush(stdout);
    }
    free(t);
    nn_tensor_free(x);
    nn_module_free(m);
    return 0;
}
