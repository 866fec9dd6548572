"""Tensor: a Python object owning one reference to a C nn_tensor."""
import array
import builtins
import ctypes
import sys
from ctypes import c_int, c_int64, c_void_p

from ._decls import nn_deleter_fn
from ._lib import check, check_ptr, error_class, lib, tls

try:  # numpy is optional: used when importable, never required
    import numpy as _np
except Exception:  # pragma: no cover - depends on the environment
    _np = None

_pyfloat = builtins.float
_is_finalizing = sys.is_finalizing
_nn_tensor_free = lib.nn_tensor_free


# ------------------------------------------------------------------ dtypes


class dtype:
    """A libnn element type (libnn.float32, int64, uint8; the storage dtypes
    float16, bfloat16 and int8). ctype / typecode describe the raw elements
    (f16 and bf16: their 16 bits); np_name is the numpy dtype of .numpy()
    (bfloat16, which numpy lacks, shows its bits as uint16)."""

    __slots__ = ('name', 'value', 'itemsize', 'ctype', 'typecode', 'is_floating_point',
                 'c_name', 'np_name')

    def __init__(self, name, value, itemsize, ctype, typecode, is_float, np_name=None):
        self.name, self.value, self.itemsize = name, value, itemsize
        self.ctype, self.typecode, self.is_floating_point = ctype, typecode, is_float
        self.np_name = np_name or name

    def __repr__(self):
        return 'libnn.' + self.name

    def __reduce__(self):
        return (_dtype_by_name, (self.name,))


float32 = dtype('float32', 0, 4, ctypes.c_float, 'f', True)
int64 = dtype('int64', 4, 8, ctypes.c_int64, 'q', False)
uint8 = dtype('uint8', 7, 1, ctypes.c_uint8, 'B', False)
float16 = dtype('float16', 2, 2, ctypes.c_uint16, 'H', True)
bfloat16 = dtype('bfloat16', 3, 2, ctypes.c_uint16, 'H', True, 'uint16')
int8 = dtype('int8', 6, 1, ctypes.c_int8, 'b', False)
half = float16
float = float32  # noqa: A001  (libnn.float like torch.float)
long = int64
bool_ = uint8    # masks are u8 0/1
_DTYPES = {d.value: d for d in (float32, int64, uint8, float16, bfloat16, int8)}
for _d in _DTYPES.values():   # the table above must agree with the library
    if lib.nn_dtype_size(_d.value) != _d.itemsize:
        raise ImportError('libnn: dtype %s has size %d in the library, %d here'
                          % (_d.name, lib.nn_dtype_size(_d.value), _d.itemsize))
    _d.c_name = lib.nn_dtype_name(_d.value).decode()
_ALIASES = {'float32': float32, 'f32': float32, 'float': float32, 'int64': int64,
            'i64': int64, 'long': int64, 'uint8': uint8, 'u8': uint8, 'bool': uint8,
            'float16': float16, 'f16': float16, 'half': float16, 'bfloat16': bfloat16,
            'bf16': bfloat16, 'int8': int8, 'i8': int8}


def _dtype_by_name(name):
    return _ALIASES[name]


def as_dtype(d):
    """Accept a libnn dtype, a name ('float32', 'i64'), a numpy dtype or a
    Python type (float, int, bool)."""
    if d is None or isinstance(d, dtype):
        return d
    if d is _pyfloat:
        return float32
    if d is bool:
        return uint8
    if d is int:
        return int64
    name = getattr(d, 'name', None) or str(d)
    if name.startswith('torch.'):
        name = name[6:]
    if name in _ALIASES:
        return _ALIASES[name]
    if _np is not None:
        try:
            nd = _np.dtype(d)
        except TypeError:
            nd = None
        if nd is not None:
            if nd.kind == 'f':
                return float16 if nd.itemsize == 2 else float32
            if nd.kind == 'i' and nd.itemsize == 1:
                return int8
            if nd.kind == 'b' or (nd.kind == 'u' and nd.itemsize == 1):
                return uint8
            if nd.kind in 'iu':
                return int64
    raise TypeError('libnn: unsupported dtype %r (float32, int64, uint8, float16, bfloat16 or int8)'
                    % (d,))


# ------------------------------------------------------------ small helpers


def _shape_arg(shape):
    shape = tuple(int(s) for s in shape)
    return (c_int64 * max(len(shape), 1))(*shape), len(shape)


def _dims_arg(dims):
    if dims is None:
        return None, 0
    if isinstance(dims, int):
        dims = (dims,)
    dims = tuple(int(d) for d in dims)
    return (c_int * max(len(dims), 1))(*dims), len(dims)


