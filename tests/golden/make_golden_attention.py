#!/usr/bin/python3
"""Golden values for libnn's attention and transformer ops from PyTorch 1.13.
Run with Debian's python3-torch:

    /usr/bin/python3 tests/golden/make_golden_attention.py

writes tests/golden/attention.txt in the format tests/common/testutil.h reads.
Each case <name> stores inputs <name>_in<i> (boolean masks as i64 0/1),
optional i64 <name>_params, the output <name>_out, a seed gradient
<name>_gout and the gradients <name>_grad<i> of the f32 inputs that require
grad (from backward(gout)).

SDPA: boolean masks and the causal flag go through torch 1.13's
F._scaled_dot_product_attention (True = take part; is_causal is
tril(ones(L, S)), top-left aligned); additive float masks, explicit scales
and broadcast batch dims, which 1.13's function does not take, through the
textbook formula softmax(q kᵀ · scale + mask) v with autograd.
"""
import math

import torch
import torch.nn.functional as F

from golden_io import Records

torch.manual_seed(20261130)
golden = Records("attention.txt")
put = golden.put


def rnd(*shape, lo=-1.0, hi=1.0):
    return torch.rand(tuple(shape)) * (hi - lo) + lo


def case(name, inputs, fn, params=None, grads=True):
    """inputs: tensors (or None for an optional input left out); f32 ones
    get gradients when grads is True."""
    leaves = []
    for i, t in enumerate(inputs):
        if t is None:
            leaves.append(None)
            continue
        put("%s_in%d" % (name, i), t)
        if grads and t.is_floating_point():
            t = t.clone().requires_grad_(True)
        leaves.append(t)
    if params is not None:
        put(name + "_params", torch.tensor(params, dtype=torch.int64))
    out = fn(*leaves)
    put(name + "_out", out)
    if grads and out.is_floating_point():
        gout = rnd(*out.shape)
        put(name + "_gout", gout)
        out.backward(gout)
        for i, t in enumerate(leaves):
            if t is not None and t.requires_grad:
                put("%s_grad%d" % (name, i), t.grad)


# ------------------------------------------------------------------- SDPA
# params: is_causal, mask kind (0 none, 1 bool, 2 float), scale * 1e6 (0: default)

def sdpa_torch(q, k, v, mask, causal):
    out, _ = F._scaled_dot_product_attention(q, k, v, mask, 0.0, False, causal)
    return out


def sdpa_formula(q, k, v, mask, causal, scale):
    s = torch.matmul(q, k.transpose(-2, -1)) * (scale if scale > 0 else 1.0 / math.sqrt(q.shape[-1]))
    if causal:
        tq, tk = q.shape[-2], k.shape[-2]
        s = s.masked_fill(torch.ones(tq, tk).tril().logical_not(), float("-inf"))
    if mask is not None:
        if mask.dtype == torch.bool:
            s = s.masked_fill(mask.logical_not(), float("-inf"))
        else:
            s = s + mask
    return torch.matmul(torch.softmax(s, dim=-1), v)


def keep_mask(*shape, p=0.7):
    """A boolean mask with at least one True in every row (no empty rows)."""
    m = torch.rand(shape) < p
    m[..., 0] = True
    return m


n = 0


def sdpa_case(q, k, v, mask=None, causal=False, scale=0.0, torch_fn=True):
    global n
    kind = 0 if mask is None else (1 if mask.dtype == torch.bool else 2)
    params = [int(causal), kind, int(round(scale * 1e6))]
    ins = [q, k, v, None if mask is None else (mask.long() if kind == 1 else mask)]
    if torch_fn:
        fn = lambda a, b, c, m: sdpa_torch(a, b, c, None if m is None else mask, causal)  # noqa: E731
    else:
        fn = lambda a, b, c, m: sdpa_formula(  # noqa: E731
            a, b, c, None if m is None else (mask if kind == 1 else m), causal, scale)
    case("sdpa_%d" % n, ins, fn, params=params)
    n += 1


