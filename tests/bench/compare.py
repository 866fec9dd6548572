#!/usr/bin/python3
"""Run libnn's benchmark and the PyTorch reference interleaved (libnn, torch,
libnn, torch, ... so both see the same load on a shared host), then print a
table of medians and ratios against the targets of the performance issue.

    /usr/bin/python3 tests/bench/compare.py BUILD_DIR/tests/bench/bench \
        [--rounds 2] [--quick] [--threads N] [--case PREFIX]

ratio = libnn / PyTorch of the raw figures. "gain" is how many times better
libnn is: the ratio for throughputs (img/s, GFLOP/s), its inverse for times
(us) and memory (MB).
"""
import argparse
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# case -> (minimum gain, what the issue asks)
TARGETS = {
    "cnn_train": (2.0, ">=2x PyTorch"),
    "mlp_train": (2.0, ">=2x PyTorch"),
    "cnn_infer_b1": (3.0, ">=3x lower latency"),
    "mlp_infer_b1": (5.0, ">=5x lower latency"),
    "cnn_infer_b256": (2.0, ">=2x PyTorch"),
    "tiny_sgd_step": (30.0, ">=30x lower"),
}


def parse(text):
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) == 5 and f[0] == "BENCH":
            out[(f[1], int(f[2]))] = (float(f[3]), f[4])
    return out


def run(cmd):
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stderr}\n")
    return parse(res.stdout)


def collect(rounds, cmds):
    """Run each command once per round, alternating; per (case, threads) keep
    the list of figures."""
    acc = [dict() for _ in cmds]
    for r in range(rounds):
        for i, cmd in enumerate(cmds):
            label = "libnn" if i == 0 else "pytorch"
            print(f"# round {r + 1}/{rounds}: {label}", file=sys.stderr, flush=True)
            for key, (val, unit) in run(cmd).items():
                acc[i].setdefault(key, ([], unit))[0].append(val)
    return [{k: (statistics.median(v), u) for k, (v, u) in a.items()} for a in acc]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bench", help="path to the built bench executable")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--case", default=None)
    args = ap.parse_args()
    extra = []
    if args.quick:
        extra.append("--quick")
    if args.threads:
        extra += ["--threads", str(args.threads)]
    if args.case:
        extra += ["--case", args.case]
    torch_cmd = ["/usr/bin/python3", os.path.join(HERE, "bench_torch.py")] + extra
    nn_res, th_res = collect(args.rounds, [[args.bench] + extra, torch_cmd])

    print(f"{'case':34} {'thr':>3} {'libnn':>11} {'pytorch':>11} {'unit':8} {'ratio':>7} "
          f"{'gain':>7}  target")
    for key in sorted(nn_res, key=lambda k: (k[0].startswith(("layer_", "matmul_", "blis_")), k)):
        case, thr = key
        v, unit = nn_res[key]
        line = f"{case:34} {thr:>3} {v:>11.4g} "
        if key in th_res:
            tv = th_res[key][0]
            ratio = v / tv if tv else float("nan")
            gain = ratio if unit in ("img/s", "GFLOP/s") else (1 / ratio if ratio else float("nan"))
            line += f"{tv:>11.4g} {unit:8} {ratio:>7.3f} {gain:>6.2f}x"
            if case in TARGETS:
                need, what = TARGETS[case]
                line += f"  {what}: {'MET' if gain >= need else 'NOT MET'}"
        else:
            line += f"{'-':>11} {unit:8} {'-':>7} {'-':>7}"
        if case.startswith("matmul_"):
            blis = nn_res.get(("blis_" + case[len("matmul_"):], thr))
            if blis:
                frac = v / blis[0]
                line += f"  {frac * 100:.0f}% of direct BLIS (>=95%: {'MET' if frac >= 0.95 else 'NOT MET'})"
        if case == "cnn_train_peak_rss":
            line += f"  <=100 MB: {'MET' if v <= 100 else 'NOT MET'}"
        print(line)
    for case in ("cnn_train", "mlp_train"):
        one, two = nn_res.get((case, 1)), nn_res.get((case, 2))
        if one and two:
            s = two[0] / one[0]
            tgt = " (>=1.8x: " + ("MET" if s >= 1.8 else "NOT MET") + ")" if case == "cnn_train" else ""
            print(f"scaling {case}: 2 threads / 1 thread = {s:.2f}x{tgt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
