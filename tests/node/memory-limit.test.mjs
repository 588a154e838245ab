// The wasm memory limit (kMaxWasmMemoryBytes in wasm/petal_limits.h, Emscripten's MAXIMUM_MEMORY):
// when the engine needs more than that it answers with the clear out-of-memory message instead
// of aborting, and keeps working for what still fits; its memory grows to exactly the limit and
// not one page past it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { backbonePath, dataDir, loadPetal, readF32, requireFile } from './support.mjs';

after(() => setImmediate(() => process.exit(process.exitCode ?? 0)));

const PAGE = 65536;

test('wasm memory: past the named limit the engine says it is out of memory and goes on; it grows to exactly the limit and not a page more', async () => {
  const M = await loadPetal('mt', 2);
  const limit = M.limits().maxWasmMemoryBytes;
  assert.equal(limit, 2 ** 31, 'the limit is 2 GB');
  const engine = new M.Engine(fs.readFileSync(requireFile(backbonePath)), 2);
  const inputs = readF32(requireFile(path.join(dataDir, 'golden/inputs_224.f32')));
  const PER = 224 * 224 * 3;
  const one = engine.featuresOfInputs(inputs.subarray(0, PER), 1);

  // Past the limit: a batch whose pixels alone are more than 2 GB (3,600 photos at 224²) cannot be
  // copied into the engine. (The JS array is never written, so the test itself stays small.)
  const N = 3600;
  const huge = new Float32Array(N * PER);
  assert.ok(huge.byteLength > limit);
  assert.throws(() => engine.featuresOfInputs(huge, N), (e) => {
    assert.match(e.message, /^out of memory in the engine; use fewer or smaller photos at once/);
    return true;
  });
  // What fits still works, with the same answer as before.
  const again = engine.featuresOfInputs(inputs.subarray(0, PER), 1);
  assert.deepEqual(Array.from(again), Array.from(one));

  // At the limit: the engine's memory takes every page up to it, and not one more.
  const memory = M.wasmMemory;
  assert.ok(memory, 'the threads build exposes its memory');
  const before = memory.buffer.byteLength;
  assert.ok(before < limit, `the engine uses ${before} bytes, under the limit`);
  memory.grow((limit - before) / PAGE);
  assert.equal(memory.buffer.byteLength, limit);
  assert.throws(() => memory.grow(1), RangeError);
});
