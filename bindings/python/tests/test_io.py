"""Model files: Python <-> C round trips, metadata, bad files, checkpoints."""
import io as pyio
import os
import subprocess

import pytest

import libnn
from libnn import _lib, nn, optim
from libnn._lib import lib
from conftest import BUILD_ROOT, FASHION, needs

pytestmark = needs('nn_model_save', 'nn_model_load', 'nn_model_predict')


def small_cnn():
    libnn.manual_seed(3)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 10))


def test_python_save_then_c_load_gives_identical_outputs(tmp_path):
    net = small_cnn().eval()
    x = libnn.randn(2, 1, 8, 8)
    with libnn.no_grad():
        want = net(x).tolist()
    path = str(tmp_path / 'py.nnm')
    libnn.save(net, path, meta={'description': 'tiny', 'classes': ['a', 'b'],
                                'mean': [0.5, 0.25], 'epochs': 3})
    # Load through the raw C API (no Python wrapper in between).
    model = lib.nn_model_load(path.encode(), None)
    assert model, _lib.text(lib.nn_last_error())
    y = lib.nn_model_predict(model, x._h)
    got = libnn._tensor._own(y).tolist()
    lib.nn_model_free(model)
    assert got == want                                   # bit-identical
    m = libnn.load(path)
    assert m.meta == {'description': 'tiny', 'classes': ['a', 'b'], 'mean': [0.5, 0.25],
                      'epochs': 3.0}
    assert m.predict(x).tolist() == want
    mod = m.module
    m.close()                                            # the module outlives the model
    assert mod.type_name == 'Sequential' and mod(x).tolist() == want


def test_c_save_then_python_load(tmp_path):
    net = small_cnn()
    path = str(tmp_path / 'c.nnm')
    # Save through the raw C API.
    assert lib.nn_model_save(net._handle(), path.encode(), None, None) == 0
    x = libnn.randn(3, 1, 8, 8)
    net.eval()
    with libnn.no_grad():
        want = net(x).tolist()
    assert libnn.load(path)(x).tolist() == want


def test_bytes_and_stream_roundtrips(tmp_path):
    net = small_cnn().eval()
    x = libnn.randn(1, 1, 8, 8)
    want = net(x).tolist()
    data = libnn.save_bytes(net, compression=0)
    assert libnn.load_bytes(data)(x).tolist() == want
    buf = pyio.BytesIO()
    libnn.io.save_to(net, buf, meta={'k': 'v'})
    buf.seek(0)
    m = libnn.io.load_from(buf)
    assert m(x).tolist() == want and m.meta == {'k': 'v'}
    sd_path = str(tmp_path / 'w.nnm')
    libnn.io.save_state_dict(net, sd_path)
    sd = libnn.io.load_state_dict(sd_path)
    assert list(sd) == list(net.state_dict())
    other = small_cnn()
    for p in other.parameters():
        p.fill_(0)
    assert other.load_weights(sd_path) == ''
    assert other.eval()(x).tolist() == want
    raw = libnn.io.state_dict_bytes({'w': libnn.arange(4.0)})
    assert libnn.io.load_state_dict_bytes(raw)['w'].tolist() == [0, 1, 2, 3]


