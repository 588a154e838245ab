// One card per photo: thumbnail, the top classes as bars with percentages (click one to label
// the photo as that class), a menu to label it as any class or a new one, and the photo's own
// message when it could not be used.
//
// A photo is {id, name, state: 'waiting' | 'working' | 'done' | 'error', error, thumbUrl,
// predictions: [{label, probability}], label}.

const NEW_CLASS = '\u0000new';

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

const pct = (p) => (p >= 0.995 ? `${(100 * p).toFixed(0)}%` : p >= 0.001 ? `${(100 * p).toFixed(1)}%` : '<0.1%');

// handlers: {onLabel(photo, label|null), classes() → [names], validateClass(name) → Promise of '' or why not,
// maxClassNameBytes() → the engine's limit}
export function createCard(photo, handlers) {
  const card = el('article', 'card');
  card.dataset.id = photo.id;
  const thumb = el('div', 'thumb');
  const body = el('div', 'card-body');
  const name = el('h3', 'name', photo.name);
  name.title = photo.name;
  const preds = el('ol', 'preds');
  const msg = el('p', 'msg');
  const ribbon = el('p', 'ribbon');

  const labelRow = el('div', 'label-row');
  const select = el('select', 'label-select');
  select.setAttribute('aria-label', `Label ${photo.name} as`);
  const form = el('form', 'new-class');
  form.hidden = true;
  const input = el('input');
  input.type = 'text';
  input.placeholder = 'name of the new class';
  input.setAttribute('aria-label', 'name of the new class');
  const ok = el('button', 'small', 'Add');
  ok.type = 'submit';
  const formMsg = el('p', 'form-msg');
  form.append(input, ok, formMsg);
  labelRow.append(select, form);

  body.append(name, ribbon, preds, msg, labelRow);
  card.append(thumb, body);

  // Options are filled when the menu is about to open, so thousands of cards stay cheap.
  const fillOptions = () => {
    const current = card._photo.label || '';
    select.replaceChildren();
    const first = el('option', '', current ? 'Remove label' : 'Label as…');
    first.value = '';
    select.append(first);
    for (const c of handlers.classes()) {
      const o = el('option', '', c);
      o.value = c;
      select.append(o);
    }
    const o = el('option', '', 'New class…');
    o.value = NEW_CLASS;
    select.append(o);
    select.value = current;
  };
  select.addEventListener('pointerdown', fillOptions);
  select.addEventListener('focus', fillOptions);
  select.addEventListener('keydown', (e) => { if (e.key === ' ' || e.key === 'Enter') fillOptions(); });
  select.addEventListener('change', () => {
    if (select.value === NEW_CLASS) {
      input.maxLength = handlers.maxClassNameBytes();  // UTF-16 units ≤ UTF-8 bytes: never cuts a valid name
      form.hidden = false;
      input.focus();
      return;
    }
    form.hidden = true;
    handlers.onLabel(card._photo, select.value || null);
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const label = input.value.trim();
    const why = await handlers.validateClass(label, true);
    if (why) {
      formMsg.textContent = why;
      return;
    }
    formMsg.textContent = '';
    form.hidden = true;
    input.value = '';
    handlers.onLabel(card._photo, label);
  });
  preds.addEventListener('click', (e) => {
    const b = e.target.closest('button.pred');
    if (!b) return;
    const label = b.dataset.label;
    handlers.onLabel(card._photo, card._photo.label === label ? null : label);
  });

  card._parts = { thumb, preds, msg, ribbon, select, labelRow, name };
  updateCard(card, photo);
  return card;
}

export function updateCard(card, photo) {
  card._photo = photo;
  const { thumb, preds, msg, ribbon, select, labelRow } = card._parts;
  card.dataset.state = photo.state;
  card.dataset.label = photo.label || '';
  const top = photo.predictions && photo.predictions[0];
  card.dataset.topLabel = top ? top.label : '';
  card.dataset.topProbability = top ? String(top.probability) : '';

  if (photo.thumbUrl && !thumb.querySelector('img')) {
    const img = el('img');
    img.alt = photo.name;
    img.decoding = 'async';
    img.src = photo.thumbUrl;
    thumb.replaceChildren(img);
  } else if (!photo.thumbUrl) {
    const text = photo.state === 'error' ? '!' : photo.state === 'working' ? 'Looking…' : 'Waiting…';
    if (thumb.textContent !== text) thumb.replaceChildren(el('span', photo.state === 'error' ? 'thumb-error' : 'thumb-wait', text));
  }

  msg.textContent = photo.state === 'error' ? photo.error : '';
  msg.hidden = photo.state !== 'error';
  labelRow.hidden = photo.state !== 'done';

  if (photo.label) {
    const agrees = top && top.label === photo.label;
    ribbon.textContent = agrees || !top ? `✓ Your label: ${photo.label}` : `Your label: ${photo.label} · model says ${top.label}`;
    ribbon.className = `ribbon ${agrees || !top ? 'agree' : 'disagree'}`;
    ribbon.hidden = false;
  } else {
    ribbon.hidden = true;
  }
  if (select.options.length === 0 || select.value !== (photo.label || '')) {
    // keep the closed menu showing the current label without building every option
    select.replaceChildren();
    const o = el('option', '', photo.label || 'Label as…');
    o.value = photo.label || '';
    select.append(o);
  }

  const items = [];
  for (const p of photo.state === 'done' ? photo.predictions || [] : []) {
    const li = el('li');
    const b = el('button', 'pred');
    b.type = 'button';
    b.dataset.label = p.label;
    b.dataset.probability = String(p.probability);  // full precision, for tests and tools
    b.title = photo.label === p.label ? `Remove the label ${p.label}` : `Label this photo as ${p.label}`;
    if (photo.label === p.label) b.classList.add('chosen');
    const bar = el('span', 'bar');
    bar.style.width = `${Math.max(0.5, 100 * p.probability).toFixed(1)}%`;
    b.append(bar, el('span', 'cls', p.label), el('span', 'pct', pct(p.probability)));
    li.append(b);
    items.push(li);
  }
  preds.replaceChildren(...items);
}
