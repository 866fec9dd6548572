"""Modules (layers and containers), losses and Python-defined modules,
shaped like torch.nn.

Built-in layers wrap the C modules. A Python subclass of Module with its own
forward becomes a C user-defined module ("Custom:<ClassName>") whose forward
calls back into Python, so it can sit inside a Sequential, be summarised and
have its weights saved like any layer."""
import ctypes
import itertools
import sys
import weakref
from collections import OrderedDict
from ctypes import byref, c_char_p, c_void_p

from . import functional as F
from ._decls import nn_forward_fn, nn_forward_n_fn, nn_user_free_fn
from ._lib import check, check_ptr, error_class, lib, raise_last, text, tls
from ._tensor import Tensor, _closed_error, _h, _shape_arg, _wrap, _wrap_borrowed

_is_finalizing = sys.is_finalizing

__all__ = ['Module', 'Parameter', 'Sequential', 'Linear', 'Conv1d', 'Conv2d',
           'ConvTranspose2d', 'MaxPool2d', 'AvgPool2d', 'AdaptiveAvgPool2d', 'Flatten',
           'Dropout', 'BatchNorm1d', 'BatchNorm2d', 'LayerNorm', 'GroupNorm', 'Embedding',
           'RNN', 'LSTM', 'GRU', 'Select', 'ModuleList', 'ModuleDict', 'ReLU', 'LeakyReLU',
           'ELU', 'GELU', 'SiLU', 'Sigmoid', 'Tanh', 'Softplus', 'Hardtanh', 'Softmax', 'LogSoftmax', 'Identity',
           'MSELoss', 'L1Loss', 'SmoothL1Loss', 'HuberLoss', 'CrossEntropyLoss', 'NLLLoss',
           'BCELoss', 'BCEWithLogitsLoss', 'KLDivLoss', 'init', 'utils', 'functional']
functional = F


def _b(s):
    return s.encode('utf-8') if isinstance(s, str) else s


