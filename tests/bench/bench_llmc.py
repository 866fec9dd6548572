#!/usr/bin/python3
"""llm.c's CPU trainer (train_gpt2.c) as the third reference of
tests/bench/bench_gpt.c's gpt2_124m_train case. llm.c is NOT part of libnn:
give the path of a checkout of its public source (github.com/karpathy/llm.c)
with --llmc DIR; this script builds it outside the repository, unmodified,
the way its Makefile does for the CPU (gcc -Ofast -march=native -fopenmp
-DOMP), and runs it in a scratch directory.

train_gpt2.c takes no flags: it reads gpt2_124M.bin and the tiny-shakespeare
token files from its working directory and trains B=4, T=64 (the
configuration of the benchmark) with AdamW, printing "step N: train loss X
(took Y ms)" per step (its own wall clock). Without network access there is no GPT-2 checkpoint
here, so this script writes one with random weights in llm.c's documented
format (a header of 256 int32: magic 20240326, version 3, max_seq_len,
vocab_size, num_layers, num_heads, channels, padded_vocab_size; then the
float32 parameters wte, wpe, ln1w, ln1b, qkvw, qkvb, attprojw, attprojb,
ln2w, ln2b, fcw, fcb, fcprojw, fcprojb, lnfw, lnfb) and random token files
(header of 256 int32: magic 20240520, version 1, token count; then uint16
tokens). The step time does not depend on the weights' values.

The program runs 41 steps with validation and sampling in between; the
script reads its output as it comes, keeps the times of steps 1..--steps
(step 0 is the warm-up) and stops it (the sampling at step 20 is not
timed by llm.c and would only cost minutes). Prints
"MEDIAN_MS <wall> <cpu>" like bench_gpt_torch.py: the medians of llm.c's
step times and of its CPU time (all threads, from /proc) between one step
line and the next (the data loader's read included; keep --steps <= 9, as
the CPU time of step 10 includes a validation pass). On a loaded host the
CPU figure is the fair one: llm.c's OpenMP threads spin at barriers and its
wall time suffers more from sharing cores than a pool that sleeps.

Run: /usr/bin/python3 tests/bench/bench_llmc.py --llmc /path/to/llm.c --threads 2
"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile

import numpy as np

L, H, C, V, VP, MAXT = 12, 12, 768, 50257, 50304, 1024


def write_checkpoint(path):
    rng = np.random.default_rng(1)
    hdr = np.zeros(256, dtype=np.int32)
    hdr[:8] = [20240326, 3, MAXT, V, L, H, C, VP]
    sizes = [
        ("wte", VP * C, 0.02), ("wpe", MAXT * C, 0.01), ("ln1w", L * C, 1.0),
        ("ln1b", L * C, 0.0), ("qkvw", L * 3 * C * C, 0.02), ("qkvb", L * 3 * C, 0.0),
        ("attprojw", L * C * C, 0.02), ("attprojb", L * C, 0.0), ("ln2w", L * C, 1.0),
        ("ln2b", L * C, 0.0), ("fcw", L * 4 * C * C, 0.02), ("fcb", L * 4 * C, 0.0),
        ("fcprojw", L * C * 4 * C, 0.02), ("fcprojb", L * C, 0.0), ("lnfw", C, 1.0),
        ("lnfb", C, 0.0)]
    with open(path, "wb") as f:
        f.write(hdr.tobytes())
        for name, n, s in sizes:
            if name.startswith("ln") and name.endswith("w"):
                a = np.ones(n, dtype=np.float32)
            elif s == 0.0:
                a = np.zeros(n, dtype=np.float32)
            else:
                a = (rng.standard_normal(n, dtype=np.float32) * s).astype(np.float32)
            f.write(a.tobytes())


def write_tokens(path, n, seed):
    rng = np.random.default_rng(seed)
    hdr = np.zeros(256, dtype=np.int32)
    hdr[:3] = [20240520, 1, n]
    with open(path, "wb") as f:
        f.write(hdr.tobytes())
        f.write(rng.integers(0, V, n, dtype=np.uint16).tobytes())


def child_cpu_s(pid):
    """utime + stime of a live process from /proc (seconds)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llmc", required=True, help="llm.c source directory (train_gpt2.c)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "libnn_bench_llmc"),
                    help="scratch directory, reused across runs (the build, a 500 MB checkpoint)")
    a = ap.parse_args()
    src = os.path.join(a.llmc, "train_gpt2.c")
    if not os.path.exists(src):
        sys.exit("bench_llmc: no train_gpt2.c in %s" % a.llmc)
    if not 1 <= a.steps <= 19:
        sys.exit("bench_llmc: --steps 1..19 (step 20 samples text)")
    work = a.work
    os.makedirs(os.path.join(work, "dev/data/tinyshakespeare"), exist_ok=True)
    exe = os.path.join(work, "train_gpt2")
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
        subprocess.run(["gcc", "-Ofast", "-march=native", "-fopenmp", "-DOMP",
                        "-Wno-unused-result", "-I", a.llmc, src, "-lm", "-o", exe], check=True)
    ckpt = os.path.join(work, "gpt2_124M.bin")
    if not os.path.exists(ckpt):
        write_checkpoint(ckpt)
    data = os.path.join(work, "dev/data/tinyshakespeare")
    for name, n, seed in (("tiny_shakespeare_train.bin", 1 << 17, 2),
                          ("tiny_shakespeare_val.bin", 1 << 14, 3)):
        if not os.path.exists(os.path.join(data, name)):
            write_tokens(os.path.join(data, name), n, seed)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    # llm.c prints through stdio: line-buffered (stdbuf) so that each step's
    # line arrives when it is printed and the CPU time read then is that
    # step's
    p = subprocess.Popen(["stdbuf", "-oL", exe], cwd=work, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, bufsize=1)
    times, cpus, last = [], [], None
    try:
        for line in p.stdout:
            if not line.startswith("step "):
                continue
            step = int(line.split()[1].rstrip(":"))
            ms = float(line.rsplit("took", 1)[1].split()[0])
            now = child_cpu_s(p.pid)
            if step > 0:  # step 0 is the warm-up
                times.append(ms)
                cpus.append(1e3 * (now - last))
            last = now
            if step >= a.steps:
                break
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.wait()
    if not times:
        sys.exit("bench_llmc: no step times in llm.c's output")
    cpu = statistics.median(cpus)
    print("MEDIAN_MS %.2f %.2f" % (statistics.median(times), cpu))


if __name__ == "__main__":
    main()
