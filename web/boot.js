// Starts the engine: the worker (worker.js) and its init request, from the page's <head>, so that
// the engine loads while the page's own modules still do (about 150 ms of a repeat visit, whose
// first prediction waits on the engine). app.js adopts the running worker (EngineClient).
// A classic script, so it runs as soon as it arrives; it sets self.petalBoot:
//   plan()   which engine this page runs: {isolated, build: 'mt' | 'st', threads, int8, stop}
//   start()  starts the worker with that plan: {plan, worker, messages (what it said so far), initId}
//   started  start()'s answer, or null where the page reloads first to become cross-origin
//            isolated (a static host's first visit, web/isolation.js): app.js starts it later
'use strict';
(() => {
  const MODEL_URL = 'model/petal.safetensors';
  const PRECISION_KEY = 'petal-engine-precision';  // the last precision chosen (app.js's button)

  // Which engine precision to run: ?engine=int8|fp32 in the URL, else the last choice, else int8:
  // faster than fp32 in every build and as accurate on the held-out photos (docs/benchmarks.md,
  // bench/engine-accuracy.mjs).
  function precision() {
    const asked = new URL(location.href).searchParams.get('engine');
    if (asked === 'int8' || asked === 'fp32') return asked;
    try { return localStorage.getItem(PRECISION_KEY) === 'fp32' ? 'fp32' : 'int8'; } catch { return 'int8'; }
  }

  // Relaxed SIMD (fused multiply-add; Chromium, Firefox): a function using f32x4.relaxed_madd
  // validates only where the browser has it. Elsewhere (Safari) the SIMD128 build runs.
  // ?simd=128 asks for the SIMD128 build anyway.
  const RELAXED_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 8, 1, 96, 3, 123, 123, 123, 1, 123, 3, 2, 1, 0,
    10, 13, 1, 11, 0, 32, 0, 32, 1, 32, 2, 253, 133, 2, 11]);
  function relaxedSimd() {
    if (new URL(location.href).searchParams.get('simd') === '128') return false;
    try { return WebAssembly.validate(RELAXED_PROBE); } catch { return false; }
  }

  // Threads need a cross-origin isolated page (SharedArrayBuffer); then one per core, up to 8.
  function plan() {
    const isolated = self.crossOriginIsolated === true && typeof SharedArrayBuffer !== 'undefined';
    return {
      isolated,
      build: (isolated ? 'mt' : 'st') + (relaxedSimd() ? '-relaxed' : ''),
      threads: isolated ? Math.max(1, Math.min(navigator.hardwareConcurrency || 4, 8)) : 1,
      int8: precision() === 'int8',
      stop: isolated ? new Int32Array(new SharedArrayBuffer(4)) : null,  // 1 = stop training
    };
  }

  function start() {
    const p = plan();
    const worker = new Worker('worker.js');
    // Until app.js takes the worker over, what it says is kept (events and the init answer).
    const messages = [];
    worker.onmessage = (ev) => messages.push(ev.data);
    worker.onerror = (ev) => {
      ev.preventDefault();
      messages.push({ stopped: ev.message || 'unknown error' });
    };
    const initId = 1;
    worker.postMessage({
      id: initId, type: 'init', build: p.build, threads: p.threads, int8: p.int8, modelUrl: MODEL_URL,
      stopBuffer: p.stop ? p.stop.buffer : null,
    });
    return { plan: p, worker, messages, initId };
  }

  const reloading = document.documentElement.dataset.serviceWorker === 'on' && !self.crossOriginIsolated;
  self.petalBoot = { PRECISION_KEY, plan, start, started: reloading ? null : start() };
})();
