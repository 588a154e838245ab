// The engine's home: a classic Web Worker that owns the WebAssembly engine (petal-mt with threads
// when the page is cross-origin isolated, petal-st otherwise), so the page never blocks.
//
// Protocol: the page posts {id, type, ...args}; the worker answers {id, ok: true, result} or
// {id, ok: false, error} in order, one request at a time. While working it may post events
// {event: 'download' | 'epoch' | 'teach-progress' | 'log', ...} that carry no id.
'use strict';

importScripts('model-fetch.js', 'units.js');

const THUMB_SIDE = 224;          // longest side of card thumbnails, in pixels
const TOP_K = 3;                 // classes shown per photo

let M = null;          // the Emscripten module
let engine = null;     // M.Engine
let shippedHead = null; // head-only bundle of the model as shipped, for Reset
let stopFlag = null;   // Int32Array over a SharedArrayBuffer: 1 = stop training (threads build only)

const post = (msg, transfer = []) => self.postMessage(msg, transfer);

function message(e) {
  if (e && typeof e.message === 'string' && e.message) return e.message;
  return String(e);
}

// ---- requests --------------------------------------------------------------------------

async function init({ build, threads, int8 = false, modelUrl, stopBuffer }) {
  const started = performance.now();  // (this worker's clock starts when the page makes it)
  try {
    importScripts(`engine/petal-${build}.js`);
  } catch (e) {
    throw new Error(`the engine (engine/petal-${build}.js) could not be loaded; is it built (tools/build.sh wasm)? (${message(e)})`);
  }
  const glueUrl = new URL(`engine/petal-${build}.js`, self.location.href).href;
  const engineFiles = new Set([glueUrl]);  // every file of the engine build, for offline use (offline.js)
  const modulePromise = self.createPetal({
    petalThreads: threads,
    locateFile: (p) => {
      const url = new URL(`engine/${p}`, self.location.href).href;
      engineFiles.add(url);
      return url;
    },
    mainScriptUrlOrBlob: glueUrl,
    print: (s) => post({ event: 'log', text: s }),
    printErr: (s) => post({ event: 'log', text: s }),
  });
  const modelPromise = self.loadModel(new URL(modelUrl, self.location.href).href,
    (p) => post({ event: 'download', ...p }));
  const since = (t) => Math.round(performance.now() - t);
  // Where a start's time goes (ms): this worker's scripts until init, then from init the engine
  // module (fetch, compile, instantiate, its threads) and, alongside, the model (read or
  // downloaded); then the engine built from the model (copyMs + parseMs: the file into the
  // engine's memory and its fp16 weights to fp32; buildMs: XNNPACK packing them).
  const timings = { scriptsMs: Math.round(started) };
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
  Object.assign(timings, engine.loadTimings());
  const cacheNote = await model.keep();
  model.bytes = null;
  if (!engine.hasHead()) throw new Error('the model has no classifier head; the page needs a trained Petal model (web/model/petal.safetensors)');
  if (stopBuffer) stopFlag = new Int32Array(stopBuffer);
  return {
    build,
    threads: engine.threads(),
    int8: engine.int8(),
    threadsBuild: M.threadsBuild(),
    classNames: engine.classNames(),
    featureDim: engine.featureDim(),
    bankCount: engine.bankRows(),
    limits: M.limits(),  // wasm/petal_limits.h: the page states and checks these, never its own copies
    fromCache: model.fromCache,
    offline: !!model.offline,
    cacheNote,
    // this worker's own files and the engine's, for offline use (offline.js)
    files: [self.location.href, ...performance.getEntriesByType('resource').map((e) => e.name), ...engineFiles],
    seconds: (performance.now() - started) / 1000,
    timings,
  };
}

// A card's thumbnail: the engine's own decode of the photo (EXIF orientation applied), shrunk by
// analyze to THUMB_SIDE, as a small JPEG for the card and for storage.
async function thumbnailBlob(t) {
  const canvas = new OffscreenCanvas(t.width, t.height);
  canvas.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(t.rgba.buffer), t.width, t.height), 0, 0);
  return { blob: await canvas.convertToBlob({ type: 'image/jpeg', quality: 0.85 }), width: t.width, height: t.height };
}

// One photo: its features, top classes and a small thumbnail. A photo the engine cannot use
// answers {error} (a one-line reason) rather than failing the request.
function bytesError(u8) {
  return M.imageBytesProblem(u8.byteLength) || null;  // before the bytes are copied into the engine
}

async function analyze({ bytes }) {
  const u8 = new Uint8Array(bytes);
  const bad = bytesError(u8);
  if (bad) return { error: bad };
  let info, r;
  const t0 = performance.now();
  try {
    info = M.probeImage(u8);
    r = engine.analyze(u8, TOP_K, THUMB_SIDE);
  } catch (e) {
    return { error: message(e) };
  }
  const t1 = performance.now();
  const thumb = await thumbnailBlob(r.thumb);
  // where this photo's time went in the worker (ms), for the page's profile of a drop
  const ms = { decode: r.ms.decode, backbone: r.ms.backbone, engineOther: t1 - t0 - r.ms.decode - r.ms.backbone, thumbnail: performance.now() - t1 };
  return {
    result: { features: r.features, predictions: r.predictions, format: info.format, width: info.width, height: info.height, thumb, ms },
    transfer: [r.features.buffer],
  };
}

