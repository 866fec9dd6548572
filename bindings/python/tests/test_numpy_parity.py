"""Ops through the bindings against NumPy reference computations (checks
the argument mapping of every wrapper as much as the C kernels)."""
import math

import pytest

import libnn
import libnn.functional as F
from conftest import array_close as close
from conftest import needs_numpy

np = pytest.importorskip('numpy')
pytestmark = needs_numpy


def T(a):
    return libnn.tensor(np.asarray(a, dtype=np.float32))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def test_elementwise_and_broadcast(rng):
    a = rng.standard_normal((3, 4)).astype('f')
    b = rng.standard_normal((4,)).astype('f')
    ta, tb = T(a), T(b)
    close(ta + tb, a + b)
    close(ta - tb, a - b)
    close(ta * tb, a * b)
    close(ta / (tb.abs() + 1), a / (np.abs(b) + 1))
    close(F.maximum(ta, tb), np.maximum(a, b))
    close(F.minimum(ta, tb), np.minimum(a, b))
    close(F.where(ta > tb, ta, tb), np.where(a > b, a, b))
    close(ta.abs().sqrt(), np.sqrt(np.abs(a)))
    close(ta.abs().rsqrt(), 1 / np.sqrt(np.abs(a)), tol=1e-4)
    close(ta.exp(), np.exp(a))
    close(ta.abs().log(), np.log(np.abs(a)))
    close(ta.tanh(), np.tanh(a))
    close(ta.sigmoid(), 1 / (1 + np.exp(-a)))
    close(F.leaky_relu(ta, 0.1), np.where(a > 0, a, 0.1 * a))
    close(F.elu(ta, 1.0), np.where(a > 0, a, np.exp(a) - 1))
    close(F.softplus(ta), np.log1p(np.exp(a)))
    close(F.hardtanh(ta, -0.5, 0.5), np.clip(a, -0.5, 0.5))
    close(F.silu(ta), a / (1 + np.exp(-a)))
    erf = np.vectorize(math.erf)
    close(F.gelu(ta), 0.5 * a * (1 + erf(a / math.sqrt(2))), tol=1e-4)
    close(ta.clamp(-0.3, 0.2), np.clip(a, -0.3, 0.2))
    close(ta.abs() ** tb, np.abs(a) ** b, tol=1e-4)


def test_reductions(rng):
    a = rng.standard_normal((2, 3, 4)).astype('f')
    t = T(a)
    close(t.sum(), a.sum(), tol=1e-4)
    close(t.sum((0, 2)), a.sum(axis=(0, 2)), tol=1e-4)
    close(t.mean(1, keepdim=True), a.mean(axis=1, keepdims=True))
    close(t.var(2), a.var(axis=2, ddof=1), tol=1e-4)
    close(t.std(2, correction=0), a.std(axis=2), tol=1e-4)
    close(t.amax(1), a.max(axis=1))
    close(t.amin(), a.min())
    assert t.argmax(2).tolist() == a.argmax(axis=2).tolist()
    v, i = t.min(0)
    close(v, a.min(axis=0))
    assert i.tolist() == a.argmin(axis=0).tolist()
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    close(t.softmax(-1), e / e.sum(axis=-1, keepdims=True))
    close(t.log_softmax(-1), np.log(e / e.sum(axis=-1, keepdims=True)), tol=1e-4)


def test_linear_algebra_and_shape(rng):
    a = rng.standard_normal((2, 3, 4)).astype('f')
    b = rng.standard_normal((4, 5)).astype('f')
    close(T(a) @ T(b), a @ b, tol=1e-4)
    w = rng.standard_normal((6, 4)).astype('f')
    bias = rng.standard_normal(6).astype('f')
    close(F.linear(T(a), T(w), T(bias)), a @ w.T + bias, tol=1e-4)
    close(T(a).transpose(0, 2), a.transpose(2, 1, 0))
    close(T(a).permute(1, 0, 2), a.transpose(1, 0, 2))
    close(F.cat([T(a), T(a)], 1), np.concatenate([a, a], 1))
    close(F.stack([T(b), T(b)], 1), np.stack([b, b], 1))
    idx = np.array([[0, 2, 1, 1], [2, 0, 0, 1]])
    close(F.gather(T(a[0]), 0, libnn.tensor(idx)), np.take_along_axis(a[0], idx, 0))
    close(F.index_select(T(a), 2, [3, 0]), a[:, :, [3, 0]])
    close(F.pad(T(a), (1, 2), value=5.0),
          np.pad(a, ((0, 0), (0, 0), (1, 2)), constant_values=5.0))
    close(T(a)[1, :, ::3], a[1, :, ::3])
    close(F.flatten(T(a), 1), a.reshape(2, 12))


