"""Multi-input forward, MultiheadAttention and the transformer layers."""
import pytest

import libnn
from libnn import nn
from conftest import assert_close, needs

pytestmark = needs('nn_module_forward_n')


class _Adder(nn.Module):
    """Adds the present inputs; absent (None) ones are skipped."""

    def forward(self, x, *rest):
        for r in rest:
            if r is not None:
                x = x + r
        return x


def test_forward_n_builtin_and_python_module():
    libnn.manual_seed(0)
    lin = nn.Linear(3, 2)
    x, y = libnn.randn(4, 3), libnn.randn(4, 3)
    assert lin.num_inputs == (1, 1)
    assert_close(lin.forward_n(x).tolist(), lin(x).tolist())
    with pytest.raises(libnn.LibnnError, match='Linear takes 1 input, got n = 2'):
        lin.forward_n(x, y)
    add = _Adder()
    assert add.num_inputs == (1, 16)
    # Through C: nn_module_forward_n calls back into the Python forward.
    assert_close(add.forward_n(x, None, y).tolist(), (x + y).tolist())
    assert_close(add(x, y).tolist(), (x + y).tolist())


np = None
try:
    import numpy as np  # noqa: F811
except ImportError:  # pragma: no cover
    pass
torch = pytest.importorskip('torch') if np is not None else None


def _copy_weights(ours, theirs):
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})


def _T(t):
    if t.dtype == torch.bool:
        return libnn.tensor(t.numpy().astype(np.uint8)).to(libnn.bool_) \
            if hasattr(libnn.Tensor, 'to') else libnn.tensor(t.numpy())
    return libnn.tensor(t.detach().numpy())


@pytest.mark.skipif(np is None, reason='numpy not importable')
def test_mha_matches_torch_with_weights():
    torch.manual_seed(0)
    tm = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    m = nn.MultiheadAttention(8, 2, batch_first=True)
    _copy_weights(m, tm)
    q, k = torch.randn(2, 3, 8), torch.randn(2, 4, 8)
    kpm = torch.tensor([[False, False, True, False], [False, True, False, False]])
    want, want_w = tm(q, k, k, key_padding_mask=kpm)
    got, got_w = m(_T(q), _T(k), _T(k), key_padding_mask=_T(kpm))
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got_w.numpy(), want_w.detach().numpy(), rtol=1e-4, atol=1e-5)
    got2, none = m(_T(q), _T(k), _T(k), key_padding_mask=_T(kpm), need_weights=False)
    assert none is None
    np.testing.assert_allclose(got2.numpy(), got.numpy(), rtol=1e-5, atol=1e-6)
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in tm.named_parameters()]
    assert m.out_proj.weight.shape == (8, 8)


@pytest.mark.skipif(np is None, reason='numpy not importable')
def test_encoder_decoder_match_torch_and_reload(tmp_path):
    torch.manual_seed(1)
    tl = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation='gelu',
                                          norm_first=True)
    tenc = torch.nn.TransformerEncoder(tl, 2, norm=torch.nn.LayerNorm(8),
                                       enable_nested_tensor=False)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0,
                                                           activation='gelu', norm_first=True),
                                2, norm=nn.LayerNorm(8))
    assert [n for n, _ in enc.named_parameters()] == [n for n, _ in tenc.named_parameters()]
    _copy_weights(enc, tenc)
    x = torch.randn(5, 2, 8)
    mask = nn.Transformer.generate_square_subsequent_mask(5)
    want = tenc(x, mask=torch.nn.Transformer.generate_square_subsequent_mask(5))
    got = enc(_T(x), mask=mask)
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=1e-4, atol=1e-5)
    enc.set_causal(True)
    np.testing.assert_allclose(enc(_T(x)).numpy(), got.numpy(), rtol=1e-4, atol=1e-5)
    path = str(tmp_path / 'enc.nnm')
    enc.save(path)
    with libnn.load(path) as model:
        back = model.module
        assert type(back).__name__ == 'TransformerEncoder'
        np.testing.assert_allclose(back(_T(x)).numpy(), got.numpy(), rtol=1e-6, atol=1e-7)

    tdl = torch.nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0)
    dl = nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0)
    _copy_weights(dl, tdl)
    tgt, mem = torch.randn(5, 2, 8), torch.randn(4, 2, 8)
    want = tdl(tgt, mem, tgt_mask=torch.nn.Transformer.generate_square_subsequent_mask(5))
    got = dl(_T(tgt), _T(mem), tgt_mask=mask)
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(libnn.LibnnError, match='not divisible'):
        nn.TransformerEncoderLayer(10, 3)
