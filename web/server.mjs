// The Petal dev server: serves the page from web/ (or --root DIR) on 127.0.0.1 with the headers
// the engine needs. No dependencies.
//
//   node web/server.mjs [--port 8080] [--host 127.0.0.1] [--root web] [--no-isolation] [--quiet]
//
// - Cross-Origin-Opener-Policy + Cross-Origin-Embedder-Policy make the page cross-origin
//   isolated, which lets the browser run the multi-threaded (SharedArrayBuffer) engine;
//   --no-isolation leaves them out (the page then falls back to the single-thread engine).
// - A Content-Security-Policy that allows only this origin ('wasm-unsafe-eval' lets it compile
//   the engine's WebAssembly; blob: images are the thumbnails the page makes itself).
// - A fresh `<file>.gz` beside a file is sent gzip-encoded to clients that accept it.
// - Nothing outside the root is served: paths are decoded segment by segment and any "..",
//   encoded slash or backslash, NUL or hidden (dot) segment is refused before touching the disk.
import { createServer } from 'node:http';
import { createReadStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "worker-src 'self'",
  "connect-src 'self'",
  "img-src 'self' blob:",
  "style-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
  '.safetensors': 'application/octet-stream',
};

// URL path → file path under root, or {status} when the path must be refused.
export function resolveRequestPath(root, rawPath) {
  const pathname = rawPath.split('?')[0].split('#')[0];
  if (!pathname.startsWith('/')) return { status: 400 };
  const parts = [];
  for (const raw of pathname.split('/').slice(1)) {
    let seg;
    try {
      seg = decodeURIComponent(raw);
    } catch {
      return { status: 400 };
    }
    if (seg === '' ) continue;
    if (seg === '.' || seg === '..' || seg.includes('/') || seg.includes('\\') || seg.includes('\0')) return { status: 403 };
    if (seg.startsWith('.')) return { status: 404 };
    parts.push(seg);
  }
  const file = path.resolve(root, ...parts);
  if (file !== root && !file.startsWith(root + path.sep)) return { status: 403 };
  return { file, isDir: pathname.endsWith('/') };
}

function securityHeaders(isolation) {
  const h = {
    'Content-Security-Policy': CONTENT_SECURITY_POLICY,
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'Cross-Origin-Resource-Policy': 'same-origin',
  };
  if (isolation) {
    h['Cross-Origin-Opener-Policy'] = 'same-origin';
    h['Cross-Origin-Embedder-Policy'] = 'require-corp';
  }
  return h;
}

export function createPetalServer({ root = HERE, isolation = true, log = () => {} } = {}) {
  root = path.resolve(root);
  return createServer(async (req, res) => {
    const send = (status, text, extra = {}) => {
      res.writeHead(status, { ...securityHeaders(isolation), 'Content-Type': 'text/plain; charset=utf-8', ...extra });
      res.end(req.method === 'HEAD' ? undefined : text + '\n');
    };
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed', { Allow: 'GET, HEAD' });
      const r = resolveRequestPath(root, req.url || '/');
      if (r.status) {
        log(`${r.status} ${req.url}`);
        return send(r.status, r.status === 403 ? 'forbidden' : r.status === 404 ? 'not found' : 'bad request');
      }
      let file = r.file;
      let st = await fsp.stat(file).catch(() => null);
      if (st && st.isDirectory()) {
        file = path.join(file, 'index.html');
        st = await fsp.stat(file).catch(() => null);
      }
      if (!st || !st.isFile()) {
        log(`404 ${req.url}`);
        return send(404, 'not found');
      }
      const etag = `W/"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
      const headers = {
        ...securityHeaders(isolation),
        'Content-Type': TYPES[path.extname(file).toLowerCase()] || 'application/octet-stream',
        'Cache-Control': 'no-cache',
        // Weak: the gzip and identity bodies are the same representation, differently encoded.
        ETag: etag,
        'Last-Modified': st.mtime.toUTCString(),
        Vary: 'Accept-Encoding',  // on 304s too (RFC 9110 15.4.5)
      };
      if (req.headers['if-none-match'] === etag) {
        res.writeHead(304, headers);
        return res.end();
      }
      // A fresh gzip copy beside the file (the build writes one for the model and the engine) goes
      // to clients that accept gzip; X-Decoded-Length tells the page the size it will receive.
      let body = file;
      const gz = /\bgzip\b/.test(req.headers['accept-encoding'] || '') ? await fsp.stat(file + '.gz').catch(() => null) : null;
      if (gz && gz.isFile() && gz.mtimeMs >= st.mtimeMs) {
        body = file + '.gz';
        headers['Content-Encoding'] = 'gzip';
        headers['X-Decoded-Length'] = st.size;
        headers['Content-Length'] = gz.size;
      } else {
        headers['Content-Length'] = st.size;
      }
      res.writeHead(200, headers);
      if (req.method === 'HEAD') return res.end();
      const stream = createReadStream(body);
      stream.on('error', () => res.destroy());
      stream.pipe(res);
    } catch (e) {
      log(`500 ${req.url}: ${e.message}`);
      if (!res.headersSent) send(500, 'internal error');
      else res.destroy();
    }
  });
}

// Start listening; resolves to {server, url}. port 0 picks a free port.
export function startServer({ port = 8080, host = '127.0.0.1', ...opts } = {}) {
  const server = createPetalServer(opts);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const { port: p } = server.address();
      const shownHost = host.includes(':') ? `[${host}]` : host;
      resolve({ server, url: `http://${shownHost}:${p}/` });
    });
  });
}

