// Static hosting without header control: the built site (dist/, see tools/build-site.mjs) marks
// <html data-service-worker="on">, and then sw.js re-serves this site's own responses with the
// COOP/COEP headers that make the page cross-origin isolated (threads). The first visit is
// not yet controlled by the service worker, so the page reloads once when it takes control.
// Resolves to false when the page is about to reload.

const RELOADED = 'petal-sw-reloaded';

export async function ensureIsolation() {
  if (document.documentElement.dataset.serviceWorker !== 'on' || !('serviceWorker' in navigator)) return true;
  let reg;
  try {
    reg = await navigator.serviceWorker.register('sw.js');
  } catch (e) {
    console.warn('the service worker could not be registered:', e);
    return true;
  }
  if (self.crossOriginIsolated) {
    sessionStorage.removeItem(RELOADED);
    return true;
  }
  if (sessionStorage.getItem(RELOADED)) return true;  // tried once already: go on single-threaded
  if (!navigator.serviceWorker.controller) {
    await new Promise((resolve) => {
      navigator.serviceWorker.addEventListener('controllerchange', resolve, { once: true });
      setTimeout(resolve, 4000);
    });
    if (!navigator.serviceWorker.controller) return true;
  }
  void reg;
  sessionStorage.setItem(RELOADED, '1');
  location.reload();
  return false;
}
