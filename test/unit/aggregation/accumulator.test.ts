import { describe, expect, it } from 'vitest';
import { AggregationError, WeightedAccumulator, checkFinite, f32ToBf16 } from '../../../aggregation/index.js';

const codeOf = (f: () => unknown): string | undefined => {
  try {
    f();
  } catch (error) {
    return error instanceof AggregationError ? error.code : 'other';
  }
  return undefined;
};

const layout = [
  { name: 'w', shape: [2, 3] },
  { name: 'b', shape: [3] },
];

describe('WeightedAccumulator', () => {
  it('computes the weighted mean of two contributions', () => {
    const acc = new WeightedAccumulator(layout);
    acc.addWeight(1);
    acc.add('w', 0, Float32Array.of(1, 2, 3, 4, 5, 6), 1);
    acc.addWeight(3);
    acc.add('w', 0, Float32Array.of(5, 6, 7), 3);
    acc.add('w', 3, Float32Array.of(0, 1, 2), 3);
    expect(acc.totalWeight).toBe(4);
    expect(acc.contributionCount).toBe(2);
    expect(Array.from(acc.readSum('w', 0, 6))).toEqual([16, 20, 24, 4, 8, 12]);
    expect(Array.from(acc.mean('w', 0, 6))).toEqual([4, 5, 6, 1, 2, 3]);
    expect(Array.from(acc.mean('w', 2, 2))).toEqual([6, 1]);
    expect(Array.from(acc.mean('b', 0, 3))).toEqual([0, 0, 0]);
  });

  it('decodes f32 and bf16 bytes, including views at odd offsets', () => {
    const acc = new WeightedAccumulator(layout);
    acc.addWeight(2);
    const f32 = new Uint8Array(13);
    f32.set(new Uint8Array(Float32Array.of(1.5, -2, 0.25).buffer), 1);
    acc.addEncoded('b', 0, f32.subarray(1), 'f32', 2);
    const bf = new Uint8Array(7);
    bf.set(new Uint8Array(f32ToBf16(Float32Array.of(0.5, 4, -1)).buffer), 1);
    acc.addEncoded('b', 0, bf.subarray(1), 'bf16', 0.5);
    expect(Array.from(acc.readSum('b', 0, 3))).toEqual([3.25, -2, 0]); // 2·[1.5, −2, 0.25] + 0.5·[0.5, 4, −1]
    expect(Array.from(acc.mean('b', 0, 3))).toEqual([1.625, -1, 0]);
  });

  it('decodes encoded slices larger than its scratch buffer', () => {
    const n = 200_000;
    const acc = new WeightedAccumulator([{ name: 'big', shape: [n] }]);
    acc.addWeight(1);
    const values = new Float32Array(n).map((_, i) => i % 256);
    acc.addEncoded('big', 0, new Uint8Array(f32ToBf16(values).buffer), 'bf16', 1);
    expect(acc.readSum('big', 0, n)).toEqual(values);
  });

  it('refuses out-of-range slices, unknown tensors and bad weights with typed errors', () => {
    const acc = new WeightedAccumulator(layout);
    expect(codeOf(() => acc.add('b', 2, Float32Array.of(1, 2), 1))).toBe('OUT_OF_RANGE');
    expect(codeOf(() => acc.add('b', -1, Float32Array.of(1), 1))).toBe('OUT_OF_RANGE');
    expect(codeOf(() => acc.addEncoded('b', 0, new Uint8Array(16), 'f32', 1))).toBe('OUT_OF_RANGE');
    expect(codeOf(() => acc.addEncoded('b', 0, new Uint8Array(3), 'bf16', 1))).toBe('TENSOR_MISMATCH');
    expect(codeOf(() => acc.add('nope', 0, Float32Array.of(1), 1))).toBe('TENSOR_UNKNOWN');
    expect(codeOf(() => acc.addWeight(Number.NaN))).toBe('NON_FINITE');
    expect(codeOf(() => acc.addWeight(0))).toBe('OUT_OF_RANGE');
    expect(codeOf(() => acc.add('b', 0, Float32Array.of(1), -1))).toBe('OUT_OF_RANGE');
    expect(codeOf(() => acc.mean('b', 0, 3))).toBe('NO_CONTRIBUTIONS');
    expect(codeOf(() => new WeightedAccumulator([layout[1]!, layout[1]!]))).toBe('INVALID_ARGUMENT');
    expect(Array.from(acc.readSum('b', 0, 3))).toEqual([0, 0, 0]); // nothing half-applied
  });

  it('returns copies, not views of its storage', () => {
    const acc = new WeightedAccumulator(layout);
    acc.addWeight(1);
    acc.readSum('b', 0, 3).fill(7);
    acc.mean('b', 0, 3).fill(7);
    expect(Array.from(acc.readSum('b', 0, 3))).toEqual([0, 0, 0]);
  });
});

describe('checkFinite', () => {
  it('returns the index of the first NaN or infinity, or -1', () => {
    expect(checkFinite(Float32Array.of(0, -1, 3e38))).toBe(-1);
    expect(checkFinite(Float32Array.of(0, Number.NaN, Infinity))).toBe(1);
    expect(checkFinite(Float32Array.of(0, 1, -Infinity))).toBe(2);
    expect(checkFinite(new Float32Array(0))).toBe(-1);
  });
});
