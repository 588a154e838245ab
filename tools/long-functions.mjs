#!/usr/bin/env node
// Lists C++ functions (and lambdas) longer than a limit, by brace matching — no parser, so it
// is a quick check, not a proof. A function may stay long when a comment within the three lines
// above it starts with "long function:" and says why; those are listed as explained.
//   node tools/long-functions.mjs [--max 80] [FILE or FOLDER ...]   (default: the C++ of wasm, tools/cli, tests/cpp, fuzz)
// Exit status 1 when a function over the limit has no such comment.
import fs from 'node:fs';
import path from 'node:path';

const args = process.argv.slice(2);
let max = 80;
const roots = [];
for (let i = 0; i < args.length; ++i) {
  if (args[i] === '--max') max = Number(args[++i]);
  else roots.push(args[i]);
}
const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
if (!roots.length) roots.push(...['wasm', 'tools/cli', 'tests/cpp', 'fuzz'].map((d) => path.join(repo, d)));

function files(p) {
  if (fs.statSync(p).isDirectory()) return fs.readdirSync(p).sort().flatMap((f) => files(path.join(p, f)));
  return /\.(cc|cpp|h|hpp)$/.test(p) ? [p] : [];
}

// The source with comments, string and character literals blanked (newlines kept, so offsets
// and line numbers stay those of the file).
function blank(src) {
  let out = '';
  for (let i = 0; i < src.length; ) {
    const c = src[i], n = src[i + 1];
    if (c === '/' && n === '/') {
      while (i < src.length && src[i] !== '\n') { out += ' '; ++i; }
    } else if (c === '/' && n === '*') {
      const end = src.indexOf('*/', i + 2), stop = end < 0 ? src.length : end + 2;
      for (; i < stop; ++i) out += src[i] === '\n' ? '\n' : ' ';
    } else if (c === 'R' && n === '"' && !/\w/.test(src[i - 1] || '')) {  // raw string R"delim( ... )delim"
      const open = src.indexOf('(', i), delim = src.slice(i + 2, open);
      const end = src.indexOf(')' + delim + '"', open), stop = end < 0 ? src.length : end + delim.length + 2;
      for (; i < stop; ++i) out += src[i] === '\n' ? '\n' : ' ';
    } else if (c === '"' || (c === "'" && !/[0-9a-fA-F]/.test(src[i - 1] || ''))) {  // not a digit separator
      out += ' ';
      for (++i; i < src.length && src[i] !== c && src[i] !== '\n'; ++i) {
        if (src[i] === '\\') { out += ' '; ++i; }
        out += ' ';
      }
      out += ' ';
      ++i;
    } else {
      out += c;
      ++i;
    }
  }
  return out;
}

const CONTROL = new Set(['if', 'for', 'while', 'switch', 'catch', 'return', 'sizeof', 'decltype', 'alignof']);

// What a `{` at `open` opens, from the text before it: a function or lambda (its name), or null.
function function_at(text, open) {
  let start = open - 1;
  while (start >= 0 && !';{}'.includes(text[start])) --start;
  let head = text.slice(start + 1, open).trim();
  if (head.startsWith('#')) head = head.replace(/^#.*\n/gm, '').trim();  // preprocessor lines
  // Trailing qualifiers: const, noexcept, override, final, mutable, -> return type.
  const bare = head.replace(/\s*->\s*[\w:<>,\s*&]+$/, '').replace(/(\s*\b(const|noexcept|override|final|mutable)\b)+$/, '').trim();
  if (bare.endsWith(']')) return { name: 'lambda', head };  // [captures] {
  if (!bare.endsWith(')')) return null;
  // A constructor's initializer list ends with ')' too: use the parenthesis of the parameters.
  let depth = 0, i = bare.length - 1;
  for (; i >= 0; --i) {
    if (bare[i] === ')') ++depth;
    else if (bare[i] === '(' && --depth === 0) break;
  }
  const before = bare.slice(0, i).trimEnd();
  if (before.endsWith(']')) return { name: 'lambda', head };  // [captures](params) {
  const m = before.match(/([\w:~]+(?:\s*<[^<>]*>)?|operator\s*\S+)$/);
  if (!m) return null;
  const word = m[1].replace(/\s+/g, '');
  if (CONTROL.has(word)) return null;
  // A member initializer `x_(...)` after a constructor's `) :`: report the constructor.
  const ctor = bare.match(/([\w:~]+)\s*\([^()]*(?:\([^()]*\)[^()]*)*\)\s*:\s*[\w_]+[({]/);
  return { name: ctor ? ctor[1] : word, head };
}

let unexplained = 0;
for (const root of roots)
  for (const file of files(root)) {
    const src = fs.readFileSync(file, 'utf8'), text = blank(src), lines = src.split('\n');
    const line_of = (off) => text.slice(0, off).split('\n').length;
    const stack = [];
    // The comment within the three lines above a function's first line, if it says "long function:".
    const why_above = (first) => {
      const m = lines.slice(Math.max(0, first - 4), first - 1).join('\n').match(/\/\/\s*long function:\s*(.*)/);
      return m ? m[1].trim() : null;
    };
    for (let i = 0; i < text.length; ++i) {
      if (text[i] === '{') {
        const fn = function_at(text, i);
        if (fn) {
          // The function starts where its head does (the line of its name, or of the lambda).
          const before = text.slice(0, i);
          fn.first = line_of(Math.max(0, i - fn.head.length - (before.length - before.trimEnd().length)));
          fn.why = why_above(fn.first);
        }
        stack.push({ open: i, fn });
      } else if (text[i] === '}') {
        const b = stack.pop();
        if (!b || !b.fn) continue;
        const n = line_of(i) - b.fn.first + 1;
        if (n <= max) continue;
        const outer = stack.filter((s) => s.fn);
        const enclosing = outer.filter((s) => s.fn.name !== 'lambda').map((s) => s.fn.name).pop();
        const name = b.fn.name === 'lambda' ? `lambda${enclosing ? ' in ' + enclosing : ''}` : b.fn.name;
        // A lambda inside a function whose comment explains its length is explained by it.
        const why = b.fn.why || outer.map((s) => s.fn.why).filter(Boolean).pop();
        if (!why) ++unexplained;
        console.log(`${file}:${b.fn.first}: ${n} lines: ${name}${why ? ` (explained: ${why})` : ''}`);
      }
    }
  }
process.exit(unexplained ? 1 : 0);
