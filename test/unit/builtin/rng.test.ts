import { describe, expect, it } from 'vitest';
import { createRng } from '../../../site-agent/builtin/index.js';

describe('Rng', () => {
  it('repeats the same sequence for the same seed and differs across seeds', () => {
    const a = createRng(42);
    const b = createRng(42);
    const c = createRng(43);
    const sa = Array.from({ length: 16 }, () => a.nextU32());
    const sb = Array.from({ length: 16 }, () => b.nextU32());
    const sc = Array.from({ length: 16 }, () => c.nextU32());
    expect(sa).toEqual(sb);
    expect(sa).not.toEqual(sc);
    for (const x of sa) expect(Number.isInteger(x) && x >= 0 && x < 2 ** 32).toBe(true);
  });

  it('draws next() in [0, 1), unbiased int(n) and standard normals', () => {
    const rng = createRng(7);
    const counts = new Array<number>(5).fill(0);
    let sum = 0;
    let sq = 0;
    const n = 20000;
    for (let i = 0; i < n; i++) {
      const u = rng.next();
      expect(u >= 0 && u < 1).toBe(true);
      const k = rng.int(5);
      counts[k] = (counts[k] ?? 0) + 1;
      const z = rng.normal();
      sum += z;
      sq += z * z;
    }
    for (const c of counts) expect(Math.abs(c / n - 0.2)).toBeLessThan(0.02);
    expect(Math.abs(sum / n)).toBeLessThan(0.05);
    expect(Math.abs(sq / n - 1)).toBeLessThan(0.05);
  });

  it('rejects an int(n) bound that is not a positive integer', () => {
    const rng = createRng(1);
    expect(() => rng.int(0)).toThrow(RangeError);
    expect(() => rng.int(2.5)).toThrow(RangeError);
  });

  it('jumps to a different stream without advancing the original, and clones exactly', () => {
    const rng = createRng(9);
    const before = rng.clone();
    const jumped = rng.jumped();
    expect(rng.nextU32()).toBe(before.nextU32());
    const x = Array.from({ length: 8 }, () => rng.nextU32());
    const y = Array.from({ length: 8 }, () => jumped.nextU32());
    expect(x).not.toEqual(y);
  });

  it('refuses seeds that are negative or not safe integers', () => {
    expect(() => createRng(-1)).toThrow(RangeError);
    expect(() => createRng(0.5)).toThrow(RangeError);
    expect(() => createRng(2n ** 64n)).toThrow(RangeError);
  });
});
