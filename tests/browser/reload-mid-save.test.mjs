// A reload in the middle of a save never corrupts what was saved before (issue 6).
//
// The page saves each labelled example, and each newly trained head (a new record plus the flip
// of the "current head" pointer), in one IndexedDB transaction. To reload while such a write is
// really in flight, an init script holds the transaction open: once the page's own requests of
// the save have all succeeded, it keeps issuing harmless reads in the same transaction, so it
// cannot commit. The test reloads at that moment (having checked that the transaction has not
// completed) and then checks that the earlier saved state came back whole: the same examples, the
// same head (same bytes, same answers for the same photos), no stray head record, no error; and
// that the store still takes new saves.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { DAISY, photo, requireData, serve, launch, freshContext, openPage, choose, cards, waitEngine, screenshot, addClass } from './helpers.mjs';

// Close-ups of sunflower heads (they sit together in feature space, see teach.test.mjs): three
// make the saved state, the fourth is the example whose save is interrupted, then saved for real.
const CLOSE_UPS = ['22183521655_56221bf2a4_n.jpg', '4745980581_a0b7585258_n.jpg', '2960610406_b61930727f_n.jpg',
  '5994572653_ea98afa3af_n.jpg'].map((f) => photo(`sunflowers/${f}`));
const NEW_CLASS = 'close-up';
const base = (f) => path.basename(f);

let server, browser;
before(async () => {
  requireData();
  for (const f of CLOSE_UPS) assert.ok(fs.existsSync(f), `missing test photo ${f}`);
  server = await serve();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await server?.close();
});

// Runs in the page before its own scripts. Armed with `window.__hold = 'examples' | 'heads'`, it
// holds the next read-write transaction on that store: from its creation it issues count()
// requests one after another in that transaction, so it cannot commit; the page's own requests in
// it run as usual. `written` turns true once the page has issued at least one write and every
// request it issued has succeeded (requests run in order, and the page can only add requests from
// their success handlers, so at that point the save is complete except for the commit).
// `window.__held` says what it saw.
function holdHook() {
  window.__hold = null;
  window.__held = null;
  const held = new WeakMap();
  const transaction = IDBDatabase.prototype.transaction;
  const count = IDBObjectStore.prototype.count;
  IDBDatabase.prototype.transaction = function (names, mode, ...rest) {
    const tx = transaction.call(this, names, mode, ...rest);
    const stores = typeof names === 'string' ? [names] : [...names];
    if (mode === 'readwrite' && window.__hold && stores.includes(window.__hold)) {
      const rec = { target: window.__hold, stores, requests: [], pending: 0, state: 'open', written: false, keptAlive: 0 };
      window.__hold = null;
      window.__held = rec;
      held.set(tx, rec);
      tx.addEventListener('complete', () => { rec.state = 'complete'; });
      tx.addEventListener('abort', () => { rec.state = 'aborted'; });
      const store = tx.objectStore(stores[0]);
      const again = () => {
        rec.keptAlive++;
        if (rec.pending === 0 && rec.requests.some((r) => /^(put|add|delete)/.test(r))) rec.written = true;
        count.call(store).onsuccess = again;
      };
      count.call(store).onsuccess = again;
    }
    return tx;
  };
  for (const method of ['put', 'add', 'delete', 'get', 'getAll', 'getAllKeys', 'clear', 'count']) {
    const original = IDBObjectStore.prototype[method];
    IDBObjectStore.prototype[method] = function (...args) {
      const req = original.apply(this, args);
      const rec = held.get(this.transaction);
      if (rec) {
        rec.requests.push(`${method} ${this.name}`);
        rec.pending++;
        req.addEventListener('success', () => { rec.pending--; });
      }
      return req;
    };
  }
}

// What IndexedDB holds, read through a second connection: example ids, head ids, the current
// head pointer and a SHA-256 of the current head's bytes.
function idbState(page) {
  return page.evaluate(() => new Promise((resolve, reject) => {
    const open = indexedDB.open('petal');
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const db = open.result;
      const tx = db.transaction(['examples', 'heads', 'meta'], 'readonly');
      const out = {};
      tx.objectStore('examples').getAll().onsuccess = (e) => {
        out.examples = e.target.result.map((x) => ({ id: x.id, name: x.name, label: x.label, features: x.features.byteLength }))
          .sort((a, b) => (a.id < b.id ? -1 : 1));
      };
      tx.objectStore('heads').getAll().onsuccess = (e) => { out.heads = e.target.result; };
      tx.objectStore('meta').get('currentHead').onsuccess = (e) => { out.current = e.target.result ? e.target.result.headId : null; };
      tx.onerror = () => reject(tx.error);
      tx.oncomplete = async () => {
        db.close();
        const head = out.heads.find((h) => h.id === out.current);
        out.headBytes = head ? head.bytes.byteLength : 0;
        out.headSha = head ? [...new Uint8Array(await crypto.subtle.digest('SHA-256', head.bytes))].map((b) => b.toString(16).padStart(2, '0')).join('') : '';
        out.headClasses = head ? head.classNames : null;
        out.heads = out.heads.map((h) => h.id).sort();
        resolve(out);
      };
    };
  }));
}