def test_bad_files_raise_with_message(tmp_path):
    good = libnn.save_bytes(small_cnn())
    with pytest.raises(libnn.LibnnError) as e:
        libnn.load_bytes(b'not a model file at all')
    assert e.value.message
    with pytest.raises((libnn.TruncatedError, libnn.FormatError, libnn.ChecksumError)):
        libnn.load_bytes(good[:len(good) // 2])
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x40
    with pytest.raises(libnn.LibnnError):
        libnn.load_bytes(bytes(flipped))
    with pytest.raises((libnn.IoError, libnn.NotFoundError)):
        libnn.load(str(tmp_path / 'missing.nnm'))
    with pytest.raises(libnn.LibnnError):
        libnn.load_bytes(good, max_bytes=16)
    # Still fine afterwards.
    assert libnn.load_bytes(good).module.type_name == 'Sequential'


def test_python_module_weights_save_and_load(tmp_path):
    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(x).tanh()

    a, b = Head(), Head()
    path = str(tmp_path / 'head.nnm')
    libnn.io.save_state_dict(a, path)
    b.load_weights(path)
    x = libnn.randn(4, 3)
    assert a(x).tolist() == b(x).tolist()
    # A whole model with a Python module cannot be rebuilt from the file.
    full = str(tmp_path / 'full.nnm')
    libnn.save(nn.Sequential(a), full)
    with pytest.raises(libnn.LibnnError):
        libnn.load(full)


@needs('nn_checkpoint_load')
def test_checkpoint_roundtrip(tmp_path):
    net = small_cnn()
    opt = optim.Adam(net.parameters(), lr=1e-3)
    x, y = libnn.randn(4, 1, 8, 8), libnn.tensor([1, 2, 3, 4])
    libnn.functional.cross_entropy(net(x), y).backward()
    opt.step()
    path = str(tmp_path / 'ck.nnm')
    libnn.save(net, path, optimizer=opt, epoch=7, step=42)
    net2 = small_cnn()
    opt2 = optim.Adam(net2.parameters(), lr=1e-3)
    assert libnn.io.load_checkpoint(path, net2, opt2) == (7, 42)
    assert net2.state_dict()['4.weight'].tolist() == net.state_dict()['4.weight'].tolist()
    assert opt2.state_dict()['state.0.exp_avg'].tolist() == \
        opt.state_dict()['state.0.exp_avg'].tolist()


def test_embed_inference_example_reads_a_python_model(tmp_path):
    """Train briefly in Python, save with the demo's metadata, and classify
    the test set with the C program examples/embed_inference."""
    import re
    from libnn.data import DataLoader, Dataset, accuracy
    exe = os.path.join(BUILD_ROOT, 'examples', 'embed_inference')
    if not os.path.exists(exe):
        pytest.skip('examples/embed_inference not built')
    images = os.path.join(FASHION, 't10k-images-idx3-ubyte.gz')
    labels = os.path.join(FASHION, 't10k-labels-idx1-ubyte.gz')
    if not os.path.exists(images):
        pytest.skip('Fashion-MNIST not found')
    train = Dataset.from_idx(os.path.join(FASHION, 'train-images-idx3-ubyte.gz'),
                             os.path.join(FASHION, 'train-labels-idx1-ubyte.gz'))
    train = train.subset(range(2000))
    mean, std = train.compute_normalize()
    libnn.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = optim.Adam(net.parameters(), lr=2e-3)
    for x, y in DataLoader(train, 100, shuffle=True):
        opt.zero_grad()
        libnn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    test = Dataset.from_idx(images, labels).set_normalize(mean, std)
    net.eval()
    correct = 0
    with libnn.no_grad():
        for x, y in DataLoader(test, 1000):
            correct += round(accuracy(net(x), y) * y.shape[0])
    path = str(tmp_path / 'mlp.nnm')
    libnn.save(net, path, meta={'description': 'python MLP', 'normalize_mean': mean,
                                'normalize_std': std, 'input_shape': [1, 1, 28, 28],
                                'class_names': ['c%d' % i for i in range(10)]})
    r = subprocess.run([exe, path, images, labels], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    assert r.returncode == 0, r.stdout
    assert 'python MLP' in r.stdout
    m = re.search(r'accuracy: ([0-9.]+)% \((\d+) of (\d+)\)', r.stdout)
    assert m, r.stdout
    assert int(m.group(3)) == len(test)
    assert abs(int(m.group(2)) - correct) <= 5, (m.group(0), correct)


def test_aligned_file_mapped_load_matches_copied(tmp_path):
    """save(aligned=True) + load(mmap=True): the same predictions bit for bit
    as the copying load; writing a mapped parameter leaves the file alone."""
    net = small_cnn().eval()
    x = libnn.randn(2, 1, 8, 8)
    with libnn.no_grad():
        want = net(x).tolist()
    path = str(tmp_path / 'aligned.nnm')
    libnn.save(net, path, aligned=True)
    before = open(path, 'rb').read()
    assert before[12] == 1                               # the aligned flag (FORMAT.md 11)
    for mode in (False, True, 2):
        m = libnn.load(path, mmap=mode)
        assert m.predict(x).tolist() == want
        p = m.module.parameters()[0]
        with libnn.no_grad():
            p.fill_(3.0)
        m.close()
    assert open(path, 'rb').read() == before
