"""Low level: find libnn.so, declare every exported nn_* function for ctypes,
and turn C errors into Python exceptions.

Every function declared in the headers (see _decls.py, generated from them)
gets argtypes and restype here. A function declared in the headers but not
exported by the loaded library (an older build) becomes a stub that raises
UnsupportedError when called, so importing never fails on a partial build.
"""
import ctypes
import ctypes.util
import glob
import os
import threading

from . import _decls

__all__ = ['lib', 'lib_path', 'bound_names', 'missing_names', 'check', 'check_ptr',
           'raise_last', 'LibnnError', 'error_class']

# ---------------------------------------------------------------- errors


class LibnnError(Exception):
    """An error reported by libnn. .status is the nn_status code (negative),
    .status_name its constant name, .message the library's message."""

    status = None
    __module__ = 'libnn'

    def __init__(self, message, status=None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    @property
    def status_name(self):
        return _STATUS_NAMES.get(self.status, str(self.status))


# One subclass per status code; each also derives from the closest builtin
# so that `except ValueError` and friends work as a Python user expects.
_BUILTIN_BASE = {
    'NN_ERR_NOMEM': MemoryError, 'NN_ERR_NULL': ValueError, 'NN_ERR_INVALID': ValueError,
    'NN_ERR_SHAPE': ValueError, 'NN_ERR_DTYPE': TypeError, 'NN_ERR_OVERFLOW': OverflowError,
    'NN_ERR_RANGE': IndexError, 'NN_ERR_STATE': RuntimeError, 'NN_ERR_IO': OSError,
    'NN_ERR_FORMAT': ValueError, 'NN_ERR_CHECKSUM': ValueError, 'NN_ERR_VERSION': ValueError,
    'NN_ERR_TRUNCATED': ValueError, 'NN_ERR_UNSUPPORTED': NotImplementedError,
    'NN_ERR_NOT_FOUND': LookupError, 'NN_ERR_BAD_HANDLE': ValueError,
    'NN_ERR_NO_GRAD': RuntimeError, 'NN_ERR_LIMIT': ValueError,
    'NN_ERR_SIGNATURE': ValueError, 'NN_ERR_UNSIGNED': ValueError,
    'NN_ERR_WRONG_KEY': ValueError, 'NN_ERR_DECRYPT': ValueError, 'NN_ERR_TIMEOUT': TimeoutError,
}

_STATUS_NAMES = {v: k for k, v in _decls.ENUMS['nn_status']}
_ERROR_CLASSES = {}


def _class_name(const):
    # NN_ERR_NOT_FOUND -> NotFoundError
    return ''.join(w.capitalize() for w in const[len('NN_ERR_'):].split('_')) + 'Error'


for _const, _value in _decls.ENUMS['nn_status']:
    if _value >= 0:
        continue
    _bases = (LibnnError,) + ((_BUILTIN_BASE[_const],) if _const in _BUILTIN_BASE else ())
    _cls = type(_class_name(_const), _bases, {'status': _value, '__module__': 'libnn'})
    _ERROR_CLASSES[_value] = _cls
    globals()[_cls.__name__] = _cls
    __all__.append(_cls.__name__)


def error_class(status):
    """The exception class for an nn_status value (LibnnError if unknown)."""
    return _ERROR_CLASSES.get(status, LibnnError)


# ------------------------------------------------------------ discovery


def _soname():
    d = _decls.DEFINES
    major, minor = d['NN_VERSION_MAJOR'], d['NN_VERSION_MINOR']
    return 'libnn.so.0.%d' % minor if major == 0 else 'libnn.so.%d' % major


def _candidates():
    env = os.environ.get('LIBNN_PATH')
    if env:
        # An explicit setting is final: a wrong path must not silently fall
        # back to some other libnn.
        if os.path.isdir(env):
            env = os.path.join(env, 'libnn.so')
        return [env], True
    found = []
    here = os.path.dirname(os.path.abspath(__file__))
    d = here
    while True:
        hits = []
        for p in glob.glob(os.path.join(d, 'build*', 'lib', 'libnn.so')):
            try:
                hits.append((os.path.getmtime(p), p))  # follows the symlink
            except OSError:                            # dangling: a build in progress
                pass
        if hits:
            # Several build trees: the most recently built first.
            found += [p for _, p in sorted(hits, reverse=True)]
            break
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    sys_name = ctypes.util.find_library('nn')
    if sys_name:
        found.append(sys_name)
    found.append(_soname())
    return found, False


def _load():
    paths, explicit = _candidates()
    errors = []
    for p in paths:
        try:
            return ctypes.CDLL(p), p
        except OSError as e:
            errors.append('%s: %s' % (p, e))
    hint = '' if explicit else ' (set LIBNN_PATH to the path of libnn.so)'
    raise ImportError('libnn: cannot load the shared library%s; tried:\n  %s'
                      % (hint, '\n  '.join(errors)))


class _Lib:
    """Namespace of the bound C functions: lib.nn_add(a, b) etc."""


def _missing_stub(name):
    def stub(*args):
        raise error_class(-14)('%s: not exported by the loaded libnn (%s); '
                               'the library is older than the bindings' % (name, lib_path), -14)
    stub.__name__ = name
    return stub


def _bind():
    cdll, path = _load()
    ns = _Lib()
    bound, missing = [], []
    for name, restype, argtypes, argnames, header in _decls.FUNCTIONS:
        try:
            fn = getattr(cdll, name)
        except AttributeError:
            setattr(ns, name, _missing_stub(name))
            missing.append(name)
            continue
        fn.restype = restype
        fn.argtypes = list(argtypes)
        setattr(ns, name, fn)
        bound.append(name)
    return cdll, path, ns, frozenset(bound), frozenset(missing)


_cdll, lib_path, lib, bound_names, missing_names = _bind()

# ---------------------------------------------------------- error checks


# Per-thread state shared by the Python layers: .depth counts Python
# callbacks (custom module forwards) running on this thread inside a C scope;
# .pending holds an exception raised by such a callback until the Python
# code that made the C call sees the failure and re-raises it.
tls = threading.local()


def raise_last(fallback_status=None, fallback_msg=None):
    """Raise the library's last error (and clear it, so the next failing
    call reports its own cause). An exception raised by a Python callback
    inside the failed call is re-raised instead (it is the root cause)."""
    pending = getattr(tls, 'pending', None)
    if pending is not None:
        tls.pending = None
        lib.nn_clear_error()
        raise pending
    status = lib.nn_last_status()
    msg = lib.nn_last_error()
    msg = msg.decode('utf-8', 'replace') if msg else ''
    lib.nn_clear_error()
    if status == 0:
        status = fallback_status if fallback_status is not None else -8
        msg = msg or fallback_msg or 'libnn: call failed without an error message'
    raise error_class(status)(msg, status)


def check(status):
    """Check an nn_status return value; returns it when OK."""
    if status < 0:
        if getattr(tls, 'pending', None) is not None:
            raise_last()
        s = lib.nn_last_status()
        if s == 0:
            lib.nn_clear_error()
            msg = lib.nn_status_string(status)
            raise error_class(status)(msg.decode() if msg else str(status), status)
        raise_last()
    return status


def check_ptr(ptr):
    """Check a pointer result (None == NULL raises the last error)."""
    if not ptr:
        raise_last()
    return ptr


def text(b):
    return b.decode('utf-8', 'replace') if b is not None else None
