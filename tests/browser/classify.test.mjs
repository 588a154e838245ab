// Classifying photos on the threaded engine: first visit (download with progress), the next
// visit (model from the browser's Cache API, no download), bad files among good ones, and no
// request outside the page's origin.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import {
  DAISY, ROSE, TULIP, requireData, serve, launch, freshContext, openPage, drop, choose, cards, cardOf,
  screenshot, foreignRequests, tempDir,
} from './helpers.mjs';

let server, browser;
before(async () => {
  requireData();
  server = await serve();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await server?.close();
});

// Records every text the download line shows while the page loads.
const recordDownloadText = () => {
  window.__downloadTexts = [];
  document.addEventListener('DOMContentLoaded', () => {
    const node = document.getElementById('download-text');
    new MutationObserver(() => window.__downloadTexts.push(node.textContent)).observe(node, { childList: true, characterData: true, subtree: true });
  });
};

test('first visit: model downloads with progress, threads engaged, a daisy, a rose and a tulip are recognised', async () => {
  const { context, requests } = await freshContext(browser);
  try {
    await context.addInitScript(recordDownloadText);
    // bytes on the wire, per response (bodies as sent: gzip-encoded where the server sent gzip)
    const finished = [];
    context.on('requestfinished', (r) => finished.push(r.sizes().then(async (sz) => ({
      url: r.url(), bytes: sz.responseBodySize + sz.responseHeadersSize, encoding: (await r.response())?.headers()['content-encoding'],
    }))));
    const page = await openPage(context, server.url);
    console.log(`  first visit: engine ready ${page.readyMs} ms after navigation; in the worker: ${await page.evaluate(() => document.body.dataset.timings)}`);

    assert.equal(await page.evaluate(() => crossOriginIsolated), true, 'the page is cross-origin isolated');
    const info = page.locator('#engine-info');
    assert.equal(await info.getAttribute('data-build'), 'mt-relaxed', 'Chromium has relaxed SIMD: its build runs');
    assert.ok(Number(await info.getAttribute('data-threads')) >= 2, `threads: ${await info.getAttribute('data-threads')}`);
    assert.match(await info.textContent(), /with \d+ threads/);
    assert.equal(await page.locator('#isolation-note').isVisible(), false);
    const texts = await page.evaluate(() => window.__downloadTexts);
    assert.ok(texts.some((t) => /Downloading the model.*\d+\.\d of \d+\.\d MB \(\d+%\)/.test(t)), `download progress shown: ${texts.join(' | ')}`);
    assert.ok(texts.some((t) => /\(100%\)/.test(t)), 'download progress reached 100%');
    assert.match(await page.textContent('#privacy'), /never leave this computer/);
    // First visit: at most 50 MB downloaded (the goal); the model comes gzip-encoded.
    const wire = await Promise.all(finished);
    const total = wire.reduce((a, w) => a + w.bytes, 0);
    const model = wire.find((w) => w.url.endsWith('/model/petal.safetensors'));
    console.log(`  first visit: ${(total / 1e6).toFixed(2)} MB downloaded in ${wire.length} responses, the model ${(model.bytes / 1e6).toFixed(2)} MB (${model.encoding || 'identity'})`);
    assert.equal(model.encoding, 'gzip', 'the model is sent gzip-encoded');
    assert.ok(total <= 50e6, `first visit downloads ${total} bytes, over 50 MB`);

    await drop(page, [DAISY, ROSE, TULIP]);
    const got = await cards(page);
    assert.deepEqual(got.map((c) => c.name), [DAISY, ROSE, TULIP].map((f) => path.basename(f)), 'cards keep the order of the files');
    assert.deepEqual(got.map((c) => c.top), ['daisy', 'roses', 'tulips']);
    for (const c of got) {
      assert.equal(c.state, 'done');
      assert.ok(c.probability > 0.5, `${c.name}: ${c.top} ${c.probability}`);
      assert.equal(c.predictions.length, 3, 'three classes shown as bars');
    }
    assert.equal(await page.locator('.card img').count(), 3, 'each card has a thumbnail');
    // the profile of a drop (window.petalStats): where the three photos' time went
    const { profile } = await page.evaluate(() => window.petalStats());
    assert.equal(profile.photos, 3);
    for (const stage of ['decode', 'backbone', 'thumbnail']) assert.ok(profile.worker[stage] > 0, `worker ${stage}: ${profile.worker[stage]}`);
    for (const stage of ['read', 'digest']) assert.ok(profile.page[stage] > 0, `page ${stage}: ${profile.page[stage]}`);
    assert.ok(profile.worker.backbone > profile.worker.decode, 'the backbone costs more than the decode');
    await screenshot(page, 'classify-first-visit');

    const foreign = foreignRequests(requests, server.url);
    assert.deepEqual(foreign, [], 'no request leaves the origin');
    assert.ok(requests.some((r) => r.method === 'GET' && r.url.endsWith('/model/petal.safetensors')), 'the model was downloaded');

    // Next visit (the first tab closed): the model comes from the browser's cache (a conditional
    // GET, answered 304 Not Modified, checks that it is current).
    await page.close();
    const beforeCount = requests.length;
    const modelAnswers = [];
    context.on('response', (r) => { if (r.url().endsWith('/model/petal.safetensors')) modelAnswers.push(r.status()); });
    const t0 = Date.now();
    const again = await context.newPage();
    await again.goto(server.url);
    await again.waitForFunction(() => document.body.dataset.engine === 'ready', null, { timeout: 60000 });
    const readyMs = Date.now() - t0;
    await choose(again, [ROSE]);
    const firstPredictionMs = Date.now() - t0;
    console.log(`  next visit: engine ready ${readyMs} ms, first prediction ${firstPredictionMs} ms after navigation (goal ~2 s); in the worker: ${await again.evaluate(() => document.body.dataset.timings)}`);
    const later = requests.slice(beforeCount).filter((r) => r.url.endsWith('/model/petal.safetensors'));
    assert.deepEqual(later.map((r) => r.method), ['GET'], 'one request for the model');
    assert.deepEqual(modelAnswers, [304], 'the model is not downloaded again');
    assert.match(await again.textContent('#engine-info'), /from this browser/);
    assert.equal((await cardOf(again, path.basename(ROSE))).top, 'roses');
    assert.deepEqual(foreignRequests(requests, server.url), []);
  } finally {
    await context.close();
  }
});

