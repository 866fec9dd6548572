#!/usr/bin/python3
"""TransformerEncoderLayer forward + backward (and inference) in libnn and
PyTorch, run alternately in the same session so both see the same load:

    /usr/bin/python3 tests/bench/bench_transformer.py BUILD_DIR/tests/bench/bench_transformer \
        [--threads 1,2] [--rounds 3] [--repeats 10]

The layer: d_model 256, nhead 4, dim_feedforward 1024, relu, dropout 0,
batch_first, post-norm, on x [8, 128, 256]; the training step zeroes the
gradients, runs forward and backward of sum(y). Prints each side's median ms
per round's median and the ratio PyTorch / libnn (> 1: libnn is faster)."""
import argparse
import statistics
import subprocess
import sys

TORCH_CODE = r'''
import sys, time, torch
threads, reps = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
torch.manual_seed(1)
m = torch.nn.TransformerEncoderLayer(256, 4, 1024, dropout=0.0, batch_first=True)
x = torch.randn(8, 128, 256)
for train in (True, False):
    ts = []
    for i in range(reps + 2):
        t0 = time.perf_counter()
        if train:
            m.zero_grad(set_to_none=True)
            m(x).sum().backward()
        else:
            with torch.no_grad():
                m.eval()(x)
            m.train()
        if i >= 2:
            ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    print("BENCH %s %d %.3f ms" % ("enc_layer_train" if train else "enc_layer_infer", threads,
                                   ts[reps // 2]))
'''


def parse(out):
    res = {}
    for line in out.splitlines():
        p = line.split()
        if len(p) == 5 and p[0] == "BENCH":
            res[p[1]] = float(p[3])
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bench")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    a = ap.parse_args()
    for th in [int(t) for t in a.threads.split(",")]:
        ours, theirs = {}, {}
        for _ in range(a.rounds):
            o = parse(subprocess.run([a.bench, str(th), str(a.repeats)], check=True,
                                     stdout=subprocess.PIPE, universal_newlines=True).stdout)
            t = parse(subprocess.run([sys.executable, "-c", TORCH_CODE, str(th), str(a.repeats)],
                                     check=True, stdout=subprocess.PIPE,
                                     universal_newlines=True).stdout)
            for k in o:
                ours.setdefault(k, []).append(o[k])
                theirs.setdefault(k, []).append(t[k])
        for k in sorted(ours):
            lo, tp = statistics.median(ours[k]), statistics.median(theirs[k])
            print("%-16s threads %d  libnn %8.2f ms  pytorch %8.2f ms  pytorch/libnn %.2fx"
                  % (k, th, lo, tp, tp / lo))


if __name__ == "__main__":
    main()
