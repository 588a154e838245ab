// Benchmark (not part of the test suite): choose many real photos at once and watch the page work
// through them. Prints throughput, the engine's WebAssembly memory, the page's JS heap, the
// number of DOM nodes and the longest main-thread task, so "memory stays steady and the page
// stays responsive" is a number, not a hope. It also checks two promises and exits 1 when one is
// broken:
//   - processed in order: the cards appear in the order the files were chosen and finish in that
//     order (every card's switch to done/error is recorded by a MutationObserver);
//   - steady memory: the engine's WebAssembly memory does not grow between the checkpoint (500
//     photos, or N/4 when N < 2000) and the end, and the page's JS heap (measured after a forced
//     garbage collection, through the DevTools protocol) grows only by what each card keeps.
//
//   node tests/browser/many-photos.bench.mjs [N=300] [--no-isolation] [--query engine=fp32&simd=128] [--js-flags FLAGS]
// --query: URL options for the page (web/boot.js: engine=int8|fp32, simd=128 for the SIMD128 build);
// the engine line's build (data-build) and precision are printed, so the run says what it measured.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { photosDir, requireData, serve, launch, freshContext, openPage, screenshot } from './helpers.mjs';

const N = Number(process.argv.find((a) => /^\d+$/.test(a)) || 300);
const isolation = !process.argv.includes('--no-isolation');
const qi = process.argv.indexOf('--query');
const query = qi > 0 ? process.argv[qi + 1].replace(/^\?/, '') : '';
// --js-flags FLAGS or --js-flags=FLAGS: V8 flags, e.g. --no-enable-avx-vnni (as a CPU without it)
const ji = process.argv.findIndex((a) => a === '--js-flags' || a.startsWith('--js-flags='));
const jsFlags = ji < 0 ? '' : process.argv[ji].startsWith('--js-flags=') ? process.argv[ji].slice('--js-flags='.length) : process.argv[ji + 1];
const CHECKPOINT = Math.min(500, Math.max(1, Math.floor(N / 4)));
// What one more photo may add to the page's JS heap: its 2048 features (8 KB), predictions, a
// thumbnail Blob handle and the card's DOM wrappers are expected; much more means a leak.
const MAX_HEAP_KB_PER_PHOTO = 32;
requireData();

const all = [];
for (const c of fs.readdirSync(photosDir).filter((d) => fs.statSync(path.join(photosDir, d)).isDirectory()).sort()) {
  for (const f of fs.readdirSync(path.join(photosDir, c)).sort()) all.push(path.join(photosDir, c, f));
}
const files = Array.from({ length: N }, (_, i) => all[(i * 7) % all.length]);

const load = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');
console.log(`${new Date().toISOString()} · ${os.cpus().length} cores (${os.cpus()[0]?.model.trim()}) · load average ${load()}`);

