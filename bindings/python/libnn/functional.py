"""Every libnn op as a function, named like torch.nn.functional / torch.

Arguments that are Python numbers or lists are turned into tensors; ops
return new Tensors and raise a LibnnError subclass on failure."""
import builtins
from ctypes import byref, c_void_p

from ._lib import lib
from ._tensor import (Tensor, _dims_arg, _gen, _h, _opt, _shape_arg, _wrap, as_tensor,
                      full, int64, tensor, uint8)

_pyfloat = builtins.float
_pyslice = builtins.slice
_NUM = (int, _pyfloat, bool)


def _t(x, like=None):
    return as_tensor(x, like=like)


def _pair(v):
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError('expected an int or a pair, got %r' % (v,))
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _binary(cfn, a, b):
    if not isinstance(a, Tensor) and isinstance(b, Tensor):
        a = _t(a, like=b)
    a = _t(a)
    b = _t(b, like=a)
    return _wrap(cfn(_h(a), _h(b)))


# ------------------------------------------------------------- elementwise

def add(a, b, alpha=1):
    if isinstance(a, Tensor) and isinstance(b, _NUM):
        return _wrap(lib.nn_add_scalar(_h(a), _pyfloat(b) * alpha))
    if isinstance(b, Tensor) and isinstance(a, _NUM) and alpha == 1:
        return _wrap(lib.nn_add_scalar(_h(b), _pyfloat(a)))
    if alpha != 1:
        b = mul(b, alpha)
    return _binary(lib.nn_add, a, b)


def sub(a, b):
    if isinstance(a, Tensor) and isinstance(b, _NUM):
        return _wrap(lib.nn_add_scalar(_h(a), -_pyfloat(b)))
    if isinstance(b, Tensor) and isinstance(a, _NUM):
        return add_scalar(neg(b), a)
    return _binary(lib.nn_sub, a, b)


def mul(a, b):
    if isinstance(a, Tensor) and isinstance(b, _NUM):
        return _wrap(lib.nn_mul_scalar(_h(a), _pyfloat(b)))
    if isinstance(b, Tensor) and isinstance(a, _NUM):
        return _wrap(lib.nn_mul_scalar(_h(b), _pyfloat(a)))
    return _binary(lib.nn_mul, a, b)


def div(a, b):
    return _binary(lib.nn_div, a, b)


def pow(a, b):  # noqa: A001
    if isinstance(a, Tensor) and isinstance(b, _NUM):
        return _wrap(lib.nn_pow_scalar(_h(a), _pyfloat(b)))
    return _binary(lib.nn_pow, a, b)


def minimum(a, b):
    return _binary(lib.nn_minimum, a, b)


def maximum(a, b):
    return _binary(lib.nn_maximum, a, b)


def where(cond, a, b):
    """cond ? a : b elementwise (cond a uint8 mask); all three broadcast."""
    cond = _t(cond)
    if not isinstance(a, Tensor) and isinstance(b, Tensor):
        a = _t(a, like=b)
    a = _t(a)
    b = _t(b, like=a)
    return _wrap(lib.nn_where(_h(cond), _h(a), _h(b)))


def add_scalar(a, s):
    return _wrap(lib.nn_add_scalar(_h(_t(a)), _pyfloat(s)))


def mul_scalar(a, s):
    return _wrap(lib.nn_mul_scalar(_h(_t(a)), _pyfloat(s)))


def pow_scalar(a, exponent):
    return _wrap(lib.nn_pow_scalar(_h(_t(a)), _pyfloat(exponent)))


def _unary(cfn):
    def op(a):
        return _wrap(cfn(_h(_t(a))))
    return op


neg = _unary(lib.nn_neg)
exp = _unary(lib.nn_exp)
log = _unary(lib.nn_log)
sqrt = _unary(lib.nn_sqrt)
rsqrt = _unary(lib.nn_rsqrt)
abs = _unary(lib.nn_abs)  # noqa: A001
relu = _unary(lib.nn_relu)
silu = _unary(lib.nn_silu)
sigmoid = _unary(lib.nn_sigmoid)
tanh = _unary(lib.nn_tanh)
for _name, _f in (('neg', neg), ('exp', exp), ('log', log), ('sqrt', sqrt), ('rsqrt', rsqrt),
                  ('abs', abs), ('relu', relu), ('silu', silu), ('sigmoid', sigmoid),
                  ('tanh', tanh)):
    _f.__name__ = _name
    _f.__doc__ = 'Elementwise %s (nn_%s).' % (_name, _name)