// Where the model looks in one photo, for its top class (Engine::explain_bytes): {width, height,
// values (Float32Array, row-major, 0..1), cls, label, probability}. Asked for only when the user
// opens a card's "Where it looks"; a photo the engine cannot use answers {error}, like analyze.
function heatmap({ bytes }) {
  const u8 = new Uint8Array(bytes);
  const bad = bytesError(u8);
  if (bad) return { error: bad };
  let r;
  try {
    r = engine.heatmap(u8);
  } catch (e) {
    return { error: message(e) };
  }
  return { result: r, transfer: [r.values.buffer] };
}

// Top classes for many feature rows (n × dim, one Float32Array) with the current head.
function classify({ features, n }) {
  const dim = engine.featureDim();
  const out = [];
  for (let i = 0; i < n; i++) out.push(engine.classifyFeatures(features.subarray(i * dim, (i + 1) * dim), TOP_K));
  return { result: out };
}

// Teach the engine the user's labelled photos: examples is a Float32Array (n × dim), labels one
// class name per row. Every rule of teaching lives in the engine (wasm/teach.h); this only passes
// the data and reports progress.
function train({ examples, labels }) {
  if (stopFlag) Atomics.store(stopFlag, 0, 0);
  const started = performance.now();
  let shown = -1;
  const r = engine.teach(examples, labels, {}, (s) => {
    post({ event: 'epoch', ...s });
    return !(stopFlag && Atomics.load(stopFlag, 0) === 1);
  }, (done, total) => {
    const pct = Math.floor((100 * done) / total);
    if (pct !== shown) post({ event: 'teach-progress', done, total });
    shown = pct;
  });
  return { result: { ...r, seconds: (performance.now() - started) / 1000 } };
}

function exportHead() {
  const bytes = engine.exportBundle(false, false);
  return { result: { bytes: bytes.buffer }, transfer: [bytes.buffer] };
}

// The whole classifier as an ONNX model (backbone + head + class names, written by the engine:
// Engine::to_onnx); the bytes are transferred, not copied.
function exportOnnx() {
  const bytes = engine.exportOnnx();
  return { result: { bytes: bytes.buffer, classNames: engine.classNames(), inputSize: engine.inputSize(), int8: engine.int8() }, transfer: [bytes.buffer] };
}

// Load a head bundle (exported by this page or by `petal export`, or kept in IndexedDB); the
// engine checks that it fits.
function importHead({ bytes }) {
  engine.importHead(new Uint8Array(bytes));
  return { result: { classNames: engine.classNames(), bankRows: engine.bankRows() } };
}

// For each size in bytes, "" or what is wrong with a photo file of that size (the engine's rule:
// image_bytes_problem): the page asks for a whole drop at once, before it reads the files.
function checkImageBytes({ sizes }) {
  return { result: sizes.map((size) => M.imageBytesProblem(size)) };
}

// "" or what is wrong with a new class name (the engine's rule: class_name_problem).
function checkClassName({ name, others }) {
  return { result: M.classNameProblem(name, others) };
}

function reset() {
  engine.importHead(shippedHead);  // (kept right after init answered)
  return { result: { classNames: engine.classNames(), bankRows: engine.bankRows() } };
}

// Memory the engine holds (for benchmarks: it should stay flat while photos stream through).
function stats() {
  // (the threads build exports its memory; in the other, HEAPU8 is refreshed whenever memory grows)
  const memory = M.wasmMemory ? M.wasmMemory.buffer : M.HEAPU8.buffer;
  return { result: { wasmBytes: memory.byteLength } };
}

const handlers = { init, analyze, heatmap, classify, train, exportHead, exportOnnx, importHead, checkClassName, checkImageBytes, reset, stats };

// One request at a time, in order.
let queue = Promise.resolve();
self.onmessage = (ev) => {
  const { id, type, ...args } = ev.data;
  queue = queue.then(async () => {
    try {
      if (!handlers[type]) throw new Error(`unknown request ${type}`);
      if (type !== 'init' && !engine) throw new Error('the engine is not ready');
      const out = await handlers[type](args);
      if (type === 'init') {
        post({ id, ok: true, result: out });
        // The model as shipped, for Reset: taken after the answer, so that the page is ready
        // sooner, and before any request can change the head.
        shippedHead = engine.exportBundle(false, false);
      } else if (out.error) post({ id, ok: true, result: { error: out.error } });
      else post({ id, ok: true, result: out.result }, out.transfer || []);
    } catch (e) {
      post({ id, ok: false, error: message(e) });
    }
  });
};
