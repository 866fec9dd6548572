"""Shared helpers for the binding tests. Run with the build tree's library:
    LIBNN_PATH=build/lib/libnn.so PYTHONPATH=bindings/python python3 -m pytest bindings/python/tests
(meson test --suite python sets both)."""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PKG_ROOT = os.path.dirname(HERE)
if PKG_ROOT not in sys.path:
    sys.path.insert(0, PKG_ROOT)

import libnn  # noqa: E402,F401  (fails early when the library is missing)
from libnn import _lib  # noqa: E402

try:
    import numpy  # noqa: F401
    HAVE_NUMPY = True
except Exception:  # pragma: no cover
    HAVE_NUMPY = False

SOURCE_ROOT = os.environ.get('LIBNN_SOURCE_ROOT',
                             os.path.normpath(os.path.join(PKG_ROOT, '..', '..')))
BUILD_ROOT = os.environ.get('LIBNN_BUILD_ROOT') or os.path.dirname(
    os.path.dirname(os.path.abspath(_lib.lib_path)))
FASHION = os.environ.get('NN_FASHION_MNIST', '/usr/share/datasets/fashion-mnist')


def header_text():
    """include/nn.h followed by any section headers (nn_part_*.h) not yet
    merged into it."""
    inc = os.path.join(SOURCE_ROOT, 'include')
    names = ['nn.h'] + sorted(f for f in os.listdir(inc)
                              if f.startswith('nn_part_') and f.endswith('.h'))
    return ''.join(open(os.path.join(inc, f), encoding='utf-8').read() for f in names)


def header_section(start, end):
    """The header text from the banner titled `start` to the one titled `end`
    (banners read "/*  Title ... */")."""
    text = header_text()
    i = text.index('/*  ' + start)
    j = text.index('/*  ' + end, i)
    return text[i:j]


def needs(*names):
    """Skip a test whose C functions the loaded library does not export yet
    (a section still being written). test_exports fails on any such gap."""
    missing = [n for n in names if n in _lib.missing_names or
               not hasattr(_lib.lib, n)]
    return pytest.mark.skipif(bool(missing), reason='library lacks %s' % ', '.join(missing))


needs_numpy = pytest.mark.skipif(not HAVE_NUMPY, reason='numpy not importable')


def array_close(t, want, tol=1e-5):
    """A Tensor (or array) t against want: the same shape, and equal within
    tol (absolute and relative), compared in float64. Needs numpy."""
    import numpy as np
    got = t.numpy() if isinstance(t, libnn.Tensor) else np.asarray(t)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def assert_close(got, want, tol=1e-5):
    """Compare nested lists / numbers elementwise with a relative tolerance."""
    if isinstance(want, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(want), (got, want)
        for g, w in zip(got, want):
            assert_close(g, w, tol)
    else:
        assert abs(got - want) <= tol * max(1.0, abs(want)), (got, want)
