#!/usr/bin/env node
// Summarises a V8 .cpuprofile (`node --cpu-prof`, e.g. from `npm run bench -- secagg --profile DIR`):
// the top functions by self time and by inclusive time. Samples are wall-clock time of the main
// thread, so "(idle)" is time waiting and contention on a shared machine inflates every entry.
//   node bench/tools/cpuprofile-top.mjs FILE.cpuprofile [N] [FILTER-REGEX]
import { readFileSync } from 'node:fs';

const [file, nArg, filter] = process.argv.slice(2);
if (!file) {
  console.error('usage: cpuprofile-top.mjs FILE.cpuprofile [N] [FILTER-REGEX]');
  process.exit(2);
}
/**
 * The parts of V8's .cpuprofile this reads.
 * @typedef {{ id: number, children?: number[], callFrame: { functionName: string, url: string, lineNumber: number } }} ProfileNode
 */
/** @type {{ nodes: ProfileNode[], samples: number[], timeDeltas: number[] }} */
const p = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const micros = new Map();
for (let i = 0; i < p.samples.length; i++) micros.set(p.samples[i], (micros.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
const total = [...micros.values()].reduce((a, b) => a + b, 0);
const key = (/** @type {ProfileNode | undefined} */ n) => n === undefined ? '(unknown)' : `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${n.callFrame.lineNumber + 1}`;
const self = new Map();
const incl = new Map();
for (const [id, us] of micros) {
  const k = key(byId.get(id));
  self.set(k, (self.get(k) ?? 0) + us);
  const seen = new Set();
  for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
    const name = key(byId.get(cur));
    if (seen.has(name)) continue; // recursion counts once
    seen.add(name);
    incl.set(name, (incl.get(name) ?? 0) + us);
  }
}
const n = Number(nArg ?? 25);
const re = filter ? new RegExp(filter) : undefined;
const show = (/** @type {string} */ title, /** @type {Map<string, number>} */ m) => {
  console.log(`--- ${title}`);
  for (const [k, us] of [...m].filter(([k]) => !re || re.test(k)).sort((a, b) => b[1] - a[1]).slice(0, n)) {
    console.log(`${(us / 1e6).toFixed(3).padStart(8)} s ${((100 * us) / total).toFixed(1).padStart(5)}%  ${k}`);
  }
};
console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled`);
show('self', self);
show('inclusive', incl);