async function scores(page) {
  return page.$$eval('.card[data-state="done"]', (cs) => Object.fromEntries(cs.map((c) => [
    c.querySelector('.name').textContent,
    { label: c.dataset.label, top: c.dataset.topLabel, probability: Number(c.dataset.topProbability),
      bars: [...c.querySelectorAll('.pred')].map((b) => `${b.dataset.label} ${b.querySelector('.pct').textContent}`) },
  ])));
}

function assertSameScores(expected, got, what) {
  assert.deepEqual(Object.keys(got).sort(), Object.keys(expected).sort(), `${what}: the same photos`);
  for (const k of Object.keys(expected)) {
    assert.equal(got[k].label, expected[k].label, `${what}: ${k} label`);
    assert.equal(got[k].top, expected[k].top, `${what}: ${k} top class`);
    assert.ok(Math.abs(got[k].probability - expected[k].probability) < 1e-6, `${what}: ${k} probability ${expected[k].probability} vs ${got[k].probability}`);
    assert.deepEqual(got[k].bars, expected[k].bars, `${what}: ${k} bars`);
  }
}

const pick = (all, names) => Object.fromEntries(names.map((n) => [n, all[n]]));

async function train(page) {
  await page.evaluate(() => { document.body.dataset.training = ''; });
  await page.click('#train');
  await page.waitForFunction(() => ['done', 'failed'].includes(document.body.dataset.training), null, { timeout: 180000 });
  assert.equal(await page.evaluate(() => document.body.dataset.training), 'done', await page.textContent('#train-status'));
}

// Wait until the held transaction has run all the page's requests, check it is still open, and
// reload right then.
async function reloadMidSave(page) {
  await page.waitForFunction(() => window.__held && window.__held.written, null, { timeout: 180000 });
  const held = await page.evaluate(() => ({ ...window.__held }));
  assert.equal(held.state, 'open', 'the save has not completed when the page reloads');
  await page.reload();
  await waitEngine(page);
  return held;
}

async function waitRestored(page, n) {
  await page.waitForFunction((k) => document.querySelectorAll('.card[data-state="done"]').length >= k, n);
}

async function noErrorShown(page, pageErrors, what) {
  assert.equal(await page.isVisible('#storage-note'), false, `${what}: no storage note (${await page.textContent('#storage-note')})`);
  assert.equal(await page.isVisible('#fatal'), false, `${what}: no fatal error`);
  assert.deepEqual(pageErrors, [], `${what}: no page errors`);
}

