// Offline after the first visit: once the engine runs, hand the service worker (sw.js) the list
// of this site's files the page and its engine worker loaded, so it keeps them all, including the
// ones fetched before it took control of this first visit. (The model is kept by model-fetch.js.)
// Sets document.body.dataset.offline: 'ready' once every file is kept, 'partial' if some could
// not be, 'unavailable' where there is no service worker (e.g. a page not served from
// localhost or https).

const TIMEOUT_MS = 60000;
const READY_WAIT_MS = 20000;

function ask(worker, message) {
  return new Promise((resolve, reject) => {
    const channel = new MessageChannel();
    const timer = setTimeout(() => reject(new Error('the service worker did not answer')), TIMEOUT_MS);
    channel.port1.onmessage = (ev) => {
      clearTimeout(timer);
      resolve(ev.data);
    };
    worker.postMessage(message, [channel.port2]);
  });
}

// workerFiles: URLs the engine worker loaded (its scripts, the engine and the engine's own workers).
export async function keepForOffline(workerFiles = []) {
  const body = document.body;
  try {
    // (isolation.js registers it; where that failed, or there is none, ready never comes)
    const reg = 'serviceWorker' in navigator
      ? await Promise.race([navigator.serviceWorker.ready, new Promise((r) => setTimeout(r, READY_WAIT_MS))]) : null;
    if (!reg || !reg.active) {
      body.dataset.offline = 'unavailable';
      return;
    }
    const mine = (u) => {
      try {
        const url = new URL(u, location.href);
        return url.origin === location.origin && !url.pathname.endsWith('.safetensors');
      } catch {
        return false;
      }
    };
    const loaded = performance.getEntriesByType('resource').map((e) => e.name);
    const urls = [...new Set([...loaded, ...workerFiles])].filter(mine);
    const answer = await ask(reg.active, { type: 'keep', page: location.href, urls });
    body.dataset.offlineFiles = String(answer.kept);
    if (answer.failed.length) {
      console.warn(`not kept for offline use: ${answer.failed.join('; ')}`);
      body.dataset.offline = 'partial';
    } else {
      body.dataset.offline = 'ready';
    }
  } catch (e) {
    console.warn(`the page's files could not be kept for offline use: ${e.message}`);
    body.dataset.offline = 'partial';
  }
}