def _shape_from_args(args):
    """zeros(2, 3) and zeros((2, 3)) both mean shape (2, 3)."""
    if len(args) == 1 and not isinstance(args[0], int):
        return tuple(int(s) for s in args[0])
    return tuple(int(s) for s in args)


def _own(ptr):
    """Wrap a reference that now belongs to Python (raises on NULL)."""
    t = Tensor.__new__(Tensor)
    t._h = check_ptr(ptr)
    return t


def _wrap(ptr):
    """Wrap a new tensor returned by a public function. Inside a Python
    forward callback a C scope is open and owns that reference, so Python
    takes one of its own (the scope releases the other)."""
    if ptr and getattr(tls, 'depth', 0):
        lib.nn_tensor_retain(ptr)
    return _own(ptr)


def _wrap_borrowed(ptr):
    """Wrap a borrowed pointer by taking our own reference (None for NULL)."""
    if not ptr:
        return None
    return _own(lib.nn_tensor_retain(ptr))


def _closed_error(what='Tensor'):
    return error_class(-16)('libnn: this %s is closed (freed); it cannot be used' % what, -16)


def _h(t):
    """The C handle of a Tensor argument, as a c_void_p that also holds the
    Tensor: a temporary such as _h(as_tensor(3.0)) then stays alive until
    the C call that receives it returns. Raises on a closed tensor."""
    h = t._h
    if not h:
        raise _closed_error()
    p = c_void_p(h)
    p._keep = t
    return p


def _opt(t):
    """Handle of an optional tensor argument (None -> NULL)."""
    if t is None:
        return None
    return _h(as_tensor(t))


def _flatten_nested(data):
    """Nested lists/tuples -> (flat list, shape); checks rectangular shape.
    Works level by level (list.extend) so big lists stay fast."""
    shape = []
    x = data
    while isinstance(x, (list, tuple)):
        shape.append(len(x))
        if not x:
            break
        x = x[0]
    level = [data]
    for depth, n in enumerate(shape):
        nxt = []
        for x in level:
            if not isinstance(x, (list, tuple)) or len(x) != n:
                raise ValueError('libnn.tensor: ragged nested sequence (expected length %d '
                                 'at depth %d)' % (n, depth))
            nxt.extend(x)
        level = nxt
    for i, v in enumerate(level):
        if not isinstance(v, (int, _pyfloat)):
            if isinstance(v, (list, tuple)):
                raise ValueError('libnn.tensor: ragged nested sequence')
            level[i] = v.item() if isinstance(v, Tensor) else v
    return level, tuple(shape)


def _infer_dtype(flat):
    if any(isinstance(v, _pyfloat) for v in flat):
        return float32
    if flat and all(isinstance(v, bool) for v in flat):
        return uint8
    if flat and all(isinstance(v, int) for v in flat):
        return int64
    return float32


def _from_flat(flat, shape, dt):
    if dt is float16 or dt is bfloat16:  # values round once, from f32, in C
        return _from_flat(flat, shape, float32).to(dt)
    code = {float32: 'f', int64: 'q', uint8: 'B', int8: 'b'}[dt]
    conv = _pyfloat if dt is float32 else int
    try:
        buf = array.array(code, flat)
    except TypeError:  # e.g. floats for an integer dtype, numpy scalars
        buf = array.array(code, (conv(v) for v in flat))
    sh, n = _shape_arg(shape)
    addr = buf.buffer_info()[0] if len(buf) else None
    if addr is None:
        return _wrap(lib.nn_tensor_zeros(dt.value, sh, n))
    return _wrap(lib.nn_tensor_from_data(dt.value, sh, n, addr))


_FORMAT_DTYPES = {'f': float32, 'q': int64, 'B': uint8, '?': uint8, 'e': float16, 'b': int8}


def _from_buffer(obj, dt):
    mv = memoryview(obj)
    fmt = mv.format.lstrip('@=<')
    shape = mv.shape if mv.ndim else ()
    native = _FORMAT_DTYPES.get(fmt)
    if fmt in ('l', 'L', 'Q') and mv.itemsize == 8:
        native = int64
    if native is None or (dt is not None and dt is not native) or not mv.c_contiguous:
        # Another element type or layout: convert through Python values.
        values = mv.tolist()
        flat = _flatten_nested(values)[0] if isinstance(values, list) else [values]
        return _from_flat(flat, shape, dt or _infer_dtype(flat))
    raw = mv.tobytes()
    sh, n = _shape_arg(shape)
    if not raw:
        return _wrap(lib.nn_tensor_zeros(native.value, sh, n))
    return _wrap(lib.nn_tensor_from_data(native.value, sh, n, ctypes.c_char_p(raw)))


