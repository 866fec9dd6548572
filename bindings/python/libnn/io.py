"""Model files: save / load modules, state dicts and checkpoints."""
import ctypes
import os
from ctypes import POINTER, byref, c_char_p, c_double, c_int64, c_size_t, c_void_p

from . import _decls
from ._lib import check, check_ptr, lib, raise_last, text
from ._handle import Handle
from ._tensor import _h, _wrap


__all__ = ['save', 'save_bytes', 'load', 'load_bytes', 'Model', 'save_state_dict',
           'load_state_dict', 'load_weights', 'load_checkpoint']

_IO = {k[len('NN_IO_OPTION_'):].lower(): v for k, v in _decls.ENUMS['nn_io_option']}


def _b(s):
    return os.fsencode(s) if not isinstance(s, bytes) else s


def io_option(options_handle, key):
    """Read one option of an nn_io_options handle (for tests and tools)."""
    v = c_int64()
    check(lib.nn_io_options_get(options_handle, _IO[key], byref(v)))
    return v.value


class _Options:
    """Context manager building an nn_io_options (None when all default)."""

    def __init__(self, compression=None, module_tree=None, max_bytes=None, strict=None,
                 optimizer=None, scheduler=None, generator=None, epoch=0, step=0,
                 aligned=None, mmap=None):
        self.vals = {k: v for k, v in (('compression', compression),
                                       ('module_tree', module_tree),
                                       ('max_bytes', max_bytes), ('strict', strict),
                                       ('aligned', aligned), ('mmap', mmap))
                     if v is not None}
        self.training = (optimizer, scheduler, generator, epoch, step)
        self.h = None

    def __enter__(self):
        if not self.vals and self.training[0] is None:
            return None
        self.h = check_ptr(lib.nn_io_options_new())
        try:
            for k, v in self.vals.items():
                check(lib.nn_io_options_set(self.h, _IO[k], int(v)))
            opt, sched, gen, epoch, step = self.training
            if opt is not None:
                check(lib.nn_io_options_set_training(
                    self.h, opt._handle(), None if sched is None else sched._handle(),
                    None if gen is None else gen._handle(), int(epoch), int(step)))
        except BaseException:
            lib.nn_io_options_free(self.h)
            raise
        return self.h

    def __exit__(self, *exc):
        if self.h:
            lib.nn_io_options_free(self.h)
        return False


# ---------------------------------------------------------------- metadata


def _meta_from_dict(meta):
    """A new nn_meta from {key: str | number | [numbers] | [str]}."""
    m = check_ptr(lib.nn_meta_new())
    try:
        for k, v in meta.items():
            key = k.encode('utf-8')
            if isinstance(v, str):
                check(lib.nn_meta_set_string(m, key, v.encode('utf-8')))
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                check(lib.nn_meta_set_number(m, key, float(v)))
            elif isinstance(v, (list, tuple)) and all(isinstance(s, str) for s in v) and v:
                arr = (c_char_p * len(v))(*[s.encode('utf-8') for s in v])
                check(lib.nn_meta_set_strings(m, key, arr, len(v)))
            elif isinstance(v, (list, tuple)):
                arr = (c_double * max(len(v), 1))(*[float(x) for x in v])
                check(lib.nn_meta_set_array(m, key, arr, len(v)))
            else:
                raise TypeError('metadata %r: unsupported value type %s'
                                % (k, type(v).__name__))
    except BaseException:
        lib.nn_meta_free(m)
        raise
    return m


def _meta_to_dict(m):
    out = {}
    n = lib.nn_meta_count(m)
    if n < 0:
        raise_last()
    for i in range(n):
        key = lib.nn_meta_key(m, i)
        kind = lib.nn_meta_kind_of(m, key)
        name = text(key)
        if kind == 1:
            out[name] = text(check_ptr(lib.nn_meta_get_string(m, key)))
        elif kind == 2:
            v = c_double()
            check(lib.nn_meta_get_number(m, key, byref(v)))
            out[name] = v.value
        elif kind == 3:
            p, cnt = POINTER(c_double)(), c_int64()
            check(lib.nn_meta_get_array(m, key, byref(p), byref(cnt)))
            out[name] = [p[j] for j in range(cnt.value)]
        elif kind == 4:
            cnt = lib.nn_meta_strings_count(m, key)
            if cnt < 0:
                raise_last()
            out[name] = [text(lib.nn_meta_strings_get(m, key, j)) for j in range(cnt)]
    return out


