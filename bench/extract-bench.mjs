// Feature extraction over a photo folder (all 2,932 flower photos by default), natively: the
// `petal extract` command next to onnxruntime-node on the same network (Petal's backbone exported
// by `petal onnx`) and the same photos, both on --threads threads in batches of --batch.
//
//   node bench/extract-bench.mjs [--photos N] [--threads 2] [--batch 8] [--rounds 1]
//
// Petal: `petal extract DATA --no-augment --image-size 224` into an empty feature cache, timed by
// the command itself: read + SHA-256 + decode + resize + backbone + cache write, photos decoded on a
// producer thread while the backbone runs. Then both backbones alone, timed on the tensors that
// `petal preprocess` made of the same photos, 256 at a time (Petal: `petal bench --inputs`, one
// process per chunk after an untimed batch; onnxruntime-node: session.run). Leaving out reading
// and decoding flatters both. Last, onnxruntime-node as a whole extraction: the wall-clock time of
// a pipeline that decodes the next 256 photos (`petal preprocess`, a process of its own) while
// onnxruntime runs the current ones, as petal extract overlaps them. Prints JSON lines, then a
// table.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import * as ort from 'onnxruntime-node';
import { backbonePath, benchDir, flowerSample, machine, need, parseArgs, petalCli, readF32, table } from './lib.mjs';

const args = parseArgs({ photos: 0, threads: 2, batch: 8, rounds: 1, chunk: 256 });
const SIZE = 224, PER = SIZE * SIZE * 3;
const out = (o) => console.log(JSON.stringify(o));
need(petalCli, 'build it: tools/build.sh native');
need(backbonePath, 'run tools/setup.sh or petal import');

// The photos, as a class-folder tree of links (so that `petal extract` sees exactly these).
const files = flowerSample(args.photos > 0 ? args.photos : Infinity);
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'petal-extract-bench-'));
const data = path.join(work, 'photos');
for (const f of files) {
  const dir = path.join(data, path.basename(path.dirname(f)));
  fs.mkdirSync(dir, { recursive: true });
  fs.symlinkSync(f, path.join(dir, path.basename(f)));
}

// The same network for onnxruntime (rebuilt when older than the backbone).
fs.mkdirSync(benchDir, { recursive: true });
const onnxPath = path.join(benchDir, 'resnet50.onnx');
if (!fs.existsSync(onnxPath) || fs.statSync(onnxPath).mtimeMs < fs.statSync(backbonePath).mtimeMs)
  execFileSync(petalCli, ['onnx', backbonePath, '-o', onnxPath], { stdio: 'inherit' });
const session = await ort.InferenceSession.create(onnxPath, {
  intraOpNumThreads: args.threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
});

function petalRound() {
  const cache = fs.mkdtempSync(path.join(work, 'cache-'));  // empty: every photo is computed
  const env = { ...process.env, PETAL_CACHE: cache, PETAL_BACKBONE: backbonePath };
  const res = JSON.parse(execFileSync(petalCli, ['extract', data, '--no-augment', '--image-size', String(SIZE),
    '--threads', String(args.threads), '--json'], { env, stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 1 << 26 }).toString());
  fs.rmSync(cache, { recursive: true, force: true });
  if (res.computed !== files.length) throw new Error(`petal extract computed ${res.computed} of ${files.length} photos`);
  return { images: res.computed, seconds: res.seconds };
}

const chunks = [];
for (let c = 0; c < files.length; c += args.chunk) chunks.push(files.slice(c, c + args.chunk));
const tensorFile = (k) => path.join(work, `chunk-${k % 2}.f32`);
const preprocess = (k) => promisify(execFile)(petalCli, ['preprocess', ...chunks[k], '-o', tensorFile(k), '--size', String(SIZE)]);
// Runs the chunk's photos in batches; returns the seconds spent in session.run.
async function runChunk(x, count) {
  let seconds = 0;
  for (let b = 0; b < count; b += args.batch) {
    const n = Math.min(args.batch, count - b);
    const t0 = performance.now();
    await session.run({ input: new ort.Tensor('float32', x.subarray(b * PER, (b + n) * PER), [n, SIZE, SIZE, 3]) });
    seconds += (performance.now() - t0) / 1000;
  }
  return seconds;
}

// Both backbones on the same tensors, chunk by chunk; returns seconds per engine.
async function backbonesRound() {
  let ortSeconds = 0, petalSeconds = 0;
  for (let k = 0; k < chunks.length; k++) {
    await preprocess(k);
    ortSeconds += await runChunk(readF32(tensorFile(k)), chunks[k].length);
    const res = JSON.parse(execFileSync(petalCli, ['bench', '--inputs', tensorFile(k), '--threads', String(args.threads),
      '--batch', String(args.batch), '--json'], { stdio: ['ignore', 'pipe', 'pipe'] }).toString());
    if (res.images !== chunks[k].length) throw new Error(`petal bench --inputs ran ${res.images} of ${chunks[k].length} images`);
    petalSeconds += res.seconds;
  }
  return { ortSeconds, petalSeconds };
}
let backbones = null;
const ortBackboneRound = async () => ({ images: files.length, seconds: (backbones = await backbonesRound()).ortSeconds });
const petalBackboneRound = async () => ({ images: files.length, seconds: backbones.petalSeconds });

async function ortPipelineRound() {
  const t0 = performance.now();
  let next = preprocess(0);
  for (let k = 0; k < chunks.length; k++) {
    await next;
    const x = readF32(tensorFile(k));
    if (k + 1 < chunks.length) next = preprocess(k + 1);
    await runChunk(x, chunks[k].length);
  }
  return { images: files.length, seconds: (performance.now() - t0) / 1000 };
}

const info = machine();
const rows = [];
for (let r = 0; r < args.rounds; r++) {
  for (const [engine, what, run] of [
    ['petal extract', 'read + hash + decode + resize + backbone + cache write', petalRound],
    ['onnxruntime-node', 'session.run only, on tensors preprocessed beforehand', ortBackboneRound],
    ['petal backbone', 'Backbone::run only, on the same tensors (petal bench --inputs)', petalBackboneRound],
    ['onnxruntime-node pipeline', `wall clock: petal preprocess of the next ${args.chunk} photos alongside session.run`, ortPipelineRound],
  ]) {
    const { images, seconds } = await run();
    const ips = images / seconds;
    out({ bench: 'native-extract', engine, round: r, threads: args.threads, batch: args.batch, images, seconds, images_per_s: ips, what, machine: info });
    rows.push({ engine, round: r, threads: args.threads, batch: args.batch, images, seconds: seconds.toFixed(1), 'images/s': ips.toFixed(2), what });
  }
}
fs.rmSync(work, { recursive: true, force: true });
console.log(`\n${info.cpu}, ${info.cores} cores, load ${info.loadavg.join(' ')} at the end; ${files.length} photos at ${SIZE}x${SIZE}`);
console.log(table(rows, Object.keys(rows[0])));
