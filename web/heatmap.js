// "Where it looks": a card's toggle that asks the engine where the model looks in the photo for
// its top class (Grad-CAM, wasm/heatmap.h) and draws it over the thumbnail. The map is computed
// only when the user opens it, never during plain classification, and never kept: after training
// the top class may change, so every opening asks again.
//
// The grid covers the whole photo (the engine stretches photos to its input size), so it is drawn
// on a canvas of the thumbnail's own size, laid over the thumbnail with the same object-fit.

const OPACITY = 0.6;  // alpha at the peak

// card: from cards.js createCard (card._photo is its photo: {file?, thumbBlob, ...});
// engine: the EngineClient.
export function addWhereItLooks(card, engine) {
  const row = document.createElement('div');
  row.className = 'where';
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'small where-toggle';
  button.textContent = 'Where it looks';
  button.setAttribute('aria-pressed', 'false');
  const caption = document.createElement('p');
  caption.className = 'where-caption';
  caption.hidden = true;
  row.append(button, caption);
  card.querySelector('.card-body').append(row);

  let asked = 0;  // the latest opening; an answer to an earlier one is dropped
  const source = () => {
    const p = card._photo;
    return p.file ? { blob: p.file, fromThumb: false } : p.thumbBlob ? { blob: p.thumbBlob, fromThumb: true } : null;
  };
  const describe = () => {
    const s = source();
    button.title = s && s.fromThumb
      ? 'Show where the model looks for its top class; computed from the thumbnail, since the original photo is not kept after the page is closed'
      : 'Show where the model looks in this photo for its top class';
  };
  button.addEventListener('pointerenter', describe);
  button.addEventListener('focus', describe);

  const hide = () => {
    asked++;
    button.setAttribute('aria-pressed', 'false');
    caption.hidden = true;
    caption.textContent = '';
    card.querySelector('.thumb .heatmap')?.remove();
  };
  card._hideWhere = hide;

  button.addEventListener('click', async () => {
    if (button.getAttribute('aria-pressed') === 'true') {
      hide();
      return;
    }
    const ticket = ++asked;
    button.setAttribute('aria-pressed', 'true');
    describe();
    caption.hidden = false;
    caption.className = 'where-caption';
    caption.textContent = 'Looking…';
    const s = source();
    let r;
    try {
      if (!s) throw new Error('this photo is not kept, so there is nothing to look at');
      const bytes = await s.blob.arrayBuffer();
      r = await engine.call('heatmap', { bytes }, [bytes]);
      if (r.error) throw new Error(r.error);
    } catch (e) {
      if (ticket !== asked) return;
      caption.className = 'where-caption error';
      caption.textContent = `Could not show where it looks: ${e.message}`;
      return;
    }
    if (ticket !== asked) return;
    const img = card.querySelector('.thumb img');
    const canvas = draw(r, img ? img.naturalWidth : r.width * 16, img ? img.naturalHeight : r.height * 16);
    canvas.dataset.peakX = String(r.peakX);
    canvas.dataset.peakY = String(r.peakY);
    canvas.dataset.label = r.label;
    const from = s.fromThumb ? ' (computed from the thumbnail)' : '';
    canvas.title = `Where the model sees ${r.label}${from}`;
    card.querySelector('.thumb').append(canvas);
    const none = !r.values.some((v) => v > 0);
    caption.textContent = none ? `nothing here points to ${r.label}` : `where it sees ${r.label}`;
    caption.title = `${r.label}: ${(100 * r.probability).toFixed(1)}%${from}`;
  });
}

// Hides every open map under `root` (after the model changed: a map shows an old model's view).
export function hideAllWhereItLooks(root) {
  for (const card of root.querySelectorAll('.card')) card._hideWhere?.();
}

// The map upscaled bilinearly (cell centres at (i + 0.5) / n of the photo) to w × h, coloured
// from transparent through yellow to red.
function draw(r, w, h) {
  const canvas = document.createElement('canvas');
  canvas.className = 'heatmap';
  canvas.width = Math.max(1, w);
  canvas.height = Math.max(1, h);
  const img = new ImageData(canvas.width, canvas.height);
  const { width: gw, height: gh, values } = r;
  const at = (x, y) => values[y * gw + x];
  for (let py = 0; py < canvas.height; py++) {
    const fy = Math.min(gh - 1, Math.max(0, ((py + 0.5) / canvas.height) * gh - 0.5));
    const y0 = Math.floor(fy), y1 = Math.min(gh - 1, y0 + 1), ty = fy - y0;
    for (let px = 0; px < canvas.width; px++) {
      const fx = Math.min(gw - 1, Math.max(0, ((px + 0.5) / canvas.width) * gw - 0.5));
      const x0 = Math.floor(fx), x1 = Math.min(gw - 1, x0 + 1), tx = fx - x0;
      const v = (at(x0, y0) * (1 - tx) + at(x1, y0) * tx) * (1 - ty) + (at(x0, y1) * (1 - tx) + at(x1, y1) * tx) * ty;
      const o = 4 * (py * canvas.width + px);
      img.data[o] = 255;                                           // yellow (255,255,0) → red (255,0,0)
      img.data[o + 1] = Math.round(255 * Math.min(1, 2 * (1 - v)));
      img.data[o + 2] = 0;
      img.data[o + 3] = Math.round(255 * OPACITY * Math.min(1, 2 * v));  // transparent → opaque by half-way
    }
  }
  canvas.getContext('2d').putImageData(img, 0, 0);
  return canvas;
}
