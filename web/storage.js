// What the page keeps between visits, in IndexedDB: the labelled examples (features, a small
// thumbnail, the label) and the current head (a head-only model bundle).
//
// Every write is one IndexedDB transaction, so it lands whole or not at all: a reload in the
// middle of a save leaves what was saved before. A new head is written as a new record and the
// "current head" pointer is flipped to it in the same transaction, and only then is the old
// record deleted (also in that transaction).
//
// When IndexedDB is missing, refused, or full, the store switches to memory: the page keeps
// working and onProblem(text) tells it what to say.

const DB_NAME = 'petal';
const DB_VERSION = 1;

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error || new DOMException('the save was interrupted', 'AbortError'));
    tx.onerror = () => {};  // reported through onabort
  });
}

function explain(e) {
  if (e && e.name === 'QuotaExceededError') return 'the browser storage for this page is full';
  if (e && e.name === 'InvalidStateError') return 'the browser does not allow storage here (private window?)';
  if (e && e.name === 'SecurityError') return 'the browser does not allow this page to store data';
  return `the browser storage failed (${e && e.message ? e.message : e})`;
}

export class Store {
  constructor({ onProblem = () => {} } = {}) {
    this.db = null;
    this.persistent = false;
    this.problem = '';
    this.onProblem = onProblem;
    this.memory = { examples: new Map(), head: null };
  }

  async open() {
    try {
      if (typeof indexedDB === 'undefined' || !indexedDB) throw new Error('IndexedDB is not available in this browser');
      const req = indexedDB.open(DB_NAME, DB_VERSION);
      req.onupgradeneeded = () => {
        const db = req.result;
        if (!db.objectStoreNames.contains('examples')) db.createObjectStore('examples', { keyPath: 'id' });
        if (!db.objectStoreNames.contains('heads')) db.createObjectStore('heads', { keyPath: 'id' });
        if (!db.objectStoreNames.contains('meta')) db.createObjectStore('meta', { keyPath: 'key' });
      };
      req.onblocked = () => {};
      this.db = await request(req);
      this.db.onversionchange = () => this.db.close();
      this.persistent = true;
    } catch (e) {
      this.toMemory(e);
    }
    return this;
  }

  // Switch to memory after a failure; what was in memory stays.
  toMemory(e) {
    this.db = null;
    this.persistent = false;
    this.problem = `${explain(e)}, so your examples and training are kept only until you close this page`;
    this.onProblem(this.problem);
  }

  // {examples: [...], head: {bytes, classNames} | null}
  async load() {
    if (!this.db) return { examples: [...this.memory.examples.values()], head: this.memory.head };
    try {
      const tx = this.db.transaction(['examples', 'heads', 'meta'], 'readonly');
      const examples = await request(tx.objectStore('examples').getAll());
      const pointer = await request(tx.objectStore('meta').get('currentHead'));
      const head = pointer ? await request(tx.objectStore('heads').get(pointer.headId)) : null;
      examples.sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1));
      for (const ex of examples) this.memory.examples.set(ex.id, ex);
      this.memory.head = head || null;
      return { examples, head: head || null };
    } catch (e) {
      this.toMemory(e);
      return { examples: [], head: null };
    }
  }

  // An example: {id, name, label, features: ArrayBuffer, thumb: Blob, createdAt, digest} (digest:
  // SHA-256 of the photo's bytes, so the same photo dropped on a later visit is seen as a repeat).
  async putExample(ex) {
    this.memory.examples.set(ex.id, ex);
    if (!this.db) return;
    try {
      const tx = this.db.transaction('examples', 'readwrite');
      tx.objectStore('examples').put(ex);
      await done(tx);
    } catch (e) {
      this.toMemory(e);
    }
  }

  async deleteExample(id) {
    this.memory.examples.delete(id);
    if (!this.db) return;
    try {
      const tx = this.db.transaction('examples', 'readwrite');
      tx.objectStore('examples').delete(id);
      await done(tx);
    } catch (e) {
      this.toMemory(e);
    }
  }

  // Keep a new current head: write it, flip the pointer, drop the old one — one transaction.
  async saveHead(bytes, classNames) {
    const head = { id: `head-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`, bytes, classNames, savedAt: Date.now() };
    this.memory.head = head;
    if (!this.db) return;
    try {
      const tx = this.db.transaction(['heads', 'meta'], 'readwrite');
      const heads = tx.objectStore('heads');
      const meta = tx.objectStore('meta');
      heads.put(head);
      const old = await request(meta.get('currentHead'));
      meta.put({ key: 'currentHead', headId: head.id });
      if (old && old.headId !== head.id) heads.delete(old.headId);
      await done(tx);
    } catch (e) {
      this.toMemory(e);
    }
  }

  // Back to the shipped model: forget the head and all examples (one transaction).
  async clear() {
    this.memory = { examples: new Map(), head: null };
    if (!this.db) return;
    try {
      const tx = this.db.transaction(['examples', 'heads', 'meta'], 'readwrite');
      for (const s of ['examples', 'heads', 'meta']) tx.objectStore(s).clear();
      await done(tx);
    } catch (e) {
      this.toMemory(e);
    }
  }
}
