#!/usr/bin/env node
// ONNX Runtime reference for tests/bench/bench.c: the inference cases of the
// benchmark (the same CNN and MLP, synthetic Fashion-MNIST-shaped input, the
// same call counts and medians) run by ONNX Runtime through its npm package
// onnxruntime-node 1.20.1, installed beside this script (git ignores it) with
//     npm install --ignore-scripts --no-save --prefix tests/bench onnxruntime-node@1.20.1
// or anywhere named by --ort-dir (an npm prefix or the package directory).
//
//     node tests/bench/ort_bench.js [--ort-dir DIR] [--models DIR]
//                                   [--quick] [--threads N] [--case PREFIX]
//
// Prints, per case and intra-op thread count (1 and 2; sequential execution,
// all graph optimizations), the lines compare.py reads:
//
//     BENCH ort_<case> <threads> <value> <unit>           raw, as the caller sees it
//     BENCH ort_<case>_overhead <threads> <us> us          the overhead model's call
//     BENCH ort_<case>_compute <threads> <value> <unit>    raw minus that overhead
//
// Units follow bench.c: batch 1 in us per call, batch 256 in img/s. The
// overhead is what the binding costs per call (promise, setImmediate, tensor
// wrapping, output copy): make_onnx.py's overhead model (the case's input,
// an output of the models' size, no arithmetic), timed on one thread after
// the model's session is released.
// --models names a directory written by make_onnx.py; without it the script
// runs make_onnx.py (Debian's /usr/bin/python3 with torch) into a temporary
// directory and removes it afterwards.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync } = require('child_process');

const HERE = __dirname;
const PYTHON = '/usr/bin/python3';

