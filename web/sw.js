// Petal's service worker, registered by every copy of the page (web/isolation.js). Two jobs:
//
// 1. Offline after the first visit. The page's own files (the page, its scripts and style, the
//    icon, the engine's .js/.wasm and the workers it starts) are kept in one Cache Storage cache.
//    Each request goes to the network first, so a server that is up always gives the current
//    files (and the browser's HTTP cache revalidates them: a 304 costs no download); the kept copy
//    answers when the network fails, or when no answer has come within NETWORK_TIMEOUT_MS. Every
//    good answer replaces the kept copy. The page also sends the list of files it and its engine
//    worker loaded ({type: 'keep'}, web/offline.js), since on a first visit this worker takes over
//    only part-way through. The model is not kept here: web/model-fetch.js keeps it (one copy of
//    ~50 MB, not two) and checks it against the server with a conditional GET.
//    When the network's answer is the version that is kept (the same ETag), the kept copy itself
//    is the answer. That lets Chromium reuse the code it compiled on an earlier visit (its code
//    cache serves Cache Storage responses, not a network response handed on by a service worker):
//    compiling the engine's 1.3 MB .wasm on a repeat visit took 42-135 ms handed on, 7-54 ms from
//    the kept copy.
// 2. Static hosts that cannot send headers: registered as sw.js?isolation=add (dist/index.html is
//    marked data-service-worker="on"), it adds Cross-Origin-Opener-Policy / -Embedder-Policy to
//    this site's responses, fresh or kept, which makes the page cross-origin isolated (threads).
//    From the dev server the responses already carry them, and kept copies keep the headers they
//    came with, so the page is isolated offline too.
//
// Only GET requests to this origin are handled; anything else goes straight to the network.
'use strict';

// The cache's version: tools/build-site.mjs writes a hash of the site's files here, so a new
// deployment installs a new worker, which starts an empty cache and deletes the old one.
const VERSION = 'dev';
const CACHE = `petal-page-${VERSION}`;
const CACHE_PREFIX = 'petal-page-';
const NETWORK_TIMEOUT_MS = 3000;
const ADD_ISOLATION = new URL(self.location.href).searchParams.get('isolation') === 'add';

const ADDED_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};
const NULL_BODY = new Set([101, 103, 204, 205, 304]);
const SCOPE = new URL(self.registration.scope);

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil((async () => {
  for (const name of await caches.keys()) if (name.startsWith(CACHE_PREFIX) && name !== CACHE) await caches.delete(name);
  await self.clients.claim();
})()));

// This site's GET requests, except the model (model-fetch.js keeps that).
function handled(url, method = 'GET') {
  return method === 'GET' && url.origin === SCOPE.origin && url.pathname.startsWith(SCOPE.pathname) &&
    !url.pathname.endsWith('.safetensors') && url.pathname !== new URL(self.location.href).pathname;
}

// The page is kept under one key, whether it was asked for as "/" or "/index.html", with a query
// (?engine=int8) or not.
function keyOf(url) {
  const u = new URL(url);
  u.hash = '';
  if (u.pathname === SCOPE.pathname || u.pathname === `${SCOPE.pathname}index.html`) {
    u.pathname = SCOPE.pathname;
    u.search = '';
  }
  return u.href;
}

function withIsolation(resp) {
  if (!ADD_ISOLATION || resp.type === 'opaque' || resp.type === 'opaqueredirect' || resp.status === 0) return resp;
  const headers = new Headers(resp.headers);
  for (const [k, v] of Object.entries(ADDED_HEADERS)) headers.set(k, v);
  return new Response(NULL_BODY.has(resp.status) ? null : resp.body, { status: resp.status, statusText: resp.statusText, headers });
}

// A copy to keep: only complete, same-origin answers. The body is kept decoded, so the headers
// that describe the transfer (encoding, length) are left out; the rest (type, COOP/COEP/CORP,
// CSP, ETag) stay. Where this worker adds the isolation headers, the copy is kept with them, so
// that it can be the answer as it is (a Response made here would lose its compiled code).
async function keep(cache, key, resp) {
  if (!resp.ok || resp.status !== 200 || resp.type !== 'basic' || resp.redirected) return false;
  const headers = new Headers(resp.headers);
  for (const h of ['Content-Encoding', 'Content-Length', 'X-Decoded-Length']) headers.delete(h);
  if (ADD_ISOLATION) for (const [k, v] of Object.entries(ADDED_HEADERS)) headers.set(k, v);
  await cache.put(key, new Response(await resp.blob(), { status: 200, statusText: resp.statusText, headers }));
  return true;
}

