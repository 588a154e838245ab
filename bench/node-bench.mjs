// Petal's wasm engine in node next to onnxruntime-node, on the same ResNet-50 (Petal's bundle and
// its `petal onnx` export) and the same inputs. Prints one JSON line per measurement, then a table.
//
//   node bench/node-bench.mjs [--runs 10] [--warmup 2] [--batches 1,8] [--photos 40] [--no-photos]
//                             [--no-int8] [--no-native] [--no-relaxed]
// --no-relaxed leaves out the relaxed-SIMD builds (petal-wasm-mt-relaxed, fp32 and int8), which
// node 20 runs only behind --experimental-wasm-relaxed-simd (set below, before any wasm compiles).
// Also the native `petal bench` (fp32 and int8), one process per round, next to onnxruntime-node.
//
// Latency: the golden input tensors (real flower photos, preprocessed), batch 1 and 8, every engine
// configuration run once per round, rounds repeated --runs times after --warmup rounds, so that
// load from other processes falls on all of them alike; median and quartiles of ms per image.
// Agreement: each engine's features for the batch against onnxruntime-node's.
// Photos: feature extraction over --photos real photos, one at a time: Petal from the JPEG bytes
// (decode + resize + backbone, in wasm), onnxruntime-node from tensors Petal preprocessed beforehand
// (so its number leaves out decoding, which flatters it).
import fs from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
import * as ort from 'onnxruntime-node';
import { backbonePath, benchDir, dataDir, engineDir, flowerSample, machine, maxAbs, maxAbsDiff, need, parseArgs, petalCli, readF32, repoRoot, stats, table } from './lib.mjs';

const args = parseArgs({ runs: 10, warmup: 2, batches: '1,8', photos: 40, 'no-photos': false, onnx: '', 'no-int8': false, 'no-native': false, 'no-relaxed': false, gap: 30 });
if (!args['no-relaxed']) v8.setFlagsFromString('--experimental-wasm-relaxed-simd');  // before any module compiles
const batches = args.batches.split(',').map(Number);
const maxBatch = Math.max(...batches);
const SIZE = 224, PER = SIZE * SIZE * 3, DIM = 2048;
const out = (o) => console.log(JSON.stringify(o));
const now = () => performance.now();

// The network: Petal's bundle, and the same weights exported to ONNX (rebuilt when older).
need(backbonePath, 'run tools/setup.sh or petal import');
fs.mkdirSync(benchDir, { recursive: true });
const onnxPath = args.onnx || path.join(benchDir, 'resnet50.onnx');
if (!args.onnx && (!fs.existsSync(onnxPath) || fs.statSync(onnxPath).mtimeMs < fs.statSync(backbonePath).mtimeMs))
  execFileSync(need(petalCli, 'build it: tools/build.sh native'), ['onnx', backbonePath, '-o', onnxPath], { stdio: 'inherit' });

const golden = readF32(need(path.join(dataDir, 'golden/inputs_224.f32')));
if (golden.length < maxBatch * PER) throw new Error(`the golden inputs hold ${golden.length / PER} images; --batches asks for ${maxBatch}`);
const inputs = golden.subarray(0, maxBatch * PER);

// Engines.
const require = createRequire(import.meta.url);
async function loadPetal(variant, threads) {
  const dir = engineDir;
  const createPetal = require(need(path.join(dir, `petal-${variant}.js`), 'build it: tools/build.sh wasm'));
  return createPetal({ petalThreads: threads, wasmBinary: fs.readFileSync(path.join(dir, `petal-${variant}.wasm`)) });
}
const bundle = fs.readFileSync(backbonePath);
// The int8 variant: the same bundle marked by `petal quantize` (the engine quantises at load).
const int8Path = path.join(benchDir, 'resnet50-int8.safetensors');
if (!args['no-int8'] && (!fs.existsSync(int8Path) || fs.statSync(int8Path).mtimeMs < fs.statSync(backbonePath).mtimeMs))
  execFileSync(need(petalCli), ['quantize', backbonePath, '-o', int8Path], { stdio: 'inherit' });