const server = await serve({ isolation });
const browser = await launch(jsFlags ? [`--js-flags=${jsFlags}`] : []);
const { context } = await freshContext(browser);
const problems = [];
try {
  await context.addInitScript(() => {
    window.__longest = 0;
    window.__longestDuring = 0;
    new PerformanceObserver((l) => {
      for (const e of l.getEntries()) {
        window.__longest = Math.max(window.__longest, e.duration);
        window.__longestDuring = Math.max(window.__longestDuring, e.duration);
      }
    }).observe({ type: 'longtask', buffered: true });
    // The order in which cards reach done/error (a card may also be added already finished).
    window.__finished = [];
    const seen = new Set();
    const note = (card) => {
      if (!card.classList || !card.classList.contains('card') || seen.has(card.dataset.id)) return;
      if (card.dataset.state === 'done' || card.dataset.state === 'error') {
        seen.add(card.dataset.id);
        window.__finished.push(card.dataset.id);
        window.__lastFinishedAt = performance.now();
      }
    };
    document.addEventListener('DOMContentLoaded', () => {
      new MutationObserver((records) => {
        for (const r of records) {
          if (r.type === 'attributes') note(r.target);
          else for (const n of r.addedNodes) note(n);
        }
      }).observe(document.getElementById('grid'), { subtree: true, childList: true, attributes: true, attributeFilter: ['data-state'] });
    });
  });
  const page = await openPage(context, query ? `${server.url}${server.url.includes('?') ? '&' : '?'}${query}` : server.url);
  const cdp = await context.newCDPSession(page);
  const sample = () => page.evaluate(async () => {
    const s = await window.petalStats();
    return {
      done: document.querySelectorAll('.card[data-state="done"], .card[data-state="error"]').length,
      wasmMB: s.wasmBytes / 1048576,
      nodes: document.getElementsByTagName('*').length,
      longestTaskMs: window.__longest,
    };
  });
  const heap = async (gc) => {
    if (gc) await cdp.send('HeapProfiler.collectGarbage');
    const h = await cdp.send('Runtime.getHeapUsage');
    return { heapMB: h.usedSize / 1048576, backingMB: (h.backingStorageSize ?? NaN) / 1048576 };
  };
  const full = async (gc = false) => ({ ...(await sample()), ...(await heap(gc)) });
  const row = (t, s) => console.log(`${(t / 1000).toFixed(1).padStart(7)} s  ${String(s.done).padStart(5)}/${N}  ` +
    `wasm ${s.wasmMB.toFixed(0)} MB  js heap ${s.heapMB.toFixed(1)} MB (+ ${s.backingMB.toFixed(1)} MB array buffers)  ` +
    `dom ${s.nodes} nodes  longest task ${s.longestTaskMs.toFixed(0)} ms`);
  const built = await page.evaluate(() => [...document.querySelectorAll('[data-build]')].map((e) => `${e.dataset.build}: ${e.textContent.trim()}`).join(' | '));
  console.log(`${N} photos, ${isolation ? 'threads build' : 'single-thread build'}${query ? `, ?${query}` : ''}${jsFlags ? `, --js-flags=${jsFlags}` : ''}, engine ready in ${page.readyMs} ms; engine line: ${built || '(no data-build)'}`);
  row(0, await full(true));
  await page.evaluate(() => { window.__longestDuring = 0; });
  const t0 = Date.now();
  const pageT0 = await page.evaluate(() => performance.now());
  await page.setInputFiles('#file-input', files);
  let s, check = null;
  for (;;) {
    await new Promise((r) => setTimeout(r, 5000));
    s = await full(false);
    row(Date.now() - t0, s);
    if (!check && s.done >= CHECKPOINT) {
      check = { ...(await full(true)), t: Date.now() - t0 };
      console.log(`  checkpoint after a garbage collection: ${check.done} photos, wasm ${check.wasmMB.toFixed(1)} MB, ` +
        `js heap ${check.heapMB.toFixed(1)} MB + ${check.backingMB.toFixed(1)} MB array buffers`);
    }
    if (s.done >= N) break;
  }
  // from the files' choice to the last card finished, on the page's clock (not the 5 s polls)
  const secs = (await page.evaluate(() => window.__lastFinishedAt) - pageT0) / 1000;
  const end = await full(true);
  console.log(`${(N / secs).toFixed(2)} photos/s (${(1000 * secs / N).toFixed(0)} ms per photo, thumbnails and cards included)`);
  // the page's profile of the drop (app.js stopwatch; worker.js and the engine's analyze for the
  // worker's stages): ms per photo. The page's stages overlap the worker's; the worker's summed
  // against the wall time says how long it sat idle.
  const prof = (await page.evaluate(() => window.petalStats())).profile || { photos: 0 };
  const list = (group) => Object.entries(group).map(([k, ms]) => `${k} ${(ms / prof.photos).toFixed(1)}`).join(' · ');
  const busy = prof.photos ? Object.values(prof.worker).reduce((a, ms) => a + ms, 0) / prof.photos : 0;
  if (prof.photos) console.log(`where a photo's time went, ms per photo (${prof.photos} analysed): worker: ${list(prof.worker)} ` +
    `= ${busy.toFixed(1)} of ${(1000 * secs / N).toFixed(1)} (idle ${(1000 * secs / N - busy).toFixed(1)}); ` +
    `page, alongside: ${list(prof.page)}`);
  console.log(`longest main-thread task while the photos were processed: ${(await page.evaluate(() => window.__longestDuring)).toFixed(0)} ms ` +
    `(${end.longestTaskMs.toFixed(0)} ms including the page's start)`);

  // processed in order
  const { finished, dom } = await page.evaluate(() => ({
    finished: window.__finished,
    dom: [...document.querySelectorAll('.card')].map((c) => ({ id: c.dataset.id, name: c.querySelector('.name').textContent, state: c.dataset.state })),
  }));
  const errors = dom.filter((c) => c.state === 'error').length;
  const names = files.map((f) => path.basename(f));
  const cardOrder = dom.length === N && dom.every((c, i) => c.name === names[i]);
  const firstOut = finished.findIndex((id, i) => id !== dom[i]?.id);
  const finishOrder = finished.length === N && firstOut === -1;
  console.log(`processed in order: ${cardOrder && finishOrder ? 'yes' : 'NO'} · ${dom.length} cards in the order chosen: ${cardOrder ? 'yes' : 'no'} · ` +
    `${finished.length} finished, in card order: ${finishOrder ? 'yes' : `no (first out of order at #${firstOut})`} · ${errors} could not be used`);
  if (!cardOrder || !finishOrder) problems.push('photos were not processed in the order they were chosen');

  // steady memory
  const photos = end.done - check.done;
  const wasmGrowth = end.wasmMB - check.wasmMB;
  const heapGrowth = (end.heapMB + (end.backingMB || 0)) - (check.heapMB + (check.backingMB || 0));
  const perPhotoKB = photos > 0 ? (1024 * heapGrowth) / photos : 0;
  console.log(`memory after ${check.done} photos → after ${end.done} (both after a garbage collection): ` +
    `wasm ${check.wasmMB.toFixed(1)} → ${end.wasmMB.toFixed(1)} MB; js heap ${check.heapMB.toFixed(1)} → ${end.heapMB.toFixed(1)} MB, ` +
    `array buffers ${check.backingMB.toFixed(1)} → ${end.backingMB.toFixed(1)} MB (${perPhotoKB.toFixed(1)} KB per photo; ` +
    `each card keeps 8 KB of features); dom ${check.nodes} → ${end.nodes} nodes (${photos > 0 ? ((end.nodes - check.nodes) / photos).toFixed(1) : 0} per photo)`);
  const steady = wasmGrowth <= 0 && perPhotoKB <= MAX_HEAP_KB_PER_PHOTO;
  console.log(`steady memory: ${steady ? 'yes' : 'NO'} (wasm memory grew ${wasmGrowth.toFixed(1)} MB; ` +
    `the page grew ${perPhotoKB.toFixed(1)} KB per photo, allowed ${MAX_HEAP_KB_PER_PHOTO})`);
  if (!steady) problems.push('memory was not steady');
  await screenshot(page, `bench-${N}-photos`);
} finally {
  await browser.close();
  await server.close();
  console.log(`${new Date().toISOString()} · load average ${load()}`);
}
if (problems.length) {
  console.log(`FAILED: ${problems.join('; ')}`);
  process.exitCode = 1;
}