def clamp(a, min=None, max=None):  # noqa: A002
    lo = -_pyfloat('inf') if min is None else _pyfloat(min)
    hi = _pyfloat('inf') if max is None else _pyfloat(max)
    return _wrap(lib.nn_clamp(_h(_t(a)), lo, hi))


# ------------------------------------------------------------- activations

def leaky_relu(a, negative_slope=0.01):
    return _wrap(lib.nn_leaky_relu(_h(_t(a)), _pyfloat(negative_slope)))


def elu(a, alpha=1.0):
    return _wrap(lib.nn_elu(_h(_t(a)), _pyfloat(alpha)))


def gelu(a, approximate='none'):
    if approximate not in ('none', 'tanh'):
        raise ValueError("gelu: approximate must be 'none' or 'tanh'")
    return _wrap(lib.nn_gelu(_h(_t(a)), approximate == 'tanh'))


def softplus(a, beta=1.0, threshold=20.0):
    return _wrap(lib.nn_softplus(_h(_t(a)), _pyfloat(beta), _pyfloat(threshold)))


def hardtanh(a, min_val=-1.0, max_val=1.0):
    return _wrap(lib.nn_hardtanh(_h(_t(a)), _pyfloat(min_val), _pyfloat(max_val)))


def softmax(a, dim):
    return _wrap(lib.nn_softmax(_h(_t(a)), int(dim)))


def log_softmax(a, dim):
    return _wrap(lib.nn_log_softmax(_h(_t(a)), int(dim)))


# -------------------------------------------------------------- reductions

def _reduce(cfn, a, dim, keepdim):
    d, n = _dims_arg(dim)
    return _wrap(cfn(_h(_t(a)), d, n, bool(keepdim)))


def sum(a, dim=None, keepdim=False):  # noqa: A001
    return _reduce(lib.nn_sum, a, dim, keepdim)


def mean(a, dim=None, keepdim=False):
    return _reduce(lib.nn_mean, a, dim, keepdim)


def var(a, dim=None, correction=1, keepdim=False):
    d, n = _dims_arg(dim)
    return _wrap(lib.nn_var(_h(_t(a)), d, n, int(correction), bool(keepdim)))


def std(a, dim=None, correction=1, keepdim=False):
    d, n = _dims_arg(dim)
    return _wrap(lib.nn_std(_h(_t(a)), d, n, int(correction), bool(keepdim)))


def amax(a, dim=None, keepdim=False):
    return _reduce(lib.nn_amax, a, dim, keepdim)


def amin(a, dim=None, keepdim=False):
    return _reduce(lib.nn_amin, a, dim, keepdim)


class _ValuesIndices(tuple):
    """(values, indices), like torch.return_types.max."""

    @property
    def values(self):
        return self[0]

    @property
    def indices(self):
        return self[1]


def _minmax(cfn, reduce_all, a, dim, keepdim):
    if dim is None:
        return reduce_all(a)
    idx = c_void_p()
    v = cfn(_h(_t(a)), int(dim), bool(keepdim), byref(idx))
    i = _wrap(idx.value) if idx.value else None
    values = _wrap(v)
    return _ValuesIndices((values, i))


def max(a, dim=None, keepdim=False):  # noqa: A001
    """max(a): the largest element; max(a, dim): (values, indices)."""
    return _minmax(lib.nn_max, amax, a, dim, keepdim)


def min(a, dim=None, keepdim=False):  # noqa: A001
    return _minmax(lib.nn_min, amin, a, dim, keepdim)


def argmax(a, dim=None, keepdim=False):
    a = _t(a)
    if dim is None:
        return _wrap(lib.nn_argmax(_h(flatten(a)), 0, False))
    return _wrap(lib.nn_argmax(_h(a), int(dim), bool(keepdim)))


def argmin(a, dim=None, keepdim=False):
    a = _t(a)
    if dim is None:
        return _wrap(lib.nn_argmin(_h(flatten(a)), 0, False))
    return _wrap(lib.nn_argmin(_h(a), int(dim), bool(keepdim)))


# ---------------------------------------------------------- linear algebra

def matmul(a, b):
    return _binary(lib.nn_matmul, a, b)


def linear(x, weight, bias=None):
    return _wrap(lib.nn_linear(_h(_t(x)), _h(_t(weight)), _opt(bias)))


def transpose(a, dim0, dim1):
    return _wrap(lib.nn_transpose(_h(_t(a)), int(dim0), int(dim1)))


def permute(a, dims):
    d, n = _dims_arg(dims)
    return _wrap(lib.nn_permute(_h(_t(a)), d, n))


# ------------------------------------------------------------------- shape

def reshape(a, shape):
    sh, n = _shape_arg((shape,) if isinstance(shape, int) else shape)
    return _wrap(lib.nn_reshape(_h(_t(a)), sh, n))


