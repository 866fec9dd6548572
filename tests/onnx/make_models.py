#!/usr/bin/python3
"""Write the ONNX fixtures of tests/onnx: small PyTorch models exported by
torch.onnx.export, each with an input and PyTorch's output as golden files.

    /usr/bin/python3 tests/onnx/make_models.py [OUT_DIR]   (default: tests/onnx/models)

For every model NAME and opset OP (13 and 17) it writes NAME_opOP.onnx, and
once per model NAME.in (the input) and NAME.out (PyTorch's output for it).
Golden files are raw little-endian arrays behind a tiny header: the text line
"f32 D0 D1 ...\\n" or "i64 ...\\n" (dtype and shape), then the data.

The architectures are the seed's (examples/, tests/bench/bench_torch.py:
make_cnn, make_mlp) at reduced widths so the committed files stay small,
plus a residual block, an LSTM classifier, a 2-layer nn.TransformerEncoder
and a small GPT-like decoder (token + position embeddings, causal
self-attention blocks, LayerNorm, GELU MLP, tied head). Weights are random
with a fixed seed; everything needs only Debian's python3-torch.
"""
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

OPSETS = (13, 17)


def make_cnn():
    """The seed's CNN (conv-relu-pool x2, flatten, linear-relu-linear), narrower."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2, 2, 0),
        nn.Conv2d(4, 8, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2, 2, 0),
        nn.Flatten(1, -1), nn.Linear(8 * 7 * 7, 16), nn.ReLU(), nn.Linear(16, 10))


def make_mlp():
    """The seed's MLP (flatten, three linears with ReLU between), narrower."""
    return nn.Sequential(
        nn.Flatten(1, -1), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
        nn.Linear(16, 10))


class Residual(nn.Module):
    """A ResNet basic block (conv-bn-relu-conv-bn + skip, relu), pooled and classified."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(self.stem(x))
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        x = F.relu(x + y)
        x = self.pool(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


class LSTMClassifier(nn.Module):
    """Embedding -> 1-layer LSTM (batch_first) -> last step -> Linear."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.lstm = nn.LSTM(8, 12, batch_first=True)
        self.fc = nn.Linear(12, 3)

    def forward(self, tokens):
        y, _ = self.lstm(self.emb(tokens))
        return self.fc(y[:, -1])


class Encoder(nn.Module):
    """A 2-layer nn.TransformerEncoder (batch_first, d_model 16, 2 heads) and a head."""

    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, dropout=0.1,
                                           batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(self.enc(x))


class Block(nn.Module):
    def __init__(self, d, heads, t):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.proj = nn.Linear(4 * d, d)
        self.register_buffer("mask", torch.triu(torch.full((t, t), float("-inf")), 1))

    def forward(self, x):
        t = x.shape[1]
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=self.mask[:t, :t], need_weights=False)[0]
        return x + self.proj(F.gelu(self.fc(self.ln2(x))))


