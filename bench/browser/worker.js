// One benchmark engine in a classic Web Worker: Petal (threads or single-thread build),
// onnxruntime-web (wasm backend) or TF.js (wasm backend). The page posts {id, cmd, ...}; the
// worker answers {id, ok, ...}. Times are taken here, around the engine call alone.
'use strict';

const params = new URL(self.location.href).searchParams;
const ENGINE = params.get('engine');       // petal-(mt|st)[-relaxed][-int8] | ort | tfjs
const THREADS = Number(params.get('threads') || 1);
const SIZE = 224, PER = SIZE * SIZE * 3;

// Every WebAssembly memory the engine creates or exports, to report its size (memories only
// grow, so the final size is the peak).
const memories = new Set();
{
  const Memory = WebAssembly.Memory;
  WebAssembly.Memory = function (desc) {
    const m = new Memory(desc);
    memories.add(m);
    return m;
  };
  WebAssembly.Memory.prototype = Memory.prototype;
  const note = (r) => {
    const inst = r && (r.instance || r);
    if (inst && inst.exports) for (const v of Object.values(inst.exports)) if (v instanceof Memory) memories.add(v);
    return r;
  };
  for (const name of ['instantiate', 'instantiateStreaming']) {
    const f = WebAssembly[name];
    WebAssembly[name] = (...a) => f.apply(WebAssembly, a).then(note);
  }
}
function wasmBytes() {
  const seen = new Set();
  let total = 0;
  for (const m of memories) {
    if (seen.has(m.buffer)) continue;
    seen.add(m.buffer);
    total += m.buffer.byteLength;
  }
  return total;
}

// Model files through Cache Storage, so a second visit reads them from disk like an installed
// app would; the same for every engine.
async function cachedFetch(url, init) {
  const cache = await caches.open('bench-models');
  const hit = await cache.match(url);
  if (hit) return hit;
  const r = await fetch(url, init);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  await cache.put(url, r.clone());
  return r;
}
async function bytesOf(url) {
  return new Uint8Array(await (await cachedFetch(url)).arrayBuffer());
}

let run = null;     // (Float32Array inputs, n) → Promise<Float32Array features>
let info = {};

async function init() {
  const t0 = performance.now();
  const marks = {};
  const since = () => Math.round(performance.now() - t0);
  if (/^petal-(mt|st)(-relaxed)?(-int8)?$/.test(ENGINE)) {
    // -relaxed: the relaxed-SIMD build (petal-mt-relaxed.js, ...), as the page picks it where
    // relaxed SIMD validates; without it, the SIMD128 build.
    const build = ENGINE.slice(6, 8) + (ENGINE.includes('-relaxed') ? '-relaxed' : '');
    // -int8: the same weights marked by `petal quantize` (int8 convolutions, quantised at load).
    const modelUrl = ENGINE.endsWith('-int8') ? '/models/petal-int8.safetensors' : '/models/petal.safetensors';
    importScripts(`/engine/petal-${build}.js`);
    const [mod, model] = await Promise.all([
      self.createPetal({
        petalThreads: THREADS,
        locateFile: (p) => `/engine/${p}`,
        mainScriptUrlOrBlob: `/engine/petal-${build}.js`,
      }).then((m) => ((marks.runtime = since()), m)),
      bytesOf(modelUrl).then((b) => ((marks.model = since()), b)),
    ]);
    const engine = new mod.Engine(model, THREADS);
    marks.engine = since();
    info.threads = engine.threads();
    info.build = `petal-${build}`;
    run = async (x, n) => engine.featuresOfInputs(x, n);
  } else if (ENGINE === 'ort') {
    importScripts('/ort/ort.wasm.min.js');
    ort.env.wasm.wasmPaths = '/ort/';
    ort.env.wasm.numThreads = THREADS;
    ort.env.wasm.simd = true;
    const model = await bytesOf('/models/resnet50.onnx');
    marks.model = since();
    const session = await ort.InferenceSession.create(model, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
    marks.engine = since();
    info.threads = ort.env.wasm.numThreads;
    info.version = ort.env.versions?.web;
    run = async (x, n) => {
      const r = await session.run({ input: new ort.Tensor('float32', x, [n, SIZE, SIZE, 3]) });
      return r.features.data;
    };
  } else if (ENGINE === 'tfjs') {
    // TF.js sizes its pthread pool from navigator.hardwareConcurrency (half of it); the page's
    // init script sets 4 there, which does not reach workers, so it is set here the same way.
    const hc = Number(params.get('hc') || 0);
    if (hc) Object.defineProperty(Object.getPrototypeOf(navigator), 'hardwareConcurrency', { get: () => hc, configurable: true });
    importScripts('/tfjs/tf.min.js', '/tfjs-wasm/tf-backend-wasm.min.js');
    tf.wasm.setWasmPaths('/tfjs-wasm/');
    tf.wasm.setThreadsCount(THREADS);
    await tf.setBackend('wasm');
    await tf.ready();
    marks.runtime = since();
    const model = await tf.loadLayersModel('/models/tfjs/model.json', { fetchFunc: cachedFetch });
    marks.model = since();
    const both = tf.model({ inputs: model.inputs, outputs: [model.getLayer('avg_pool').output, model.outputs[0]] });
    info.threads = tf.wasm.getThreadsCount();
    const pt = tf.backend().wasm && tf.backend().wasm.PThread;
    if (pt) info.pthreadWorkers = (pt.unusedWorkers?.length || 0) + (pt.runningWorkers?.length || 0);
    info.version = tf.version.tfjs;
    info.hardwareConcurrency = navigator.hardwareConcurrency;
    run = async (x, n) => {
      const [f, p] = tf.tidy(() => both.predict(tf.tensor(x, [n, SIZE, SIZE, 3])));
      const out = f.dataSync().slice();
      p.dataSync();
      f.dispose();
      p.dispose();
      return out;
    };
    // Weights are uploaded on first use; keep that out of "engine ready".
    marks.engine = since();
  } else {
    throw new Error(`unknown engine ${ENGINE}`);
  }
  info.engine = ENGINE;
  info.requestedThreads = THREADS;
  info.marks = marks;
  return info;
}

let inputs = null;
async function loadInputs(url) {
  inputs = new Float32Array(await (await fetch(url)).arrayBuffer());
  return inputs.length / PER;
}

self.onmessage = async (e) => {
  const { id, cmd } = e.data;
  try {
    let result;
    if (cmd === 'init') result = await init();
    else if (cmd === 'inputs') result = { images: await loadInputs(e.data.url) };
    else if (cmd === 'run') {
      const n = e.data.batch;
      const x = inputs.slice(0, n * PER);  // a fresh copy each time, as a caller would hand over
      const t = performance.now();
      const f = await run(x, n);
      const ms = performance.now() - t;
      result = { ms, features: e.data.want ? Float32Array.from(f) : null };
    } else if (cmd === 'memory') result = { wasmBytes: wasmBytes() };
    else throw new Error(`unknown command ${cmd}`);
    self.postMessage({ id, ok: true, ...result });
  } catch (err) {
    self.postMessage({ id, ok: false, error: String(err && err.stack || err) });
  }
};