class Parameter(Tensor):
    """A leaf tensor that requires grad; assigning one to an attribute of a
    Python Module registers it as a parameter. Shares data with `data`."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        t = data.detach() if isinstance(data, Tensor) else Tensor(data)
        self._h, t._h = t._h, None
        self.requires_grad_(requires_grad)


# ------------------------------------------------- custom-module callbacks

_registry = {}            # user key -> weakref to the Python Module
_next_key = itertools.count(1)


def _run_user_forward(user, args_of):
    """The body both trampolines share: find the Python module registered
    under `user`, call its forward with args_of()'s tuple, keep the result
    alive until the outermost Python call returns (nn_module_forward takes
    its own reference right after) and hand back its handle. An exception
    is parked in tls.pending (re-raised by the caller) and NULL returned."""
    tls.depth = getattr(tls, 'depth', 0) + 1
    try:
        ref = _registry.get(user or 0)
        mod = ref() if ref is not None else None
        if mod is None:
            raise error_class(-16)('libnn: the Python object of a user-defined module is '
                                   'gone', -16)
        out = mod.forward(*args_of())
        if not isinstance(out, Tensor):
            raise TypeError('%s.forward must return a libnn.Tensor, got %s'
                            % (type(mod).__name__, type(out).__name__))
        if not hasattr(tls, 'keep'):
            tls.keep = []
        tls.keep.append(out)
        if not out._h:
            raise _closed_error()
        return out._h
    except BaseException as e:  # noqa: B902  (re-raised by the caller)
        tls.pending = e
        return None
    finally:
        tls.depth -= 1


def _forward_trampoline(self_ptr, x_ptr, user):
    """C calls this inside nn_module_forward (with a C scope open)."""
    return _run_user_forward(user, lambda: (_wrap_borrowed(x_ptr),))


def _forward_n_trampoline(self_ptr, inputs, n, user):
    """C calls this inside nn_module_forward_n: forward(*inputs), None for
    an absent input."""
    return _run_user_forward(
        user, lambda: tuple(_wrap_borrowed(inputs[i]) if inputs[i] else None for i in range(n)))


def _user_free(user):
    _registry.pop(user or 0, None)


_forward_cb = nn_forward_fn(_forward_trampoline)   # module-level: lives forever
_forward_n_cb = nn_forward_n_fn(_forward_n_trampoline)
_free_cb = nn_user_free_fn(_user_free)


class _CallFrame:
    """Around a C call that may run Python forwards: results they return are
    kept alive until the outermost such call has returned."""

    def __enter__(self):
        self.outer = getattr(tls, 'depth', 0) == 0
        if self.outer:
            tls.keep = []
            tls.pending = None   # never report a stale callback error

    def __exit__(self, *exc):
        if self.outer:
            tls.keep = []
        return False


def _forward(mh, x):
    """nn_module_forward from Python, with callback bookkeeping."""
    with _CallFrame():
        return _wrap(lib.nn_module_forward(mh, _h(x)))


def _forward_n(mh, xs):
    """nn_module_forward_n from Python (None: an absent optional input)."""
    arr = (c_void_p * max(len(xs), 1))(*[None if x is None else _h(x) for x in xs])
    with _CallFrame():
        return _wrap(lib.nn_module_forward_n(mh, arr, len(xs)))


# ------------------------------------------------------------------ Module


class Module:
    """Base of every layer. Subclass it like torch.nn.Module: call
    super().__init__(), assign Parameters and Modules as attributes, and
    define forward(x) (one tensor in, one out)."""

    _h = None

    def __init__(self):
        self._init_bare()
        key = next(_next_key)
        _registry[key] = weakref.ref(self)
        name = _b(type(self).__name__)
        ptr = lib.nn_module_custom_new(name, _forward_cb, key, _free_cb)
        if not ptr:
            _registry.pop(key, None)
            raise_last()
        object.__setattr__(self, '_h', ptr)
        check(lib.nn_module_custom_set_forward_n(ptr, _forward_n_cb))

    def _init_bare(self):
        object.__setattr__(self, '_children', OrderedDict())
        object.__setattr__(self, '_extra', {})

    @classmethod
    def _from_handle(cls, ptr, borrowed=False):
        """Wrap a C module (a new reference, or a borrowed one we retain)."""
        if not ptr:
            raise_last()
        if borrowed:
            # A user-defined module: give back its Python object.
            ref = _registry.get(lib.nn_module_user(ptr) or 0)
            obj = ref() if ref is not None else None
            if obj is not None and obj._h == ptr:
                return obj
            ptr = lib.nn_module_retain(ptr)
        obj = object.__new__(_class_for(ptr) if cls is Module else cls)
        obj._init_bare()
        object.__setattr__(obj, '_h', ptr)
        return obj

    def _handle(self):
        h = self._h
        if not h:
            if '_children' not in self.__dict__:
                raise RuntimeError('%s: Module.__init__ was not called; call '
                                   'super().__init__() first in __init__'
                                   % type(self).__name__)
            raise _closed_error(type(self).__name__)
        return h

    @property
    def _as_parameter_(self):
        return c_void_p(self._handle())

    # -- attributes: registering parameters, buffers and submodules
    def __setattr__(self, name, value):
        if self._h and not name.startswith('_') and self._is_custom():
            if isinstance(value, Module):
                check(lib.nn_module_register_module(self._h, _b(name),
                                                    lib.nn_module_retain(value._handle())))
                self._children[name] = value
            elif isinstance(value, Parameter):
                check(lib.nn_module_register_parameter(self._h, _b(name), _h(value)))
        object.__setattr__(self, name, value)

    def _is_custom(self):
        return not isinstance(self, _Builtin)

    def register_buffer(self, name, tensor):
        check(lib.nn_module_register_buffer(self._handle(), _b(name), _h(tensor)))
        object.__setattr__(self, name, tensor)

    def register_parameter(self, name, param):
        check(lib.nn_module_register_parameter(self._handle(), _b(name), _h(param)))
        object.__setattr__(self, name, param)

    def add_module(self, name, module):
        self.__setattr__(name, module)

    # -- copies: a built-in module tree is copied through an in-memory model
    # file; copying the handle itself would free it twice.
    def __reduce__(self):
        if self._is_custom():
            raise TypeError('cannot copy or pickle the Python module %s; build a new one '
                            'and load_state_dict()' % type(self).__name__)
        from . import io
        return (_module_from_bytes, (io.save_bytes(self), self.training))

    def __copy__(self):
        fn, args = self.__reduce__()
        return fn(*args)

    def __deepcopy__(self, memo):
        return self.__copy__()

    # -- lifetime
    def close(self):
        h = self._h
        object.__setattr__(self, '_h', None)
        if h:
            lib.nn_module_free(h)

    def __del__(self):
        h = self._h
        if h:
            object.__setattr__(self, '_h', None)
            try:
                if not _is_finalizing():
                    lib.nn_module_free(h)
            except Exception:
                pass

    # -- running
    def forward(self, x):
        """Built-in layers run in C; Python subclasses override this."""
        if self._is_custom():
            raise NotImplementedError('%s must define forward(x)' % type(self).__name__)
        return _forward(self._handle(), x)

    def __call__(self, *args, **kwargs):
        if len(args) == 1 and not kwargs and isinstance(args[0], Tensor):
            return _forward(self._handle(), args[0])
        return self.forward(*args, **kwargs)

    def forward_n(self, *inputs):
        """Run the C multi-input forward (nn_module_forward_n) on inputs
        (None: an absent optional input)."""
        return _forward_n(self._handle(), inputs)

    @property
    def num_inputs(self):
        """(min, max) number of inputs the module's forward takes."""
        lo, hi = ctypes.c_int(), ctypes.c_int()
        check(lib.nn_module_num_inputs(self._handle(), byref(lo), byref(hi)))
        return lo.value, hi.value

    # -- introspection
    @property
    def type_name(self):
        return text(check_ptr(lib.nn_module_type_name(self._handle())))

    @property
    def training(self):
        return bool(lib.nn_module_is_training(self._handle()))

    def train(self, mode=True):
        check(lib.nn_module_train(self._handle(), bool(mode)))
        return self

    def eval(self):
        return self.train(False)

    def _named(self, count_fn, get_fn):
        h = self._handle()
        n = count_fn(h)
        if n < 0:
            raise_last()
        out = []
        for i in range(n):
            name = c_char_p()
            t = get_fn(h, i, byref(name))
            out.append((text(name.value), _wrap_borrowed(check_ptr(t))))
        return out

    def named_parameters(self):
        return self._named(lib.nn_module_num_parameters, lib.nn_module_parameter)

    def parameters(self):
        return [t for _, t in self.named_parameters()]

    def named_buffers(self):
        return self._named(lib.nn_module_num_buffers, lib.nn_module_buffer)

    def buffers(self):
        return [t for _, t in self.named_buffers()]

    def get_parameter(self, name):
        return _wrap_borrowed(check_ptr(lib.nn_module_get_parameter(self._handle(), _b(name))))

    def get_buffer(self, name):
        return _wrap_borrowed(check_ptr(lib.nn_module_get_buffer(self._handle(), _b(name))))

    def get_submodule(self, name):
        return Module._from_handle(lib.nn_module_get_module(self._handle(), _b(name)),
                                   borrowed=True)

    def num_parameters(self):
        """Total number of parameter scalars (sum of p.numel())."""
        n = lib.nn_module_param_count(self._handle())
        if n < 0:
            raise_last()
        return n

    def requires_grad_(self, flag=True):
        check(lib.nn_module_set_requires_grad(self._handle(), bool(flag)))
        return self

    def zero_grad(self):
        check(lib.nn_module_zero_grad(self._handle()))

    def state_dict(self):
        """OrderedDict name -> Tensor sharing data with the module."""
        return _take_sd(check_ptr(lib.nn_module_state_dict(self._handle())))

    def load_state_dict(self, state, strict=True):
        """Copy values in; returns the report ('' when everything matched)."""
        sd = _dict_to_sd(state)
        report = c_void_p()
        try:
            st = lib.nn_module_load_state_dict(self._handle(), sd, bool(strict), byref(report))
            msg = _take_string(report)
            check(st)
            return msg
        finally:
            lib.nn_statedict_free(sd)

    def summary(self, input_shape):
        """A printable table of the layers for an input of input_shape."""
        sh, n = _shape_arg(input_shape)
        with _CallFrame():
            return _take_string(c_void_p(check_ptr(lib.nn_module_summary(self._handle(),
                                                                         sh, n))))

    def save(self, path, meta=None, **options):
        from . import io
        io.save(self, path, meta=meta, **options)

    def load_weights(self, path, strict=True):
        from . import io
        return io.load_weights(self, path, strict=strict)

    def children(self):
        return list(self._children.values())

    def tie(self, dst, src):
        """Weight tying: parameter dst (a dotted name) becomes the tensor of
        parameter src, as `head.weight = emb.weight` does in PyTorch; kept
        through save and load (the file stores it once)."""
        check(lib.nn_module_tie(self._handle(), _b(dst), _b(src)))
        return self

    def __repr__(self):
        try:
            return '%s(%s)' % (self.type_name, self.extra_repr())
        except Exception:
            return '%s(<closed>)' % type(self).__name__

    def extra_repr(self):
        return ''


