import { open, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeInt8Blocks, f32ToBf16, referenceKernels } from '../../../aggregation/index.js';
import { CoordinatorError } from '../../../coordinator/core/errors.js';
import { KernelPool } from '../../../coordinator/aggregate/kernel-pool.js';

let pool: KernelPool;
let dir: string;
beforeAll(async () => {
  // Small passes so a few hundred thousand values cross many chunk and worker boundaries.
  pool = await KernelPool.start({ threads: 2, subElements: 1024 });
  dir = await mkdtemp(join(tmpdir(), 'fedhpc-kernel-pool-'));
});
afterAll(async () => {
  await pool.close();
  await rm(dir, { recursive: true, force: true });
});

function values(n: number, seed: number): Float32Array {
  let x = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return ((x / 2 ** 32) * 4 - 2) * 2 ** ((x & 15) - 8);
  });
}

const bits = (a: Float32Array): number[] => Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
const bytesOf = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

describe('KernelPool', () => {
  it('adds f32, bf16 and int8 sources from its memory in order, equal bit for bit to the reference', async () => {
    const n = 200_003;
    const xs = [values(n, 1), values(n, 2), values(n, 3)];
    const wire = [bytesOf(xs[0]!), bytesOf(f32ToBf16(xs[1]!)), encodeInt8Blocks(xs[2]!)];
    const encodings = ['f32', 'bf16', 'int8'] as const;
    const weights = [0.5, 0.3, 0.2];
    const regions = wire.map((w) => {
      const r = pool.allocate(w.length + 1); // +1: start the bf16 and int8 copies at odd addresses
      pool.u8(r.ptr + 1, w.length).set(w);
      return r;
    });
    const target = pool.allocate(n * 4);
    pool.f32(target.ptr, n).fill(7); // cleared by the job
    await pool.run({
      target: target.ptr,
      count: n,
      clear: true,
      sources: encodings.map((encoding, k) => ({ encoding, weight: weights[k]!, elemInTensor: 0, base: regions[k]!.ptr + 1 })),
    });
    const expected = new Float32Array(n);
    encodings.forEach((e, k) => referenceKernels.accEncoded(expected, wire[k]!, e, weights[k]!));
    expect(bits(pool.f32(target.ptr, n))).toEqual(bits(expected));
    for (const r of [...regions, target]) r.release();
  });

  it('runs four same-encoding sources through one pass with the roundings of four, mixed runs included', async () => {
    const n = 100_003; // an odd length: vector loops and scalar tails
    const encodings = ['f32', 'f32', 'f32', 'f32', 'f32', 'bf16', 'bf16', 'bf16', 'bf16', 'f32', 'bf16'] as const;
    const xs = encodings.map((_, k) => values(n, 20 + k));
    xs[0]![5] = Number.NaN;
    xs[1]![6] = Infinity;
    xs[2]![7] = -0;
    const wire = encodings.map((e, k) => (e === 'f32' ? bytesOf(xs[k]!) : bytesOf(f32ToBf16(xs[k]!))));
    const weights = encodings.map((_, k) => 1 / (k + 1.5));
    const regions = wire.map((w, k) => {
      const r = pool.allocate(w.length + 2);
      pool.u8(r.ptr + (k % 3), w.length).set(w); // some sources unaligned
      return r;
    });
    const target = pool.allocate(n * 4);
    await pool.run({ target: target.ptr, count: n, clear: true, sources: encodings.map((encoding, k) => ({ encoding, weight: weights[k]!, elemInTensor: 0, base: regions[k]!.ptr + (k % 3) })) });
    const expected = new Float32Array(n);
    encodings.forEach((e, k) => referenceKernels.accEncoded(expected, wire[k]!, e, weights[k]!));
    const got = pool.f32(target.ptr, n);
    const fold = (a: Float32Array): number[] => bits(a).map((b, i) => (Number.isNaN(a[i]) ? 0x7fc00000 : b));
    expect(fold(got)).toEqual(fold(expected));
    for (const r of [...regions, target]) r.release();
  });

  it('reads file sources at an element offset straight into shared memory, int8 from mid-block', async () => {
    const n = 70_001;
    const x = values(n, 9);
    const path = join(dir, 'int8.spool');
    const prefix = new Uint8Array(13); // the tensor starts 13 bytes into the file
    await writeFile(path, Buffer.concat([prefix, encodeInt8Blocks(x)]));
    const fh = await open(path, 'r');
    try {
      const start = 1000; // 1000 = 7·128 + 104: a partial first block
      const count = n - start;
      const target = pool.allocate(count * 4);
      await pool.run({ target: target.ptr, count, clear: true, sources: [{ encoding: 'int8', weight: 2, elemInTensor: start, base: 13, fd: fh.fd }] });
      const all = new Float32Array(n);
      referenceKernels.accInt8(all, encodeInt8Blocks(x), 2);
      expect(bits(pool.f32(target.ptr, count))).toEqual(bits(all.subarray(start)));
      target.release();
    } finally {
      await fh.close();
    }
  });

  it('adds masked words modulo 2^32 and 2^16', async () => {
    for (const [encoding, Words, modulus] of [['u32', Uint32Array, 2 ** 32], ['u16', Uint16Array, 2 ** 16]] as const) {
      const n = 150_001;
      const a = Words.from(Array.from({ length: n }, (_, i) => (i * 2654435761) % modulus));
      const b = Words.from(Array.from({ length: n }, (_, i) => (i * 40503 + 7) % modulus));
      const size = a.BYTES_PER_ELEMENT;
      const ra = pool.allocate(n * size);
      const rb = pool.allocate(n * size);
      pool.u8(ra.ptr, n * size).set(bytesOf(a));
      pool.u8(rb.ptr, n * size).set(bytesOf(b));
      const t = pool.allocate(n * size);
      await pool.run({ target: t.ptr, count: n, clear: true, sources: [a, b].map((_, k) => ({ encoding, weight: 1, elemInTensor: 0, base: [ra, rb][k]!.ptr })) });
      const got = new Words(pool.memory.buffer, t.ptr, n);
      expect(Array.from(got.subarray(0, 1000))).toEqual(Array.from(a.subarray(0, 1000), (v, i) => (v + b[i]!) % modulus));
      expect(got[n - 1]).toBe((a[n - 1]! + b[n - 1]!) % modulus);
      for (const r of [ra, rb, t]) r.release();
    }
  });

  it('rejects with RangeError when a spool file ends before the range it must read', async () => {
    const path = join(dir, 'short.spool');
    await writeFile(path, new Uint8Array(400));
    const fh = await open(path, 'r');
    const t = pool.allocate(200 * 4);
    try {
      await expect(pool.run({ target: t.ptr, count: 200, clear: true, sources: [{ encoding: 'f32', weight: 1, elemInTensor: 0, base: 0, fd: fh.fd }] })).rejects.toThrow(RangeError);
    } finally {
      t.release();
      await fh.close();
    }
  });

  it('stops every worker and rejects with the signal’s reason when aborted', async () => {
    const n = 4_000_000;
    const src = pool.allocate(n * 4);
    const t = pool.allocate(n * 4);
    const controller = new AbortController();
    const job = pool.run({ target: t.ptr, count: n, clear: true, sources: Array.from({ length: 50 }, () => ({ encoding: 'f32' as const, weight: 1, elemInTensor: 0, base: src.ptr })) }, controller.signal);
    setTimeout(() => controller.abort(new Error('round aborted')), 5); // mid-job: 200 M additions take far longer
    await expect(job).rejects.toThrow('round aborted');
    // The pool goes on serving jobs.
    await pool.run({ target: t.ptr, count: 10, clear: true, sources: [] });
    src.release();
    t.release();
  });

  it('refuses a job that mixes plain sources with masked words (BAD_REQUEST)', async () => {
    const t = pool.allocate(64);
    const err = await pool
      .run({ target: t.ptr, count: 4, clear: true, sources: [{ encoding: 'f32', weight: 1, elemInTensor: 0, base: t.ptr }, { encoding: 'u32', weight: 1, elemInTensor: 0, base: t.ptr }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CoordinatorError);
    expect((err as CoordinatorError).code).toBe('BAD_REQUEST');
    t.release();
  });

  it('grows its memory for large allocations and reuses released space', () => {
    const before = pool.memory.buffer.byteLength;
    const big = pool.allocate(before * 2);
    expect(pool.memory.buffer.byteLength).toBeGreaterThanOrEqual(before * 2);
    const ptr = big.ptr;
    big.release();
    const again = pool.allocate(before);
    expect(again.ptr).toBe(ptr);
    again.release();
  });
});