B, H = 2, 3
sdpa_case(rnd(B, H, 5, 8), rnd(B, H, 5, 8), rnd(B, H, 5, 8))                       # plain
sdpa_case(rnd(2, 4, 8), rnd(2, 6, 8), rnd(2, 6, 8))                                  # Tq < Tk, 3-D
sdpa_case(rnd(1, 2, 7, 4), rnd(1, 2, 7, 4), rnd(1, 2, 7, 4), causal=True)           # causal
sdpa_case(rnd(1, 2, 3, 4), rnd(1, 2, 6, 4), rnd(1, 2, 6, 4), causal=True)           # causal Tq < Tk
sdpa_case(rnd(1, 2, 6, 4), rnd(1, 2, 3, 4), rnd(1, 2, 3, 4), causal=True)           # causal Tq > Tk
sdpa_case(rnd(B, H, 5, 6), rnd(B, H, 7, 6), rnd(B, H, 7, 6), mask=keep_mask(5, 7))  # bool [Tq, Tk]
sdpa_case(rnd(B, H, 4, 6), rnd(B, H, 5, 6), rnd(B, H, 5, 6),
          mask=keep_mask(B, 1, 1, 5))                                                 # key padding
sdpa_case(rnd(B, H, 4, 6), rnd(B, H, 5, 6), rnd(B, H, 5, 3),
          mask=rnd(B, 1, 4, 5, lo=-2, hi=2), torch_fn=False)                        # float, Dv != D
sdpa_case(rnd(B, H, 4, 6), rnd(B, H, 4, 6), rnd(B, H, 4, 6), causal=True,
          mask=rnd(4, 4), scale=0.3, torch_fn=False)                                # causal + float
sdpa_case(rnd(2, 3, 5, 4), rnd(2, 1, 6, 4), rnd(2, 1, 6, 4), torch_fn=False)        # shared k/v heads
# several tiles (64 query rows, 128 keys per tile): boundaries inside rows and keys
sdpa_case(rnd(1, 1, 130, 4), rnd(1, 1, 260, 4), rnd(1, 1, 260, 4), mask=keep_mask(130, 260))
sdpa_case(rnd(1, 1, 150, 4), rnd(1, 1, 150, 4), rnd(1, 1, 150, 4), causal=True)


# ------------------------------------------------------------ mask ops
# masked_fill: params = [value * 1e6]; mask broadcast to x
x = rnd(3, 4, 5)
m = torch.rand(4, 1) < 0.5
case("masked_fill_0", [x, m.long()], lambda a, mm: a.masked_fill(m, -2.5), params=[-2500000])
m2 = torch.rand(3, 4, 5) < 0.3
case("masked_fill_1", [x, m2.long()], lambda a, mm: a.masked_fill(m2, 0.75), params=[750000])
case("masked_fill_2", [torch.randint(-5, 5, (4, 5)), m.long()],
     lambda a, mm: a.masked_fill(m, 7), params=[7000000], grads=False)
# masked_select: x broadcast against the mask
ms = torch.rand(2, 4, 5) < 0.5
case("masked_select_0", [rnd(4, 5), ms.long()], lambda a, mm: torch.masked_select(a, ms))
case("masked_select_1", [rnd(2, 4, 5), (torch.rand(5) < 0.5).long()],
     lambda a, mm: torch.masked_select(a, mm.bool()))
# one_hot: params = [num_classes]
case("one_hot_0", [torch.randint(0, 6, (3, 4))], lambda i: F.one_hot(i, 6), params=[6], grads=False)
case("one_hot_1", [torch.tensor([2, 0, 4])], lambda i: F.one_hot(i), params=[-1], grads=False)
# sin, cos
xs = rnd(4, 7, lo=-6, hi=6)
case("sin_0", [xs], torch.sin)
case("cos_0", [xs], torch.cos)
# scalar comparisons: params = [op (0 eq .. 5 ge), scalar * 1e6]
ops = [torch.eq, torch.ne, torch.lt, torch.le, torch.gt, torch.ge]
xf = torch.tensor([0.1, 0.2, -1.0, 0.0, 2.5, 0.1 + 1e-8, float("nan")], dtype=torch.float32)
xi = torch.tensor([-3, -1, 0, 1, 2, 3, 1 << 40])
k = 0
for x_, scal in ((xf, 0.1), (xf, 0.0), (xi, 2.5), (xi, -1.0), (xi, 2.0)):
    for o, fn in enumerate(ops):
        case("cmp_scalar_%d" % k, [x_], lambda a: fn(a, scal), params=[o, int(round(scal * 1e6))],
             grads=False)
        k += 1

golden.save()
