/* Tensor basics: create, fill, compute, differentiate, print, free.
 * Reads like the PyTorch session:
 *   x = torch.arange(6.).reshape(2, 3).requires_grad_()
 *   y = (x * x).sum(); y.backward(); print(x.grad)            # 2x
 */
#include <nn.h>
#include <stdio.h>

int main(void) {
    printf("libnn %s\n", nn_version());
    nn_scope *scope = nn_scope_begin();       /* frees every temporary at the end */

    int64_t shape[] = {2, 3};
    nn_tensor *x = nn_reshape(nn_arange(0, 6, 1, NN_DTYPE_F32), shape, 2);
    nn_tensor *leaf = nn_tensor_clone(x);     /* a leaf we can differentiate */
    int64_t idx[] = {1, 2};
    if (!leaf || nn_tensor_set_requires_grad(leaf, true) != NN_OK ||
        nn_tensor_set(leaf, idx, 10.0) != NN_OK) {   /* x[1][2] = 10 */
        fprintf(stderr, "error: %s\n", nn_last_error());
        nn_scope_end(scope);
        return 1;
    }
    nn_tensor_print(leaf);

    nn_tensor *y = nn_mul(leaf, leaf);
    nn_tensor *loss = nn_sum(y, NULL, 0, false);
    if (!loss || nn_backward(loss) != NN_OK) {
        fprintf(stderr, "error: %s\n", nn_last_error());
        nn_scope_end(scope);
        return 1;
    }
    printf("sum(x*x) = %g\n", nn_tensor_item(loss));
    printf("d/dx = 2x:\n");
    nn_tensor_print(nn_tensor_grad(leaf));

    /* Errors never crash: they return NULL and explain. */
    int64_t bad[] = {4, 4};
    if (!nn_reshape(leaf, bad, 2)) printf("expected error: %s\n", nn_last_error());

    nn_scope_end(scope);
    return 0;
}
