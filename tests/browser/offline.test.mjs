// Offline after the first visit (issue 14, part 4). From the dev server (`npm start`): a first
// visit, then the server is stopped and the page still reloads, classifies, teaches and exports;
// then a new deployment on the same address (another model, a changed page) is picked up. The
// static build (dist/) works offline too, cross-origin isolated by its service worker. Prints the
// first visit's download size and the time a repeat visit takes to its first prediction.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import {
  DAISY, ROSE, TULIP, photo, repoRoot, requireData, serve, launch, freshContext, openPage, waitEngine, drop, choose,
  cardOf, screenshot, foreignRequests, tempDir,
} from './helpers.mjs';

const MODEL = path.join(repoRoot, 'web/model/petal.safetensors');
const MORE_ROSES = ['roses/102501987_3cdb8e5394_n.jpg', 'roses/10894627425_ec76bbc757_n.jpg', 'roses/110472418_87b6a3aa98_m.jpg'].map(photo);
const LATER_ROSE = photo('roses/11102341464_508d558dfc_n.jpg');

let browser;
before(async () => {
  requireData();
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

// Bytes the server sends on its connections (headers and bodies as sent: gzip where it sent
// gzip), from now on; read .bytes later.
function countBytes(server) {
  const sockets = new Set();
  server.on('connection', (s) => sockets.add(s));
  return { get bytes() { return [...sockets].reduce((a, s) => a + s.bytesWritten, 0); }, get connections() { return sockets.size; } };
}

const offlineReady = (page) => page.waitForFunction(() => ['ready', 'partial', 'unavailable'].includes(document.body.dataset.offline), null, { timeout: 60000 })
  .then(() => page.evaluate(() => document.body.dataset.offline));

// A model file like `from`, with its class `was` renamed `now` in the bundle's metadata (the
// weights are the same bytes): a new model the page can tell from the old one by its classes.
function renameClass(from, to, was, now) {
  const buf = fs.readFileSync(from);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const names = JSON.parse(header.__metadata__.class_names);
  assert.ok(names.includes(was), `the model has no class ${was}: ${names}`);
  header.__metadata__.class_names = JSON.stringify(names.map((c) => (c === was ? now : c)));
  let text = JSON.stringify(header);
  text += ' '.repeat((8 - ((8 + Buffer.byteLength(text)) % 8)) % 8);  // tensor data stays 8-byte aligned
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(text)));
  fs.writeFileSync(to, Buffer.concat([len, Buffer.from(text), buf.subarray(8 + n)]));
}

const classList = (page) => page.$$eval('#class-list li[data-class]', (ls) => ls.map((l) => l.dataset.class));

