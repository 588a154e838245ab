// The engine's home: a classic Web Worker that owns the WebAssembly engine (petal-mt with threads
// when the page is cross-origin isolated, petal-st otherwise), so the page never blocks.
//
// Protocol: the page posts {id, type, ...args}; the worker answers {id, ok: true, result} or
// {id, ok: false, error} in order, one request at a time. While working it may post events
// {event: 'download' | 'epoch' | 'log', ...} that carry no id.
'use strict';

importScripts('model-fetch.js');

const THUMB_SIDE = 224;          // longest side of card thumbnails, in pixels
const TOP_K = 3;                 // classes shown per photo
const MAX_IMAGE_BYTES = 64 << 20; // the engine's kMaxImageBytes

let M = null;          // the Emscripten module
let engine = null;     // M.Engine
let shippedHead = null; // head-only bundle of the model as shipped, for Reset
let bankNames = [];    // class names that the feature bank's labels index
let stopFlag = null;   // Int32Array over a SharedArrayBuffer: 1 = stop training (threads build only)

const post = (msg, transfer = []) => self.postMessage(msg, transfer);

function message(e) {
  if (e && typeof e.message === 'string' && e.message) return e.message;
  return String(e);
}

// ---- requests --------------------------------------------------------------------------

async function init({ build, threads, int8 = false, modelUrl, stopBuffer }) {
  const started = performance.now();
  try {
    importScripts(`engine/petal-${build}.js`);
  } catch (e) {
    throw new Error(`the engine (engine/petal-${build}.js) could not be loaded; is it built (tools/build.sh wasm)? (${message(e)})`);
  }
  const glueUrl = new URL(`engine/petal-${build}.js`, self.location.href).href;
  const modulePromise = self.createPetal({
    petalThreads: threads,
    locateFile: (p) => new URL(`engine/${p}`, self.location.href).href,
    mainScriptUrlOrBlob: glueUrl,
    print: (s) => post({ event: 'log', text: s }),
    printErr: (s) => post({ event: 'log', text: s }),
  });
  const modelPromise = self.loadModel(new URL(modelUrl, self.location.href).href,
    (p) => post({ event: 'download', ...p }));
  const since = (t) => Math.round(performance.now() - t);
  const timings = {};
  modulePromise.then(() => { timings.wasmMs = since(started); });
  modelPromise.then(() => { timings.modelMs = since(started); });
  const [mod, model] = await Promise.all([modulePromise, modelPromise]);
  M = mod;
  post({ event: 'download', phase: 'starting' });
  const t = performance.now();
  try {
    engine = new M.Engine(model.bytes, threads, !!int8);
  } catch (e) {
    throw new Error(`the model file could not be used: ${message(e)}`);
  }
  timings.engineMs = since(t);
  const cacheNote = await model.keep();
  model.bytes = null;
  if (!engine.hasHead()) throw new Error('the model has no classifier head; the page needs a trained Petal model (web/model/petal.safetensors)');
  shippedHead = engine.exportBundle(false, false);
  bankNames = engine.classNames();
  if (stopBuffer) stopFlag = new Int32Array(stopBuffer);
  return {
    build,
    threads: engine.threads(),
    int8: engine.int8(),
    threadsBuild: M.threadsBuild(),
    classNames: engine.classNames(),
    featureDim: engine.featureDim(),
    bankCount: engine.bankLabels().length,
    fromCache: model.fromCache,
    cacheNote,
    seconds: (performance.now() - started) / 1000,
    timings,
  };
}

async function makeThumbnail(u8) {
  // The browser's decoder is fast and honours EXIF orientation like the engine; the engine's
  // own decoder is the fallback for anything the browser will not draw.
  try {
    const bitmap = await createImageBitmap(new Blob([u8]), { imageOrientation: 'from-image' });
    const s = Math.min(1, THUMB_SIDE / Math.max(bitmap.width, bitmap.height));
    const w = Math.max(1, Math.round(bitmap.width * s)), h = Math.max(1, Math.round(bitmap.height * s));
    const canvas = new OffscreenCanvas(w, h);
    const ctx = canvas.getContext('2d');
    ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(bitmap, 0, 0, w, h);
    bitmap.close();
    return { blob: await canvas.convertToBlob({ type: 'image/jpeg', quality: 0.85 }), width: w, height: h };
  } catch {
    const t = M.thumbnailOf(u8, THUMB_SIDE);
    const canvas = new OffscreenCanvas(t.width, t.height);
    canvas.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(t.rgba.buffer), t.width, t.height), 0, 0);
    return { blob: await canvas.convertToBlob({ type: 'image/jpeg', quality: 0.85 }), width: t.width, height: t.height };
  }
}

// One photo: its features, top classes and a small thumbnail. A photo the engine cannot use
// answers {error} (a one-line reason) rather than failing the request.
async function analyze({ bytes }) {
  const u8 = new Uint8Array(bytes);
  if (u8.byteLength === 0) return { error: 'this file is empty' };
  if (u8.byteLength > MAX_IMAGE_BYTES) {
    return { error: `this file is too large (${(u8.byteLength / 1048576).toFixed(0)} MB); photos up to 64 MB are accepted` };
  }
  let info, r;
  try {
    info = M.probeImage(u8);
    r = engine.analyze(u8, TOP_K);
  } catch (e) {
    return { error: message(e) };
  }
  const thumb = await makeThumbnail(u8);
  return {
    result: { features: r.features, predictions: r.predictions, format: info.format, width: info.width, height: info.height, thumb },
    transfer: [r.features.buffer],
  };
}