def _module_from_bytes(data, training):
    from . import io
    with io.load_bytes(data) as model:
        m = model.module
    return m.train(training)


class _Builtin(Module):
    """A C built-in layer; constructors fill _h."""

    def __init__(self, ptr, **extra):
        self._init_bare()
        object.__setattr__(self, '_h', check_ptr(ptr))
        self._extra.update(extra)

    def extra_repr(self):
        return ', '.join('%s=%r' % kv for kv in self._extra.items())

    def __getattr__(self, name):
        # weight, bias, running_mean ... read through to the C module.
        if name.startswith('_'):
            raise AttributeError(name)
        h = self.__dict__.get('_h') or type(self)._h
        if h:
            p = lib.nn_module_get_parameter(h, _b(name))
            if p:
                return _wrap_borrowed(p)
            b = lib.nn_module_get_buffer(h, _b(name))
            if b:
                return _wrap_borrowed(b)
            lib.nn_clear_error()
        raise AttributeError('%s has no attribute %r' % (type(self).__name__, name))


def _take_string(p):
    """Copy and free a char * the library allocated for us."""
    if not p.value:
        return None
    try:
        return ctypes.string_at(p.value).decode('utf-8', 'replace')
    finally:
        lib.nn_free(p.value)


def _sd_get(sd, name):
    """One entry of an nn_statedict by name (a new Tensor reference)."""
    return _wrap_borrowed(check_ptr(lib.nn_statedict_get(sd, _b(name))))


