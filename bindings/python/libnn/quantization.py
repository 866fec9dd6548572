"""int8 post-training quantization (torch.ao.quantization-like).

    from libnn import quantization
    report = quantization.quantize_dynamic(net, calib=x)      # in place
    print(report)                                              # per-layer max |error|
    report = quantization.quantize_static(net, loader, batches=8)
    libnn.save(net, 'model-int8.nnm')                          # int8 weights in the file

Every Linear and Conv2d (groups 1, dilation 1) below net's root becomes a
QuantizedLinear / QuantizedConv2d with per-output-channel int8 weights;
activations are quantized per row / per image at run time (dynamic) or with
a scale and zero point fixed from calibration batches (static). Quantized
layers are inference-only. See nn.h, "Quantization".
"""
import ctypes
from ctypes import byref, c_void_p

from ._lib import check, lib
from ._tensor import _h

__all__ = ['quantize_dynamic', 'quantize_static']


def _take_report(report):
    msg = None
    if report.value:
        msg = ctypes.string_at(report.value).decode('utf-8', 'replace')
        lib.nn_free(report.value)
    return msg


def _refresh(module):
    """The C side replaced children in place: point the Python wrappers'
    child caches at the modules C now holds."""
    from .nn import Module
    children = module.__dict__.get('_children')
    if not children:
        return
    for name, child in list(children.items()):
        ptr = lib.nn_module_get_module(module._handle(), name.encode())
        if ptr and ptr != child._h:
            children[name] = Module._from_handle(ptr, borrowed=True)
        else:
            _refresh(child)


def quantize_dynamic(model, calib=None):
    """Quantize model in place with dynamic activations. With an input batch
    calib, returns the report text (per-layer and whole-model max |error|);
    else None."""
    report = c_void_p()
    st = lib.nn_quantize_dynamic(model._handle(), _h(calib) if calib is not None else None,
                                 byref(report) if calib is not None else None)
    msg = _take_report(report)
    check(st)
    _refresh(model)
    return msg


def quantize_static(model, loader, batches=1, report=True):
    """Quantize model in place with static activations calibrated on the
    first `batches` batches of loader (a DataLoader); returns the report
    text (None when report is False)."""
    rep = c_void_p()
    st = lib.nn_quantize_static(model._handle(), loader._handle(), int(batches),
                                byref(rep) if report else None)
    msg = _take_report(rep)
    check(st)
    _refresh(model)
    return msg
