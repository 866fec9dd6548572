#!/usr/bin/python3
"""PyTorch reference for tests/bench/bench.c: the same cases, measured the same
way (synthetic Fashion-MNIST-shaped data, fixed batches, medians over repeats),
printing the same lines:

    BENCH <case> <threads> <value> <unit>

Run with Debian's python3-torch: /usr/bin/python3 tests/bench/bench_torch.py
Options: --quick, --threads N, --case PREFIX (as bench.c).
"""
import argparse
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

REPS = 7
ONLY = None
NBATCH = 8


def wanted(name):
    return ONLY is None or name.startswith(ONLY)


def report(name, threads, value, unit):
    print(f"BENCH {name} {threads} {value:.6g} {unit}", flush=True)


def make_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2, 2, 0),
        nn.Conv2d(32, 64, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2, 2, 0),
        nn.Flatten(1, -1), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))


def make_mlp():
    return nn.Sequential(
        nn.Flatten(1, -1), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, 10))


def make_batch(g, n):
    x = torch.rand((n, 1, 28, 28), generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return x, y


def train_step(net, opt, x, y):
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    opt.step()


def bench_train(cnn, steps):
    g = torch.Generator().manual_seed(42)
    torch.manual_seed(1)
    net = make_cnn() if cnn else make_mlp()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    batches = [make_batch(g, 64) for _ in range(NBATCH)]
    for i in range(3):
        train_step(net, opt, *batches[i % NBATCH])
    r = []
    for _ in range(REPS):
        t0 = time.perf_counter()
        for i in range(steps):
            train_step(net, opt, *batches[i % NBATCH])
        r.append(64.0 * steps / (time.perf_counter() - t0))
    return statistics.median(r)


def bench_infer(cnn, batch, calls):
    g = torch.Generator().manual_seed(7)
    net = make_cnn() if cnn else make_mlp()
    net.eval()
    x, _ = make_batch(g, batch)
    r = []
    with torch.no_grad():
        for _ in range(5):
            net(x)
        for _ in range(calls * REPS):
            t0 = time.perf_counter()
            net(x)
            dt = time.perf_counter() - t0
            r.append(dt * 1e6 if batch == 1 else batch / dt)
    return statistics.median(r)


def bench_tiny_step():
    g = torch.Generator().manual_seed(3)
    net = nn.Linear(10, 10)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x = torch.rand((1, 10), generator=g)
    t = torch.rand((1, 10), generator=g)
    r = []
    for i in range(-50, 400 * REPS):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(net(x), t)
        loss.backward()
        opt.step()
        if i >= 0:
            r.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(r)


def bench_layer(name, fn, xs, ws, nb, threads):
    if not wanted("layer_" + name):
        return
    g = torch.Generator().manual_seed(5)
    x = torch.rand(xs, generator=g).requires_grad_(True)
    p = []
    if ws is not None:
        p = [(torch.rand(ws, generator=g) * 0.2 - 0.1).requires_grad_(True),
             (torch.rand((nb,), generator=g) * 0.2 - 0.1).requires_grad_(True)]
    fw, bw = [], []
    for i in range(-2, 3 * REPS):
        t0 = time.perf_counter()
        y = fn(x, p)
        t1 = time.perf_counter()
        seed = torch.ones_like(y)
        t2 = time.perf_counter()
        y.backward(seed)
        t3 = time.perf_counter()
        x.grad = None
        for q in p:
            q.grad = None
        if i >= 0:
            fw.append((t1 - t0) * 1e6)
            bw.append((t3 - t2) * 1e6)
    report(f"layer_{name}_fwd", threads, statistics.median(fw), "us")
    report(f"layer_{name}_bwd", threads, statistics.median(bw), "us")


def bench_layers(threads):
    conv = lambda x, p: F.conv2d(x, p[0], p[1], 1, 1)
    relu = lambda x, p: F.relu(x)
    pool = lambda x, p: F.max_pool2d(x, 2, 2, 0)
    lin = lambda x, p: F.linear(x, p[0], p[1])
    bench_layer("conv1", conv, (64, 1, 28, 28), (32, 1, 3, 3), 32, threads)
    bench_layer("relu1", relu, (64, 32, 28, 28), None, 0, threads)
    bench_layer("pool1", pool, (64, 32, 28, 28), None, 0, threads)
    bench_layer("conv2", conv, (64, 32, 14, 14), (64, 32, 3, 3), 64, threads)
    bench_layer("relu2", relu, (64, 64, 14, 14), None, 0, threads)
    bench_layer("pool2", pool, (64, 64, 14, 14), None, 0, threads)
    bench_layer("fc1", lin, (64, 3136), (128, 3136), 128, threads)
    bench_layer("fc2", lin, (64, 128), (10, 128), 10, threads)


def bench_matmul(threads):
    shapes = [(64, 128, 3136), (64, 256, 784), (64, 3136, 128), (64, 784, 256),
              (128, 3136, 64), (256, 784, 64)]
    g = torch.Generator().manual_seed(9)
    for m, n, k in shapes:
        name = f"matmul_{m}x{n}x{k}"
        if not wanted(name):
            continue
        a = torch.rand((m, k), generator=g)
        b = torch.rand((k, n), generator=g)
        flop = 2.0 * m * n * k
        r = []
        for i in range(-2, REPS):
            t0 = time.perf_counter()
            torch.matmul(a, b)
            dt = time.perf_counter() - t0
            if i >= 0:
                r.append(flop / dt * 1e-9)
        report(name, threads, statistics.median(r), "GFLOP/s")


def rss_child():
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(42)
    net = make_cnn()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    batches = [make_batch(g, 64) for _ in range(NBATCH)]
    for i in range(20):
        train_step(net, opt, *batches[i % NBATCH])
    return 0


def bench_rss():
    if not wanted("cnn_train_peak_rss"):
        return
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    res = subprocess.run([sys.executable, __file__, "--rss-child"])
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if res.returncode == 0 and after >= before:
        report("cnn_train_peak_rss", 1, after / 1024.0, "MB")


def run_threads(t, quick):
    torch.set_num_threads(t)
    steps = 4 if quick else 10
    if wanted("cnn_train"):
        report("cnn_train", t, bench_train(True, steps), "img/s")
    if wanted("mlp_train"):
        report("mlp_train", t, bench_train(False, steps * 4), "img/s")
    if wanted("cnn_infer_b1"):
        report("cnn_infer_b1", t, bench_infer(True, 1, 30), "us")
    if wanted("mlp_infer_b1"):
        report("mlp_infer_b1", t, bench_infer(False, 1, 100), "us")
    if wanted("cnn_infer_b256"):
        report("cnn_infer_b256", t, bench_infer(True, 256, 1), "img/s")
    if wanted("tiny_sgd_step"):
        report("tiny_sgd_step", t, bench_tiny_step(), "us")
    bench_matmul(t)
    bench_layers(t)


def main():
    global REPS, ONLY
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--case", default=None)
    ap.add_argument("--rss-child", action="store_true")
    args = ap.parse_args()
    if args.rss_child:
        return rss_child()
    if args.quick:
        REPS = 3
    ONLY = args.case
    print(f"# torch {torch.__version__}, {'quick' if args.quick else 'full'}", flush=True)
    bench_rss()
    for t in (1, 2):
        if args.threads in (0, t):
            run_threads(t, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
