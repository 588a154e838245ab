// `petal onnx`: the exported ONNX model run by ONNX Runtime (node, and web's wasm backend in node)
// gives the same features, ImageNet logits and head probabilities as Petal's own engine, on real
// flower photos preprocessed by Petal (`petal preprocess`) and on the golden input tensors.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import * as ortNode from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { backbonePath, dataDir, flowerFiles, loadPetal, maxAbs, maxAbsDiff, petalCli, readF32, repoRoot, requireFile } from './support.mjs';

const cli = requireFile(process.env.PETAL_CLI || petalCli);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'petal-onnx-test-'));
after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
  setImmediate(() => process.exit(process.exitCode ?? 0));  // pthread workers keep node alive
});

const CLASSES = ['daisy', 'dandelion', 'roses', 'sunflowers', 'tulips'];
const PER = 224 * 224 * 3, DIM = 2048;
// XNNPACK and ONNX Runtime sum in different orders; fp32 rounding differences measured on these
// photos are about 1e-6 of the largest feature. A wrong transpose, padding or fold is 1e-2 or more.
const TOL = 2e-5;

function petal(args, env = {}) {
  return execFileSync(cli, args, { env: { ...process.env, PETAL_BACKBONE: backbonePath, ...env }, maxBuffer: 1 << 28 });
}
function close(got, want, what, tol = TOL) {
  const err = maxAbsDiff(got, want), scale = maxAbs(want);
  assert.equal(got.length, want.length, `${what}: length`);
  assert.ok(err <= tol * scale, `${what}: max abs difference ${err} > ${tol} x ${scale}`);
}
function rows(a, n) {
  const d = a.length / n;
  return Array.from({ length: n }, (_, i) => a.subarray(i * d, (i + 1) * d));
}

// Real photos, preprocessed by Petal: 2 per class to check, 6 per class to train a head on.
const checkFiles = CLASSES.flatMap((c) => flowerFiles(c, 2));
const trainFiles = CLASSES.flatMap((c) => flowerFiles(c, 8).slice(2));
const trainLabels = Int32Array.from(CLASSES.flatMap((_, i) => Array(6).fill(i)));
petal(['preprocess', ...checkFiles, '-o', path.join(tmp, 'check.f32')]);
petal(['preprocess', ...trainFiles, '-o', path.join(tmp, 'train.f32')]);
const checkInputs = readF32(path.join(tmp, 'check.f32'));
const trainInputs = readF32(path.join(tmp, 'train.f32'));
const goldenInputs = readF32(requireFile(path.join(dataDir, 'golden/inputs_224.f32')));
const goldenLogits = readF32(path.join(dataDir, 'golden/logits.f32'));

const backboneOnnx = path.join(tmp, 'backbone.onnx');
petal(['onnx', backbonePath, '-o', backboneOnnx]);

const mod = await loadPetal('st', 1);
const engine = new mod.Engine(fs.readFileSync(backbonePath), 1);
const petalCheck = engine.featuresOfInputs(checkInputs, checkFiles.length);
const petalGolden = engine.featuresOfInputs(goldenInputs, 10);

const nodeBackbone = await ortNode.InferenceSession.create(backboneOnnx);
async function runOrt(ort, session, inputs, n) {
  return session.run({ input: new ort.Tensor('float32', inputs, [n, 224, 224, 3]) });
}

test('the exported backbone declares NHWC input and features + logits outputs', () => {
  assert.deepEqual(nodeBackbone.inputNames, ['input']);
  assert.deepEqual(nodeBackbone.outputNames, ['features', 'logits']);
});

test('onnxruntime-node: features of real photos preprocessed by Petal equal the engine (wasm and native CLI)', async () => {
  const r = await runOrt(ortNode, nodeBackbone, checkInputs, checkFiles.length);
  assert.deepEqual(r.features.dims, [checkFiles.length, DIM]);
  assert.deepEqual(r.logits.dims, [checkFiles.length, 1000]);
  close(r.features.data, petalCheck, 'ORT vs wasm engine');
  // The native CLI decodes the same files itself: same preprocessing code, same result.
  const native = JSON.parse(petal(['features', '--json', '--model', backbonePath, ...checkFiles]));
  for (const [i, f] of rows(r.features.data, checkFiles.length).entries())
    close(f, Float32Array.from(native.images[i].features), `ORT vs petal features: ${checkFiles[i]}`);
});

