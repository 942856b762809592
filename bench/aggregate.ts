/**
 * `npm run bench -- aggregate [--sites N] [--values V] [--reps R] [--threads T] [--keep]`:
 * decode-and-accumulate throughput of the kernel pool (coordinator/aggregate/kernel-pool.ts, WebAssembly
 * SIMD in worker threads) against numpy doing the same sums on the same data in the same run.
 *
 * N sites' deltas of V values each (default 4 × 32 Mi: 512 MiB of f32 deltas, 256 MiB of bf16,
 * one 128 MiB f32 accumulator; ~1.2 GiB in each process) are summed into one f32 accumulator,
 * zeroed first, sites in order: Σ x (numpy `np.add(acc, x, out=acc)`), Σ w·x (numpy
 * `np.multiply(x, w, out=t); np.add(acc, t, out=acc)`), and the same for bf16 deltas (numpy
 * widens with `(x.astype(np.uint32) << 16).view(np.float32)`). Both sides do f32 multiply then f32
 * add per element in the same order, so the accumulators must be equal bit for bit, and the
 * benchmark checks that (SHA-256 of each). numpy runs on one core; the pool uses T threads
 * (default: every core), and the single-thread figure is reported beside it. Also measured
 * without a baseline: int8 blocks, masked-word sums mod 2^32 and 2^16, and f32 spools read from
 * (page-cached) files by the workers. Times are the best of R repetitions.
 */
import { type ChildProcessByStdio, spawn } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { createHash, randomFillSync } from 'node:crypto';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { INT8_BLOCK_BYTES, int8Bytes } from '../aggregation/index.js';
import { KernelPool, type PoolEncoding, type PoolRegion } from '../coordinator/index.js';
import type { Benchmark } from './registry.js';

const FIXTURE = fileURLToPath(new URL('../../bench/fixtures/aggregate_numpy.py', import.meta.url));

interface Settings {
  sites: number;
  values: number;
  reps: number;
  threads: number;
  keep: boolean;
}

function parseArgs(args: readonly string[]): Settings {
  const s: Settings = { sites: 4, values: 32 * 1024 * 1024, reps: 5, threads: availableParallelism(), keep: false };
  for (let i = 0; i < args.length; i++) {
    const flag = args[i]!;
    if (flag === '--keep') {
      s.keep = true;
      continue;
    }
    const key = ({ '--sites': 'sites', '--values': 'values', '--reps': 'reps', '--threads': 'threads' } as const)[flag as '--sites'];
    const n = Number(args[++i]);
    if (key === undefined || !Number.isSafeInteger(n) || n < 1) throw new Error(`aggregate: unknown flag or bad value: ${flag} ${args[i] ?? ''}`);
    s[key] = n;
  }
  if (s.sites * s.values * 7 + s.values * 4 > 3.9 * 2 ** 30) throw new Error('aggregate: the data must fit one 4 GiB WebAssembly memory; lower --values');
  return s;
}

/** Each site's delta in every encoding, in the pool's memory. */
interface Data {
  f32: PoolRegion[];
  bf16: PoolRegion[];
  int8: PoolRegion[];
}

function makeData(pool: KernelPool, s: Settings): Data {
  const data: Data = { f32: [], bf16: [], int8: [] };
  for (let k = 0; k < s.sites; k++) {
    const f = pool.allocate(s.values * 4);
    const words = new Uint32Array(pool.memory.buffer, f.ptr, s.values);
    randomFillSync(words);
    // Finite values of mixed sign in ±[2^-10, 2^-9): exponent fixed, random mantissa and sign.
    for (let i = 0; i < words.length; i++) words[i] = (words[i]! & 0x807fffff) | 0x3a800000;
    const b = pool.allocate(s.values * 2);
    const halves = new Uint16Array(pool.memory.buffer, b.ptr, s.values);
    for (let i = 0; i < words.length; i++) halves[i] = words[i]! >>> 16;
    const q = pool.allocate(int8Bytes(s.values));
    const bytes = pool.u8(q.ptr, q.bytes);
    randomFillSync(bytes);
    const view = new DataView(pool.memory.buffer, q.ptr, q.bytes);
    for (let at = 0; at < q.bytes; at += INT8_BLOCK_BYTES) view.setFloat32(at, 1e-5 * (1 + (at % 7)), true);
    data.f32.push(f);
    data.bf16.push(b);
    data.int8.push(q);
  }
  return data;
}



/** One sum both sides run: which regions and weights, on how many pool threads, and numpy's name for it. */
interface Case {
  readonly label: string;
  readonly regions: PoolRegion[];
  readonly encoding: PoolEncoding;
  readonly weights: readonly number[] | undefined;
  readonly threads: number;
  readonly numpy: 'f32' | 'f32Weighted' | 'bf16' | 'bf16Weighted' | undefined;
}

