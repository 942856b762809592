/**
 * The checks of an unmasked secure sum (aggregation/secagg/bounds.ts), as properties over the
 * encoder the agent uses: every site's vector is `quantize`d as `DeltaEncoder` does it (w·clip(Δ)
 * and the weight word w, one rounding seed per site), the vectors are added modulo 2^b and decoded
 * as `secureMean` decodes them. Masks are left out: they cancel exactly in the modular sum, so the
 * checks see the same words with or without them. Folded uploads (issue 16) are mixed by the
 * agent's own `mixDeltas` and weighed with W from `uploadWeight`, as a site sends them.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type MaskWords,
  type QuantizeOptions,
  addModular,
  checkSumRange,
  checkWeightSum,
  declaredCount,
  dequantizeSum,
  encodedWeight,
  quantize,
  sumRangeBound,
  weightSumTolerance,
  zeroLevel,
} from '../../../aggregation/secagg/index.js';
import { uploadWeight } from '../../../aggregation/index.js';
import { mixDeltas } from '../../../site-agent/fold.js';
import { seededRandomBytes } from './helpers.js';

/** Coordinates of every site's vector; the weight word follows them, as in a masked upload. */
const LEN = 24;

interface SumCase {
  readonly n: number;
  readonly b: 16 | 32;
  /** How many bits below the largest q the budget n·2^q ≤ 2^b allows. */
  readonly qSlack: number;
  readonly clip: number;
  readonly maxSiteWeight: number;
  /** Each site's declared count, 1..maxSiteWeight. */
  readonly counts: readonly number[];
  /** How far beyond the clip the deltas reach (|Δ| up to scale·c). */
  readonly scale: number;
  readonly seed: string;
}

const sumCase: fc.Arbitrary<SumCase> = fc
  .record({
    n: fc.integer({ min: 1, max: 8 }),
    b: fc.constantFrom(16 as const, 32 as const),
    qSlack: fc.integer({ min: 0, max: 6 }),
    clip: fc.double({ min: 1e-4, max: 8, noNaN: true }),
    maxSiteWeight: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 1_000_000 }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER })),
    scale: fc.constantFrom(0.25, 1, 3, 1e6),
    seed: fc.string({ maxLength: 8 }),
  })
  .chain((c) =>
    fc
      .array(fc.oneof(fc.constant(1), fc.constant(c.maxSiteWeight), fc.integer({ min: 1, max: c.maxSiteWeight })), { minLength: c.n, maxLength: c.n })
      .map((counts) => ({ ...c, counts })),
  );

function options(c: SumCase): QuantizeOptions {
  const quantBits = Math.max(1, c.b - Math.ceil(Math.log2(c.n)) - c.qSlack);
  return { clip: c.clip, quantBits, modulusBits: c.b };
}

/** Site `s`'s delta: values within ±scale·c, and the edges ±c, just past c, ±1e30 and 0. */
function delta(c: SumCase, s: number): Float32Array {
  const bytes = seededRandomBytes(`${c.seed}/delta/${s}`)(4 * LEN);
  const u = new Uint32Array(bytes.buffer, bytes.byteOffset, LEN);
  const x = Float32Array.from(u, (v) => ((v / 2 ** 32) * 2 - 1) * c.scale * c.clip);
  x.set([c.clip, -c.clip, Math.fround(c.clip * (1 + 2 ** -20)), 1e30, -1e30, 0]);
  return x;
}

const weightOf = (count: number, maxSiteWeight: number): number => {
  const w = encodedWeight(count, maxSiteWeight);
  if (!w.ok) throw new Error(w.issues.join('; '));
  return w.value;
};

/**
 * The sum of every site's words as the coordinator unmasks it, through both checks; `tamper` may
 * change one site's words (coordinates, then the weight word at index LEN) before they are added.
 */