class GPT(nn.Module):
    """A tiny GPT: token + learned position embeddings, 2 pre-LN blocks with
    causal multi-head self-attention, final LayerNorm, head tied to the
    token embedding."""

    def __init__(self, vocab=32, d=16, heads=2, t=8, layers=2):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(t, d)
        self.blocks = nn.ModuleList([Block(d, heads, t) for _ in range(layers)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.tok.weight

    def forward(self, idx):
        t = idx.shape[1]
        pos = torch.arange(t, dtype=torch.long).unsqueeze(0)
        x = self.tok(idx) + self.pos(pos)
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln(x))


def inputs(g):
    return {
        "cnn": torch.rand((2, 1, 28, 28), generator=g),
        "mlp": torch.rand((3, 1, 28, 28), generator=g),
        "residual": torch.randn((2, 3, 8, 8), generator=g),
        "lstm": torch.randint(0, 20, (2, 6), generator=g),
        "encoder": torch.randn((2, 5, 16), generator=g),
        "gpt": torch.randint(0, 32, (2, 8), generator=g),
    }


MAKERS = {"cnn": make_cnn, "mlp": make_mlp, "residual": Residual, "lstm": LSTMClassifier,
          "encoder": Encoder, "gpt": GPT}


def write_array(t, path):
    t = t.detach().contiguous()
    if t.dtype == torch.int64:
        kind, arr = "i64", t.numpy().astype("<i8")
    else:
        kind, arr = "f32", t.to(torch.float32).numpy().astype("<f4")
    with open(path, "wb") as f:
        f.write((" ".join([kind] + [str(d) for d in t.shape]) + "\n").encode())
        f.write(arr.tobytes())


def randomize_bn(model, g):
    """Give BatchNorm layers non-trivial running statistics and affine values."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def write_handmade(out, hostile):
    """Graphs written with onnx.helper (Debian's python3-onnx): an operator
    libnn does not run (for the error test) and the hostile catalogue
    (tests/onnx/hostile: each breaks one rule of the importer's checks)."""
    from onnx import TensorProto, helper

    def model(nodes, inputs, outputs, inits=(), opset=17):
        g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)],
                                 producer_name="libnn-tests")

    def raw_tensor(name, dims, raw=None, floats=None):
        t = TensorProto()  # by hand: helper.make_tensor refuses inconsistent sizes
        t.name, t.data_type = name, TensorProto.FLOAT
        t.dims.extend(dims)
        if raw is not None:
            t.raw_data = raw
        else:
            t.float_data.extend(floats)
        return t

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 3], [0.5] * 9)
    files = {
        os.path.join(out, "unsupported_op17.onnx"): model(
            [helper.make_node("Relu", ["x"], ["r"], name="first"),
             helper.make_node("Hardmax", ["r"], ["y"], name="my_hardmax")], [x], [y]),
        os.path.join(hostile, "dangling_input.onnx"): model(
            [helper.make_node("Relu", ["nowhere"], ["y"], name="r")], [x], [y]),
        os.path.join(hostile, "cycle.onnx"): model(
            [helper.make_node("Add", ["x", "b"], ["a"], name="n1"),
             helper.make_node("Relu", ["a"], ["b"], name="n2"),
             helper.make_node("Identity", ["a"], ["y"], name="n3")], [x], [y]),
        os.path.join(hostile, "defined_twice.onnx"): model(
            [helper.make_node("Relu", ["x"], ["y"], name="n1"),
             helper.make_node("Neg", ["x"], ["y"], name="n2")], [x], [y]),
        os.path.join(hostile, "raw_data_short.onnx"): model(
            [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [x], [y],
            [raw_tensor("w", [3, 3], raw=b"\0" * 35)]),
        os.path.join(hostile, "huge_dims.onnx"): model(
            [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [x], [y],
            [raw_tensor("w", [1 << 40, 1 << 40], raw=b"")]),
        os.path.join(hostile, "old_opset.onnx"): model(
            [helper.make_node("Relu", ["x"], ["y"], name="r")], [x], [y], opset=7),
        os.path.join(hostile, "undefined_output.onnx"): model(
            [helper.make_node("Relu", ["x"], ["r"], name="r")], [x], [y]),
        os.path.join(hostile, "bad_axis.onnx"): model(
            [helper.make_node("Softmax", ["x"], ["y"], name="sm", axis=9)], [x], [y]),
        os.path.join(hostile, "reshape_bad.onnx"): model(
            [helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")], [x], [y],
            [helper.make_tensor("s", TensorProto.INT64, [2], [4, 4])]),
        os.path.join(hostile, "float_data_short.onnx"): model(
            [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [x], [y],
            [raw_tensor("w", [3, 3], floats=[1.0] * 8)]),
        os.path.join(out, "two_inputs_op17.onnx"): model(
            [helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
             helper.make_node("Add", ["m", "b"], ["y"], name="add")],
            [x, helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, 3])], [y], [w]),
        os.path.join(hostile, "valid_matmul.onnx"): model(
            [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [x], [y], [w]),
    }
    for path, m in files.items():
        with open(path, "wb") as f:
            f.write(m.SerializeToString())
    # Messages nested past the importer's bound (graph -> node -> attribute
    # -> graph ...), a few bytes per level: the protobuf walk must refuse it
    # before protobuf-c recurses.
    g = helper.make_graph([], "leaf", [], [])
    for _ in range(40):
        n = helper.make_node("If", [], [], then_branch=g)
        g = helper.make_graph([n], "g", [], [])
    with open(os.path.join(hostile, "deep_nesting.onnx"), "wb") as f:
        f.write(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
                .SerializeToString())


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "models")
    hostile = os.path.join(here, "hostile")
    os.makedirs(hostile, exist_ok=True)
    write_handmade(out, hostile)
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(11)
    xs = inputs(g)
    for name, make in MAKERS.items():
        torch.manual_seed(3)
        model = make()
        randomize_bn(model, g)
        model.eval()
        x = xs[name]
        with torch.no_grad():
            y = model(x)
        write_array(x, os.path.join(out, f"{name}.in"))
        write_array(y, os.path.join(out, f"{name}.out"))
        # Exported with grad mode on: under no_grad, torch 1.13 runs the
        # encoder's fused fast path (_transformer_encoder_layer_fwd), which
        # has no ONNX form.
        for op in OPSETS:
            torch.onnx.export(model, (x,), os.path.join(out, f"{name}_op{op}.onnx"),
                              opset_version=op, input_names=["x"], output_names=["y"],
                              do_constant_folding=True)
    print(f"# wrote {len(MAKERS)} models x opsets {OPSETS} (torch {torch.__version__}) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
