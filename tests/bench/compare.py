#!/usr/bin/python3
"""Run libnn's benchmark, the PyTorch reference and the ONNX Runtime reference
interleaved (libnn, torch, ort, libnn, torch, ort, ... so all see the same
load on a shared host), then print tables of medians and ratios against the
targets of the performance issue.

    /usr/bin/python3 tests/bench/compare.py BUILD_DIR/tests/bench/bench \
        [--rounds 2] [--quick] [--threads N] [--case PREFIX] \
        [--ort-dir DIR | --no-ort]

Sections:
- libnn vs PyTorch: ratio = libnn / PyTorch of the raw figures; "gain" is how
  many times better libnn is: the ratio for throughputs (img/s, GFLOP/s), its
  inverse for times (us) and memory (MB).
- vs ONNX Runtime: the inference cases run by tests/bench/ort_bench.js under
  onnxruntime-node (needs `node` and the npm package: `npm install
  --ignore-scripts --no-save --prefix tests/bench onnxruntime-node@1.20.1`, git
  ignores it; or an install named by --ort-dir). Every figure is time per
  call in us: ORT's raw time, the binding overhead (make_onnx.py's overhead
  model: the same input, an output of the models' size, no arithmetic),
  ORT's compute time (raw minus overhead), and libnn's gain against the raw
  and the compute time. The targets are against compute time. The models are
  written to a temporary directory by tests/bench/make_onnx.py.
- backend: the FMA peak of the selected tier (fma_peak_<tier>), sgemm as a
  share of that peak, thread scaling, and training beside a busy process.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"

# case -> (minimum gain over PyTorch, what the issue asks), at every thread count
TARGETS = {
    "cnn_train": (2.0, ">=2x PyTorch"),
    "mlp_train": (2.0, ">=2x PyTorch"),
}

# case -> minimum gain over ONNX Runtime's compute time (raw minus binding overhead)
ORT_TARGETS = {
    "cnn_infer_b1": 1.0,
    "cnn_infer_b256": 1.0,
    "mlp_infer_b1": 1.5,
}

SGEMM_PEAK_SHARE = 0.75     # sgemm >= 75% of the selected tier's FMA peak
CNN_SCALING = 1.8           # cnn_train 2 threads / 1 thread on an idle machine
CONTENDED_SCALING = 1.0     # cnn_train_contended 2 threads / 1 thread

BACKEND_PREFIXES = ("fma_peak_", "sgemm_", "cnn_train_contended")


def parse(text):
    """BENCH lines -> {(case, threads): (value, unit)}; '#' lines -> notes."""
    out, notes = {}, []
    for line in text.splitlines():
        f = line.split()
        if len(f) == 5 and f[0] == "BENCH":
            out[(f[1], int(f[2]))] = (float(f[3]), f[4])
        elif line.startswith("#"):
            notes.append(line[1:].strip())
    return out, notes


def run(cmd):
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stderr}\n")
    return parse(res.stdout)


def collect(rounds, cmds):
    """Run each (label, command) once per round, alternating; per label and
    (case, threads) the median over rounds; per label the '#' notes seen."""
    acc = {label: {} for label, _ in cmds}
    notes = {label: [] for label, _ in cmds}
    for r in range(rounds):
        for label, cmd in cmds:
            print(f"# round {r + 1}/{rounds}: {label}", file=sys.stderr, flush=True)
            res, nt = run(cmd)
            for key, (val, unit) in res.items():
                acc[label].setdefault(key, ([], unit))[0].append(val)
            for n in nt:
                if n not in notes[label]:
                    notes[label].append(n)
    med = {label: {k: (statistics.median(v), u) for k, (v, u) in a.items()}
           for label, a in acc.items()}
    return med, notes


def find_ort(ort_dir):
    """The onnxruntime-node package directory, as ort_bench.js looks for it."""
    cands = ([os.path.join(ort_dir, "node_modules", "onnxruntime-node"), ort_dir] if ort_dir
             else [os.path.join(HERE, "node_modules", "onnxruntime-node")])
    for c in cands:
        if os.path.isfile(os.path.join(c, "package.json")) and \
                os.path.isfile(os.path.join(c, "dist", "index.js")):
            return c
    return None


def ort_setup(args, tmp):
    """(command for ort_bench.js, None) or (None, why it is skipped)."""
    if args.no_ort:
        return None, "--no-ort"
    if args.case and not any(c.startswith(args.case) or args.case.startswith(c)
                             for c in ("cnn_infer", "mlp_infer")):
        return None, f"no inference case selected by --case {args.case}"
    node = shutil.which("node")
    if not node:
        return None, "node is not installed (apt-get install nodejs npm)"
    pkg = find_ort(args.ort_dir)
    if not pkg:
        where = args.ort_dir or os.path.join(HERE, "node_modules")
        return None, (f"onnxruntime-node not found under {where} (npm install --ignore-scripts "
                      "--no-save --prefix tests/bench onnxruntime-node@1.20.1, or --ort-dir DIR)")
    gen = subprocess.run([PYTHON, os.path.join(HERE, "make_onnx.py"), tmp], capture_output=True,
                         text=True)
    if gen.returncode != 0:
        return None, f"make_onnx.py failed: {gen.stderr.strip().splitlines()[-1:]}"
    return [node, os.path.join(HERE, "ort_bench.js"), "--ort-dir", pkg, "--models", tmp], None


def gain_of(v, ref, unit):
    if not v or not ref:
        return float("nan")
    return v / ref if unit in ("img/s", "GFLOP/s") else ref / v


def print_torch(nn_res, th_res):
    print(f"{'case':34} {'thr':>3} {'libnn':>11} {'pytorch':>11} {'unit':8} {'ratio':>7} "
          f"{'gain':>7}  target")
    keys = [k for k in nn_res if not k[0].startswith(BACKEND_PREFIXES)]
    for key in sorted(keys, key=lambda k: (k[0].startswith(("layer_", "matmul_", "blis_")), k)):
        case, thr = key
        v, unit = nn_res[key]
        line = f"{case:34} {thr:>3} {v:>11.4g} "
        if key in th_res:
            tv = th_res[key][0]
            ratio = v / tv if tv else float("nan")
            gain = gain_of(v, tv, unit)
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
                line += f"  {frac * 100:.0f}% of direct BLIS"
        if case == "cnn_train_peak_rss":
            line += f"  <=100 MB: {'MET' if v <= 100 else 'NOT MET'}"
        print(line)


def per_call_us(case, value, unit):
    """A figure as us per call: 'us' as is, img/s through the case's batch."""
    if unit == "us":
        return value
    m = re.search(r"_b(\d+)$", case)
    if unit == "img/s" and m and value > 0:
        return int(m.group(1)) / value * 1e6
    return float("nan")