interface Timed {
  /** Wall-clock seconds. */
  s: number;
  /** CPU seconds (user + system) of the process, all its threads. */
  cpu: number;
  sha256: string;
}

/** One run of a case in the pool: seconds and the accumulator's SHA-256. */
async function runOnce(pool: KernelPool, c: Case, values: number, target: PoolRegion): Promise<Timed> {
  const sources = c.regions.map((r, k) => ({ encoding: c.encoding, weight: c.weights?.[k] ?? 1, elemInTensor: 0, base: r.ptr }));
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await pool.run({ target: target.ptr, count: values, clear: true, sources, maxThreads: c.threads });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const used = process.cpuUsage(c0);
  return { s, cpu: (used.user + used.system) / 1e6, sha256: createHash('sha256').update(pool.u8(target.ptr, values * (c.encoding === 'u16' ? 2 : 4))).digest('hex') };
}

/** The numpy fixture as a child process answering one sum per request. */
class Numpy {
  private readonly lines: AsyncIterator<string>;
  private constructor(private readonly child: ChildProcessByStdio<Writable, Readable, null>) {
    this.lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  }

  static async start(dir: string, s: Settings, weights: readonly number[]): Promise<{ numpy: Numpy; version: string }> {
    const child = spawn('python3', [FIXTURE, dir, String(s.sites), String(s.values), weights.join(',')], { stdio: ['pipe', 'pipe', 'inherit'] });
    const numpy = new Numpy(child);
    const ready = JSON.parse(await numpy.next()) as { numpy: string };
    return { numpy, version: ready.numpy };
  }

  async run(name: string): Promise<Timed> {
    this.child.stdin.write(`${name}\n`);
    return JSON.parse(await this.next()) as Timed;
  }

  close(): void {
    this.child.stdin.end();
    this.child.kill();
  }

  private async next(): Promise<string> {
    const r = await this.lines.next();
    if (r.done) throw new Error('aggregate: the numpy fixture exited early');
    return r.value;
  }
}

/** Best-of-R figures of every case on both sides, runs interleaved so both meet the same load. */
async function interleaved(pool: KernelPool, numpy: Numpy, all: readonly Case[], s: Settings, target: PoolRegion): Promise<{ ours: Timed[]; theirs: Timed[] }> {
  const ours = all.map(() => ({ s: Infinity, cpu: Infinity, sha256: '' }));
  const theirs = all.map(() => ({ s: Infinity, cpu: Infinity, sha256: '' }));
  for (let r = 0; r < s.reps; r++) {
    for (const [i, c] of all.entries()) {
      ours[i] = keepBest(ours[i]!, await runOnce(pool, c, s.values, target));
      if (c.numpy !== undefined) theirs[i] = keepBest(theirs[i]!, await numpy.run(c.numpy));
    }
  }
  return { ours, theirs };
}

/** The faster run's wall time, and the least CPU time of either (both are best-of figures). */
function keepBest(a: Timed, b: Timed): Timed {
  return { s: Math.min(a.s, b.s), cpu: Math.min(a.cpu, b.cpu), sha256: b.sha256 };
}

async function writeFiles(dir: string, pool: KernelPool, data: Data): Promise<string[]> {
  const paths: string[] = [];
  for (const [k, f] of data.f32.entries()) {
    paths.push(join(dir, `site${k}.f32`));
    await writeFile(paths[k]!, pool.u8(f.ptr, f.bytes));
    await writeFile(join(dir, `site${k}.bf16`), pool.u8(data.bf16[k]!.ptr, data.bf16[k]!.bytes));
  }
  return paths;
}

async function fromFiles(pool: KernelPool, s: Settings, paths: string[], target: PoolRegion): Promise<number> {
  const handles = await Promise.all(paths.map((p) => open(p, 'r')));
  try {
    const sources = handles.map((h) => ({ encoding: 'f32' as const, weight: 1, elemInTensor: 0, base: 0, fd: h.fd }));
    let min = Infinity;
    for (let r = 0; r < s.reps; r++) {
      const t0 = process.hrtime.bigint();
      await pool.run({ target: target.ptr, count: s.values, clear: true, sources });
      min = Math.min(min, Number(process.hrtime.bigint() - t0) / 1e9);
    }
    return min;
  } finally {
    await Promise.all(handles.map((h) => h.close()));
  }
}

