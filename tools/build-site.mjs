// `npm run build`: copy the page into dist/ as a static site that works from any static server.
//
//   node tools/build-site.mjs [--out DIR]
//
// Copies web/'s page files (html, js, css, icon), the engine (web/engine) and the model
// (web/model/*.safetensors), and turns the service worker's headers on in dist/index.html: on a
// host that cannot send COOP/COEP headers, web/sw.js adds them so the page still gets threads.
// dist/sw.js gets a version made from the page's and the engine's files, so a new deployment
// replaces the files the browser keeps for offline use.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const web = path.join(root, 'web');

function fail(msg) {
  console.error(`build-site: ${msg}`);
  process.exit(1);
}

let out = path.join(root, 'dist');
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--out' && args[i + 1]) out = path.resolve(args[++i]);
  else if (args[i].startsWith('--out=')) out = path.resolve(args[i].slice(6));
  else fail(`unknown option ${args[i]} (usage: node tools/build-site.mjs [--out DIR])`);
}
if (out === web || out === root || web.startsWith(out + path.sep)) fail(`refusing to build into ${out}`);

// What the site is made of: page files at the top of web/ (not the dev server), the engine, the model.
const pageFiles = fs.readdirSync(web).filter((f) => /\.(html|js|css|svg)$/.test(f) && fs.statSync(path.join(web, f)).isFile());
const engineFiles = fs.existsSync(path.join(web, 'engine'))
  ? fs.readdirSync(path.join(web, 'engine')).filter((f) => /\.(js|wasm)$/.test(f)) : [];
const modelFiles = fs.existsSync(path.join(web, 'model'))
  ? fs.readdirSync(path.join(web, 'model')).filter((f) => f.endsWith('.safetensors')) : [];

for (const need of ['index.html', 'app.js', 'worker.js', 'sw.js']) if (!pageFiles.includes(need)) fail(`web/${need} is missing`);
for (const need of ['petal-mt.js', 'petal-mt.wasm', 'petal-mt.worker.js', 'petal-st.js', 'petal-st.wasm',
  'petal-mt-relaxed.js', 'petal-mt-relaxed.wasm', 'petal-st-relaxed.js', 'petal-st-relaxed.wasm']) {
  if (!engineFiles.includes(need)) fail(`web/engine/${need} is missing: build the engines first with \`tools/build.sh wasm wasm-relaxed\``);
}
if (!modelFiles.includes('petal.safetensors')) fail('web/model/petal.safetensors is missing: make the model first (see README)');

fs.rmSync(out, { recursive: true, force: true });
fs.mkdirSync(path.join(out, 'engine'), { recursive: true });
fs.mkdirSync(path.join(out, 'model'), { recursive: true });

let bytes = 0;
const copy = (rel) => {
  fs.copyFileSync(path.join(web, rel), path.join(out, rel));
  bytes += fs.statSync(path.join(out, rel)).size;
};
for (const f of pageFiles) copy(f);
for (const f of engineFiles) copy(path.join('engine', f));
for (const f of modelFiles) copy(path.join('model', f));

// Have the service worker add the COOP/COEP headers on the static site (the dev server sends them).
const indexPath = path.join(out, 'index.html');
const html = fs.readFileSync(indexPath, 'utf8');
if (!html.includes('<html lang="en">')) fail('web/index.html does not start with <html lang="en"> as expected');
fs.writeFileSync(indexPath, html.replace('<html lang="en">', '<html lang="en" data-service-worker="on">'));

// Version the service worker's cache by the content of what it keeps (the page and the engine; the
// model is kept and checked apart, by model-fetch.js).
const hash = crypto.createHash('sha256');
for (const rel of [...pageFiles.filter((f) => f !== 'sw.js'), ...engineFiles.map((f) => path.join('engine', f))].sort()) {
  hash.update(rel).update('\0').update(fs.readFileSync(path.join(out, rel)));
}
const version = hash.digest('hex').slice(0, 16);
const swPath = path.join(out, 'sw.js');
const sw = fs.readFileSync(swPath, 'utf8');
if (!sw.includes("const VERSION = 'dev';")) fail("web/sw.js has no line const VERSION = 'dev'; to stamp the version on");
fs.writeFileSync(swPath, sw.replace("const VERSION = 'dev';", `const VERSION = '${version}';`));

const n = pageFiles.length + engineFiles.length + modelFiles.length;
console.log(`built ${path.relative(process.cwd(), out) || '.'}/: ${n} files, ${(bytes / 1048576).toFixed(1)} MB. ` +
  `Serve it with any static server (e.g. \`node web/server.mjs --root ${path.relative(process.cwd(), out) || '.'}\`).`);