// Top classes for many feature rows (n × dim, one Float32Array) with the current head.
function classify({ features, n }) {
  const dim = engine.featureDim();
  const out = [];
  for (let i = 0; i < n; i++) out.push(engine.classifyFeatures(features.subarray(i * dim, (i + 1) * dim), TOP_K));
  return { result: out };
}

// Train a new head on the user's examples plus the shipped feature bank. examples: Float32Array
// (n × dim); labels: class names, one per row. The class list keeps the bank's classes first, in
// their order, so the bank's labels keep their meaning, then the user's new classes.
function train({ examples, labels, options }) {
  const dim = engine.featureDim();
  const n = labels.length;
  const classNames = [...bankNames];
  for (const l of labels) if (!classNames.includes(l)) classNames.push(l);
  const bankF = engine.bankFeatures();
  const bankL = engine.bankLabels();
  const bankCount = new Map();
  for (const l of bankL) bankCount.set(l, (bankCount.get(l) || 0) + 1);
  const perClass = [...bankCount.values()].sort((a, b) => a - b);
  const typical = perClass.length ? perClass[perClass.length >> 1] : 0;

  // A few examples of a class would be drowned by the bank's many: repeat them (up to 4×) so each
  // of the user's classes weighs about as much as a bank class.
  const userCount = new Map();
  for (const l of labels) userCount.set(l, (userCount.get(l) || 0) + 1);
  const repeat = (l) => Math.max(1, Math.min(4, Math.ceil(typical / userCount.get(l))));
  let rows = bankL.length;
  for (const l of labels) rows += repeat(l);
  const F = new Float32Array(rows * dim);
  const Y = new Int32Array(rows);
  F.set(bankF);
  for (let i = 0; i < bankL.length; i++) Y[i] = classNames.indexOf(bankNames[bankL[i]]);
  let k = bankL.length;
  for (let i = 0; i < n; i++) {
    const y = classNames.indexOf(labels[i]);
    const row = examples.subarray(i * dim, (i + 1) * dim);
    for (let r = repeat(labels[i]); r > 0; r--, k++) {
      F.set(row, k * dim);
      Y[k] = y;
    }
  }
  const opts = { epochs: 20, batchSize: 32, learningRate: 1e-3, seed: 7, ...options };
  if (stopFlag) Atomics.store(stopFlag, 0, 0);
  const started = performance.now();
  const history = engine.trainHead(F, Y, classNames, opts, (s) => {
    post({ event: 'epoch', epoch: s.epoch, epochs: opts.epochs, loss: s.loss, accuracy: s.accuracy });
    return !(stopFlag && Atomics.load(stopFlag, 0) === 1);
  });
  return {
    result: {
      classNames: engine.classNames(),
      history: Array.from({ length: history.length }, (_, i) => ({ ...history[i] })),
      rows,
      stopped: history.length < opts.epochs,
      seconds: (performance.now() - started) / 1000,
    },
  };
}

function exportHead() {
  const bytes = engine.exportBundle(false, false);
  return { result: { bytes: bytes.buffer }, transfer: [bytes.buffer] };
}

// Load a head bundle (exported by this page or by `petal export`, or kept in IndexedDB).
function importHead({ bytes }) {
  const before = engine.bankLabels();
  const beforeDim = engine.bankFeatures().length;
  engine.importHead(new Uint8Array(bytes));
  const after = engine.bankLabels();
  // A bundle that brings its own bank labels it by its own class names.
  const sameBank = after.length === before.length && engine.bankFeatures().length === beforeDim && after.every((v, i) => v === before[i]);
  if (!sameBank) bankNames = engine.classNames();
  return { result: { classNames: engine.classNames() } };
}

function reset() {
  engine.importHead(shippedHead);
  bankNames = engine.classNames();
  return { result: { classNames: engine.classNames() } };
}

// Memory the engine holds (for benchmarks: it should stay flat while photos stream through).
function stats() {
  // (the threads build exports its memory; in the other, HEAPU8 is refreshed whenever memory grows)
  const memory = M.wasmMemory ? M.wasmMemory.buffer : M.HEAPU8.buffer;
  return { result: { wasmBytes: memory.byteLength } };
}

const handlers = { init, analyze, classify, train, exportHead, importHead, reset, stats };

// One request at a time, in order.
let queue = Promise.resolve();
self.onmessage = (ev) => {
  const { id, type, ...args } = ev.data;
  queue = queue.then(async () => {
    try {
      if (!handlers[type]) throw new Error(`unknown request ${type}`);
      if (type !== 'init' && !engine) throw new Error('the engine is not ready');
      const out = await handlers[type](args);
      if (type === 'init') post({ id, ok: true, result: out });
      else if (out.error) post({ id, ok: true, result: { error: out.error } });
      else post({ id, ok: true, result: out.result }, out.transfer || []);
    } catch (e) {
      post({ id, ok: false, error: message(e) });
    }
  });
};
