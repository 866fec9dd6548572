#!/usr/bin/python3
"""Writes the safetensors fixtures of tests/io/test_safetensors.c with
Debian's python3-torch (no `safetensors` package: the format is written
here from its public description, https://github.com/huggingface/safetensors:
u64 little-endian header length N, N bytes of JSON header padded with
spaces, then each tensor's little-endian bytes at its data_offsets).

    /usr/bin/python3 tests/io/safetensors/make_fixtures.py tests/io/safetensors

Valid files (PyTorch state dicts, written the way libnn writes them: header
keys __metadata__ first, then tensors in state_dict order, compact JSON,
padded to a multiple of 8, data in the same order, so libnn writes the same
bytes back):
  mlp.safetensors        Sequential(Linear(4,8), ReLU, Linear(8,3)) + metadata
  mlp_io.safetensors     an input x [5,4] and PyTorch's output y of that model
  cnn.safetensors        Conv2d, BatchNorm2d (running stats, num_batches_tracked
                         I64), ReLU, Flatten, Linear; cnn_io.safetensors: x, y (eval)
  lstm.safetensors       LSTM(3, 4, 2 layers) weights; lstm_io.safetensors x, y
  dtypes.safetensors     F32, F16, BF16, I64, U8 tensors incl. inf/NaN/subnormals,
                         a scalar and an empty tensor
  dtypes_f32.safetensors the same with F16/BF16 converted by torch .float()
  ddp.safetensors        the MLP's names with DataParallel's "module." prefix
Malformed files (malformed/, listed in malformed/MANIFEST with the status
and a substring of the message each must produce).
"""
import json
import os
import struct
import sys

import torch

DT = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
      torch.int64: "I64", torch.uint8: "U8"}


def tensor_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: its bits as int16
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    arr = t.numpy()
    return arr.astype(arr.dtype.newbyteorder("<")).tobytes()


def header_bytes(header):
    txt = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    return txt + b" " * ((8 - len(txt) % 8) % 8)


