#!/usr/bin/python3
"""Golden values for tests/module/test_transformer.c: PyTorch's
MultiheadAttention (self- and cross-attention, boolean and float masks,
batch_first both ways, kdim/vdim, averaged attention weights),
TransformerEncoderLayer and TransformerDecoderLayer (norm_first both ways,
relu and gelu, causal masks) and 2-layer TransformerEncoder/Decoder stacks
with a final norm. For each case: every parameter (random values over a
wider range than PyTorch's init, biases included, under PyTorch's
state_dict names), the inputs, the output and the gradients of
L = sum(y * r) for the inputs and every parameter. Dropout is 0 and the
modules are in training mode, so PyTorch takes its ordinary (not "fast")
path.

Run with Debian's interpreter: /usr/bin/python3 tests/golden/make_golden_transformer.py
Writes tests/golden/transformer.txt in the testutil.h record format."""
import torch

from golden_io import Records, fmt_repr

torch.manual_seed(1213)
golden = Records("transformer.txt", float_fmt=fmt_repr, bool_dtype="f32")
put = golden.put
put_module = golden.put_module


def randomize(m):
    with torch.no_grad():
        for p in m.parameters():
            p.uniform_(-0.6, 0.6)


def record(prefix, m, inputs, names, y, params_only=False):
    """Write the state dict, the inputs, y, r and the gradients of sum(y * r)."""
    for k, v in m.state_dict().items():
        put(prefix + "." + k, v)
    for n, t in zip(names, inputs):
        if t is not None:
            put(prefix + "_" + n, t)
    put(prefix + "_nsd", torch.tensor([len(m.state_dict())]))
    r = torch.randn_like(y)
    put(prefix + "_r", r)
    put(prefix + "_y", y)
    m.zero_grad()
    for t in inputs:
        if t is not None and t.requires_grad:
            t.grad = None
    (y * r).sum().backward()
    for n, t in zip(names, inputs):
        if t is not None and t.requires_grad:
            put(prefix + "_grad_" + n, t.grad)
    for k, p in m.named_parameters():
        put(prefix + ".grad." + k, p.grad)


def leaf(*shape):
    return torch.randn(*shape).requires_grad_(True)


E, H, L, S, N = 8, 2, 3, 4, 2

# 1. self-attention, [L, N, E], no masks
m = torch.nn.MultiheadAttention(E, H)
randomize(m)
x = leaf(L, N, E)
y, _ = m(x, x, x, need_weights=False)
record("mha_self", m, [x], ["x"], y)

# 2. cross-attention, batch_first, boolean key_padding_mask and 2-D attn_mask
m = torch.nn.MultiheadAttention(E, H, batch_first=True)
randomize(m)
q, k, v = leaf(N, L, E), leaf(N, S, E), leaf(N, S, E)
kpm = torch.tensor([[False, False, True, False], [False, True, True, False]])
am = torch.tensor([[False, True, False, False], [False, False, False, True], [True, False, False, False]])
y, _ = m(q, k, v, key_padding_mask=kpm, attn_mask=am, need_weights=False)
y2, w = m(q, k, v, key_padding_mask=kpm, attn_mask=am, need_weights=True)
put("mha_cross_w", w)
y3, w3 = m(q, k, v, key_padding_mask=kpm, attn_mask=am, need_weights=True, average_attn_weights=False)
put("mha_cross_wheads", w3)
record("mha_cross", m, [q, k, v, kpm, am], ["q", "k", "v", "kpm", "am"], y)

# 3. float 3-D attn_mask [N*H, L, S] plus a boolean key_padding_mask, [L, N, E]
m = torch.nn.MultiheadAttention(E, H)
randomize(m)
q, k = leaf(L, N, E), leaf(S, N, E)
am = torch.randn(N * H, L, S)
kpm = torch.tensor([[False, False, False, True], [True, False, False, False]])
y, _ = m(q, k, k, key_padding_mask=kpm, attn_mask=am, need_weights=False)
record("mha_fmask", m, [q, k, kpm, am], ["q", "k", "kpm", "am"], y)

