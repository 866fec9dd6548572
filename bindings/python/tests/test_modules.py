"""Modules, Python subclasses, losses, optimizers, schedules, init."""
import gc
import math
import re

import pytest

import libnn
import libnn.functional as F
from libnn import nn, optim
from conftest import assert_close, header_section, needs

pytestmark = needs('nn_linear_new', 'nn_module_forward', 'nn_sequential_new')


def test_sequential_matches_functional():
    libnn.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    x = libnn.randn(5, 4)
    w0, b0, w2, b2 = net.parameters()
    want = F.linear(F.relu(F.linear(x, w0, b0)), w2, b2)
    assert_close(net(x).tolist(), want.tolist())
    assert [n for n, _ in net.named_parameters()] == ['0.weight', '0.bias', '2.weight',
                                                      '2.bias']
    assert net.num_parameters() == 4 * 8 + 8 + 8 * 3 + 3
    assert len(net) == 3 and net[0].weight.shape == (8, 4) and net[-1].bias.shape == (3,)
    assert net.type_name == 'Sequential' and net.training
    assert not net.eval().training and net.train().training


def test_state_dict_roundtrip_and_strict_errors():
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    sd = a.state_dict()
    assert list(sd) == ['weight', 'bias']
    assert b.load_state_dict(sd) in ('', None)
    assert b.weight.tolist() == a.weight.tolist()
    with pytest.raises(libnn.LibnnError) as e:
        b.load_state_dict({'weight': libnn.zeros(5, 5)})
    assert 'weight' in str(e.value)
    report = b.load_state_dict({'weight': libnn.zeros(2, 3), 'extra': libnn.ones(1)},
                               strict=False)
    assert 'extra' in report and b.weight.tolist() == [[0, 0, 0], [0, 0, 0]]


def _constructors_in_header():
    text = header_section('Modules', 'Initialisation')
    return sorted(set(re.findall(r'\b(nn_\w+_new(?:_ex)?)\s*\(', text)) - {
        'nn_module_custom_new', 'nn_sequential_new', 'nn_module_list_new',
        'nn_module_dict_new'})   # containers without a forward: tested below


