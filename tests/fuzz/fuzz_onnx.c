/* libFuzzer target for the ONNX importer: each input is imported from
 * memory; a graph that imports is then run on a few small inputs (f32 and
 * i64 token ids), so mutated attributes and shapes reach the executor's
 * checks too. Replayed in every build by fuzz_onnx_replay (suite "fuzz"). */
#include "nn.h"
#include "nn_internal.h" /* nn__tensor_budget */

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
void nn_fuzz_teardown(void);

void nn_fuzz_teardown(void) {}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nn_io_options *o = nn_io_options_new();
    nn_io_options_set(o, NN_IO_OPTION_MAX_BYTES, 1 << 20);
    nn_model *m = nn_onnx_load_buffer(size ? (const void *)data : (const void *)"", size, o);
    nn_io_options_free(o);
    if (!m) return 0;
    static const int64_t shapes[][4] = {{2, 3, 0, 0}, {2, 1, 28, 28}, {2, 6, 0, 0}};
    static const int nd[] = {2, 4, 2};
    /* A crafted graph may legitimately ask for huge intermediates (an Expand
     * to a billion elements): cap what one run may allocate, so the fuzzer's
     * RSS limit flags only the importer's own allocations. */
    for (int i = 0; i < 3; i++) {
        uint64_t budget = (uint64_t)64 << 20;
        nn__tensor_budget(&budget);
        nn_tensor *x = i == 2 ? nn_tensor_zeros(NN_DTYPE_I64, shapes[i], nd[i])
                              : nn_tensor_ones(NN_DTYPE_F32, shapes[i], nd[i]);
        nn_tensor_free(nn_model_predict(m, x));
        nn__tensor_budget(NULL);
        nn_tensor_free(x);
    }
    nn_model_free(m);
    return 0;
}