test('from npm start: after one visit the page reloads, classifies, teaches and exports with the server stopped, and picks up a new deployment', async () => {
  let server = await serve();
  const port = Number(new URL(server.url).port);
  const first = countBytes(server.server);
  const { context, requests } = await freshContext(browser);
  const site = tempDir('petal-offline-');
  try {
    // First visit: the engine starts, a photo is classified, the page's files are kept.
    const page = await openPage(context, server.url);
    await drop(page, [DAISY]);
    assert.equal((await cardOf(page, path.basename(DAISY))).top, 'daisy');
    assert.equal(await offlineReady(page), 'ready', 'every page file is kept for offline use');
    const keptFiles = Number(await page.evaluate(() => document.body.dataset.offlineFiles));
    const firstBytes = first.bytes;
    console.log(`  first visit: ${(firstBytes / 1e6).toFixed(2)} MB downloaded (${first.connections} connections); ${keptFiles} page files kept for offline use`);
    assert.ok(firstBytes <= 50e6, `the first visit downloads ${firstBytes} bytes, over 50 MB`);
    const cached = await page.evaluate(async () => {
      const out = {};
      for (const name of await caches.keys()) out[name] = (await (await caches.open(name)).keys()).map((r) => new URL(r.url).pathname);
      return out;
    });
    const pageFiles = Object.entries(cached).filter(([n]) => n.startsWith('petal-page-')).flatMap(([, f]) => f);
    for (const f of ['/', '/boot.js', '/app.js', '/worker.js', '/style.css', '/favicon.svg', '/engine/petal-mt-relaxed.js', '/engine/petal-mt-relaxed.wasm']) {
      assert.ok(pageFiles.includes(f), `${f} is kept for offline use (kept: ${pageFiles.join(' ')})`);
    }
    assert.ok(!pageFiles.some((f) => f.endsWith('.safetensors')), 'the model is not kept twice');
    assert.ok(Object.values(cached).flat().includes('/model/petal.safetensors'), 'the model is kept by model-fetch.js');

    // A repeat visit with the server up: the time to its first prediction.
    const repeatStart = Date.now();
    await page.reload();
    await waitEngine(page);
    const repeatReadyMs = Date.now() - repeatStart;
    await drop(page, [ROSE]);
    const repeatMs = Date.now() - repeatStart;
    assert.equal((await cardOf(page, path.basename(ROSE))).top, 'roses');
    assert.match(await page.textContent('#engine-info'), /model loaded from this browser’s storage/);
    console.log(`  repeat visit, server up: engine ready ${repeatReadyMs} ms, first prediction ${repeatMs} ms after the reload (goal < 2 s); in the worker: ${await page.evaluate(() => document.body.dataset.timings)}`);

    // The server stops.
    await server.close();
    server = null;
    const offlineStart = Date.now();
    await page.reload();
    await waitEngine(page);
    const offlineReadyMs = Date.now() - offlineStart;
    await drop(page, [TULIP]);
    const offlineMs = Date.now() - offlineStart;
    console.log(`  repeat visit, server stopped: engine ready ${offlineReadyMs} ms, first prediction ${offlineMs} ms after the reload; in the worker: ${await page.evaluate(() => document.body.dataset.timings)}`);
    assert.equal((await cardOf(page, path.basename(TULIP))).top, 'tulips', 'a dropped photo is classified offline');
    assert.equal(await page.evaluate(() => crossOriginIsolated), true, 'kept files carry COOP/COEP: still isolated');
    assert.equal(await page.locator('#engine-info').getAttribute('data-build'), 'mt-relaxed', 'the threaded engine runs offline');
    assert.match(await page.textContent('#engine-info'), /offline: using the model kept in this browser/);
    assert.equal(await page.locator('#fatal').isVisible(), false);

    // Teach: label more roses, press Train.
    await page.selectOption('#drop-label', 'roses');
    await choose(page, MORE_ROSES);
    await page.click('#train');
    await page.waitForFunction(() => ['done', 'failed'].includes(document.body.dataset.training), null, { timeout: 180000 });
    const status = await page.textContent('#train-status');
    assert.equal(await page.evaluate(() => document.body.dataset.training), 'done', status);
    assert.match(status, /^Done: taught from your 3 photos/);
    const estimates = await page.$$eval('#estimates li', (ls) => ls.map((l) => l.textContent));
    assert.ok(estimates.some((e) => e.includes('roses')), `an expected accuracy for roses: ${estimates.join(' | ')}`);
    for (const f of MORE_ROSES) assert.equal((await cardOf(page, path.basename(f))).top, 'roses');

    // Export downloads the taught model.
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
    const saved = path.join(site, download.suggestedFilename());
    await download.saveAs(saved);
    const bytes = fs.readFileSync(saved);
    const header = JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString('utf8'));
    assert.equal(header.__metadata__.format, 'petal-bundle');
    assert.ok(header['head.residual.weight'], 'the exported model holds what was taught');
    console.log(`  offline: taught from 3 photos (${status.match(/in [\d.]+ s/)?.[0]}), exported ${download.suggestedFilename()} (${(bytes.length / 1e6).toFixed(1)} MB)`);
    await screenshot(page, 'offline');

    // Back to the shipped model (it is kept in the browser), so the next model shows its own classes.
    await page.click('#reset');
    await page.click('#reset-yes');
    await page.waitForFunction(() => /Back to the model as shipped/.test(document.getElementById('model-status').textContent));

    // A new deployment on the same address: a changed page and a new model (roses → rose).
    const web = path.join(repoRoot, 'web');
    for (const f of fs.readdirSync(web)) if (f !== 'model' && f !== 'index.html') fs.symlinkSync(path.join(web, f), path.join(site, f));
    fs.mkdirSync(path.join(site, 'model'));
    renameClass(MODEL, path.join(site, 'model/petal.safetensors'), 'roses', 'rose');
    const html = fs.readFileSync(path.join(web, 'index.html'), 'utf8');
    assert.match(html, /<title>Petal/);
    fs.writeFileSync(path.join(site, 'index.html'), html.replace('<title>Petal', '<title>Petal (new deployment)'));
    server = await serve({ port, root: site });
    const modelAnswers = [];
    context.on('response', (r) => { if (r.url().endsWith('/model/petal.safetensors')) modelAnswers.push(r.status()); });
    await page.reload();
    await waitEngine(page);
    assert.match(await page.title(), /^Petal \(new deployment\)/, 'the new page is shown, not the kept one');
    assert.deepEqual(modelAnswers, [200], 'the new model is downloaded');
    assert.match(await page.textContent('#engine-info'), /model kept in this browser for next time/);
    const classes = await classList(page);
    assert.ok(classes.includes('rose') && !classes.includes('roses'), `the new model's classes: ${classes}`);
    await drop(page, [LATER_ROSE]);
    assert.equal((await cardOf(page, path.basename(LATER_ROSE))).top, 'rose');
    assert.equal(await offlineReady(page), 'ready');
    assert.deepEqual(foreignRequests(requests, `http://127.0.0.1:${port}/`), []);
  } finally {
    await context.close();
    await server?.close();
    fs.rmSync(site, { recursive: true, force: true });
  }
});

test('the static build (dist/) works offline too, isolated by its service worker', async () => {
  const out = path.join(tempDir('petal-dist-offline-'), 'dist');
  execFileSync(process.execPath, [path.join(repoRoot, 'tools/build-site.mjs'), '--out', out], { encoding: 'utf8' });
  const sw = fs.readFileSync(path.join(out, 'sw.js'), 'utf8');
  assert.match(sw, /const VERSION = '[0-9a-f]{16}';/, 'the build versions the cache');
  let server = await serve({ root: out, isolation: false });
  const { context } = await freshContext(browser);
  try {
    const page = await context.newPage();
    await page.goto(server.url);
    await page.waitForFunction(() => crossOriginIsolated === true, null, { timeout: 30000 });
    await waitEngine(page);
    assert.equal(await offlineReady(page), 'ready');
    await server.close();
    server = null;
    await page.reload();
    await waitEngine(page);
    assert.equal(await page.evaluate(() => crossOriginIsolated), true, 'headers added to kept files too');
    assert.equal(await page.locator('#engine-info').getAttribute('data-build'), 'mt-relaxed');
    await drop(page, [ROSE]);
    assert.equal((await cardOf(page, path.basename(ROSE))).top, 'roses');
  } finally {
    await context.close();
    await server?.close();
    fs.rmSync(path.dirname(out), { recursive: true, force: true });
  }
});
