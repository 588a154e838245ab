// Benchmark (not part of the test suite): choose many real photos at once and watch the page work
// through them. Prints throughput, the engine's WebAssembly memory, the page's JS heap, the
// number of DOM nodes and the longest main-thread task, so "memory stays steady and the page
// stays responsive" is a number, not a hope.
//
//   node tests/browser/many-photos.bench.mjs [N=300] [--no-isolation]
import fs from 'node:fs';
import path from 'node:path';
import { photosDir, requireData, serve, launch, freshContext, openPage, screenshot } from './helpers.mjs';

const N = Number(process.argv.find((a) => /^\d+$/.test(a)) || 300);
const isolation = !process.argv.includes('--no-isolation');
requireData();

const all = [];
for (const c of fs.readdirSync(photosDir).filter((d) => fs.statSync(path.join(photosDir, d)).isDirectory()).sort()) {
  for (const f of fs.readdirSync(path.join(photosDir, c)).sort()) all.push(path.join(photosDir, c, f));
}
const files = Array.from({ length: N }, (_, i) => all[(i * 7) % all.length]);

const server = await serve({ isolation });
const browser = await launch();
const { context } = await freshContext(browser);
try {
  await context.addInitScript(() => {
    window.__longest = 0;
    new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__longest = Math.max(window.__longest, e.duration); })
      .observe({ type: 'longtask', buffered: true });
  });
  const page = await openPage(context, server.url);
  const sample = () => page.evaluate(async () => {
    const s = await window.petalStats();
    return {
      done: document.querySelectorAll('.card[data-state="done"], .card[data-state="error"]').length,
      wasmMB: s.wasmBytes / 1048576,
      heapMB: performance.memory ? performance.memory.usedJSHeapSize / 1048576 : NaN,
      nodes: document.getElementsByTagName('*').length,
      longestTaskMs: window.__longest,
    };
  });
  const row = (t, s) => console.log(`${(t / 1000).toFixed(1).padStart(7)} s  ${String(s.done).padStart(5)}/${N}  ` +
    `wasm ${s.wasmMB.toFixed(0)} MB  js heap ${s.heapMB.toFixed(1)} MB  dom ${s.nodes} nodes  longest task ${s.longestTaskMs.toFixed(0)} ms`);
  console.log(`${N} photos, ${isolation ? 'threads build' : 'single-thread build'}, engine ready in ${page.readyMs} ms`);
  row(0, await sample());
  const t0 = Date.now();
  await page.setInputFiles('#file-input', files);
  let s;
  for (;;) {
    await new Promise((r) => setTimeout(r, 5000));
    s = await sample();
    row(Date.now() - t0, s);
    if (s.done >= N) break;
  }
  const secs = (Date.now() - t0) / 1000;
  console.log(`${(N / secs).toFixed(2)} photos/s (${(1000 * secs / N).toFixed(0)} ms per photo, thumbnails and cards included)`);
  await screenshot(page, `bench-${N}-photos`);
} finally {
  await browser.close();
  await server.close();
}
