// The page: starts the engine worker, turns dropped or chosen files into cards (one photo at a
// time, in order), lets the user label photos and train, and keeps examples and the head in
// IndexedDB. The engine itself lives in worker.js; this file only moves data and updates the DOM.
import { EngineClient } from './engine-client.js';
import { Store } from './storage.js';
import { drawChart } from './chart.js';
import { renderEstimates } from './estimates.js';
import { createCard, updateCard } from './cards.js';
import { filesFromDrop } from './drop.js';
import { ensureIsolation } from './isolation.js';
import { setupCamera } from './camera.js';
import { keepForOffline } from './offline.js';
import { exportOnnx } from './onnx-export.js';
import { addWhereItLooks, hideAllWhereItLooks } from './heatmap.js';
import './units.js';  // self.formatMB, self.megabytes (shared with the worker)

const $ = (id) => document.getElementById(id);
const show = (node, on = true) => { node.hidden = !on; };

const state = {
  ready: false,
  info: null,
  photos: [],
  byId: new Map(),
  cards: new Map(),
  classNames: [],      // classes of the current head
  extraClasses: [],    // classes the user added that the head does not know yet
  queue: [],           // [{photo, file}]
  byDigest: new Map(), // SHA-256 of a photo's bytes → its photo, to spot a photo added twice
  repeats: [],         // photos skipped because they were already added: [{name, first, relabelled}]
  submitted: 0,        // files given to the queue since the page opened
  busy: false,
  inFlight: 0,         // photos taken from the queue and not finished (send → finish)
  profile: { photos: 0, page: {}, worker: {} }, // ms summed over the photos analysed, per stage (window.petalStats)
  training: false,
  history: [],
  stop: null,
};

let engine, store;

// ---- small helpers ---------------------------------------------------------------------

