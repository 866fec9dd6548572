#!/usr/bin/env node
// Run an ONNX model in ONNX Runtime (npm onnxruntime-node 1.20.1) on its
// inputs and write its first output, for tests/onnx's export checks:
//
//     node tests/onnx/ort_run.js MODEL.onnx INPUT[,INPUT2...] OUTPUT [ORT_DIR]
//
// Several inputs (comma-separated files) feed the graph inputs in order.
// INPUT and OUTPUT use the golden-array format of make_models.py: a text line
// "f32 D0 D1 ..." or "i64 ...", then raw little-endian data. The package is
// looked up beside tests/bench (npm install --ignore-scripts --no-save
// --prefix tests/bench onnxruntime-node@1.20.1) or in ORT_DIR. Exits 77 (the
// test's SKIP) when it cannot be loaded.
'use strict';

const fs = require('fs');
const path = require('path');

function loadOrt(dir) {
  const tries = [];
  if (dir) tries.push(path.join(dir, 'node_modules', 'onnxruntime-node'), dir);
  tries.push(path.join(__dirname, '..', 'bench', 'node_modules', 'onnxruntime-node'));
  for (const t of tries) {
    try {
      return require(t);
    } catch (e) { /* next */ }
  }
  return null;
}

function readArray(file) {
  const buf = fs.readFileSync(file);
  const nl = buf.indexOf(10);
  const head = buf.subarray(0, nl).toString().trim().split(/\s+/);
  const dims = head.slice(1).map((d) => parseInt(d, 10));
  const body = buf.subarray(nl + 1);
  const copy = new ArrayBuffer(body.length);
  new Uint8Array(copy).set(body);
  if (head[0] === 'i64') return { type: 'int64', data: new BigInt64Array(copy), dims };
  return { type: 'float32', data: new Float32Array(copy), dims };
}

function writeArray(file, t) {
  const kind = t.type === 'int64' ? 'i64' : 'f32';
  const head = Buffer.from([kind].concat(t.dims.map(String)).join(' ') + '\n');
  const data = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  fs.writeFileSync(file, Buffer.concat([head, data]));
}

async function main() {
  const [model, input, output, dir] = process.argv.slice(2);
  if (!output) {
    process.stderr.write('usage: node ort_run.js MODEL INPUT OUTPUT [ORT_DIR]\n');
    process.exit(2);
  }
  const ort = loadOrt(dir);
  if (!ort) {
    process.stdout.write('onnxruntime-node not found: skipped\n');
    process.exit(77);
  }
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1 });
  const files = input.split(',');
  if (files.length !== session.inputNames.length) {
    process.stderr.write(`ort_run: ${files.length} inputs given, the model takes ${session.inputNames.length}\n`);
    process.exit(2);
  }
  const feeds = {};
  files.forEach((f, i) => {
    const x = readArray(f);
    feeds[session.inputNames[i]] = new ort.Tensor(x.type, x.data, x.dims);
  });
  const out = await session.run(feeds);
  const y = out[session.outputNames[0]];
  writeArray(output, { type: y.type, data: y.data, dims: y.dims });
}

main().catch((e) => {
  process.stderr.write(`ort_run: ${e.stack || e}\n`);
  process.exit(1);
});
