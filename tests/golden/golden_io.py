"""The record writer shared by the make_golden_*.py generators.

Every golden file is a sequence of records in the format
tests/common/testutil.h reads:

    tensor <name> <f32|i64> <ndim> <dim0> <dim1> ...
    <values separated by spaces, on one or more lines>

Integer and boolean tensors are written as i64 (unless bool_dtype="f32"),
everything else as f32. The generators differ only in how they spell a float
(repr of the double, or "%.9g"; both round-trip a float32 exactly) and in how
many values they put on a line; both are options here so a regenerated file
stays byte-identical to the committed one.
"""
import os

import torch

INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool)


def fmt_repr(v):
    return repr(float(v))


def fmt_g9(v):
    return "%.9g" % v


class Records:
    """Collects records in memory; save() writes them next to the scripts."""

    def __init__(self, filename, float_fmt=fmt_g9, per_line=0, bool_dtype="i64"):
        self.path = os.path.join(os.path.dirname(os.path.abspath(__file__)), filename)
        self.float_fmt = float_fmt
        self.per_line = per_line       # 0: all values on one line
        self.bool_dtype = bool_dtype
        self.records = []

    def text(self, name, t):
        t = torch.as_tensor(t).detach().contiguous()
        if t.dtype == torch.bool and self.bool_dtype == "f32":
            t = t.float()
        if t.dtype in INT_DTYPES:
            dt, vals = "i64", [str(int(v)) for v in t.reshape(-1).tolist()]
        else:
            dt, vals = "f32", [self.float_fmt(v) for v in t.float().reshape(-1).tolist()]
        head = "tensor %s %s %d %s\n" % (name, dt, t.dim(), " ".join(str(d) for d in t.shape))
        if self.per_line and vals:
            body = "".join(" ".join(vals[i:i + self.per_line]) + "\n"
                           for i in range(0, len(vals), self.per_line))
        else:
            body = " ".join(vals) + "\n"
        return head + body

    def put(self, name, t):
        self.records.append(self.text(name, t))

    def put_module(self, prefix, m):
        """Every entry of m's state dict as <prefix>.<key>."""
        for k, v in m.state_dict().items():
            self.put(prefix + "." + k, v)

    def save(self):
        with open(self.path, "w") as f:
            f.writelines(self.records)
        print("wrote", self.path, len(self.records), "records")
