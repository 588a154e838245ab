// Export as ONNX, through the page: the button downloads the whole classifier (network + the
// current head, with the classes taught in the page), and that file, run by onnxruntime-web in
// the same browser and by onnxruntime-node, gives the page's own probabilities for the page's
// photos, within 1e-4: with the model as shipped, and after teaching it a new class. Each photo's
// input is the engine's (decoded, resized, preprocessed by the same wasm engine: M.inputOf). The
// exported network is fp32, so the page runs its fp32 engine here (its default int8 one answers
// within a few tenths of a percent: precision.test.mjs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as ortNode from 'onnxruntime-node';
import { photo, photosDir, repoRoot, withServerAndBrowser, freshContext, openPage, choose, screenshot, tempDir, addClass } from './helpers.mjs';
import { loadPetal } from '../node/support.mjs';

const env = withServerAndBrowser();

const TOL = 1e-4;
// Two photos of each shipped class (the first ones of each folder), and five close-ups of
// sunflower heads (from teach.test.mjs) to teach a new class.
const CHECK = ['daisy', 'dandelion', 'roses', 'sunflowers', 'tulips'].flatMap((c) =>
  fs.readdirSync(path.join(photosDir, c)).filter((f) => f.endsWith('.jpg')).sort().slice(0, 2).map((f) => path.join(photosDir, c, f)));
const CLOSE_UPS = ['22183521655_56221bf2a4_n.jpg', '4745980581_a0b7585258_n.jpg', '2960610406_b61930727f_n.jpg',
  '5994572653_ea98afa3af_n.jpg', '9610374042_bb16cded3d.jpg'].map((f) => photo(`sunflowers/${f}`));
const NEW_CLASS = 'sunflower-close-up';
const ORT_DIST = path.join(repoRoot, 'node_modules/onnxruntime-web/dist');

// The ONNX file's metadata_props (ModelProto field 14: key 1, value 2), read from its protobuf.
function onnxMetadata(buf) {
  const out = {};
  const walk = (b, onField) => {
    let i = 0;
    const varint = () => {
      let v = 0, m = 1, x;
      do { x = b[i++]; v += (x & 0x7f) * m; m *= 128; } while (x & 0x80);
      return v;
    };
    while (i < b.length) {
      const key = varint(), field = Math.floor(key / 8), wire = key & 7;
      if (wire === 0) varint();
      else if (wire === 5) i += 4;
      else if (wire === 2) { const n = varint(); onField(field, b.subarray(i, i + n)); i += n; }
      else throw new Error(`unexpected wire type ${wire}`);
    }
  };
  walk(buf, (field, v) => {
    if (field !== 14) return;
    const kv = {};
    walk(v, (f, s) => { kv[f] = Buffer.from(s).toString('utf8'); });
    out[kv[1]] = kv[2];
  });
  return out;
}

// Every card's shown classes with the page's probabilities (full precision): {name: {label: p}}.
async function pageProbabilities(page) {
  return page.$$eval('.card[data-state="done"]', (cs) => Object.fromEntries(cs.map((c) => [
    c.querySelector('.name').textContent,
    Object.fromEntries([...c.querySelectorAll('.pred')].map((b) => [b.dataset.label, Number(b.dataset.probability)])),
  ])));
}

// Click Export as ONNX and take the download; returns {file, name, message}.
async function exportThroughPage(page, dir) {
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: 120000 }), page.click('#export-onnx')]);
  const file = path.join(dir, download.suggestedFilename());
  await download.saveAs(file);
  await page.waitForFunction(() => /Exported .*\.onnx|failed/.test(document.getElementById('model-status').textContent));
  return { file, name: download.suggestedFilename(), message: await page.textContent('#model-status') };
}

let petal;  // the single-thread wasm engine in node, for the photos' inputs
async function inputs(files, size) {
  petal ??= await loadPetal('st', 1);
  const per = size * size * 3, x = new Float32Array(files.length * per);
  files.forEach((f, i) => x.set(petal.inputOf(fs.readFileSync(f), size, size), i * per));
  return x;
}

// The file run by onnxruntime-web (wasm backend) inside the page: served same-origin (the page is
// cross-origin isolated) under made-up paths, with the photos' inputs.
async function runInPage(page, onnxFile, x, shape) {
  await page.route('**/__test/onnx/model.onnx', (r) => r.fulfill({ body: fs.readFileSync(onnxFile), contentType: 'application/octet-stream' }));
  await page.route('**/__test/onnx/inputs.f32', (r) => r.fulfill({ body: Buffer.from(x.buffer, x.byteOffset, x.byteLength), contentType: 'application/octet-stream' }));
  const result = await page.evaluate(async (dims) => {
    const ort = await import('/__test/ort/ort.wasm.min.mjs');
    ort.env.wasm.wasmPaths = `${location.origin}/__test/ort/`;
    ort.env.wasm.numThreads = 1;
    const bytes = new Uint8Array(await (await fetch('/__test/onnx/model.onnx')).arrayBuffer());
    const input = new Float32Array(await (await fetch('/__test/onnx/inputs.f32')).arrayBuffer());
    const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'] });
    const t = performance.now();
    const r = await session.run({ input: new ort.Tensor('float32', input, dims) });
    const ms = performance.now() - t;
    await session.release();
    return { probabilities: Array.from(r.probabilities.data), dims: r.probabilities.dims, ms };
  }, shape);
  await page.unroute('**/__test/onnx/model.onnx');
  await page.unroute('**/__test/onnx/inputs.f32');
  return result;
}