def flatten(a, start_dim=0, end_dim=-1):
    a = _t(a)
    if a.ndim == 0:
        return reshape(a, (1,))
    return _wrap(lib.nn_flatten(_h(a), int(start_dim), int(end_dim)))


def squeeze(a, dim=None):
    """Remove dim if it has size 1; dim None removes every size-1 dim."""
    a = _t(a)
    if dim is not None:
        return _wrap(lib.nn_squeeze(_h(a), int(dim)))
    shape = a.shape
    out = a
    for d in range(len(shape) - 1, -1, -1):
        if shape[d] == 1:
            out = _wrap(lib.nn_squeeze(_h(out), d))
    return out if out is not a else reshape(a, shape)


def unsqueeze(a, dim):
    return _wrap(lib.nn_unsqueeze(_h(_t(a)), int(dim)))


def expand(a, shape):
    sh, n = _shape_arg(shape)
    return _wrap(lib.nn_expand(_h(_t(a)), sh, n))


def _handles(ts):
    ts = [_t(x) for x in ts]
    arr = (c_void_p * builtins.max(len(ts), 1))(*[_h(x) for x in ts])
    return arr, len(ts), ts


def concat(tensors, dim=0):
    arr, n, keep = _handles(tensors)
    return _wrap(lib.nn_concat(arr, n, int(dim)))


cat = concat


def stack(tensors, dim=0):
    arr, n, keep = _handles(tensors)
    return _wrap(lib.nn_stack(arr, n, int(dim)))


def slice(a, dim, start=0, stop=None, step=1):  # noqa: A001
    """Elements start:stop:step along dim (clamped like Python slices)."""
    stop = (1 << 62) if stop is None else int(stop)
    return _wrap(lib.nn_slice(_h(_t(a)), int(dim), int(start), stop, int(step)))


def narrow(a, dim, start, length):
    return slice(a, dim, start, start + length, 1)


def index_select(a, dim, index):
    index = index if isinstance(index, Tensor) else tensor(index, dtype=int64)
    return _wrap(lib.nn_index_select(_h(_t(a)), int(dim), _h(index)))


def gather(a, dim, index):
    index = index if isinstance(index, Tensor) else tensor(index, dtype=int64)
    return _wrap(lib.nn_gather(_h(_t(a)), int(dim), _h(index)))


def pad(a, pad, value=0.0, mode='constant'):  # noqa: A002
    if mode != 'constant':
        raise NotImplementedError('pad: only mode="constant" is supported')
    p, n = _shape_arg(pad)
    return _wrap(lib.nn_pad(_h(_t(a)), p, n, _pyfloat(value)))


# ------------------------------------------------- convolution and pooling

def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    return _wrap(lib.nn_conv2d(_h(_t(x)), _h(_t(weight)), _opt(bias), sh, sw, ph, pw, dh, dw,
                               int(groups)))


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return _wrap(lib.nn_conv1d(_h(_t(x)), _h(_t(weight)), _opt(bias), int(stride),
                               int(padding), int(dilation), int(groups)))


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    oh, ow = _pair(output_padding)
    dh, dw = _pair(dilation)
    return _wrap(lib.nn_conv_transpose2d(_h(_t(x)), _h(_t(weight)), _opt(bias), sh, sw, ph,
                                         pw, oh, ow, dh, dw, int(groups)))


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    idx = c_void_p()
    v = lib.nn_max_pool2d(_h(_t(x)), kh, kw, sh, sw, ph, pw, dh, dw, bool(ceil_mode),
                          byref(idx) if return_indices else None)
    out = _wrap(v)
    return (out, _wrap(idx.value)) if return_indices else out


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    ph, pw = _pair(padding)
    return _wrap(lib.nn_avg_pool2d(_h(_t(x)), kh, kw, sh, sw, ph, pw, bool(ceil_mode),
                                   bool(count_include_pad)))


def adaptive_avg_pool2d(x, output_size):
    oh, ow = _pair(output_size)
    return _wrap(lib.nn_adaptive_avg_pool2d(_h(_t(x)), oh, ow))


def adaptive_max_pool2d(x, output_size, return_indices=False):
    oh, ow = _pair(output_size)
    idx = c_void_p()
    v = lib.nn_adaptive_max_pool2d(_h(_t(x)), oh, ow, byref(idx) if return_indices else None)
    out = _wrap(v)
    return (out, _wrap(idx.value)) if return_indices else out


# ------------------------------------------ normalization, regularization

