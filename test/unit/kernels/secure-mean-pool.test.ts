/**
 * secureMean with the masked sum in the kernel worker pool gives the same mean, bit for bit, as in
 * this thread, in Z_2^32 and Z_2^16, with a dropped site (its pairwise masks rebuilt).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openFileSource } from '../../../common/files.js';
import { KernelPool } from '../../../coordinator/aggregate/kernel-pool.js';
import { secureMean } from '../../../coordinator/secure/unmask.js';
import { InProcessSecAgg, makeIdentities, pseudoGradient, type Identities } from '../../helpers/secure-protocol.js';

const SITES = ['site-a', 'site-b', 'site-c', 'site-d'];
const ELEMENTS = 70_001;
let identities: Identities;
let pool: KernelPool;
beforeAll(async () => {
  identities = await makeIdentities(SITES);
  pool = await KernelPool.start({ threads: 2, subElements: 1024 });
});
afterAll(async () => {
  await pool.close();
});

async function read(source: Awaited<ReturnType<typeof secureMean>>): Promise<Float32Array> {
  try {
    return await source.read(0, ELEMENTS);
  } finally {
    await source.close();
  }
}

describe('secureMean in the kernel pool', () => {
  it.each([
    [32, 24],
    [16, 13],
  ] as const)('unmasks the same mean as in this thread in Z_2^%i (q = %i) with one site dropped', async (modulusBits, quantBits) => {
    const p = new InProcessSecAgg(identities, { threshold: 3, modulusBits, quantBits, clip: 0.25, maxSiteWeight: 1000, seed: `pool-${modulusBits}` });
    try {
      p.keys();
      p.shares();
      p.deliverShares();
      const survivors = SITES.filter((s) => s !== 'site-c');
      for (const [k, s] of survivors.entries()) await p.upload(s, pseudoGradient(ELEMENTS, 0.05, 0.3, s), 200 + 100 * k);
      p.consistency(survivors, ['site-c']);
      p.reveal();
      const inThread = await p.mean(ELEMENTS);
      const paths = p.coordinator.survivors.map((s) => p.spools.get(s)!);
      const pooled = await read(await secureMean(p.coordinator, paths, p.declared, ELEMENTS, openFileSource, { pool }));
      expect(new Uint32Array(pooled.buffer)).toEqual(new Uint32Array(inThread.buffer));
      expect(Math.max(...Array.from(pooled, Math.abs))).toBeGreaterThan(0);
    } finally {
      await p.cleanup();
    }
  });
});