// The exported file against the page, in node and in the page: returns the worst difference.
async function check(page, exported, what) {
  const shown = await pageProbabilities(page);
  const names = Object.keys(shown);
  const files = names.map((n) => [...CHECK, ...CLOSE_UPS].find((f) => path.basename(f) === n));
  assert.ok(files.every(Boolean), `${what}: a file for every card`);
  const classes = JSON.parse(onnxMetadata(fs.readFileSync(exported.file))['petal.class_names']);
  const session = await ortNode.InferenceSession.create(exported.file);
  assert.deepEqual(session.outputNames, ['features', 'probabilities']);
  const size = session.inputMetadata[0].shape[1];
  const shape = [files.length, size, size, 3];
  const x = await inputs(files, size);
  const node = (await session.run({ input: new ortNode.Tensor('float32', x, shape) })).probabilities;
  await session.release();
  assert.deepEqual(node.dims, [files.length, classes.length]);
  const web = await runInPage(page, exported.file, x, shape);
  assert.deepEqual(web.dims, node.dims);
  let worst = 0, compared = 0;
  names.forEach((n, i) => {
    const row = (a) => Array.from(a.slice(i * classes.length, (i + 1) * classes.length));
    const [pn, pw] = [row(node.data), row(web.probabilities)];
    const top = Object.entries(shown[n]).sort((a, b) => b[1] - a[1])[0][0];
    assert.equal(classes[pn.indexOf(Math.max(...pn))], top, `${what}: ${n}: onnxruntime-node's top class is the page's`);
    assert.equal(classes[pw.indexOf(Math.max(...pw))], top, `${what}: ${n}: onnxruntime-web's top class is the page's`);
    for (const [label, p] of Object.entries(shown[n])) {
      const c = classes.indexOf(label);
      assert.ok(c >= 0, `${what}: the file knows the class ${label}`);
      for (const [runtime, q] of [['onnxruntime-node', pn[c]], ['onnxruntime-web', pw[c]]]) {
        assert.ok(Math.abs(q - p) <= TOL, `${what}: ${n}: ${label}: ${runtime} ${q} vs the page ${p}`);
        worst = Math.max(worst, Math.abs(q - p));
        compared++;
      }
    }
  });
  console.log(`  ${what}: ${exported.name}, ${(fs.statSync(exported.file).size / 1e6).toFixed(1)} MB; ${compared} probabilities of ` +
    `${names.length} photos, largest difference from the page ${worst.toExponential(2)}; onnxruntime-web ran them in ${web.ms.toFixed(0)} ms`);
  return { classes, worst };
}

test('Export as ONNX: the downloaded file gives the page\'s probabilities in onnxruntime-web and onnxruntime-node, shipped and taught', async () => {
  const { context, errors } = await freshContext(env.browser, { serviceWorkers: 'block' });
  const dir = tempDir('petal-onnx-export-');
  try {
    // onnxruntime-web's files, same-origin for the isolated page
    await context.route('**/__test/ort/*', (r) => {
      const f = path.join(ORT_DIST, path.basename(new URL(r.request().url()).pathname));
      if (!fs.existsSync(f)) return r.fulfill({ status: 404 });
      return r.fulfill({ body: fs.readFileSync(f), contentType: f.endsWith('.wasm') ? 'application/wasm' : 'text/javascript' });
    });
    const page = await openPage(context, `${env.server.url}?engine=fp32`);
    assert.equal(await page.textContent('#export-onnx'), 'Export as ONNX');
    await choose(page, CHECK);

    // the model as shipped
    const shipped = await exportThroughPage(page, dir);
    assert.equal(shipped.name, 'petal-daisy-dandelion-roses-sunflowers-tulips.onnx');
    const size = fs.statSync(shipped.file).size;
    assert.match(shipped.message, new RegExp(`^Exported ${shipped.name.replace(/\./g, '\\.')} \\(${(size / 1e6).toFixed(1)}\\s+MB\\)`));
    assert.match(shipped.message, /Input: photos resized to 288×288, float32 \[n, 288, 288, 3\], BGR minus the ImageNet means 103\.939, 116\.779, 123\.68/);
    assert.match(shipped.message, /Output probabilities: 5 per photo, daisy, dandelion, roses, sunflowers, tulips\./);
    assert.equal(await page.textContent('#export-onnx'), 'Export as ONNX', 'the button is back');
    const a = await check(page, shipped, 'shipped model');
    assert.deepEqual(a.classes, ['daisy', 'dandelion', 'roses', 'sunflowers', 'tulips']);

    // taught a new class in the page: the head's residual units are in the file
    await addClass(page, NEW_CLASS);
    await choose(page, CLOSE_UPS);
    await page.click('#train');
    await page.waitForFunction(() => ['done', 'failed'].includes(document.body.dataset.training), null, { timeout: 180000 });
    assert.equal(await page.evaluate(() => document.body.dataset.training), 'done', await page.textContent('#train-status'));
    const taught = await exportThroughPage(page, dir);
    assert.equal(taught.name, `petal-daisy-dandelion-roses-sunflowers-tulips-${NEW_CLASS}.onnx`);
    assert.match(taught.message, /Output probabilities: 6 per photo/);
    const b = await check(page, taught, 'taught model');
    assert.deepEqual(b.classes, ['daisy', 'dandelion', 'roses', 'sunflowers', 'tulips', NEW_CLASS]);
    assert.ok(fs.readFileSync(taught.file).includes('head.residual.weight'), 'the taught units are in the file');
    assert.ok(!fs.readFileSync(shipped.file).includes('head.residual.weight'), 'the shipped head has none');
    const meta = onnxMetadata(fs.readFileSync(taught.file));
    assert.equal(meta['petal.preprocessing'], 'caffe');
    assert.equal(meta['petal.input_layout'], 'NHWC');
    await screenshot(page, 'onnx-exported');
    assert.deepEqual(errors, [], 'no page errors');
  } finally {
    await context.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
