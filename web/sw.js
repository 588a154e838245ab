// Petal's service worker, for static hosts that cannot send headers: it re-serves this site's
// own responses with Cross-Origin-Opener-Policy / Cross-Origin-Embedder-Policy added, which makes
// the page cross-origin isolated so the multi-threaded engine can run. It leaves other origins
// alone (the page makes no such requests) and caches nothing itself.
'use strict';

const ADDED_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
};
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (new URL(req.url).origin !== self.location.origin) return;
  if (req.cache === 'only-if-cached' && req.mode !== 'same-origin') return;
  event.respondWith((async () => {
    const resp = await fetch(req);
    if (resp.type === 'opaque' || resp.type === 'opaqueredirect' || resp.status === 0) return resp;
    const headers = new Headers(resp.headers);
    for (const [k, v] of Object.entries(ADDED_HEADERS)) headers.set(k, v);
    return new Response(NULL_BODY.has(resp.status) ? null : resp.body, { status: resp.status, statusText: resp.statusText, headers });
  })());
});