const { formatMB, megabytes } = self;
// The engine's limits (M.limits(), wasm/petal_limits.h), known once the engine has started.
const limits = () => state.info.limits;
const newId = () => (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(36).slice(2)}`);
// Creation times that never repeat, so restored examples come back in the order they were added.
let lastStamp = 0;
const stamp = () => (lastStamp = Math.max(Date.now(), lastStamp + 1));
const allClasses = () => [...state.classNames, ...state.extraClasses];

// text: a string, or an array of strings and DOM nodes (never HTML).
function setStatus(id, text, kind) {
  const node = $(id);
  if (Array.isArray(text)) node.replaceChildren(...text);
  else node.textContent = text;
  if (kind) node.dataset.kind = kind;
  show(node, Array.isArray(text) ? text.length > 0 : !!text);
}

function element(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// "" or why `name` cannot be a new class: the engine's rule (class_name_problem in wasm/engine.h),
// asked of the worker. allowExisting: naming a class that already exists is a choice, not an error.
async function validateClass(name, allowExisting) {
  if (allowExisting && allClasses().includes(name)) return '';
  return engine.call('checkClassName', { name, others: allClasses() });
}

// ---- the engine ------------------------------------------------------------------------

async function startEngine() {
  // web/boot.js started the worker and its init from the page's <head> (or, where the page was
  // to reload first, has not: then it starts now); which engine runs is boot.js's plan.
  const started = self.petalBoot.started || self.petalBoot.start();
  show($('isolation-note'), !started.plan.isolated);
  state.stop = started.plan.stop;

  engine = new EngineClient(started);
  engine.on('download', (p) => {
    if (p.phase === 'starting') {
      $('download-text').textContent = 'Starting the engine…';
      $('download-bar').removeAttribute('value');
      return;
    }
    const bar = $('download-bar');
    show($('download'));
    if (p.total) {
      bar.max = p.total;
      bar.value = p.loaded;
      $('download-text').textContent =
        `Downloading the model (once): ${megabytes(p.loaded)} of ${formatMB(p.total)} (${Math.floor((100 * p.loaded) / p.total)}%)`;
    } else {
      bar.removeAttribute('value');
      $('download-text').textContent = `Downloading the model (once): ${formatMB(p.loaded)}`;
    }
  });
  engine.on('epoch', onEpoch);
  engine.on('teach-progress', onTeachProgress);
  engine.on('log', (m) => console.log('[engine]', m.text));

  show($('download'));
  $('download-text').textContent = 'Loading the model…';
  const info = await engine.adoptInit();
  state.info = info;
  document.body.dataset.timings = JSON.stringify(info.timings);
  // Every limit the page states or checks is the engine's own.
  $('new-class').maxLength = info.limits.maxClassNameBytes;
  $('size-limit').textContent = ` · up to ${formatMB(info.limits.maxImageBytes)} each`;
  state.classNames = info.classNames;
  show($('download'), false);
  const simd = /-relaxed$/.test(info.build) ? 'WebAssembly relaxed SIMD' : 'WebAssembly SIMD';
  const how = info.threadsBuild ? `${simd} with ${info.threads} threads` : `${simd} on one thread`;
  const kept = info.offline ? 'offline: using the model kept in this browser'
    : info.fromCache ? 'model loaded from this browser’s storage' : info.cacheNote ? '' : 'model kept in this browser for next time';
  const precision = info.int8 ? 'int8 (faster)' : 'fp32';
  setStatus('engine-info', `Ready · ResNet-50 on ${how}, ${precision}${kept ? ` · ${kept}` : ''} `, 'ok');
  $('engine-info').dataset.threads = String(info.threads);
  $('engine-info').dataset.build = info.build;
  $('engine-info').dataset.precision = info.int8 ? 'int8' : 'fp32';
  // int8 convolutions (the default): 1.2-1.9x faster per photo than fp32, predictions within a few
  // tenths of a percent; fp32 is what the native CLI computes.
  const other = info.int8 ? 'fp32' : 'int8';
  const swap = document.createElement('button');
  swap.type = 'button';
  swap.className = 'small';
  swap.id = 'precision';
  swap.textContent = info.int8 ? 'Use exact fp32' : 'Use faster int8';
  swap.title = info.int8 ? 'Full-precision convolutions, as the native petal tool computes them (slower)' : 'int8 convolutions: faster, predictions within a few tenths of a percent';
  swap.addEventListener('click', () => {
    try { localStorage.setItem(self.petalBoot.PRECISION_KEY, other); } catch { /* private mode: the URL carries it */ }
    const url = new URL(location.href);
    url.searchParams.set('engine', other);
    location.href = url.href;
  });
  $('engine-info').append(swap);
  if (info.cacheNote) setStatus('cache-note', `Note: ${info.cacheNote}.`, 'warn');
}

// ---- photos ----------------------------------------------------------------------------

// Cards are added to the page in slices, so dropping thousands of photos never blocks it.
const unrendered = [];
let rendering = false;

function renderSome() {
  const grid = $('grid');
  const slice = unrendered.splice(0, 60);
  const frag = document.createDocumentFragment();
  for (const photo of slice) {
    const card = createCard(photo, {
      onLabel: setLabel, classes: allClasses, validateClass, maxClassNameBytes: () => limits().maxClassNameBytes,
    });
    addWhereItLooks(card, engine);
    state.cards.set(photo.id, card);
    frag.append(card);
  }
  grid.append(frag);
  if (unrendered.length) setTimeout(renderSome, 0);
  else rendering = false;
}

function addPhoto(photo) {
  state.photos.push(photo);
  state.byId.set(photo.id, photo);
  unrendered.push(photo);
  show($('empty'), false);
  if (!rendering) {
    rendering = true;
    setTimeout(renderSome, 0);
  }
  return photo;
}

function refresh(photo) {
  const card = state.cards.get(photo.id);
  if (card) updateCard(card, photo);
}

function enqueue(files) {
  const label = $('drop-label').value || null;
  if (!state.busy && !state.queue.length) {
    state.repeats = [];  // a new batch: the note about repeats is about this one
    updateRepeatNote();
  }
  for (const file of files) {
    const photo = addPhoto({ id: newId(), name: file.name || 'photo', state: 'waiting', label: null, pendingLabel: label, createdAt: stamp() });
    state.queue.push({ photo, file });
    state.submitted++;
  }
  updateQueueStatus();
  pump();
}

function updateQueueStatus() {
  const total = state.photos.length;
  const left = state.queue.length + state.inFlight;
  const errors = state.photos.filter((p) => p.state === 'error').length;
  let text = total ? `${total} photo${total === 1 ? '' : 's'}` : '';
  if (left && state.ready) text += ` · looking at ${state.submitted - left + 1} of ${state.submitted}…`;
  else if (left) text += ' · waiting for the model…';
  if (errors) text += ` · ${errors} could not be used`;
  if (state.repeats.length) text += ` · ${state.repeats.length} skipped (already added)`;
  $('queue-status').textContent = text;
  document.body.dataset.queue = left ? 'busy' : 'idle';
}

// Photos go to the worker in order; while it analyses one, the page reads the next and sends it,
// so the worker never waits for the page. Only the thumbnail and the features are kept, so
// thousands of photos keep memory steady. Cards finish in the order the photos were chosen.
async function pump() {
  if (state.busy || !state.ready) return;
  state.busy = true;
  let sent = null;  // the photo the worker has, its answer not yet taken
  while (state.queue.length || sent) {
    const next = state.queue.length ? await send(state.queue.shift()) : null;
    if (sent) await finish(sent);
    sent = next;
  }
  state.busy = false;
  updateQueueStatus();
}

// The engine's size rule (image_bytes_problem) for a queued photo, before its file is read: asked
// once for every queued photo not yet asked about, so the worker is asked once per drop.
function sizeProblem(item) {
  if (!item.problem) {
    const unasked = [item, ...state.queue].filter((q) => !q.problem);
    const answer = engine.call('checkImageBytes', { sizes: unasked.map((q) => q.file.size) });
    unasked.forEach((q, i) => { q.problem = answer.then((problems) => problems[i]); });
  }
  return item.problem;
}

// Read one queued photo and send it to the worker: {photo, file, answer} for finish(), or
// {photo, error} / {photo, repeatOf}. Nothing on its card changes here but "working", so that
// cards finish in order.
async function send(item) {
  const { photo, file } = item;
  const lap = stopwatch();
  state.inFlight++;
  photo.state = 'working';
  refresh(photo);
  updateQueueStatus();
  lap('card');
  try {
    const problem = await sizeProblem(item);
    if (problem) throw new Error(problem);
    lap('check');
    let buf;
    try {
      buf = await file.arrayBuffer();
    } catch {
      throw new Error('this file could not be read (was it moved or deleted?)');
    }
    lap('read');
    const digest = await digestOf(buf, file);
    lap('digest');
    const first = state.byDigest.get(digest);
    if (first && first !== photo) return { photo, repeatOf: first };
    state.byDigest.set(digest, photo);
    photo.digest = digest;
    return { photo, file, answer: engine.call('analyze', { bytes: buf }, [buf]) };
  } catch (e) {
    return { photo, error: e.message };
  }
}

// Take the worker's answer for a photo send() prepared, and finish its card.
async function finish({ photo, file, answer, error, repeatOf }) {
  state.inFlight--;
  if (repeatOf) return skipRepeat(photo, repeatOf);
  const lap = stopwatch();
  try {
    if (error) throw new Error(error);
    const r = await answer;
    if (r.error) throw new Error(r.error);
    lap(null);  // the wait for the worker: its own stages are in r.ms
    for (const [stage, ms] of Object.entries(r.ms)) addTime('worker', stage, ms);
    state.profile.photos++;
    photo.features = r.features;
    photo.predictions = r.predictions;
    photo.thumbBlob = r.thumb.blob;
    photo.thumbUrl = URL.createObjectURL(r.thumb.blob);
    // this session only, for "Where it looks": a dropped file is a handle, not the bytes; a camera
    // frame's bytes are not kept (its map comes from the thumbnail)
    if (!file.inMemory) photo.file = file;
    photo.state = 'done';
  } catch (e) {
    photo.state = 'error';
    photo.error = e.message;
  }
  refresh(photo);
  if (photo.state === 'done' && photo.pendingLabel) await setLabel(photo, photo.pendingLabel);
  delete photo.pendingLabel;
  lap('card');
}

// The profile of a drop: where the photos' time went, summed per stage (ms), in two groups: the
// page's stages (card, check, read, digest: they overlap the worker's) and the worker's (decode,
// backbone, engineOther, thumbnail: analyze's own clock). lap(stage) adds the time since the last
// lap to the page's `stage`; lap(null) only starts the next one.
function addTime(group, stage, ms) {
  state.profile[group][stage] = (state.profile[group][stage] || 0) + ms;
}
function stopwatch() {
  let t = performance.now();
  return (stage) => {
    const now = performance.now();
    if (stage) addTime('page', stage, now - t);
    t = now;
  };
}

// ---- a photo added twice -----------------------------------------------------------------

// What identifies a photo: the SHA-256 of its bytes (the same photo under another name is still a
// repeat). Where the page is not a secure context there is no crypto.subtle: name, size and date.
async function digestOf(buf, file) {
  if (self.crypto && crypto.subtle) {
    const h = new Uint8Array(await crypto.subtle.digest('SHA-256', buf));
    return Array.from(h, (b) => b.toString(16).padStart(2, '0')).join('');
  }
  return `${file.name}|${file.size}|${file.lastModified}`;
}

// A photo already on the page is not added again: its card goes, and a note says so. When it was
// dropped with "Label new photos as", the label goes to the photo's first card instead.
async function skipRepeat(photo, first) {
  state.photos.splice(state.photos.indexOf(photo), 1);
  state.byId.delete(photo.id);
  const waiting = unrendered.indexOf(photo);
  if (waiting >= 0) unrendered.splice(waiting, 1);
  state.cards.get(photo.id)?.remove();
  state.cards.delete(photo.id);
  let relabelled = '';
  if (photo.pendingLabel && first.state === 'done' && first.label !== photo.pendingLabel) {
    await setLabel(first, photo.pendingLabel);
    if (first.label === photo.pendingLabel) relabelled = first.label;
  }
  state.repeats.push({ name: photo.name, first: first.name, relabelled });
  updateRepeatNote();
  updateQueueStatus();
}

function updateRepeatNote() {
  const r = state.repeats;
  if (!r.length) return setStatus('repeat-note', '');
  const relabelled = [...new Set(r.map((x) => x.relabelled).filter(Boolean))];
  let text;
  if (r.length === 1) {
    // (a note capitalises its first letter, so it starts with a word rather than a file name)
    text = r[0].name === r[0].first
      ? `Skipped “${r[0].name}”: it was already added.`
      : `Skipped “${r[0].name}”: it is the same photo as “${r[0].first}”, which was already added.`;
    if (relabelled.length) text += ` Its card is now labelled “${relabelled[0]}”.`;
  } else {
    const names = r.slice(0, 5).map((x) => `“${x.name}”`).join(', ') + (r.length > 5 ? ` and ${r.length - 5} more` : '');
    text = `Skipped ${r.length} photos that were already added: ${names}.`;
    if (relabelled.length) text += ` Their cards are now labelled ${relabelled.map((l) => `“${l}”`).join(', ')}.`;
  }
  setStatus('repeat-note', text, 'warn');
}

// Scores every photo that has features with the current head (no backbone run).
async function rescoreAll() {
  hideAllWhereItLooks($('grid'));  // an open map shows the old model's view
  const dim = state.info.featureDim;
  const ready = state.photos.filter((p) => p.features);
  for (let i = 0; i < ready.length; i += 500) {
    const part = ready.slice(i, i + 500);
    const F = new Float32Array(part.length * dim);
    part.forEach((p, j) => F.set(p.features, j * dim));
    const preds = await engine.call('classify', { features: F, n: part.length }, [F.buffer]);
    part.forEach((p, j) => {
      p.predictions = preds[j];
      refresh(p);
    });
  }
}

// ---- labels ----------------------------------------------------------------------------

async function setLabel(photo, label) {
  if (photo.state !== 'done') return;
  if (label && !allClasses().includes(label)) {
    const why = await validateClass(label, false);
    if (why) return;
    state.extraClasses.push(label);
  }
  photo.label = label;
  refresh(photo);
  updateTeach();
  if (label) {
    await store.putExample({
      id: photo.id, name: photo.name, label, features: photo.features.buffer, thumb: photo.thumbBlob, createdAt: photo.createdAt, digest: photo.digest,
    });
  } else {
    await store.deleteExample(photo.id);
  }
}

function examples() {
  return state.photos.filter((p) => p.label && p.features);
}

function updateTeach() {
  const ex = examples();
  const counts = new Map();
  for (const p of ex) counts.set(p.label, (counts.get(p.label) || 0) + 1);
  const list = $('class-list');
  if (!allClasses().length) {
    const li = document.createElement('li');
    li.className = 'chip-wait';
    li.textContent = state.ready ? 'none' : 'they appear when the model has loaded';
    list.replaceChildren(li);
  } else list.replaceChildren(...allClasses().map((c) => {
    const li = document.createElement('li');
    li.className = state.classNames.includes(c) ? 'chip' : 'chip new';
    li.dataset.class = c;
    const n = counts.get(c) || 0;
    li.textContent = c;
    const small = document.createElement('small');
    small.textContent = state.classNames.includes(c) ? (n ? ` · ${n} labelled` : '') : ` · new · ${n} labelled`;
    li.append(small);
    return li;
  }));
  const btn = $('train');
  btn.disabled = !state.ready || state.training || ex.length === 0;
  btn.textContent = ex.length ? `Train on ${ex.length} labelled photo${ex.length === 1 ? '' : 's'}` : 'Train';
  $('train-hint').textContent = ex.length ? '' : 'Label at least one photo to train.';
  // the "label dropped photos as" menu follows the class list
  const sel = $('drop-label');
  const keep = sel.value;
  sel.replaceChildren(new Option('— just classify them', ''), ...allClasses().map((c) => new Option(c, c)));
  sel.value = allClasses().includes(keep) ? keep : '';
  $('export').disabled = $('export-onnx').disabled = $('import').disabled = $('reset').disabled = !state.ready || state.training;
}

// ---- training --------------------------------------------------------------------------

function onEpoch(s) {
  state.history.push(s);
  state.epochs = s.epochs;
  $('train-status').textContent = `Training: epoch ${s.epoch} of ${s.epochs}, loss ${s.loss.toFixed(3)}`;
  drawChart($('chart'), state.history, s.epochs);
}

// The bar covers the whole of teaching: the model's own training, then the check of how well
// each class will do (the same teaching repeated with some photos held out).
function onTeachProgress(p) {
  const bar = $('train-progress');
  bar.max = p.total;
  bar.value = p.done;
  if (state.history.length && state.history.length === state.epochs) {
    $('train-status').textContent = 'Checking how well each class will do, on photos held out of training…';
  }
}

async function train() {
  const ex = examples();
  if (!ex.length || state.training) return;
  const dim = state.info.featureDim;
  const F = new Float32Array(ex.length * dim);
  ex.forEach((p, i) => F.set(p.features, i * dim));
  state.training = true;
  state.history = [];
  state.epochs = 0;
  $('add-class-msg').textContent = '';
  setStatus('model-status', '');
  document.body.dataset.training = 'running';
  show($('train-box'));
  show($('stop'), !!state.stop);
  $('train-progress').value = 0;
  $('train-status').textContent = 'Training…';
  renderEstimates($('estimates'), []);
  drawChart($('chart'), [], 0);
  updateTeach();
  try {
    const r = await engine.call('train', { examples: F, labels: ex.map((p) => p.label) }, [F.buffer]);
    state.classNames = r.classNames;
    state.extraClasses = state.extraClasses.filter((c) => !r.classNames.includes(c));
    // Photos dropped from now on are to be classified, not labelled: the user asks for a label again.
    $('drop-label').value = '';
    await rescoreAll();
    const photos = `your ${ex.length} photo${ex.length === 1 ? '' : 's'}`;
    const bank = r.bankRows ? ` and ${r.bankRows} examples of the model’s classes` : '';
    $('train-status').textContent = `${r.stopped ? 'Stopped' : 'Done'}: taught from ${photos}${bank} in ${r.seconds.toFixed(1)} s. ` +
      (r.estimates.length ? 'Expected accuracy per class, measured on photos held out of training:' : 'All photos are re-scored.');
    renderEstimates($('estimates'), r.estimates);
    const head = await engine.call('exportHead');
    await store.saveHead(head.bytes, state.classNames);
    document.body.dataset.training = 'done';
  } catch (e) {
    $('train-status').textContent = `Training failed: ${e.message}`;
    document.body.dataset.training = 'failed';
  } finally {
    state.training = false;
    show($('stop'), false);
    updateTeach();
  }
}

// ---- export / import / reset -----------------------------------------------------------

async function exportModel() {
  try {
    const { bytes } = await engine.call('exportHead');
    const url = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = `petal-model-${new Date().toISOString().slice(0, 10)}.safetensors`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    // The file name never breaks across lines, and the command is code the user can copy.
    const command = element('code', 'command');
    command.append('petal predict --model ', element('span', 'filename', a.download), ' photo.jpg');
    setStatus('model-status', [
      'Exported ', element('span', 'filename', a.download), ` (${formatMB(bytes.byteLength)}): the classifier and its class names. Use it with `,
      command, ', or Import it here later.',
    ], 'ok');
  } catch (e) {
    setStatus('model-status', `Export failed: ${e.message}`, 'error');
  }
}

async function importModel(file) {
  try {
    if (file.size > 512 << 20) throw new Error('this file is too large to be a Petal model');
    const bytes = await file.arrayBuffer();
    const copy = bytes.slice(0);
    const r = await engine.call('importHead', { bytes }, [bytes]);
    state.classNames = r.classNames;
    state.extraClasses = state.extraClasses.filter((c) => !r.classNames.includes(c));
    await rescoreAll();
    await store.saveHead(copy, state.classNames);
    const bank = r.bankRows ? `, with ${r.bankRows} examples of them for teaching` : ', without examples for teaching (new classes may push the old ones aside)';
    setStatus('model-status', `Imported ${file.name}: ${r.classNames.length} classes (${r.classNames.join(', ')})${bank}. All photos are re-scored.`, 'ok');
  } catch (e) {
    setStatus('model-status', `Could not import ${file.name}: ${e.message}`, 'error');
  }
  updateTeach();
}

async function resetModel() {
  show($('reset-confirm'), false);
  try {
    const r = await engine.call('reset');
    state.classNames = r.classNames;
    state.extraClasses = [];
    for (const p of state.photos) p.label = null;
    await store.clear();
    await rescoreAll();
    state.history = [];
    show($('train-box'), false);
    setStatus('model-status', 'Back to the model as shipped: your labels and trained classes are gone.', 'ok');
  } catch (e) {
    setStatus('model-status', `Reset failed: ${e.message}`, 'error');
  }
  for (const p of state.photos) refresh(p);
  updateTeach();
}

// ---- restoring the last visit ----------------------------------------------------------

async function restore(saved) {
  if (saved.head) {
    try {
      const r = await engine.call('importHead', { bytes: saved.head.bytes.slice(0) });
      state.classNames = r.classNames;
    } catch (e) {
      setStatus('storage-note', `Your last trained model could not be restored (${e.message}); using the model as shipped.`, 'warn');
    }
  }
  for (const ex of saved.examples) {
    if (!ex || !ex.features || !ex.label) continue;
    if (!allClasses().includes(ex.label)) state.extraClasses.push(ex.label);
    const photo = addPhoto({
      id: ex.id, name: ex.name, state: 'done', label: ex.label, createdAt: ex.createdAt, digest: ex.digest,
      features: new Float32Array(ex.features), thumbBlob: ex.thumb, thumbUrl: ex.thumb ? URL.createObjectURL(ex.thumb) : '',
      predictions: [],
    });
    if (ex.digest) state.byDigest.set(ex.digest, photo);
  }
  if (saved.examples.length) {
    await rescoreAll();
    setStatus('model-status', `Restored ${saved.examples.length} labelled photo${saved.examples.length === 1 ? '' : 's'}` +
      `${saved.head ? ' and your trained model' : ''} from your last visit.`, 'ok');
  } else if (saved.head) {
    setStatus('model-status', 'Restored your trained model from your last visit.', 'ok');
  }
}

// ---- wiring ----------------------------------------------------------------------------

function wire() {
  const zone = $('drop');
  const input = $('file-input');
  $('choose').addEventListener('click', () => input.click());
  input.addEventListener('change', () => {
    enqueue([...input.files]);
    input.value = '';
  });
  // The whole window takes drops, so a photo dropped next to the zone is not opened by the browser.
  let depth = 0;
  window.addEventListener('dragenter', (e) => { e.preventDefault(); depth++; zone.classList.add('over'); });
  window.addEventListener('dragleave', () => { if (--depth <= 0) { depth = 0; zone.classList.remove('over'); } });
  window.addEventListener('dragover', (e) => { e.preventDefault(); if (e.dataTransfer) e.dataTransfer.dropEffect = 'copy'; });
  window.addEventListener('drop', async (e) => {
    e.preventDefault();
    depth = 0;
    zone.classList.remove('over');
    if (!e.dataTransfer) return;
    enqueue(await filesFromDrop(e.dataTransfer));
  });
  // (only keys on the zone itself: its buttons, Camera among them, do their own job)
  zone.addEventListener('keydown', (e) => { if (e.target === zone && (e.key === 'Enter' || e.key === ' ')) { e.preventDefault(); input.click(); } });
  // The camera: live classes, and Capture, which adds the frame as if it had been dropped here.
  setupCamera({
    analyze: (bytes) => engine.call('analyze', { bytes }, [bytes]),
    ready: () => state.ready,
    addPhoto: (file) => enqueue([file]),
  });

  $('add-class').addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = $('new-class').value.trim();
    // the engine answers asynchronously: no stale answer meanwhile; data-kind is set when it has
    $('add-class-msg').textContent = '';
    delete $('add-class-msg').dataset.kind;
    const why = state.ready ? await validateClass(name, false) : 'wait a moment: the model is still loading';
    $('add-class-msg').textContent = why;
    $('add-class-msg').dataset.kind = why ? 'error' : 'ok';
    if (why) return;
    state.extraClasses.push(name);
    $('new-class').value = '';
    updateTeach();
    $('drop-label').value = name;
    $('add-class-msg').textContent = `Added “${name}”. New photos you drop now are labelled “${name}”; or label photos on their cards.`;
  });
  $('drop-label').addEventListener('change', () => { $('add-class-msg').textContent = ''; });
  $('train').addEventListener('click', train);
  $('stop').addEventListener('click', () => { if (state.stop) Atomics.store(state.stop, 0, 1); });
  $('export').addEventListener('click', exportModel);
  $('export-onnx').addEventListener('click', () => exportOnnx({
    engine, element, button: $('export-onnx'), say: (content, kind) => setStatus('model-status', content, kind),
  }));
  $('import').addEventListener('click', () => $('import-file').click());
  $('import-file').addEventListener('change', () => {
    const f = $('import-file').files[0];
    $('import-file').value = '';
    if (f) importModel(f);
  });
  $('reset').addEventListener('click', () => {
    const n = examples().length;
    $('reset-text').textContent = `Go back to the model as shipped? This forgets ${n} labelled photo${n === 1 ? '' : 's'} and any classes you trained.`;
    show($('reset-confirm'));
  });
  $('reset-no').addEventListener('click', () => show($('reset-confirm'), false));
  $('reset-yes').addEventListener('click', resetModel);
  window.addEventListener('resize', () => { if (state.history.length) drawChart($('chart'), state.history, state.epochs); });
}

async function main() {
  if (!(await ensureIsolation())) return;  // reloading once to come back cross-origin isolated
  wire();
  updateTeach();
  document.body.dataset.engine = 'loading';
  store = new Store({
    onProblem: (text) => {
      setStatus('storage-note', `Not saved: ${text}.`, 'warn');
      $('keep-note').textContent = 'Not kept: the browser storage is not available, so your labels and model last only until you close this page. Use Export to keep your model.';
    },
  });
  const savedPromise = store.open().then((s) => s.load());
  try {
    await startEngine();
  } catch (e) {
    show($('download'), false);
    setStatus('fatal', `The classifier could not start: ${e.message}`, 'error');
    document.body.dataset.engine = 'failed';
    return;
  }
  await restore(await savedPromise);
  state.ready = true;
  document.body.dataset.engine = 'ready';
  // diagnostics for benchmarks (tests/browser/many-photos.bench.mjs)
  window.petalStats = async () => ({ ...(await engine.call('stats')), photos: state.photos.length, queued: state.queue.length, profile: structuredClone(state.profile) });
  updateTeach();
  updateQueueStatus();
  pump();
  keepForOffline(state.info.files);  // the page's files, for offline use (sw.js)
}

main();
