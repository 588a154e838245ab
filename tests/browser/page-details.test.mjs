// Details a new user noticed in the page: sizes are MB of 10^6 bytes; the export message shows the
// command as code and never breaks the file name; a photo added twice is skipped with a note (and
// a label it was dropped with goes to its first card); the chart's loss axis has round ticks; a
// repeat visit makes no failed request; and every limit the page states or checks is the engine's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import {
  DAISY, ROSE, photo, repoRoot, withServerAndBrowser, serve, freshContext, openPage, waitEngine, choose, cards,
  cardOf, screenshot, tempDir, addClass,
} from './helpers.mjs';

const env = withServerAndBrowser();

const BIG_DAISY = photo('daisy/530738000_4df7e4786b.jpg');  // 206,140 bytes
const MODEL = path.join(repoRoot, 'web/model/petal.safetensors');

// The engine's own limits (wasm/petal_limits.h), asked of the single-thread engine in node.
let engineLimits;
async function limits() {
  if (!engineLimits) {
    const dir = path.join(repoRoot, 'web/engine');
    const createPetal = createRequire(import.meta.url)(path.join(dir, 'petal-st.js'));
    const M = await createPetal({ wasmBinary: fs.readFileSync(path.join(dir, 'petal-st.wasm')) });
    engineLimits = { ...M.limits() };
  }
  return engineLimits;
}

// What a user reads: MB of 10^6 bytes, one decimal.
const MB = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;

// Waits until the photo queue has nothing left and every card is finished.
async function settle(page) {
  await page.waitForFunction(() => document.body.dataset.queue === 'idle' &&
    [...document.querySelectorAll('.card')].every((c) => c.dataset.state === 'done' || c.dataset.state === 'error'));
}

