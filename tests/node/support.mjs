// Shared by the node tests: where the data, models and builds are, and how to load the wasm engine.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const dataDir = process.env.PETAL_DATA || path.resolve(repoRoot, '../shared/data');
export const cacheDir = process.env.PETAL_CACHE || '/var/cache/petal';
export const backbonePath = process.env.PETAL_BACKBONE || path.join(cacheDir, 'models/resnet50-imagenet.safetensors');
export const petalCli = path.join(repoRoot, 'build/native/tools/petal');

export function requireFile(p) {
  if (!fs.existsSync(p)) throw new Error(`missing ${p}: run tools/setup.sh first (or set PETAL_DATA/PETAL_BACKBONE)`);
  return p;
}

const require = createRequire(import.meta.url);

// Load a wasm build ('mt' = SIMD + threads, 'st' = SIMD single-thread).
export async function loadPetal(variant, threads = 2) {
  const dir = path.join(repoRoot, 'web/engine');
  const js = requireFile(path.join(dir, `petal-${variant}.js`));
  const createPetal = require(js);
  return createPetal({ petalThreads: threads, wasmBinary: fs.readFileSync(path.join(dir, `petal-${variant}.wasm`)) });
}

export function readF32(p) {
  const b = fs.readFileSync(p);
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
}

export function flowerFiles(cls, n) {
  const dir = path.join(dataDir, 'flower_photos', cls);
  return fs.readdirSync(requireFile(dir)).filter((f) => f.endsWith('.jpg')).sort().slice(0, n).map((f) => path.join(dir, f));
}

export function maxAbsDiff(a, b) {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export function maxAbs(a) {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}
