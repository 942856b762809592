import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  FIELD_PRIME,
  type ShamirShare,
  combine,
  split,
  tryCombine,
} from '../../../aggregation/secagg/index.js';
import { bigIntToBytes, bytesToBigInt, interpolateAt, inverse, mod } from '../../../aggregation/secagg/shamir.js';
import { chiSquared, chiSquaredCritical, codeOf, seededRandomBytes } from './helpers.js';

const secretArb = fc.uint8Array({ minLength: 32, maxLength: 32 });
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** Picks `k` distinct indices of 0..n−1 from a fast-check-chosen permutation seed. */
function pick<T>(items: readonly T[], order: readonly number[], k: number): T[] {
  const idx = items.map((_, i) => i).sort((a, b) => (order[a % order.length]! - order[b % order.length]!) || a - b);
  return idx.slice(0, k).map((i) => items[i]!);
}

/** Coefficients (low to high) of the polynomial of degree < points.length through `points`. */
function coefficientsThrough(points: readonly { x: bigint; y: bigint }[]): bigint[] {
  const k = points.length;
  const out = new Array<bigint>(k).fill(0n);
  for (let i = 0; i < k; i++) {
    let basis = [1n];
    let den = 1n;
    for (let j = 0; j < k; j++) {
      if (j === i) continue;
      const next = new Array<bigint>(basis.length + 1).fill(0n);
      for (let d = 0; d < basis.length; d++) {
        next[d + 1] = mod(next[d + 1]! + basis[d]!);
        next[d] = mod(next[d]! - basis[d]! * points[j]!.x);
      }
      basis = next;
      den = mod(den * (points[i]!.x - points[j]!.x));
    }
    const scale = mod(points[i]!.y * inverse(den));
    for (let d = 0; d < k; d++) out[d] = mod(out[d]! + basis[d]! * scale);
  }
  return out;
}

/** A RandomBytes that returns the given field elements as 66-byte draws, in order. */
function scripted(values: readonly bigint[]): (n: number) => Uint8Array {
  let i = 0;
  return (n: number) => {
    expect(n).toBe(66);
    return bigIntToBytes(values[i++]!, 66);
  };
}

