#!/usr/bin/python3
"""Golden bits for f32 -> f16 / bf16 conversion, from PyTorch (Debian's
python3-torch): tests/golden/half.txt, one line per f32 value:

    <f32 bits> <f16 bits> <bf16 bits>        (hex)

The values: signed zeros, infinities, NaNs (quiet and signalling, with
payloads; the test only checks that they stay NaN with their sign, PyTorch
canonicalises them), f16 / bf16 overflow edges, exact halfway cases, f16
denormals and the underflow edge, f32 denormals, and 2000 random bit
patterns over the whole f32 range plus 2000 in f16's range.
Run: /usr/bin/python3 tests/golden/make_golden_half.py > tests/golden/half.txt
"""
import random
import struct

import torch


def f2b(f):
    return struct.unpack('<I', struct.pack('<f', f))[0]


vals = [0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000,
        0x7f800001, 0xff800001, 0x7fa00000, 0x7fffffff, 0x7f8fe000,
        f2b(65504.0), f2b(65519.99609375), f2b(65520.0), f2b(65536.0), f2b(-65520.0),
        f2b(1.0), f2b(-1.0), f2b(1.0 + 2 ** -11), f2b(1.0 + 3 * 2 ** -11), f2b(1.0 + 2 ** -8),
        f2b(1.0 + 3 * 2 ** -8), f2b(2 ** -14), f2b(2 ** -24), f2b(2 ** -25), f2b(3 * 2 ** -26),
        f2b(2 ** -25 + 2 ** -40), f2b(2 ** -26), f2b(-2 ** -25), f2b(1.5 * 2 ** -24),
        f2b(2.5 * 2 ** -24), f2b(2 ** -14 - 2 ** -25), f2b(2 ** -14 - 2 ** -30),
        0x00000001, 0x80000001, 0x007fffff, 0x00400000, 0x00008000, 0x00018000, 0x00800000,
        0x7f7fffff, 0xff7fffff, 0x7f7f8000, 0x7f7f7fff, 0x3f808000, 0x3f818000, 0x3f80ffff]
rng = random.Random(14)
vals += [rng.getrandbits(32) for _ in range(2000)]
vals += [(rng.getrandbits(1) << 31) | rng.randrange(0x33000000, 0x47800000) for _ in range(2000)]

x = torch.tensor(vals, dtype=torch.int64).to(torch.int32).view(torch.float32)
h = x.to(torch.float16).view(torch.int16).to(torch.int64) & 0xffff
b = x.to(torch.bfloat16).view(torch.int16).to(torch.int64) & 0xffff
print('# f32 bits, f16 bits, bf16 bits (hex), from PyTorch %s' % torch.__version__)
for v, hv, bv in zip(vals, h.tolist(), b.tolist()):
    print('%08x %04x %04x' % (v, hv, bv))
