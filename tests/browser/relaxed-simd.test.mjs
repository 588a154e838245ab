// The page picks its engine build by feature detection: where the browser validates a relaxed-SIMD
// instruction (Chromium) it runs petal-*-relaxed, elsewhere (Safari, or Chromium with relaxed SIMD
// turned off) the SIMD128 build. Relaxed fused multiply-adds round differently from a multiply
// then an add, so the two builds' fp32 probabilities are compared within a tolerance (1e-4), not bit for bit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { DAISY, ROSE, TULIP, withServerAndBrowser, freshContext, launch, openPage, drop, cards } from './helpers.mjs';

const env = withServerAndBrowser();

// Every card's full probabilities, by file name.
async function probabilities(page) {
  return page.$$eval('.card', (cs) => Object.fromEntries(cs.map((c) => [c.querySelector('.name').textContent,
    Object.fromEntries([...c.querySelectorAll('.pred')].map((b) => [b.dataset.label, Number(b.dataset.probability)]))])));
}

async function classifyWith(url, { noRelaxed = false, browser = env.browser } = {}) {
  const { context, requests } = await freshContext(browser);
  try {
    // Chromium 156 cannot turn relaxed SIMD off (--js-flags are not honoured for it), so a browser
    // without it is one whose WebAssembly.validate refuses any relaxed-SIMD opcode (0xfd, then
    // 0x100-0x113 as LEB128), as Safari's does.
    if (noRelaxed) {
      await context.addInitScript(() => {
        const validate = WebAssembly.validate.bind(WebAssembly);
        WebAssembly.validate = (bytes) => {
          const b = new Uint8Array(bytes.buffer ? bytes.buffer : bytes, bytes.byteOffset || 0, bytes.byteLength);
          for (let i = 0; i + 2 < b.length; ++i) if (b[i] === 0xfd && b[i + 1] >= 0x80 && b[i + 1] <= 0x93 && b[i + 2] === 0x02) return false;
          return validate(bytes);
        };
      });
    }
    const page = await openPage(context, url);
    const info = page.locator('#engine-info');
    const build = await info.getAttribute('data-build');
    const text = await info.textContent();
    await drop(page, [DAISY, ROSE, TULIP]);
    const got = await cards(page);
    assert.deepEqual(got.map((c) => [c.name, c.state, c.top]), [
      [path.basename(DAISY), 'done', 'daisy'], [path.basename(ROSE), 'done', 'roses'], [path.basename(TULIP), 'done', 'tulips']]);
    const wasm = [...new Set(requests.map((r) => r.url).filter((u) => u.endsWith('.wasm')).map((u) => path.basename(new URL(u).pathname)))];
    return { build, text, wasm, probs: await probabilities(page) };
  } finally {
    await context.close();
  }
}

test('Chromium runs the relaxed-SIMD build and says so; ?simd=128 runs the SIMD128 build; in fp32 they agree within 1e-4', async () => {
  const relaxed = await classifyWith(`${env.server.url}?engine=fp32`);
  assert.equal(relaxed.build, 'mt-relaxed');
  assert.match(relaxed.text, /relaxed SIMD/);
  assert.deepEqual(relaxed.wasm, ['petal-mt-relaxed.wasm']);
  const simd = await classifyWith(`${env.server.url}?engine=fp32&simd=128`);
  assert.equal(simd.build, 'mt');
  assert.doesNotMatch(simd.text, /relaxed/);
  assert.deepEqual(simd.wasm, ['petal-mt.wasm']);
  let worst = 0;
  for (const [name, probs] of Object.entries(relaxed.probs)) {
    for (const [label, p] of Object.entries(probs)) {
      assert.ok(label in simd.probs[name], `${name}: ${label} is among the SIMD128 build's top classes too`);
      worst = Math.max(worst, Math.abs(p - simd.probs[name][label]));
    }
  }
  console.log(`  relaxed vs SIMD128 build: largest probability difference ${worst.toExponential(2)}`);
  assert.ok(worst < 1e-4, `relaxed and SIMD128 probabilities differ by ${worst}`);
});

test('a browser without relaxed SIMD gets the SIMD128 build', async () => {
  const r = await classifyWith(env.server.url, { noRelaxed: true });
  assert.equal(r.build, 'mt');
  assert.doesNotMatch(r.text, /relaxed/);
  assert.deepEqual(r.wasm, ['petal-mt.wasm']);
});

// The int8 engine's relaxed dot product (i32x4.relaxed_dot_i8x16_i7x16_add_s) is lowered by V8 to
// VPDPBUSD where the CPU has AVX-VNNI, and to PMADDUBSW elsewhere; XNNPACK's own int8 kernels only
// run on the first, and Petal's 7-bit ones (tools/setup/xnnpack-relaxed-i7dot.patch) on the second.
// V8's --no-enable-avx-vnni gives the second lowering on any x86 CPU: both must give fp32's
// answers within a few percent.
test('the relaxed int8 engine agrees with fp32 whichever way V8 lowers its dot product', async () => {
  const fp32 = await classifyWith(`${env.server.url}?engine=fp32`);
  const plain = await launch(['--js-flags=--no-enable-avx-vnni']);
  try {
    for (const [how, browser] of [['as V8 lowers it here', env.browser], ['without AVX-VNNI (7-bit kernels)', plain]]) {
      const int8 = await classifyWith(`${env.server.url}?engine=int8`, { browser });
      assert.equal(int8.build, 'mt-relaxed', how);
      assert.match(int8.text, /int8/, how);
      let worst = 0;
      for (const [name, probs] of Object.entries(fp32.probs)) {
        const [top] = Object.entries(probs).sort((a, b) => b[1] - a[1])[0];
        worst = Math.max(worst, Math.abs(probs[top] - int8.probs[name][top]));
      }
      console.log(`  relaxed int8 ${how} vs fp32: largest top-class probability difference ${worst.toExponential(2)}`);
      assert.ok(worst < 0.05 && worst > 0, `${how}: int8 and fp32 top-class probabilities differ by ${worst}`);
    }
  } finally {
    await plain.close();
  }
});
