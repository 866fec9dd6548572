"""safetensors from Python: PyTorch-written fixtures (tests/io/safetensors,
written by make_fixtures.py with python3-torch) load, run and save back
byte for byte; mapped loads equal copied ones."""
import os

import pytest

import libnn
from libnn import nn, safetensors
from conftest import SOURCE_ROOT, needs

pytestmark = needs('nn_safetensors_load', 'nn_safetensors_save_buffer')

FIX = os.path.join(SOURCE_ROOT, 'tests', 'io', 'safetensors')


def fixture(name):
    return os.path.join(FIX, name)


def mlp():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def test_roundtrip_bytes_and_metadata():
    with open(fixture('mlp.safetensors'), 'rb') as f:
        raw = f.read()
    for sd, meta in (safetensors.load(fixture('mlp.safetensors')),
                     safetensors.load(fixture('mlp.safetensors'), mmap=True),
                     safetensors.load_bytes(raw)):
        assert list(sd) == ['0.weight', '0.bias', '2.weight', '2.bias']
        assert meta == {'format': 'pt', 'note': 'libnn fixture'}
        assert safetensors.save_bytes(sd, meta=meta) == raw


def test_load_into_module_matches_pytorch(tmp_path):
    io, _ = safetensors.load(fixture('mlp_io.safetensors'))
    outs = []
    for mmap in (False, True):
        net = mlp()
        assert safetensors.load_into(net, fixture('mlp.safetensors'), mmap=mmap) == ''
        net.eval()
        with libnn.no_grad():
            y = net(io['x'])
        outs.append(y.tolist())
    assert outs[0] == outs[1]
    for a, b in zip(sum(outs[0], []), sum(io['y'].tolist(), [])):
        assert abs(a - b) <= 1e-6 + 1e-5 * abs(b)
    net = mlp()
    with open(fixture('ddp.safetensors'), 'rb') as f:
        assert safetensors.load_into_bytes(net, f.read()) == ''
    path = str(tmp_path / 'm.safetensors')
    safetensors.save(net, path)
    sd, meta = safetensors.load(path)
    assert meta == {} and list(sd) == ['0.weight', '0.bias', '2.weight', '2.bias']


def test_errors():
    with pytest.raises(libnn.FormatError, match='nn_safetensors_load_buffer'):
        safetensors.load_bytes(b'\x02\0\0\0\0\0\0\0[]')
    small = nn.Sequential(nn.Linear(4, 8))
    with pytest.raises(libnn.LibnnError, match='unexpected'):
        safetensors.load_into(small, fixture('mlp.safetensors'))
    assert 'unexpected: 2.weight' in safetensors.load_into(small, fixture('mlp.safetensors'),
                                                           strict=False)