function usage(msg) {
  if (msg) process.stderr.write(`ort_bench: ${msg}\n`);
  process.stderr.write(
    'usage: node ort_bench.js [--ort-dir DIR] [--models DIR] [--quick] [--threads N] ' +
      '[--case PREFIX]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const a = { ortDir: null, models: null, quick: false, threads: 0, only: null };
  for (let i = 0; i < argv.length; i++) {
    const need = () => (i + 1 < argv.length ? argv[++i] : usage(`${argv[i]} needs a value`));
    switch (argv[i]) {
      case '--ort-dir': a.ortDir = need(); break;
      case '--models': a.models = need(); break;
      case '--quick': a.quick = true; break;
      case '--threads': a.threads = parseInt(need(), 10); break;
      case '--case': a.only = need(); break;
      default: usage(`unknown argument ${argv[i]}`);
    }
  }
  if (!(a.threads >= 0 && a.threads <= 2)) usage('--threads takes 1 or 2');
  return a;
}

// The package directory: DIR/node_modules/onnxruntime-node, or DIR itself
// when it is the package; default tests/bench/node_modules/onnxruntime-node.
function findOrt(dir) {
  const cands = dir
    ? [path.join(dir, 'node_modules', 'onnxruntime-node'), dir]
    : [path.join(HERE, 'node_modules', 'onnxruntime-node')];
  for (const c of cands) {
    const pj = path.join(c, 'package.json');
    if (fs.existsSync(pj) && JSON.parse(fs.readFileSync(pj, 'utf8')).name === 'onnxruntime-node')
      return c;
  }
  return null;
}

// The case filter matches the name with or without the "ort_" prefix, so one
// --case works for bench.c, bench_torch.py and this script alike.
function wanted(only, name) {
  return !only || name.startsWith(only) || `ort_${name}`.startsWith(only);
}

function median(v) {
  const s = Float64Array.from(v).sort();
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

function report(name, threads, value, unit) {
  console.log(`BENCH ${name} ${threads} ${Number(value.toPrecision(6))} ${unit}`);
}

function readF32(file) {
  const b = fs.readFileSync(file);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

// The output must match PyTorch's for the same input (written by
// make_onnx.py), so the timings are of the benchmark's model.
function checkOutput(got, want, what) {
  if (got.length !== want.length)
    throw new Error(`${what}: ${got.length} outputs, PyTorch gave ${want.length}`);
  let err = 0, scale = 1;
  for (let i = 0; i < got.length; i++) {
    err = Math.max(err, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  if (!(err <= 1e-4 * scale))
    throw new Error(`${what}: output differs from PyTorch's by ${err}`);
}

async function timeCalls(session, feeds, n, out) {
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await session.run(feeds);
    out.push(Number(process.hrtime.bigint() - t0) * 1e-3); // us
  }
}

// One case: `calls` model calls per repeat (bench.c's counts), then the
// Identity model's calls on the same input (the binding's overhead: tensors
// in and out, the session call) once the model's session is released;
// medians of the per-call times.
async function benchCase(ort, models, opts, model, batch, calls, reps) {
  const load = (name, o) => ort.InferenceSession.create(
    path.join(models, `${name}_b${batch}.onnx`), o);
  const x = readF32(path.join(models, `input_b${batch}.f32`));
  const feeds = { x: new ort.Tensor('float32', x, [batch, 1, 28, 28]) };
  const want = readF32(path.join(models, `${model}_b${batch}.out.f32`));
  const net = await load(model, opts);
  checkOutput((await net.run(feeds)).y.data, want, `${model}_b${batch}`);
  const raw = [], over = [], warm = [];
  await timeCalls(net, feeds, 5, warm);
  for (let r = 0; r < reps; r++) await timeCalls(net, feeds, calls, raw);
  await net.release();
  // Measured apart, on one thread (the binding's cost does not depend on
  // the model's thread count): the overhead model of make_onnx.py, same
  // input, an output of the models' size.
  const ident = await load('identity', { ...opts, intraOpNumThreads: 1 });
  const wantIdent = readF32(path.join(models, `identity_b${batch}.out.f32`));
  checkOutput((await ident.run(feeds)).y.data, wantIdent, `identity_b${batch}`);
  await timeCalls(ident, feeds, 5, warm);
  await timeCalls(ident, feeds, Math.max(30, reps * calls), over);
  await ident.release();
  return { raw: median(raw), overhead: median(over) };
}

function makeModels(dir) {
  execFileSync(PYTHON, [path.join(HERE, 'make_onnx.py'), dir], { stdio: ['ignore', 'ignore',
                                                                          'inherit'] });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const pkg = findOrt(args.ortDir);
  if (!pkg) {
    process.stderr.write(`ort_bench: onnxruntime-node not found (${args.ortDir ||
      path.join(HERE, 'node_modules')}); install it with ` +
      '`npm install --ignore-scripts --no-save --prefix tests/bench onnxruntime-node@1.20.1`\n');
    return 3;
  }
  const ort = require(pkg);
  const version = JSON.parse(fs.readFileSync(path.join(pkg, 'package.json'), 'utf8')).version;
  let models = args.models, tmp = null;
  if (!models) {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'nn-ort-'));
    makeModels(tmp);
    models = tmp;
  }
  const reps = args.quick ? 3 : 7;
  console.log(`# onnxruntime-node ${version}, ${args.quick ? 'quick' : 'full'}`);
  // [case, model, batch, calls per repeat]: bench.c's run_threads().
  const cases = [
    ['cnn_infer_b1', 'cnn', 1, 30],
    ['mlp_infer_b1', 'mlp', 1, 100],
    ['cnn_infer_b256', 'cnn', 256, 1],
    ['mlp_infer_b256', 'mlp', 256, 1],
  ];
  try {
    for (const t of [1, 2]) {
      if (args.threads && args.threads !== t) continue;
      const opts = { intraOpNumThreads: t, interOpNumThreads: 1, executionMode: 'sequential',
                     graphOptimizationLevel: 'all' };
      for (const [name, model, batch, calls] of cases) {
        if (!wanted(args.only, name)) continue;
        const r = await benchCase(ort, models, opts, model, batch, calls, reps);
        const compute = r.raw - r.overhead;
        if (batch === 1) {
          report(`ort_${name}`, t, r.raw, 'us');
          report(`ort_${name}_overhead`, t, r.overhead, 'us');
          report(`ort_${name}_compute`, t, compute, 'us');
        } else {
          report(`ort_${name}`, t, batch / (r.raw * 1e-6), 'img/s');
          report(`ort_${name}_overhead`, t, r.overhead, 'us');
          report(`ort_${name}_compute`, t, batch / (compute * 1e-6), 'img/s');
        }
      }
    }
  } finally {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  }
  return 0;
}

main().then((rc) => process.exit(rc), (e) => {
  process.stderr.write(`ort_bench: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
