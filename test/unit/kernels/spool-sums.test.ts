import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkFinite, referenceKernels } from '../../../aggregation/index.js';
import { openFileSource } from '../../../common/files.js';
import { KernelPool } from '../../../coordinator/aggregate/kernel-pool.js';
import { openMaskedSpools } from '../../../coordinator/aggregate/kernel-spools.js';

let pool: KernelPool;
let dir: string;
beforeAll(async () => {
  pool = await KernelPool.start({ threads: 2, subElements: 1024 });
  dir = await mkdtemp(join(tmpdir(), 'fedhpc-spool-sums-'));
});
afterAll(async () => {
  await pool.close();
  await rm(dir, { recursive: true, force: true });
});

describe('openMaskedSpools (the masked sum secureMean unmasks)', () => {
  it.each([32, 16] as const)('sums spools of %i-bit words mod 2^b, wrapping, the same in the pool, in this thread and in the reference', async (bits) => {
    const n = 70_001;
    const modulus = 2 ** bits;
    const Words = bits === 32 ? Uint32Array : Uint16Array;
    const spools = [0, 1, 2].map((k) => Words.from(Array.from({ length: n }, (_, i) => (modulus - 1 - ((i * (k + 3) * 2654435761) % 1000)) % modulus)));
    const paths = await Promise.all(
      spools.map(async (w, k) => {
        const path = join(dir, `masked-${bits}-${k}`);
        await writeFile(path, new Uint8Array(w.buffer));
        return path;
      }),
    );
    const expected = (offset: number, count: number): number[] =>
      Array.from({ length: count }, (_, i) => spools.reduce((s, w) => (s + w[offset + i]!) % modulus, 0));
    for (const options of [{ pool }, {}, { kernels: referenceKernels }]) {
      const sum = await openMaskedSpools(paths, bits, { openSpool: openFileSource, ...options });
      try {
        for (const [offset, count] of [[0, n], [12_345, 1], [n - 17, 17]] as const) {
          const got = await sum.read(offset, count);
          expect(got).toBeInstanceOf(Words);
          expect(Array.from(got)).toEqual(expected(offset, count));
        }
      } finally {
        await sum.close();
      }
    }
  });
});

describe('checkFinite', () => {
  it('finds the first non-finite value in large arrays (the SIMD kernel) as in small ones', () => {
    for (const n of [10, 4095, 4096, 100_003]) {
      const v = new Float32Array(n).fill(1.5);
      expect(checkFinite(v)).toBe(-1);
      v[n - 1] = Number.NaN;
      v[Math.floor(n / 2)] = -Infinity;
      expect(checkFinite(v)).toBe(Math.floor(n / 2));
    }
  });
});
