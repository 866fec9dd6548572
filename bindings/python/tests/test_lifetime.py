"""Objects left alive at interpreter exit, odd freeing orders, threads."""
import os
import subprocess
import sys
import threading

import libnn
from libnn import nn
from conftest import PKG_ROOT, needs

SCRIPT = r'''
import libnn
from libnn import nn, optim
import libnn.functional as F

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)
    def forward(self, x):
        return self.fc(x).relu()

net = nn.Sequential(Net(), nn.Linear(2, 2))
opt = optim.Adam(net.parameters(), lr=0.1)
x = libnn.randn(3, 4, requires_grad=True)
loss = F.mse_loss(net(x), libnn.zeros(3, 2))
loss.backward()
opt.step()
keep = [x.grad, loss, net[0]]
try:
    import numpy
    keep.append(libnn.from_numpy(numpy.ones(3, 'f')))   # blob with a Python deleter
except ImportError:
    pass
cycle = [net]
cycle.append(cycle)            # a reference cycle collected at shutdown
print('ok')
'''


def test_objects_alive_at_exit_shut_down_cleanly():
    env = dict(os.environ, PYTHONPATH=PKG_ROOT)
    r = subprocess.run([sys.executable, '-c', SCRIPT], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == 'ok'
    assert r.stderr == '', r.stderr


def test_results_outlive_their_inputs():
    a = libnn.tensor([1.0, 2.0], requires_grad=True)
    y = (a * 3).sum() if 'nn_sum' not in libnn._lib.missing_names else None
    del a                      # the graph holds its inputs
    if y is not None:
        y.backward()


def test_module_without_super_init_explains():
    class Forgot(nn.Module):
        def __init__(self):
            self.x = 1

        def forward(self, x):
            return x
    try:
        Forgot()(libnn.ones(1))
    except RuntimeError as e:
        assert 'super().__init__()' in str(e)
    else:
        raise AssertionError('expected RuntimeError')


@needs('nn_linear_new', 'nn_module_custom_new')
def test_python_modules_from_several_threads():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)

        def forward(self, x):
            return self.fc(x) * 2

    m = Twice().eval()
    x = libnn.randn(4, 8)
    with libnn.no_grad():
        want = m(x).tolist()
    errors = []

    def worker():
        try:
            with libnn.no_grad():
                for _ in range(200):
                    assert m(x).tolist() == want
        except BaseException as e:  # noqa: B902
            errors.append(e)
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_copies_are_independent_and_never_share_handles():
    import copy
    import pickle
    t = libnn.tensor([[1.0, 2.0]], requires_grad=True)
    for c in (copy.copy(t), copy.deepcopy(t), pickle.loads(pickle.dumps(t))):
        assert c.tolist() == [[1.0, 2.0]] and c.requires_grad and c._h != t._h
        c.detach().fill_(0)
    assert t.tolist() == [[1.0, 2.0]]
    g = libnn.Generator(5)
    g2 = copy.deepcopy(g)
    assert g.next() == g2.next()


@needs('nn_model_save_buffer', 'nn_model_load_buffer')
def test_module_deepcopy_through_a_model_file():
    import copy
    net = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    twin = copy.deepcopy(net)
    x = libnn.randn(2, 3)
    assert twin(x).tolist() == net(x).tolist()
    twin[0].weight.fill_(0)
    assert net[0].weight.abs().sum().item() > 0

    class Py(nn.Module):
        def forward(self, x):
            return x
    import pytest
    with pytest.raises(TypeError):
        copy.copy(Py())
    with pytest.raises(TypeError):
        copy.copy(libnn.optim.SGD(net.parameters(), lr=0.1))
