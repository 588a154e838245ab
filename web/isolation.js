// Registers the service worker (web/sw.js), which keeps the page's files for offline use in every
// copy of the page. On static hosts without header control, the built site (dist/, see
// tools/build-site.mjs) marks <html data-service-worker="on">; then it is registered as
// sw.js?isolation=add and re-serves this site's own responses with the COOP/COEP headers that
// make the page cross-origin isolated (threads). That first visit is not yet controlled by the
// service worker, so the page reloads once when it takes control.
// Resolves to false when the page is about to reload.

const RELOADED = 'petal-sw-reloaded';

export async function ensureIsolation() {
  if (!('serviceWorker' in navigator)) return true;
  const addHeaders = document.documentElement.dataset.serviceWorker === 'on';
  const registered = navigator.serviceWorker.register(addHeaders ? 'sw.js?isolation=add' : 'sw.js').catch((e) => {
    console.warn('the service worker could not be registered, so the page will not work offline:', e);
    return null;
  });
  // The dev server sends the headers itself: nothing to wait for.
  if (!addHeaders || !(await registered)) return true;
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
  sessionStorage.setItem(RELOADED, '1');
  location.reload();
  return false;
}
