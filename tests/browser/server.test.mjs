// The dev server: headers for cross-origin isolation and a same-origin CSP, .wasm content type,
// nothing served outside its root (path traversal in its plain and encoded forms), and the CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { repoRoot, serve } from './helpers.mjs';

// A raw GET: node's http client sends the path exactly as given (no normalisation).
function get(url, rawPath, method = 'GET', headers = {}) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: rawPath, method, headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        resolve({ status: res.statusCode, headers: res.headers, raw, body: raw.toString('latin1') });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

test('server sends COOP/COEP and a same-origin CSP, and .wasm as application/wasm', async () => {
  const s = await serve();
  try {
    const page = await get(s.url, '/');
    assert.equal(page.status, 200);
    assert.match(page.headers['content-type'], /^text\/html/);
    assert.match(page.body, /<title>Petal/);
    assert.equal(page.headers['cross-origin-opener-policy'], 'same-origin');
    assert.equal(page.headers['cross-origin-embedder-policy'], 'require-corp');
    const csp = page.headers['content-security-policy'];
    assert.match(csp, /default-src 'self'/);
    assert.match(csp, /script-src 'self' 'wasm-unsafe-eval'(;|$)/);
    assert.match(csp, /connect-src 'self'/);
    assert.doesNotMatch(csp, /'unsafe-eval'|'unsafe-inline'|\*|https?:/, 'the CSP allows nothing beyond this origin');

    const wasm = await get(s.url, '/engine/petal-mt.wasm', 'HEAD');
    assert.equal(wasm.status, 200);
    assert.equal(wasm.headers['content-type'], 'application/wasm');
    assert.equal(wasm.headers['cross-origin-embedder-policy'], 'require-corp');
    const js = await get(s.url, '/worker.js');
    assert.match(js.headers['content-type'], /^text\/javascript/);
    assert.ok(js.headers['content-security-policy'], 'workers get the CSP too');

    const missing = await get(s.url, '/no-such-file.js');
    assert.equal(missing.status, 404);
    assert.equal(missing.headers['cross-origin-embedder-policy'], 'require-corp');
    assert.equal((await get(s.url, '/', 'POST')).status, 405);

    // ETag revalidation: the page's model cache relies on it
    const model = await get(s.url, '/model/petal.safetensors', 'HEAD');
    assert.ok(model.headers.etag);
    const again = await new Promise((resolve, reject) => {
      const u = new URL(s.url);
      http.get({ host: u.hostname, port: u.port, path: '/model/petal.safetensors', headers: { 'If-None-Match': model.headers.etag } },
        (res) => { res.resume(); resolve({ status: res.statusCode, vary: res.headers.vary }); }).on('error', reject);
    });
    assert.equal(again.status, 304);
    assert.equal(again.vary, 'Accept-Encoding', 'a 304 carries the Vary its 200 would have (RFC 9110)');
  } finally {
    await s.close();
  }
});

test('server refuses every path outside its root, plain or encoded', async () => {
  const s = await serve();
  try {
    const attempts = [
      '/../package.json',
      '/engine/../../package.json',
      '/%2e%2e/package.json',
      '/%2E%2E/%2E%2E/package.json',
      '/.%2e/package.json',
      '/%2e%2e%2fpackage.json',
      '/engine/..%2f..%2fpackage.json',
      '/..%5c..%5cpackage.json',
      '/engine%2f..%2f..%2fpackage.json',
      '/%252e%252e/package.json',
      '/..%00/package.json',
      '/%00',
      '/.git/config',
      '/%2e%2e',
      '/%',
      '/%c0%ae%c0%ae/package.json',
    ];
    for (const p of attempts) {
      const r = await get(s.url, p);
      assert.ok([400, 403, 404].includes(r.status), `${p} answered ${r.status}`);
      assert.doesNotMatch(r.body, /"name": "petal"/, `${p} leaked package.json`);
    }
    // and the real files are still served
    assert.equal((await get(s.url, '/engine/petal-st.js', 'HEAD')).status, 200);
    assert.equal((await get(s.url, '/index.html', 'HEAD')).status, 200);
  } finally {
    await s.close();
  }
});

