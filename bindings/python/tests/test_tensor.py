"""Tensors: construction, metadata, values, indexing, operators, ops."""
import array
import math

import pytest

import libnn
import libnn.functional as F
from conftest import assert_close, needs, needs_numpy

try:
    import numpy as np
except Exception:  # pragma: no cover
    np = None


def test_from_nested_lists_and_metadata():
    t = libnn.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert t.shape == (2, 3) and t.ndim == 2 and t.numel() == 6 and len(t) == 2
    assert t.dtype is libnn.float32 and t.is_contiguous()
    assert t.tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert libnn.tensor([1, 2]).dtype is libnn.int64
    assert libnn.tensor([True, False]).dtype is libnn.uint8
    assert libnn.tensor(3.5).shape == () and libnn.tensor(3.5).item() == 3.5
    assert libnn.tensor([]).shape == (0,)
    assert libnn.Tensor([[1, 2]], dtype='float32').tolist() == [[1.0, 2.0]]
    with pytest.raises(ValueError):
        libnn.tensor([[1, 2], [3]])


def test_from_buffers():
    a = array.array('f', [1.5, 2.5, 3.5])
    assert libnn.tensor(a).tolist() == [1.5, 2.5, 3.5]
    assert libnn.tensor(memoryview(a)).dtype is libnn.float32
    q = libnn.tensor(array.array('q', [7, -8]))
    assert q.dtype is libnn.int64 and q.tolist() == [7, -8]
    b = libnn.tensor(bytes([1, 2, 255]))
    assert b.dtype is libnn.uint8 and b.tolist() == [1, 2, 255]
    d = libnn.tensor(array.array('d', [0.25, 0.5]))  # doubles convert to f32
    assert d.dtype is libnn.float32 and d.tolist() == [0.25, 0.5]
    mv = memoryview(bytearray(array.array('f', range(6)).tobytes())).cast('f', (2, 3))
    assert libnn.tensor(mv).tolist() == [[0, 1, 2], [3, 4, 5]]
    iv = memoryview(array.array('i', range(6))).cast('B').cast('i', (3, 2))
    assert libnn.tensor(iv).tolist() == [[0, 1], [2, 3], [4, 5]]
    assert libnn.tensor(iv).dtype is libnn.int64


def test_memoryview_out_shares_data():
    t = libnn.zeros(2, 3)
    mv = t.memoryview()
    assert mv.shape == (2, 3) and mv.format == 'f'
    mv[1, 2] = 9.0
    assert t[1, 2].item() == 9.0


@needs_numpy
def test_numpy_roundtrip_and_zero_copy():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t = libnn.tensor(a)
    assert t.shape == (3, 4) and t.tolist() == a.tolist()
    v = t.numpy()
    assert v.dtype == np.float32 and (v == a).all()
    v[0, 0] = 42.0                       # numpy() is a view of the tensor
    assert t[0, 0].item() == 42.0
    del t
    assert v[0, 0] == 42.0               # the array keeps the data alive
    s = libnn.from_numpy(a)              # from_numpy shares memory
    a[2, 3] = -1.0
    assert s[2, 3].item() == -1.0
    assert libnn.tensor(np.array([1, 2], dtype=np.int32)).dtype is libnn.int64
    assert libnn.tensor(np.float64(2.0)).dtype is libnn.float32
    nc = libnn.tensor(a).T               # non-contiguous: numpy() copies
    assert (nc.numpy() == a.T).all()
    assert np.asarray(libnn.ones(2)).tolist() == [1.0, 1.0]


def test_factories():
    assert libnn.zeros(2, 2).tolist() == [[0, 0], [0, 0]]
    assert libnn.ones((3,)).tolist() == [1, 1, 1]
    assert libnn.full((2,), 7.0).tolist() == [7.0, 7.0]
    assert libnn.arange(4).tolist() == [0, 1, 2, 3]
    assert libnn.arange(0.0, 1.0, 0.25).tolist() == [0, 0.25, 0.5, 0.75]
    assert libnn.linspace(0, 1, 5).tolist() == [0, 0.25, 0.5, 0.75, 1.0]
    g1, g2 = libnn.Generator(7), libnn.Generator(7)
    assert libnn.randn(5, generator=g1).tolist() == libnn.randn(5, generator=g2).tolist()
    u = libnn.rand(1000, generator=g1).tolist()
    assert 0 <= min(u) and max(u) < 1
    assert sorted(libnn.randperm(6, generator=g1).tolist()) == list(range(6))
    st = g1.get_state()
    x = g1.next()
    g1.set_state(st)
    assert g1.next() == x


def test_repr_uses_library_format():
    r = repr(libnn.tensor([[1.0, 2.0]]))
    assert '[1,2]' in r and 'f32' in r


def test_indexing_and_slicing():
    t = libnn.arange(24.0).reshape(2, 3, 4)
    ref = [[[float(i * 12 + j * 4 + k) for k in range(4)] for j in range(3)] for i in range(2)]
    assert t[1].tolist() == ref[1]
    assert t[-1, 2].tolist() == ref[1][2]
    assert t[0, 1, 3].item() == ref[0][1][3]
    assert t[:, 1].tolist() == [r[1] for r in ref]
    assert t[..., 1:3].tolist() == [[row[1:3] for row in m] for m in ref]
    assert t[0, ::2].tolist() == ref[0][::2]
    assert t[0, :, 1::2].tolist() == [row[1::2] for row in ref[0]]
    assert t[None].shape == (1, 2, 3, 4) and t[:, None].shape == (2, 1, 3, 4)
    assert t[0, [2, 0]].tolist() == [ref[0][2], ref[0][0]]
    with pytest.raises(IndexError):
        t[2]
    with pytest.raises(IndexError):
        t[0, 0, 0, 0]
    with pytest.raises(ValueError):
        t[::-1]


