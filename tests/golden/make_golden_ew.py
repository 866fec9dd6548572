#!/usr/bin/python3
"""Golden values for the elementwise / activation / reduction / comparison /
join ops (tests/ops/test_ew_golden.c), from PyTorch (Debian python3-torch,
1.13, CPU). Regenerate with:

    /usr/bin/python3 tests/golden/make_golden_ew.py   # writes tests/golden/ops_ew.txt

For each case <c>: inputs <c>.in0, <c>.in1, ... ; forward output <c>.out ;
a fixed upstream gradient <c>.gout (same shape as out) ; and the gradient of
sum(out * gout) with respect to every floating input, <c>.g0, <c>.g1, ...
Integer inputs (masks, indices) and integer outputs are written as i64.
"""

import torch
import torch.nn.functional as F

from golden_io import Records

torch.manual_seed(20240601)
torch.set_default_dtype(torch.float32)

golden = Records("ops_ew.txt")
emit = golden.put


def rnd(*shape, lo=-2.0, hi=2.0):
    return torch.rand(tuple(shape)) * (hi - lo) + lo


def case(name, fn, inputs):
    """inputs: list of tensors; float ones get gradients."""
    ins = []
    for i, t in enumerate(inputs):
        emit("%s.in%d" % (name, i), t)
        t = t.clone()
        if t.is_floating_point():
            t.requires_grad_(True)
        ins.append(t)
    y = fn(*ins)
    emit(name + ".out", y)
    if y.is_floating_point() and y.requires_grad:
        gout = torch.randn(y.shape)
        emit(name + ".gout", gout)
        (y * gout).sum().backward()
        for i, t in enumerate(ins):
            if t.is_floating_point():
                g = t.grad if t.grad is not None else torch.zeros_like(t)
                emit("%s.g%d" % (name, i), g)


# --- binary, broadcasting [3,1,4] with [2,4]
A, B = (3, 1, 4), (2, 4)
case("add", torch.add, [rnd(*A), rnd(*B)])
case("sub", torch.sub, [rnd(*A), rnd(*B)])
case("mul", torch.mul, [rnd(*A), rnd(*B)])
case("div", torch.div, [rnd(*A), rnd(*B, lo=0.5, hi=2.0)])
case("pow", torch.pow, [rnd(*A, lo=0.5, hi=2.0), rnd(*B, lo=-1.5, hi=1.5)])
case("minimum", torch.minimum, [rnd(*A), rnd(*B)])
case("maximum", torch.maximum, [rnd(*A), rnd(*B)])
case("mul_scalar_b", torch.mul, [rnd(2, 3), rnd()])  # 0-d operand
case("where", lambda c, a, b: torch.where(c.bool(), a, b),
     [torch.randint(0, 2, (3, 1)), rnd(3, 4), rnd(4)])

# --- unary
X = (3, 5)
case("add_scalar", lambda x: x + 1.5, [rnd(*X)])
case("mul_scalar", lambda x: x * -2.5, [rnd(*X)])
case("pow_scalar", lambda x: x ** 3, [rnd(*X)])
case("pow_scalar_half", lambda x: x ** 0.5, [rnd(*X, lo=0.5, hi=3.0)])
case("neg", torch.neg, [rnd(*X)])
case("exp", torch.exp, [rnd(*X)])
case("log", torch.log, [rnd(*X, lo=0.2, hi=3.0)])
case("sqrt", torch.sqrt, [rnd(*X, lo=0.2, hi=3.0)])
case("rsqrt", torch.rsqrt, [rnd(*X, lo=0.2, hi=3.0)])
case("abs", torch.abs, [rnd(*X)])
case("clamp", lambda x: torch.clamp(x, -0.5, 0.7), [rnd(*X)])

