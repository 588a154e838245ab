// The camera panel: the device camera (getUserMedia) in the page, its top classes live, and
// Capture, which turns the current frame into a photo exactly like a dropped one.
//
// Live mode sends one frame at a time through the engine's `analyze` request and grabs the next
// frame only when the answer has come, so it runs as fast as the engine allows and never queues
// up work; it shares the worker with the photo queue, which keeps its own order (the worker
// answers requests in turn, so the two alternate). A live frame is a JPEG that lives only until
// its answer: its features and thumbnail are dropped. A captured frame becomes a File
// (camera-<time>.jpg) handed to the page's photo queue, which keeps only its thumbnail and features.
//
// Elements (web/index.html): #camera (the button), #camera-panel (video, live classes, rate,
// Capture, Stop), #camera-msg (what went wrong). document.body.dataset.camera is 'off',
// 'starting', 'live' or 'failed'.

const MAX_SIDE = 640;         // longest side of a grabbed frame, in pixels (the engine looks at 288²)
const JPEG_QUALITY = 0.9;
const RATE_WINDOW_MS = 3000;  // the rate shown is over the answers of the last 3 s
const HOLD_EVERY_MS = 300;    // holding Space captures a photo this often
const FRAME_WAIT_MS = 250;    // live mode: longest wait for a new video frame
const CAPTURE_WAIT_MS = 2000; // Capture: longest wait for a frame not captured before

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (p) => (p >= 0.995 ? `${(100 * p).toFixed(0)}%` : p >= 0.001 ? `${(100 * p).toFixed(1)}%` : '<0.1%');

// A plain sentence for each way getUserMedia fails.
function whyNot(e) {
  switch (e && e.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'The camera was not allowed. To use it, allow the camera for this site in the browser (the icon next to the address), then press Camera again. Dropping photos still works.';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'No camera was found. Connect one and press Camera again, or drop photos instead.';
    case 'NotReadableError':
    case 'AbortError':
      return 'The camera could not be started: another program may be using it. Close that program and press Camera again.';
    default:
      return `The camera could not be started (${(e && e.message) || e}). Dropping photos still works.`;
  }
}

