"""libnn.onnx: PyTorch's ONNX exports load and match PyTorch's outputs (the
golden files of tests/onnx/make_models.py); every source form; the error
for an operator libnn does not run."""
import io
import os

import pytest

import libnn
from libnn import onnx
from conftest import HAVE_NUMPY, SOURCE_ROOT

MODELS = os.path.join(SOURCE_ROOT, 'tests', 'onnx', 'models')


def _have_onnx():
    try:
        onnx.load_bytes(b'')
    except libnn.UnsupportedError:
        return False
    except libnn.LibnnError:
        return True
    return True


pytestmark = pytest.mark.skipif(not _have_onnx(), reason='libnn built without ONNX (-Donnx)')


def read_array(path):
    import numpy as np
    with open(path, 'rb') as f:
        head = f.readline().decode().split()
        data = f.read()
    dt = np.int64 if head[0] == 'i64' else np.float32
    return np.frombuffer(data, dtype=dt).reshape([int(d) for d in head[1:]])


@pytest.mark.skipif(not HAVE_NUMPY, reason='needs numpy')
@pytest.mark.parametrize('name', ['cnn', 'mlp', 'residual', 'gpt'])
def test_matches_pytorch(name):
    import numpy as np
    x = read_array(os.path.join(MODELS, name + '.in'))
    want = read_array(os.path.join(MODELS, name + '.out'))
    path = os.path.join(MODELS, name + '_op17.onnx')
    with open(path, 'rb') as f:
        data = f.read()
    for model in (onnx.load(path), onnx.load_bytes(data), onnx.load_from(io.BytesIO(data))):
        y = model.predict(libnn.from_numpy(np.ascontiguousarray(x))).numpy()
        np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
    assert model.meta['onnx.producer_name'] == 'pytorch'


def test_unsupported_operator():
    with pytest.raises(libnn.UnsupportedError) as e:
        onnx.load(os.path.join(MODELS, 'unsupported_op17.onnx'))
    assert 'Hardmax' in str(e.value) and 'my_hardmax' in str(e.value)


def test_not_onnx():
    with pytest.raises(libnn.FormatError):
        onnx.load_bytes(b'\xff\xff\xff\xff')


# ------------------------------------------------------------------ export


def write_array(path, a):
    import numpy as np
    kind = 'i64' if a.dtype == np.int64 else 'f32'
    with open(path, 'wb') as f:
        f.write((' '.join([kind] + [str(d) for d in a.shape]) + '\n').encode())
        f.write(np.ascontiguousarray(a).tobytes())