# C constructor -> (Python layer, input) exercising it.
LAYERS = {
    'nn_linear_new': (lambda: nn.Linear(4, 3), (2, 4)),
    'nn_conv1d_new': (lambda: nn.Conv1d(2, 3, 3, padding=1), (1, 2, 5)),
    'nn_conv2d_new': (lambda: nn.Conv2d(1, 2, 3, padding=1), (1, 1, 5, 5)),
    'nn_conv2d_new_ex': (lambda: nn.Conv2d(2, 4, (3, 1), stride=(2, 1), groups=2),
                         (1, 2, 5, 5)),
    'nn_conv_transpose2d_new': (lambda: nn.ConvTranspose2d(2, 1, 3, stride=2), (1, 2, 3, 3)),
    'nn_conv_transpose2d_new_ex': (lambda: nn.ConvTranspose2d(2, 2, (2, 3), groups=2),
                                   (1, 2, 3, 3)),
    'nn_max_pool2d_new': (lambda: nn.MaxPool2d(2), (1, 1, 4, 4)),
    'nn_max_pool2d_new_ex': (lambda: nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
                             (1, 1, 5, 5)),
    'nn_avg_pool2d_new': (lambda: nn.AvgPool2d(2), (1, 1, 4, 4)),
    'nn_avg_pool2d_new_ex': (lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=False),
                             (1, 1, 4, 4)),
    'nn_adaptive_avg_pool2d_new': (lambda: nn.AdaptiveAvgPool2d(2), (1, 1, 5, 5)),
    'nn_flatten_new': (lambda: nn.Flatten(), (2, 3, 4)),
    'nn_dropout_new': (lambda: nn.Dropout(0.3), (4, 4)),
    'nn_batch_norm1d_new': (lambda: nn.BatchNorm1d(3), (4, 3)),
    'nn_batch_norm2d_new': (lambda: nn.BatchNorm2d(2), (2, 2, 3, 3)),
    'nn_layer_norm_new': (lambda: nn.LayerNorm(4), (2, 4)),
    'nn_group_norm_new': (lambda: nn.GroupNorm(2, 4), (2, 4, 3)),
    'nn_embedding_new': (lambda: nn.Embedding(10, 3), None),
    'nn_embedding_new_padded': (lambda: nn.Embedding(10, 3, padding_idx=0), None),
    'nn_select_new': (lambda: nn.Select(1, -1), (2, 5, 3)),
    'nn_residual_new': (lambda: nn.Residual(nn.Sequential(nn.Linear(4, 4), nn.ReLU()),
                                            nn.Linear(4, 4, bias=False)), (2, 4)),
    'nn_recurrent_new': (lambda: nn.LSTM(3, 4, 2, dropout=0.2, bidirectional=True),
                         (5, 2, 3)),
    'nn_rnn_new': (lambda: nn.RNN(3, 4, nonlinearity='relu'), (2, 5, 3)),
    'nn_lstm_new': (lambda: nn.LSTM(3, 4, num_layers=2), (2, 5, 3)),
    'nn_gru_new': (lambda: nn.GRU(3, 4), (2, 5, 3)),
    'nn_relu_new': (nn.ReLU, (3,)),
    'nn_leaky_relu_new': (lambda: nn.LeakyReLU(0.2), (3,)),
    'nn_elu_new': (nn.ELU, (3,)),
    'nn_gelu_new': (lambda: nn.GELU('tanh'), (3,)),
    'nn_silu_new': (nn.SiLU, (3,)),
    'nn_sigmoid_new': (nn.Sigmoid, (3,)),
    'nn_tanh_new': (nn.Tanh, (3,)),
    'nn_softplus_new': (lambda: nn.Softplus(beta=2), (3,)),
    'nn_hardtanh_new': (lambda: nn.Hardtanh(-0.5, 0.5), (3,)),
    'nn_softmax_new': (lambda: nn.Softmax(dim=1), (2, 3)),
    'nn_log_softmax_new': (lambda: nn.LogSoftmax(1), (2, 3)),
    'nn_identity_new': (nn.Identity, (3,)),
    # attention and transformer layers (test_transformer.py checks them against PyTorch)
    'nn_multihead_attention_new': (lambda: nn.MultiheadAttention(4, 2), (3, 2, 4)),
    'nn_transformer_encoder_layer_new': (lambda: nn.TransformerEncoderLayer(4, 2, 8),
                                         (3, 2, 4)),
    'nn_transformer_encoder_new': (lambda: nn.TransformerEncoder(
        nn.TransformerEncoderLayer(4, 2, 8), 2), (3, 2, 4)),
    'nn_transformer_decoder_layer_new': (lambda: _SelfMemory(nn.TransformerDecoderLayer(4, 2, 8)),
                                         (3, 2, 4)),
    'nn_transformer_decoder_new': (lambda: _SelfMemory(nn.TransformerDecoder(
        nn.TransformerDecoderLayer(4, 2, 8), 2)), (3, 2, 4)),
}


class _SelfMemory(nn.Module):
    """A decoder run on x with x as its memory (one input, for the table)."""

    def __init__(self, dec):
        super().__init__()
        self.dec = dec

    def forward(self, x):
        return self.dec(x, x)


def test_every_c_layer_has_a_python_class():
    missing = [c for c in _constructors_in_header() if c not in LAYERS]
    assert not missing, 'layers without a test/Python class: %s' % missing


@pytest.mark.parametrize('cname', sorted(LAYERS))
def test_layer_runs(cname):
    make, shape = LAYERS[cname]
    m = make()
    if shape is None:
        y = m(libnn.tensor([[1, 2], [3, 9]]))
        assert y.shape == (2, 2, 3)
        return
    out = m(libnn.randn(*shape))
    if isinstance(out, tuple):      # recurrent: (output, state)
        out = out[0]
        assert out.shape[:2] == shape[:2]
    assert out.numel() > 0
    repr(m)


def test_recurrent_states():
    lstm = nn.LSTM(3, 4, num_layers=2, batch_first=True)
    out, (h, c) = lstm(libnn.randn(2, 5, 3))
    assert out.shape == (2, 5, 4) and h.shape == (2, 2, 4) and c.shape == (2, 2, 4)
    out2, _ = lstm(libnn.randn(2, 5, 3), (h, c))
    assert out2.shape == (2, 5, 4)
    # PyTorch's default layout: [T, N, C]; bidirectional doubles the features
    # and the state rows.
    gru = nn.GRU(3, 4, num_layers=2, bidirectional=True)
    out, h = gru(libnn.randn(7, 2, 3))
    assert out.shape == (7, 2, 8) and h.shape == (4, 2, 4)


