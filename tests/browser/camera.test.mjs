// The camera: Chromium's fake camera plays a video made at test time from real daisy photos.
// Live mode names the class and says its rate; Capture turns frames into labelled photos that
// count for teaching and are kept; Stop gives the camera back. A camera that is refused, or
// that stops mid-stream, gets a plain message and the page goes on classifying dropped photos.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  ROSE, photo, repoRoot, requireData, serve, launch, freshContext, openPage, drop, waitCards, cards, cardOf,
  screenshot, waitEngine,
} from './helpers.mjs';

// Three daisy photos the shipped model calls daisy (90–98 %) also when cut to 4:3 at 320×240.
const CLASS = 'daisy';
const PHOTOS = ['1265350143_6e2b276ec9.jpg', '1150395827_6f94a5c6e4_n.jpg', '12193032636_b50ae7db35_n.jpg']
  .map((f) => photo(`${CLASS}/${f}`));
const W = 320, H = 240, FPS = 10, FRAMES_PER_PHOTO = 10;
const VIDEO = path.join(repoRoot, 'test-results', 'camera-daisies.y4m');
const FAKE_DEVICE = '--use-fake-device-for-media-stream';
const FAKE_CAMERA = ['--use-fake-ui-for-media-stream', FAKE_DEVICE, `--use-file-for-fake-video-capture=${VIDEO}`];

// RGBA frames → a YUV4MPEG2 file (4:2:0, BT.601 full range, as JPEG uses).
function writeY4m(file, frames) {
  const parts = [Buffer.from(`YUV4MPEG2 W${W} H${H} F${FPS}:1 Ip A1:1 C420jpeg\n`)];
  for (const rgba of frames) {
    const Y = Buffer.alloc(W * H), U = Buffer.alloc((W / 2) * (H / 2)), V = Buffer.alloc((W / 2) * (H / 2));
    const clamp = (v) => Math.max(0, Math.min(255, Math.round(v)));
    for (let i = 0; i < W * H; i++) {
      const r = rgba[4 * i], g = rgba[4 * i + 1], b = rgba[4 * i + 2];
      Y[i] = clamp(0.299 * r + 0.587 * g + 0.114 * b);
    }
    for (let y = 0; y < H / 2; y++) {
      for (let x = 0; x < W / 2; x++) {
        let r = 0, g = 0, b = 0;
        for (const [dx, dy] of [[0, 0], [1, 0], [0, 1], [1, 1]]) {
          const i = 4 * ((2 * y + dy) * W + 2 * x + dx);
          r += rgba[i] / 4; g += rgba[i + 1] / 4; b += rgba[i + 2] / 4;
        }
        U[y * (W / 2) + x] = clamp(128 - 0.168736 * r - 0.331264 * g + 0.5 * b);
        V[y * (W / 2) + x] = clamp(128 + 0.5 * r - 0.418688 * g - 0.081312 * b);
      }
    }
    parts.push(Buffer.from('FRAME\n'), Y, U, V);
  }
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, Buffer.concat(parts));
}

// The photos decoded by the browser itself, each filling a 320×240 frame and panned slowly, so
// the camera "moves" and no two frames are the same picture.
async function makeVideo(browser) {
  const page = await browser.newPage();
  try {
    const frames = [];
    for (const f of PHOTOS) {
      const pixels = await page.evaluate(async ({ b64, W, H, n }) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const bitmap = await createImageBitmap(new Blob([bytes]));
        const canvas = new OffscreenCanvas(W, H);
        const ctx = canvas.getContext('2d', { willReadFrequently: true });
        const s = 1.12 * Math.max(W / bitmap.width, H / bitmap.height);
        const w = bitmap.width * s, h = bitmap.height * s;
        const out = [];
        for (let k = 0; k < n; k++) {
          const t = k / (n - 1);
          ctx.drawImage(bitmap, (W - w) / 2 + (t - 0.5) * (w - W) * 0.8, (H - h) / 2 + (t - 0.5) * (h - H) * 0.8, w, h);
          const d = ctx.getImageData(0, 0, W, H).data;
          let bin = '';
          for (let i = 0; i < d.length; i += 8192) bin += String.fromCharCode(...d.subarray(i, i + 8192));
          out.push(btoa(bin));
        }
        return out;
      }, { b64: fs.readFileSync(f).toString('base64'), W, H, n: FRAMES_PER_PHOTO });
      for (const p of pixels) frames.push(Buffer.from(p, 'base64'));
    }
    writeY4m(VIDEO, frames);
    return frames.length;
  } finally {
    await page.close();
  }
}

let server, camBrowser, deniedBrowser;
before(async () => {
  requireData();
  for (const f of PHOTOS) assert.ok(fs.existsSync(f), `missing test photo ${f}`);
  server = await serve();
  // A fake camera device, but no automatic "Allow": a page that asks is refused (NotAllowedError).
  // (petal.test is the test server too, as a plain-http address that is not a secure context)
  deniedBrowser = await launch([FAKE_DEVICE, '--host-resolver-rules=MAP petal.test 127.0.0.1']);
  const n = await makeVideo(deniedBrowser);
  console.log(`  fake camera video: ${n} frames of ${W}×${H} from ${PHOTOS.length} ${CLASS} photos, ${path.relative(repoRoot, VIDEO)}`);
  camBrowser = await launch(FAKE_CAMERA);
});
after(async () => {
  await camBrowser?.close();
  await deniedBrowser?.close();
  await server?.close();
});

