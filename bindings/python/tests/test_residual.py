"""libnn.nn.Residual: body(x) + x and body(x) + shortcut(x) against numpy,
a model-file round trip with no Python code, bad arguments."""
import pytest

import libnn
from libnn import nn
from conftest import HAVE_NUMPY


@pytest.mark.skipif(not HAVE_NUMPY, reason='needs numpy')
def test_forward_matches_formula(tmp_path):
    import numpy as np
    body, sc = nn.Linear(4, 4), nn.Linear(4, 4, bias=False)
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    w, b, w2 = body.weight.numpy(), body.bias.numpy(), sc.weight.numpy()
    y = nn.Residual(body)(libnn.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, x @ w.T + b + x, rtol=1e-5, atol=1e-6)
    res = nn.Residual(body, sc)
    y = res(libnn.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, x @ w.T + b + x @ w2.T, rtol=1e-5, atol=1e-6)
    path = str(tmp_path / 'res.nnm')
    libnn.save(nn.Sequential(res, nn.ReLU()), path)
    back = libnn.load(path)
    np.testing.assert_array_equal(back.predict(libnn.from_numpy(x)).numpy(), np.maximum(y, 0))
    assert type(back.module[0]).__name__ == 'Residual'


def test_bad_arguments():
    with pytest.raises(TypeError):
        nn.Residual(None)
    with pytest.raises(TypeError):
        nn.Residual(nn.ReLU(), 'identity')
    lin = nn.Linear(2, 2)
    with pytest.raises(libnn.LibnnError):
        nn.Residual(lin, lin)