def test_recurrent_defaults_match_torch():
    torch = pytest.importorskip('torch')
    np = pytest.importorskip('numpy')
    x = np.random.RandomState(0).randn(5, 2, 3).astype('float32')   # [T, N, C]
    for cls, kw in ((nn.LSTM, {}), (nn.GRU, {}), (nn.RNN, {'nonlinearity': 'relu'})):
        torch.manual_seed(0)
        ref = getattr(torch.nn, cls.__name__)(3, 4, num_layers=2, bidirectional=True, **kw)
        m = cls(3, 4, num_layers=2, bidirectional=True, **kw)
        assert [n for n, _ in m.named_parameters()] == [n for n, _ in ref.named_parameters()]
        m.load_state_dict({k: libnn.tensor(v.detach().numpy())
                           for k, v in ref.state_dict().items()})
        want, h_want = ref(torch.from_numpy(x))
        got, h_got = m(libnn.tensor(x))
        if cls is nn.LSTM:
            h_want, h_got = h_want[0], h_got[0]
        assert_close(got.tolist(), want.detach().numpy().tolist(), 1e-4)
        assert_close(h_got.tolist(), h_want.detach().numpy().tolist(), 1e-4)


def test_select_modulelist_moduledict_save_and_load(tmp_path):
    libnn.manual_seed(0)
    net = nn.Sequential(nn.LSTM(3, 5, batch_first=True), nn.Select(1, -1), nn.Linear(5, 2))
    x = libnn.randn(4, 6, 3)
    want = net.eval()(x).tolist()
    path = str(tmp_path / 'clf.nnm')
    net.save(path)
    m = libnn.load(path)
    assert m.predict(x).tolist() == want
    assert isinstance(m.module[1], nn.Select)

    blocks = nn.ModuleList([nn.Linear(3, 3), nn.Tanh()])
    blocks.append(nn.Linear(3, 1))
    assert len(blocks) == 3 and isinstance(blocks[-1], nn.Linear) and len(blocks[:2]) == 2
    heads = nn.ModuleDict({'a': nn.Linear(3, 2)})
    heads['b'] = blocks
    assert heads.keys() == ['a', 'b'] and 'b' in heads and heads['b'] is blocks
    assert [n for n, _ in heads.named_parameters()] == [
        'a.weight', 'a.bias', 'b.0.weight', 'b.0.bias', 'b.2.weight', 'b.2.bias']
    with pytest.raises(NotImplementedError):
        blocks(x)
    path = str(tmp_path / 'dict.nnm')
    heads.save(path)
    got = libnn.load(path).module
    assert isinstance(got, nn.ModuleDict) and got.keys() == ['a', 'b']
    assert isinstance(got['b'], nn.ModuleList) and len(got['b']) == 3
    assert got['b'][0].weight.tolist() == blocks[0].weight.tolist()


class Stack(nn.Module):
    """A Python forward over a ModuleList, as in PyTorch."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])

    def forward(self, x):
        for layer in self.layers:
            x = F.relu(layer(x))
        return x


def test_modulelist_in_python_module():
    m = Stack()
    assert len(m.parameters()) == 6
    x = libnn.randn(2, 4)
    y = x
    for layer in m.layers:
        y = F.relu(layer(y))
    assert m(x).tolist() == y.tolist()


def test_embedding_padding_idx():
    emb = nn.Embedding(5, 3, padding_idx=-1)
    assert emb.weight.tolist()[4] == [0.0, 0.0, 0.0]
    idx = libnn.tensor([[4, 1], [4, 4]])
    emb(idx).sum().backward()
    g = emb.weight.grad.tolist()
    assert g[4] == [0.0, 0.0, 0.0] and g[1] == [1.0, 1.0, 1.0]


class Scaled(nn.Module):
    """y = fc(x) * scale + shift: a Python forward mixing C layers and ops."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.fc = nn.Linear(n_in, n_out)
        self.scale = nn.Parameter(libnn.ones(n_out))
        self.register_buffer('shift', libnn.zeros(n_out))
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.fc(x) * self.scale + self.shift


