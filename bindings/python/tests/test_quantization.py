"""int8 post-training quantization from Python: both modes, the report,
closeness to the float model, model-file round trip, errors."""
import pytest

import libnn
from libnn import nn, quantization
from libnn.data import DataLoader, TensorDataset
from conftest import needs

pytestmark = needs('nn_quantize_dynamic', 'nn_quantize_static')


def small_cnn():
    libnn.manual_seed(5)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 10)).eval()


def max_abs_diff(a, b):
    return max(abs(p - q) for p, q in zip(sum(a, []), sum(b, [])))


def test_dynamic_close_to_float_and_report():
    net = small_cnn()
    x = libnn.randn(3, 1, 8, 8)
    with libnn.no_grad():
        want = net(x).tolist()
    report = quantization.quantize_dynamic(net, calib=x)
    assert 'QuantizedConv2d' in report and 'QuantizedLinear' in report
    assert '(whole model)' in report and 'argmax agrees' in report
    assert net[0].type_name == 'QuantizedConv2d'
    assert net[1].type_name == 'Identity'       # fused into the conv
    with libnn.no_grad():
        got = net(x).tolist()
    scale = max(abs(v) for v in sum(want, []))
    assert max_abs_diff(got, want) < 0.05 * scale


def test_static_and_round_trip():
    net = small_cnn()
    x = libnn.randn(16, 1, 8, 8)
    loader = DataLoader(TensorDataset(x, libnn.zeros(16, dtype=libnn.int64)), batch_size=8)
    report = quantization.quantize_static(net, loader, batches=2)
    assert 'static' in report
    with libnn.no_grad():
        want = net(x).tolist()
    back = libnn.load_bytes(libnn.save_bytes(net))
    assert back.module[4].type_name == 'QuantizedLinear'
    with libnn.no_grad():
        assert back(x).tolist() == want


def test_errors():
    with pytest.raises(libnn.InvalidError):
        quantization.quantize_dynamic(nn.Linear(3, 2))
    with pytest.raises(libnn.InvalidError):
        quantization.quantize_dynamic(nn.Sequential(nn.ReLU()))
