#!/usr/bin/python3
"""Golden values for libnn's nn ops (matmul, linear, conv, pooling, norms,
embedding) from PyTorch. Run with Debian's python3-torch:

    /usr/bin/python3 tests/golden/make_golden_nn.py

writes tests/golden/ops_nn.txt in the format tests/common/testutil.h reads.
Each case <op>_<k> stores inputs <case>_in<i>, optional i64 <case>_params,
the output <case>_out, a seed gradient <case>_gout and the gradients
<case>_grad<i> of the inputs that require grad (from backward(gout)).
"""

import torch
import torch.nn.functional as F

from golden_io import Records

torch.manual_seed(20240501)
golden = Records("ops_nn.txt")
put = golden.put


def rnd(*shape):
    return torch.rand(tuple(shape)) * 2 - 1


def case(name, inputs, fn, params=None, grads=True):
    """inputs: list of tensors or None (an optional input left out)."""
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
    extra = None
    if isinstance(out, tuple):
        out, extra = out
    put(name + "_out", out)
    if grads:
        gout = rnd(*out.shape)
        put(name + "_gout", gout)
        out.backward(gout)
        for i, t in enumerate(leaves):
            if t is not None and t.requires_grad:
                put("%s_grad%d" % (name, i), t.grad)
    return extra


# ------------------------------------------------------------------ matmul
for k, (a, b) in enumerate([((4,), (4,)), ((3, 4), (4,)), ((4,), (4, 5)), ((3, 4), (4, 5)),
                            ((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5)), ((2, 1, 3, 4), (3, 4, 2)),
                            ((4,), (2, 4, 3)), ((2, 3, 4), (4,))]):
    case("matmul_%d" % k, [rnd(*a), rnd(*b)], torch.matmul)

# ------------------------------------------------------------------ linear
case("linear_0", [rnd(5, 7), rnd(3, 7), rnd(3)], F.linear)
case("linear_1", [rnd(2, 3, 7), rnd(4, 7), None], lambda x, w, b: F.linear(x, w))
case("linear_2", [rnd(7), rnd(4, 7), rnd(4)], F.linear)

# ------------------------------------------------------------------ conv2d
# params: stride_h stride_w pad_h pad_w dil_h dil_w groups
conv2d_cases = [
    ((2, 3, 7, 6), (4, 3, 3, 3), True, (1, 1, 1, 1, 1, 1, 1)),
    ((2, 4, 8, 7), (6, 2, 3, 2), True, (2, 1, 1, 0, 1, 2, 2)),
    ((1, 4, 9, 9), (4, 1, 3, 3), False, (2, 2, 2, 1, 2, 2, 4)),   # depthwise, dilated
    ((1, 1, 28, 28), (4, 1, 3, 3), True, (1, 1, 1, 1, 1, 1, 1)),  # the MNIST first layer
    ((2, 6, 5, 5), (4, 6, 1, 1), True, (1, 1, 0, 0, 1, 1, 1)),    # 1x1
]
for k, (xs, ws, bias, p) in enumerate(conv2d_cases):
    case("conv2d_%d" % k, [rnd(*xs), rnd(*ws), rnd(ws[0]) if bias else None],
         lambda x, w, b, p=p: F.conv2d(x, w, b, (p[0], p[1]), (p[2], p[3]), (p[4], p[5]), p[6]),
         params=p)

# ------------------------------------------------------------------ conv1d
# params: stride pad dil groups
conv1d_cases = [
    ((2, 3, 10), (5, 3, 3), True, (1, 1, 1, 1)),
    ((2, 4, 11), (6, 2, 2), True, (2, 0, 3, 2)),
    ((1, 2, 6), (2, 1, 4), False, (1, 2, 1, 2)),
]
for k, (xs, ws, bias, p) in enumerate(conv1d_cases):
    case("conv1d_%d" % k, [rnd(*xs), rnd(*ws), rnd(ws[0]) if bias else None],
         lambda x, w, b, p=p: F.conv1d(x, w, b, p[0], p[1], p[2], p[3]), params=p)

# -------------------------------------------------------- conv_transpose2d
# params: stride_h stride_w pad_h pad_w opad_h opad_w dil_h dil_w groups
convt_cases = [
    ((2, 3, 4, 5), (3, 2, 3, 3), True, (1, 1, 0, 0, 0, 0, 1, 1, 1)),
    ((2, 4, 3, 4), (4, 3, 3, 2), True, (2, 2, 1, 0, 1, 1, 1, 1, 2)),
    ((1, 2, 4, 3), (2, 2, 2, 3), False, (2, 3, 0, 1, 1, 0, 2, 1, 1)),
    ((2, 4, 5, 5), (4, 1, 3, 3), True, (1, 1, 1, 1, 0, 0, 2, 2, 4)),
]
for k, (xs, ws, bias, p) in enumerate(convt_cases):
    case("convt2d_%d" % k, [rnd(*xs), rnd(*ws), rnd(ws[1] * p[8]) if bias else None],
         lambda x, w, b, p=p: F.conv_transpose2d(x, w, b, (p[0], p[1]), (p[2], p[3]), (p[4], p[5]),
                                                 p[8], (p[6], p[7])),
         params=p)

