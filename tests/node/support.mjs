// Shared by the node tests: where the data, models and builds are, and how to load the wasm engine.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

import { dataDir, engineDir } from '../../tools/paths.mjs';

export { repoRoot, dataDir, cacheDir, backbonePath, petalCli } from '../../tools/paths.mjs';
export { readF32, maxAbsDiff, maxAbs } from '../../tools/tensors.mjs';

export function requireFile(p) {
  if (!fs.existsSync(p)) throw new Error(`missing ${p}: run tools/setup.sh first (or set PETAL_DATA/PETAL_BACKBONE)`);
  return p;
}

const require = createRequire(import.meta.url);

// Load a wasm build ('mt' = SIMD + threads, 'st' = SIMD single-thread).
export async function loadPetal(variant, threads = 2) {
  const dir = engineDir;
  const js = requireFile(path.join(dir, `petal-${variant}.js`));
  const createPetal = require(js);
  return createPetal({ petalThreads: threads, wasmBinary: fs.readFileSync(path.join(dir, `petal-${variant}.wasm`)) });
}

export function flowerFiles(cls, n) {
  const dir = path.join(dataDir, 'flower_photos', cls);
  return fs.readdirSync(requireFile(dir)).filter((f) => f.endsWith('.jpg')).sort().slice(0, n).map((f) => path.join(dir, f));
}
