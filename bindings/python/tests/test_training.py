"""End-to-end training through the bindings."""
import os
import time

import pytest

import libnn
import libnn.functional as F
from libnn import nn, optim
from libnn.data import DataLoader, Dataset, TensorDataset, accuracy
from conftest import FASHION, needs

pytestmark = needs('nn_dataset_from_idx', 'nn_loader_new', 'nn_optim_new', 'nn_cross_entropy')


def _fashion(train, n):
    pre = 'train' if train else 't10k'
    img = os.path.join(FASHION, pre + '-images-idx3-ubyte.gz')
    lab = os.path.join(FASHION, pre + '-labels-idx1-ubyte.gz')
    if not (os.path.exists(img) and os.path.exists(lab)):
        pytest.skip('Fashion-MNIST not found under %s' % FASHION)
    return Dataset.from_idx(img, lab).subset(range(n))


def evaluate(model, loader):
    correct = total = 0
    model.eval()
    with libnn.no_grad():
        for x, y in loader:
            n = y.shape[0]
            correct += accuracy(model(x), y) * n
            total += n
    model.train()
    return correct / total


def test_mlp_fashion_mnist_reaches_80_percent():
    train = _fashion(True, 6000)
    test = _fashion(False, 2000)
    assert len(train) == 6000 and train.sample_shape == (1, 28, 28)
    assert train.num_classes == 10
    libnn.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(train, batch_size=64, shuffle=True, seed=1)
    start = time.time()
    for epoch in range(4):
        for x, y in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
    acc = evaluate(model, DataLoader(test, batch_size=500))
    elapsed = time.time() - start
    print('MLP: test accuracy %.1f%% in %.1f s' % (100 * acc, elapsed))
    assert acc >= 0.80, acc


def test_python_subclass_trains_on_fashion_mnist_slice():
    train = _fashion(True, 2000)

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 64)
            self.fc2 = nn.Linear(64, 10)

        def forward(self, x):
            return self.fc2(F.relu(self.fc1(x.flatten(1))))

    libnn.manual_seed(0)
    model = MLP()
    opt = optim.Adam(model.parameters(), lr=2e-3)
    loader = DataLoader(train, batch_size=100, shuffle=True)
    losses = []
    for epoch in range(3):
        total = 0.0
        for x, y in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            total += loss.item()
        losses.append(total / len(loader))
    assert losses[-1] < 0.7 * losses[0], losses
    assert evaluate(model, DataLoader(train, batch_size=500)) > 0.75


def test_tensor_dataset_loader_and_metrics():
    x = libnn.arange(20.0).reshape(10, 2)
    y = libnn.tensor([0, 1] * 5)
    ds = TensorDataset(x, y)
    assert len(ds) == 10 and ds.sample_shape == (2,) and ds.num_classes == 2
    xi, yi = ds[3]
    assert xi.tolist() == [[6.0, 7.0]] and yi.tolist() == [1]
    loader = DataLoader(ds, batch_size=4)
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [4, 4, 2] and len(loader) == 3
    assert batches[0][0].tolist()[0] == [0.0, 1.0]    # batches stay valid after next()
    assert len(list(DataLoader(ds, batch_size=4, drop_last=True))) == 2
    seen = sorted(v for xb, _ in DataLoader(ds, batch_size=3, shuffle=True, seed=5)
                  for v in xb[:, 0].tolist())
    assert seen == [float(2 * i) for i in range(10)]
    a, b = ds.split([0.7, 0.3], seed=1)
    assert len(a) + len(b) == 10
    logits = libnn.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    labels = libnn.tensor([0, 1, 1])
    assert abs(accuracy(logits, labels) - 2 / 3) < 1e-9
    cm = libnn.data.confusion_matrix(logits, labels, 2)
    assert cm.tolist() == [[1, 0], [1, 1]]
    p, r = libnn.data.precision_recall(cm)
    assert p == [0.5, 1.0] and r == [1.0, 0.5]
    m = libnn.data.Meter()
    m.add(1.0, 1)
    m.add(4.0, 3)
    assert m.mean == 3.25 and m.count == 4


@needs('nn_fit')
def test_fit_loop_with_callback():
    libnn.manual_seed(0)
    x = libnn.randn(200, 4)
    y = (x[:, 0] > 0).long()
    ds = TensorDataset(x, y)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = optim.Adam(model.parameters(), lr=1e-2)
    seen = []
    hist = libnn.fit(model, opt, DataLoader(ds, 20, shuffle=True), epochs=5,
                     val=DataLoader(ds, 50), on_epoch=lambda r: seen.append(r['epoch']))
    assert seen == [0, 1, 2, 3, 4] and len(hist) == 5
    assert hist[-1]['val_acc'] > 0.9

    def stop(rec):
        return rec['epoch'] < 1
    assert len(libnn.fit(model, opt, DataLoader(ds, 20), epochs=5, on_epoch=stop)) == 2

    def boom(rec):
        raise RuntimeError('stop here')
    with pytest.raises(RuntimeError, match='stop here'):
        libnn.fit(model, opt, DataLoader(ds, 20), epochs=2, on_epoch=boom)


@needs('nn_dist_init', 'nn_dist_shard_indices')
def test_dist_world_of_one():
    from libnn import dist
    dist.init()
    try:
        if dist.size() != 1:
            pytest.skip('running under mpirun')
        assert dist.rank() == 0
        assert dist.shard_indices(10, 1, 3) == [1, 4, 7]
        assert dist.shard_indices(10, 0, 3, even=False) == [0, 3, 6, 9]
        assert dist.allreduce([1.5, 2.0]) == [1.5, 2.0]
        net = nn.Linear(3, 2)
        dist.broadcast_module(net, 0)
        net(libnn.ones(1, 3)).sum().backward()
        g = net.weight.grad.tolist()
        dist.allreduce_grads(net)
        assert net.weight.grad.tolist() == g
        assert dist.bucket_bytes() == 25 << 20
        dist.set_bucket_bytes(1)
        dist.set_overlap(net)
        assert dist.num_buckets() == 2  # weight and bias, one bucket each
        dist.allreduce_grads(net)
        assert net.weight.grad.tolist() == g
        dist.set_overlap(net, False)
        assert dist.num_buckets() == 0
        dist.set_bucket_bytes(25 << 20)
        with pytest.raises(ValueError):
            dist.set_bucket_bytes(0)
        ds = TensorDataset(libnn.zeros(5, 2), [0, 1, 0, 1, 0])
        assert len(dist.shard_dataset(ds)) == 5
        dist.barrier()
    finally:
        dist.finalize()