# ----------------------------------------------------------------- pooling
# max params: kh kw sh sw ph pw dh dw ceil
max_cases = [
    ((2, 3, 8, 8), (2, 2, 2, 2, 0, 0, 1, 1, 0)),
    ((2, 2, 7, 9), (3, 2, 2, 2, 1, 1, 1, 1, 1)),
    ((1, 2, 9, 8), (3, 3, 2, 1, 1, 1, 2, 1, 0)),
    ((1, 3, 6, 7), (2, 3, 2, 2, 1, 0, 1, 2, 1)),
    ((3, 5, 5), (3, 3, 3, 3, 0, 0, 1, 1, 1)),       # 3-D input, ceil
]
for k, (xs, p) in enumerate(max_cases):
    idx = case("maxpool_%d" % k, [rnd(*xs)],
               lambda x, p=p: F.max_pool2d(x, (p[0], p[1]), (p[2], p[3]), (p[4], p[5]), (p[6], p[7]),
                                           ceil_mode=bool(p[8]), return_indices=True),
               params=p)
    put("maxpool_%d_indices" % k, idx)

# avg params: kh kw sh sw ph pw ceil count_include_pad
avg_cases = [
    ((2, 3, 8, 8), (2, 2, 2, 2, 0, 0, 0, 1)),
    ((2, 2, 7, 9), (3, 2, 2, 2, 1, 1, 1, 1)),
    ((2, 2, 7, 9), (3, 2, 2, 2, 1, 1, 1, 0)),
    ((1, 3, 6, 7), (3, 3, 2, 3, 1, 1, 0, 0)),
    ((3, 5, 5), (2, 2, 2, 2, 1, 1, 1, 1)),
]
for k, (xs, p) in enumerate(avg_cases):
    case("avgpool_%d" % k, [rnd(*xs)],
         lambda x, p=p: F.avg_pool2d(x, (p[0], p[1]), (p[2], p[3]), (p[4], p[5]), bool(p[6]), bool(p[7])),
         params=p)

for k, (xs, o) in enumerate([((2, 3, 7, 5), (3, 2)), ((1, 2, 6, 6), (4, 4)), ((3, 5, 4), (5, 7)),
                             ((2, 2, 8, 8), (1, 1))]):
    case("adaptavg_%d" % k, [rnd(*xs)], lambda x, o=o: F.adaptive_avg_pool2d(x, o), params=o)
    idx = case("adaptmax_%d" % k, [rnd(*xs)],
               lambda x, o=o: F.adaptive_max_pool2d(x, o, return_indices=True), params=o)
    put("adaptmax_%d_indices" % k, idx)

# --------------------------------------------------------------- batch_norm
# params: training momentum*1000 eps*1e6 has_running has_affine
for k, (xs, training, mom, eps, affine) in enumerate([((4, 3, 5, 6), 1, 0.1, 1e-5, True),
                                                       ((6, 4), 1, 0.3, 1e-3, False),
                                                       ((3, 2, 7), 0, 0.1, 1e-5, True),
                                                       ((2, 3, 4, 4), 0, 0.1, 1e-5, False)]):
    C = xs[1]
    rm, rv = rnd(C) * 0.5, torch.rand(C) + 0.5
    put("bn_%d_rm" % k, rm)
    put("bn_%d_rv" % k, rv)
    rm2, rv2 = rm.clone(), rv.clone()
    case("bn_%d" % k, [rnd(*xs) * 2 + 0.5, rnd(C) + 1.5 if affine else None, rnd(C) if affine else None],
         lambda x, w, b: F.batch_norm(x, rm2, rv2, w, b, bool(training), mom, eps),
         params=(training, round(mom * 1000), round(eps * 1e6)))
    put("bn_%d_rm_after" % k, rm2)
    put("bn_%d_rv_after" % k, rv2)

# --------------------------------------------------------------- layer_norm
# params: n_normalized_dims eps*1e6
for k, (xs, n, affine) in enumerate([((4, 6), 1, True), ((2, 3, 4, 5), 2, True), ((3, 7), 1, False)]):
    ns = xs[len(xs) - n:]
    case("ln_%d" % k, [rnd(*xs) * 3, rnd(*ns) + 1 if affine else None, rnd(*ns) if affine else None],
         lambda x, w, b, ns=ns: F.layer_norm(x, ns, w, b, 1e-5), params=(n, 10))

# --------------------------------------------------------------- group_norm
# params: groups eps*1e6
for k, (xs, g, affine) in enumerate([((2, 6, 4, 3), 3, True), ((3, 4, 5), 2, False), ((2, 4, 3, 3), 4, True),
                                     ((2, 4, 3), 1, True)]):
    C = xs[1]
    case("gn_%d" % k, [rnd(*xs) * 2, rnd(C) + 1 if affine else None, rnd(C) if affine else None],
         lambda x, w, b, g=g: F.group_norm(x, g, w, b, 1e-5), params=(g, 10))

# ---------------------------------------------------------------- embedding
for k, (num, dim, ishape) in enumerate([(10, 4, (3, 5)), (7, 3, (6,))]):
    idx = torch.randint(0, num, ishape)
    idx.view(-1)[0] = idx.view(-1)[1]  # a repeated index: backward must add
    case("emb_%d" % k, [rnd(num, dim), idx], lambda w, i: F.embedding(i, w))

golden.save()
