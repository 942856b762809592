import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildNeighbourGraph, defaultDegree } from '../../../aggregation/secagg/index.js';
import { codeOf, seededRandomBytes } from './helpers.js';

const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `site-${String(i).padStart(4, '0')}`);

describe('SecAgg+ neighbour graph', () => {
  it('is complete up to the threshold', () => {
    const g = buildNeighbourGraph({ sites: ids(10), roundSeed: new Uint8Array(32) });
    expect(g.complete).toBe(true);
    expect(g.degree).toBe(9);
    expect(g.neighbours('site-0003')).toEqual(ids(10).filter((s) => s !== 'site-0003'));
  });

  it('is k-regular, symmetric and loop-free above the threshold', () => {
    fc.assert(
      fc.property(fc.integer({ min: 5, max: 300 }), fc.uint8Array({ minLength: 32, maxLength: 32 }), (n, seed) => {
        const k = Math.max(defaultDegree(n), 2);
        const g = buildNeighbourGraph({ sites: ids(n), roundSeed: seed, completeUpTo: 4 });
        const expectedDegree = k >= n - 1 ? n - 1 : k;
        expect(g.degree).toBe(expectedDegree);
        for (const s of g.sites) {
          const near = g.neighbours(s);
          expect(near).toHaveLength(expectedDegree);
          expect(new Set(near).size).toBe(near.length);
          expect(near).not.toContain(s);
          for (const v of near) expect(g.neighbours(v)).toContain(s);
        }
      }),
      { numRuns: 40 },
    );
  });

  it('is the same for every party given the round seed, whatever the input order', () => {
    const seed = seededRandomBytes('round-seed')(32);
    const sites = ids(100);
    const a = buildNeighbourGraph({ sites, roundSeed: seed });
    const b = buildNeighbourGraph({ sites: [...sites].reverse(), roundSeed: seed });
    expect(a.complete).toBe(false);
    expect(a.degree).toBe(14);
    for (const s of sites) expect(b.neighbours(s)).toEqual(a.neighbours(s));
    const c = buildNeighbourGraph({ sites, roundSeed: seededRandomBytes('other-seed')(32) });
    expect(sites.some((s) => c.neighbours(s).join() !== a.neighbours(s).join())).toBe(true);
  });

  it('uses an explicit even degree ≥ log2 n and refuses bad ones', () => {
    const g = buildNeighbourGraph({ sites: ids(64), roundSeed: new Uint8Array(32), degree: 8, completeUpTo: 0 });
    expect(g.degree).toBe(8);
    expect(codeOf(() => buildNeighbourGraph({ sites: ids(64), roundSeed: new Uint8Array(32), degree: 7 }))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => buildNeighbourGraph({ sites: ids(64), roundSeed: new Uint8Array(32), degree: 4 }))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => buildNeighbourGraph({ sites: ['a', 'a'], roundSeed: new Uint8Array(32) }))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => buildNeighbourGraph({ sites: ['a'], roundSeed: new Uint8Array(8) }))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => g.neighbours('nobody'))).toBe('INVALID_ARGUMENT');
  });

  it('connects the graph (one component) for Harary graphs', () => {
    const g = buildNeighbourGraph({ sites: ids(200), roundSeed: seededRandomBytes('conn')(32) });
    const seen = new Set<string>([g.sites[0]!]);
    const queue = [g.sites[0]!];
    while (queue.length > 0) for (const v of g.neighbours(queue.pop()!)) if (!seen.has(v)) (seen.add(v), queue.push(v));
    expect(seen.size).toBe(200);
  });
});
