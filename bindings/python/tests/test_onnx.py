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
