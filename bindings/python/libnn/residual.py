"""Residual: the skip connection of a ResNet block, y = body(x) + shortcut(x)
(the input itself without a shortcut). A built-in kind: saved models reload
with no Python code, and it exports to ONNX.

    block = nn.Sequential(
        nn.Residual(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(8))),
        nn.ReLU())
"""
from . import nn as _nn
from ._lib import lib
from .nn import Module, _Builtin

__all__ = ['Residual']


class Residual(_Builtin):
    """y = body(x) + shortcut(x); shortcut None: y = body(x) + x (also
    reachable as libnn.nn.Residual)."""

    def __init__(self, body, shortcut=None):
        for what, m in (('body', body), ('shortcut', shortcut)):
            if (m is not None or what == 'body') and not isinstance(m, Module):
                raise TypeError('Residual: %s must be a Module, got %s'
                                % (what, type(m).__name__))
        super().__init__(lib.nn_residual_new(
            lib.nn_module_retain(body._handle()),
            None if shortcut is None else lib.nn_module_retain(shortcut._handle())),
            shortcut=shortcut is not None)
        self._children['body'] = body
        if shortcut is not None:
            self._children['shortcut'] = shortcut


_nn.Residual = Residual
_nn._TYPES['Residual'] = Residual
_nn.__all__.append('Residual')