def _from_numpy(a, dt):
    dt = dt or as_dtype(a.dtype)
    if dt is bfloat16 and a.dtype != _np.uint16:  # values: round from f32 in C
        return _from_numpy(a, float32).to(bfloat16)
    npdt = dt.np_name  # bfloat16 from uint16: the array holds the bits
    # np.require, not np.ascontiguousarray: the latter turns a 0-d array
    # (or numpy scalar) into shape (1,).
    a = _np.require(a, dtype=npdt, requirements='C')
    sh, n = _shape_arg(a.shape)
    if a.size == 0:
        return _wrap(lib.nn_tensor_zeros(dt.value, sh, n))
    return _wrap(lib.nn_tensor_from_data(dt.value, sh, n, a.ctypes.data))


def tensor(data, dtype=None, requires_grad=False):
    """A new tensor holding a copy of data: a Tensor, a numpy array, a buffer
    (memoryview, array.array, bytes), nested lists/tuples or a number.
    Integers become int64, floats float32, bools uint8, like torch.tensor."""
    dt = as_dtype(dtype)
    if isinstance(data, Tensor):
        t = data.detach().to(dt) if dt is not None and dt is not data.dtype else data.clone()
    elif _np is not None and isinstance(data, (_np.ndarray, _np.generic)):
        t = _from_numpy(_np.asarray(data), dt)
    elif isinstance(data, (list, tuple)) or isinstance(data, (int, _pyfloat, bool)):
        if isinstance(data, (list, tuple)):
            flat, shape = _flatten_nested(data)
        else:
            flat, shape = [data], ()
        t = _from_flat(flat, shape, dt or _infer_dtype(flat))
    else:
        try:
            memoryview(data)
        except TypeError:
            raise TypeError('libnn.tensor: cannot build a tensor from %s'
                            % type(data).__name__) from None
        t = _from_buffer(data, dt)
    if requires_grad:
        t.requires_grad_(True)
    return t