def test_setitem_writes_through_views():
    t = libnn.zeros(3, 4)
    t[1] = 5.0
    t[:, 0] = libnn.tensor([1.0, 2.0, 3.0])
    t[2, 1:3] = 7
    assert t.tolist() == [[1, 0, 0, 0], [2, 5, 5, 5], [3, 7, 7, 0]]


@needs('nn_add', 'nn_mul', 'nn_div', 'nn_pow', 'nn_neg', 'nn_matmul', 'nn_eq')
def test_operators_against_python_values():
    a = libnn.tensor([[1.0, 2.0], [3.0, 4.0]])
    b = libnn.tensor([[0.5, -1.0], [2.0, 8.0]])
    A, B = a.tolist(), b.tolist()

    def elementwise(f):
        return [[f(x, y) for x, y in zip(ra, rb)] for ra, rb in zip(A, B)]
    assert_close((a + b).tolist(), elementwise(lambda x, y: x + y))
    assert_close((a - b).tolist(), elementwise(lambda x, y: x - y))
    assert_close((a * b).tolist(), elementwise(lambda x, y: x * y))
    assert_close((a / b).tolist(), elementwise(lambda x, y: x / y))
    assert_close((a ** 2).tolist(), [[1, 4], [9, 16]])
    assert_close((2 ** a).tolist(), [[2, 4], [8, 16]])
    assert_close((a ** b).tolist(), elementwise(lambda x, y: x ** y))
    assert_close((-a).tolist(), [[-1, -2], [-3, -4]])
    assert_close((1 - a).tolist(), [[0, -1], [-2, -3]])
    assert_close((a + 1).tolist(), [[2, 3], [4, 5]])
    assert_close((3 * a).tolist(), [[3, 6], [9, 12]])
    assert_close((1 / a).tolist(), [[1, 0.5], [1 / 3, 0.25]])
    assert_close((a @ b).tolist(), [[4.5, 15.0], [9.5, 29.0]])
    assert_close((a + libnn.tensor([10.0, 20.0])).tolist(), [[11, 22], [13, 24]])
    assert (a == b).tolist() == [[0, 0], [0, 0]]
    assert (a > 2).tolist() == [[0, 0], [1, 1]]
    assert (a <= 2).tolist() == [[1, 1], [0, 0]]
    assert (a != a).tolist() == [[0, 0], [0, 0]]
    assert abs(a).tolist() == A


@needs('nn_sum', 'nn_mean', 'nn_softmax', 'nn_amax', 'nn_argmax', 'nn_exp', 'nn_var')
def test_reductions_and_activations():
    a = libnn.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 7.0]])
    assert a.sum().item() == 22.0
    assert a.sum(0).tolist() == [5.0, 7.0, 10.0]
    assert a.sum(1, keepdim=True).shape == (2, 1)
    assert_close(a.mean(1).tolist(), [2.0, 16.0 / 3])
    assert_close(a.var(1).tolist(), [1.0, 7.0 / 3])
    assert a.amax().item() == 7.0
    v, i = a.max(1)
    assert v.tolist() == [3.0, 7.0] and i.tolist() == [2, 2]
    assert a.argmax().item() == 5 and a.argmin(1).tolist() == [0, 0]
    sm = a.softmax(1).tolist()
    for row, src in zip(sm, a.tolist()):
        e = [math.exp(x - max(src)) for x in src]
        assert_close(row, [x / sum(e) for x in e])
    assert_close(F.relu(libnn.tensor([-1.0, 2.0])).tolist(), [0.0, 2.0])
    assert_close(F.sigmoid(libnn.tensor([0.0])).tolist(), [0.5])
    assert_close(libnn.tensor([1.0]).exp().tolist(), [math.e])
    assert_close(a.clamp(2, 5).tolist(), [[2, 2, 3], [4, 5, 5]])


@needs('nn_reshape', 'nn_transpose', 'nn_concat', 'nn_stack', 'nn_permute')
def test_shape_ops():
    a = libnn.arange(6.0)
    assert a.reshape(2, 3).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert a.view(3, -1).shape == (3, 2)
    b = a.reshape(2, 3)
    assert b.t().tolist() == [[0, 3], [1, 4], [2, 5]]
    assert b.T.shape == (3, 2) and not b.T.is_contiguous()
    assert b.unsqueeze(0).shape == (1, 2, 3) and b.unsqueeze(0).squeeze().shape == (2, 3)
    assert b.flatten().shape == (6,)
    assert F.cat([b, b], 0).shape == (4, 3) and F.stack([b, b], 2).shape == (2, 3, 2)
    assert b.permute(1, 0).tolist() == b.t().tolist()
    assert libnn.tensor([[1.0], [2.0]]).expand(2, 3).tolist() == [[1, 1, 1], [2, 2, 2]]


def test_dtype_conversion_and_compare():
    a = libnn.tensor([1.7, -2.2])
    assert a.long().tolist() == [1, -2] and a.long().dtype is libnn.int64
    assert a.to('u8').dtype is libnn.uint8
    assert a.clone().equal(a) and a.allclose(a.clone())
    c = a.clone()
    c.fill_(3)
    assert c.tolist() == [3.0, 3.0] and a.tolist() != c.tolist()


def test_backend_info_names_the_tier():
    info = libnn.backend_info()
    assert isinstance(info, str)
    assert any(t in info for t in ('reference', 'avx2', 'avx512')), info
