"""Attention and transformer ops through the bindings, against PyTorch when it
can be imported (Debian's python3-torch 1.13) and against NumPy formulas."""
import math

import pytest

import libnn
import libnn.functional as F
from conftest import array_close as close
from conftest import needs_numpy

np = pytest.importorskip('numpy')
pytestmark = needs_numpy


def T(a, requires_grad=False):
    return libnn.tensor(np.asarray(a, dtype=np.float32), requires_grad=requires_grad)


@pytest.fixture
def rng():
    return np.random.default_rng(4321)


def np_sdpa(q, k, v, mask=None, causal=False, scale=None):
    s = q @ np.swapaxes(k, -1, -2) * (scale or 1 / math.sqrt(q.shape[-1]))
    if causal:
        s = np.where(np.tril(np.ones((q.shape[-2], k.shape[-2]), bool)), s, -np.inf)
    if mask is not None:
        s = np.where(mask, s, -np.inf) if mask.dtype == bool else s + mask
    s = np.exp(s - s.max(-1, keepdims=True))
    return (s / s.sum(-1, keepdims=True)) @ v


def test_sdpa_matches_formula(rng):
    q, k, v = (rng.standard_normal((2, 3, n, 8)).astype('f') for n in (5, 7, 7))
    close(F.scaled_dot_product_attention(T(q), T(k), T(v)), np_sdpa(q, k, v))
    close(F.scaled_dot_product_attention(T(q), T(k), T(v), is_causal=True, scale=0.5),
          np_sdpa(q, k, v, causal=True, scale=0.5))
    m = rng.random((5, 7)) < 0.6
    m[:, 0] = True
    mask = libnn.tensor(m.astype(np.uint8), dtype=libnn.uint8)
    close(F.scaled_dot_product_attention(T(q), T(k), T(v), attn_mask=mask), np_sdpa(q, k, v, m))
    add = rng.standard_normal((2, 1, 5, 7)).astype('f')
    close(F.scaled_dot_product_attention(T(q), T(k), T(v), attn_mask=T(add)),
          np_sdpa(q, k, v, add), tol=1e-4)
    with pytest.raises(ValueError):
        F.scaled_dot_product_attention(T(q), T(k), T(v), scale=-1.0)
    with pytest.raises(libnn.LibnnError):
        F.scaled_dot_product_attention(T(q), T(k[..., :4]), T(v))


def test_sdpa_against_torch(rng):
    torch = pytest.importorskip('torch')
    q, k, v = (rng.standard_normal((2, 2, n, 4)).astype('f') for n in (6, 9, 9))
    m = rng.random((6, 9)) < 0.7
    m[:, 0] = True
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    want, _ = torch.nn.functional._scaled_dot_product_attention(
        tq, tk, tv, torch.tensor(m), 0.0, False, False)
    g = rng.standard_normal(want.shape).astype('f')
    want.backward(torch.tensor(g))
    lq, lk, lv = (T(a, requires_grad=True) for a in (q, k, v))
    mask = libnn.tensor(m.astype(np.uint8), dtype=libnn.uint8)
    got = F.scaled_dot_product_attention(lq, lk, lv, attn_mask=mask)
    got.backward(T(g))
    close(got, want.detach().numpy())
    for ours, theirs in ((lq, tq), (lk, tk), (lv, tv)):
        close(ours.grad, theirs.grad.numpy(), tol=1e-4)


def test_sdpa_dropout_is_seeded(rng):
    q = T(rng.standard_normal((1, 4, 8, 4)))
    a = F.scaled_dot_product_attention(q, q, q, dropout_p=0.5, generator=libnn.Generator(3))
    b = F.scaled_dot_product_attention(q, q, q, dropout_p=0.5, generator=libnn.Generator(3))
    close(a, b.numpy(), tol=0)


def test_rope_rms_norm_trig(rng):
    x = rng.standard_normal((2, 3, 5, 8)).astype('f')
    # rotate-half with positions 2 + t
    h, pos = 4, 2 + np.arange(5)[:, None]
    ang = pos / 10000.0 ** (2 * np.arange(h) / 8)
    c, s = np.cos(ang), np.sin(ang)
    want = np.concatenate([x[..., :h] * c - x[..., h:] * s, x[..., h:] * c + x[..., :h] * s], -1)
    close(F.rope(T(x), offset=2), want, tol=1e-5)
    close(F.rope(T(x), positions=[2, 3, 4, 5, 6]), want, tol=1e-5)
    w = rng.standard_normal(8).astype('f')
    close(F.rms_norm(T(x), 8, T(w), eps=1e-6),
          x / np.sqrt((x.astype('d') ** 2).mean(-1, keepdims=True) + 1e-6) * w, tol=1e-5)
    close(T(x).sin(), np.sin(x))
    close(F.cos(T(x)), np.cos(x))


def test_mask_ops(rng):
    x = rng.standard_normal((3, 4)).astype('f')
    t = T(x, requires_grad=True)
    m = t > 0.2
    assert m.dtype is libnn.uint8
    close(t.masked_fill(m, -1.0), np.where(x > 0.2, -1.0, x))
    sel = t[m]
    close(sel, x[x > np.float32(0.2)])
    sel.sum().backward()
    close(t.grad, (x > np.float32(0.2)).astype('f'))
    close(F.one_hot(libnn.tensor([0, 2, 1], dtype=libnn.int64), 4).to(libnn.float32),
          np.eye(4)[[0, 2, 1]])
    i = libnn.tensor([1, 5, 9], dtype=libnn.int64)
    close((i >= 5).to(libnn.int64), [0, 1, 1])
    close((i == 5.5).to(libnn.int64), [0, 0, 0])
    y = T(x)
    y[y < 0] = 0.0
    close(y, np.maximum(x, 0))