describe('Shamir sharing over 2^521 − 1', () => {
  it('uses a field larger than the 256-bit secrets and 66-byte shares', () => {
    expect(FIELD_PRIME > 1n << 256n).toBe(true);
    const shares = split(new Uint8Array(32).fill(0xff), 3, 5, seededRandomBytes('s'));
    expect(shares.map((s) => s.x)).toEqual([1, 2, 3, 4, 5]);
    for (const s of shares) expect(s.y).toHaveLength(66);
  });

  it('rebuilds the secret from any t of n shares', () => {
    fc.assert(
      fc.property(secretArb, fc.integer({ min: 1, max: 8 }), fc.integer({ min: 0, max: 6 }), fc.array(fc.nat(), { minLength: 14, maxLength: 14 }), fc.string(), (secret, t, extra, order, seed) => {
        const n = t + extra;
        const shares = split(secret, t, n, seededRandomBytes(seed));
        const subset = pick(shares, order, t);
        expect(hex(combine(subset, { threshold: t }))).toBe(hex(secret));
        // All n shares are consistent with each other too.
        expect(hex(combine(pick(shares, order, n), { threshold: t }))).toBe(hex(secret));
      }),
      { numRuns: 60 },
    );
  });

  it('t − 1 shares fit every candidate secret: some randomness gives the same shares for any other secret', () => {
    fc.assert(
      fc.property(secretArb, secretArb, fc.integer({ min: 2, max: 6 }), fc.integer({ min: 0, max: 4 }), fc.array(fc.nat(), { minLength: 10, maxLength: 10 }), (s1, s2, t, extra, order) => {
        const n = t + extra;
        const shares = split(s1, t, n, seededRandomBytes(hex(s1)));
        const seen = pick(shares, order, t - 1);
        // The polynomial through (0, s2) and the seen shares has degree ≤ t − 1: its higher
        // coefficients are the randomness under which split(s2) hands out exactly these shares.
        const f2 = coefficientsThrough([{ x: 0n, y: bytesToBigInt(s2) }, ...seen.map((s) => ({ x: BigInt(s.x), y: bytesToBigInt(s.y) }))]);
        expect(f2[0]).toBe(bytesToBigInt(s2));
        const forged = split(s2, t, n, scripted(f2.slice(1)));
        for (const s of seen) expect(hex(forged[s.x - 1]!.y)).toBe(hex(s.y));
        // The map r ↦ r' is a bijection of the coefficient space, so the view of t − 1 shares has
        // the same (uniform) distribution whatever the secret.
      }),
      { numRuns: 40 },
    );
  });

  it('t − 1 shares plus a forged share do not yield the secret', () => {
    fc.assert(
      fc.property(secretArb, fc.integer({ min: 2, max: 6 }), fc.bigInt({ min: 0n, max: FIELD_PRIME - 1n }), (secret, t, forgedY) => {
        const shares = split(secret, t, t + 1, seededRandomBytes(hex(secret)));
        const real = shares[t - 1]!;
        fc.pre(bytesToBigInt(real.y) !== forgedY);
        const forged: ShamirShare = { x: real.x, y: bigIntToBytes(forgedY, 66) };
        const result = tryCombine([...shares.slice(0, t - 1), forged], { threshold: t });
        // Either detected (the result is no 256-bit secret) or a different secret.
        if (result.ok) expect(hex(result.value)).not.toBe(hex(secret));
        else expect(result.code).toBe('SHAMIR_INCONSISTENT');
        // With one more honest share, the forgery is caught against the polynomial.
        const checked = tryCombine([...shares.slice(0, t - 1), shares[t]!, forged], { threshold: t });
        expect(checked.ok).toBe(false);
      }),
      { numRuns: 40 },
    );
  });

  it('hands out single shares whose bytes are uniform whatever the secret (χ²)', () => {
    // t = 2: share y = s + a·x with a uniform, so each share is uniform on the field for any s.
    for (const secret of [new Uint8Array(32), new Uint8Array(32).fill(0xff)]) {
      const counts = new Float64Array(256);
      const rng = seededRandomBytes(`uniform-${secret[0]}`);
      for (let i = 0; i < 20_000; i++) counts[split(secret, 2, 2, rng)[1]!.y[40]!]! += 1;
      expect(chiSquared(counts)).toBeLessThan(chiSquaredCritical(255));
    }
  });

  it('refuses duplicate x, too few shares and y ≥ p with distinct codes', () => {
    const shares = split(new Uint8Array(32).fill(9), 3, 5, seededRandomBytes('r'));
    expect(codeOf(() => combine([shares[0]!, shares[0]!, shares[1]!], { threshold: 3 }))).toBe('SHAMIR_DUPLICATE_X');
    expect(codeOf(() => combine(shares.slice(0, 2), { threshold: 3 }))).toBe('SHAMIR_TOO_FEW_SHARES');
    expect(codeOf(() => combine([]))).toBe('SHAMIR_TOO_FEW_SHARES');
    const atP = { x: 4, y: bigIntToBytes(FIELD_PRIME, 66) };
    expect(codeOf(() => combine([shares[0]!, shares[1]!, atP], { threshold: 3 }))).toBe('SHAMIR_OUT_OF_FIELD');
    expect(codeOf(() => combine([{ x: 0, y: shares[0]!.y }]))).toBe('SHAMIR_OUT_OF_FIELD');
    expect(codeOf(() => split(new Uint8Array(32), 4, 3))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => split(new Uint8Array(31), 2, 3))).toBe('INVALID_ARGUMENT');
  });

  it('interpolates a known polynomial exactly', () => {
    // f(x) = 5 + 3x + 2x²
    const pts = [1n, 2n, 3n].map((x) => ({ x, y: 5n + 3n * x + 2n * x * x }));
    expect(interpolateAt(pts, 0n)).toBe(5n);
    expect(interpolateAt(pts, 10n)).toBe(235n);
  });
});