# 4. kdim/vdim != embed_dim (separate projections), float key_padding_mask
m = torch.nn.MultiheadAttention(E, H, kdim=5, vdim=6)
randomize(m)
q, k, v = leaf(L, N, E), leaf(S, N, 5), leaf(S, N, 6)
kpm = torch.randn(N, S)
y, _ = m(q, k, v, key_padding_mask=kpm, need_weights=False)
record("mha_kv", m, [q, k, v, kpm], ["q", "k", "v", "kpm"], y)

# 5. no bias, unbatched [L, E]
m = torch.nn.MultiheadAttention(E, H, bias=False)
randomize(m)
x = leaf(L, E)
y, _ = m(x, x, x, need_weights=False)
record("mha_nobias", m, [x], ["x"], y)

D, NH, FF, T = 8, 2, 16, 5
causal = torch.nn.Transformer.generate_square_subsequent_mask(T)
put("causal5", causal)

# 6. encoder layers
for name, kw, bf in (("enc_post_relu", dict(norm_first=False, activation="relu"), False),
                     ("enc_pre_gelu", dict(norm_first=True, activation="gelu"), True)):
    m = torch.nn.TransformerEncoderLayer(D, NH, FF, dropout=0.0, batch_first=bf, **kw)
    randomize(m)
    x = leaf(N, T, D) if bf else leaf(T, N, D)
    kpm = torch.tensor([[False] * 5, [False, False, False, True, True]])
    mask = torch.zeros(T, T, dtype=torch.bool)
    mask[0, 4] = True
    y = m(x, src_mask=mask, src_key_padding_mask=kpm)
    record(name, m, [x, mask, kpm], ["x", "mask", "kpm"], y)
    # the causal (float) mask alone
    x2 = x.detach().clone().requires_grad_(True)
    y2 = m(x2, src_mask=causal)
    put(name + "_ycausal", y2)

# 7. decoder layers: causal tgt mask, memory key padding
for name, kw, bf in (("dec_post_relu", dict(norm_first=False, activation="relu"), False),
                     ("dec_pre_gelu", dict(norm_first=True, activation="gelu"), True)):
    m = torch.nn.TransformerDecoderLayer(D, NH, FF, dropout=0.0, batch_first=bf, **kw)
    randomize(m)
    tgt = leaf(N, T, D) if bf else leaf(T, N, D)
    mem = leaf(N, S, D) if bf else leaf(S, N, D)
    mkpm = torch.tensor([[False, False, False, True], [False, True, False, False]])
    y = m(tgt, mem, tgt_mask=causal, memory_key_padding_mask=mkpm)
    record(name, m, [tgt, mem, mkpm], ["tgt", "mem", "mkpm"], y)

# 8. 2-layer stacks with a final norm (layers made different after cloning)
layer = torch.nn.TransformerEncoderLayer(D, NH, FF, dropout=0.0)
m = torch.nn.TransformerEncoder(layer, 2, norm=torch.nn.LayerNorm(D), enable_nested_tensor=False)
randomize(m)
x = leaf(T, N, D)
kpm = torch.tensor([[False] * 5, [False, False, True, True, True]])
y = m(x, src_key_padding_mask=kpm)
record("encoder2", m, [x, kpm], ["x", "kpm"], y)

layer = torch.nn.TransformerDecoderLayer(D, NH, FF, dropout=0.0, batch_first=True, norm_first=True)
m = torch.nn.TransformerDecoder(layer, 2, norm=torch.nn.LayerNorm(D))
randomize(m)
tgt, mem = leaf(N, T, D), leaf(N, S, D)
y = m(tgt, mem, tgt_mask=causal)
record("decoder2", m, [tgt, mem], ["tgt", "mem"], y)

golden.save()