# --- activations
case("relu", F.relu, [rnd(*X)])
case("leaky_relu", lambda x: F.leaky_relu(x, 0.1), [rnd(*X)])
case("elu", lambda x: F.elu(x, 1.3), [rnd(*X)])
case("gelu", F.gelu, [rnd(*X, lo=-3, hi=3)])
case("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"), [rnd(*X, lo=-3, hi=3)])
case("silu", F.silu, [rnd(*X, lo=-3, hi=3)])
case("sigmoid", torch.sigmoid, [rnd(*X, lo=-4, hi=4)])
case("tanh", torch.tanh, [rnd(*X)])
case("softplus", lambda x: F.softplus(x, beta=2.0, threshold=3.0), [rnd(*X, lo=-3, hi=3)])
case("hardtanh", lambda x: F.hardtanh(x, -1.0, 0.5), [rnd(*X)])
S = (2, 3, 4)
for d in range(3):
    case("softmax%d" % d, lambda x, d=d: torch.softmax(x, d), [rnd(*S, lo=-3, hi=3)])
    case("log_softmax%d" % d, lambda x, d=d: torch.log_softmax(x, d), [rnd(*S, lo=-3, hi=3)])

# --- reductions on [3,4,5]
R = (3, 4, 5)
case("sum_all", lambda x: x.sum(), [rnd(*R)])
case("sum_d1k", lambda x: x.sum(dim=1, keepdim=True), [rnd(*R)])
case("sum_d02", lambda x: x.sum(dim=(0, 2)), [rnd(*R)])
case("mean_all", lambda x: x.mean(), [rnd(*R)])
case("mean_dm1", lambda x: x.mean(dim=-1), [rnd(*R)])
case("var_d02", lambda x: x.var(dim=(0, 2), unbiased=True), [rnd(*R)])
case("var_all0", lambda x: x.var(unbiased=False), [rnd(*R)])
case("std_d1k", lambda x: x.std(dim=1, unbiased=False, keepdim=True), [rnd(*R)])
case("std_d2", lambda x: x.std(dim=2), [rnd(*R)])
case("amax_d1", lambda x: x.amax(dim=1), [rnd(*R)])
case("amin_all", lambda x: x.amin(), [rnd(*R)])
case("amax_d02k", lambda x: x.amax(dim=(0, 2), keepdim=True), [rnd(*R)])
case("max_d2", lambda x: torch.max(x, dim=2)[0], [rnd(*R)])
case("max_d2_idx", lambda x: torch.max(x, dim=2)[1], [rnd(*R)])
case("min_d0k", lambda x: torch.min(x, dim=0, keepdim=True)[0], [rnd(*R)])
case("argmax_d1", lambda x: torch.argmax(x, dim=1), [rnd(*R)])
case("argmin_d0k", lambda x: torch.argmin(x, dim=0, keepdim=True), [rnd(*R)])

# --- comparisons (integer-valued floats so that ties occur), broadcasting
CA, CB = torch.randint(-2, 3, (3, 4)).float(), torch.randint(-2, 3, (4,)).float()
for nm, f in [("eq", torch.eq), ("ne", torch.ne), ("lt", torch.lt), ("le", torch.le),
              ("gt", torch.gt), ("ge", torch.ge)]:
    case(nm, f, [CA, CB])

# --- join
case("concat1", lambda a, b, c: torch.cat([a, b, c], 1), [rnd(2, 1, 3), rnd(2, 4, 3), rnd(2, 2, 3)])
case("stack1", lambda a, b, c: torch.stack([a, b, c], 1), [rnd(2, 3), rnd(2, 3), rnd(2, 3)])
case("index_select1", lambda a, i: torch.index_select(a, 1, i), [rnd(3, 4, 2), torch.tensor([3, 0, 3, 1, 2])])
case("gather0", lambda a, i: torch.gather(a, 0, i), [rnd(3, 4), torch.randint(0, 3, (2, 4))])
case("pad", lambda x: F.pad(x, (1, 2, 0, 1), value=0.25), [rnd(2, 3, 4)])
case("pad_neg", lambda x: F.pad(x, (-1, 2, 1, -1), value=-1.0), [rnd(2, 3, 4)])


# --- std where the standard deviation is 0 (constant rows): PyTorch's
# gradient is 0 there, not 0/0 (appended last so earlier draws are unchanged)
def with_const_rows(x):
    x[0, 1, :] = 0.7
    x[2, 3, :] = -1.25
    return x


case("std_const_d2", lambda x: x.std(dim=2), [with_const_rows(rnd(*R))])
case("std_const_d2k0", lambda x: x.std(dim=2, unbiased=False, keepdim=True),
     [with_const_rows(rnd(*R))])
case("std_const_all", lambda x: x.std(), [torch.full((2, 3), -1.5)])

golden.save()
