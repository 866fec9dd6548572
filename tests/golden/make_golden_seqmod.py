#!/usr/bin/python3
"""Golden values for tests/module/test_seqmod.c: PyTorch's Embedding with
padding_idx (output and weight gradient) and bidirectional, stacked RNN, LSTM
and GRU (batch_first=False, PyTorch's default) with their outputs, final
states and the gradients of a fixed weighted sum of them, for the input and
every parameter. Weights are fixed by this script and written too, under
PyTorch's state_dict names.

Run with Debian's interpreter: /usr/bin/python3 tests/golden/make_golden_seqmod.py
Writes tests/golden/seqmod.txt in the testutil.h record format."""
import torch

from golden_io import Records, fmt_repr

torch.manual_seed(2024)
golden = Records("seqmod.txt", float_fmt=fmt_repr, bool_dtype="f32")
put = golden.put
put_module = golden.put_module


# Embedding(7, 3, padding_idx): the padding row is given non-zero values, so
# the test sees that it is still looked up but gets no gradient.
idx = torch.tensor([[0, 2, 5, 2], [6, 1, 2, 6]])
put("emb_idx", idx)
for name, pad in (("emb_pad2", 2), ("emb_padm1", -1)):
    emb = torch.nn.Embedding(7, 3, padding_idx=pad)
    with torch.no_grad():
        emb.weight.normal_()
    put_module(name, emb)
    r = torch.randn(2, 4, 3)
    put(name + "_r", r)
    y = emb(idx)
    (y * r).sum().backward()
    put(name + "_y", y)
    put(name + "_grad", emb.weight.grad)

# Recurrent layers: T=4, N=2, input 3, hidden 5, 2 layers, bidirectional,
# [T, N, C] layout. Loss = sum(y * ry) + sum(h_n * rh) (+ sum(c_n * rc)).
T, N, I, H, L = 4, 2, 3, 5, 2
x = torch.randn(T, N, I)
put("rec_x", x)
ry = torch.randn(T, N, 2 * H)
rh = torch.randn(2 * L, N, H)
rc = torch.randn(2 * L, N, H)
put("rec_ry", ry)
put("rec_rh", rh)
put("rec_rc", rc)
for name, cls, kw in (("rnn", torch.nn.RNN, {"nonlinearity": "tanh"}),
                      ("rnnrelu", torch.nn.RNN, {"nonlinearity": "relu"}),
                      ("lstm", torch.nn.LSTM, {}), ("gru", torch.nn.GRU, {})):
    m = cls(I, H, num_layers=L, bidirectional=True, **kw)
    for p in m.parameters():  # a wider range than the default init: stronger test
        torch.nn.init.uniform_(p, -0.8, 0.8)
    put_module(name, m)
    lstm = cls is torch.nn.LSTM
    y, _ = m(x)
    put(name + "_y", y)
    h0 = torch.randn(2 * L, N, H)
    put(name + "_h0", h0)
    xg = x.clone().requires_grad_(True)
    if lstm:
        c0 = torch.randn(2 * L, N, H)
        put(name + "_c0", c0)
        y2, (hn, cn) = m(xg, (h0, c0))
        put(name + "_cn", cn)
        loss = (y2 * ry).sum() + (hn * rh).sum() + (cn * rc).sum()
    else:
        y2, hn = m(xg, h0)
        loss = (y2 * ry).sum() + (hn * rh).sum()
    put(name + "_y2", y2)
    put(name + "_hn", hn)
    loss.backward()
    put(name + "_gx", xg.grad)
    for k, p in m.named_parameters():
        put(name + "_g." + k, p.grad)

golden.save()
