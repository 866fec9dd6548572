"""The storage dtypes float16, bfloat16 and int8 from Python: creation,
values, numpy interop (float16 natively, bfloat16 as its uint16 bits or
converted from floats), conversion (round to nearest even, checked against
numpy's own float16 rounding), save / load, and ops refusing them."""
import struct

import pytest

import libnn

np = pytest.importorskip('numpy')


def bf16_bits(x):
    """bfloat16 bits of float32 values by the definition (ties to even)."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = (u + 0x7fff + ((u >> 16) & 1)) >> 16
    return r.astype(np.uint16)


def test_dtype_table():
    assert libnn.float16.itemsize == 2 and libnn.bfloat16.itemsize == 2
    assert libnn.int8.itemsize == 1
    assert libnn.tensor([1.0]).half().dtype is libnn.float16
    assert libnn.tensor([1.0]).bfloat16().dtype is libnn.bfloat16
    assert libnn.tensor([1.0]).char().dtype is libnn.int8


def test_float16_numpy_round_trip():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(1001) * 100).astype(np.float32)
    x[:6] = [0.0, -0.0, 65504.0, 65520.0, 1e-8, 3e-5]
    t = libnn.tensor(x).to('float16')
    a = t.numpy()
    assert a.dtype == np.float16
    # numpy's float32 -> float16 cast rounds to nearest even as well
    with np.errstate(over='ignore'):  # 65520 overflows to Inf, on purpose
        want = x.astype(np.float16)
    assert np.array_equal(a.view(np.uint16), want.view(np.uint16))
    back = libnn.tensor(a)              # numpy float16 -> a float16 tensor
    assert back.dtype is libnn.float16
    assert np.array_equal(back.float().numpy(), a.astype(np.float32))
    shared = libnn.from_numpy(a)
    assert shared.dtype is libnn.float16


def test_bfloat16_bits_and_values():
    rng = np.random.default_rng(4)
    x = (rng.standard_normal(257) * 1e3).astype(np.float32)
    t = libnn.tensor(x, dtype='bf16')
    assert t.dtype is libnn.bfloat16
    bits = t.numpy()
    assert bits.dtype == np.uint16
    assert np.array_equal(bits, bf16_bits(x))
    # uint16 bits in, bfloat16 tensor out, values exact
    u = libnn.tensor(bits, dtype=libnn.bfloat16)
    vals = (bits.astype(np.uint32) << 16).view(np.float32)
    assert np.array_equal(u.float().numpy(), vals)
    assert u.tolist()[:3] == [float(v) for v in vals[:3]]


def test_int8_saturates():
    t = libnn.tensor([-300.0, -1.5, 0.7, 127.9, 1000.0]).to(libnn.int8)
    assert t.tolist() == [-128, -1, 0, 127, 127]
    assert t.numpy().dtype == np.int8
    assert libnn.tensor(np.array([1, -2], dtype=np.int8)).dtype is libnn.int8


def test_item_and_memoryview():
    t = libnn.tensor([1.5, -2.25]).half()
    assert t[1].item() == -2.25
    mv = t.memoryview()
    assert mv.format == 'H' and struct.pack('<e', 1.5) == struct.pack('<H', mv[0])


def test_save_load(tmp_path):
    sd = {'h': libnn.tensor([1.0, 2.5, float('nan')]).half(),
          'b': libnn.tensor([[3.0, -1e30]]).bfloat16(),
          'q': libnn.tensor([5, -7]).to('int8')}
    p = str(tmp_path / 'half.nnw')
    libnn.io.save_state_dict(sd, p)
    back = libnn.io.load_state_dict(p)
    for k, v in sd.items():
        assert back[k].dtype is v.dtype
        assert back[k].numpy().tobytes() == v.numpy().tobytes()


def test_ops_refuse_half():
    t = libnn.tensor([1.0, 2.0]).half()
    with pytest.raises(libnn.LibnnError) as e:
        libnn.relu(t)
    assert 'f16' in str(e.value)