def _sd_to_dict(sd):
    out = OrderedDict()
    n = lib.nn_statedict_size(sd)
    for i in range(n):
        out[text(lib.nn_statedict_name(sd, i))] = _wrap_borrowed(
            check_ptr(lib.nn_statedict_tensor(sd, i)))
    return out


def _take_sd(sd):
    """The dict of a NEW nn_statedict handle, which is then freed."""
    try:
        return _sd_to_dict(sd)
    finally:
        lib.nn_statedict_free(sd)


def _call_with_sd(state, fn):
    """fn(sd) with a temporary nn_statedict built from state; returns fn's result."""
    sd = _dict_to_sd(state)
    try:
        return fn(sd)
    finally:
        lib.nn_statedict_free(sd)


def _dict_to_sd(state):
    """A new nn_statedict from a mapping name -> Tensor (or array-like)."""
    from ._tensor import as_tensor
    sd = check_ptr(lib.nn_statedict_new())
    try:
        for k, v in state.items():
            check(lib.nn_statedict_set(sd, _b(k), _h(as_tensor(v))))
    except BaseException:
        lib.nn_statedict_free(sd)
        raise
    return sd


# ------------------------------------------------------------- containers


class Sequential(_Builtin):
    """Runs its children in order; children are named "0", "1", ..."""

    def __init__(self, *modules):
        if len(modules) == 1 and isinstance(modules[0], (list, tuple)):
            modules = modules[0]
        super().__init__(lib.nn_sequential_new())
        for m in modules:
            self.append(m)

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError('Sequential.append: expected a Module, got %s'
                            % type(module).__name__)
        check(lib.nn_sequential_append(self._handle(), lib.nn_module_retain(module._handle())))
        self._children[str(len(self) - 1)] = module   # C names children "0", "1", ...
        return self

    def __len__(self):
        n = lib.nn_sequential_length(self._handle())
        if n < 0:
            raise_last()
        return n

    def __getitem__(self, i):
        key = str(i if i >= 0 else len(self) + i)
        if key in self._children:
            return self._children[key]
        return Module._from_handle(lib.nn_sequential_get(self._handle(), int(i)), borrowed=True)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def extra_repr(self):
        return ', '.join(repr(m) for m in self)


# ----------------------------------------------------------------- layers


def _pair(v):
    return F._pair(v)


class Linear(_Builtin):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__(lib.nn_linear_new(int(in_features), int(out_features), bool(bias)),
                         in_features=in_features, out_features=out_features)


class Conv1d(_Builtin):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True):
        super().__init__(lib.nn_conv1d_new(int(in_channels), int(out_channels),
                                           int(kernel_size), int(stride), int(padding),
                                           int(dilation), int(groups), bool(bias)),
                         in_channels=in_channels, out_channels=out_channels,
                         kernel_size=kernel_size)


class Conv2d(_Builtin):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True):
        kh, kw = _pair(kernel_size)
        sh, sw = _pair(stride)
        ph, pw = _pair(padding)
        dh, dw = _pair(dilation)
        super().__init__(lib.nn_conv2d_new_ex(int(in_channels), int(out_channels), kh, kw,
                                              sh, sw, ph, pw, dh, dw, int(groups),
                                              bool(bias)),
                         in_channels=in_channels, out_channels=out_channels,
                         kernel_size=kernel_size, stride=stride, padding=padding)