def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    return _wrap(lib.nn_batch_norm(_h(_t(x)), _opt(running_mean), _opt(running_var),
                                   _opt(weight), _opt(bias), bool(training),
                                   _pyfloat(momentum), _pyfloat(eps)))


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    sh, n = _shape_arg(normalized_shape)
    return _wrap(lib.nn_layer_norm(_h(_t(x)), sh, n, _opt(weight), _opt(bias), _pyfloat(eps)))


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    return _wrap(lib.nn_group_norm(_h(_t(x)), int(num_groups), _opt(weight), _opt(bias),
                                   _pyfloat(eps)))


def dropout(x, p=0.5, training=True, generator=None):
    return _wrap(lib.nn_dropout(_h(_t(x)), _pyfloat(p), bool(training), _gen(generator)))


def embedding(indices, weight, padding_idx=None):
    """Rows of weight at the int64 indices (torch.nn.functional.embedding
    order); row padding_idx (negative: from the end) gets no gradient."""
    indices = indices if isinstance(indices, Tensor) else tensor(indices, dtype=int64)
    if padding_idx is not None:
        return _wrap(lib.nn_embedding_padded(_h(_t(weight)), _h(indices), int(padding_idx)))
    return _wrap(lib.nn_embedding(_h(_t(weight)), _h(indices)))


C_NAMES = {'nn_embedding_padded': 'embedding'}


# ------------------------------------------------------------- comparisons

def _compare(cfn, sfn, a, b):
    """A tensor against a Python number goes through the scalar form (exact
    for int64, the number rounded to float32 for float32, like torch)."""
    if isinstance(a, Tensor) and isinstance(b, _NUM):
        return _wrap(sfn(_h(a), _pyfloat(b)))
    return _binary(cfn, a, b)


def eq(a, b):
    return _compare(lib.nn_eq, lib.nn_eq_scalar, a, b)


def ne(a, b):
    return _compare(lib.nn_ne, lib.nn_ne_scalar, a, b)


def lt(a, b):
    return _compare(lib.nn_lt, lib.nn_lt_scalar, a, b)


def le(a, b):
    return _compare(lib.nn_le, lib.nn_le_scalar, a, b)


def gt(a, b):
    return _compare(lib.nn_gt, lib.nn_gt_scalar, a, b)


def ge(a, b):
    return _compare(lib.nn_ge, lib.nn_ge_scalar, a, b)


# ----------------------------------------- attention and transformer ops

def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None, generator=None):
    """softmax(query keyᵀ · scale + mask) value, computed in tiles (memory
    grows with the sequence length, not its square). attn_mask: a uint8/bool
    mask (1 = attend) or a float mask added to the scores, broadcast to
    [..., L, S]; is_causal: query i sees keys j <= i (top-left aligned);
    scale None: 1/sqrt(E). Batch dims broadcast. A query that sees no key
    gives zeros (PyTorch gives NaN)."""
    s = 0.0 if scale is None else _pyfloat(scale)
    if scale is not None and s <= 0.0:
        raise ValueError('scale must be > 0, got %r' % (scale,))
    return _wrap(lib.nn_scaled_dot_product_attention(
        _h(_t(query)), _h(_t(key)), _h(_t(value)), _opt(attn_mask), bool(is_causal),
        _pyfloat(dropout_p), s, _gen(generator)))


def rope(x, positions=None, offset=0, base=10000.0, rotary_dim=0):
    """Rotary position embedding on x [..., T, D] (GPT-NeoX / LLaMA "rotate
    half": the first and second halves of the rotated features form the
    pairs). Positions: offset + t, or offset + positions (int64, broadcast to
    x.shape[:-1]); rotary_dim 0 rotates all D features."""
    pos = None
    if positions is not None:
        pos = positions if isinstance(positions, Tensor) else tensor(positions, dtype=int64)
    return _wrap(lib.nn_rope(_h(_t(x)), _opt(pos), int(offset), _pyfloat(base), int(rotary_dim)))


def rms_norm(input, normalized_shape, weight=None, eps=None):  # noqa: A002
    """x / sqrt(mean(x**2) + eps) * weight over the trailing normalized_shape
    (eps None: float32 machine epsilon, like torch.nn.functional.rms_norm)."""
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    sh, n = _shape_arg(normalized_shape)
    e = 1.1920928955078125e-07 if eps is None else _pyfloat(eps)
    return _wrap(lib.nn_rms_norm(_h(_t(input)), sh, n, _opt(weight), e))


sin = _unary(lib.nn_sin)
cos = _unary(lib.nn_cos)
sin.__name__, cos.__name__ = 'sin', 'cos'
sin.__doc__, cos.__doc__ = 'Elementwise sin (nn_sin).', 'Elementwise cos (nn_cos).'


