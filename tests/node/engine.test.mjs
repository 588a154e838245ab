// The wasm engine (both builds) in node: golden reference, agreement with the native engine on
// real photos, ImageNet classes of real daisies, training the head, and clear errors.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { backbonePath, dataDir, flowerFiles, loadPetal, maxAbs, maxAbsDiff, petalCli, readF32, repoRoot, requireFile } from './support.mjs';

const bundle = fs.readFileSync(requireFile(backbonePath));
const golden = JSON.parse(fs.readFileSync(requireFile(path.join(dataDir, 'golden/index.json')), 'utf8'));
const inputs = readF32(path.join(dataDir, 'golden/inputs_224.f32'));
const refFeatures = readF32(path.join(dataDir, 'golden/features.f32'));
const PER = 224 * 224 * 3;

const mt = await loadPetal('mt', 2);
const st = await loadPetal('st', 1);
const engines = { mt: new mt.Engine(bundle, 2), st: new st.Engine(bundle, 1) };
after(() => setImmediate(() => process.exit(process.exitCode ?? 0)));

for (const [name, engine] of Object.entries(engines)) {
  test(`${name}: features from the golden input tensors match the reference`, () => {
    if (name === 'mt') assert.equal(engine.threads(), 2, 'the threads build runs on 2 threads');
    if (name === 'st') assert.equal(engine.threads(), 1);
    for (const batch of [1, 4]) {
      const f = engine.featuresOfInputs(inputs.subarray(0, batch * PER), batch);
      assert.equal(f.length, batch * 2048);
      for (let i = 0; i < batch; i++) {
        const ref = refFeatures.subarray(i * 2048, (i + 1) * 2048);
        const got = f.subarray(i * 2048, (i + 1) * 2048);
        assert.ok(maxAbsDiff(got, ref) <= 1e-3 * maxAbs(ref), `image ${i} batch ${batch}: max err ${maxAbsDiff(got, ref)}`);
      }
    }
  });
}

test('mt: ImageNet top-1 from the JPEG files equals the reference', () => {
  for (const im of golden.images) {
    const r = engines.mt.analyze(fs.readFileSync(path.join(dataDir, im.file)), 5, 0);
    assert.equal(r.imagenet[0].index, im.imagenet_top5[0][0], im.file);
  }
});

test('wasm features equal the native engine on the same photos', () => {
  const files = [...flowerFiles('roses', 2), ...flowerFiles('tulips', 2), ...flowerFiles('sunflowers', 1)];
  const out = JSON.parse(execFileSync(requireFile(petalCli), ['features', '--json', '--model', backbonePath, ...files], { maxBuffer: 1 << 28 }));
  assert.equal(out.images.length, files.length);
  for (const [i, file] of files.entries()) {
    const native = Float32Array.from(out.images[i].features);
    for (const engine of Object.values(engines)) {
      const wasm = engine.features(fs.readFileSync(file), false);
      assert.ok(maxAbsDiff(wasm, native) <= 1e-3 * maxAbs(native), `${file}: ${maxAbsDiff(wasm, native)}`);
    }
  }
});

test('daisies: "daisy" is in the ImageNet top-5 for at least 80% of the first 50', () => {
  let hits = 0;
  for (const file of flowerFiles('daisy', 50)) {
    const r = engines.mt.analyze(fs.readFileSync(file), 5, 0);
    if (r.imagenet.some((p) => p.label === 'daisy')) hits++;
  }
  assert.ok(hits >= 40, `${hits}/50`);
});

test('teach a model without a head in wasm on real features; export and import it back', () => {
  const classes = ['daisy', 'roses', 'sunflowers'];
  const feats = [];
  const labels = [];
  const held = [];
  classes.forEach((cls, c) => {
    const files = flowerFiles(cls, 12);
    files.forEach((file, k) => {
      const f = engines.mt.features(fs.readFileSync(file), false);
      if (k >= 10) held.push([c, f]);
      else { feats.push(...f); labels.push(c); }
    });
  });
  const epochs = [];
  const names = labels.map((c) => classes[c]);
  const opts = { epochs: 40, seed: 1, estimateFolds: 0 };
  const { history, estimates } = engines.mt.teach(Float32Array.from(feats), names, opts, (s) => { epochs.push(s.epoch); }, null);
  assert.deepEqual(epochs, Array.from({ length: 40 }, (_, i) => i + 1));
  assert.deepEqual(estimates, [], 'no estimate was asked for');
  assert.ok(history[39].loss < history[0].loss / 2, `loss ${history[0].loss} → ${history[39].loss}`);
  assert.deepEqual(engines.mt.classNames(), classes);
  const right = held.filter(([c, f]) => engines.mt.classifyFeatures(f, 1)[0].label === classes[c]).length;
  assert.ok(right >= 5, `${right} of ${held.length} held-aside photos classified right`);
  // same features, same seed → the single-thread build trains the same head (up to float rounding)
  engines.st.teach(Float32Array.from(feats), names, opts, null, null);
  for (const [, f] of held) {
    const a = engines.mt.classifyFeatures(f, 3), b = engines.st.classifyFeatures(f, 3);
    assert.equal(a[0].label, b[0].label);
    assert.ok(Math.abs(a[0].probability - b[0].probability) < 1e-3);
  }
  const exported = engines.mt.exportBundle(false, false);
  const fresh = new st.Engine(bundle, 1);
  assert.equal(fresh.hasHead(), false);
  fresh.importHead(exported);
  for (const [, f] of held) assert.deepEqual(fresh.classifyFeatures(f, 3), engines.mt.classifyFeatures(f, 3));
  fresh.delete();
});

