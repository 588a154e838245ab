// Feature extraction over a photo folder (all 2,932 flower photos by default), natively: the
// `petal extract` command next to onnxruntime-node on the same network (Petal's backbone exported
// by `petal onnx`) and the same photos, both on --threads threads in batches of --batch.
//
//   node bench/extract-bench.mjs [--photos N] [--threads 2] [--batch 8] [--rounds 1]
//
// Petal: `petal extract DATA --no-augment --image-size 224` into an empty feature cache, timed by
// the command itself: read + SHA-256 + decode + resize + backbone + cache write, photos decoded on a
// producer thread while the backbone runs. onnxruntime-node: session.run on tensors that
// `petal preprocess` made beforehand, 256 photos at a time: reported without the decoding (which
// flatters it) and with it (read + decode + resize + writing the tensor file, in one process
// before the runs). Rounds alternate Petal and onnxruntime. Prints JSON lines, then a table.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
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

async function ortRound() {
  let seconds = 0, images = 0, decoding = 0;
  const tensor = path.join(work, 'chunk.f32');
  for (let c = 0; c < files.length; c += args.chunk) {
    const chunk = files.slice(c, c + args.chunk);
    const p0 = performance.now();
    execFileSync(petalCli, ['preprocess', ...chunk, '-o', tensor, '--size', String(SIZE)], { stdio: ['ignore', 'ignore', 'pipe'] });
    const x = readF32(tensor);
    decoding += (performance.now() - p0) / 1000;
    for (let b = 0; b < chunk.length; b += args.batch) {
      const n = Math.min(args.batch, chunk.length - b);
      const t0 = performance.now();
      await session.run({ input: new ort.Tensor('float32', x.subarray(b * PER, (b + n) * PER), [n, SIZE, SIZE, 3]) });
      seconds += (performance.now() - t0) / 1000;
      images += n;
    }
  }
  return { images, seconds, decoding };
}

const info = machine();
const rows = [];
for (let r = 0; r < args.rounds; r++) {
  for (const [engine, what, run] of [
    ['petal extract', 'read + hash + decode + resize + backbone + cache write', petalRound],
    ['onnxruntime-node', 'backbone only, on tensors preprocessed beforehand', ortRound],
  ]) {
    const { images, seconds, decoding } = await run();
    const report = (name, s, desc) => {
      const ips = images / s;
      out({ bench: 'native-extract', engine: name, round: r, threads: args.threads, batch: args.batch, images, seconds: s, images_per_s: ips, what: desc, machine: info });
      rows.push({ engine: name, round: r, threads: args.threads, batch: args.batch, images, seconds: s.toFixed(1), 'images/s': ips.toFixed(2), what: desc });
    };
    report(engine, seconds, what);
    if (decoding !== undefined) report(engine + ' + decoding', seconds + decoding, 'the same, plus petal preprocess of the photos (read + decode + resize + tensor file)');
  }
}
fs.rmSync(work, { recursive: true, force: true });
console.log(`\n${info.cpu}, ${info.cores} cores, load ${info.loadavg.join(' ')} at the end; ${files.length} photos at ${SIZE}x${SIZE}`);
console.log(table(rows, Object.keys(rows[0])));