def st_bytes(tensors, metadata=None):
    header, blobs, at = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        b = tensor_bytes(t)
        header[name] = {"dtype": DT[t.dtype], "shape": list(t.shape),
                        "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    h = header_bytes(header)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def raw(header_txt, data=b"", length=None, pad=True):
    h = header_txt.encode() if isinstance(header_txt, str) else header_txt
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    n = len(h) if length is None else length
    return struct.pack("<Q", n) + h + data


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def main(out):
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    sd = mlp.state_dict()
    write(os.path.join(out, "mlp.safetensors"),
          st_bytes(sd, {"format": "pt", "note": "libnn fixture"}))
    write(os.path.join(out, "ddp.safetensors"),
          st_bytes({"module." + k: v for k, v in sd.items()}))
    x = torch.randn(5, 4)
    with torch.no_grad():
        y = mlp(x)
    write(os.path.join(out, "mlp_io.safetensors"), st_bytes({"x": x, "y": y}))

    cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
                              torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5))
    cnn.train()
    with torch.no_grad():  # non-trivial running statistics
        for _ in range(3):
            cnn(torch.randn(8, 1, 6, 6))
    cnn.eval()
    write(os.path.join(out, "cnn.safetensors"), st_bytes(cnn.state_dict()))
    x = torch.randn(2, 1, 6, 6)
    with torch.no_grad():
        y = cnn(x)
    write(os.path.join(out, "cnn_io.safetensors"), st_bytes({"x": x, "y": y}))

    lstm = torch.nn.LSTM(3, 4, num_layers=2, batch_first=True)
    write(os.path.join(out, "lstm.safetensors"), st_bytes(lstm.state_dict()))
    x = torch.randn(2, 5, 3)
    with torch.no_grad():
        y, _ = lstm(x)
    write(os.path.join(out, "lstm_io.safetensors"), st_bytes({"x": x, "y": y}))

    f = torch.tensor([0.0, -0.0, 1.5, -2.25, 65504.0, 6e-8, 1e-5, float("inf"),
                      -float("inf"), float("nan"), 3.14159, -1e-3])
    d = {
        "f32": torch.randn(3, 4),
        "f16": f.to(torch.float16),
        "bf16": torch.cat([f, torch.tensor([1e38, -3e-39])]).to(torch.bfloat16).reshape(2, 7),
        "i64": torch.tensor([[0, -1, 2**62, -(2**63)], [7, 8, 9, 10]], dtype=torch.int64),
        "u8": torch.arange(0, 250, 10, dtype=torch.uint8).reshape(5, 5),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
    }
    write(os.path.join(out, "dtypes.safetensors"), st_bytes(d, {"kind": "dtypes"}))
    d32 = {k: (v.float() if v.dtype in (torch.float16, torch.bfloat16) else v)
           for k, v in d.items()}
    write(os.path.join(out, "dtypes_f32.safetensors"), st_bytes(d32, {"kind": "dtypes"}))

    mal = os.path.join(out, "malformed")
    os.makedirs(mal, exist_ok=True)
    w24 = bytes(range(24))
    ok = '{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}'
    cases = [
        ("valid.safetensors", raw(ok, w24), "NN_OK", "-"),
        ("empty.safetensors", b"", "NN_ERR_TRUNCATED", "at least 8 bytes"),
        ("short_length.safetensors", b"\x10\x00\x00", "NN_ERR_TRUNCATED", "at least 8 bytes"),
        ("header_past_end.safetensors", raw(ok, w24, length=1000), "NN_ERR_TRUNCATED",
         "header length 1000 exceeds"),
        ("header_huge.safetensors", raw(ok, w24, length=2**64 - 1), "NN_ERR_LIMIT",
         "header length 18446744073709551615 exceeds the 16 MiB limit"),
        ("header_too_long.safetensors", raw(ok, w24, length=(16 << 20) + 1), "NN_ERR_LIMIT",
         "16 MiB limit"),
        ("not_object.safetensors", raw('[1,2]'), "NN_ERR_FORMAT", "does not start with '{'"),
        ("bad_json.safetensors", raw('{"a":{"dtype":"F32",}}'), "NN_ERR_FORMAT", "JSON error"),
        ("json_ends_early.safetensors", raw('{"a":{"dtype":"F32"', pad=False), "NN_ERR_FORMAT",
         "ends early"),
        ("trailing_garbage_in_header.safetensors", raw(ok + "x", w24), "NN_ERR_FORMAT",
         "JSON error at byte 57"),
        ("newline_padding.safetensors", raw(ok + "\n", w24), "NN_OK", "-"),
        ("too_deep.safetensors", raw('{"a":{"dtype":"F32","shape":[[[1]]],"data_offsets":[0,4]}}'),
         "NN_ERR_LIMIT", "JSON error"),
        ("entry_not_object.safetensors", raw('{"a":5}'), "NN_ERR_FORMAT", "'a' is not an object"),
        ("unknown_key.safetensors",
         raw('{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24],"x":1}}', w24),
         "NN_ERR_FORMAT", "unknown key 'x'"),
        ("missing_shape.safetensors", raw('{"a":{"dtype":"F32","data_offsets":[0,24]}}', w24),
         "NN_ERR_FORMAT", "needs a string \"dtype\""),
        ("unknown_dtype.safetensors",
         raw('{"a":{"dtype":"F99","shape":[2,3],"data_offsets":[0,24]}}', w24),
         "NN_ERR_DTYPE", "unknown dtype 'F99'"),
        ("unsupported_dtype.safetensors",
         raw('{"a":{"dtype":"F64","shape":[3],"data_offsets":[0,24]}}', w24),
         "NN_ERR_DTYPE", "unsupported dtype 'F64'"),
        ("ndim_too_large.safetensors",
         raw('{"a":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}}', b"x"),
         "NN_ERR_LIMIT", "9 dimensions"),
        ("negative_dim.safetensors",
         raw('{"a":{"dtype":"F32","shape":[-2,3],"data_offsets":[0,24]}}', w24),
         "NN_ERR_FORMAT", "shape[0] is not an integer"),
        ("float_dim.safetensors",
         raw('{"a":{"dtype":"F32","shape":[2.0,3],"data_offsets":[0,24]}}', w24),
         "NN_ERR_FORMAT", "shape[0] is not an integer"),
        ("shape_overflow.safetensors",
         raw('{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,24]}}', w24),
         "NN_ERR_OVERFLOW", ""),
        ("bytes_overflow.safetensors",
         raw('{"a":{"dtype":"I64","shape":[4611686018427387904],"data_offsets":[0,24]}}', w24),
         "NN_ERR_OVERFLOW", ""),
        ("size_mismatch.safetensors",
         raw('{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,24]}}', w24),
         "NN_ERR_FORMAT", "needs 16 bytes but its data_offsets [0, 24] hold 24"),
        ("offsets_reversed.safetensors",
         raw('{"a":{"dtype":"U8","shape":[0],"data_offsets":[24,0]}}', w24),
         "NN_ERR_FORMAT", "begin <= end"),
        ("offsets_huge.safetensors",
         raw('{"a":{"dtype":"U8","shape":[24],"data_offsets":[18446744073709551591,'
             '18446744073709551615]}}', w24), "NN_ERR_RANGE", "exceed the 24-byte data area"),
        ("offset_past_end.safetensors",
         raw('{"a":{"dtype":"F32","shape":[2,3],"data_offsets":[8,32]}}', w24),
         "NN_ERR_RANGE", "exceed the 24-byte data area"),
        ("offsets_overlap.safetensors",
         raw('{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},'
             '"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}', w24[:16]),
         "NN_ERR_FORMAT", "overlap"),
        ("offsets_gap.safetensors",
         raw('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
             '"b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}', w24),
         "NN_ERR_FORMAT", "gap"),
        ("trailing_data.safetensors",
         raw('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', w24),
         "NN_ERR_FORMAT", "end at 8 but the data area has 24"),
        ("truncated_data.safetensors", raw(ok, w24[:20]), "NN_ERR_RANGE",
         "exceed the 20-byte data area"),
        ("duplicate_name.safetensors",
         raw('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
             '"a":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}', w24),
         "NN_ERR_FORMAT", "gap"),
        ("metadata_not_string.safetensors",
         raw('{"__metadata__":{"k":5},' + ok[1:], w24), "NN_ERR_FORMAT",
         "__metadata__ value of 'k' is not a string"),
        ("metadata_not_object.safetensors",
         raw('{"__metadata__":"x",' + ok[1:], w24), "NN_ERR_FORMAT",
         "__metadata__ is not an object"),
        ("empty_name.safetensors",
         raw('{"":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}', w24),
         "NN_ERR_FORMAT", "empty"),
        ("bad_utf8.safetensors",
         raw(b'{"\xff":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}', w24),
         "NN_ERR_FORMAT", "JSON error"),
    ]
    with open(os.path.join(mal, "MANIFEST"), "w") as man:
        for name, data, status, msg in cases:
            write(os.path.join(mal, name), data)
            man.write(f"{name} {status} {msg}\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)))
