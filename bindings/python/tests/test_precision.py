"""libnn.precision.convert: half-precision weights from Python, checked
against the float32 model with its weights rounded the same way (numpy's
float16 cast, or bf16 bits by the definition), through save and load."""
import pytest

import libnn
from libnn import nn

np = pytest.importorskip('numpy')
DT = {'f16': libnn.float16, 'bf16': libnn.bfloat16}


def rounded(a, dtype):
    a = np.asarray(a, dtype=np.float32)
    if dtype == 'f16':
        return a.astype(np.float16).astype(np.float32)
    u = a.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7fff + ((u >> 16) & 1)) >> 16) << 16
    return r.astype(np.uint32).view(np.float32)


def make():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(4 * 5 * 5, 12), nn.ReLU(), nn.Linear(12, 3))
    net.eval()
    return net


@pytest.mark.parametrize('dt', ['f16', 'bf16'])
def test_convert_matches_rounded_f32(tmp_path, dt):
    net = make()
    p = str(tmp_path / 'f32.nnm')
    libnn.save(net, p)
    ref = libnn.load(p).module
    half = libnn.load(p).module
    libnn.precision.convert(half, dt)
    sd_half = half.state_dict()
    assert sd_half['4.weight'].dtype is DT[dt]
    assert sd_half['4.bias'].dtype is libnn.float32
    sd = ref.state_dict()
    for k in ('0.weight', '4.weight', '6.weight'):
        sd[k].copy_(rounded(sd[k].numpy(), dt))
    x = libnn.rand(5, 1, 10, 10)
    with libnn.no_grad():  # as predict runs (no graph: the direct half path)
        y, yr = half(x).numpy(), ref(x).numpy()
    tol = 1e-5 if dt == 'f16' else 1e-2
    assert np.max(np.abs(y - yr)) <= tol * np.max(np.abs(yr))
    q = str(tmp_path / 'half.nnm')
    libnn.save(half, q)
    model = libnn.load(q)
    assert model.module.state_dict()['6.weight'].dtype is DT[dt]
    assert np.array_equal(model.predict(x).numpy(), y)
    libnn.precision.convert(model, 'f32')   # a loaded model: its module
    assert model.module.state_dict()['6.weight'].dtype is libnn.float32


def test_convert_refuses_int8():
    with pytest.raises(libnn.LibnnError):
        libnn.precision.convert(make(), 'int8')
