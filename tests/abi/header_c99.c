/* The public header must compile alone as strict C99. */
#include <nn.h>

int main(void) {
    nn_tensor *t = nn_tensor_zeros(NN_DTYPE_F32, (const int64_t[]){2, 2}, 2);
    int ok = t != NULL && nn_tensor_numel(t) == 4;
    nn_tensor_free(t);
    return ok ? 0 : 1;
}
