#!/usr/bin/env python3
"""int8 post-training quantization of the Fashion-MNIST CNN from Python: the
C example (examples/quantize.c) in a PyTorch user's words.

    model = libnn.load('fashion_mnist_cnn.nnm')       # the demo's f32 model
    report = quantization.quantize_static(model.module, calib_loader, batches=8)
    print(report)                                      # per-layer max |int8 - f32|
    libnn.save(model.module, 'fashion_mnist_cnn-int8.nnm', meta=model.meta)

Run from the repository root after building and training the demo:
    python3 examples/quantize.py --model fashion_mnist_cnn.nnm
Quick run (also what NN_EXAMPLE_SMOKE=1 selects): --test-subset 500 --calib-batches 2
"""
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'bindings', 'python'))

import libnn  # noqa: E402
from libnn import quantization  # noqa: E402
from libnn.data import DataLoader, Dataset, accuracy  # noqa: E402


def split(data, prefix, meta, n=0):
    ds = Dataset.from_idx(os.path.join(data, prefix + '-images-idx3-ubyte.gz'),
                          os.path.join(data, prefix + '-labels-idx1-ubyte.gz'))
    ds.set_normalize(meta['normalize_mean'], meta['normalize_std'])
    return ds.subset(list(range(n))) if 0 < n < len(ds) else ds


def test_accuracy(module, loader):
    module.eval()
    right = total = 0
    with libnn.no_grad():
        for x, y in loader:
            right += accuracy(module(x), y) * len(y.tolist())
            total += len(y.tolist())
    return right / total


def latency_us(module, x, reps):
    times = []
    with libnn.no_grad():
        for _ in range(reps + 2):
            t0 = time.perf_counter()
            module(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times[2:]) * 1e6


def main():
    smoke = os.environ.get('NN_EXAMPLE_SMOKE', '0') not in ('', '0')
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--model', default='fashion_mnist_cnn.nnm')
    p.add_argument('--data', default=os.environ.get('NN_FASHION_MNIST',
                                                    '/usr/share/datasets/fashion-mnist'))
    p.add_argument('--save', default='fashion_mnist_cnn-int8-py.nnm')
    p.add_argument('--test-subset', type=int, default=500 if smoke else 0)
    p.add_argument('--calib-batches', type=int, default=2 if smoke else 8)
    a = p.parse_args()
    libnn.set_num_threads(1)

    f32, dyn, sta = (libnn.load(a.model) for _ in range(3))
    meta = f32.meta
    test = DataLoader(split(a.data, 't10k', meta, a.test_subset), batch_size=256)
    calib = DataLoader(split(a.data, 'train', meta), batch_size=64, shuffle=True, seed=1)
    x_calib = next(iter(calib))[0]

    print('== dynamic ==')
    print(quantization.quantize_dynamic(dyn.module, calib=x_calib))
    print('== static, %d calibration batches ==' % a.calib_batches)
    print(quantization.quantize_static(sta.module, calib, batches=a.calib_batches))

    x1 = next(iter(DataLoader(split(a.data, 't10k', meta, 1), batch_size=1)))[0]
    base = None
    for name, m in (('f32', f32), ('int8 dynamic', dyn), ('int8 static', sta)):
        acc = test_accuracy(m.module, test)
        size = len(libnn.save_bytes(m.module))
        lat = latency_us(m.module, x1, 20 if smoke else 200)
        base = base or (acc, size, lat)
        print('%-13s accuracy %6.2f%% (%+.2f)  file %8d bytes (%.2fx)  batch 1 %7.1f us (%.2fx)'
              % (name, 100 * acc, 100 * (acc - base[0]), size, size / base[1], lat,
                 lat / base[2]))
    libnn.save(sta.module, a.save, meta=meta)
    print('saved', a.save)


if __name__ == '__main__':
    main()
