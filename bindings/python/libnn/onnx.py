"""ONNX import and export: load a model exported by torch.onnx.export (or
any ONNX file of opsets 11-17 whose operators libnn runs) as a Model, and
write libnn modules as ONNX files for ONNX Runtime and friends."""
from ctypes import byref, c_int, c_int64, c_size_t, c_void_p

from . import _decls
from ._lib import check, lib
from .io import Model, _b, _model_from_stream, _Options, _take_buffer

__all__ = ['load', 'load_bytes', 'load_from', 'save', 'save_bytes', 'save_n', 'save_bytes_n']

_DTYPES = {k[len('NN_DTYPE_'):].lower(): v for k, v in _decls.ENUMS['nn_dtype']}


def load(path, max_bytes=None):
    """Import an ONNX file; raises UnsupportedError naming the operator, the
    node and the opset for what libnn cannot run, FormatError for a broken
    graph."""
    with _Options(max_bytes=max_bytes) as o:
        return Model(lib.nn_onnx_load(_b(path), o))


def load_bytes(data, max_bytes=None):
    """Import an ONNX model held in memory."""
    data = bytes(data)
    with _Options(max_bytes=max_bytes) as o:
        return Model(lib.nn_onnx_load_buffer(data, len(data), o))


def load_from(fileobj, max_bytes=None):
    """Import an ONNX model from a binary file object (anything with .read)."""
    return _model_from_stream(lib.nn_onnx_load_stream, fileobj, max_bytes)


def _shape(input_shape):
    shape = [int(d) for d in input_shape]
    return (c_int64 * max(len(shape), 1))(*shape), len(shape)


def save(module, path, input_shape, dtype='f32'):
    """Export module as an ONNX file (opset 17) traced on an input of this
    shape (the batch dim stays symbolic); dtype 'i64' for token ids."""
    arr, n = _shape(input_shape)
    check(lib.nn_onnx_save(module._handle(), _b(path), _DTYPES[dtype], arr, n, None))


def save_bytes(module, input_shape, dtype='f32'):
    """The ONNX export of module as bytes."""
    arr, n = _shape(input_shape)
    data, size = c_void_p(), c_size_t()
    check(lib.nn_onnx_save_buffer(module._handle(), _DTYPES[dtype], arr, n, None, byref(data),
                                  byref(size)))
    return _take_buffer(data, size)


def _inputs(shapes, dtypes):
    shapes = [[int(d) for d in s] for s in shapes]
    if dtypes is None:
        dtypes = ['f32'] * len(shapes)
    if len(dtypes) != len(shapes):
        raise ValueError('save_n: %d shapes but %d dtypes' % (len(shapes), len(dtypes)))
    flat = [d for s in shapes for d in s]
    n = max(len(shapes), 1)
    return (len(shapes), (c_int * n)(*[_DTYPES[d] for d in dtypes]),
            (c_int64 * max(len(flat), 1))(*flat), (c_int * n)(*[len(s) for s in shapes]))


def save_n(module, path, input_shapes, dtypes=None):
    """Export a module of several inputs traced on these shapes (a
    TransformerDecoder(Layer) on (tgt, memory), a MultiheadAttention on
    (query, key, value)); graph inputs x0, x1, ...; dtypes default to f32."""
    n, dt, flat, nd = _inputs(input_shapes, dtypes)
    check(lib.nn_onnx_save_n(module._handle(), _b(path), n, dt, flat, nd, None))


def save_bytes_n(module, input_shapes, dtypes=None):
    """The ONNX export of a module of several inputs as bytes."""
    n, dt, flat, nd = _inputs(input_shapes, dtypes)
    data, size = c_void_p(), c_size_t()
    check(lib.nn_onnx_save_buffer_n(module._handle(), n, dt, flat, nd, None, byref(data),
                                    byref(size)))
    return _take_buffer(data, size)