function parseArgs(argv) {
  const o = { port: process.env.PORT ? Number(process.env.PORT) : 8080, host: '127.0.0.1', root: HERE, isolation: true, quiet: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const eq = a.indexOf('=');
      if (eq > 0) return a.slice(eq + 1);
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    const name = a.split('=')[0];
    if (name === '--port') o.port = Number(value());
    else if (name === '--host') o.host = value();
    else if (name === '--root') o.root = path.resolve(value());
    else if (a === '--no-isolation') o.isolation = false;
    else if (a === '--quiet') o.quiet = true;
    else if (a === '--help' || a === '-h') o.help = true;
    else throw new Error(`unknown option ${a} (try --help)`);
  }
  if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535) throw new Error(`--port must be a number from 0 to 65535`);
  return o;
}

async function main() {
  let o;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`petal server: ${e.message}`);
    process.exit(2);
  }
  if (o.help) {
    console.log('usage: node web/server.mjs [--port N] [--host ADDR] [--root DIR] [--no-isolation] [--quiet]\n' +
      '  --port N         port to listen on (default: $PORT or 8080; 0 picks a free one)\n' +
      '  --host ADDR      address to listen on (default 127.0.0.1: this computer only)\n' +
      '  --root DIR       folder to serve (default: web/; e.g. --root dist after `npm run build`)\n' +
      '  --no-isolation   leave out COOP/COEP (the page then uses the single-thread engine)');
    return;
  }
  const st = await fsp.stat(o.root).catch(() => null);
  if (!st || !st.isDirectory()) {
    console.error(`petal server: ${o.root} is not a folder${o.root.endsWith('dist') ? ' (run `npm run build` first)' : ''}`);
    process.exit(2);
  }
  try {
    await fsp.access(path.join(o.root, 'engine', 'petal-st.wasm'));
  } catch {
    console.error(`petal server: warning: ${path.join(o.root, 'engine')} has no engine; build it with \`tools/build.sh wasm\``);
  }
  try {
    const { url } = await startServer({
      port: o.port, host: o.host, root: o.root, isolation: o.isolation,
      log: o.quiet ? () => {} : (line) => console.log(line),
    });
    console.log(`Petal is running at ${url}  (serving ${path.relative(process.cwd(), o.root) || '.'}` +
      `${o.isolation ? '' : ', without cross-origin isolation: single-thread engine'}; Ctrl+C to stop)`);
  } catch (e) {
    const why = e.code === 'EADDRINUSE' ? `port ${o.port} is in use; pick another with --port` :
      e.code === 'EACCES' ? `not allowed to listen on port ${o.port}; pick one above 1024 with --port` : e.message;
    console.error(`petal server: ${why}`);
    process.exit(1);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