class _Meta:
    def __init__(self, meta):
        self.meta, self.h = meta, None

    def __enter__(self):
        if self.meta is None:
            return None
        self.h = _meta_from_dict(self.meta)
        return self.h

    def __exit__(self, *exc):
        if self.h:
            lib.nn_meta_free(self.h)
        return False


def _report(st, report):
    """The report text a load wrote into report (freed here), then check(st)."""
    msg = ''
    if report.value:
        msg = ctypes.string_at(report.value).decode('utf-8', 'replace')
        lib.nn_free(report.value)
    check(st)
    return msg


def _take_buffer(data, size):
    try:
        return ctypes.string_at(data.value, size.value)
    finally:
        lib.nn_free(data.value)


# ------------------------------------------------------------------ models


def save(module, path, meta=None, **options):
    """Save a module (tree + weights) atomically to path. meta: a dict of
    strings, numbers, number lists, string lists. options: compression
    (0..9), module_tree (bool), aligned (True: every tensor stored at a
    64-byte file offset, so load(path, mmap=True) can map the file), and
    optimizer/scheduler/generator/epoch/step to write a training checkpoint."""
    with _Meta(meta) as m, _Options(**options) as o:
        check(lib.nn_model_save(module._handle(), _b(path), m, o))


def save_bytes(module, meta=None, **options):
    """The model file as bytes."""
    data, size = c_void_p(), c_size_t()
    with _Meta(meta) as m, _Options(**options) as o:
        check(lib.nn_model_save_buffer(module._handle(), m, o, byref(data), byref(size)))
    return _take_buffer(data, size)


class Model(Handle):
    """A loaded model file: .module, .meta, predict(x) / model(x)."""

    _free = staticmethod(lib.nn_model_free)

    def __init__(self, ptr):
        self._h = check_ptr(ptr)

    @property
    def module(self):
        """The module (its own reference: stays valid after the model is closed)."""
        from .nn import Module
        return Module._from_handle(check_ptr(lib.nn_model_module(self._handle())),
                                   borrowed=True)

    @property
    def meta(self):
        return _meta_to_dict(check_ptr(lib.nn_model_meta(self._handle())))

    def predict(self, x):
        """Inference in eval mode without grad (thread-safe in C)."""
        return _wrap(lib.nn_model_predict(self._handle(), _h(x)))

    __call__ = predict


def load(path, max_bytes=None, mmap=False):
    """Load a model file; raises FormatError, ChecksumError, TruncatedError,
    ... with the library's message for a bad file. mmap: True (or 1) maps an
    aligned file (saved with aligned=True): tensors view the file's pages,
    shared between processes, copied only when written; the tensor data's
    CRCs are not checked (2: verify every CRC first, by one read of the
    file). Other files are read and copied as usual."""
    with _Options(max_bytes=max_bytes, mmap=int(mmap) if mmap else None) as o:
        return Model(lib.nn_model_load(_b(path), o))


def load_bytes(data, max_bytes=None):
    data = bytes(data)
    with _Options(max_bytes=max_bytes) as o:
        return Model(lib.nn_model_load_buffer(data, len(data), o))


# ------------------------------------------------------------ state dicts


def _as_sd(state):
    from .nn import Module, _dict_to_sd
    if isinstance(state, Module):
        return check_ptr(lib.nn_module_state_dict(state._handle()))
    return _dict_to_sd(state)


def save_state_dict(state, path, compression=None):
    """Save a {name: Tensor} mapping (or a module's state) as a weights file."""
    sd = _as_sd(state)
    try:
        with _Options(compression=compression) as o:
            check(lib.nn_statedict_save(sd, _b(path), o))
    finally:
        lib.nn_statedict_free(sd)


def load_state_dict(path, max_bytes=None):
    """The named tensors of any model/weights/checkpoint file, as a dict."""
    from .nn import _take_sd
    with _Options(max_bytes=max_bytes) as o:
        sd = check_ptr(lib.nn_statedict_load(_b(path), o))
    return _take_sd(sd)


def load_weights(module, path, strict=True):
    """Load a file's tensors into module by name; returns the report text."""
    report = c_void_p()
    with _Options(strict=1 if strict else 0) as o:
        st = lib.nn_module_load_weights(module._handle(), _b(path), o, byref(report))
    return _report(st, report)


