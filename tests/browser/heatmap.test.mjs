// "Where it looks" on real photos: composites made in the page (a real flower photo pasted at a
// known place on a plain grey canvas) are classified, each card's map is opened, and its peak
// should fall on the pasted photo, not on the grey. Plain classification asks for no map.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ROSE, photosDir, withServerAndBrowser, freshContext, openPage, waitEngine, waitCards, choose, cards, screenshot } from './helpers.mjs';

const env = withServerAndBrowser();

const SIDE = 400;          // the composite's side, in pixels
const PASTE = 0.45;        // the pasted photo's longest side, as a fraction of SIDE
const COUNT = 12;          // composites
const CLASSES = ['daisy', 'dandelion', 'roses', 'sunflowers', 'tulips'];

// A small seeded generator (mulberry32), so the photos and places are the same on every run.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// COUNT photos, taking the classes in turn, each a seeded pick of its class's sorted photos.
function pickPhotos(rand) {
  const lists = Object.fromEntries(CLASSES.map((c) => [c, fs.readdirSync(path.join(photosDir, c)).filter((f) => f.endsWith('.jpg')).sort()]));
  const out = [];
  for (let i = 0; i < COUNT; i++) {
    const cls = CLASSES[i % CLASSES.length];
    const list = lists[cls];
    out.push({ cls, file: path.join(photosDir, cls, list[Math.floor(rand() * list.length)]) });
  }
  return out;
}

test('the map of a flower pasted on grey peaks on the flower; plain classification asks for no map', async () => {
  const rand = rng(1414);
  const picks = pickPhotos(rand);
  const places = picks.map(() => ({ u: rand(), v: rand() }));
  const { context } = await freshContext(env.browser);
  try {
    // Every request the page sends to the engine worker, by type.
    await context.addInitScript(() => {
      window.__workerRequests = [];
      const post = Worker.prototype.postMessage;
      Worker.prototype.postMessage = function (msg, ...rest) {
        if (msg && msg.type) window.__workerRequests.push(msg.type);
        return post.call(this, msg, ...rest);
      };
    });
    const page = await openPage(context, env.server.url);

    // The composites, drawn and encoded as PNG by the page's own canvas.
    const made = await page.evaluate(async ({ items, SIDE, PASTE }) => {
      const out = [];
      for (const it of items) {
        const u8 = Uint8Array.from(atob(it.b64), (c) => c.charCodeAt(0));
        const bmp = await createImageBitmap(new Blob([u8], { type: 'image/jpeg' }));
        const s = (PASTE * SIDE) / Math.max(bmp.width, bmp.height);
        const w = Math.round(bmp.width * s), h = Math.round(bmp.height * s);
        const x = Math.floor(it.u * (SIDE - w)), y = Math.floor(it.v * (SIDE - h));
        const canvas = new OffscreenCanvas(SIDE, SIDE);
        const ctx = canvas.getContext('2d');
        ctx.fillStyle = 'rgb(128,128,128)';
        ctx.fillRect(0, 0, SIDE, SIDE);
        ctx.drawImage(bmp, x, y, w, h);
        const png = new Uint8Array(await (await canvas.convertToBlob({ type: 'image/png' })).arrayBuffer());
        let bin = '';
        for (let i = 0; i < png.length; i += 0x8000) bin += String.fromCharCode(...png.subarray(i, i + 0x8000));
        out.push({ png: btoa(bin), rect: { x0: x / SIDE, y0: y / SIDE, x1: (x + w) / SIDE, y1: (y + h) / SIDE } });
      }
      return out;
    }, { items: picks.map((p, i) => ({ b64: fs.readFileSync(p.file).toString('base64'), ...places[i] })), SIDE, PASTE });

    const files = made.map((m, i) => ({
      name: `composite-${String(i + 1).padStart(2, '0')}-${picks[i].cls}.png`, mimeType: 'image/png', buffer: Buffer.from(m.png, 'base64'),
    }));
    await choose(page, files);
    const all = await cards(page);
    assert.deepEqual(all.map((c) => c.state), files.map(() => 'done'), 'every composite was classified');
    assert.deepEqual(await page.evaluate(() => window.__workerRequests.filter((t) => t === 'heatmap')), [], 'classification asked for no map');
    assert.equal(await page.locator('canvas.heatmap').count(), 0, 'no map is drawn before one is asked for');

    let inside = 0;
    const lines = [];
    for (let i = 0; i < files.length; i++) {
      const card = page.locator('.card', { has: page.locator('.name', { hasText: files[i].name }) });
      const toggle = card.getByRole('button', { name: 'Where it looks' });
      await toggle.click();
      const canvas = card.locator('.thumb canvas.heatmap');
      await canvas.waitFor({ timeout: 120000 });
      const peak = await canvas.evaluate((c) => ({ x: Number(c.dataset.peakX), y: Number(c.dataset.peakY), label: c.dataset.label }));
      const top = await card.getAttribute('data-top-label');
      assert.equal(peak.label, top, 'the map explains the card\'s top class');
      assert.equal(await card.locator('.where-caption').textContent(), `where it sees ${top}`);
      assert.ok(peak.x > 0 && peak.x < 1 && peak.y > 0 && peak.y < 1, `the peak is a place in the photo: ${JSON.stringify(peak)}`);
      const r = made[i].rect;
      const hit = peak.x >= r.x0 && peak.x <= r.x1 && peak.y >= r.y0 && peak.y <= r.y1;
      if (hit) inside++;
      lines.push(`  ${files[i].name}: top ${top}, peak (${peak.x.toFixed(2)}, ${peak.y.toFixed(2)}), photo x ${r.x0.toFixed(2)}–${r.x1.toFixed(2)} y ${r.y0.toFixed(2)}–${r.y1.toFixed(2)}${hit ? '' : '  OUTSIDE'}`);
      // the photo itself was sent (its original bytes are kept for this session), not the thumbnail
      assert.doesNotMatch(await canvas.getAttribute('title'), /thumbnail/);
    }
    await screenshot(page, 'heatmap-open');
    console.log(lines.join('\n'));
    console.log(`heatmap peak inside the photo: ${inside} of ${files.length}`);
    assert.equal((await page.evaluate(() => window.__workerRequests.filter((t) => t === 'heatmap'))).length, files.length, 'one map per opening');
    assert.ok(inside >= Math.ceil(0.7 * files.length), `the peak fell on the pasted photo in ${inside} of ${files.length} composites`);

    // A second click hides the map again.
    const first = page.locator('.card').first();
    await first.getByRole('button', { name: 'Where it looks' }).click();
    assert.equal(await first.locator('canvas.heatmap').count(), 0);
    assert.equal(await first.getByRole('button', { name: 'Where it looks' }).getAttribute('aria-pressed'), 'false');
  } finally {
    await context.close();
  }
});