function cases(data: Data, s: Settings, w: readonly number[]): Case[] {
  const c = (label: string, regions: PoolRegion[], encoding: PoolEncoding, weights: readonly number[] | undefined, numpy: Case['numpy'], threads = s.threads): Case => ({
    label,
    regions,
    encoding,
    weights,
    threads,
    numpy,
  });
  return [
    c('f32 Σx', data.f32, 'f32', undefined, 'f32'),
    c('f32 Σw·x', data.f32, 'f32', w, 'f32Weighted'),
    c('bf16 Σx', data.bf16, 'bf16', undefined, 'bf16'),
    c('bf16 Σw·x', data.bf16, 'bf16', w, 'bf16Weighted'),
    c('f32 Σx 1 thr', data.f32, 'f32', undefined, 'f32', 1),
    c('bf16 Σx 1 thr', data.bf16, 'bf16', undefined, 'bf16', 1),
    c('int8 Σw·x', data.int8, 'int8', w, undefined),
    c('mod 2^32', data.f32, 'u32', undefined, undefined),
    c('mod 2^16', data.bf16, 'u16', undefined, undefined),
  ];
}

export const aggregate: Benchmark = {
  async run(args, log) {
    const s = parseArgs(args);
    const dir = await mkdtemp(join(tmpdir(), 'fedhpc-bench-aggregate-'));
    const pool = await KernelPool.start({ threads: s.threads });
    let numpy: Numpy | undefined;
    try {
      log(`aggregate: ${s.sites} sites × ${s.values} values, ${s.threads} worker threads (numpy: 1), best of ${s.reps}, runs interleaved; ${cpus()[0]?.model ?? 'unknown CPU'}`);
      const data = makeData(pool, s);
      const target = pool.allocate(s.values * 4);
      const w = Array.from({ length: s.sites }, (_, k) => Math.fround(1 / (k + 2)));
      const paths = await writeFiles(dir, pool, data);
      const started = await Numpy.start(dir, s, w);
      numpy = started.numpy;
      const all = cases(data, s, w);
      const { ours, theirs } = await interleaved(pool, numpy, all, s, target);
      const files = await fromFiles(pool, s, paths, target);
      const same = all.every((c, i) => c.numpy === undefined || ours[i]!.sha256 === theirs[i]!.sha256);
      if (!same) throw new Error('aggregate: the pool and numpy accumulators differ; the comparison would be meaningless');
      const g = (sec: number): number => (s.sites * s.values) / sec / 1e9;
      for (const [i, c] of all.entries()) {
        const vs = c.numpy === undefined ? '' : `   numpy ${g(theirs[i]!.s).toFixed(2)}   ratio ${(theirs[i]!.s / ours[i]!.s).toFixed(2)}`;
        const perCpu = c.numpy === undefined ? '' : `   per CPU-second: pool ${g(ours[i]!.cpu).toFixed(2)}, numpy ${g(theirs[i]!.cpu).toFixed(2)}`;
        log(`  ${c.label.padEnd(14)} pool ${g(ours[i]!.s).toFixed(2)} G values/s${vs}${perCpu}`);
      }
      log(`  f32 Σx from page-cached spool files (pread into shared memory): ${g(files).toFixed(2)} G values/s`);
      log('  accumulators equal bit for bit to numpy’s (SHA-256)');
      const ratio = (i: number): number => theirs[i]!.s / ours[i]!.s;
      const cpuRatio = (i: number): number => theirs[i]!.cpu / ours[i]!.cpu;
      return {
        sites: s.sites,
        values: s.values,
        threads: s.threads,
        aggF32OverNumpy: ratio(0),
        aggBf16OverNumpy: ratio(2),
        aggF32OverNumpyPerCpuSecond: cpuRatio(0),
        aggBf16OverNumpyPerCpuSecond: cpuRatio(2),
        aggF32WeightedOverNumpy: ratio(1),
        aggBf16WeightedOverNumpy: ratio(3),
        aggF32OverNumpy1Thread: ratio(4),
        aggBf16OverNumpy1Thread: ratio(5),
        f32GValuesPerS: g(ours[0]!.s),
        bf16GValuesPerS: g(ours[2]!.s),
        int8GValuesPerS: g(ours[6]!.s),
        addModU32GWordsPerS: g(ours[7]!.s),
        addModU16GWordsPerS: g(ours[8]!.s),
        f32FromFilesGValuesPerS: g(files),
        numpyF32GValuesPerS: g(theirs[0]!.s),
        numpyBf16GValuesPerS: g(theirs[2]!.s),
        numpy: started.version,
        bitIdenticalToNumpy: same,
      };
    } finally {
      numpy?.close();
      await pool.close();
      if (!s.keep) await rm(dir, { recursive: true, force: true });
    }
  },
};
