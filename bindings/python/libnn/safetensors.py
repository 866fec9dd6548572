"""safetensors files: load and save state dicts, load into modules.

    sd, meta = safetensors.load('model.safetensors', mmap=True)
    safetensors.save(module, 'out.safetensors', meta={'format': 'pt'})
    safetensors.load_into(module, 'model.safetensors', mmap=True)

F32/I64/U8 load as themselves, F16/BF16 widened to f32. With mmap=True
(from a path) tensors view a private mapping of the file: pages shared with
other processes, copied only when written (the file never changes)."""
import ctypes
from ctypes import POINTER, byref, c_size_t, c_void_p

from ._lib import check, check_ptr, lib
from .io import _as_sd, _b, _meta_to_dict, _Meta, _Options, _report, _take_buffer

__all__ = ['load', 'load_bytes', 'save', 'save_bytes', 'load_into', 'load_into_bytes']


def _finish(sd, meta):
    from .nn import _take_sd
    try:
        d = _take_sd(check_ptr(sd))
    finally:
        m = meta.value
        md = {}
        if m:
            try:
                md = _meta_to_dict(m)
            finally:
                lib.nn_meta_free(m)
    return d, md


def load(path, mmap=False, max_bytes=None):
    """(state dict, metadata dict) of a safetensors file. mmap: True or 1 to
    map the file (tensors view it), 2 to map and verify."""
    meta = c_void_p()
    with _Options(max_bytes=max_bytes, mmap=int(mmap) if mmap else None) as o:
        sd = lib.nn_safetensors_load(_b(path), o, ctypes.cast(byref(meta), POINTER(c_void_p)))
    return _finish(sd, meta)


def load_bytes(data, max_bytes=None):
    """(state dict, metadata dict) of safetensors bytes."""
    data = bytes(data)
    meta = c_void_p()
    with _Options(max_bytes=max_bytes) as o:
        sd = lib.nn_safetensors_load_buffer(data, len(data), o,
                                            ctypes.cast(byref(meta), POINTER(c_void_p)))
    return _finish(sd, meta)


def save(state, path, meta=None):
    """Save a module's state or a {name: Tensor} mapping; meta: {str: str}."""
    sd = _as_sd(state)
    try:
        with _Meta(meta) as m:
            check(lib.nn_safetensors_save(sd, _b(path), m, None))
    finally:
        lib.nn_statedict_free(sd)


def save_bytes(state, meta=None):
    """The safetensors file as bytes."""
    sd = _as_sd(state)
    data, size = c_void_p(), c_size_t()
    try:
        with _Meta(meta) as m:
            check(lib.nn_safetensors_save_buffer(sd, m, None, byref(data), byref(size)))
    finally:
        lib.nn_statedict_free(sd)
    return _take_buffer(data, size)


def load_into(module, path, strict=True, mmap=False):
    """Load a safetensors file into module by name (the module takes the
    loaded tensors; with mmap they view the file); returns the report."""
    report = c_void_p()
    with _Options(strict=1 if strict else 0, mmap=int(mmap) if mmap else None) as o:
        st = lib.nn_module_load_safetensors(module._handle(), _b(path), o, byref(report))
    return _report(st, report)


def load_into_bytes(module, data, strict=True):
    data = bytes(data)
    report = c_void_p()
    with _Options(strict=1 if strict else 0) as o:
        st = lib.nn_module_load_safetensors_buffer(module._handle(), data, len(data), o,
                                                   byref(report))
    return _report(st, report)