function crc32(buf) {
  if (zlib.crc32) return zlib.crc32(buf);
  let c = ~0;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

function pngChunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td) >>> 0);
  return Buffer.concat([len, td, crc]);
}

// A well-formed PNG header that claims 30000×30000 pixels (900 megapixels), with a tiny body.
function hugePng() {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(30000, 0);
  ihdr.writeUInt32BE(30000, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', zlib.deflateSync(Buffer.alloc(3 * 64 + 64))),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

test('bad files get their own message on their card; the good photos among them are classified', async () => {
  const dir = tempDir('petal-bad-');
  const truncated = path.join(dir, 'truncated.jpg');
  const daisyBytes = fs.readFileSync(DAISY);
  fs.writeFileSync(truncated, daisyBytes.subarray(0, Math.floor(daisyBytes.length * 0.4)));
  const text = path.join(dir, 'notes.txt');
  fs.writeFileSync(text, 'shopping list: tulip bulbs, compost, a new watering can\n');
  const huge = path.join(dir, 'huge.png');
  fs.writeFileSync(huge, hugePng());

  const { context, requests } = await freshContext(browser);
  try {
    const page = await openPage(context, server.url);
    await choose(page, [DAISY, truncated, text, TULIP, huge, ROSE]);
    const got = await cards(page);
    assert.deepEqual(got.map((c) => c.name), ['100080576_f52e8ee070_n.jpg', 'truncated.jpg', 'notes.txt', '100930342_92e8746431_n.jpg', 'huge.png', '10090824183_d02c613f10_m.jpg']);
    assert.deepEqual(got.map((c) => c.state), ['done', 'error', 'error', 'done', 'error', 'done']);
    assert.deepEqual([got[0].top, got[3].top, got[5].top], ['daisy', 'tulips', 'roses']);
    assert.match(got[1].message, /truncated|incomplete/i);
    assert.match(got[2].message, /text file|not an image/i);
    assert.match(got[4].message, /30000|too large|megapixel|MP/i);
    for (const c of [got[1], got[2], got[4]]) assert.equal(c.predictions.length, 0, `${c.name} shows no classes`);
    assert.match(await page.textContent('#queue-status'), /3 could not be used/);
    // the error cards do not offer labelling
    assert.equal(await page.locator('.card[data-state="error"] .label-row:visible').count(), 0);
    await screenshot(page, 'classify-bad-files');
    assert.deepEqual(foreignRequests(requests, server.url), []);
  } finally {
    await context.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// The same JPEG with an EXIF APP1 segment saying "rotate 90° clockwise to display" (orientation 6),
// as phones write it.
function withExifOrientation(jpeg, orientation) {
  assert.equal(jpeg.readUInt16BE(0), 0xffd8, 'a JPEG starts with SOI');
  const tiff = Buffer.alloc(8 + 2 + 12 + 4);
  tiff.write('II', 0, 'ascii');
  tiff.writeUInt16LE(42, 2);
  tiff.writeUInt32LE(8, 4);         // first IFD right after the header
  tiff.writeUInt16LE(1, 8);         // one entry
  tiff.writeUInt16LE(0x0112, 10);   // Orientation
  tiff.writeUInt16LE(3, 12);        // SHORT
  tiff.writeUInt32LE(1, 14);        // count
  tiff.writeUInt16LE(orientation, 18);
  tiff.writeUInt32LE(0, 22);        // no next IFD
  const payload = Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), tiff]);
  const seg = Buffer.alloc(4);
  seg.writeUInt16BE(0xffe1, 0);
  seg.writeUInt16BE(payload.length + 2, 2);
  return Buffer.concat([jpeg.subarray(0, 2), seg, payload, jpeg.subarray(2)]);
}

test('a phone photo with EXIF rotation is shown upright and classified as rotated by the engine', async () => {
  const dir = tempDir('petal-exif-');
  const rotated = path.join(dir, 'phone-tulip.jpg');
  fs.writeFileSync(rotated, withExifOrientation(fs.readFileSync(TULIP), 6));
  const { context } = await freshContext(browser);
  try {
    const page = await openPage(context, server.url);
    await choose(page, [TULIP, rotated]);
    const sizes = await page.$$eval('.card img', (imgs) => Promise.all(imgs.map(async (i) => {
      await i.decode();
      return [i.naturalWidth, i.naturalHeight];
    })));
    const [[w0, h0], [w1, h1]] = sizes;
    assert.ok(w0 > h0, `the original tulip photo is landscape (${w0}×${h0})`);
    assert.deepEqual([w1, h1], [h0, w0], 'the EXIF-rotated copy is shown portrait');
    const [plain, phone] = await cards(page);
    assert.equal(phone.state, 'done');
    assert.equal(phone.top, 'tulips');
    // the engine saw the rotated pixels: same class, not the same numbers
    assert.notEqual(phone.probability, plain.probability);
    await screenshot(page, 'classify-exif');
  } finally {
    await context.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