// analyze(bytes: ArrayBuffer) → the worker's answer ({predictions, …} or {error});
// ready() → whether the engine has started; addPhoto(file) → the page's path for a dropped photo.
export function setupCamera({ analyze, ready, addPhoto }) {
  const button = $('camera');
  const panel = $('camera-panel');
  const video = $('camera-video');
  const live = $('camera-live');
  const rate = $('camera-rate');
  const captureButton = $('camera-capture');
  const stopButton = $('camera-stop');
  const msg = $('camera-msg');
  const canvas = document.createElement('canvas');
  let stream = null;
  let run = 0;          // bumped on every start and stop: a loop whose number is old ends
  let holding = null;   // the timer while Space is held
  let capturing = null; // the capture under way (one at a time)
  let lastCaptured = -1; // the camera's number of the last frame captured

  const setState = (s) => { document.body.dataset.camera = s; };
  const say = (text, kind = 'error') => {
    msg.textContent = text;
    msg.dataset.kind = kind;
    msg.hidden = !text;
  };
  setState('off');

  // The next frame the camera delivers: its metadata ({presentedFrames, …}), or null when none
  // came within ms (always null, after ms, where the browser has no requestVideoFrameCallback).
  const nextFrame = (ms) => new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms);
    if (video.requestVideoFrameCallback) video.requestVideoFrameCallback((now, meta) => { clearTimeout(timer); resolve(meta); });
  });

  // The frame on screen as a JPEG, at most MAX_SIDE on its longest side.
  async function grab() {
    const w = video.videoWidth, h = video.videoHeight;
    if (!w || !h) throw new Error('the camera has not sent a picture yet');
    const s = Math.min(1, MAX_SIDE / Math.max(w, h));
    canvas.width = Math.max(1, Math.round(w * s));
    canvas.height = Math.max(1, Math.round(h * s));
    canvas.getContext('2d').drawImage(video, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', JPEG_QUALITY));
    if (!blob) throw new Error('the frame could not be encoded');
    return blob;
  }

  function showLive(predictions) {
    const items = predictions.map((p) => {
      const li = document.createElement('li');
      const row = document.createElement('span');
      row.className = 'pred';
      row.dataset.label = p.label;
      const bar = document.createElement('span');
      bar.className = 'bar';
      bar.style.width = `${Math.max(0.5, 100 * p.probability).toFixed(1)}%`;
      const cls = document.createElement('span');
      cls.className = 'cls';
      cls.textContent = p.label;
      const value = document.createElement('span');
      value.className = 'pct';
      value.textContent = pct(p.probability);
      row.append(bar, cls, value);
      li.append(row);
      return li;
    });
    live.replaceChildren(...items);
    panel.dataset.top = predictions.length ? predictions[0].label : '';
  }

  // One frame in flight at a time: grab, analyze, show, then the next frame.
  async function liveLoop(mine) {
    const answered = [];
    while (mine === run) {
      if (!ready()) {
        rate.textContent = 'Waiting for the model…';
        await sleep(FRAME_WAIT_MS);
        continue;
      }
      await nextFrame(FRAME_WAIT_MS);
      if (mine !== run) break;
      let answer;
      try {
        const bytes = await (await grab()).arrayBuffer();
        answer = await analyze(bytes);
        if (answer.error) throw new Error(answer.error);
      } catch (e) {
        if (mine !== run) break;
        rate.textContent = `This frame could not be classified: ${e.message}`;
        await sleep(FRAME_WAIT_MS);
        continue;
      }
      if (mine !== run) break;
      showLive(answer.predictions);
      answer = null;  // features and thumbnail of a live frame are not kept
      const now = performance.now();
      answered.push(now);
      while (answered.length > 2 && answered[0] < now - RATE_WINDOW_MS) answered.shift();
      if (answered.length >= 2) {
        const perSecond = (answered.length - 1) / ((now - answered[0]) / 1000);
        rate.textContent = `Live · ${perSecond.toFixed(1)} frames/s`;
        rate.dataset.rate = perSecond.toFixed(2);
      } else {
        rate.textContent = 'Live';
      }
    }
  }

  // One capture at a time, each of a frame not captured before, so two captures are two
  // pictures (a camera that sends no new frame for CAPTURE_WAIT_MS gives no photo).
  function capture() {
    if (!stream || capturing) return capturing;
    capturing = captureOne().finally(() => { capturing = null; });
    return capturing;
  }

  async function captureOne() {
    const frame = await nextFrame(CAPTURE_WAIT_MS);
    if (!stream) return;
    if (video.requestVideoFrameCallback) {
      if (!frame || frame.presentedFrames === lastCaptured) {
        say('Nothing was captured: the camera sent no new picture. Is it still on?', 'warn');
        return;
      }
      lastCaptured = frame.presentedFrames;
    }
    try {
      const blob = await grab();
      const stamp = new Date().toISOString().replace(/[:.]/g, '-');
      const frame = new File([blob], `camera-${stamp}.jpg`, { type: 'image/jpeg', lastModified: Date.now() });
      frame.inMemory = true;  // the page keeps only its thumbnail and features, not these bytes
      addPhoto(frame);
      if (msg.dataset.kind === 'warn') say('');
    } catch (e) {
      say(`Nothing was captured: ${e.message}.`, 'warn');
    }
  }

  function stopHolding() {
    clearInterval(holding);
    holding = null;
  }

  // Ends the stream and gives the camera back; text, if any, says why.
  function stop(text = '') {
    run++;
    stopHolding();
    if (stream) for (const t of stream.getTracks()) t.stop();
    stream = null;
    video.srcObject = null;
    panel.hidden = true;
    live.replaceChildren();
    panel.dataset.top = '';
    rate.textContent = '';
    delete rate.dataset.rate;
    button.textContent = 'Camera';
    button.disabled = false;
    say(text);
    setState(text ? 'failed' : 'off');
  }

  async function start() {
    say('');
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      stop('This page cannot use a camera here: browsers offer the camera only to pages served over https:// or from localhost. Dropping photos still works.');
      return;
    }
    button.disabled = true;
    setState('starting');
    say('Starting the camera…', 'ok');
    let s;
    try {
      s = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment', width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
    } catch (e) {
      stop(whyNot(e));
      return;
    }
    stream = s;
    lastCaptured = -1;
    const mine = ++run;
    for (const t of s.getVideoTracks()) {
      t.addEventListener('ended', () => {
        if (stream === s) stop('The camera stopped: it was unplugged, switched off or taken by another program. Press Camera to start it again.');
      });
    }
    video.srcObject = s;
    panel.hidden = false;
    button.textContent = 'Stop camera';
    button.disabled = false;
    try {
      await video.play();
    } catch (e) {
      if (mine === run) stop(`The camera picture could not be shown (${e.message}). Press Camera to try again.`);
      return;
    }
    if (mine !== run) return;
    say('');
    setState('live');
    rate.textContent = 'Live';
    liveLoop(mine);
  }

  button.addEventListener('click', () => (stream ? stop() : start()));
  stopButton.addEventListener('click', () => stop());
  captureButton.addEventListener('click', () => capture());
  // Holding Space while the panel has focus captures a photo every HOLD_EVERY_MS.
  panel.addEventListener('keydown', (e) => {
    if (e.key !== ' ' || e.target !== panel) return;
    e.preventDefault();
    if (e.repeat || holding) return;
    capture();
    holding = setInterval(capture, HOLD_EVERY_MS);
  });
  panel.addEventListener('keyup', (e) => { if (e.key === ' ') stopHolding(); });
  panel.addEventListener('focusout', stopHolding);
  window.addEventListener('pagehide', () => { if (stream) stop(); });
  return { stop };
}