class ConvTranspose2d(_Builtin):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1):
        kh, kw = _pair(kernel_size)
        sh, sw = _pair(stride)
        ph, pw = _pair(padding)
        oh, ow = _pair(output_padding)
        dh, dw = _pair(dilation)
        super().__init__(lib.nn_conv_transpose2d_new_ex(
            int(in_channels), int(out_channels), kh, kw, sh, sw, ph, pw, oh, ow, dh, dw,
            int(groups), bool(bias)), in_channels=in_channels, out_channels=out_channels,
            kernel_size=kernel_size)


class MaxPool2d(_Builtin):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        kh, kw = _pair(kernel_size)
        sh, sw = _pair(kernel_size if stride is None else stride)
        ph, pw = _pair(padding)
        dh, dw = _pair(dilation)
        super().__init__(lib.nn_max_pool2d_new_ex(kh, kw, sh, sw, ph, pw, dh, dw,
                                                  bool(ceil_mode)), kernel_size=kernel_size)


class AvgPool2d(_Builtin):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True):
        kh, kw = _pair(kernel_size)
        sh, sw = _pair(kernel_size if stride is None else stride)
        ph, pw = _pair(padding)
        super().__init__(lib.nn_avg_pool2d_new_ex(kh, kw, sh, sw, ph, pw, bool(ceil_mode),
                                                  bool(count_include_pad)),
                         kernel_size=kernel_size)


class AdaptiveAvgPool2d(_Builtin):
    def __init__(self, output_size):
        oh, ow = _pair(output_size)
        super().__init__(lib.nn_adaptive_avg_pool2d_new(oh, ow), output_size=output_size)


class Flatten(_Builtin):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__(lib.nn_flatten_new(int(start_dim), int(end_dim)))


class Dropout(_Builtin):
    def __init__(self, p=0.5):
        super().__init__(lib.nn_dropout_new(float(p)), p=p)

    def seed(self, seed):
        check(lib.nn_dropout_seed(self._handle(), int(seed) & 0xFFFFFFFFFFFFFFFF))


class BatchNorm1d(_Builtin):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True):
        super().__init__(lib.nn_batch_norm1d_new(int(num_features), float(eps),
                                                 float(momentum), bool(affine)),
                         num_features=num_features)


class BatchNorm2d(_Builtin):
    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True):
        super().__init__(lib.nn_batch_norm2d_new(int(num_features), float(eps),
                                                 float(momentum), bool(affine)),
                         num_features=num_features)


class LayerNorm(_Builtin):
    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True):
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        sh, n = _shape_arg(normalized_shape)
        super().__init__(lib.nn_layer_norm_new(sh, n, float(eps), bool(elementwise_affine)),
                         normalized_shape=tuple(normalized_shape))


class GroupNorm(_Builtin):
    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True):
        super().__init__(lib.nn_group_norm_new(int(num_groups), int(num_channels), float(eps),
                                               bool(affine)),
                         num_groups=num_groups, num_channels=num_channels)


class Embedding(_Builtin):
    def __init__(self, num_embeddings, embedding_dim, padding_idx=None):
        if padding_idx is None:
            ptr = lib.nn_embedding_new(int(num_embeddings), int(embedding_dim))
        else:
            ptr = lib.nn_embedding_new_padded(int(num_embeddings), int(embedding_dim),
                                              int(padding_idx))
        super().__init__(ptr, num_embeddings=num_embeddings, embedding_dim=embedding_dim)
        if padding_idx is not None:
            self._extra['padding_idx'] = padding_idx


class _Recurrent(_Builtin):
    """PyTorch's layouts: x [T, N, input_size], or [N, T, input_size] with
    batch_first=True; states [num_layers * num_directions, N, H]."""

    _lstm = False
    _mode = None

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, _mode=None):
        mode = self._mode if _mode is None else _mode
        super().__init__(lib.nn_recurrent_new(mode, int(input_size), int(hidden_size),
                                              int(num_layers), bool(bias), bool(batch_first),
                                              float(dropout), bool(bidirectional)),
                         input_size=input_size, hidden_size=hidden_size,
                         num_layers=num_layers, batch_first=bool(batch_first))
        if dropout:
            self._extra['dropout'] = dropout
        if bidirectional:
            self._extra['bidirectional'] = True

    def __call__(self, x, hx=None):
        return self.forward(x, hx)

    def forward(self, x, hx=None):
        h0 = c0 = None
        if hx is not None:
            h0, c0 = hx if self._lstm else (hx, None)
        hn, cn = c_void_p(), c_void_p()
        out = _wrap(lib.nn_recurrent_forward(self._handle(), _h(x),
                                             None if h0 is None else _h(h0),
                                             None if c0 is None else _h(c0), byref(hn),
                                             byref(cn) if self._lstm else None))
        h = _wrap(hn.value)
        if self._lstm:
            return out, (h, _wrap(cn.value))
        return out, h