test('training closes an open map and the next opening asks again; after a reload the map comes from the thumbnail', async () => {
  const { context } = await freshContext(env.browser);
  try {
    const page = await openPage(context, env.server.url);
    await page.selectOption('#drop-label', 'roses');
    await choose(page, [ROSE]);
    const card = page.locator('.card').first();
    const toggle = card.getByRole('button', { name: 'Where it looks' });
    await toggle.click();
    const canvas = card.locator('.thumb canvas.heatmap');
    await canvas.waitFor({ timeout: 120000 });
    assert.equal(await toggle.getAttribute('aria-pressed'), 'true');
    assert.doesNotMatch(await canvas.getAttribute('title'), /thumbnail/, 'this session still holds the photo itself');

    await page.click('#train');
    await page.waitForFunction(() => ['done', 'failed'].includes(document.body.dataset.training), null, { timeout: 180000 });
    assert.equal(await page.evaluate(() => document.body.dataset.training), 'done', await page.textContent('#train-status'));
    assert.equal(await card.locator('canvas.heatmap').count(), 0, 'training closed the map of the old model');
    assert.equal(await toggle.getAttribute('aria-pressed'), 'false');
    await toggle.click();
    await canvas.waitFor({ timeout: 120000 });
    assert.equal(await canvas.getAttribute('data-label'), await card.getAttribute('data-top-label'), 'the new map explains the new top class');

    // After a reload only the thumbnail is kept; the map is computed from it, and says so.
    await page.reload();
    await waitEngine(page);
    await waitCards(page, 1);
    await page.waitForFunction(() => document.querySelector('.card')?.dataset.topLabel);
    const again = page.locator('.card').first();
    assert.equal(await again.locator('canvas.heatmap').count(), 0, 'a reload opens no map');
    await again.getByRole('button', { name: 'Where it looks' }).click();
    const restored = again.locator('.thumb canvas.heatmap');
    await restored.waitFor({ timeout: 120000 });
    assert.match(await restored.getAttribute('title'), /computed from the thumbnail/);
    const peak = await restored.evaluate((c) => [Number(c.dataset.peakX), Number(c.dataset.peakY)]);
    assert.ok(peak.every((v) => v > 0 && v < 1), `the peak is a place in the photo: ${peak}`);
    assert.equal(await again.locator('.where-caption').textContent(), `where it sees ${await again.getAttribute('data-top-label')}`);
  } finally {
    await context.close();
  }
});
