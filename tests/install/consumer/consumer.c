/* A program that uses libnn the way an outside project does: only <nn.h>,
 * found through pkg-config or a meson subproject. It multiplies two 2x2
 * matrices and compares with the product worked out by hand, then checks
 * that the library it runs against has the version it was built for.
 * Usage: consumer [EXPECTED_VERSION] */
#include <nn.h>

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    const int64_t shape[2] = {2, 2};
    const float a[4] = {1, 2, 3, 4};
    const float b[4] = {5, 6, 7, 8};
    /* [[1,2],[3,4]] x [[5,6],[7,8]] = [[1*5+2*7, 1*6+2*8], [3*5+4*7, 3*6+4*8]] */
    const float want[4] = {19, 22, 43, 50};
    float got[4] = {0};
    int failed = 0;

    nn_tensor *ta = nn_tensor_from_data(NN_DTYPE_F32, shape, 2, a);
    nn_tensor *tb = nn_tensor_from_data(NN_DTYPE_F32, shape, 2, b);
    nn_tensor *tc = nn_matmul(ta, tb);
    if (!tc || nn_tensor_copy_to(tc, got, sizeof got) != NN_OK) {
        fprintf(stderr, "consumer: %s\n", nn_last_error());
        failed = 1;
    }
    for (int i = 0; i < 4 && !failed; i++) {
        if (got[i] != want[i]) {
            fprintf(stderr, "consumer: element %d is %g, expected %g\n", i, got[i], want[i]);
            failed = 1;
        }
    }
    nn_tensor_free(tc);
    nn_tensor_free(tb);
    nn_tensor_free(ta);
    if (argc > 1 && strcmp(argv[1], nn_version()) != 0) {
        fprintf(stderr, "consumer: built for libnn %s but runs against %s\n", argv[1], nn_version());
        failed = 1;
    }
    if (failed)
        return 1;
    printf("libnn %s ok\n", nn_version());
    return 0;
}
