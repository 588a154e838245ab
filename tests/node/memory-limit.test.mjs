// The wasm memory limit (kMaxWasmMemoryBytes in wasm/petal_limits.h, Emscripten's MAXIMUM_MEMORY):
// memory grows to exactly the limit and not one page past it, and when the engine then needs
// more, it answers with the clear out-of-memory message instead of aborting, and keeps working for
// what still fits.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { backbonePath, dataDir, loadPetal, readF32, requireFile } from './support.mjs';

after(() => setImmediate(() => process.exit(process.exitCode ?? 0)));

const PAGE = 65536;

test('wasm memory: grows to the named limit and no further; past it the engine says it is out of memory and goes on', async () => {
  const M = await loadPetal('mt', 2);
  const limit = M.limits().maxWasmMemoryBytes;
  assert.equal(limit, 2 ** 31, 'the limit is 2 GB');
  const engine = new M.Engine(fs.readFileSync(requireFile(backbonePath)), 2);
  const inputs = readF32(requireFile(path.join(dataDir, 'golden/inputs_224.f32')));
  const PER = 224 * 224 * 3;
  const one = engine.featuresOfInputs(inputs.subarray(0, PER), 1);

  // At the limit: the engine's memory can take every page up to it.
  const memory = M.wasmMemory;
  assert.ok(memory, 'the threads build exposes its memory');
  const before = memory.buffer.byteLength;
  assert.ok(before < limit, `the engine uses ${before} bytes, under the limit`);
  memory.grow((limit - before) / PAGE);
  assert.equal(memory.buffer.byteLength, limit);
  // Just past it: one more page is refused.
  assert.throws(() => memory.grow(1), RangeError);

  // A batch of 256 photos at once needs more than the whole 2 GB for its activations: refused
  // with the message (not an abort), whichever allocation meets the limit first.
  const N = 256;
  const big = new Float32Array(N * PER);
  for (let i = 0; i < N; i++) big.set(inputs.subarray((i % 10) * PER, (i % 10 + 1) * PER), i * PER);
  assert.throws(() => engine.featuresOfInputs(big, N), (e) => {
    assert.match(e.message, /^out of memory in the engine; use fewer or smaller photos at once/);
    return true;
  });
  // What fits still works, with the same answer as before.
  const again = engine.featuresOfInputs(inputs.subarray(0, PER), 1);
  assert.deepEqual(Array.from(again), Array.from(one));
});
