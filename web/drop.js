// Files from a drag-and-drop, including the photos inside dropped folders (in name order).

function readAllEntries(reader) {
  return new Promise((resolve) => {
    const all = [];
    const next = () => reader.readEntries((batch) => {
      if (!batch.length) return resolve(all);
      all.push(...batch);
      next();
    }, () => resolve(all));
    next();
  });
}

async function walk(entry, out) {
  if (entry.isFile) {
    await new Promise((resolve) => entry.file((f) => { out.push(f); resolve(); }, () => resolve()));
  } else if (entry.isDirectory) {
    const children = await readAllEntries(entry.createReader());
    children.sort((a, b) => a.name.localeCompare(b.name));
    for (const c of children) if (!c.name.startsWith('.')) await walk(c, out);
  }
}

export async function filesFromDrop(dataTransfer) {
  const items = [...(dataTransfer.items || [])].filter((i) => i.kind === 'file');
  const entries = items.map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null));
  if (!entries.length || entries.some((e) => !e) || !entries.some((e) => e.isDirectory)) return [...dataTransfer.files];
  const out = [];
  for (const e of entries) await walk(e, out);
  return out;
}
