#!/usr/bin/python3
"""Write the ONNX models that tests/bench/ort_bench.js runs under ONNX Runtime:
the benchmark's CNN and MLP (the architectures of make_cnn / make_mlp in
bench.c, taken from bench_torch.py so there is one PyTorch copy of them) and an
overhead model that takes the same input and returns an output of the models'
size ([batch, 10], a slice of the input: no arithmetic), which measures what
the Node binding costs per call (the overhead subtracted from the models'
times). An Identity model was used before: returning the whole input made node
allocate and collect a 0.8 MB output per call at batch 256, which the models
never do, and its median read 2.7 ms in some runs against 0.1-0.2 ms in
others.

    /usr/bin/python3 tests/bench/make_onnx.py OUT_DIR

Writes OUT_DIR/{cnn,mlp,identity}_b{1,256}.onnx: static shapes per batch size,
so ONNX Runtime can plan each graph for its exact shapes. The weights are
random with a fixed seed: the timings do not depend on their values. Beside
them, input_b{1,256}.f32 (the input, raw little-endian float32) and
<model>_b{1,256}.out.f32 (PyTorch's output for it), which ort_bench.js feeds
and checks ONNX Runtime's output against before timing. Needs only Debian's
python3-torch (torch.onnx.export writes the protobuf itself).
"""
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_torch import make_cnn, make_mlp  # noqa: E402

OPSET = 17
BATCHES = (1, 256)


class Identity(nn.Module):
    """The overhead model (file name kept: identity_b*.onnx): the first 10
    values of each image's first row, [batch, 10] like the models' output;
    exports as Gather/Slice nodes, no arithmetic."""

    def forward(self, x):
        return x[:, 0, 0, :10].clone()


def make_input(batch):
    return torch.rand((batch, 1, 28, 28), generator=torch.Generator().manual_seed(7))


def write_f32(t, path):
    t.detach().contiguous().to(torch.float32).numpy().astype("<f4").tofile(path)


def export(model, batch, out, name):
    model.eval()
    x = make_input(batch)
    with torch.no_grad():
        torch.onnx.export(model, x, os.path.join(out, f"{name}_b{batch}.onnx"),
                          opset_version=OPSET, input_names=["x"], output_names=["y"],
                          do_constant_folding=True)
        write_f32(model(x), os.path.join(out, f"{name}_b{batch}.out.f32"))


def main():
    if len(sys.argv) != 2:
        sys.stderr.write(f"usage: {sys.argv[0]} OUT_DIR\n")
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    makers = {"cnn": make_cnn, "mlp": make_mlp, "identity": Identity}
    for b in BATCHES:
        write_f32(make_input(b), os.path.join(out, f"input_b{b}.f32"))
    for name, make in makers.items():
        torch.manual_seed(1)  # the same weights for every batch size
        model = make()
        for b in BATCHES:
            export(model, b, out, name)
    print(f"# wrote {len(makers) * len(BATCHES)} ONNX models (opset {OPSET}, torch "
          f"{torch.__version__}) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
