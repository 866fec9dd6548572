"""MultiheadAttention and the transformer layers, shaped like torch.nn (the
classes are also reachable as libnn.nn.MultiheadAttention, ...).

Layouts and masks as PyTorch: [T, N, E] unless batch_first; boolean masks
(libnn.bool_, True = hide) or float masks (added to the scores). A PyTorch
state dict loads by name (load_state_dict), and saved models reload with no
Python code."""
import copy
from ctypes import byref, c_void_p

from . import nn as _nn
from ._lib import check, lib
from ._tensor import _h, _wrap
from .nn import Module, _Builtin, _b, _forward_n

__all__ = ['MultiheadAttention', 'TransformerEncoderLayer', 'TransformerDecoderLayer',
           'TransformerEncoder', 'TransformerDecoder', 'generate_square_subsequent_mask']

_ACT = {'relu': 0, 'gelu': 1, 'gelu_tanh': 2}


def generate_square_subsequent_mask(sz):
    """Float [sz, sz] mask: 0 on and below the diagonal, -inf above."""
    return _wrap(lib.nn_transformer_causal_mask(int(sz)))


class _Composite(_Builtin):
    """A built-in with named children: attributes read through to them."""

    def __getattr__(self, name):
        if not name.startswith('_'):
            h = self.__dict__.get('_h')
            if h:
                c = lib.nn_module_get_module(h, _b(name))
                if c:
                    return Module._from_handle(c, borrowed=True)
                lib.nn_clear_error()
        return _Builtin.__getattr__(self, name)

    def set_causal(self, causal=True):
        """Make every self-attention causal (saved with the model)."""
        check(lib.nn_transformer_set_causal(self._handle(), bool(causal)))
        return self


class MultiheadAttention(_Composite):
    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False,
                 add_zero_attn=False, kdim=None, vdim=None, batch_first=False):
        if add_bias_kv or add_zero_attn:
            raise NotImplementedError('MultiheadAttention: add_bias_kv and add_zero_attn '
                                      'are not supported')
        super().__init__(lib.nn_multihead_attention_new(
            int(embed_dim), int(num_heads), float(dropout), bool(bias), int(kdim or 0),
            int(vdim or 0), bool(batch_first)), embed_dim=embed_dim, num_heads=num_heads,
            batch_first=bool(batch_first))

    def forward(self, query, key=None, value=None, key_padding_mask=None, need_weights=True,
                attn_mask=None, average_attn_weights=True):
        """(attn_output, attn_weights or None), like PyTorch; key and value
        default to query (self-attention)."""
        key = query if key is None else key
        value = key if value is None else value
        w = c_void_p()
        with _nn._CallFrame():
            out = _wrap(lib.nn_multihead_attention_forward(
                self._handle(), _h(query), _h(key), _h(value),
                None if key_padding_mask is None else _h(key_padding_mask),
                None if attn_mask is None else _h(attn_mask), bool(need_weights),
                bool(average_attn_weights), byref(w) if need_weights else None))
        return out, (_wrap(w.value) if need_weights else None)

    __call__ = forward


def _layer_args(d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps,
                batch_first, norm_first):
    if activation not in _ACT:
        raise ValueError('activation must be one of %s, got %r' % (sorted(_ACT), activation))
    return (int(d_model), int(nhead), int(dim_feedforward), float(dropout), _ACT[activation],
            float(layer_norm_eps), bool(batch_first), bool(norm_first))


class TransformerEncoderLayer(_Composite):
    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation='relu',
                 layer_norm_eps=1e-5, batch_first=False, norm_first=False):
        super().__init__(lib.nn_transformer_encoder_layer_new(*_layer_args(
            d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first,
            norm_first)), d_model=d_model, nhead=nhead, dim_feedforward=dim_feedforward,
            activation=activation, batch_first=bool(batch_first), norm_first=bool(norm_first))

    def forward(self, src, src_mask=None, src_key_padding_mask=None):
        return _forward_n(self._handle(), [src, src_mask, src_key_padding_mask])

    __call__ = forward


class TransformerDecoderLayer(_Composite):
    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation='relu',
                 layer_norm_eps=1e-5, batch_first=False, norm_first=False):
        super().__init__(lib.nn_transformer_decoder_layer_new(*_layer_args(
            d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first,
            norm_first)), d_model=d_model, nhead=nhead, dim_feedforward=dim_feedforward,
            activation=activation, batch_first=bool(batch_first), norm_first=bool(norm_first))

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None):
        return _forward_n(self._handle(), [tgt, memory, tgt_mask, memory_mask,
                                           tgt_key_padding_mask, memory_key_padding_mask])

    __call__ = forward


def _stack(cfn, layer, num_layers, norm):
    # PyTorch deep-copies the layer given; so do we (the C stack takes over
    # the copy as layers.0 and clones it).
    lc = copy.deepcopy(layer)
    nc = copy.deepcopy(norm) if norm is not None else None
    return cfn(lib.nn_module_retain(lc._handle()), int(num_layers),
               None if nc is None else lib.nn_module_retain(nc._handle()))


class TransformerEncoder(_Composite):
    def __init__(self, encoder_layer, num_layers, norm=None, enable_nested_tensor=True):
        super().__init__(_stack(lib.nn_transformer_encoder_new, encoder_layer, num_layers, norm),
                         num_layers=num_layers)

    def forward(self, src, mask=None, src_key_padding_mask=None):
        return _forward_n(self._handle(), [src, mask, src_key_padding_mask])

    __call__ = forward


class TransformerDecoder(_Composite):
    def __init__(self, decoder_layer, num_layers, norm=None):
        super().__init__(_stack(lib.nn_transformer_decoder_new, decoder_layer, num_layers, norm),
                         num_layers=num_layers)

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None):
        return _forward_n(self._handle(), [tgt, memory, tgt_mask, memory_mask,
                                           tgt_key_padding_mask, memory_key_padding_mask])

    __call__ = forward


# Reachable as libnn.nn.<Class>, and modules loaded from files get these classes.
for _cls in (MultiheadAttention, TransformerEncoderLayer, TransformerDecoderLayer,
             TransformerEncoder, TransformerDecoder):
    setattr(_nn, _cls.__name__, _cls)
    _nn._TYPES[_cls.__name__] = _cls
_nn.__all__.extend(__all__[:-1])
_nn.Transformer = type('Transformer', (), {
    'generate_square_subsequent_mask': staticmethod(generate_square_subsequent_mask)})
