/* ONNX export of libnn modules (see nn_onnx_save in nn.h). */
#include "onnx/onnx_internal.h"

nn_status nn_onnx_save(nn_module *m, const char *path, nn_dtype input_dtype,
                       const int64_t *input_shape, int ndim, const nn_io_options *opts) {
    (void)m, (void)path, (void)input_dtype, (void)input_shape, (void)ndim, (void)opts;
    return nn__err(NN_ERR_UNSUPPORTED, "nn_onnx_save: not implemented yet");
}

nn_status nn_onnx_save_buffer(nn_module *m, nn_dtype input_dtype, const int64_t *input_shape,
                              int ndim, const nn_io_options *opts, void **data, size_t *size) {
    (void)m, (void)input_dtype, (void)input_shape, (void)ndim, (void)opts, (void)data, (void)size;
    return nn__err(NN_ERR_UNSUPPORTED, "nn_onnx_save_buffer: not implemented yet");
}
