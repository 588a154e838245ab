// The benchmark page: starts one worker per engine (bench/browser/worker.js) and drives them.
//   ?mode=cold&engine=E&threads=N : load engine E, predict one photo; window.__result = times
//   ?mode=latency&engines=E:N,... : all engines, interleaved rounds; window.__result = measurements
const params = new URLSearchParams(location.search);
const logEl = document.getElementById('log');
const log = (s) => {
  logEl.textContent += s + '\n';
  console.log(s);
};

class EngineWorker {
  constructor(engine, threads) {
    this.name = `${engine}/${threads}`;
    this.engine = engine;
    this.threads = threads;
    const hc = params.get('hc') || '';
    this.w = new Worker(`/bench/worker.js?engine=${engine}&threads=${threads}&hc=${hc}`);
    this.pending = new Map();
    this.next = 1;
    this.w.onmessage = (e) => {
      const p = this.pending.get(e.data.id);
      this.pending.delete(e.data.id);
      if (e.data.ok) p.resolve(e.data);
      else p.reject(new Error(`${this.name}: ${e.data.error}`));
    };
    this.w.onerror = (e) => {
      for (const p of this.pending.values()) p.reject(new Error(`${this.name}: ${e.message}`));
      this.pending.clear();
    };
  }
  call(cmd, args = {}) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.w.postMessage({ id, cmd, ...args });
    });
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function cold() {
  const e = new EngineWorker(params.get('engine'), Number(params.get('threads')));
  const { id, ok, ...info } = await e.call('init');
  const ready = performance.now();
  await e.call('inputs', { url: '/data/input1.f32' });
  const r = await e.call('run', { batch: 1, want: true });
  const first = performance.now();
  const mem = await e.call('memory');
  return {
    engine: e.engine, threads: e.threads, info,
    readyMs: Math.round(ready), firstPredictionMs: Math.round(first), runMs: Math.round(r.ms),
    wasmBytes: mem.wasmBytes, features: Array.from(r.features.subarray(0, 2048)),
  };
}

async function latency() {
  const specs = params.get('engines').split(',').map((s) => s.split(':'));
  const batches = params.get('batches').split(',').map(Number);
  const runs = Number(params.get('runs')), warmup = Number(params.get('warmup'));
  const gap = Number(params.get('gap') || 50);
  const engines = specs.map(([e, t]) => new EngineWorker(e, Number(t)));
  const infos = {};
  // Engines load one after the other, so that none loses CPU to another's start-up.
  for (const e of engines) {
    const { id, ok, ...info } = await e.call('init');
    infos[e.name] = info;
    await e.call('inputs', { url: '/data/inputs.f32' });
    log(`ready: ${e.name} ${JSON.stringify(infos[e.name])}`);
  }
  const times = {}, outputs = {};
  for (let round = -warmup; round < runs; round++) {
    for (const e of engines) {
      for (const b of batches) {
        await sleep(gap);  // let the previous engine's spinning threads settle
        const r = await e.call('run', { batch: b, want: round === -1 && b === Math.max(...batches) });
        if (r.features) outputs[e.name] = r.features;
        if (round < 0) continue;
        (times[`${e.name}/${b}`] ||= []).push(r.ms / b);
      }
    }
    log(`round ${round + 1}/${runs} done`);
  }
  const memory = {};
  for (const e of engines) memory[e.name] = (await e.call('memory')).wasmBytes;
  return { infos, times, memory, outputs: Object.fromEntries(Object.entries(outputs).map(([k, v]) => [k, Array.from(v)])) };
}

(async () => {
  try {
    const mode = params.get('mode');
    window.__result = { ok: true, crossOriginIsolated, hardwareConcurrency: navigator.hardwareConcurrency, userAgent: navigator.userAgent, ...(mode === 'cold' ? await cold() : await latency()) };
  } catch (e) {
    log(String(e && e.stack || e));
    window.__result = { ok: false, error: String(e && e.message || e) };
  }
})();
