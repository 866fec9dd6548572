// The public header must compile as C++ (extern "C", no C-only constructs).
#include <nn.h>

int main() {
    const int64_t shape[] = {3};
    nn_tensor *t = nn_tensor_ones(NN_DTYPE_F32, shape, 1);
    bool ok = t != nullptr && nn_tensor_item(t) != nn_tensor_item(t);  // NaN: 3 elements
    nn_clear_error();
    nn_tensor_free(t);
    return ok ? 0 : 1;
}