def as_tensor(x, like=None):
    """x itself if it is a Tensor, else tensor(x) (numbers take like's dtype)."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (int, _pyfloat, bool)) and like is not None:
        return full((), x, dtype=like.dtype)
    return tensor(x)


# ------------------------------------------------ zero-copy numpy wrapping

_blobs = {}
_blob_next = [1]


def _blob_release(data, user):
    _blobs.pop(user or 0, None)


_blob_deleter = nn_deleter_fn(_blob_release)  # module-level: must outlive every blob


def from_numpy(a):
    """A tensor sharing memory with the numpy array a (no copy) when a is
    C-contiguous, writeable and of a supported dtype (float32, int64, uint8),
    else a copy; the array is kept alive until the last tensor using it is
    freed."""
    if _np is None:
        raise ImportError('libnn.from_numpy needs numpy')
    a = _np.asarray(a)
    dt = as_dtype(a.dtype)
    if (not a.flags['C_CONTIGUOUS'] or a.dtype != _np.dtype(dt.np_name)
            or a.size == 0 or not a.flags['ALIGNED'] or not a.flags['WRITEABLE']):
        return _from_numpy(a, dt)
    key = _blob_next[0]
    _blob_next[0] += 1
    _blobs[key] = a
    sh, n = _shape_arg(a.shape)
    ptr = lib.nn_tensor_from_blob(dt.value, sh, n, a.ctypes.data, _blob_deleter, key)
    if not ptr:
        _blobs.pop(key, None)
    return _wrap(ptr)


# ---------------------------------------------------------------- creation


def _rg(t, requires_grad):
    return t.requires_grad_(True) if requires_grad else t


def empty(*shape, dtype=float32, requires_grad=False):
    sh, n = _shape_arg(_shape_from_args(shape))
    return _rg(_wrap(lib.nn_tensor_empty(as_dtype(dtype).value, sh, n)), requires_grad)


def zeros(*shape, dtype=float32, requires_grad=False):
    sh, n = _shape_arg(_shape_from_args(shape))
    t = _wrap(lib.nn_tensor_zeros(as_dtype(dtype).value, sh, n))
    return t.requires_grad_(True) if requires_grad else t


def ones(*shape, dtype=float32, requires_grad=False):
    sh, n = _shape_arg(_shape_from_args(shape))
    t = _wrap(lib.nn_tensor_ones(as_dtype(dtype).value, sh, n))
    return t.requires_grad_(True) if requires_grad else t


def full(shape, fill_value, dtype=float32, requires_grad=False):
    sh, n = _shape_arg((shape,) if isinstance(shape, int) else shape)
    t = _wrap(lib.nn_tensor_full(as_dtype(dtype).value, sh, n, _pyfloat(fill_value)))
    return t.requires_grad_(True) if requires_grad else t


def zeros_like(t, dtype=None):
    return zeros(t.shape, dtype=dtype or t.dtype)


def ones_like(t, dtype=None):
    return ones(t.shape, dtype=dtype or t.dtype)


def full_like(t, fill_value, dtype=None):
    return full(t.shape, fill_value, dtype=dtype or t.dtype)


def arange(start, end=None, step=1, dtype=None):
    if end is None:
        start, end = 0, start
    if dtype is None:
        dtype = int64 if all(isinstance(v, int) for v in (start, end, step)) else float32
    return _wrap(lib.nn_arange(_pyfloat(start), _pyfloat(end), _pyfloat(step),
                               as_dtype(dtype).value))


def linspace(start, end, steps):
    return _wrap(lib.nn_linspace(_pyfloat(start), _pyfloat(end), int(steps)))


# -------------------------------------------------------------- generators


class Generator:
    """A random generator (xoshiro256**), like torch.Generator."""

    _g = None

    def __reduce__(self):   # copies and pickles carry the full state
        return (_generator_from_state, (self.get_state(),))

    def __init__(self, seed=0):
        self._g = check_ptr(lib.nn_generator_new(int(seed) & 0xFFFFFFFFFFFFFFFF))

    def _handle(self):
        if not self._g:
            raise _closed_error('Generator')
        return self._g

    def manual_seed(self, seed):
        check(lib.nn_generator_seed(self._handle(), int(seed) & 0xFFFFFFFFFFFFFFFF))
        return self

    def get_state(self):
        st = (ctypes.c_uint64 * 4)()
        check(lib.nn_generator_get_state(self._handle(), st))
        return tuple(st)

    def set_state(self, state):
        st = (ctypes.c_uint64 * 4)(*state)
        check(lib.nn_generator_set_state(self._handle(), st))

    def next(self):
        return lib.nn_generator_next(self._handle())

    def close(self):
        g, self._g = getattr(self, '_g', None), None
        if g and not _is_finalizing():
            lib.nn_generator_free(g)

    __del__ = close


def _generator_from_state(state):
    g = Generator()
    g.set_state(state)
    return g


def _gen(g):
    return None if g is None else g._handle()


def manual_seed(seed):
    """Seed this thread's default generator."""
    check(lib.nn_generator_seed(None, int(seed) & 0xFFFFFFFFFFFFFFFF))


def rand(*shape, generator=None, requires_grad=False):
    sh, n = _shape_arg(_shape_from_args(shape))
    return _rg(_wrap(lib.nn_rand(_gen(generator), sh, n)), requires_grad)


def randn(*shape, generator=None, requires_grad=False):
    sh, n = _shape_arg(_shape_from_args(shape))
    return _rg(_wrap(lib.nn_randn(_gen(generator), sh, n)), requires_grad)


def uniform(shape, low=0.0, high=1.0, generator=None):
    sh, n = _shape_arg(shape)
    return _wrap(lib.nn_uniform(_gen(generator), sh, n, low, high))


def normal(shape, mean=0.0, std=1.0, generator=None):
    sh, n = _shape_arg(shape)
    return _wrap(lib.nn_normal(_gen(generator), sh, n, mean, std))


def bernoulli(shape, p=0.5, generator=None):
    sh, n = _shape_arg(shape)
    return _wrap(lib.nn_bernoulli(_gen(generator), sh, n, p))


def randperm(n, generator=None):
    return _wrap(lib.nn_randperm(_gen(generator), int(n)))


# ----------------------------------------------------------------- grad mode


class set_grad_enabled:
    """Context manager / decorator setting grad mode on this thread."""

    def __init__(self, mode=True):
        self._mode = bool(mode)
        self._prev = []

    def __enter__(self):
        self._prev.append(lib.nn_set_grad_enabled(self._mode))
        return self

    def __exit__(self, *exc):
        lib.nn_set_grad_enabled(self._prev.pop())
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*a, **k):
            with set_grad_enabled(self._mode):
                return fn(*a, **k)
        return wrapper


class no_grad(set_grad_enabled):
    """with libnn.no_grad(): ... records no autograd graph."""

    def __init__(self):
        super().__init__(False)


class enable_grad(set_grad_enabled):
    def __init__(self):
        super().__init__(True)


def is_grad_enabled():
    return bool(lib.nn_is_grad_enabled())