test('onnxruntime-node: features and logits of the golden input tensors equal the engine and the reference', async () => {
  const r = await runOrt(ortNode, nodeBackbone, goldenInputs, 10);
  close(r.features.data, petalGolden, 'ORT vs wasm engine');
  close(r.logits.data, goldenLogits, 'ORT logits vs golden logits');
  // Batch 1 gives the same numbers as batch 10 (the batch dimension is symbolic).
  const one = await runOrt(ortNode, nodeBackbone, goldenInputs.subarray(PER * 3, PER * 4), 1);
  close(one.features.data, petalGolden.subarray(3 * DIM, 4 * DIM), 'ORT batch 1 vs wasm engine');
});

test('full classifier: a head trained in the engine exports with probabilities that equal the engine', async () => {
  const trainFeatures = engine.featuresOfInputs(trainInputs, trainFiles.length);
  engine.teach(trainFeatures, Array.from(trainLabels, (c) => CLASSES[c]), { epochs: 15, seed: 7, estimateFolds: 0 }, null, null);
  const headBundle = path.join(tmp, 'head.safetensors');
  fs.writeFileSync(headBundle, engine.exportBundle(false, false));  // head only: the CLI adds the backbone
  const clsOnnx = path.join(tmp, 'classifier.onnx');
  petal(['onnx', headBundle, '-o', clsOnnx]);
  const session = await ortNode.InferenceSession.create(clsOnnx);
  assert.deepEqual(session.outputNames, ['features', 'probabilities']);
  const r = await runOrt(ortNode, session, checkInputs, checkFiles.length);
  assert.deepEqual(r.probabilities.dims, [checkFiles.length, CLASSES.length]);
  close(r.features.data, petalCheck, 'classifier features vs engine');
  let correct = 0;
  for (const [i, p] of rows(r.probabilities.data, checkFiles.length).entries()) {
    const want = new Float32Array(CLASSES.length);
    for (const q of engine.classifyFeatures(petalCheck.subarray(i * DIM, (i + 1) * DIM), CLASSES.length)) want[q.index] = q.probability;
    assert.ok(maxAbsDiff(p, want) <= 1e-5, `${checkFiles[i]}: probabilities ${Array.from(p)} vs engine ${Array.from(want)}`);
    if (p.indexOf(Math.max(...p)) === Math.floor(i / 2)) correct++;
  }
  // Sanity that the head learnt something (30 training photos; 10 unseen ones here).
  assert.ok(correct >= 6, `only ${correct}/10 held-out photos right`);
  // --no-head gives the backbone back, identical to exporting the backbone itself.
  const noHead = path.join(tmp, 'no-head.onnx');
  petal(['onnx', headBundle, '--no-head', '-o', noHead]);
  assert.ok(fs.readFileSync(noHead).equals(fs.readFileSync(backboneOnnx)), '--no-head export equals the backbone export');
  // Taught once more (a new class: residual units on top of the head), the export still equals the engine.
  const some = trainFeatures.subarray(0, 4 * DIM);
  engine.teach(some, ['mystery', 'mystery', 'mystery', 'mystery'], { seed: 3, estimateFolds: 0 }, null, null);
  const taughtBundle = path.join(tmp, 'taught.safetensors');
  fs.writeFileSync(taughtBundle, engine.exportBundle(false, false));
  const taughtOnnx = path.join(tmp, 'taught.onnx');
  petal(['onnx', taughtBundle, '-o', taughtOnnx]);
  const taught = await ortNode.InferenceSession.create(taughtOnnx);
  const t = await runOrt(ortNode, taught, checkInputs, checkFiles.length);
  const C = CLASSES.length + 1;
  for (const [i, p] of rows(t.probabilities.data, checkFiles.length).entries()) {
    const want = new Float32Array(C);
    for (const q of engine.classifyFeatures(petalCheck.subarray(i * DIM, (i + 1) * DIM), C)) want[q.index] = q.probability;
    assert.ok(maxAbsDiff(p, want) <= 1e-5, `taught: ${checkFiles[i]}: probabilities ${Array.from(p)} vs engine ${Array.from(want)}`);
  }
});

test('onnxruntime-web (wasm backend) loads the export and agrees with onnxruntime-node', async () => {
  ortWeb.env.wasm.numThreads = 1;
  const web = await ortWeb.InferenceSession.create(fs.readFileSync(backboneOnnx), { executionProviders: ['wasm'] });
  const inputs = checkInputs.subarray(0, 2 * PER);
  const [a, b] = [await runOrt(ortWeb, web, inputs, 2), await runOrt(ortNode, nodeBackbone, inputs, 2)];
  close(a.features.data, b.features.data, 'ORT web vs ORT node features');
  close(a.logits.data, b.logits.data, 'ORT web vs ORT node logits');
  close(a.features.data, petalCheck.subarray(0, 2 * DIM), 'ORT web vs wasm engine');
  await web.release();
});

