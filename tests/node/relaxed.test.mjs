// The relaxed-SIMD builds (petal-mt-relaxed, petal-st-relaxed) in node. Relaxed fused multiply-adds
// may round differently from a multiply then an add, and differently on different CPUs, so they are
// held to the golden reference within its tolerance (1e-3 of the largest feature) and to the
// SIMD128 builds within 1e-5 relative, not bit for bit. Node 20 keeps relaxed SIMD behind a flag.
import v8 from 'node:v8';
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { backbonePath, dataDir, flowerFiles, loadPetal, maxAbs, maxAbsDiff, readF32, requireFile } from './support.mjs';

v8.setFlagsFromString('--experimental-wasm-relaxed-simd');  // before any module is compiled

const bundle = fs.readFileSync(requireFile(backbonePath));
const inputs = readF32(requireFile(path.join(dataDir, 'golden/inputs_224.f32')));
const refFeatures = readF32(path.join(dataDir, 'golden/features.f32'));
const PER = 224 * 224 * 3;
after(() => setImmediate(() => process.exit(process.exitCode ?? 0)));

const simd = await loadPetal('mt', 2);
const simdEngine = new simd.Engine(bundle, 2);

const relaxed = [];
for (const [variant, threads] of [['mt-relaxed', 2], ['st-relaxed', 1]]) {
  const M = await loadPetal(variant, threads);
  relaxed.push([variant, threads, new M.Engine(bundle, threads)]);
}

for (const [variant, threads, engine] of relaxed) {
  test(`${variant}: features from the golden input tensors within the reference's tolerance`, () => {
    assert.equal(engine.threads(), threads);
    const f = engine.featuresOfInputs(inputs.subarray(0, 4 * PER), 4);
    for (let i = 0; i < 4; i++) {
      const ref = refFeatures.subarray(i * 2048, (i + 1) * 2048);
      const err = maxAbsDiff(f.subarray(i * 2048, (i + 1) * 2048), ref);
      assert.ok(err <= 1e-3 * maxAbs(ref), `image ${i}: max err ${err}`);
    }
  });
  test(`${variant}: real photos' features within 1e-5 (relative) of the SIMD128 build's`, () => {
    for (const file of [...flowerFiles('daisy', 2), ...flowerFiles('roses', 2)]) {
      const bytes = fs.readFileSync(file);
      const a = engine.features(bytes, false), b = simdEngine.features(bytes, false);
      assert.ok(maxAbsDiff(a, b) <= 1e-5 * maxAbs(b), `${path.basename(file)}: max diff ${maxAbsDiff(a, b)} of ${maxAbs(b)}`);
    }
  });
}