test('sizes are MB of 10^6 bytes: the download progress, a photo over the limit, the export', async () => {
  const lim = await limits();
  const { context } = await freshContext(env.browser);
  const dir = tempDir('petal-sizes-');
  try {
    await context.addInitScript(() => {
      window.__downloadTexts = [];
      document.addEventListener('DOMContentLoaded', () => {
        const node = document.getElementById('download-text');
        new MutationObserver(() => window.__downloadTexts.push(node.textContent)).observe(node, { childList: true, characterData: true, subtree: true });
      });
    });
    const page = await openPage(context, env.server.url);
    const texts = await page.evaluate(() => window.__downloadTexts);
    const done = texts.find((t) => /\(100%\)/.test(t));
    assert.ok(done, `the download reached 100%: ${texts.join(' | ')}`);
    assert.ok(done.endsWith(`of ${MB(fs.statSync(MODEL).size)} (100%)`), `the model is ${fs.statSync(MODEL).size} bytes: "${done}"`);
    assert.match(await page.textContent('.drop-small'), new RegExp(`up to ${MB(lim.maxImageBytes).replace('.', '\\.')} each`));

    // A "photo" of 70,000,000 bytes (sparse: nothing is written), over the engine's limit.
    const big = path.join(dir, 'huge.jpg');
    fs.closeSync(fs.openSync(big, 'w'));
    fs.truncateSync(big, 70e6);
    assert.ok(lim.maxImageBytes < 70e6);
    await choose(page, [big]);
    assert.equal((await cardOf(page, 'huge.jpg')).message,
      `the file is too large (70.0 MB); photos up to ${MB(lim.maxImageBytes)} are accepted`);

    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
    const saved = path.join(dir, download.suggestedFilename());
    await download.saveAs(saved);
    const status = await page.textContent('#model-status');
    assert.ok(status.includes(`(${MB(fs.statSync(saved).size)})`), `the export is ${fs.statSync(saved).size} bytes: "${status}"`);
  } finally {
    await context.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the export message shows the command as code and keeps the file name on one line', async () => {
  const { context } = await freshContext(env.browser, { viewport: { width: 420, height: 900 } });
  try {
    const page = await openPage(context, env.server.url);
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
    const name = download.suggestedFilename();
    assert.match(name, /^petal-model-\d{4}-\d\d-\d\d\.safetensors$/);
    const msg = await page.evaluate(() => {
      const s = document.getElementById('model-status');
      return {
        text: s.textContent,
        code: [...s.querySelectorAll('code')].map((c) => c.textContent),
        names: [...s.querySelectorAll('.filename')].map((f) => ({ text: f.textContent, lines: f.getClientRects().length })),
      };
    });
    assert.ok(!msg.text.includes('`'), `no backticks shown: "${msg.text}"`);
    assert.deepEqual(msg.code, [`petal predict --model ${name} photo.jpg`], 'the command, with the file just saved, as code');
    assert.ok(msg.names.length >= 1 && msg.names.every((n) => n.text === name), JSON.stringify(msg.names));
    for (const n of msg.names) assert.equal(n.lines, 1, `the file name ${n.text} is on one line in a narrow window`);
    await screenshot(page, 'page-details-export');
  } finally {
    await context.close();
  }
});

test('a photo added twice is skipped with a note; the label it came with goes to its first card; also after a reload', async () => {
  const { context } = await freshContext(env.browser);
  const dir = tempDir('petal-repeat-');
  try {
    const page = await openPage(context, env.server.url);
    await choose(page, [DAISY, ROSE]);
    const daisy = path.basename(DAISY);

    // the same file again: no second card, and the page says why
    await page.setInputFiles('#file-input', [DAISY]);
    await page.waitForFunction(() => !document.getElementById('repeat-note').hidden);
    await settle(page);
    assert.deepEqual((await cards(page)).map((c) => c.name), [daisy, path.basename(ROSE)]);
    assert.equal(await page.textContent('#repeat-note'), `Skipped “${daisy}”: it was already added.`);
    assert.match(await page.textContent('#queue-status'), /^2 photos · 1 skipped \(already added\)$/);

    // the same photo under another name, dropped with "Label new photos as: daisy": the daisy's
    // card gets the label; a new batch starts a new note
    const copy = path.join(dir, 'same-daisy.jpg');
    fs.copyFileSync(DAISY, copy);
    await page.selectOption('#drop-label', 'daisy');
    await page.setInputFiles('#file-input', [copy]);
    await page.waitForFunction(() => /same-daisy/.test(document.getElementById('repeat-note').textContent));
    await settle(page);
    assert.equal(await page.textContent('#repeat-note'),
      `Skipped “same-daisy.jpg”: it is the same photo as “${daisy}”, which was already added. Its card is now labelled “daisy”.`);
    const now = await cards(page);
    assert.deepEqual(now.map((c) => [c.name, c.label]), [[daisy, 'daisy'], [path.basename(ROSE), '']]);
    await screenshot(page, 'page-details-repeat');

    // next visit: the labelled daisy comes back and is still known by its bytes
    await page.reload();
    await waitEngine(page);
    await page.waitForFunction(() => document.querySelectorAll('.card[data-state="done"]').length === 1);
    await page.selectOption('#drop-label', '');
    await page.setInputFiles('#file-input', [DAISY, ROSE]);
    await page.waitForFunction(() => !document.getElementById('repeat-note').hidden);
    await settle(page);
    assert.deepEqual((await cards(page)).map((c) => [c.name, c.label]), [[daisy, 'daisy'], [path.basename(ROSE), '']],
      'the label is kept (the repeat came with none), the rose is new');
    assert.equal(await page.textContent('#repeat-note'), `Skipped “${daisy}”: it was already added.`);

    // several at once: one note names them all
    await page.setInputFiles('#file-input', [DAISY, ROSE, copy]);
    await page.waitForFunction(() => /Skipped 3 /.test(document.getElementById('repeat-note').textContent));
    await settle(page);
    assert.equal(await page.textContent('#repeat-note'),
      `Skipped 3 photos that were already added: “${daisy}”, “${path.basename(ROSE)}”, “same-daisy.jpg”.`);
    assert.equal((await cards(page)).length, 2);
  } finally {
    await context.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// Records what the chart draws: per drawing (each starts with clearRect), its texts and their alignment.
const recordChart = () => {
  window.__charts = new Map();
  const proto = CanvasRenderingContext2D.prototype;
  const { clearRect, fillText } = proto;
  proto.clearRect = function (...a) {
    if (/^chart/.test(this.canvas.id)) (window.__charts.get(this.canvas.id) || window.__charts.set(this.canvas.id, []).get(this.canvas.id)).push([]);
    return clearRect.apply(this, a);
  };
  proto.fillText = function (text, ...a) {
    const draws = window.__charts.get(this.canvas.id);
    if (draws) draws[draws.length - 1].push({ text: String(text), align: this.textAlign });
    return fillText.call(this, text, ...a);
  };
};

// The loss axis's labels (right-aligned, top to bottom) must be 0 and equal round steps of
// 1, 2 or 5 × 10^n up to at least `top`; the accuracy axis's (left-aligned "N%") whole percents.
function assertRoundTicks(draw, top, what) {
  const loss = draw.filter((t) => t.align === 'right').map((t) => t.text);
  const acc = draw.filter((t) => t.align === 'left' && /^\d+(\.\d+)?%$/.test(t.text)).map((t) => t.text);
  const v = loss.map(Number).reverse();
  assert.ok(v.length >= 5 && v.length <= 6, `${what}: ${loss.join(' ')}`);
  assert.equal(v[0], 0, `${what}: the axis starts at 0 (${loss.join(' ')})`);
  const step = v[1];
  const mantissa = step / 10 ** Math.floor(Math.log10(step) + 1e-9);
  assert.ok([1, 2, 5].some((m) => Math.abs(mantissa - m) < 1e-9), `${what}: step ${step} is 1, 2 or 5 × 10^n (${loss.join(' ')})`);
  v.forEach((x, i) => assert.ok(Math.abs(x - i * step) < 1e-9, `${what}: tick ${loss[loss.length - 1 - i]} is ${i} × ${step}`));
  assert.ok(v[v.length - 1] >= top - 1e-9, `${what}: the axis reaches the highest loss ${top} (${loss.join(' ')})`);
  assert.deepEqual(acc.map((t) => Number.isInteger(Number(t.slice(0, -1)))), acc.map(() => true), `${what}: ${acc.join(' ')}`);
  assert.equal(acc.length, v.length, `${what}: one accuracy label per grid line`);
}

test('the training chart labels the loss axis with round numbers', async () => {
  const { context } = await freshContext(env.browser);
  try {
    await context.addInitScript(recordChart);
    const page = await openPage(context, env.server.url);

    // losses from a few runs' highest values, drawn by the page's own chart code
    for (const top of [0.3, 0.9, 1.13, 1.4, 2.7, 7]) {
      const draw = await page.evaluate(async (t) => {
        const { drawChart } = await import('./chart.js');
        const c = document.createElement('canvas');
        c.id = 'chart-test';
        c.style.cssText = 'width: 300px; height: 170px';
        document.body.append(c);
        const history = Array.from({ length: 20 }, (_, i) => ({ epoch: i + 1, loss: t * (1 - 0.7 * i / 19), accuracy: 0.5 + 0.02 * i }));
        drawChart(c, history, 20);
        c.remove();
        const draws = window.__charts.get('chart-test');
        return draws[draws.length - 1];
      }, top);
      assertRoundTicks(draw, top, `highest loss ${top}`);
    }

    // and a real training run's chart
    await choose(page, [DAISY, ROSE]);
    await page.locator('.card', { has: page.locator('.name', { hasText: path.basename(ROSE) }) }).locator('button.pred[data-label="roses"]').click();
    await page.waitForFunction(() => !document.getElementById('train').disabled);
    await page.click('#train');
    await page.waitForFunction(() => ['done', 'failed'].includes(document.body.dataset.training), null, { timeout: 180000 });
    assert.equal(await page.evaluate(() => document.body.dataset.training), 'done', await page.textContent('#train-status'));
    // each epoch's drawing shows that epoch's loss in its legend: the highest is the axis's reach
    const draws = await page.evaluate(() => window.__charts.get('chart'));
    const losses = draws.flatMap((d) => d.filter((t) => /^■ loss \d/.test(t.text)).map((t) => Number(t.text.split(' ').pop())));
    assert.ok(losses.length >= 20, `the chart was drawn after each epoch (${losses.length} losses)`);
    assertRoundTicks(draws[draws.length - 1], Math.max(...losses), 'after training');
    await screenshot(page, 'page-details-chart');
  } finally {
    await context.close();
  }
});

test('a repeat visit checks the model without a failed request or a console error, and picks up a new model', async () => {
  // A site of its own, whose model file can change: the page's files linked, the model copied.
  const root = tempDir('petal-site-');
  const web = path.join(repoRoot, 'web');
  for (const f of fs.readdirSync(web)) if (f !== 'model') fs.symlinkSync(path.join(web, f), path.join(root, f));
  fs.mkdirSync(path.join(root, 'model'));
  const model = path.join(root, 'model/petal.safetensors');
  fs.copyFileSync(MODEL, model);
  const server = await serve({ root });
  const { context } = await freshContext(env.browser);
  const failed = [], consoleErrors = [], modelAnswers = [];
  context.on('requestfailed', (r) => failed.push(`${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
  context.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  context.on('response', (r) => { if (r.url().endsWith('/model/petal.safetensors')) modelAnswers.push(`${r.request().method()} ${r.status()}`); });
  const visit = async () => {
    modelAnswers.length = 0;
    const page = await openPage(context, server.url);
    const info = await page.textContent('#engine-info');
    await page.close();
    return { info, answers: [...modelAnswers] };
  };
  try {
    const first = await visit();
    assert.deepEqual(first.answers, ['GET 200']);
    const again = await visit();
    assert.deepEqual(failed, [], 'no request failed on the repeat visit');
    assert.deepEqual(consoleErrors, [], 'no console error on the repeat visit');
    assert.deepEqual(again.answers, ['GET 304'], 'the kept model is checked, not downloaded');
    assert.match(again.info, /model loaded from this browser’s storage/);

    // a new model on the server (here: the same bytes written again, so a new date and ETag)
    const later = new Date(Date.now() + 60000);
    fs.utimesSync(model, later, later);
    const updated = await visit();
    assert.deepEqual(updated.answers, ['GET 200'], 'the new model is downloaded');
    assert.match(updated.info, /model kept in this browser for next time/);
    const afterUpdate = await visit();
    assert.deepEqual(afterUpdate.answers, ['GET 304'], 'and kept');

    assert.deepEqual(failed, [], 'no request failed, also when the model changed');
    assert.deepEqual(consoleErrors, [], 'no console error, also when the model changed');
  } finally {
    await context.close();
    await server.close();
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('every limit the page states or checks is the engine’s', async () => {
  const lim = await limits();
  const { context } = await freshContext(env.browser);
  try {
    const page = await openPage(context, env.server.url);
    assert.equal(await page.evaluate(() => document.getElementById('new-class').maxLength), lim.maxClassNameBytes);
    // a name within the field's length in characters but over the limit in bytes (2 per "é")
    assert.match(await addClass(page, 'é'.repeat(lim.maxClassNameBytes / 2 + 1)), new RegExp(`is longer than ${lim.maxClassNameBytes} bytes$`));
    // the engine's rule, not the page's: one class whatever the case of its letters
    assert.match(await addClass(page, 'Lily'), /^Added “Lily”/);
    assert.equal(await addClass(page, 'lILY'), "there is already a class 'Lily'");
    assert.equal(await addClass(page, '   '), 'a class name cannot be empty');
  } finally {
    await context.close();
  }
});

test('an engine built with other limits: the page states and checks those', async () => {
  // The single-thread engine (no isolation), its glue changed on the way so that M.limits() and
  // M.imageBytesProblem() answer a 100,000-byte photo limit and 12-byte class names, as if built
  // with those.
  const server = await serve({ isolation: false });
  // (page.route does not see the requests the page's service worker makes: keep it out)
  const { context } = await freshContext(env.browser, { serviceWorkers: 'block' });
  try {
    await context.route('**/engine/petal-st-relaxed.js', async (route) => {
      const resp = await route.fetch();
      const body = `${await resp.text()}
;(() => {
  const create = self.createPetal;
  self.createPetal = (opts) => create(opts).then((M) => {
    const real = M.limits, realBytes = M.imageBytesProblem;
    M.limits = () => ({ ...real(), maxImageBytes: 100000, maxClassNameBytes: 12 });
    M.imageBytesProblem = (n) => (n > 100000 ? \`the file is too large (\${(n / 1e6).toFixed(1)} MB); photos up to 0.1 MB are accepted\` : realBytes(n));
    return M;
  });
})();
`;
      await route.fulfill({ response: resp, body });
    });
    const page = await openPage(context, server.url);
    assert.equal(await page.locator('#engine-info').getAttribute('data-build'), 'st-relaxed');
    assert.equal(await page.evaluate(() => document.getElementById('new-class').maxLength), 12);
    assert.match(await page.textContent('.drop-small'), /up to 0\.1 MB each/);
    // (whether a name is too long is the engine's own check, class_name_problem: the test above)

    await choose(page, [DAISY, BIG_DAISY]);
    assert.equal((await cardOf(page, path.basename(DAISY))).state, 'done');
    assert.equal((await cardOf(page, path.basename(BIG_DAISY))).message, 'the file is too large (0.2 MB); photos up to 0.1 MB are accepted');

    // a card's "New class…" field takes the same limit
    const select = page.locator('.card[data-state="done"] .label-select').first();
    await select.focus();
    await select.selectOption('\u0000new');
    assert.equal(await page.locator('.card[data-state="done"] form.new-class input').first().evaluate((i) => i.maxLength), 12);
  } finally {
    await context.close();
    await server.close();
  }
});
