// Sizes for people: bytes as MB of 10^6 bytes, as file managers and download sizes count them.
// A classic script, so that the worker can importScripts it; the page imports it as a module for
// the same globals. One place, so the page and the worker never disagree on what "MB" means.
self.megabytes = (bytes) => (bytes / 1e6).toFixed(1);          // "50.1"
self.formatMB = (bytes) => `${self.megabytes(bytes)} MB`;       // "50.1 MB"