function unmaskedSum(c: SumCase, tamper?: (site: number, words: MaskWords) => void, vectorOf: (s: number) => Float32Array = (s) => delta(c, s)): { code: string | undefined; weightSum: number; mean: Float64Array } {
  const o = options(c);
  const weights = c.counts.map((k) => weightOf(k, c.maxSiteWeight));
  const acc = c.b === 32 ? new Uint32Array(LEN + 1) : new Uint16Array(LEN + 1);
  weights.forEach((w, s) => {
    const roundingSeed = seededRandomBytes(`${c.seed}/rounding/${s}`)(32);
    const words = c.b === 32 ? new Uint32Array(LEN + 1) : new Uint16Array(LEN + 1);
    words.set(quantize(vectorOf(s), o, { weight: w, roundingSeed }));
    words.set(quantize(Float32Array.of(w), { ...o, clip: 1 }, { roundingSeed, wordOffset: LEN }), LEN);
    tamper?.(s, words);
    addModular(acc, words);
  });
  const unmasked = dequantizeSum(acc.subarray(LEN), c.n, { ...o, clip: 1 })[0]!;
  const sum = dequantizeSum(acc.subarray(0, LEN), c.n, o);
  const weightSum = checkWeightSum(unmasked, weights, o.quantBits);
  if (!weightSum.ok) return { code: weightSum.code, weightSum: Number.NaN, mean: new Float64Array() };
  const range = checkSumRange(sum, sumRangeBound(weightSum.value, c.n, o));
  return { code: range.ok ? undefined : range.code, weightSum: weightSum.value, mean: Float64Array.from(sum, (v) => v / weightSum.value) };
}

/** A shift of `min`..2^b − `min` levels, modulo 2^b: at least `min` away from 0 either way. */
function shift(b: 16 | 32, min: number, u: number): number {
  return min + Math.floor(u * (2 ** b - 2 * min + 1));
}

describe('the weight of a site', () => {
  it('is count / maxSiteWeight rounded to Float32, refused with WEIGHT_OUT_OF_RANGE above maxSiteWeight, never clamped', () => {
    expect(weightOf(640, 640)).toBe(1);
    expect(weightOf(1, 3)).toBe(Math.fround(1 / 3));
    expect(encodedWeight(641, 640)).toMatchObject({ ok: false, code: 'WEIGHT_OUT_OF_RANGE', context: { count: 641, maxSiteWeight: 640 } });
    expect(encodedWeight(Number.MAX_SAFE_INTEGER, 640)).toMatchObject({ ok: false, code: 'WEIGHT_OUT_OF_RANGE' });
    expect(encodedWeight(0, 640)).toMatchObject({ ok: false, code: 'WEIGHT_OUT_OF_RANGE' });
    expect(encodedWeight(Number.NaN, 640)).toMatchObject({ ok: false, code: 'WEIGHT_OUT_OF_RANGE' });
    expect(encodedWeight(1, 0)).toMatchObject({ ok: false, code: 'INVALID_ARGUMENT' });
  });

  it('counts what run.weighting says: samples, tokens, or 1', () => {
    const counts = { samples: 640, tokens: 40_960 };
    expect([declaredCount('samples', counts), declaredCount('tokens', counts), declaredCount('uniform', counts)]).toEqual([640, 40_960, 1]);
  });
});