class RNN(_Recurrent):
    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False):
        if nonlinearity not in ('tanh', 'relu'):
            raise ValueError("RNN: nonlinearity must be 'tanh' or 'relu', got %r"
                             % (nonlinearity,))
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, _mode=1 if nonlinearity == 'relu' else 0)


class LSTM(_Recurrent):
    _lstm = True
    _mode = 2


class GRU(_Recurrent):
    _mode = 3


class Select(_Builtin):
    """x.select(dim, index): one step along dim, the dim removed (index -1:
    the last time step, x[:, -1] for batch_first sequences). Saved in model
    files, so LSTM -> Select -> Linear reloads without Python code."""

    def __init__(self, dim, index):
        super().__init__(lib.nn_select_new(int(dim), int(index)), dim=dim, index=index)


def _child(h, i):
    """Direct child i of a C module (our Python object where we have one)."""
    return Module._from_handle(lib.nn_module_child(h, int(i), None), borrowed=True)


class ModuleList(_Builtin):
    """Holds submodules in a list (named "0", "1", ...); like PyTorch's, it
    has no forward: iterate it in your own forward."""

    def __init__(self, modules=None):
        super().__init__(lib.nn_module_list_new())
        if modules is not None:
            self.extend(modules)

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError('ModuleList.append: expected a Module, got %s'
                            % type(module).__name__)
        check(lib.nn_module_list_append(self._handle(), lib.nn_module_retain(module._handle())))
        self._children[str(len(self) - 1)] = module
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def __len__(self):
        n = lib.nn_module_num_children(self._handle())
        if n < 0:
            raise_last()
        return n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(len(self))[i]]
        n = len(self)
        if not -n <= i < n:
            raise IndexError('ModuleList index %d out of range for %d modules' % (i, n))
        key = str(i if i >= 0 else n + i)
        if key in self._children:
            return self._children[key]
        return _child(self._handle(), i)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def forward(self, *args):
        raise NotImplementedError('ModuleList has no forward: iterate it in your forward')

    __call__ = forward

    def extra_repr(self):
        return ', '.join(repr(m) for m in self)


class ModuleDict(_Builtin):
    """Holds submodules by key in insertion order (keys without '.'); like
    PyTorch's, it has no forward."""

    def __init__(self, modules=None):
        super().__init__(lib.nn_module_dict_new())
        if modules is not None:
            self.update(modules)

    def __setitem__(self, key, module):
        if not isinstance(module, Module):
            raise TypeError('ModuleDict: expected a Module, got %s' % type(module).__name__)
        check(lib.nn_module_dict_set(self._handle(), _b(key),
                                     lib.nn_module_retain(module._handle())))
        self._children[key] = module

    def __getitem__(self, key):
        if key in self._children:
            return self._children[key]
        for k, m in self.items():
            if k == key:
                return m
        raise KeyError(key)

    def __contains__(self, key):
        return key in self.keys()

    def __len__(self):
        n = lib.nn_module_num_children(self._handle())
        if n < 0:
            raise_last()
        return n

    def keys(self):
        h = self._handle()
        out = []
        for i in range(len(self)):
            name = c_char_p()
            check_ptr(lib.nn_module_child(h, i, byref(name)))
            out.append(text(name.value))
        return out

    def items(self):
        return [(k, self._children[k] if k in self._children else _child(self._handle(), i))
                for i, k in enumerate(self.keys())]

    def values(self):
        return [m for _, m in self.items()]

    def __iter__(self):
        return iter(self.keys())

    def update(self, modules):
        items = modules.items() if hasattr(modules, 'items') else modules
        for k, m in items:
            self[k] = m

    def forward(self, *args):
        raise NotImplementedError('ModuleDict has no forward: index it in your forward')

    __call__ = forward

    def extra_repr(self):
        return ', '.join('%s: %r' % kv for kv in self.items())


