// The page offers both engines: int8 convolutions (the default: faster, as accurate on held-out
// photos) and fp32 (what the native CLI computes). The choice is a button on the engine line; it is
// remembered, and ?engine=int8|fp32 overrides it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { DAISY, ROSE, TULIP, withServerAndBrowser, freshContext, openPage, waitEngine, choose, cards } from './helpers.mjs';

const env = withServerAndBrowser();

const photos = [DAISY, ROSE, TULIP];
const scores = async (page) => Object.fromEntries((await cards(page)).map((c) => [c.name, c]));

test('int8 by default; fp32 chosen with its button, remembered across visits; same answers within a few percent', async () => {
  const { context } = await freshContext(env.browser);
  try {
    const page = await openPage(context, env.server.url);
    const info = page.locator('#engine-info');
    assert.equal(await info.getAttribute('data-precision'), 'int8', 'int8 is the default');
    assert.match(await info.textContent(), /int8/);
    assert.match(await page.textContent('#precision'), /fp32/);
    await choose(page, photos);
    const int8 = await scores(page);
    assert.deepEqual(photos.map((f) => int8[path.basename(f)].top), ['daisy', 'roses', 'tulips']);

    await Promise.all([page.waitForNavigation(), page.click('#precision')]);
    await waitEngine(page);
    assert.equal(await page.locator('#engine-info').getAttribute('data-precision'), 'fp32');
    assert.match(await page.locator('#engine-info').textContent(), /fp32/);
    await choose(page, photos);
    const fp32 = await scores(page);
    console.log(`  fp32 vs int8: ${photos.map((f) => `${fp32[path.basename(f)].top} ${fp32[path.basename(f)].probability.toFixed(4)}/${int8[path.basename(f)].probability.toFixed(4)}`).join(', ')}`);
    for (const f of photos) {
      const a = fp32[path.basename(f)], b = int8[path.basename(f)];
      assert.equal(b.top, a.top, `${b.name}: int8 says ${b.top}, fp32 ${a.top}`);
      assert.ok(Math.abs(b.probability - a.probability) < 0.05, `${b.name}: int8 ${b.probability} vs fp32 ${a.probability}`);
      assert.notEqual(b.probability, a.probability, 'the int8 engine really ran (its numbers differ from fp32 a little)');
    }

    // Remembered: a plain visit runs fp32 again; the URL overrides the stored choice.
    const again = await context.newPage();
    await again.goto(env.server.url);
    await waitEngine(again);
    assert.equal(await again.locator('#engine-info').getAttribute('data-precision'), 'fp32');
    await again.goto(`${env.server.url}?engine=int8`);
    await waitEngine(again);
    assert.equal(await again.locator('#engine-info').getAttribute('data-precision'), 'int8');
  } finally {
    await context.close();
  }
});