def export_cases():
    from libnn import nn
    libnn.manual_seed(3) if hasattr(libnn, 'manual_seed') else None
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, 1, 1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(4, 8, 3, 1, 1), nn.LeakyReLU(0.1), nn.AvgPool2d(2),
                        nn.Flatten(1, -1), nn.Linear(8 * 7 * 7, 16), nn.GELU(), nn.Dropout(0.5),
                        nn.Linear(16, 10), nn.LogSoftmax(1))
    mlp = nn.Sequential(nn.Flatten(1, -1), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 16),
                        nn.Tanh(), nn.Linear(16, 10))
    lstm = nn.Sequential(nn.Embedding(20, 8), nn.LSTM(8, 12, batch_first=True),
                         nn.Select(1, -1), nn.Linear(12, 3))
    gru = nn.Sequential(nn.GRU(6, 8, num_layers=2, batch_first=True, bidirectional=True),
                        nn.LayerNorm(16), nn.SiLU(), nn.Select(1, -1), nn.Linear(16, 4),
                        nn.Softmax(-1))
    layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, batch_first=True)
    enc = nn.Sequential(nn.TransformerEncoder(layer, 2), nn.Linear(16, 4))
    from libnn import gpt
    small_gpt = gpt.GPT(vocab_size=20, block_size=8, n_layer=2, n_head=2, n_embd=8)
    dlayer = nn.TransformerDecoderLayer(16, 2, dim_feedforward=32, batch_first=True,
                                        norm_first=True, activation='gelu')
    dec = nn.TransformerDecoder(dlayer, 2, norm=nn.LayerNorm(16))
    # a ResNet basic block (identity skip) then one with a 1x1 convolution
    # shortcut, and an MLP block with a Linear shortcut
    block = nn.Sequential(
        nn.Residual(nn.Sequential(nn.Conv2d(4, 4, 3, 1, 1, bias=False), nn.BatchNorm2d(4),
                                  nn.ReLU(), nn.Conv2d(4, 4, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(4))),
        nn.ReLU(),
        nn.Residual(nn.Sequential(nn.Conv2d(4, 8, 3, 1, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 1, 1)),
                    nn.Conv2d(4, 8, 1, 1, 0)),
        nn.ReLU(), nn.Flatten(1, -1),
        nn.Residual(nn.Sequential(nn.Linear(8 * 6 * 6, 16), nn.ReLU(), nn.Linear(16, 8)),
                    nn.Linear(8 * 6 * 6, 8)))
    return [('cnn', cnn, 'f32', (3, 1, 28, 28)), ('mlp', mlp, 'f32', (2, 1, 28, 28)),
            ('lstm', lstm, 'i64', (2, 6)), ('gru', gru, 'f32', (2, 5, 6)),
            ('encoder', enc, 'f32', (2, 5, 16)), ('gpt', small_gpt, 'i64', (2, 6)),
            ('decoder', dec, 'f32', [(2, 5, 16), (2, 7, 16)]),
            ('residual', block, 'f32', (2, 4, 6, 6))]


@pytest.mark.skipif(not HAVE_NUMPY, reason='needs numpy')
@pytest.mark.parametrize('case', range(8))
def test_export_checker_ort(case, tmp_path):
    """libnn export -> onnx.checker -> ONNX Runtime within 1e-5 of libnn ->
    libnn import equal to libnn."""
    import shutil
    import subprocess
    import numpy as np
    name, model, dtype, shape = export_cases()[case]
    model.eval()
    rng = np.random.default_rng(7)
    shapes = shape if isinstance(shape, list) else [shape]
    if dtype == 'i64':
        xs = [rng.integers(0, 20, size=s).astype(np.int64) for s in shapes]
    else:
        xs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    path = str(tmp_path / (name + '.onnx'))
    if len(xs) == 1:
        want = model(libnn.from_numpy(xs[0])).numpy()
        onnx.save(model, path, shapes[0], dtype)
        back = onnx.load(path).predict(libnn.from_numpy(xs[0])).numpy()
    else:
        want = model(*[libnn.from_numpy(x) for x in xs]).numpy()
        onnx.save_n(model, path, shapes, [dtype] * len(xs))
        back = onnx.load(path).module.forward_n(*[libnn.from_numpy(x) for x in xs]).numpy()
    np.testing.assert_allclose(back, want, rtol=1e-5, atol=1e-6)
    try:
        import onnx as onnx_pkg
    except ImportError:
        onnx_pkg = None
    if onnx_pkg is not None:
        onnx_pkg.checker.check_model(onnx_pkg.load(path), full_check=True)
    node = shutil.which('node')
    if node is None:
        pytest.skip('node not installed: ONNX Runtime comparison skipped')
    ins = []
    for i, x in enumerate(xs):
        ins.append(str(tmp_path / ('x%d.bin' % i)))
        write_array(ins[-1], x)
    script = os.path.join(SOURCE_ROOT, 'tests', 'onnx', 'ort_run.js')
    r = subprocess.run([node, script, path, ','.join(ins), str(tmp_path / 'y.bin')],
                       capture_output=True, text=True)
    if r.returncode == 77:
        pytest.skip('onnxruntime-node not installed')
    assert r.returncode == 0, r.stderr
    got = read_array(str(tmp_path / 'y.bin'))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
