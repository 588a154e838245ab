// Issue 12's new user: a model that does not know sunflowers (`petal train` on four classes,
// `petal export --head-only`) is imported into the page and taught sunflowers from 10 photos with
// the page's own controls; then photos that neither the CLI nor the page saw are tried.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { photosDir, repoRoot, requireData, serve, launch, freshContext, openPage, choose, cards, screenshot, tempDir, addClass } from './helpers.mjs';

const OLD = ['daisy', 'dandelion', 'roses', 'tulips'];
const NEW = 'sunflowers';
const cli = path.join(repoRoot, 'build/native/tools/petal');

// Every fifth photo of a class (by name) is held out: neither trained nor taught on.
function split(cls) {
  const files = fs.readdirSync(path.join(photosDir, cls)).filter((f) => f.endsWith('.jpg')).sort();
  const held = [], rest = [];
  files.forEach((f, i) => (i % 5 === 0 ? held : rest).push(path.join(photosDir, cls, f)));
  return { held, rest };
}

let server, browser;
before(async () => {
  requireData();
  assert.ok(fs.existsSync(cli), `build the CLI first (${cli})`);
  server = await serve();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await server?.close();
});

test('a model without sunflowers, imported and taught sunflowers from 10 photos, finds them and keeps its classes', async () => {
  const dir = tempDir('petal-new-user-');
  // the CLI's side: four classes, the photos that are not held out
  const data = path.join(dir, 'four');
  for (const cls of OLD) {
    fs.mkdirSync(path.join(data, cls), { recursive: true });
    for (const f of split(cls).rest) fs.symlinkSync(f, path.join(data, cls, path.basename(f)));
  }
  const head = path.join(dir, 'four-head.safetensors'), bundle = path.join(dir, 'four-classes.safetensors');
  execFileSync(cli, ['train', data, '-o', head, '--no-augment', '--validation-split', '0'], { stdio: ['ignore', 'ignore', 'inherit'] });
  execFileSync(cli, ['export', head, '--head-only', '-o', bundle], { stdio: ['ignore', 'ignore', 'inherit'] });

  const teachPhotos = split(NEW).rest.slice(0, 10);
  const tryNew = split(NEW).held.slice(0, 30);
  const tryOld = OLD.flatMap((c) => split(c).held.slice(0, 10));
  const truth = Object.fromEntries([...tryNew.map((f) => [path.basename(f), NEW]), ...tryOld.map((f) => [path.basename(f), f.split(path.sep).at(-2)])]);

  const { context } = await freshContext(browser);
  try {
    const page = await openPage(context, server.url);
    await page.setInputFiles('#import-file', bundle);
    await page.waitForFunction(() => /Imported|Could not import/.test(document.getElementById('model-status').textContent));
    const imported = await page.textContent('#model-status');
    assert.match(imported, /^Imported four-classes\.safetensors: 4 classes \(daisy, dandelion, roses, tulips\), with 200 examples of them for teaching/);

    // the photos to try, scored by the imported model
    await choose(page, [...tryNew, ...tryOld]);
    const before = Object.fromEntries((await cards(page)).map((c) => [c.name, c.top]));

    // teach: add the class, label 10 photos with *Label new photos as*, train
    await addClass(page, NEW);
    assert.equal(await page.inputValue('#drop-label'), NEW);
    await choose(page, teachPhotos);
    await page.click('#train');
    await page.waitForFunction(() => ['done', 'failed'].includes(document.body.dataset.training), null, { timeout: 180000 });
    const status = await page.textContent('#train-status');
    assert.equal(await page.evaluate(() => document.body.dataset.training), 'done', status);
    assert.match(status, /taught from your 10 photos and 200 examples of the model.s classes/, 'the bank is the imported one');
    assert.equal(await page.textContent('#model-status'), '', 'the Imported message is gone');
    assert.equal(await page.inputValue('#drop-label'), '', 'photos dropped now are tried, not labelled');
    const estimates = await page.$$eval('#estimates li', (ls) => ls.map((l) => l.textContent));
    assert.equal(estimates.length, 5, estimates.join(' | '));
    const shown = estimates.find((e) => e.includes(NEW)) ?? '';
    const range = shown.match(/likely (\d+)–(\d+)%: checked on 10 held-out photos/);
    assert.ok(range, `the estimate says how sure it is: ${shown}`);
    if (Number(range[1]) < 70) assert.match(shown, /add more photos of sunflowers/, 'unsure: a hint says so');
    await screenshot(page, 'new-user-taught');

    const after = Object.fromEntries((await cards(page)).map((c) => [c.name, c.top]));
    const found = tryNew.filter((f) => after[path.basename(f)] === NEW).length;
    const oldBefore = tryOld.filter((f) => before[path.basename(f)] === truth[path.basename(f)]).length;
    const oldAfter = tryOld.filter((f) => after[path.basename(f)] === truth[path.basename(f)]).length;
    const stolen = tryOld.filter((f) => after[path.basename(f)] === NEW).length;
    console.log(`  ${status}\n  ${estimates.join('\n  ')}`);
    console.log(`  sunflowers found: ${found}/${tryNew.length}; old classes right: ${oldBefore} → ${oldAfter} of ${tryOld.length} (${stolen} taken for sunflowers)`);
    assert.equal(tryNew.filter((f) => before[path.basename(f)] === NEW).length, 0, 'the imported model knew no sunflowers');
    // Measured 2026-12-05: 17 of 30 found, old classes 38 → 35 (docs/fewshot.md: below issue 12's
    // targets). These bounds catch a regression; they are not the goal.
    assert.ok(found >= 15, `only ${found} of ${tryNew.length} held-out sunflowers were found`);
    assert.ok(oldAfter >= oldBefore - 4, `old classes: ${oldBefore} → ${oldAfter} of ${tryOld.length}`);
    for (const f of teachPhotos) assert.equal(after[path.basename(f)], NEW, `${path.basename(f)} was taught as ${NEW}`);
  } finally {
    await context.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
