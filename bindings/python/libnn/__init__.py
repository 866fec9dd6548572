"""libnn: Python bindings (ctypes, pure Python) for the libnn C library.

    import libnn
    from libnn import nn, optim
    import libnn.functional as F

    x = libnn.arange(6.0).reshape(2, 3).requires_grad_()
    (x * x).sum().backward()
    print(x.grad)                      # 2x

The shared library is found through the LIBNN_PATH environment variable
(a file or a directory), then a build tree above this package
(build*/lib/libnn.so), then the system library path.

Memory: every Python object owns one reference to its C object and drops it
when garbage-collected (or at once with close()). Errors raise LibnnError
subclasses named after the C status (ShapeError, DtypeError, ...), carrying
the library's message; they also derive from the matching Python exception
(ValueError, TypeError, IndexError, ...).
"""
from . import _lib
from ._lib import LibnnError, error_class, lib_path
from ._tensor import (Generator, Tensor, arange, as_tensor, bernoulli, bool_, dtype, empty,
                      enable_grad, float, float32, from_numpy, full, full_like, int64,
                      is_grad_enabled, linspace, long, manual_seed, no_grad, normal, ones,
                      ones_like, rand, randn, randperm, set_grad_enabled, tensor, uint8,
                      uniform, zeros, zeros_like, float16, bfloat16, int8, half)
from . import functional
from .functional import (add, cat, clamp, concat, exp, log, matmul, maximum, minimum, relu,
                         sigmoid, softmax, sqrt, stack, tanh, where)
from . import nn, optim, data, io, dist, transformer, gpt, precision, quantization, profiler
from . import safetensors, sealed, residual
from .io import save, load, save_bytes, load_bytes
from .data import DataLoader, Dataset, TensorDataset, fit

# The exception classes, one per nn_status code (ShapeError, ...).
_ERRORS = {name: getattr(_lib, name) for name in _lib.__all__ if name.endswith('Error')}
globals().update(_ERRORS)

__version__ = _lib.text(_lib.lib.nn_version())

__all__ = [
    'LibnnError', 'error_class', 'lib_path', 'Generator', 'Tensor', 'arange', 'as_tensor',
    'bernoulli', 'bool_', 'dtype', 'empty', 'enable_grad', 'float', 'float32', 'from_numpy',
    'full', 'full_like', 'int64', 'is_grad_enabled', 'linspace', 'long', 'manual_seed',
    'no_grad', 'normal', 'ones', 'ones_like', 'rand', 'randn', 'randperm',
    'set_grad_enabled', 'tensor', 'uint8', 'uniform', 'zeros', 'zeros_like', 'functional',
    'add', 'cat', 'clamp', 'concat', 'exp', 'log', 'matmul', 'maximum', 'minimum', 'relu',
    'sigmoid', 'softmax', 'sqrt', 'stack', 'tanh', 'where', 'nn', 'optim', 'data', 'io', 'dist',
    'transformer', 'quantization',
    'save', 'load', 'save_bytes', 'load_bytes', 'DataLoader', 'Dataset', 'TensorDataset',
    'fit', 'version', 'backend_info', 'set_num_threads', 'get_num_threads', 'summary']
__all__.extend(sorted(_ERRORS))


def version():
    """The loaded library's version string."""
    return _lib.text(_lib.lib.nn_version())


def backend_info():
    """The compute backend in use: ISA tier, GEMM provider, cache sizes."""
    return _lib.text(_lib.lib.nn_backend_info())


def set_num_threads(n):
    """Threads libnn (and BLIS) may use; n >= 1."""
    _lib.check(_lib.lib.nn_set_num_threads(int(n)))


def get_num_threads():
    return _lib.lib.nn_get_num_threads()


def summary(module, input_shape):
    """The model summary table (layers, output shapes, parameters, FLOPs)."""
    return module.summary(input_shape)