// Every stream the page gets, so the test can see its tracks (it does not change them).
const watchStreams = () => {
  window.__streams = [];
  const md = navigator.mediaDevices;
  if (!md) return;
  const get = md.getUserMedia.bind(md);
  md.getUserMedia = async (c) => {
    const s = await get(c);
    window.__streams.push(s);
    return s;
  };
};

// The longest task on the main thread since the last reset.
const watchLongTasks = () => {
  window.__longest = 0;
  new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__longest = Math.max(window.__longest, e.duration); })
    .observe({ type: 'longtask', buffered: true });
};

test('camera: live classes name the daisy and say the rate; Capture adds labelled photos that count for teaching', async () => {
  const { context, errors } = await freshContext(camBrowser);
  try {
    await context.addInitScript(watchStreams);
    await context.addInitScript(watchLongTasks);
    const page = await openPage(context, server.url);
    assert.equal(await page.evaluate(() => document.body.dataset.camera), 'off');
    assert.equal(await page.locator('#camera-panel').isVisible(), false);

    await page.evaluate(() => { window.__longest = 0; });
    await page.click('#camera');
    await page.waitForFunction(() => document.body.dataset.camera === 'live', null, { timeout: 30000 });
    assert.equal(await page.textContent('#camera'), 'Stop camera');
    // Every live answer from here on: the panel's top class, each time it is shown.
    await page.evaluate(() => {
      window.__tops = [];
      const list = document.getElementById('camera-live');
      new MutationObserver(() => window.__tops.push(document.getElementById('camera-panel').dataset.top)).observe(list, { childList: true });
    });
    await page.waitForFunction(() => /\d+\.\d frames\/s/.test(document.getElementById('camera-rate').textContent), null, { timeout: 60000 });
    await page.waitForTimeout(4000);
    const tops = await page.evaluate(() => window.__tops);
    const rateText = await page.textContent('#camera-rate');
    const rate = Number(await page.getAttribute('#camera-rate', 'data-rate'));
    const longest = await page.evaluate(() => window.__longest);
    console.log(`  live: ${tops.length} answers, top classes ${JSON.stringify([...new Set(tops)])}; "${rateText}"; longest main-thread task ${longest.toFixed(0)} ms`);
    assert.ok(tops.length >= 3, `live answers keep coming (${tops.length})`);
    assert.deepEqual([...new Set(tops)], [CLASS], `every live answer names ${CLASS}`);
    assert.equal(await page.locator('#camera-live .pred').count(), 3, 'three classes shown live');
    assert.ok(rate > 0 && rate <= FPS + 1, `rate ${rate}`);
    assert.ok(longest < 500, `the main thread was blocked for ${longest} ms while the camera ran`);
    assert.equal(await page.locator('.card').count(), 0, 'live frames do not become photos');
    await screenshot(page, 'camera-live');

    // Capture twice with "Label new photos as" daisy: two labelled photos, like dropped ones.
    await page.selectOption('#drop-label', CLASS);
    await page.click('#camera-capture');
    await waitCards(page, 1);
    await page.click('#camera-capture');
    await waitCards(page, 2);
    await page.waitForFunction(() => [...document.querySelectorAll('.card')].every((c) => c.dataset.label));
    const captured = await cards(page);
    assert.equal(captured.length, 2, `two photos: ${captured.map((c) => c.name).join(', ')}`);
    for (const c of captured) {
      assert.match(c.name, /^camera-.+\.jpg$/);
      assert.equal(c.state, 'done', c.message);
      assert.equal(c.label, CLASS);
      assert.equal(c.top, CLASS, `${c.name}: the model also says ${CLASS} (${c.top} ${c.probability})`);
    }
    assert.notEqual(captured[0].name, captured[1].name);
    assert.equal(await page.locator('.card img').count(), 2, 'each captured photo has a thumbnail');
    assert.match(await page.textContent('#train'), /Train on 2 labelled photos/);
    assert.equal(await page.isDisabled('#train'), false, 'Train is usable');
    assert.match(await page.textContent(`#class-list .chip[data-class="${CLASS}"]`), /2 labelled/);
    assert.equal(await page.getAttribute('#camera-live', 'aria-label'), 'What the camera sees');
    await screenshot(page, 'camera-captured');

    // Holding Space on the panel captures photos until it is let go.
    await page.focus('#camera-panel');
    await page.keyboard.down(' ');
    await page.waitForTimeout(1500);
    await page.keyboard.up(' ');
    await page.waitForTimeout(500);
    await page.waitForFunction(() => document.body.dataset.queue === 'idle', null, { timeout: 120000 });
    const held = await page.locator('.card').count();
    console.log(`  holding Space for 1.5 s captured ${held - 2} photos`);
    assert.ok(held - 2 >= 2 && held - 2 <= 7, `holding Space for 1.5 s captures a few photos, one every 0.3 s at most (${held - 2})`);
    assert.equal(await page.locator('#repeat-note').isVisible(), false, 'no frame was captured twice');
    await page.waitForTimeout(1000);
    assert.equal(await page.locator('.card').count(), held, 'capturing ends when Space is let go');
    const all = await cards(page);
    assert.ok(all.every((c) => c.label === CLASS && c.state === 'done'), JSON.stringify(all.map((c) => [c.name, c.state, c.label])));

    // Stop gives the camera back: every track ended, the picture gone.
    await page.click('#camera-stop');
    assert.equal(await page.evaluate(() => document.body.dataset.camera), 'off');
    assert.deepEqual(await page.evaluate(() => window.__streams.flatMap((s) => s.getTracks().map((t) => t.readyState))), ['ended']);
    assert.equal(await page.evaluate(() => document.getElementById('camera-video').srcObject), null);
    assert.equal(await page.locator('#camera-panel').isVisible(), false);
    assert.equal(await page.textContent('#camera'), 'Camera');

    // The captured photos are kept like dropped ones: a reload brings them back, labelled.
    await page.reload();
    await waitEngine(page);
    await page.waitForFunction((n) => document.querySelectorAll('.card[data-state="done"]').length === n, held);
    assert.match(await page.textContent('#model-status'), new RegExp(`Restored ${held} labelled photos`));
    assert.ok((await cards(page)).every((c) => c.label === CLASS && /^camera-/.test(c.name)));
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test('camera: taken away mid-stream, the page says so and goes on', async () => {
  const { context, errors } = await freshContext(camBrowser);
  try {
    await context.addInitScript(watchStreams);
    const page = await openPage(context, server.url);
    await page.click('#camera');
    await page.waitForFunction(() => document.body.dataset.camera === 'live', null, { timeout: 30000 });
    await page.waitForFunction(() => document.getElementById('camera-panel').dataset.top, null, { timeout: 60000 });
    // Chromium has no way to unplug its fake camera, so the test sends the track's own 'ended'
    // event, which a browser fires when the camera is unplugged or taken by another program.
    await page.evaluate(() => window.__streams[0].getVideoTracks()[0].dispatchEvent(new Event('ended')));
    await page.waitForFunction(() => document.body.dataset.camera === 'failed');
    const msg = await page.textContent('#camera-msg');
    console.log(`  mid-stream: "${msg}"`);
    assert.match(msg, /^The camera stopped: .*Press Camera to start it again\.$/);
    assert.equal(await page.locator('#camera-msg').isVisible(), true);
    assert.equal(await page.locator('#camera-panel').isVisible(), false);
    assert.deepEqual(await page.evaluate(() => window.__streams.flatMap((s) => s.getTracks().map((t) => t.readyState))), ['ended'], 'the page let the camera go');
    await drop(page, [ROSE]);
    assert.equal((await cardOf(page, path.basename(ROSE))).top, 'roses');
    // and the camera can be started again
    await page.click('#camera');
    await page.waitForFunction(() => document.body.dataset.camera === 'live', null, { timeout: 30000 });
    assert.equal(await page.locator('#camera-msg').isVisible(), false, 'the old message goes');
    await page.click('#camera');
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});

test('camera: refused, or not offered to an insecure page: a plain message, and dropped photos are still classified', async () => {
  const { context, errors } = await freshContext(deniedBrowser);
  try {
    const page = await openPage(context, server.url);
    await page.click('#camera');
    await page.waitForFunction(() => document.body.dataset.camera === 'failed', null, { timeout: 30000 });
    const msg = await page.textContent('#camera-msg');
    console.log(`  refused: "${msg}"`);
    assert.match(msg, /^The camera was not allowed\. .*allow the camera for this site/);
    assert.equal(await page.getAttribute('#camera-msg', 'data-kind'), 'error');
    assert.equal(await page.locator('#camera-panel').isVisible(), false);
    assert.equal(await page.textContent('#camera'), 'Camera');
    assert.equal(await page.isDisabled('#camera'), false, 'the user can try again');
    await drop(page, [ROSE]);
    const rose = await cardOf(page, path.basename(ROSE));
    assert.equal(rose.state, 'done');
    assert.equal(rose.top, 'roses');
    await screenshot(page, 'camera-refused');

    // Served from an address that is neither https nor localhost, the page gets no camera at all.
    const insecure = server.url.replace('127.0.0.1', 'petal.test');
    const other = await openPage(context, insecure);
    assert.equal(await other.evaluate(() => isSecureContext || !!navigator.mediaDevices), false);
    await other.click('#camera');
    await other.waitForFunction(() => document.body.dataset.camera === 'failed');
    const why = await other.textContent('#camera-msg');
    console.log(`  insecure page: "${why}"`);
    assert.match(why, /cannot use a camera here: .*https:\/\/ or from localhost/);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
  }
});