def test_python_module_registers_and_runs():
    m = Scaled(4, 2)
    assert m.type_name == 'Custom:Scaled'
    assert [n for n, _ in m.named_parameters()] == ['scale', 'fc.weight', 'fc.bias']
    assert [n for n, _ in m.named_buffers()] == ['shift']
    x = libnn.randn(3, 4)
    want = F.linear(x, m.fc.weight, m.fc.bias)
    assert_close(m(x).tolist(), want.tolist())
    seq = nn.Sequential(m, nn.ReLU())           # inside a C container
    assert_close(seq(x).tolist(), F.relu(want).tolist())
    assert m.calls == 2
    assert 'Custom:Scaled' in seq.summary((3, 4))
    assert list(m.state_dict()) == ['scale', 'shift', 'fc.weight', 'fc.bias'] or \
        set(m.state_dict()) == {'scale', 'shift', 'fc.weight', 'fc.bias'}


def test_python_forward_exception_propagates():
    class Bad(nn.Module):
        def forward(self, x):
            raise KeyError('boom')
    seq = nn.Sequential(nn.ReLU(), Bad())
    with pytest.raises(KeyError):
        seq(libnn.ones(2))

    class WrongShape(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(x)
    with pytest.raises(libnn.ShapeError):
        nn.Sequential(WrongShape())(libnn.ones(2, 5))
    # Still usable afterwards.
    assert nn.Sequential(WrongShape())(libnn.ones(2, 3)).shape == (2, 2)


def test_python_module_without_forward_raises():
    class NoForward(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

    m = NoForward()
    assert [n for n, _ in m.named_parameters()] == ['fc.weight', 'fc.bias']
    with pytest.raises(NotImplementedError):
        m(libnn.ones(1, 2))

    class CallsSuper(nn.Module):
        def forward(self, x):
            return super().forward(x)
    with pytest.raises(NotImplementedError):
        nn.Sequential(CallsSuper())(libnn.ones(2))


def test_python_module_freed_with_its_last_reference():
    from libnn.nn import _registry
    gc.collect()
    before = len(_registry)
    m = Scaled(2, 2)
    seq = nn.Sequential(m)
    assert len(_registry) == before + 1
    del m, seq
    gc.collect()
    assert len(_registry) == before


def test_python_module_trains():
    libnn.manual_seed(1)
    m = Scaled(3, 1)
    opt = optim.SGD(m.parameters(), lr=0.1)
    x = libnn.randn(64, 3)
    y = x @ libnn.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    first = None
    for _ in range(200):
        opt.zero_grad()
        loss = F.mse_loss(m(x), y)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 1e-3 < first


def test_losses_against_hand_values():
    x = libnn.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    y = libnn.tensor([2, 0])

    def ce(row, k):
        return math.log(sum(math.exp(v) for v in row)) - row[k]
    want = (ce([1, 2, 3], 2) + ce([1, 1, 1], 0)) / 2
    assert_close(F.cross_entropy(x, y).item(), want)
    assert_close(nn.CrossEntropyLoss(reduction='sum')(x, y).item(), 2 * want)
    assert_close(F.nll_loss(F.log_softmax(x, 1), y).item(), want)
    a, b = libnn.tensor([1.0, 2.0]), libnn.tensor([0.0, 4.0])
    assert_close(F.mse_loss(a, b).item(), 2.5)
    assert_close(F.l1_loss(a, b, reduction='sum').item(), 3.0)
    assert_close(F.smooth_l1_loss(a, b).item(), (0.5 + 1.5) / 2)
    assert_close(F.binary_cross_entropy(libnn.tensor([0.5]), libnn.tensor([1.0])).item(),
                 math.log(2))
    assert_close(F.binary_cross_entropy_with_logits(libnn.tensor([0.0]),
                                                    libnn.tensor([1.0])).item(), math.log(2))
    with pytest.raises(ValueError):
        F.mse_loss(a, b, reduction='avg')


def test_optimizers_step_by_hand():
    p = libnn.tensor([1.0, -1.0], requires_grad=True)
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    (p * libnn.tensor([2.0, 4.0])).sum().backward()
    opt.step()
    assert_close(p.tolist(), [0.8, -1.4])
    assert opt.param_groups[0]['lr'] == 0.1 and opt.param_groups[0]['momentum'] == 0.9
    opt.param_groups[0]['lr'] = 0.5
    assert opt.get('lr') == 0.5
    q = libnn.tensor([1.0, 1.0], requires_grad=True)
    adam = optim.Adam([q], lr=0.01)
    (q * libnn.tensor([3.0, -0.5])).sum().backward()
    adam.step()                                  # first Adam step moves by lr * sign(g)
    assert_close(q.tolist(), [0.99, 1.01], tol=1e-4)
    assert 'state.0.exp_avg' in adam.state_dict()
    with pytest.raises(libnn.LibnnError):
        opt.set('lr', -1.0)
    with pytest.raises(KeyError):
        opt.set('nope', 1.0)
    m = nn.Linear(2, 2)
    for cls in (optim.AdamW, optim.RMSprop, optim.Adagrad):
        o = cls(m.parameters(), lr=0.01)
        m(libnn.ones(1, 2)).sum().backward()
        o.step()
        o.zero_grad()
    whole = optim.Adam(m, lr=0.1)               # a module: every parameter
    assert whole.get('lr') == 0.1


def test_schedules():
    p = libnn.tensor([1.0], requires_grad=True)
    opt = optim.SGD([p], lr=1.0)
    s = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    lrs = []
    for _ in range(5):
        lrs.append(s.get_last_lr()[0])
        s.step()
    assert_close(lrs, [1.0, 1.0, 0.5, 0.5, 0.25])
    c = optim.lr_scheduler.CosineAnnealingLR(optim.SGD([p], lr=1.0), T_max=2)
    c.step()
    assert_close(c.get_last_lr(), [0.5])
    pl = optim.lr_scheduler.ReduceLROnPlateau(optim.SGD([p], lr=1.0), patience=0, factor=0.5)
    pl.step(1.0)
    pl.step(2.0)
    assert_close(pl.get_last_lr(), [0.5])
    for make in (lambda o: optim.lr_scheduler.MultiStepLR(o, [1, 3]),
                 lambda o: optim.lr_scheduler.ExponentialLR(o, 0.9),
                 lambda o: optim.lr_scheduler.CosineAnnealingWarmRestarts(o, 2),
                 lambda o: optim.lr_scheduler.LinearLR(o),
                 lambda o: optim.lr_scheduler.OneCycleLR(o, 1.0, 10)):
        sch = make(optim.SGD([p], lr=1.0))
        sch.step()
        assert sch.last_epoch == 1 and sch.get_last_lr()[0] > 0
        sch.load_state_dict(sch.state_dict())


def test_init_and_clipping():
    g = libnn.Generator(3)
    w = libnn.empty(64, 32)
    nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=g)
    bound = 1 / math.sqrt(32)
    vals = w.flatten().tolist()
    assert max(abs(v) for v in vals) <= bound + 1e-6
    nn.init.zeros_(w)
    assert w.abs().sum().item() == 0.0
    nn.init.xavier_normal_(w)
    assert_close(nn.init.calculate_gain('relu'), math.sqrt(2))
    p = libnn.tensor([3.0, 4.0], requires_grad=True)
    (p * p).sum().backward()                     # grad = [6, 8], norm 10
    assert_close(nn.utils.clip_grad_norm_([p], 5.0), 10.0)
    assert_close(p.grad.tolist(), [3.0, 4.0], tol=1e-4)


def test_weight_tying_survives_save_and_load(tmp_path):
    libnn.manual_seed(3)
    net = nn.Sequential(nn.Embedding(6, 4), nn.Linear(4, 6, bias=False))
    net.tie('1.weight', '0.weight')
    assert len(net.parameters()) == 1
    assert list(net.state_dict()) == ['0.weight', '1.weight']
    idx = libnn.tensor([[1, 5, 0]])
    want = net(idx).tolist()
    path = str(tmp_path / 'tied.nnm')
    net.save(path)
    got = libnn.load(path).module
    assert len(got.parameters()) == 1
    assert got(idx).tolist() == want
    with pytest.raises(libnn.LibnnError):
        net.tie('1.weight', '0.nope')