// A safetensors file as {header (without __metadata__), metadata, data: Buffer of its tensors}, and back.
function parseBundle(bytes) {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(buf.readBigUInt64LE(0));
  const { __metadata__: metadata, ...header } = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const tensors = {};
  for (const [name, t] of Object.entries(header)) tensors[name] = { ...t, bytes: buf.subarray(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1]) };
  return { metadata, tensors };
}
function writeBundle({ metadata, tensors }) {
  const header = { __metadata__: metadata };
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.bytes.length] };
    offset += t.bytes.length;
  }
  let text = JSON.stringify(header);
  text += ' '.repeat((8 - ((8 + Buffer.byteLength(text)) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(text)));
  return Buffer.concat([len, Buffer.from(text), ...Object.values(tensors).map((t) => t.bytes)]);
}
// The float32 bits of an fp16 value, the textbook way.
function halfBits(h) {
  const sign = (h & 0x8000) << 16;
  let exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  if (exp === 0 && man === 0) return sign >>> 0;
  if (exp === 0) {
    exp = 127 - 15 + 1;
    while ((man & 0x400) === 0) { man <<= 1; exp--; }
    return (sign | (exp << 23) | ((man & 0x3ff) << 13)) >>> 0;
  }
  if (exp === 31) return (sign | 0x7f800000 | (man << 13)) >>> 0;
  return (sign | ((exp + 127 - 15) << 23) | (man << 13)) >>> 0;
}

test('every fp16 value is read exactly (the page model stores its weights as fp16), in both builds', () => {
  const pageModel = fs.readFileSync(requireFile(path.join(repoRoot, 'web/model/petal.safetensors')));
  for (const [mod, threads] of [[mt, 2], [st, 1]]) {
    const engine = new mod.Engine(pageModel, threads);
    // a feature bank that holds each of the 65536 fp16 bit patterns once
    const model = parseBundle(engine.exportBundle(false, false));
    const dim = engine.featureDim(), rows = 65536 / dim;
    const halves = Buffer.alloc(2 * 65536);
    for (let h = 0; h < 65536; h++) halves.writeUInt16LE(h, 2 * h);
    model.tensors['bank.features'] = { dtype: 'F16', shape: [rows, dim], bytes: halves };
    model.tensors['bank.labels'] = { dtype: 'I32', shape: [rows], bytes: Buffer.alloc(4 * rows) };
    engine.importHead(writeBundle(model));
    const got = new Uint32Array(engine.bankFeatures().buffer);
    assert.equal(got.length, 65536);
    for (let h = 0; h < 65536; h++) if (got[h] !== halfBits(h)) assert.fail(`fp16 0x${h.toString(16)} read as 0x${got[h].toString(16)}, not 0x${halfBits(h).toString(16)}`);
    engine.delete();
  }
});

test('bad input gives a JS exception with a one-line message, never a crash', () => {
  const jpeg = fs.readFileSync(flowerFiles('daisy', 1)[0]);
  const huge = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52,
    0, 0, 0x75, 0x30, 0, 0, 0x75, 0x30, 8, 2, 0, 0, 0, 0, 0, 0, 0]);
  const cases = [
    [new Uint8Array(0), /empty/],
    [Buffer.from('hello, not a photo\n'), /text file/],
    [jpeg.subarray(0, jpeg.length >> 1), /truncated/],
    [huge, /30000x30000/],
  ];
  for (const engine of Object.values(engines)) {
    for (const [bytes, re] of cases) {
      assert.throws(() => engine.analyze(bytes, 3, 224), (e) => e instanceof Error && re.test(e.message) && !e.message.includes('\n'));
    }
  }
  assert.throws(() => new mt.Engine(bundle.subarray(0, bundle.length >> 1), 1), /truncated/);
  assert.throws(() => new mt.Engine(Buffer.from('{"not": "a bundle"}'), 1), /not a model bundle/);
  assert.throws(() => mt.probeImage(huge), /megapixels/);
  // the size rule the page asks before reading a photo: the engine's words (image_bytes_problem)
  const max = mt.limits().maxImageBytes;
  assert.equal(mt.imageBytesProblem(max), '');
  assert.equal(mt.imageBytesProblem(0), 'the file is empty (0 bytes)');
  assert.equal(mt.imageBytesProblem(70e6), `the file is too large (70.0 MB); photos up to ${(max / 1e6).toFixed(1)} MB are accepted`);
  assert.throws(() => mt.probeImage(new Uint8Array(0)), /the file is empty \(0 bytes\)/);
  // the engine still works after errors, and draws the card's thumbnail from the same decode
  const r = engines.mt.analyze(jpeg, 1, 224);
  assert.equal(r.imagenet[0].label, 'daisy');
  const { width, height } = mt.probeImage(jpeg);
  assert.equal(Math.max(r.thumb.width, r.thumb.height), 224);
  assert.ok(Math.abs(r.thumb.width / r.thumb.height - width / height) < 0.01, `${r.thumb.width}×${r.thumb.height} keeps ${width}×${height}`);
  assert.equal(r.thumb.rgba.length, r.thumb.width * r.thumb.height * 4);
  assert.ok(r.thumb.rgba.every((v, i) => i % 4 !== 3 || v === 255), 'opaque');
  assert.ok(r.ms.decode > 0 && r.ms.backbone > 0, 'the profile of a drop: decode and backbone times');
});