def print_ort(nn_res, ort_res, notes):
    print()
    print("vs ONNX Runtime" + (f" ({'; '.join(notes)})" if notes else "")
          + ": us per call; compute = raw - overhead (overhead model: same input, output of the models' size);"
          " gain = ORT time / libnn time")
    print(f"{'case':16} {'thr':>3} {'libnn':>10} {'ort raw':>10} {'overhead':>9} "
          f"{'ort comp':>10} {'gain raw':>9} {'gain comp':>9}  target (vs compute)")
    cases = sorted({c for (c, _) in ort_res if c.startswith("ort_")
                    and not c.endswith(("_overhead", "_compute"))})
    for oc in cases:
        case = oc[len("ort_"):]
        for thr in sorted(t for (c, t) in ort_res if c == oc):
            raw_v, raw_u = ort_res[(oc, thr)]
            raw = per_call_us(case, raw_v, raw_u)
            over = ort_res.get((oc + "_overhead", thr), (float("nan"), "us"))[0]
            comp = raw - over
            lib = nn_res.get((case, thr))
            line = f"{case:16} {thr:>3} "
            if not comp > 0:
                line += (f"{'-':>10} {raw:>10.4g} {over:>9.4g} {'-':>10} {'-':>9} {'-':>9}"
                         "  overhead >= raw: too noisy to subtract")
            elif lib:
                lv = per_call_us(case, *lib)
                g_raw, g_comp = raw / lv, comp / lv
                line += (f"{lv:>10.4g} {raw:>10.4g} {over:>9.4g} {comp:>10.4g} "
                         f"{g_raw:>8.2f}x {g_comp:>8.2f}x")
                if case in ORT_TARGETS:
                    need = ORT_TARGETS[case]
                    line += f"  >={need:.1f}x: {'MET' if g_comp >= need else 'NOT MET'}"
            else:
                line += (f"{'-':>10} {raw:>10.4g} {over:>9.4g} {comp:>10.4g} {'-':>9} {'-':>9}"
                         "  (no libnn figure)")
            print(line)


def selected_peak(nn_res, nn_notes):
    """(tier, GFLOP/s per thread count) of the selected tier's FMA peak: the
    tier the benchmark's '# backend: tier NAME; ...' header names, else the one
    fma_peak_* line, else the highest peak."""
    peaks = {}
    for (case, thr), (v, _) in nn_res.items():
        if case.startswith("fma_peak_"):
            peaks.setdefault(case[len("fma_peak_"):], {})[thr] = v
    if not peaks:
        return None, {}
    for n in nn_notes:
        m = re.search(r"\btier (\w+)", n)
        if m and m.group(1) in peaks:
            return m.group(1), peaks[m.group(1)]
    tier = max(peaks, key=lambda t: peaks[t].get(1, max(peaks[t].values())))
    return tier, peaks[tier]


