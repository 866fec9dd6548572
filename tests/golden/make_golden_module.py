#!/usr/bin/python3
"""Golden values for tests/module: PyTorch forward outputs of an RNN, LSTM,
GRU (2 layers, batch_first) and a small CNN of the Fashion-MNIST layout, with
weights fixed by this script (written too, under PyTorch's state_dict names).

Run with Debian's interpreter: /usr/bin/python3 tests/golden/make_golden_module.py
Writes tests/golden/module.txt in the testutil.h record format."""
import torch

from golden_io import Records, fmt_repr

torch.manual_seed(1234)
golden = Records("module.txt", float_fmt=fmt_repr, bool_dtype="f32")
put = golden.put
put_module = golden.put_module


# Recurrent layers: N=2, T=5, input 3, hidden 4, 2 layers.
x = torch.randn(2, 5, 3)
put("rnn_x", x)
for name, cls in (("rnn", torch.nn.RNN), ("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU)):
    m = cls(3, 4, num_layers=2, batch_first=True)
    for p in m.parameters():  # a wider range than the default init: stronger test
        torch.nn.init.uniform_(p, -0.8, 0.8)
    put_module(name, m)
    y, _ = m(x)
    put(name + "_y", y)
    h0 = torch.randn(2, 2, 4)
    put(name + "_h0", h0)
    if name == "lstm":
        c0 = torch.randn(2, 2, 4)
        put(name + "_c0", c0)
        y2, (hn, cn) = m(x, (h0, c0))
        put(name + "_cn", cn)
    else:
        y2, hn = m(x, h0)
    put(name + "_y2", y2)
    put(name + "_hn", hn)

# A small CNN with the Fashion-MNIST model's layout on 12x12 inputs.
cnn = torch.nn.Sequential(
    torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
    torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
    torch.nn.Flatten(), torch.nn.Linear(72, 16), torch.nn.ReLU(), torch.nn.Linear(16, 5))
put_module("cnn", cnn)
xc = torch.randn(3, 1, 12, 12)
put("cnn_x", xc)
put("cnn_y", cnn(xc))

# BatchNorm2d in eval mode with non-trivial running statistics.
bn = torch.nn.BatchNorm2d(3)
with torch.no_grad():
    bn.weight.uniform_(0.5, 1.5)
    bn.bias.uniform_(-0.5, 0.5)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
bn.num_batches_tracked.fill_(7)
bn.eval()
put_module("bn", bn)
xb = torch.randn(2, 3, 4, 4)
put("bn_x", xb)
put("bn_y_eval", bn(xb))
bn.train()
put("bn_y_train", bn(xb))
put("bn_running_mean_after", bn.running_mean)
put("bn_running_var_after", bn.running_var)

golden.save()
