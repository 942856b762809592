#!/usr/bin/env node
// Summarises a V8 .cpuprofile (`node --cpu-prof`, e.g. from `npm run bench -- secagg --profile DIR`):
// the top functions by self time and by inclusive time. Samples are wall-clock time of the main
// thread, so "(idle)" is time waiting and contention on a shared machine inflates every entry.
//   node bench/tools/cpuprofile-top.mjs FILE.cpuprofile [N] [FILTER-REGEX]
//   node bench/tools/cpuprofile-top.mjs FILE.cpuprofile --categories
// The second form sums the samples into what the byte path spends them on (hash, CRC, value checks,
// kernels, disk, TLS and sockets, gRPC and HTTP/2, protobuf, copies, GC, …): each sample goes to
// the category of the nearest frame, from the sampled one up, that names one.
import { readFileSync } from 'node:fs';

const [file, nArg, filter] = process.argv.slice(2);
if (!file) {
  console.error('usage: cpuprofile-top.mjs FILE.cpuprofile [N] [FILTER-REGEX] | FILE.cpuprofile --categories');
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
/**
 * Categories of the byte path, first match wins within a frame; frames are tried from the leaf up.
 * @type {[string, RegExp][]}
 */
const CATEGORIES = [
  ['idle', /^\(idle\)/],
  ['garbage collection', /^\(garbage collector\)/],
  ['native, not attributed (program)', /^\(program\)/],
  ['aggregation (after upload)', /coordinator\/aggregate\/|optimizers\/|secure\/unmask/],
  ['hash (SHA-256)', /node:internal\/crypto\/hash|hashFilePrefix|sha256File|DeltaDigest|digestBytes|hashRange/],
  ['CRC32C', /crc32/],
  ['value checks', /value-checks|findNonFinite|checkFinite/],
  ['delta and mask kernels', /wasm-function|kernels\/wasm|secagg\/|deltaToBf16|deltaToF32/],
  ['AES-CTR (masks)', /node:internal\/crypto\/cipher/],
  ['disk (fs reads and writes)', /^(read|write|writeBuffer|writeString|fsync|openFileHandle|close|fstat|stat) :0|node:internal\/fs\/|readInto|readBytesInto|common\/files/],
  ['TLS and sockets', /_tls_wrap|node:tls|stream_base_commons|node:net|onStreamRead|writeGeneric|writev/],
  ['gRPC and HTTP/2 framing', /@grpc\/grpc-js|node:internal\/http2|node:http2/],
  ['protobuf', /protobufjs|@protobufjs|upload-codec|proto\//],
  ['buffer copies', /_copyActual|^concat |FastBuffer|createUnsafeBuffer|allocUnsafe|node:buffer/],
  ['start-up (module loading)', /node:internal\/modules|compileSourceTextModule|wrapSafe|compileForInternalLoader/],
];
if (nArg === '--categories') {
  const sums = new Map();
  for (const [id, us] of micros) {
    let cat = 'other';
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const name = key(byId.get(cur));
      const hit = CATEGORIES.find(([, re]) => re.test(name));
      if (hit) {
        cat = hit[0];
        break;
      }
    }
    sums.set(cat, (sums.get(cat) ?? 0) + us);
  }
  const busy = total - (sums.get('idle') ?? 0);
  console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled, ${(busy / 1e6).toFixed(2)} s not idle`);
  for (const [cat, us] of [...sums].sort((a, b) => b[1] - a[1])) {
    if (cat === 'idle') continue;
    console.log(`${(us / 1e6).toFixed(3).padStart(8)} s ${((100 * us) / busy).toFixed(1).padStart(5)}% of busy  ${cat}`);
  }
  process.exit(0);
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