def adjacent_peaks(nn_notes):
    """{(sgemm case, threads): GFLOP/s} from the benchmark's '# adjacent peak:
    CASE THREADS VALUE GFLOP/s' notes: the FMA peak measured again just before
    and after that shape (the higher), at its thread count."""
    out = {}
    for n in nn_notes:
        m = re.match(r"adjacent peak: (\S+) (\d+) (\S+) GFLOP/s$", n)
        if m:
            out[(m.group(1), int(m.group(2)))] = float(m.group(3))
    return out


def print_backend(nn_res, nn_notes):
    lines = []
    tier, peak = selected_peak(nn_res, nn_notes)
    adjacent = adjacent_peaks(nn_notes)
    if tier is None:  # no fma_peak_* line (--case): the tier the header names
        named = [m.group(1) for n in nn_notes for m in [re.search(r"\btier (\w+)", n)] if m]
        tier = named[0] if named else "the selected tier's"
    # shapes the models do not run through GEMM on this tier (the benchmark's
    # '# off the models' path: sgemm_X (why)' notes): still measured, marked
    off = {}
    for n in nn_notes:
        m = re.match(r"off the models' path: (\S+) \((.*)\)$", n)
        if m:
            off[m.group(1)] = m.group(2)
    for (case, thr), (v, unit) in sorted(nn_res.items()):
        if case.startswith("fma_peak_"):
            sel = " (selected tier)" if case == f"fma_peak_{tier}" else ""
            lines.append(f"{case:34} {thr:>3} {v:>11.4g} {unit}{sel}")
    for (case, thr), (v, unit) in sorted(nn_res.items()):
        if not case.startswith("sgemm_"):
            continue
        line = f"{case:34} {thr:>3} {v:>11.4g} {unit}"
        # the peak at this thread count if measured, else thr x the 1-thread peak
        p = peak.get(thr) or (peak.get(1, 0) * thr)
        adj = adjacent.get((case, thr))
        if adj:
            # the verdict against the peak measured beside the shape; the
            # run's first peak stays printed
            share = v / adj
            verdict = "MET" if share >= SGEMM_PEAK_SHARE else "NOT MET"
            line += (f"  {share * 100:.0f}% of {tier} peak {adj:.4g} beside it "
                     f"(>={SGEMM_PEAK_SHARE:.0%}: {verdict})")
            if p:
                line += f"; {v / p * 100:.0f}% of the run's first peak {p:.4g}"
        elif p:
            share = v / p
            line += (f"  {share * 100:.0f}% of {tier} peak {p:.4g} (>={SGEMM_PEAK_SHARE:.0%}: "
                     f"{'MET' if share >= SGEMM_PEAK_SHARE else 'NOT MET'})")
        else:
            line += "  (no fma_peak_* figure)"
        if case in off:
            line += f"  [not on the models' GEMM path: {off[case]}]"
        lines.append(line)
    scalings = (("cnn_train", CNN_SCALING, "no competing process (target: idle machine)"),
                ("mlp_train", None, "no competing process"),
                ("cnn_train_contended", CONTENDED_SCALING, "beside the benchmark's busy process"))
    for case, need, what in scalings:
        one, two = nn_res.get((case, 1)), nn_res.get((case, 2))
        if one and two:
            s = two[0] / one[0]
            tgt = f" (>={need}x: {'MET' if s >= need else 'NOT MET'})" if need else ""
            lines.append(f"scaling {case}: 2 threads {two[0]:.4g} / 1 thread {one[0]:.4g} "
                         f"{one[1]} = {s:.2f}x, {what}{tgt}")
    print()
    print("backend" if lines else "backend: no fma_peak_*, sgemm_* or 1/2-thread training "
          "figures in this run")
    for line in lines:
        print(line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bench", help="path to the built bench executable")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--case", default=None)
    ap.add_argument("--ort-dir", default=None,
                    help="npm prefix (or package directory) holding onnxruntime-node; "
                         "default tests/bench/node_modules")
    ap.add_argument("--no-ort", action="store_true", help="skip the ONNX Runtime reference")
    args = ap.parse_args()
    extra = []
    if args.quick:
        extra.append("--quick")
    if args.threads:
        extra += ["--threads", str(args.threads)]
    if args.case:
        extra += ["--case", args.case]
    cmds = [("libnn", [args.bench] + extra),
            ("pytorch", [PYTHON, os.path.join(HERE, "bench_torch.py")] + extra)]
    with tempfile.TemporaryDirectory(prefix="nn-onnx-") as tmp:
        ort_cmd, ort_skip = ort_setup(args, tmp)
        if ort_cmd:
            cmds.append(("onnxruntime", ort_cmd + extra))
        res, notes = collect(args.rounds, cmds)
    for label in res:
        for n in notes[label]:
            print(f"# {label}: {n}")
    print_torch(res["libnn"], res["pytorch"])
    if ort_cmd:
        print_ort(res["libnn"], res["onnxruntime"], notes["onnxruntime"])
    else:
        print(f"\nONNX Runtime: skipped ({ort_skip})")
    print_backend(res["libnn"], notes["libnn"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