def _mask(m, like):
    m = m if isinstance(m, Tensor) else tensor(m, dtype=uint8)
    return m


def masked_fill(input, mask, value):  # noqa: A002
    """input with value where the uint8/bool mask (broadcast to input) is 1."""
    return _wrap(lib.nn_masked_fill(_h(_t(input)), _h(_mask(mask, input)), _pyfloat(value)))


def masked_select(input, mask):  # noqa: A002
    """1-D tensor of input's elements where mask is 1 (both broadcast)."""
    return _wrap(lib.nn_masked_select(_h(_t(input)), _h(_mask(mask, input))))


def one_hot(tensor_, num_classes=-1):
    """int64 [..., num_classes] one-hot encoding (num_classes -1: max + 1)."""
    idx = tensor_ if isinstance(tensor_, Tensor) else tensor(tensor_, dtype=int64)
    return _wrap(lib.nn_one_hot(_h(idx), int(num_classes)))


# C name -> functional name where they differ (the tests check that every op
# of the header's Ops section is reachable from here).
C_NAMES['nn_concat'] = 'concat'
C_NAMES.update({'nn_%s_scalar' % _c: _c for _c in ('eq', 'ne', 'lt', 'le', 'gt', 'ge')})


def _scalar_like(v, t):
    return full((), v, dtype=t.dtype)


# ------------------------------------------------------------------ losses

_REDUCTIONS = {'none': 0, 'mean': 1, 'sum': 2, 'batchmean': 3}


def _red(reduction):
    try:
        return _REDUCTIONS[reduction]
    except KeyError:
        raise ValueError('reduction must be one of %s, got %r'
                         % (sorted(_REDUCTIONS), reduction)) from None


def _target(target, like):
    return target if isinstance(target, Tensor) else as_tensor(target, like=like)


def mse_loss(input, target, reduction='mean'):  # noqa: A002
    return _wrap(lib.nn_mse_loss(_h(input), _h(_target(target, input)), _red(reduction)))


def l1_loss(input, target, reduction='mean'):  # noqa: A002
    return _wrap(lib.nn_l1_loss(_h(input), _h(_target(target, input)), _red(reduction)))


def smooth_l1_loss(input, target, reduction='mean', beta=1.0):  # noqa: A002
    return _wrap(lib.nn_smooth_l1_loss(_h(input), _h(_target(target, input)), _pyfloat(beta),
                                       _red(reduction)))


def huber_loss(input, target, reduction='mean', delta=1.0):  # noqa: A002
    return _wrap(lib.nn_huber_loss(_h(input), _h(_target(target, input)), _pyfloat(delta),
                                   _red(reduction)))


def _labels(target):
    return target if isinstance(target, Tensor) else tensor(target)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction='mean',  # noqa: A002
                  label_smoothing=0.0):
    """Cross-entropy of logits against int64 class indices (or float class
    probabilities), like torch.nn.functional.cross_entropy."""
    target = _labels(target)
    if weight is None and ignore_index == -100 and reduction == 'mean' and \
            not label_smoothing and target.dtype is int64:
        return _wrap(lib.nn_cross_entropy(_h(input), _h(target)))
    return _wrap(lib.nn_cross_entropy_ex(_h(input), _h(target), _opt(weight),
                                         int(ignore_index), _pyfloat(label_smoothing),
                                         _red(reduction)))


def nll_loss(input, target, weight=None, ignore_index=-100, reduction='mean'):  # noqa: A002
    return _wrap(lib.nn_nll_loss(_h(input), _h(_labels(target)), _opt(weight),
                                 int(ignore_index), _red(reduction)))


def binary_cross_entropy(input, target, weight=None, reduction='mean'):  # noqa: A002
    return _wrap(lib.nn_bce_loss(_h(input), _h(_target(target, input)), _opt(weight),
                                 _red(reduction)))


def binary_cross_entropy_with_logits(input, target, weight=None, reduction='mean',  # noqa: A002
                                     pos_weight=None):
    return _wrap(lib.nn_bce_with_logits(_h(input), _h(_target(target, input)), _opt(weight),
                                        _opt(pos_weight), _red(reduction)))


def kl_div(input, target, reduction='mean', log_target=False):  # noqa: A002
    return _wrap(lib.nn_kl_div(_h(input), _h(_target(target, input)), _red(reduction),
                               bool(log_target)))


# C names of the losses -> the names here (checked by the tests too).
C_NAMES.update({'nn_bce_loss': 'binary_cross_entropy',
                'nn_bce_with_logits': 'binary_cross_entropy_with_logits',
                'nn_cross_entropy_ex': 'cross_entropy'})