test('a reload in the middle of a save keeps what was saved before, and saving still works', async () => {
  const { context, errors } = await freshContext(browser);
  const pageErrors = [];
  try {
    await context.addInitScript(holdHook);
    const page = await openPage(context, server.url);
    page.on('pageerror', (e) => pageErrors.push(e.message));

    // ---- the saved state: a new class from three photos, trained ---------------------------
    await addClass(page, NEW_CLASS);
    await choose(page, CLOSE_UPS.slice(0, 3));
    await page.selectOption('#drop-label', '');
    await choose(page, [DAISY]);  // scored, not labelled, never kept
    await train(page);
    const saved1 = await idbState(page);
    assert.deepEqual(saved1.examples.map((e) => e.name).sort(), CLOSE_UPS.slice(0, 3).map(base).sort());
    assert.equal(saved1.heads.length, 1, 'one head record');
    assert.equal(saved1.current, saved1.heads[0], 'the pointer names it');
    assert.ok(saved1.headClasses.includes(NEW_CLASS));
    const scores1 = await scores(page);
    for (const f of CLOSE_UPS.slice(0, 3)) assert.equal(scores1[base(f)].top, NEW_CLASS, `${base(f)} is a ${NEW_CLASS} for the trained head`);
    const labelled1 = CLOSE_UPS.slice(0, 3).map(base);

    // ---- reload while a new labelled example is being written ------------------------------
    await page.selectOption('#drop-label', NEW_CLASS);
    await page.evaluate(() => { window.__hold = 'examples'; });
    await page.setInputFiles('#file-input', [CLOSE_UPS[3]]);
    let held = await reloadMidSave(page);
    console.log(`  reloaded while the example's transaction was open (${held.keptAlive} reads kept it open)`);
    await waitRestored(page, 3);
    assert.deepEqual(await idbState(page), saved1, 'after the interrupted example: IndexedDB holds what it held before');
    assert.deepEqual(held.requests, ['put examples'], 'the held transaction is the example\'s save');
    assert.deepEqual((await cards(page)).map((c) => c.name), labelled1, 'the three saved examples, in order, and not the interrupted one');
    assertSameScores(pick(scores1, labelled1), await scores(page), 'after the interrupted example');
    assert.match(await page.textContent('#model-status'), /Restored 3 labelled photos and your trained model/);
    await choose(page, [DAISY]);
    assertSameScores(scores1, await scores(page), 'after the interrupted example, a photo scored again');
    await noErrorShown(page, pageErrors, 'after the interrupted example');

    // ---- reload while a retrained head is being written -----------------------------------
    await page.selectOption('#drop-label', NEW_CLASS);
    await choose(page, [CLOSE_UPS[3]]);  // saved for real this time
    await page.waitForFunction(() => !document.querySelector('.card[data-state="working"], .card[data-state="waiting"]'));
    let saved2;
    for (let i = 0; i < 100 && (saved2 = await idbState(page)).examples.length < 4; i++) await page.waitForTimeout(100);
    assert.equal(saved2.examples.length, 4, 'the fourth example is saved');
    assert.equal(saved2.current, saved1.current, 'with the same head');
    const scores2 = await scores(page);  // the saved head's answers for 4 labelled photos and the daisy
    await page.evaluate(() => { window.__hold = 'heads'; });
    await page.click('#train');
    await page.waitForFunction(() => window.__held && window.__held.written, null, { timeout: 180000 });
    // the retrained head is in use on the page, so the test can tell which head comes back
    const retrained = await scores(page);
    assert.ok(Object.keys(scores2).some((k) => Math.abs(retrained[k].probability - scores2[k].probability) > 1e-4),
      'the retrained head answers differently from the saved one');
    assert.equal(await page.evaluate(() => document.body.dataset.training), 'running', 'the page is still saving the head');
    held = await reloadMidSave(page);
    console.log(`  reloaded while the head's transaction was open (${held.keptAlive} reads kept it open)`);
    await waitRestored(page, 4);
    const after2 = await idbState(page);
    assert.deepEqual(after2, saved2, 'after the interrupted head: the same examples, pointer, head bytes, and no stray head record');
    // (checked after the state, so that a save split over transactions fails on what it broke)
    assert.deepEqual(held.requests, ['put heads', 'get meta', 'put meta', 'delete heads'],
      'the held transaction wrote the new head, flipped the pointer and deleted the old head');
    const labelled2 = CLOSE_UPS.map(base);
    assert.deepEqual((await cards(page)).map((c) => c.name), labelled2);
    assertSameScores(pick(scores2, labelled2), await scores(page), 'after the interrupted head');
    assert.match(await page.textContent('#model-status'), /Restored 4 labelled photos and your trained model/);
    await choose(page, [DAISY]);
    assertSameScores(scores2, await scores(page), 'after the interrupted head, a photo scored again');
    await noErrorShown(page, pageErrors, 'after the interrupted head');
    await screenshot(page, 'reload-mid-save');

    // ---- the store still takes saves -------------------------------------------------------
    await train(page);
    const saved3 = await idbState(page);
    assert.equal(saved3.examples.length, 4);
    assert.equal(saved3.heads.length, 1, 'the new head replaced the old record');
    assert.notEqual(saved3.current, saved2.current, 'the pointer names the new head');
    assert.equal(saved3.current, saved3.heads[0]);
    const scores3 = await scores(page);
    await page.reload();
    await waitEngine(page);
    await waitRestored(page, 4);
    assert.deepEqual(await idbState(page), saved3);
    assertSameScores(pick(scores3, labelled2), await scores(page), 'after a completed save and a reload');
    await noErrorShown(page, pageErrors, 'after a completed save');
    assert.deepEqual(errors, [], 'no uncaught errors in the browser');
  } finally {
    await context.close();
  }
});
