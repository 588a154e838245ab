// Where things are, for every node script (tests, benchmarks): the checkout, the photos, the cache
// of slow builds and converted weights, the native CLI and the wasm engines. Each can be moved with
// its environment variable (tools/test.sh and tools/setup.sh use the same names and defaults).
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const dataDir = process.env.PETAL_DATA || path.resolve(repoRoot, '../shared/data');
export const cacheDir = process.env.PETAL_CACHE || '/var/cache/petal';
export const backbonePath = process.env.PETAL_BACKBONE || path.join(cacheDir, 'models/resnet50-imagenet.safetensors');
export const petalCli = process.env.PETAL_CLI || path.join(repoRoot, 'build/native/tools/petal');
export const engineDir = process.env.PETAL_ENGINE_DIR || path.join(repoRoot, 'web/engine');  // the wasm builds