describe('the checks of an unmasked sum', () => {
  it('never fail an honest sum: any deltas (|Δ| far beyond c included), any counts from 1 to maxSiteWeight', () => {
    fc.assert(
      fc.property(sumCase, (c) => {
        const r = unmaskedSum(c);
        expect(r.code).toBeUndefined();
        // The bound they guarantee: every coordinate of the mean within c + n·c/((2^(q−1) − 1)·Σw).
        const o = options(c);
        const edge = sumRangeBound(r.weightSum, c.n, o) / r.weightSum;
        for (const m of r.mean) expect(Math.abs(m)).toBeLessThanOrEqual(edge);
      }),
      { numRuns: 300 },
    );
  });

  it('never fail honest folded uploads: each site weighs with W from uploadWeight over its fresh and stale parts, and sends their clipped mix', () => {
    // Each site: the fresh part's count (≤ maxSiteWeight), up to 2 stale parts of any count and staleness 1..3.
    const folded = sumCase.chain((c) =>
      fc.record({
        c: fc.constant(c),
        parts: fc.array(fc.array(fc.record({ count: fc.integer({ min: 0, max: c.maxSiteWeight }), staleness: fc.integer({ min: 1, max: 3 }) }), { maxLength: 2 }), { minLength: c.n, maxLength: c.n }),
      }),
    );
    fc.assert(
      fc.property(folded, ({ c, parts }) => {
        const sites = c.counts.map((fresh, s) => {
          const w = uploadWeight({ count: fresh, staleness: 0 }, parts[s]!, c.maxSiteWeight);
          if (!w.ok) throw new Error(w.issues.join('; '));
          const stale = parts[s]!.map((_, i) => delta({ ...c, seed: `${c.seed}/part-${i}` }, s));
          const m = { fresh: w.value.fresh, parts: w.value.folded.map((k) => k * w.value.foldScale), total: w.value.weight, clip: c.clip };
          return { weight: w.value.weight, vector: mixDeltas(new Float32Array(LEN), delta(c, s), stale, m) };
        });
        const withW: SumCase = { ...c, counts: sites.map((x) => x.weight) };
        for (const x of sites) expect(x.weight).toBeLessThanOrEqual(c.maxSiteWeight);
        const r = unmaskedSum(withW, undefined, (s) => sites[s]!.vector);
        expect(r.code).toBeUndefined();
        const edge = sumRangeBound(r.weightSum, c.n, options(c)) / r.weightSum;
        for (const m of r.mean) expect(Math.abs(m)).toBeLessThanOrEqual(edge);
      }),
      { numRuns: 300 },
    );
  });

  it('always catch one site shifting its weight word by more than 2n levels (mod 2^b): WEIGHT_SUM_MISMATCH', () => {
    const attack = sumCase.chain((c) => fc.record({ c: fc.constant(c), site: fc.integer({ min: 0, max: c.n - 1 }), u: fc.double({ min: 0, max: 1, noNaN: true }) }));
    fc.assert(
      fc.property(attack, ({ c, site, u }) => {
        const d = shift(c.b, 2 * c.n + 1, u);
        const r = unmaskedSum(c, (s, words) => {
          if (s === site) words[LEN] = words[LEN]! + d;
        });
        expect(r.code).toBe('WEIGHT_SUM_MISMATCH');
      }),
      { numRuns: 300 },
    );
  });

  it("always catch one site shifting a delta word by more than the honest sum's range, 2·(Σwᵢ·c + n·c/(2^(q−1) − 1)) (mod 2^b): SUM_OUT_OF_RANGE", () => {
    const attack = sumCase.chain((c) =>
      fc.record({ c: fc.constant(c), site: fc.integer({ min: 0, max: c.n - 1 }), at: fc.integer({ min: 0, max: LEN - 1 }), u: fc.double({ min: 0, max: 1, noNaN: true }) }),
    );
    fc.assert(
      fc.property(attack, ({ c, site, at, u }) => {
        const o = options(c);
        const weightSum = c.counts.reduce((s, k) => s + weightOf(k, c.maxSiteWeight), 0);
        const step = o.clip / zeroLevel(o.quantBits);
        // One level of margin above the range's width, for the rounding of the decode.
        const min = Math.floor((2 * sumRangeBound(weightSum, c.n, o)) / step) + 2;
        // Where the honest range covers most of the ring, every shift can wrap back into it.
        fc.pre(2 ** c.b - 2 * min >= 0);
        const d = shift(c.b, min, u);
        const r = unmaskedSum(c, (s, words) => {
          if (s === site) words[at] = words[at]! + d;
        });
        expect(r.code).toBe('SUM_OUT_OF_RANGE');
      }),
      { numRuns: 300 },
    );
  });

  it("catch the attack of issue 14: one site's weight word lowered to ~1e-6 while its header says 500 samples", () => {
    const c: SumCase = { n: 4, b: 32, qSlack: 0, clip: 1, maxSiteWeight: 1000, counts: [500, 700, 400, 900], scale: 0.01, seed: 'issue-14' };
    const zero = zeroLevel(options(c).quantBits);
    const r = unmaskedSum(c, (s, words) => {
      // The weight word of w is Z + ⌊w·Z⌉; 1e-6 is ≈ 8 levels above the zero level Z.
      if (s === 0) words[LEN] = words[LEN]! - Math.round((0.5 - 1e-6) * zero);
    });
    expect(r.code).toBe('WEIGHT_SUM_MISMATCH');
    expect(checkWeightSum(2.0000015, [0.5, 0.7, 0.4, 0.9], 24)).toMatchObject({ ok: false, code: 'WEIGHT_SUM_MISMATCH', context: { sites: 4 } });
  });

  it('name the first coordinate beyond the bound; the tolerance is n/(2^(q−1) − 1) and the bound Σw·c + n·c/(2^(q−1) − 1), each with n·c·2^-40 for rounding', () => {
    expect(checkSumRange(Float64Array.of(0.5, -2.5, 3), 2, 100)).toMatchObject({ ok: false, code: 'SUM_OUT_OF_RANGE', context: { index: 101, value: -2.5, bound: 2 } });
    expect(checkSumRange(Float64Array.of(Number.NaN), 2)).toMatchObject({ ok: false, code: 'SUM_OUT_OF_RANGE' });
    expect(weightSumTolerance(4, 24)).toBe(4 / (2 ** 23 - 1) + 4 * 2 ** -40);
    expect(sumRangeBound(2.5, 4, { clip: 0.5, quantBits: 24 })).toBe(2.5 * 0.5 + 2 / (2 ** 23 - 1) + 4 * 0.5 * 2 ** -40);
  });
});