async function kept(cache, key) {
  return cache.match(key, { ignoreVary: true });
}

// The kept copy as an answer: itself, unless the isolation headers must still be added.
function keptAnswer(resp) {
  if (ADD_ISOLATION && !resp.headers.has('Cross-Origin-Embedder-Policy')) return withIsolation(resp);
  return resp;
}

// Whether a network answer is the version of the file that is kept (same ETag, or without ETags
// the same Last-Modified).
function sameVersion(resp, old) {
  if (!old || !resp.ok) return false;
  const etag = resp.headers.get('ETag'), keptEtag = old.headers.get('ETag');
  if (etag || keptEtag) return etag === keptEtag;
  const modified = resp.headers.get('Last-Modified');
  return !!modified && modified === old.headers.get('Last-Modified');
}

// Network first: the network's answer, unless it is the version that is kept, whose kept copy
// answers instead; the kept copy also when the network fails or is slow. A new version, whenever
// it comes, replaces the kept copy. (An answer not passed on is read to its end: one dropped
// half-way shows as a failed request, net::ERR_ABORTED.)
function networkFirst(event) {
  const req = event.request;
  const key = keyOf(req.url);
  const cache = caches.open(CACHE).catch(() => null);
  const keptCopy = cache.then((c) => (c ? kept(c, key) : undefined)).catch(() => undefined);
  const network = fetch(req);
  let background;  // keeping a new version (or reading an answer not used), after the page has its answer
  event.waitUntil(new Promise((resolve) => { background = resolve; }));
  const keepOrDrop = async (resp, old) => {
    const c = await cache;
    if (c && !sameVersion(resp, old) && await keep(c, key, resp)) return true;
    if (!resp.bodyUsed) await resp.arrayBuffer();
    return false;
  };
  return (async () => {
    try {
      let timer;
      const late = new Promise((resolve) => { timer = setTimeout(() => resolve('late'), NETWORK_TIMEOUT_MS); });
      const first = await Promise.race([network.catch(() => 'failed'), late]);
      clearTimeout(timer);
      const old = await keptCopy;
      if (first !== 'late' && first !== 'failed') {
        if (sameVersion(first, old)) {
          background(first.arrayBuffer().catch(() => false));
          return keptAnswer(old);
        }
        background(keepOrDrop(first.clone(), old).catch(() => false));
        return withIsolation(first);
      }
      // the network failed or is slow: the kept copy, and the network's answer kept if it comes
      const copy = network.then((resp) => resp.clone());  // (taken before the page reads the body)
      background(copy.then((resp) => keepOrDrop(resp, old)).catch(() => false));
      if (old) return keptAnswer(old);
      return withIsolation(await network);  // nothing kept: wait for the network, or fail as it does
    } finally {
      background(false);  // (no-op where it was given its job already)
    }
  })();
}

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (!handled(new URL(req.url), req.method)) return;
  if (req.cache === 'only-if-cached' && req.mode !== 'same-origin') return;
  event.respondWith(networkFirst(event));
});

// {type: 'keep', page, urls} from the page: keep each of these files that is not kept yet (the
// browser's HTTP cache has them from this visit, so this is a revalidation, not a download).
// Answers {kept, failed} on the message's port.
async function keepAll({ page, urls }) {
  const cache = await caches.open(CACHE);
  const jobs = new Map();
  for (const u of [page, ...urls]) {
    let url;
    try { url = new URL(u, SCOPE); } catch { continue; }
    if (!handled(url)) continue;
    jobs.set(keyOf(url.href), url.href);
  }
  let count = 0;
  const failed = [];
  await Promise.all([...jobs].map(async ([key, href]) => {
    try {
      if (!(await kept(cache, key))) {
        const resp = await fetch(href, { credentials: 'same-origin' });
        if (!(await keep(cache, key, resp))) throw new Error(`${resp.status} ${resp.statusText}`);
      }
      count++;
    } catch (e) {
      failed.push(`${href}: ${e.message}`);
    }
  }));
  return { kept: count, failed };
}

self.addEventListener('message', (event) => {
  const msg = event.data;
  if (!msg || msg.type !== 'keep' || !Array.isArray(msg.urls)) return;
  const port = event.ports[0];
  event.waitUntil(keepAll(msg).then(
    (r) => port && port.postMessage(r),
    (e) => port && port.postMessage({ kept: 0, failed: [`the cache could not be opened: ${e.message}`] })));
});
