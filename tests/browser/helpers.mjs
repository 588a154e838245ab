// Shared by the browser tests: a Petal server on a free port, headless Debian Chromium through
// playwright-core, real photos from the data folder, and a few page actions a user would do.
import { before, after } from 'node:test';
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer } from '../../web/server.mjs';

import { repoRoot, dataDir } from '../../tools/paths.mjs';

export { repoRoot, dataDir } from '../../tools/paths.mjs';
export const photosDir = path.join(dataDir, 'flower_photos');
export const shotsDir = path.join(repoRoot, 'test-results', 'screenshots');
fs.mkdirSync(shotsDir, { recursive: true });

export const photo = (rel) => path.join(photosDir, rel);

// Photos the tests use (real photos from the flower_photos set).
export const DAISY = photo('daisy/100080576_f52e8ee070_n.jpg');
export const ROSE = photo('roses/10090824183_d02c613f10_m.jpg');
export const TULIP = photo('tulips/100930342_92e8746431_n.jpg');

export function requireData() {
  for (const f of [DAISY, ROSE, TULIP]) {
    if (!fs.existsSync(f)) throw new Error(`test photo ${f} is missing: set PETAL_DATA to the folder that holds flower_photos/`);
  }
  for (const f of ['engine/petal-mt.wasm', 'engine/petal-st.wasm', 'engine/petal-mt-relaxed.wasm', 'engine/petal-st-relaxed.wasm', 'model/petal.safetensors']) {
    if (!fs.existsSync(path.join(repoRoot, 'web', f))) throw new Error(`web/${f} is missing: run tools/build.sh wasm wasm-relaxed (engines) and make the model first`);
  }
}

// A Petal server on a free port (or opts.port); server is node's http.Server, for tests that watch it.
export async function serve(opts = {}) {
  const { server, url } = await startServer({ port: 0, host: '127.0.0.1', ...opts });
  return { url, server, close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }) };
}

export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run'];

// extraArgs: more Chromium flags (e.g. the fake camera's, in camera.test.mjs).
export async function launch(extraArgs = []) {
  return chromium.launch({ executablePath: process.env.PETAL_CHROMIUM || '/usr/bin/chromium', headless: true, args: [...CHROMIUM_ARGS, ...extraArgs] });
}

// A fresh browser profile (context) whose every request is recorded, with page errors collected.
export async function freshContext(browser, opts = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true, ...opts });
  const requests = [];
  const errors = [];
  context.on('request', (r) => requests.push({ url: r.url(), method: r.method() }));
  context.on('weberror', (e) => errors.push(String(e.error())));
  return { context, requests, errors };
}

// Open the page and wait for the engine (or its failure).
export async function openPage(context, url, { timeout = 120000 } = {}) {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.log(`  page error: ${e.message}`));
  const t0 = Date.now();
  await page.goto(url);
  await waitEngine(page, timeout);
  page.readyMs = Date.now() - t0;
  return page;
}

export async function waitEngine(page, timeout = 120000) {
  await page.waitForFunction(() => document.body.dataset.engine && document.body.dataset.engine !== 'loading', null, { timeout });
  const state = await page.evaluate(() => document.body.dataset.engine);
  if (state !== 'ready') throw new Error(`the page did not start: ${await page.textContent('#fatal')}`);
}

// Type a class name into *Add class* and submit it; waits for the engine's answer (the name checked
// by class_name_problem) and returns the message the page shows.
export async function addClass(page, name) {
  await page.fill('#new-class', name);
  await page.click('#add-class button');
  await page.waitForFunction(() => document.getElementById('add-class-msg').dataset.kind !== undefined);
  return page.textContent('#add-class-msg');
}

// Choose files through the page's file input, then wait until every card is finished.
export async function choose(page, files) {
  const before = await page.locator('.card').count();
  await page.setInputFiles('#file-input', files);
  await waitCards(page, before + files.length);
}

// Drop files on the drop zone the way a browser does: a DataTransfer holding File objects.
export async function drop(page, files) {
  const before = await page.locator('.card').count();
  const payload = files.map((f) => ({
    name: typeof f === 'string' ? path.basename(f) : f.name,
    type: typeof f === 'string' ? '' : f.mimeType || '',
    b64: (typeof f === 'string' ? fs.readFileSync(f) : f.buffer).toString('base64'),
  }));
  const dt = await page.evaluateHandle((items) => {
    const d = new DataTransfer();
    for (const it of items) {
      const bin = atob(it.b64);
      const u8 = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) u8[i] = bin.charCodeAt(i);
      d.items.add(new File([u8], it.name, { type: it.type }));
    }
    return d;
  }, payload);
  await page.dispatchEvent('#drop', 'dragenter', { dataTransfer: dt });
  await page.dispatchEvent('#drop', 'dragover', { dataTransfer: dt });
  await page.dispatchEvent('#drop', 'drop', { dataTransfer: dt });
  await waitCards(page, before + files.length);
}

export async function waitCards(page, count, timeout = 180000) {
  await page.waitForFunction((n) => {
    const cards = [...document.querySelectorAll('.card')];
    return cards.length >= n && cards.every((c) => c.dataset.state === 'done' || c.dataset.state === 'error');
  }, count, { timeout });
}

// [{name, state, top, probability, label, message}] in page order.
export async function cards(page) {
  return page.$$eval('.card', (cs) => cs.map((c) => ({
    name: c.querySelector('.name').textContent,
    state: c.dataset.state,
    top: c.dataset.topLabel,
    probability: Number(c.dataset.topProbability || 0),
    label: c.dataset.label,
    message: c.querySelector('.msg').textContent,
    predictions: [...c.querySelectorAll('.pred')].map((b) => b.dataset.label),
  })));
}

export async function cardOf(page, name) {
  const all = await cards(page);
  const c = all.find((x) => x.name === name);
  if (!c) throw new Error(`no card for ${name}; cards: ${all.map((x) => x.name).join(', ')}`);
  return c;
}

export async function screenshot(page, name) {
  const file = path.join(shotsDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

// Requests that left the page's origin (blob: URLs the page made itself are its own).
export function foreignRequests(requests, url) {
  const origin = new URL(url).origin;
  return requests.filter((r) => !r.url.startsWith(origin + '/') && !r.url.startsWith(`blob:${origin}/`));
}

export function tempDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

// One dev server and one Chromium for a test file: `const env = withServerAndBrowser();` then
// `env.server.url`, `env.browser` inside the tests.
export function withServerAndBrowser(serverOpts = {}) {
  const env = { server: null, browser: null };
  before(async () => {
    requireData();
    env.server = await serve(serverOpts);
    env.browser = await launch();
  });
  after(async () => {
    await env.browser?.close();
    await env.server?.close();
  });
  return env;
}
