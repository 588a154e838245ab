// Export as ONNX: the whole classifier (the network, the current head with what was taught in the
// page, its class names) as one ONNX model with each class's probability as output, for ONNX
// Runtime and the other tools that read ONNX. The engine writes the file (Engine::to_onnx, in
// the worker); this file names it, downloads it and says what is in it.

import './units.js';  // self.formatMB

const { formatMB } = self;

// petal-daisy-dandelion-roses.onnx: the class names, made safe for a file name, up to ~60
// characters, then how many more there are.
export function onnxFileName(classNames) {
  const slug = (s) => s.normalize('NFKC').toLowerCase().replace(/[^\p{L}\p{N}]+/gu, '-').replace(/^-+|-+$/g, '');
  const parts = classNames.map(slug).filter(Boolean);
  let name = parts.length ? parts[0].slice(0, 60) : 'classifier';
  let used = Math.min(parts.length, 1);
  while (used < parts.length && name.length + 1 + parts[used].length <= 60) name += `-${parts[used++]}`;
  if (used < parts.length) name += `-and-${parts.length - used}-more`;
  return `petal-${name}.onnx`;
}

let busy = false;

// engine: the EngineClient; say(content, kind): the model panel's message (a string or nodes);
// element(tag, cls, text): a new DOM element; button: the Export as ONNX button.
export async function exportOnnx({ engine, say, element, button }) {
  if (busy) return;
  busy = true;
  const label = button.textContent;
  button.textContent = 'Preparing…';
  button.setAttribute('aria-busy', 'true');
  say('Preparing the ONNX model: the network and your classifier in one file…', 'info');
  try {
    const r = await engine.call('exportOnnx');
    const name = onnxFileName(r.classNames);
    const url = URL.createObjectURL(new Blob([r.bytes], { type: 'application/octet-stream' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    const s = r.inputSize, n = r.classNames.length;
    const order = n <= 10 ? r.classNames.join(', ') : `the order of its metadata petal.class_names`;
    say([
      // (the name may be long: it wraps at its hyphens rather than overflow the panel)
      'Exported ', element('span', 'onnx-name', name), ` (${formatMB(r.bytes.byteLength).replace(' ', '\u00a0')}): the whole classifier, for ONNX Runtime `,
      `and other ONNX tools. Input: photos resized to ${s}×${s}, float32 [n, ${s}, ${s}, 3], BGR minus the ImageNet means `,
      '103.939, 116.779, 123.68 (', element('code', 'command', 'petal preprocess'), ' writes it). Output ',
      element('code', '', 'probabilities'), `: ${n} per photo, ${order}.`,
      r.int8 ? ' This page runs int8 convolutions and the file fp32, so their probabilities differ by a few tenths of a percent.' : '',
    ], 'ok');
  } catch (e) {
    const oom = /out of memory|allocation failed|Array buffer/i.test(e.message);
    say(oom
      ? 'Export as ONNX failed: not enough memory to write the file. Close other tabs, or reload this page and export ' +
        'again; or use Export, and petal onnx on your computer turns that file into ONNX.'
      : `Export as ONNX failed: ${e.message}`, 'error');
  } finally {
    busy = false;
    button.textContent = label;
    button.removeAttribute('aria-busy');
  }
}