// The page's Export as ONNX: the engine writes the whole classifier itself (Engine::to_onnx), from
// the page's model (fp16 weights, 288x288 photos), taught a new class in the engine.
test('the engine exports the page model, taught a new class, as one ONNX file; ORT node gives its probabilities', async () => {
  const pageModel = requireFile(path.join(repoRoot, 'web/model/petal.safetensors'));
  const page = new mod.Engine(fs.readFileSync(pageModel), 1);
  const S = page.inputSize();
  // The engine's input for a photo (inputOf) is what `petal preprocess` writes.
  petal(['preprocess', '--size', String(S), checkFiles[0], '-o', path.join(tmp, 'one.f32')]);
  assert.deepEqual(mod.inputOf(fs.readFileSync(checkFiles[0]), S, S), readF32(path.join(tmp, 'one.f32')), 'inputOf = petal preprocess');
  const probabilitiesOf = async (onnxBytes, C) => {
    const session = await ortNode.InferenceSession.create(onnxBytes);
    assert.deepEqual(session.outputNames, ['features', 'probabilities']);
    const x = new Float32Array(checkFiles.length * S * S * 3);
    checkFiles.forEach((f, i) => x.set(mod.inputOf(fs.readFileSync(f), S, S), i * S * S * 3));
    const r = await session.run({ input: new ortNode.Tensor('float32', x, [checkFiles.length, S, S, 3]) });
    assert.deepEqual(r.probabilities.dims, [checkFiles.length, C]);
    await session.release();
    let worst = 0;
    for (const [i, p] of rows(r.probabilities.data, checkFiles.length).entries()) {
      const want = new Float32Array(C);
      for (const q of page.classify(fs.readFileSync(checkFiles[i]), C)) want[q.index] = q.probability;
      worst = Math.max(worst, maxAbsDiff(p, want));
    }
    return worst;
  };
  const before = page.features(fs.readFileSync(checkFiles[1]), false);
  const shipped = page.exportOnnx();
  const w0 = await probabilitiesOf(shipped, CLASSES.length);
  assert.ok(w0 <= 1e-5, `shipped model: probabilities differ from the engine by ${w0}`);
  // fp16 weights stay fp16: about half of ResNet-50's 23.5 M weights as fp32 (94 MB).
  assert.ok(shipped.byteLength < 55e6, `${shipped.byteLength} bytes`);
  const some = trainFiles.slice(0, 4).map((f) => page.features(fs.readFileSync(f), false));
  const F = new Float32Array(4 * DIM);
  some.forEach((f, i) => F.set(f, i * DIM));
  page.teach(F, ['mystery', 'mystery', 'mystery', 'mystery'], { seed: 3, estimateFolds: 0 }, null, null);
  const taught = page.exportOnnx();
  const w1 = await probabilitiesOf(taught, CLASSES.length + 1);
  assert.ok(w1 <= 1e-5, `taught model: probabilities differ from the engine by ${w1}`);
  console.log(`  page model: ${(shipped.byteLength / 1e6).toFixed(1)} MB; ORT vs engine, shipped ${w0}, taught ${w1}`);
  // The engine keeps working with its backbone (the export only borrowed its weights).
  assert.deepEqual(page.features(fs.readFileSync(checkFiles[1]), false), before);
  page.delete();
});

test('petal onnx reports bad input in one line', () => {
  const cases = [
    [['onnx', path.join(tmp, 'nope.safetensors'), '-o', path.join(tmp, 'x.onnx')], /cannot open/],
    [['onnx', checkFiles[0], '-o', path.join(tmp, 'x.onnx')], /safetensors|bundle/i],
    [['onnx', backbonePath, '-o', path.join(tmp, 'no/such/dir/x.onnx')], /folder .* does not exist/],
    [['preprocess', path.join(dataDir, 'golden/index.json'), '-o', path.join(tmp, 'x.f32')], /index\.json.*image/i],
  ];
  for (const [args, re] of cases) {
    const r = spawnSync(cli, args, { encoding: 'utf8', env: { ...process.env, PETAL_BACKBONE: backbonePath } });
    assert.equal(r.status, 1, `${args.join(' ')} exits 1`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line: ${r.stderr}`);
    assert.match(lines[0], /^petal: error: /);
    assert.match(lines[0], re);
    assert.ok(!fs.existsSync(path.join(tmp, 'x.onnx')) && !fs.existsSync(path.join(tmp, 'x.f32')), 'nothing written');
  }
});