# -------------------------------------------------------------------- Tensor


class Tensor:
    """An n-dimensional array with autograd, owning one C reference.

    Build one with libnn.tensor(data) / Tensor(data), or a factory
    (zeros, ones, randn, arange, from_numpy). close() frees it early;
    otherwise it is freed when garbage-collected."""

    __slots__ = ('_h', '__weakref__')
    __hash__ = object.__hash__
    __array_priority__ = 1000  # numpy defers to our reflected operators

    def __init__(self, data=(), dtype=None, requires_grad=False):
        t = tensor(data, dtype=dtype, requires_grad=requires_grad)
        self._h, t._h = t._h, None

    # -- lifetime
    def close(self):
        """Release the C reference now; later use raises BadHandleError."""
        h, self._h = self._h, None
        if h:
            _nn_tensor_free(h)

    def __del__(self):
        h = getattr(self, '_h', None)
        if h:
            self._h = None
            try:
                if not _is_finalizing():
                    _nn_tensor_free(h)
            except Exception:  # interpreter shutting down: let the OS reclaim
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def closed(self):
        return not self._h

    # copy.copy / deepcopy / pickle make independent tensors (copying the
    # handle itself would free it twice).
    def __reduce__(self):
        t = self.detach().contiguous()
        return (_rebuild, (t.dtype.name, t.shape, bytes(t.memoryview().cast('B')),
                           self.requires_grad))

    def __copy__(self):
        return _rebuild_from(self)

    def __deepcopy__(self, memo):
        return _rebuild_from(self)

    @property
    def _as_parameter_(self):  # lets a Tensor be passed straight to lib.nn_*
        return c_void_p(_h(self))

    # -- metadata
    @property
    def shape(self):
        h = _h(self)
        nd = lib.nn_tensor_ndim(h)
        if nd < 0:
            from ._lib import raise_last
            raise_last()
        p = lib.nn_tensor_shape(h)
        return tuple(p[i] for i in range(nd))

    def size(self, dim=None):
        if dim is None:
            return self.shape
        n = lib.nn_tensor_size(_h(self), int(dim))
        if n < 0:
            from ._lib import raise_last
            raise_last()
        return n

    def get(self, *index):
        """The element at index (one int per dim) as a Python number."""
        idx = (c_int64 * max(len(index), 1))(*index)
        if len(index) != self.ndim:
            raise IndexError('Tensor.get: %d indices for %d dims' % (len(index), self.ndim))
        out = ctypes.c_double()
        check(lib.nn_tensor_get(_h(self), idx, ctypes.byref(out)))
        return out.value if self.dtype is float32 else int(out.value)

    def set(self, index, value):
        """Write one element (index: one int per dim); not recorded by autograd."""
        index = tuple(index) if not isinstance(index, int) else (index,)
        if len(index) != self.ndim:
            raise IndexError('Tensor.set: %d indices for %d dims' % (len(index), self.ndim))
        idx = (c_int64 * max(len(index), 1))(*index)
        check(lib.nn_tensor_set(_h(self), idx, _pyfloat(value)))
        return self

    @property
    def ndim(self):
        return lib.nn_tensor_ndim(_h(self))

    def dim(self):
        return self.ndim

    def numel(self):
        return lib.nn_tensor_numel(_h(self))

    @property
    def dtype(self):
        return _DTYPES[lib.nn_tensor_dtype(_h(self))]

    def is_contiguous(self):
        return bool(lib.nn_tensor_is_contiguous(_h(self)))

    def is_floating_point(self):
        return self.dtype.is_floating_point

    def element_size(self):
        return self.dtype.itemsize

    # -- autograd
    @property
    def requires_grad(self):
        return bool(lib.nn_tensor_requires_grad(_h(self)))

    @requires_grad.setter
    def requires_grad(self, flag):
        check(lib.nn_tensor_set_requires_grad(_h(self), bool(flag)))

    def requires_grad_(self, flag=True):
        self.requires_grad = flag
        return self

    @property
    def is_leaf(self):
        return bool(lib.nn_tensor_is_leaf(_h(self)))

    @property
    def grad(self):
        return _wrap_borrowed(lib.nn_tensor_grad(_h(self)))

    @grad.setter
    def grad(self, value):
        if value is not None:
            raise ValueError('Tensor.grad can only be reset to None')
        check(lib.nn_tensor_zero_grad(_h(self)))

    def zero_grad(self):
        check(lib.nn_tensor_zero_grad(_h(self)))

    def backward(self, gradient=None, retain_graph=False):
        """Backpropagate from this tensor; gradients accumulate into the .grad
        of leaves. gradient: seed of the same shape (None for one element)."""
        if gradient is None and not retain_graph:
            check(lib.nn_backward(_h(self)))
        else:
            g = None if gradient is None else as_tensor(gradient, like=self)
            check(lib.nn_backward_ex(_h(self), None if g is None else _h(g), bool(retain_graph)))

    def detach(self):
        return _wrap(lib.nn_detach(_h(self)))

    def detach_(self):
        raise NotImplementedError('detach_ is not supported; use detach()')

    # -- values
    def item(self):
        h = _h(self)
        if lib.nn_tensor_numel(h) != 1:
            raise error_class(-4)('Tensor.item: tensor has %d elements, expected 1'
                                  % lib.nn_tensor_numel(h), -4)
        v = lib.nn_tensor_item(h)
        return _pyfloat(v) if self.dtype.is_floating_point else int(v)

    def _raw_array(self):
        """(ctypes array over the data, tensor owning it); no copy when contiguous."""
        t = self if self.is_contiguous() else self.contiguous()
        h = _h(t)
        n = lib.nn_tensor_numel(h)
        dt = t.dtype
        if n == 0:
            return (dt.ctype * 0)(), t
        ptr = check_ptr(lib.nn_tensor_data(h))
        buf = (dt.ctype * n).from_address(ptr)
        buf._libnn_owner = t  # keeps the C data alive as long as the buffer
        return buf, t

    def tolist(self):
        if self.dtype is float16 or self.dtype is bfloat16:  # values, not bits
            return self.to(float32).tolist()
        n = self.numel()
        dt = self.dtype
        buf = (dt.ctype * max(n, 1))()
        check(lib.nn_tensor_copy_to(_h(self), buf, ctypes.sizeof(buf)))
        flat = list(buf[:n])
        shape = self.shape
        if not shape:
            return flat[0]

        def nest(off, d):
            if d == len(shape) - 1:
                return flat[off:off + shape[d]]
            step = 1
            for s in shape[d + 1:]:
                step *= s
            return [nest(off + i * step, d + 1) for i in range(shape[d])]
        return nest(0, 0)

    def numpy(self):
        """A numpy array over the same memory (no copy) when the tensor is
        contiguous; a copy of a non-contiguous one. Needs numpy."""
        if _np is None:
            raise ImportError('Tensor.numpy needs numpy; use tolist() or memoryview()')
        buf, t = self._raw_array()
        shape = t.shape
        if not len(buf):
            return _np.zeros(shape, dtype=t.dtype.np_name)
        return _np.frombuffer(buf, dtype=t.dtype.np_name).reshape(shape)

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a.astype(dtype) if dtype is not None else a

    def memoryview(self):
        """A memoryview over the data (no copy when contiguous), shaped like the tensor."""
        buf, t = self._raw_array()
        mv = memoryview(buf).cast('B')
        shape = t.shape
        if not shape or 0 in shape:
            return mv.cast(t.dtype.typecode)
        return mv.cast(t.dtype.typecode, shape)

    def data_ptr(self):
        return lib.nn_tensor_data(_h(self)) or 0

    def __repr__(self):
        if not self._h:
            return 'tensor(<closed>)'
        p = check_ptr(lib.nn_tensor_format(self._h, 6))
        try:
            s = ctypes.string_at(p).decode('utf-8', 'replace')
        finally:
            lib.nn_free(p)
        return s.rstrip('\n')

    __str__ = __repr__

    def __len__(self):
        s = self.shape
        if not s:
            raise TypeError('len() of a 0-d tensor')
        return s[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __bool__(self):
        if self.numel() != 1:
            raise ValueError('the truth value of a tensor with more than one element is '
                             'ambiguous')
        return bool(self.item())

    def __float__(self):
        return _pyfloat(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.dtype is float32:
            raise TypeError('only integer tensors can be used as an index')
        return int(self.item())

    # -- in-place data updates (not recorded by autograd)
    def fill_(self, value):
        check(lib.nn_tensor_fill(_h(self), _pyfloat(value)))
        return self

    def zero_(self):
        return self.fill_(0)

    def copy_(self, src):
        """Copy src (a Tensor, numpy array, buffer, list or number) into this
        tensor's data, broadcasting; not recorded by autograd."""
        if not isinstance(src, (Tensor, int, _pyfloat, list, tuple)):
            try:
                mv = memoryview(src)
            except TypeError:
                mv = None
            if (mv is not None and mv.c_contiguous and
                    _FORMAT_DTYPES.get(mv.format.lstrip('@=<')) is self.dtype and
                    mv.nbytes == self.numel() * self.dtype.itemsize):
                raw = mv.tobytes()   # same type and size: one copy into place
                check(lib.nn_tensor_copy_from(_h(self), ctypes.c_char_p(raw), len(raw)))
                return self
        src = as_tensor(src, like=self)
        if src.shape != self.shape:
            src = src.expand(self.shape)
        check(lib.nn_tensor_assign(_h(self), _h(src)))
        return self

    def clone(self):
        return _wrap(lib.nn_tensor_clone(_h(self)))

    def contiguous(self):
        return _wrap(lib.nn_tensor_contiguous(_h(self)))

    def to(self, dtype):
        dt = as_dtype(dtype)
        return _wrap(lib.nn_tensor_to(_h(self), dt.value))

    def float(self):
        return self.to(float32)

    def long(self):
        return self.to(int64)

    def byte(self):
        return self.to(uint8)

    def half(self):
        return self.to(float16)

    def bfloat16(self):
        return self.to(bfloat16)

    def char(self):
        return self.to(int8)

    def equal(self, other):
        return bool(lib.nn_tensor_equal(_h(self), _h(as_tensor(other, like=self))))

    def allclose(self, other, rtol=1e-5, atol=1e-8):
        return bool(lib.nn_tensor_allclose(_h(self), _h(as_tensor(other, like=self)),
                                           rtol, atol))

    # -- indexing
    def _index(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        ndim = self.ndim
        used = sum(1 for k in key if k is not None and k is not Ellipsis)
        if sum(1 for k in key if k is Ellipsis) > 1:
            raise IndexError('an index can only have a single ellipsis')
        if used > ndim:
            raise IndexError('too many indices for a tensor of %d dims' % ndim)
        t, dim = self, 0
        for k in key:
            if k is None:
                t = F.unsqueeze(t, dim)
                dim += 1
            elif k is Ellipsis:
                dim += ndim - used
            elif isinstance(k, slice):
                step = 1 if k.step is None else int(k.step)
                if step <= 0:
                    raise ValueError('libnn: slice step must be positive')
                start = 0 if k.start is None else int(k.start)
                stop = (1 << 62) if k.stop is None else int(k.stop)
                t = F.slice(t, dim, start, stop, step)
                dim += 1
            elif isinstance(k, int) or (isinstance(k, Tensor) and k.ndim == 0
                                        and k.dtype is not float32):
                k = int(k)
                size = t.shape[dim]
                if not -size <= k < size:
                    raise IndexError('index %d is out of bounds for dim %d with size %d'
                                     % (k, dim, size))
                k %= size
                t = F.squeeze(F.slice(t, dim, k, k + 1, 1), dim)
            else:
                idx = k if isinstance(k, Tensor) else tensor(k, dtype=int64)
                if idx.dtype is uint8:
                    raise IndexError('libnn: boolean mask indexing is not supported')
                if idx.ndim != 1:
                    raise IndexError('libnn: index tensors must be 1-D')
                t = F.index_select(t, dim, idx.to(int64) if idx.dtype is not int64 else idx)
                dim += 1
        return t

    def __getitem__(self, key):
        if isinstance(key, Tensor) and key.dtype is uint8:
            return F.masked_select(self, key)  # t[mask], like torch
        return self._index(key)

    def __setitem__(self, key, value):
        if isinstance(key, Tensor) and key.dtype is uint8:  # t[mask] = value
            with no_grad():
                filled = F.masked_fill(self, key, _pyfloat(value))
                check(lib.nn_tensor_assign(_h(self), _h(filled)))
            return
        with no_grad():
            view = self._index(key)
        if isinstance(value, (int, _pyfloat, bool)):
            check(lib.nn_tensor_fill(_h(view), _pyfloat(value)))
            return
        value = as_tensor(value, like=self)
        if value.shape != view.shape:
            value = value.expand(view.shape)
        check(lib.nn_tensor_assign(_h(view), _h(value)))

    # -- operators
    def __add__(self, o):
        return F.add(self, o)

    def __radd__(self, o):
        return F.add(self, o)

    def __sub__(self, o):
        return F.sub(self, o)

    def __rsub__(self, o):
        return F.sub(o, self)

    def __mul__(self, o):
        return F.mul(self, o)

    def __rmul__(self, o):
        return F.mul(self, o)

    def __truediv__(self, o):
        return F.div(self, o)

    def __rtruediv__(self, o):
        return F.div(o, self)

    def __pow__(self, o):
        return F.pow(self, o)

    def __rpow__(self, o):
        return F.pow(o, self)

    def __matmul__(self, o):
        return F.matmul(self, o)

    def __rmatmul__(self, o):
        return F.matmul(o, self)

    def __neg__(self):
        return F.neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return F.abs(self)

    def __eq__(self, o):
        return F.eq(self, o)

    def __ne__(self, o):
        return F.ne(self, o)

    def __lt__(self, o):
        return F.lt(self, o)

    def __le__(self, o):
        return F.le(self, o)

    def __gt__(self, o):
        return F.gt(self, o)

    def __ge__(self, o):
        return F.ge(self, o)

    # -- methods mirroring functional
    def reshape(self, *shape):
        return F.reshape(self, _shape_from_args(shape))

    def view(self, *shape):
        return F.reshape(self, _shape_from_args(shape))

    def flatten(self, start_dim=0, end_dim=-1):
        return F.flatten(self, start_dim, end_dim)

    def squeeze(self, dim=None):
        return F.squeeze(self, dim)

    def unsqueeze(self, dim):
        return F.unsqueeze(self, dim)

    def transpose(self, dim0, dim1):
        return F.transpose(self, dim0, dim1)

    def t(self):
        return F.transpose(self, 0, 1) if self.ndim == 2 else self

    @property
    def T(self):
        return F.permute(self, tuple(range(self.ndim - 1, -1, -1)))

    def permute(self, *dims):
        return F.permute(self, _shape_from_args(dims))

    def expand(self, *shape):
        return F.expand(self, _shape_from_args(shape))

    def expand_as(self, other):
        return F.expand(self, other.shape)

    def sum(self, dim=None, keepdim=False):
        return F.sum(self, dim, keepdim)

    def mean(self, dim=None, keepdim=False):
        return F.mean(self, dim, keepdim)

    def var(self, dim=None, correction=1, keepdim=False):
        return F.var(self, dim, correction=correction, keepdim=keepdim)

    def std(self, dim=None, correction=1, keepdim=False):
        return F.std(self, dim, correction=correction, keepdim=keepdim)

    def amax(self, dim=None, keepdim=False):
        return F.amax(self, dim, keepdim)

    def amin(self, dim=None, keepdim=False):
        return F.amin(self, dim, keepdim)

    def max(self, dim=None, keepdim=False):
        return F.max(self, dim, keepdim)

    def min(self, dim=None, keepdim=False):
        return F.min(self, dim, keepdim)

    def argmax(self, dim=None, keepdim=False):
        return F.argmax(self, dim, keepdim)

    def argmin(self, dim=None, keepdim=False):
        return F.argmin(self, dim, keepdim)

    def softmax(self, dim):
        return F.softmax(self, dim)

    def log_softmax(self, dim):
        return F.log_softmax(self, dim)

    def matmul(self, o):
        return F.matmul(self, o)

    def pow(self, o):
        return F.pow(self, o)

    def clamp(self, min=None, max=None):
        return F.clamp(self, min, max)

    def index_select(self, dim, index):
        return F.index_select(self, dim, index)

    def gather(self, dim, index):
        return F.gather(self, dim, index)


def _rebuild(dtype_name, shape, raw, requires_grad):
    dt = _ALIASES[dtype_name]
    sh, n = _shape_arg(shape)
    if raw:
        t = _wrap(lib.nn_tensor_from_data(dt.value, sh, n, ctypes.c_char_p(raw)))
    else:
        t = _wrap(lib.nn_tensor_zeros(dt.value, sh, n))
    return t.requires_grad_(True) if requires_grad else t


def _rebuild_from(t):
    c = t.clone()
    return c.requires_grad_(True) if t.requires_grad and c.dtype is float32 else c


def _unary_method(name):
    def method(self):
        return getattr(F, name)(self)
    method.__name__ = name
    method.__doc__ = 'See libnn.functional.%s.' % name
    return method


for _n in ('neg', 'exp', 'log', 'sqrt', 'rsqrt', 'abs', 'relu', 'sigmoid', 'tanh', 'silu',
           'sin', 'cos'):
    setattr(Tensor, _n, _unary_method(_n))

Tensor.masked_fill = lambda self, mask, value: F.masked_fill(self, mask, value)
Tensor.masked_select = lambda self, mask: F.masked_select(self, mask)

for _n in ('add', 'sub', 'mul', 'div', 'minimum', 'maximum', 'eq', 'ne', 'lt', 'le',
           'gt', 'ge'):
    setattr(Tensor, _n, (lambda n: lambda self, o: getattr(F, n)(self, o))(_n))

from . import functional as F  # noqa: E402  (functional needs Tensor defined first)
