// The page's side of the engine worker: call(type, args) → Promise of the worker's answer, and
// on(event, fn) for the events it posts while working (download progress, training epochs).

export class EngineClient {
  // started: a worker web/boot.js already started, with its init request ({worker, messages,
  // initId}); its answer comes from adoptInit().
  constructor(started) {
    this.worker = started.worker;
    this.nextId = started.initId + 1;
    this.pending = new Map();
    this.listeners = new Map();
    this.started = started;
    this.worker.onmessage = (ev) => this.receive(ev.data);
    this.worker.onerror = (ev) => {
      ev.preventDefault();
      this.failAll(`the engine stopped: ${ev.message || 'unknown error'}`);
    };
  }

  // The answer to boot.js's init request. Call it once the listeners are on: what the worker said
  // before this client took it over is handed to them first, in order.
  adoptInit() {
    const { initId, messages } = this.started;
    const answer = new Promise((resolve, reject) => this.pending.set(initId, { resolve, reject }));
    for (const msg of messages.splice(0)) {
      if (msg.stopped) this.failAll(`the engine stopped: ${msg.stopped}`);
      else this.receive(msg);
    }
    return answer;
  }

  receive(msg) {
    if (msg.event) {
      for (const fn of this.listeners.get(msg.event) || []) fn(msg);
      return;
    }
    const p = this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id);
    if (msg.ok) p.resolve(msg.result);
    else p.reject(new Error(msg.error));
  }

  failAll(text) {
    for (const p of this.pending.values()) p.reject(new Error(text));
    this.pending.clear();
  }

  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, []);
    this.listeners.get(event).push(fn);
  }

  call(type, args = {}, transfer = []) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, type, ...args }, transfer);
    });
  }
}
