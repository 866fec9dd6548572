"""Half-precision weights for inference (nn_module_convert).

    net = ...                                   # trained in float32
    libnn.precision.convert(net, 'bf16')        # or 'f16'; 'f32' converts back
    libnn.save(net, 'model_bf16.nnm')           # the file stores bf16 natively
    model = libnn.load('model_bf16.nnm')        # and loads it as bf16
    y = model.predict(x)                        # f32 activations and sums

Only the weights of Linear, Conv2d and Embedding change; biases, norms,
recurrent and attention weights and buffers stay float32, tied weights stay
tied. Half weights take no gradient: train in float32, then convert.
"""
from ._lib import check, lib
from ._tensor import as_dtype

__all__ = ['convert']


def convert(module, dtype):
    """Convert, in place, the weights of every Linear, Conv2d and Embedding
    in module (a libnn.nn.Module, or a loaded model: its module is converted)
    to dtype ('bf16' / libnn.bfloat16, 'f16' / libnn.float16, or 'f32').
    Returns module. Nothing changes on error (LibnnError)."""
    dt = as_dtype(dtype)
    target = module.module if hasattr(module, 'predict') else module
    check(lib.nn_module_convert(target._handle(), dt.value))
    return module
