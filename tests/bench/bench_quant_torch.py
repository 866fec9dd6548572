#!/usr/bin/env python3
"""PyTorch's int8 on the models of bench_quant.c (the demo CNN, the MLP
784-256-128-10), 1 thread, medians of interleaved rounds:

  f32                the float model
  dyn                torch.ao.quantization.quantize_dynamic (Linear layers, qint8)
  static             eager-mode static quantization (onednn: Debian's torch has no fbgemm; QuantStub/DeQuantStub,
                     Conv2d+ReLU and Linear+ReLU fused, calibrated on 4 batches of N(0,1))

Prints the lines of bench_quant.c with a torch_ prefix:
    BENCH torch_q_<model>_b<batch>_<f32|dyn|static> 1 <median> us cpu <median> us
(wall clock, then the calling thread's CPU time: one intra-op thread runs in
the caller). bench_quant runs this script and compares in the same run.
Run with Debian's /usr/bin/python3 (torch 1.13)."""
import copy
import statistics
import sys
import time

import torch
import torch.nn as nn
from torch.ao import quantization as tq

ENGINE = "onednn" if "onednn" in torch.backends.quantized.supported_engines else "qnnpack"


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.c1, self.r1, self.p1 = nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        self.c2, self.r2, self.p2 = nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        self.f = nn.Flatten()
        self.l1, self.r3, self.l2 = nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10)
        self.fuse = [['c1', 'r1'], ['c2', 'r2'], ['l1', 'r3']]

    def forward(self, x):
        x = self.quant(x)
        x = self.p1(self.r1(self.c1(x)))
        x = self.p2(self.r2(self.c2(x)))
        x = self.l2(self.r3(self.l1(self.f(x))))
        return self.dequant(x)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.l1, self.r1 = nn.Linear(784, 256), nn.ReLU()
        self.l2, self.r2, self.l3 = nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)
        self.fuse = [['l1', 'r1'], ['l2', 'r2']]

    def forward(self, x):
        x = self.quant(x.flatten(1))
        return self.dequant(self.l3(self.r2(self.l2(self.r1(self.l1(x))))))


def static_of(model, shape):
    m = tq.fuse_modules(model, model.fuse)
    m.qconfig = tq.get_default_qconfig(ENGINE)
    tq.prepare(m, inplace=True)
    with torch.no_grad():
        for _ in range(4):
            m(torch.randn(64, *shape[1:]))
    return tq.convert(m)


def run(name, make, shape, batch, rounds):
    torch.manual_seed(1)
    f32 = make().eval()
    dyn = tq.quantize_dynamic(copy.deepcopy(f32), {nn.Linear}, dtype=torch.qint8)
    sta = static_of(copy.deepcopy(f32), shape)
    x = torch.randn(batch, *shape[1:])
    models = {'f32': f32, 'dyn': dyn, 'static': sta}
    inner = 20 if batch == 1 else 1
    times = {k: [] for k in models}
    cpu = {k: [] for k in models}
    with torch.no_grad():
        for m in models.values():
            m(x), m(x)
        for _ in range(rounds):
            for k, m in models.items():
                t0, c0 = time.perf_counter(), time.thread_time()
                for _ in range(inner):
                    m(x)
                times[k].append((time.perf_counter() - t0) / inner * 1e6)
                cpu[k].append((time.thread_time() - c0) / inner * 1e6)
    for k in models:
        print('BENCH torch_q_%s_b%d_%s 1 %.2f us cpu %.2f us' %
              (name, batch, k, statistics.median(times[k]), statistics.median(cpu[k])))
    sys.stdout.flush()


def main():
    torch.set_num_threads(1)
    torch.backends.quantized.engine = ENGINE
    rounds = 7 if '--quick' in sys.argv else 31
    print('# torch %s, 1 thread, engine %s' % (torch.__version__, ENGINE))
    run('cnn', CNN, (1, 1, 28, 28), 1, rounds)
    run('cnn', CNN, (1, 1, 28, 28), 256, rounds)
    run('mlp', MLP, (1, 784), 1, rounds)
    run('mlp', MLP, (1, 784), 256, rounds)


if __name__ == '__main__':
    main()
