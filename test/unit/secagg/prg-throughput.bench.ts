/**
 * Hand-run throughput check of the mask PRG (not a test). Bundle and run under plain node (vite-node's
 * module wrapper slows the JS add loops about 2×):
 *   npx esbuild test/unit/secagg/prg-throughput.bench.ts --bundle --platform=node --format=esm \
 *     --outfile=/tmp/prg-bench.mjs && node /tmp/prg-bench.mjs
 * Prints expandMask / applyMask GB/s per CPU-second (one thread) next to `openssl speed -evp aes-256-ctr`
 * (64 KiB blocks, single process). Target: ≥ 50% of OpenSSL.
 */
import { execFileSync } from 'node:child_process';
import { applyMask, expandMask, expandMaskInto } from '../../../aggregation/secagg/index.js';

const seed = new Uint8Array(32).fill(42);
const WORDS = 1 << 26; // 256 MiB of 32-bit words

function rate(label: string, bytes: number, run: () => void): number {
  run(); // warm-up
  // CPU time (user + system) of this process, as `openssl speed` reports by default: a busy
  // shared host then slows the wall clock but not the per-core figure.
  let best = Infinity;
  let bestWall = Infinity;
  for (let i = 0; i < 5; i++) {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    run();
    bestWall = Math.min(bestWall, Number(process.hrtime.bigint() - t0) / 1e9);
    const c = process.cpuUsage(c0);
    best = Math.min(best, (c.user + c.system) / 1e6);
  }
  const gbs = bytes / best / 1e9;
  console.log(`${label.padEnd(44)} ${gbs.toFixed(2)} GB/s per CPU-second (wall: ${(bytes / bestWall / 1e9).toFixed(2)} GB/s)`);
  return gbs;
}

const chunk = new Uint32Array(1 << 20); // 4 MiB buffer reused across chunks, as a masking loop would
const expand = rate('expandMaskInto (Uint32, 256 MiB, 4 MiB buf)', WORDS * 4, () => {
  for (let at = 0; at < WORDS; at += chunk.length) expandMaskInto(chunk, seed, at);
});
rate('expandMask (allocates 256 MiB)', WORDS * 4, () => void expandMask(seed, 0, WORDS, 32));
const target = new Uint32Array(WORDS);
const apply = rate('applyMask (+= PRG, Uint32, 256 MiB)', WORDS * 4, () => applyMask(target, seed, 0, 1));
const target16 = new Uint16Array(WORDS);
rate('applyMask (+= PRG, Uint16, 128 MiB)', WORDS * 2, () => applyMask(target16, seed, 0, 1));

const out = execFileSync('openssl', ['speed', '-evp', 'aes-256-ctr', '-bytes', '65536', '-seconds', '3'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
const row = out.split('\n').find((l) => l.toLowerCase().startsWith('aes-256-ctr'));
const kbs = row === undefined ? NaN : Number.parseFloat(row.trim().split(/\s+/).at(-1)!.replace('k', ''));
const openssl = (kbs * 1000) / 1e9;
console.log(`${'openssl speed -evp aes-256-ctr (64 KiB)'.padEnd(44)} ${openssl.toFixed(2)} GB/s`);
console.log(`expandMask / openssl = ${((100 * expand) / openssl).toFixed(0)}%, applyMask / openssl = ${((100 * apply) / openssl).toFixed(0)}%`);