def _simple(name, cfn, params=(), ints=()):
    """A layer class whose constructor forwards its (number) options to cfn."""
    names = [p for p, _ in params]

    def __init__(self, *args, **kwargs):
        if len(args) > len(names):
            raise TypeError('%s takes at most %d arguments' % (name, len(names)))
        vals = OrderedDict(params)
        vals.update(zip(names, args))
        for k, v in kwargs.items():
            if k not in vals:
                raise TypeError('%s: unexpected argument %r' % (name, k))
            vals[k] = v
        cargs = [int(vals[p]) if p in ints else float(vals[p]) for p in names]
        _Builtin.__init__(self, cfn(*cargs), **vals)
    return type(name, (_Builtin,), {'__init__': __init__, '__module__': __name__})


ReLU = _simple('ReLU', lib.nn_relu_new)
LeakyReLU = _simple('LeakyReLU', lib.nn_leaky_relu_new, (('negative_slope', 0.01),))
ELU = _simple('ELU', lib.nn_elu_new, (('alpha', 1.0),))
SiLU = _simple('SiLU', lib.nn_silu_new)
Sigmoid = _simple('Sigmoid', lib.nn_sigmoid_new)
Tanh = _simple('Tanh', lib.nn_tanh_new)
Softplus = _simple('Softplus', lib.nn_softplus_new, (('beta', 1.0), ('threshold', 20.0)))
Hardtanh = _simple('Hardtanh', lib.nn_hardtanh_new, (('min_val', -1.0), ('max_val', 1.0)))
Softmax = _simple('Softmax', lib.nn_softmax_new, (('dim', -1),), ('dim',))
LogSoftmax = _simple('LogSoftmax', lib.nn_log_softmax_new, (('dim', -1),), ('dim',))
Identity = _simple('Identity', lib.nn_identity_new)


class GELU(_Builtin):
    def __init__(self, approximate='none'):
        if approximate not in ('none', 'tanh'):
            raise ValueError("GELU: approximate must be 'none' or 'tanh'")
        super().__init__(lib.nn_gelu_new(approximate == 'tanh'), approximate=approximate)


# C type name -> wrapper class, for modules coming back from C (loaded
# models, Sequential children built in C).
_TYPES = {'Sequential': Sequential, 'RNN': RNN, 'LSTM': LSTM, 'GRU': GRU}


def _class_for(ptr):
    name = text(lib.nn_module_type_name(ptr)) or ''
    cls = _TYPES.get(name)
    if cls is None:
        cls = globals().get(name)
        if not (isinstance(cls, type) and issubclass(cls, _Builtin)):
            cls = _Builtin
    return cls


# ------------------------------------------------------------------ losses

_REDUCTIONS = {'none': 0, 'mean': 1, 'sum': 2, 'batchmean': 3}


def _red(reduction):
    try:
        return _REDUCTIONS[reduction]
    except KeyError:
        raise ValueError('reduction must be one of %s' % sorted(_REDUCTIONS)) from None


class _Loss:
    def __init__(self, reduction='mean'):
        _red(reduction)
        self.reduction = reduction

    def __call__(self, input, target):  # noqa: A002
        return self.forward(input, target)

    def __repr__(self):
        return '%s(reduction=%r)' % (type(self).__name__, self.reduction)


class MSELoss(_Loss):
    def forward(self, input, target):  # noqa: A002
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    def forward(self, input, target):  # noqa: A002
        return F.l1_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    def __init__(self, reduction='mean', beta=1.0):
        super().__init__(reduction)
        self.beta = beta

    def forward(self, input, target):  # noqa: A002
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    def __init__(self, reduction='mean', delta=1.0):
        super().__init__(reduction)
        self.delta = delta

    def forward(self, input, target):  # noqa: A002
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class CrossEntropyLoss(_Loss):
    def __init__(self, weight=None, ignore_index=-100, reduction='mean', label_smoothing=0.0):
        super().__init__(reduction)
        self.weight, self.ignore_index, self.label_smoothing = weight, ignore_index, \
            label_smoothing

    def forward(self, input, target):  # noqa: A002
        return F.cross_entropy(input, target, weight=self.weight,
                               ignore_index=self.ignore_index, reduction=self.reduction,
                               label_smoothing=self.label_smoothing)


class NLLLoss(_Loss):
    def __init__(self, weight=None, ignore_index=-100, reduction='mean'):
        super().__init__(reduction)
        self.weight, self.ignore_index = weight, ignore_index

    def forward(self, input, target):  # noqa: A002
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


