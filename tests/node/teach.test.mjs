// Teaching is one C++ module (wasm/teach.h): the same case taught natively (`petal fewshot
// --dump-case`) and by the wasm engine gives the same head, so the same scores on the validation
// photos and the same per-class estimates.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { backbonePath, dataDir, loadPetal, petalCli, repoRoot, requireFile } from './support.mjs';

const cli = requireFile(process.env.PETAL_CLI || petalCli);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'petal-teach-test-'));
after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
  setImmediate(() => process.exit(process.exitCode ?? 0));  // pthread workers keep node alive
});

// A safetensors file's case.* tensors as Float32Arrays (stored as F32 or I32).
function tensors(bytes) {
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
  const out = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__' || !name.startsWith('case.')) continue;  // the case's own tensors
    const [a, b] = t.data_offsets, raw = bytes.subarray(8 + n + a, 8 + n + b);
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const count = t.shape.reduce((x, y) => x * y, 1);
    const v = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      if (t.dtype === 'F32') v[i] = view.getFloat32(4 * i, true);
      else if (t.dtype === 'I32') v[i] = view.getInt32(4 * i, true);
      else throw new Error(`unexpected dtype ${t.dtype} of ${name}`);
    }
    out[name] = { shape: t.shape, data: v };
  }
  return { meta: header.__metadata__, tensors: out };
}

test('a few-shot case taught in wasm gives the native numbers', async () => {
  const file = path.join(tmp, 'case.safetensors');
  const photos = path.join(dataDir, 'flower_photos');
  execFileSync(cli, ['fewshot', photos, '--no-views', '--dump-case', file, '--dump-class', 'sunflowers', '--dump-k', '10'],
    { env: { ...process.env, PETAL_BACKBONE: backbonePath }, stdio: ['ignore', 'ignore', 'inherit'] });
  const bytes = fs.readFileSync(file);
  const { meta, tensors: t } = tensors(bytes);
  const native = JSON.parse(meta.case);
  const nativeEstimates = JSON.parse(meta.case_estimates);
  const label = meta.case_label;

  const petal = await loadPetal('mt', 2);
  // the page's model (288² input, as the benchmark's features); its head and bank are replaced
  const engine = new petal.Engine(fs.readFileSync(requireFile(path.join(repoRoot, 'web/model/petal.safetensors'))), 2);
  engine.importHead(bytes);  // the model without the class, and its bank
  const before = engine.classNames();
  assert.ok(!before.includes(label), `the model does not know ${label} yet`);
  const dim = engine.featureDim();
  const k = t['case.features'].shape[0];
  assert.equal(k, native.k);
  const r = engine.teach(t['case.features'].data, Array(k).fill(label), {}, null, null);
  assert.deepEqual(r.classNames, [...before, label]);

  // score the validation photos as the benchmark does
  const val = t['case.val_features'].data, y = t['case.val_labels'].data, n = y.length;
  const newIndex = before.length;
  let tp = 0, fp = 0, pos = 0, oldOk = 0, oldN = 0, allOk = 0;
  for (let i = 0; i < n; i++) {
    const top = engine.classifyFeatures(val.subarray(i * dim, (i + 1) * dim), 1)[0].index;
    const isNew = y[i] === newIndex, saidNew = top === newIndex;
    pos += isNew; tp += isNew && saidNew; fp += !isNew && saidNew;
    if (!isNew) { oldN++; oldOk += top === y[i]; }
    allOk += top === y[i];
  }
  const wasm = { recall: tp / pos, precision: tp / (tp + fp), old_after: oldOk / oldN, overall: allOk / n };
  for (const key of Object.keys(wasm)) assert.ok(Math.abs(wasm[key] - native[key]) < 1e-9, `${key}: wasm ${wasm[key]} vs native ${native[key]}`);
  assert.ok(wasm.recall > 0.5, `the taught class is found (recall ${wasm.recall})`);
  // the estimates, measured on held-out photos and bank rows, agree too
  assert.equal(r.estimates.length, nativeEstimates.length);
  for (const [i, e] of r.estimates.entries()) {
    assert.equal(e.name, nativeEstimates[i].name);
    assert.equal(e.tested, nativeEstimates[i].tested);
    assert.ok(Math.abs(e.recall - nativeEstimates[i].recall) < 1e-9, `${e.name}: estimate wasm ${e.recall} vs native ${nativeEstimates[i].recall}`);
    for (const end of ['low', 'high']) assert.ok(Math.abs(e[end] - nativeEstimates[i][end]) < 1e-9, `${e.name}: ${end} wasm ${e[end]} vs native ${nativeEstimates[i][end]}`);
    assert.ok(e.low <= e.recall && e.recall <= e.high, `${e.name}: ${e.recall} in its likely range ${e.low}–${e.high}`);
  }
  engine.delete();
});
