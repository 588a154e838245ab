// Shared by the benchmark scripts: statistics, the machine description, tables, paths.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { repoRoot, dataDir } from '../tools/paths.mjs';

export { repoRoot, dataDir, cacheDir, backbonePath, petalCli, engineDir } from '../tools/paths.mjs';
export { readF32, maxAbsDiff, maxAbs } from '../tools/tensors.mjs';
export const benchDir = path.join(repoRoot, 'build/bench');  // git-ignored: exported ONNX, copies to serve

export function need(p, how) {
  if (!fs.existsSync(p)) {
    console.error(`bench: missing ${p}${how ? ` (${how})` : ''}`);
    process.exit(2);
  }
  return p;
}

export function quantile(sorted, p) {
  const i = p * (sorted.length - 1), lo = Math.floor(i), hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (i - lo);
}

// median and spread of a list of ms values
export function stats(v) {
  const s = [...v].sort((a, b) => a - b);
  const r = (x) => Math.round(x * 100) / 100;
  return { median: r(quantile(s, 0.5)), q1: r(quantile(s, 0.25)), q3: r(quantile(s, 0.75)), min: r(s[0]), max: r(s[s.length - 1]), n: s.length };
}

export function machine() {
  const cpus = os.cpus();
  return { cpu: cpus[0]?.model.trim(), cores: cpus.length, node: process.version, loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100) };
}

// Photos of the flower set: `n` spread evenly over the sorted list of all of them.
export function flowerSample(n) {
  const root = need(path.join(dataDir, 'flower_photos'));
  const all = [];
  for (const c of fs.readdirSync(root).sort()) {
    const d = path.join(root, c);
    if (!fs.statSync(d).isDirectory()) continue;
    for (const f of fs.readdirSync(d).sort()) if (/\.(jpe?g|png)$/i.test(f)) all.push(path.join(d, f));
  }
  if (n >= all.length) return all;
  return Array.from({ length: n }, (_, i) => all[Math.floor((i * all.length) / n)]);
}

// A Markdown table (readable as plain text too) from rows of objects.
export function table(rows, cols = Object.keys(rows[0] || {})) {
  const w = cols.map((c) => Math.max(3, c.length, ...rows.map((r) => String(r[c] ?? '').length)));
  const line = (vals) => '| ' + vals.map((v, i) => String(v ?? '').padStart(w[i])).join(' | ') + ' |';
  return [line(cols), '|' + w.map((x) => '-'.repeat(x + 1) + ':').join('|') + '|', ...rows.map((r) => line(cols.map((c) => r[c])))].join('\n');
}

export function parseArgs(defaults) {
  const out = { ...defaults };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const m = argv[i].match(/^--([a-z0-9-]+)(?:=(.*))?$/);
    if (!m || !(m[1] in defaults)) {
      console.error(`bench: unknown argument ${argv[i]}; known: ${Object.keys(defaults).map((k) => '--' + k).join(' ')}`);
      process.exit(2);
    }
    const key = m[1];
    if (typeof defaults[key] === 'boolean') out[key] = m[2] === undefined ? true : m[2] !== 'false';
    else {
      const v = m[2] ?? argv[++i];
      out[key] = typeof defaults[key] === 'number' ? Number(v) : v;
      if (typeof defaults[key] === 'number' && !Number.isFinite(out[key])) {
        console.error(`bench: --${key} needs a number`);
        process.exit(2);
      }
    }
  }
  return out;
}