class BCELoss(_Loss):
    def __init__(self, weight=None, reduction='mean'):
        super().__init__(reduction)
        self.weight = weight

    def forward(self, input, target):  # noqa: A002
        return F.binary_cross_entropy(input, target, weight=self.weight,
                                      reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    def __init__(self, weight=None, reduction='mean', pos_weight=None):
        super().__init__(reduction)
        self.weight, self.pos_weight = weight, pos_weight

    def forward(self, input, target):  # noqa: A002
        return F.binary_cross_entropy_with_logits(input, target, weight=self.weight,
                                                  reduction=self.reduction,
                                                  pos_weight=self.pos_weight)


class KLDivLoss(_Loss):
    def __init__(self, reduction='mean', log_target=False):
        super().__init__(reduction)
        self.log_target = log_target

    def forward(self, input, target):  # noqa: A002
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)


# -------------------------------------------------------------------- init


class _Namespace:
    def __init__(self, **fns):
        self.__dict__.update(fns)


def _gen(g):
    return None if g is None else g._handle()


_NONLIN = {'linear': 0, 'conv1d': 0, 'conv2d': 0, 'conv_transpose2d': 0, 'sigmoid': 1,
           'tanh': 2, 'relu': 3, 'leaky_relu': 4, 'selu': 5}
_FAN = {'fan_in': 0, 'fan_out': 1}


def _nl(nonlinearity):
    try:
        return _NONLIN[nonlinearity]
    except KeyError:
        raise ValueError('unknown nonlinearity %r' % (nonlinearity,)) from None


def _calculate_gain(nonlinearity, param=None):
    v = lib.nn_init_calculate_gain(_nl(nonlinearity), 0.01 if param is None else float(param))
    if v != v:
        raise_last()
    return v


init = _Namespace(
    calculate_gain=_calculate_gain,
    uniform_=lambda t, a=0.0, b=1.0, generator=None: (
        check(lib.nn_init_uniform(_h(t), float(a), float(b), _gen(generator))), t)[1],
    normal_=lambda t, mean=0.0, std=1.0, generator=None: (
        check(lib.nn_init_normal(_h(t), float(mean), float(std), _gen(generator))), t)[1],
    constant_=lambda t, val: (check(lib.nn_init_constant(_h(t), float(val))), t)[1],
    zeros_=lambda t: (check(lib.nn_init_zeros(_h(t))), t)[1],
    ones_=lambda t: (check(lib.nn_init_ones(_h(t))), t)[1],
    xavier_uniform_=lambda t, gain=1.0, generator=None: (
        check(lib.nn_init_xavier_uniform(_h(t), float(gain), _gen(generator))), t)[1],
    xavier_normal_=lambda t, gain=1.0, generator=None: (
        check(lib.nn_init_xavier_normal(_h(t), float(gain), _gen(generator))), t)[1],
    kaiming_uniform_=lambda t, a=0.0, mode='fan_in', nonlinearity='leaky_relu',
    generator=None: (check(lib.nn_init_kaiming_uniform(
        _h(t), float(a), _FAN[mode], _nl(nonlinearity), _gen(generator))), t)[1],
    kaiming_normal_=lambda t, a=0.0, mode='fan_in', nonlinearity='leaky_relu',
    generator=None: (check(lib.nn_init_kaiming_normal(
        _h(t), float(a), _FAN[mode], _nl(nonlinearity), _gen(generator))), t)[1],
    orthogonal_=lambda t, gain=1.0, generator=None: (
        check(lib.nn_init_orthogonal(_h(t), float(gain), _gen(generator))), t)[1],
)


# ------------------------------------------------------------------- utils


def _param_array(params):
    if isinstance(params, Tensor):
        params = [params]
    params = list(params)
    arr = (c_void_p * max(len(params), 1))(*[_h(p) for p in params])
    return arr, len(params), params


def clip_grad_norm_(parameters, max_norm, norm_type=2.0):
    """Scale gradients so their global norm is at most max_norm; returns the
    norm before clipping (like torch.nn.utils.clip_grad_norm_)."""
    arr, n, keep = _param_array(parameters)
    v = lib.nn_clip_grad_norm(arr, n, float(max_norm), float(norm_type))
    if v != v:
        raise_last(-3, 'clip_grad_norm_: the norm is NaN')
    return v


def clip_grad_value_(parameters, clip_value):
    arr, n, keep = _param_array(parameters)
    check(lib.nn_clip_grad_value(arr, n, float(clip_value)))


utils = _Namespace(clip_grad_norm_=clip_grad_norm_, clip_grad_value_=clip_grad_value_)