def load_checkpoint(path, module, optimizer, scheduler=None, generator=None):
    """Resume training state; returns (epoch, step)."""
    epoch, step = c_int64(), c_int64()
    check(lib.nn_checkpoint_load(_b(path), module._handle(), optimizer._handle(),
                                 None if scheduler is None else scheduler._handle(),
                                 None if generator is None else generator._handle(),
                                 byref(epoch), byref(step), None))
    return epoch.value, step.value


# ---------------------------------------------------------------- streams


def _writer(fileobj, errors):
    def write(data, size, user):
        try:
            fileobj.write(ctypes.string_at(data, size))
            return 0
        except BaseException as e:  # reported after the C call returns
            errors.append(e)
            return 1
    return _decls.nn_write_fn(write)


def _reader(fileobj, errors):
    def read(buf, size, user):
        try:
            chunk = fileobj.read(size)
            ctypes.memmove(buf, chunk, len(chunk))
            return len(chunk)
        except BaseException as e:
            errors.append(e)
            return -1
    return _decls.nn_read_fn(read)


def save_to(module, fileobj, meta=None, **options):
    """Write a model file to a binary file object (anything with .write)."""
    errors = []
    cb = _writer(fileobj, errors)   # lives until the call returns
    with _Meta(meta) as m, _Options(**options) as o:
        st = lib.nn_model_save_stream(module._handle(), cb, None, m, o)
    if errors:
        lib.nn_clear_error()
        raise errors[0]
    check(st)


def load_from(fileobj, max_bytes=None):
    """Read a model file from a binary file object (anything with .read)."""
    return _model_from_stream(lib.nn_model_load_stream, fileobj, max_bytes)


def _model_from_stream(load_stream, fileobj, max_bytes):
    """An nn_model from load_stream(read_cb, user, opts) fed by fileobj; an
    exception raised by fileobj.read wins over libnn's error."""
    errors = []
    cb = _reader(fileobj, errors)
    with _Options(max_bytes=max_bytes) as o:
        ptr = load_stream(cb, None, o)
    if errors:
        lib.nn_clear_error()
        if ptr:
            lib.nn_model_free(ptr)
        raise errors[0]
    return Model(ptr)


def save_state_dict_to(state, fileobj, compression=None):
    errors = []
    cb = _writer(fileobj, errors)
    sd = _as_sd(state)
    try:
        with _Options(compression=compression) as o:
            st = lib.nn_statedict_save_stream(sd, cb, None, o)
    finally:
        lib.nn_statedict_free(sd)
    if errors:
        lib.nn_clear_error()
        raise errors[0]
    check(st)


def load_state_dict_from(fileobj, max_bytes=None):
    from .nn import _take_sd
    errors = []
    cb = _reader(fileobj, errors)
    with _Options(max_bytes=max_bytes) as o:
        sd = lib.nn_statedict_load_stream(cb, None, o)
    if errors:
        lib.nn_clear_error()
        lib.nn_statedict_free(sd)
        raise errors[0]
    sd = check_ptr(sd)
    return _take_sd(sd)


def state_dict_bytes(state, compression=None):
    """A weights file as bytes."""
    data, size = c_void_p(), c_size_t()
    sd = _as_sd(state)
    try:
        with _Options(compression=compression) as o:
            check(lib.nn_statedict_save_buffer(sd, o, byref(data), byref(size)))
    finally:
        lib.nn_statedict_free(sd)
    return _take_buffer(data, size)


def load_state_dict_bytes(data, max_bytes=None):
    from .nn import _take_sd
    data = bytes(data)
    with _Options(max_bytes=max_bytes) as o:
        sd = check_ptr(lib.nn_statedict_load_buffer(data, len(data), o))
    return _take_sd(sd)


def load_weights_bytes(module, data, strict=True):
    data = bytes(data)
    report = c_void_p()
    with _Options(strict=1 if strict else 0) as o:
        st = lib.nn_module_load_weights_buffer(module._handle(), data, len(data), o,
                                               byref(report))
    return _report(st, report)


def load_checkpoint_bytes(data, module, optimizer, scheduler=None, generator=None):
    data = bytes(data)
    epoch, step = c_int64(), c_int64()
    check(lib.nn_checkpoint_load_buffer(data, len(data), module._handle(), optimizer._handle(),
                                        None if scheduler is None else scheduler._handle(),
                                        None if generator is None else generator._handle(),
                                        byref(epoch), byref(step), None))
    return epoch.value, step.value
