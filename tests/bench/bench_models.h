/* The models every benchmark measures, built in one place so that bench,
 * bench_half, bench_quant and bench_dist time the same network as
 * compare.py's PyTorch and ONNX Runtime references (bench_torch.py,
 * make_onnx.py). Each returns NULL with nn_last_error() set on failure. */
#ifndef NN_BENCH_MODELS_H
#define NN_BENCH_MODELS_H

#include "nn.h"

/* The seed's Fashion-MNIST CNN: conv 1->32 3x3 p1, ReLU, maxpool 2,
 * conv 32->64 3x3 p1, ReLU, maxpool 2, flatten, Linear 3136->128, ReLU,
 * Linear 128->10. */
nn_module *bench_cnn(void);
/* flatten, Linear 784->256, ReLU, Linear 256->128, ReLU, Linear 128->10 */
nn_module *bench_mlp(void);

#endif
