/* The dtype table: each dtype's name and element size. Reserved dtypes (f64,
 * i32) have a name but size 0 (no tensor can hold them yet). f16, bf16 and
 * i8 are storage dtypes: tensors hold them, conversions and the half-weight
 * kernels read them; the other ops take f32 and say so (NN_ERR_DTYPE). */
#include "core/core.h"

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [NN_DTYPE_F32] = {"f32", 4},   [NN_DTYPE_F64] = {"f64", 0}, [NN_DTYPE_F16] = {"f16", 2},
    [NN_DTYPE_BF16] = {"bf16", 2}, [NN_DTYPE_I64] = {"i64", 8}, [NN_DTYPE_I32] = {"i32", 0},
    [NN_DTYPE_I8] = {"i8", 1},     [NN_DTYPE_U8] = {"u8", 1},
};
#define NDTYPES (sizeof dtypes / sizeof dtypes[0])

size_t nn_dtype_size(nn_dtype dtype) { return (unsigned)dtype < NDTYPES ? dtypes[dtype].size : 0; }

const char *nn_dtype_name(nn_dtype dtype) {
    return (unsigned)dtype < NDTYPES && dtypes[dtype].name ? dtypes[dtype].name : "unknown";
}