const mt = await loadPetal('mt', 2);
const st = await loadPetal('st', 1);
const engines = [];
const relaxed = args['no-relaxed'] ? null : await loadPetal('mt-relaxed', 2);
const petalConfigs = [['petal-wasm-mt', mt, 2, bundle], ['petal-wasm-mt', mt, 1, bundle], ['petal-wasm-st', st, 1, bundle]];
if (relaxed) petalConfigs.push(['petal-wasm-mt-relaxed', relaxed, 2, bundle]);
if (!args['no-int8']) {
  const int8 = fs.readFileSync(int8Path);
  petalConfigs.push(['petal-wasm-mt-int8', mt, 2, int8], ['petal-wasm-mt-int8', mt, 1, int8]);
  if (relaxed) petalConfigs.push(['petal-wasm-mt-relaxed-int8', relaxed, 2, int8]);
}
for (const [name, mod, threads, bytes] of petalConfigs) {
  const e = new mod.Engine(bytes, threads);
  if (e.threads() !== threads) throw new Error(`${name} runs on ${e.threads()} threads, asked for ${threads}`);
  engines.push({ name, threads, petal: true, run: async (x, n) => e.featuresOfInputs(x, n), engine: e });
}
for (const threads of [2, 1]) {
  const s = await ort.InferenceSession.create(onnxPath, { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' });
  engines.push({ name: 'onnxruntime-node', threads, petal: false, run: async (x, n) => (await s.run({ input: new ort.Tensor('float32', x, [n, SIZE, SIZE, 3]) })).features.data, session: s });
}

const info = machine();
const times = new Map();
const key = (e, b) => `${e.name}/${e.threads}/${b}`;
const outputs = new Map();
for (let round = -args.warmup; round < args.runs; round++) {
  for (const e of engines) {
    for (const b of batches) {
      const x = inputs.subarray(0, b * PER);
      await new Promise((r) => setTimeout(r, args.gap));  // let the previous engine's threads settle
      const t0 = now();
      const f = await e.run(x, b);
      const ms = (now() - t0) / b;
      if (round < 0) {
        if (b === maxBatch) outputs.set(`${e.name}/${e.threads}`, Float32Array.from(f));
        continue;
      }
      if (!times.has(key(e, b))) times.set(key(e, b), []);
      times.get(key(e, b)).push(ms);
    }
  }
  // The native CLI, in the same rounds: one `petal bench` process per round (3 timed runs of each
  // configuration after 1 warm-up; its median joins the round's numbers).
  if (!args['no-native'] && round >= 0) {
    const variants = args['no-int8'] ? ['fp32'] : ['fp32', 'int8'];
    const lines = execFileSync(need(petalCli), ['bench', '--threads', '1,2', '--batch', batches.join(','), '--runs', '3', '--warmup', '1', '--no-photos', '--json', ...variants.flatMap((v) => ['--variant', v])], { maxBuffer: 1 << 24 }).toString().trim().split('\n');
    for (const l of lines) {
      const r = JSON.parse(l);
      if (r.bench !== 'native-backbone') continue;
      const k = `petal-native${r.variant === 'fp32' ? '' : '-' + r.variant}/${r.threads}/${r.batch}`;
      if (!times.has(k)) times.set(k, []);
      times.get(k).push(r.ms_per_image.median);
    }
  }
}

// Agreement with onnxruntime-node (2 threads) on the largest batch.
const ref = outputs.get('onnxruntime-node/2');
const agreement = {};
for (const [k, f] of outputs) agreement[k] = maxAbsDiff(f, ref) / maxAbs(ref);

const rows = [];
const petalMedian = (threads, b) => stats(times.get(`petal-wasm-mt/${threads}/${b}`)).median;
for (const e of engines) {
  for (const b of batches) {
    const s = stats(times.get(key(e, b)));
    // Peers are compared with Petal's threads build on as many threads.
    const vsPetal = Math.round((s.median / petalMedian(e.threads, b)) * 100) / 100;
    const rec = { bench: 'node-latency', engine: e.name, threads: e.threads, batch: b, size: SIZE, runs: args.runs, warmup: args.warmup, ms_per_image: s, images_per_s: Math.round((1000 / s.median) * 100) / 100, vs_petal_mt_same_threads: vsPetal, max_rel_diff_vs_ort: agreement[`${e.name}/${e.threads}`], machine: info };
    out(rec);
    rows.push({ engine: e.name, threads: e.threads, batch: b, 'median ms/img': s.median.toFixed(1), q1: s.q1.toFixed(1), q3: s.q3.toFixed(1), min: s.min.toFixed(1), max: s.max.toFixed(1), 'x Petal mt': vsPetal.toFixed(2), 'max diff vs ORT': agreement[`${e.name}/${e.threads}`].toExponential(1) });
  }
}

// Native Petal next to onnxruntime-node (both native code, same threads).
const nativeRows = [];
for (const v of ['', '-int8']) {
  for (const threads of [1, 2]) {
    for (const b of batches) {
      const k = `petal-native${v}/${threads}/${b}`;
      if (!times.has(k)) continue;
      const s = stats(times.get(k));
      const ortMs = stats(times.get(`onnxruntime-node/${threads}/${b}`)).median;
      const ratio = Math.round((s.median / ortMs) * 100) / 100;
      out({ bench: 'node-native', engine: `petal-native${v}`, threads, batch: b, size: SIZE, runs: args.runs, ms_per_image: s, onnxruntime_node_ms: ortMs, petal_over_onnxruntime: ratio, note: 'median of per-round medians of 3 runs', machine: info });
      nativeRows.push({ engine: `petal-native${v}`, threads, batch: b, 'median ms/img': s.median.toFixed(1), q1: s.q1.toFixed(1), q3: s.q3.toFixed(1), 'onnxruntime-node': ortMs.toFixed(1), 'Petal / ORT': ratio.toFixed(2) });
    }
  }
}

// Feature extraction on real photos.
const photoRows = [];
if (!args['no-photos']) {
  const files = flowerSample(args.photos);
  const preTensor = path.join(benchDir, `photos-${files.length}.f32`);
  execFileSync(need(petalCli), ['preprocess', ...files, '-o', preTensor], { stdio: ['ignore', 'ignore', 'inherit'] });
  const pre = readF32(preTensor);
  const bytes = files.map((f) => fs.readFileSync(f));
  const petal2 = engines.find((e) => e.name === 'petal-wasm-mt' && e.threads === 2).engine;
  const ort2 = engines.find((e) => e.name === 'onnxruntime-node' && e.threads === 2).session;
  const petal2int8 = engines.find((e) => e.name === 'petal-wasm-mt-int8' && e.threads === 2)?.engine;
  const cands = [
    ['petal-wasm-mt', 'decode+resize+backbone from JPEG bytes', async (i) => petal2.features(bytes[i], false)],
    ...(petal2int8 ? [['petal-wasm-mt-int8', 'decode+resize+backbone from JPEG bytes', async (i) => petal2int8.features(bytes[i], false)]] : []),
    ['onnxruntime-node', 'backbone on tensors preprocessed by petal beforehand', async (i) => (await ort2.run({ input: new ort.Tensor('float32', pre.subarray(i * PER, (i + 1) * PER), [1, SIZE, SIZE, 3]) })).features.data],
  ];
  const total = new Map(cands.map((c) => [c[0], 0]));
  let agree = 0;
  // Interleaved photo by photo.
  for (let i = 0; i < files.length; i++) {
    const got = [];
    for (const [name, , fn] of cands) {
      const t0 = now();
      got.push(await fn(i));
      total.set(name, total.get(name) + (now() - t0));
    }
    agree = Math.max(agree, maxAbsDiff(got[0], got[got.length - 1]) / maxAbs(got[got.length - 1]));  // fp32 Petal vs ORT
  }
  for (const [name, what] of cands) {
    const ips = Math.round((files.length / (total.get(name) / 1000)) * 100) / 100;
    out({ bench: 'node-photos', engine: name, threads: 2, photos: files.length, what, images_per_s: ips, max_rel_diff: agree, machine: info });
    photoRows.push({ engine: name, threads: 2, photos: files.length, 'images/s': ips.toFixed(2), what });
  }
}

console.log(`\nnode ${info.node}, ${info.cpu}, ${info.cores} cores, load ${info.loadavg.join(' ')} at the end; ${args.runs} rounds after ${args.warmup} warm-up, engines interleaved; ms per image at ${SIZE}x${SIZE}`);
console.log(table(rows, Object.keys(rows[0])));
if (nativeRows.length) console.log('\nnative petal (petal bench, one process per round) vs onnxruntime-node in the same rounds:\n' + table(nativeRows));
if (photoRows.length) console.log('\n' + table(photoRows, Object.keys(photoRows[0])));
process.exit(0);  // pthread workers keep node alive