def conv2d_ref(x, w, b, stride, pad, dil, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    oh = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, o, oh, ow))
    og = o // groups
    for g in range(groups):
        for oc in range(g * og, (g + 1) * og):
            for i in range(oh):
                for j in range(ow):
                    patch = xp[:, g * cg:(g + 1) * cg,
                               i * stride[0]:i * stride[0] + dil[0] * (kh - 1) + 1:dil[0],
                               j * stride[1]:j * stride[1] + dil[1] * (kw - 1) + 1:dil[1]]
                    out[:, oc, i, j] = (patch * w[oc]).sum(axis=(1, 2, 3)) + b[oc]
    return out


def test_conv_and_pool_arguments(rng):
    x = rng.standard_normal((2, 4, 7, 6)).astype('f')
    w = rng.standard_normal((6, 2, 3, 2)).astype('f')
    b = rng.standard_normal(6).astype('f')
    got = F.conv2d(T(x), T(w), T(b), stride=(2, 1), padding=(1, 0), dilation=(1, 2),
                   groups=2)
    close(got, conv2d_ref(x, w, b, (2, 1), (1, 0), (1, 2), 2), tol=1e-4)
    xl = rng.standard_normal((1, 2, 9)).astype('f')
    wl = rng.standard_normal((3, 2, 3)).astype('f')
    ref = conv2d_ref(xl[:, :, None, :], wl[:, :, None, :], np.zeros(3), (1, 2), (0, 1),
                     (1, 1), 1)[:, :, 0, :]
    close(F.conv1d(T(xl), T(wl), stride=2, padding=1), ref, tol=1e-4)
    p = rng.standard_normal((1, 2, 5, 6)).astype('f')
    v, idx = F.max_pool2d(T(p), (2, 3), stride=(2, 3), return_indices=True)
    ref = p[:, :, :4, :].reshape(1, 2, 2, 2, 2, 3).max(axis=(3, 5))
    close(v, ref)
    assert idx.dtype is libnn.int64 and idx.shape == (1, 2, 2, 2)
    close(F.avg_pool2d(T(p), 2), p[:, :, :4, :].reshape(1, 2, 2, 2, 3, 2).mean(axis=(3, 5)))
    close(F.adaptive_avg_pool2d(T(p), 1), p.mean(axis=(2, 3), keepdims=True))


def test_normalization(rng):
    x = rng.standard_normal((4, 3, 5)).astype('f')
    mu = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    close(F.layer_norm(T(x), 5), (x - mu) / np.sqrt(var + 1e-5), tol=1e-4)
    mu = x.mean(axis=(0, 2), keepdims=True)
    var = x.var(axis=(0, 2), keepdims=True)
    rm, rv = libnn.zeros(3), libnn.ones(3)
    close(F.batch_norm(T(x), rm, rv, training=True), (x - mu) / np.sqrt(var + 1e-5), tol=1e-4)
    close(rm, 0.1 * mu.reshape(3), tol=1e-4)
    g = x.reshape(4, 1, 15)
    close(F.group_norm(T(x), 1), ((g - g.mean(-1, keepdims=True)) /
                                  np.sqrt(g.var(-1, keepdims=True) + 1e-5)).reshape(4, 3, 5),
          tol=1e-4)
    emb = rng.standard_normal((5, 2)).astype('f')
    close(F.embedding([[4, 0]], T(emb)), emb[[[4, 0]]])
    d = F.dropout(libnn.ones(1000), 0.25, generator=libnn.Generator(3)).numpy()
    assert all(np.isclose(v, 0.0) or np.isclose(v, 1 / 0.75) for v in np.unique(d))
    assert 0.15 < (d == 0).mean() < 0.35


def test_gradient_of_composite_against_numpy(rng):
    a = rng.standard_normal((3, 4)).astype('f')
    w = rng.standard_normal((4, 2)).astype('f')
    ta = T(a).requires_grad_()
    tw = T(w).requires_grad_()
    loss = ((ta @ tw).tanh() ** 2).mean()
    loss.backward()
    h = np.tanh(a @ w)
    g = 2 * h * (1 - h ** 2) / h.size       # dL/d(a w)
    close(ta.grad, g @ w.T, tol=1e-4)
    close(tw.grad, a.T @ g, tol=1e-4)
    close(loss, (h ** 2).mean(), tol=1e-5)


def test_zero_dim_numpy_keeps_shape():
    # Regression: np.ascontiguousarray made 0-d arrays and numpy scalars (1,).
    for value, dt in ((np.float32(2.5), libnn.float32), (np.asarray(2.5), libnn.float32),
                      (np.int64(-7), libnn.int64), (np.asarray(3, dtype=np.int64), libnn.int64),
                      (np.asarray(True), libnn.uint8)):
        t = libnn.tensor(value)
        assert t.shape == () and t.ndim == 0 and t.numel() == 1, (value, t.shape)
        assert t.dtype is dt and t.item() == value.item()
        assert t.numpy().shape == np.asarray(value).shape == ()
    # Explicit dtype conversion keeps 0-d too; 1-d of one element stays (1,).
    assert libnn.tensor(np.float64(1.25), dtype=libnn.float32).shape == ()
    assert libnn.tensor(np.asarray([1.25], dtype=np.float32)).shape == (1,)
