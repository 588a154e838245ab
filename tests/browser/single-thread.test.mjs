// Served without COOP/COEP (--no-isolation) the page is not cross-origin isolated, so it runs the
// single-thread engine (petal-st) and says why it is slower.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { DAISY, TULIP, requireData, serve, launch, freshContext, openPage, drop, cards, screenshot, foreignRequests } from './helpers.mjs';

let server, browser;
before(async () => {
  requireData();
  server = await serve({ isolation: false });
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await server?.close();
});

test('without cross-origin isolation the single-thread engine classifies, and the page says why it is slower', async () => {
  const { context, requests } = await freshContext(browser);
  try {
    const page = await openPage(context, server.url);
    assert.equal(await page.evaluate(() => crossOriginIsolated), false);
    const info = page.locator('#engine-info');
    assert.equal(await info.getAttribute('data-build'), 'st-relaxed');
    assert.equal(await info.getAttribute('data-threads'), '1');
    assert.match(await info.textContent(), /on one thread/);
    const note = page.locator('#isolation-note');
    assert.equal(await note.isVisible(), true);
    assert.match(await note.textContent(), /single thread.*not\s+cross-origin isolated/s);

    await drop(page, [DAISY, TULIP]);
    const got = await cards(page);
    assert.deepEqual(got.map((c) => [c.name, c.state, c.top]), [
      [path.basename(DAISY), 'done', 'daisy'],
      [path.basename(TULIP), 'done', 'tulips'],
    ]);
    await screenshot(page, 'single-thread');
    assert.ok(requests.some((r) => r.url.endsWith('/engine/petal-st-relaxed.wasm')), 'the single-thread engine was loaded');
    assert.ok(!requests.some((r) => r.url.includes('petal-mt')), 'the threads build was not loaded');
    assert.deepEqual(foreignRequests(requests, server.url), []);
  } finally {
    await context.close();
  }
});