test('--no-isolation leaves out COOP/COEP but keeps the CSP', async () => {
  const s = await serve({ isolation: false });
  try {
    const r = await get(s.url, '/');
    assert.equal(r.status, 200);
    assert.equal(r.headers['cross-origin-opener-policy'], undefined);
    assert.equal(r.headers['cross-origin-embedder-policy'], undefined);
    assert.match(r.headers['content-security-policy'], /default-src 'self'/);
  } finally {
    await s.close();
  }
});

// `npm start` runs `node web/server.mjs`: it prints its address, and explains bad options.
function runCli(args, env = {}) {
  const child = spawn(process.execPath, [path.join(repoRoot, 'web/server.mjs'), ...args], { env: { ...process.env, ...env } });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, output: () => out, errors: () => err };
}

test('server CLI prints its address on 127.0.0.1, takes PORT and --port, and explains bad options', async () => {
  const run = runCli(['--port', '0', '--quiet']);
  try {
    const deadline = Date.now() + 10000;
    while (!/http:\/\/127\.0\.0\.1:\d+\//.test(run.output()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const url = run.output().match(/http:\/\/127\.0\.0\.1:\d+\//)?.[0];
    assert.ok(url, `no address printed: ${run.output()} ${run.errors()}`);
    const r = await get(url, '/');
    assert.equal(r.status, 200);
  } finally {
    run.child.kill();
    await run.exited;
  }

  const envRun = runCli(['--quiet'], { PORT: '0' });
  try {
    const deadline = Date.now() + 10000;
    while (!/127\.0\.0\.1:\d+/.test(envRun.output()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.match(envRun.output(), /http:\/\/127\.0\.0\.1:\d+\//);
  } finally {
    envRun.child.kill();
    await envRun.exited;
  }

  const bad = runCli(['--port', 'eighty']);
  assert.equal(await bad.exited, 2);
  assert.match(bad.errors(), /--port must be a number/);
  const noRoot = runCli(['--root', path.join(repoRoot, 'no-such-dist')]);
  assert.equal(await noRoot.exited, 2);
  assert.match(noRoot.errors(), /is not a folder/);
});

test('server sends a fresh .gz copy to clients that accept gzip, and the file itself otherwise', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'petal-gz-'));
  const engine = fs.readFileSync(path.join(repoRoot, 'web/engine/petal-st.wasm'));
  fs.writeFileSync(path.join(root, 'a.wasm'), engine);
  fs.writeFileSync(path.join(root, 'a.wasm.gz'), zlib.gzipSync(engine));
  fs.writeFileSync(path.join(root, 'b.wasm.gz'), zlib.gzipSync(Buffer.from('an old copy')));
  fs.writeFileSync(path.join(root, 'b.wasm'), Buffer.from('the current file'));
  const past = new Date(Date.now() - 60_000);
  fs.utimesSync(path.join(root, 'b.wasm.gz'), past, past);  // older than b.wasm: stale
  const s = await serve({ root });
  try {
    const gz = await get(s.url, '/a.wasm', 'GET', { 'Accept-Encoding': 'gzip, deflate, br' });
    assert.equal(gz.status, 200);
    assert.equal(gz.headers['content-encoding'], 'gzip');
    assert.equal(gz.headers['content-type'], 'application/wasm');
    assert.equal(Number(gz.headers['x-decoded-length']), engine.length);
    assert.equal(Number(gz.headers['content-length']), gz.raw.length);
    assert.ok(gz.raw.length < engine.length / 2, `gzip copy ${gz.raw.length} bytes of ${engine.length}`);
    assert.ok(zlib.gunzipSync(gz.raw).equals(engine), 'the gzip copy decodes to the file');
    assert.match(gz.headers.vary, /Accept-Encoding/);

    const plain = await get(s.url, '/a.wasm');
    assert.equal(plain.headers['content-encoding'], undefined);
    assert.ok(plain.raw.equals(engine));

    const stale = await get(s.url, '/b.wasm', 'GET', { 'Accept-Encoding': 'gzip' });
    assert.equal(stale.headers['content-encoding'], undefined, 'a .gz older than its file is not sent');
    assert.equal(stale.body, 'the current file');
  } finally {
    await s.close();
    fs.rmSync(root, { recursive: true, force: true });
  }
});
