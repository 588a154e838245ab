// `npm run build` makes a static site; served by a plain static server (no COOP/COEP headers:
// here the dev server with --no-isolation) its service worker adds the headers, the page reloads
// once and comes back cross-origin isolated with threads.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { ROSE, repoRoot, requireData, serve, launch, freshContext, choose, cards, screenshot, foreignRequests, tempDir, waitEngine } from './helpers.mjs';

let out, server, browser;
before(async () => {
  requireData();
  out = path.join(tempDir('petal-dist-'), 'dist');
  const log = execFileSync(process.execPath, [path.join(repoRoot, 'tools/build-site.mjs'), '--out', out], { encoding: 'utf8' });
  console.log(`  ${log.trim()}`);
  server = await serve({ root: out, isolation: false });
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await server?.close();
  if (out) fs.rmSync(path.dirname(out), { recursive: true, force: true });
});

test('the built site holds the page, engine, model and service worker, but not the dev server', () => {
  for (const f of ['index.html', 'app.js', 'worker.js', 'sw.js', 'style.css', 'engine/petal-mt.js', 'engine/petal-mt.wasm',
    'engine/petal-mt.worker.js', 'engine/petal-st.js', 'engine/petal-st.wasm', 'engine/petal-mt-relaxed.wasm', 'engine/petal-st-relaxed.wasm', 'model/petal.safetensors']) {
    assert.ok(fs.existsSync(path.join(out, f)), `dist/${f}`);
  }
  assert.ok(!fs.existsSync(path.join(out, 'server.mjs')), 'the dev server is not part of the site');
  assert.match(fs.readFileSync(path.join(out, 'index.html'), 'utf8'), /<html lang="en" data-service-worker="on">/);
  assert.equal(fs.statSync(path.join(out, 'model/petal.safetensors')).size, fs.statSync(path.join(repoRoot, 'web/model/petal.safetensors')).size);
});

test('on a static host without COOP/COEP the service worker makes the page isolated (one reload) and threads run', async () => {
  const { context, requests } = await freshContext(browser);
  try {
    const page = await context.newPage();
    let navigations = 0;
    page.on('framenavigated', (f) => { if (f === page.mainFrame()) navigations++; });
    await page.goto(server.url);
    await page.waitForFunction(() => crossOriginIsolated === true, null, { timeout: 30000 });
    await waitEngine(page);
    assert.equal(navigations, 2, 'exactly one reload');
    const info = page.locator('#engine-info');
    assert.equal(await info.getAttribute('data-build'), 'mt-relaxed');
    assert.ok(Number(await info.getAttribute('data-threads')) >= 2);
    assert.equal(await page.locator('#isolation-note').isVisible(), false);
    await choose(page, [ROSE]);
    assert.equal((await cards(page))[0].top, 'roses');
    await screenshot(page, 'static-site');

    // the next visit is controlled from the start: no reload
    navigations = 0;
    await page.goto(server.url);
    await waitEngine(page);
    assert.equal(navigations, 1);
    assert.equal(await page.evaluate(() => crossOriginIsolated), true);
    assert.deepEqual(foreignRequests(requests, server.url), []);
  } finally {
    await context.close();
  }
});
