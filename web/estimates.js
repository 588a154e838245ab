// After teaching: how well each class is expected to do, as one bar per class. The numbers come
// from the engine (wasm/teach.h): each class's photos were scored by a model taught without them,
// so they are not training accuracy. A class with few photos or a weak score gets the engine's hint.

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// estimates: [{name, isNew, photos, tested, recall (-1: not measurable), low, high (where the real
// recall likely lies), weak, confusedWith, hint}]
export function renderEstimates(list, estimates) {
  list.replaceChildren(...estimates.map((e) => {
    const li = el('li', 'estimate');
    li.dataset.class = e.name;
    li.dataset.recall = String(e.recall);
    const head = el('div', 'estimate-head');
    head.append(el('span', 'estimate-name', e.name));
    if (e.isNew) head.append(el('span', 'estimate-new', 'new'));
    const known = e.recall >= 0;
    head.append(el('span', 'estimate-value', known ? `${Math.round(100 * e.recall)}%` : '–'));
    const bar = el('div', 'estimate-bar');
    const fill = el('div', 'estimate-fill');
    fill.style.width = known ? `${(100 * e.recall).toFixed(1)}%` : '0';
    if (e.weak) fill.classList.add('weak');
    // the likely range, drawn over the bar: few held-out photos make it wide
    const range = el('div', 'estimate-range');
    range.hidden = !known;
    if (known) Object.assign(range.style, { left: `${(100 * e.low).toFixed(1)}%`, width: `${(100 * (e.high - e.low)).toFixed(1)}%` });
    bar.append(fill, range);
    const pct = (v) => Math.round(100 * v);
    const what = e.photos ? `${e.photos} labelled photo${e.photos === 1 ? '' : 's'}` : 'examples that came with the model';
    const note = el('p', 'estimate-note', known
      ? `likely ${pct(e.low)}–${pct(e.high)}%: checked on ${e.tested} held-out ${e.photos ? 'photos' : 'examples'} · ${what}`
      : `not checked: ${what}`);
    li.append(head, bar, note);
    if (e.hint) li.append(el('p', 'estimate-hint', e.hint));
    return li;
  }));
  list.hidden = estimates.length === 0;
}
