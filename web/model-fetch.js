// Model download for the engine worker (a classic script, loaded with importScripts): fetches
// the model bundle with progress, keeps it in the Cache API, and on later visits uses the kept
// copy once a conditional GET is answered 304 Not Modified (or the server cannot be reached).
'use strict';

const MODEL_CACHE = 'petal-model-v1';

// The validators that say which version of the file a response carries.
function validators(headers) {
  return {
    etag: headers.get('ETag') || '',
    modified: headers.get('Last-Modified') || '',
    length: headers.get('Content-Length') || '',
  };
}

async function openCache() {
  try {
    return await caches.open(MODEL_CACHE);
  } catch {
    return null;  // no Cache API here (e.g. storage disabled): download on each visit
  }
}

// onProgress({loaded, total}) is called while downloading. Resolves to {bytes: Uint8Array,
// fromCache, offline (the server could not be reached to check the kept copy), keep}; keep() stores a downloaded copy for next time (call it once the engine has
// started, so the first visit is not slowed by the write) and resolves to '' or a note saying
// why the copy could not be kept.
async function loadModel(url, onProgress) {
  const cache = await openCache();
  const cached = cache ? await cache.match(url).catch(() => undefined) : undefined;
  let resp = null;
  if (cached) {
    // Read the kept copy while asking the server whether it is still current: a GET conditional on
    // the kept copy's ETag / Last-Modified is answered 304 (no body) when it is, and otherwise
    // brings the new file, downloaded below. (Every answer is read to its end: a HEAD request, or
    // a download dropped half-way, shows in the console as a failed request, net::ERR_ABORTED.)
    const read = cached.arrayBuffer();
    const kept = validators(cached.headers);
    const conditions = {};
    if (kept.etag) conditions['If-None-Match'] = kept.etag;
    if (kept.modified) conditions['If-Modified-Since'] = kept.modified;
    let answer = null;  // (a host that sends neither cannot say whether the file changed: kept copy)
    let offline = false;
    if (Object.keys(conditions).length) {
      try {
        answer = await fetch(url, { cache: 'no-store', headers: conditions });
      } catch {
        offline = true;  // offline or server gone: the kept copy is all there is, and that is fine
      }
    }
    // (a server that ignores the conditions sends the file again: then it is the current copy)
    const changed = answer && answer.ok && answer.status !== 304;
    if (answer && !answer.ok) await answer.arrayBuffer().catch(() => null);  // an error page: short
    const buf = await read.catch(() => null);
    if (!changed && buf) return { bytes: new Uint8Array(buf), fromCache: true, offline, keep: async () => '' };
    if (changed) resp = answer;
  }

  if (!resp) {
    try {
      resp = await fetch(url, { cache: 'no-store' });
    } catch (e) {
      throw new Error(`could not download the model from ${url}: the server cannot be reached (${e.message})`);
    }
  }
  if (!resp.ok) {
    throw new Error(`could not download the model: the server answered ${resp.status} ${resp.statusText} for ${url}` +
      (resp.status === 404 ? ' (is web/model/petal.safetensors there?)' : ''));
  }
  // A gzip-encoded response's Content-Length counts compressed bytes; the body arrives decoded.
  const encoded = (resp.headers.get('Content-Encoding') || 'identity') !== 'identity';
  const total = Number(resp.headers.get(encoded ? 'X-Decoded-Length' : 'Content-Length')) || 0;
  const chunks = [];
  let loaded = 0;
  let lastReport = 0;
  const reader = resp.body.getReader();
  onProgress({ loaded, total });
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.byteLength;
    const now = performance.now();
    if (now - lastReport > 100) {
      lastReport = now;
      onProgress({ loaded, total });
    }
  }
  onProgress({ loaded, total: total || loaded });
  if (total && loaded !== total) throw new Error(`the model download stopped early (${loaded} of ${total} bytes); reload the page to try again`);
  let bytes = chunks[0] || new Uint8Array(0);
  if (chunks.length > 1) {
    bytes = new Uint8Array(loaded);
    let off = 0;
    for (const c of chunks) {
      bytes.set(c, off);
      off += c.byteLength;
    }
  }
  chunks.length = 0;

  const keep = async () => {
    if (!cache) return 'this browser does not let the page keep files (no Cache API), so the model is downloaded on each visit';
    const headers = new Headers({ 'Content-Type': 'application/octet-stream', 'Content-Length': String(loaded) });
    for (const h of ['ETag', 'Last-Modified']) if (resp.headers.get(h)) headers.set(h, resp.headers.get(h));
    try {
      await cache.put(url, new Response(bytes, { headers }));
      return '';
    } catch (e) {
      return e && e.name === 'QuotaExceededError'
        ? 'the browser storage is full, so the model will be downloaded again on the next visit'
        : `the model could not be kept for the next visit (${e.message})`;
    }
  };
  return { bytes, fromCache: false, keep };
}

self.loadModel = loadModel;
