// Held-out accuracy of every engine the page offers, in Chromium, on the same photos (issue 13:
// each within 0.3 point of the fp32 engine's). The native `petal eval --json` names the validation
// photos of the model's own split and gives its fp32 answers; each wasm engine (SIMD128 and relaxed
// SIMD, fp32 and int8, 2 threads) then classifies those photos from their JPEG bytes in a page, as
// the page's worker does.
//
//   node bench/engine-accuracy.mjs [--model web/model/petal.safetensors]
//        [--engines mt,mt:int8,mt-relaxed,mt-relaxed:int8] [--js-flags "--no-enable-avx-vnni"]
// --js-flags: V8 flags for Chromium. `--no-enable-avx-vnni` makes V8 lower the relaxed int8 dot
// product as on CPUs without AVX-VNNI, where the relaxed int8 engine runs its 7-bit kernels
// (tools/setup/xnnpack-relaxed-i7dot.patch) instead of XNNPACK's "usdot" ones.
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { dataDir, machine, need, parseArgs, petalCli, repoRoot, table } from './lib.mjs';
import { serve, launch, freshContext } from '../tests/browser/helpers.mjs';

const args = parseArgs({ model: path.join(repoRoot, 'web/model/petal.safetensors'), engines: 'mt,mt:int8,mt-relaxed,mt-relaxed:int8', 'js-flags': '' });
const photos = path.join(dataDir, 'flower_photos');
const model = need(args.model, 'make the model first: tools/setup/make-models.sh');

const native = JSON.parse(execFileSync(need(petalCli, 'build it: tools/build.sh native'),
  ['eval', model, need(photos, 'the flower photos live in ../shared/data'), '--json'], { maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'ignore'] }));
const preds = native.predictions;
console.log(JSON.stringify({ ...machine(), jsFlags: args['js-flags'] }));
console.log(`${preds.length} validation photos (split ${native.validation_split}, seed ${native.seed}); native fp32: ${(100 * native.accuracy).toFixed(2)} %`);

const server = await serve({ isolation: true });
const browser = await launch(args['js-flags'] ? [`--js-flags=${args['js-flags']}`] : []);
const { context } = await freshContext(browser);
await context.route('**/__photo/*', (route) => {
  const i = Number(route.request().url().split('/').pop());
  route.fulfill({ body: fs.readFileSync(path.resolve(repoRoot, preds[i].file)), contentType: 'image/jpeg' });
});
await context.route('**/__model', (route) => route.fulfill({ body: fs.readFileSync(model), contentType: 'application/octet-stream' }));

const rows = [{ engine: 'native fp32', correct: native.correct, accuracy: (100 * native.accuracy).toFixed(2), 'same answer as native': preds.length, 'ms/photo': '' }];
for (const spec of args.engines.split(',')) {
  const [variant, precision = 'fp32'] = spec.split(':');
  const page = await context.newPage();
  await page.goto(`${server.url}favicon.svg`);  // the page's origin, cross-origin isolated
  const r = await page.evaluate(async ({ variant, int8, n }) => {
    const glue = `/engine/petal-${variant}.js`;
    await new Promise((resolve, reject) => {
      const s = document.createElementNS('http://www.w3.org/1999/xhtml', 'script');
      Object.assign(s, { src: glue, onload: resolve, onerror: () => reject(new Error(`${glue} is missing: tools/build.sh wasm wasm-relaxed`)) });
      document.documentElement.appendChild(s);
    });
    const M = await self.createPetal({ petalThreads: 2, locateFile: (p) => `/engine/${p}`, mainScriptUrlOrBlob: glue });
    const engine = new M.Engine(new Uint8Array(await (await fetch('/__model')).arrayBuffer()), 2, int8);
    const top = [];
    let ms = 0;
    for (let i = 0; i < n; i++) {
      const u8 = new Uint8Array(await (await fetch(`/__photo/${i}`)).arrayBuffer());
      const t = performance.now();
      top.push(engine.analyze(u8, 1, 0).predictions[0].label);
      ms += performance.now() - t;
    }
    return { top, ms: ms / n };
  }, { variant, int8: precision === 'int8', n: preds.length });
  await page.close();
  const correct = r.top.filter((t, i) => t === preds[i].label).length;
  const same = r.top.filter((t, i) => t === preds[i].predicted).length;
  const row = { engine: `${variant} ${precision}`, correct, accuracy: (100 * correct / preds.length).toFixed(2), 'same answer as native': same, 'ms/photo': r.ms.toFixed(1) };
  console.log(JSON.stringify(row));
  rows.push(row);
}
console.log(table(rows));
await browser.close();
await server.close();
