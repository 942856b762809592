/**
 * What one site can put into a secure sum, and what the coordinator can check of an unmasked sum.
 *
 * A site's weight is the count it declares in the run's unit (`samples`, `tokens`, or 1 under
 * `uniform`) over the run's `maxSiteWeight`, rounded to Float32 exactly as the encoder uses it; a
 * count above `maxSiteWeight` is refused, never clamped. The encoder (quantize.ts) sends
 * w·clip(Δ, −c, c) and a weight word w (clip 1), each within one quantization step of its value.
 * With the zero level Z = 2^(q−1) − 1 a step is c/Z (protocol version 3), so an honest unmasked sum
 * of n sites whose declared weights are wᵢ obeys
 *
 *   |Σw − Σ wᵢ|          ≤ n/Z               (the weight word)
 *   |any coordinate|     ≤ Σ wᵢ·c + n·c/Z    (every element of the sum)
 *
 * for any Δ, however large (it is clipped before it is weighted). Both checks allow n·c·2^-40 more
 * for the floating-point rounding of the decode. A site that bypasses the encoder can still add
 * any in-range words, so the checks bound the sum, not one site — and a failed check cannot say
 * which site lied: the coordinator only ever sees the sum.
 */
import { type Result, err, ok } from '../result.js';
import type { SecAggErrorCode } from './errors.js';
import { zeroLevel } from './quantize.js';

/** Units a site's weight is counted in; `uniform` weighs every site 1. */
export const WEIGHTINGS = ['samples', 'tokens', 'uniform'] as const;
/** One of {@link WEIGHTINGS}. */
export type Weighting = (typeof WEIGHTINGS)[number];

/** The counts a site declares in its upload header. */
export interface DeclaredCounts {
  readonly samples: number;
  readonly tokens: number;
}

/** Floating-point allowance of both checks, per site and per unit of clip. */
const FP_SLACK = 2 ** -40;

/** The count a site's weight is made of under `weighting`: its samples, its tokens, or 1. */
export function declaredCount(weighting: Weighting, counts: DeclaredCounts): number {
  return weighting === 'uniform' ? 1 : weighting === 'samples' ? counts.samples : counts.tokens;
}

/**
 * The weight of a site declaring `count` in a run whose `maxSiteWeight` is given: count /
 * maxSiteWeight rounded to Float32 — exactly what the encoder multiplies into Δ and sends as the
 * weight word, and what the coordinator recomputes from the clear header. `WEIGHT_OUT_OF_RANGE`
 * unless 0 < count ≤ maxSiteWeight (a larger count is refused, not clamped).
 */
export function encodedWeight(count: number, maxSiteWeight: number): Result<number, SecAggErrorCode> {
  if (!(Number.isFinite(maxSiteWeight) && maxSiteWeight > 0)) return err('INVALID_ARGUMENT', `maxSiteWeight must be a positive number, got ${maxSiteWeight}`, { maxSiteWeight });
  if (!(count > 0 && count <= maxSiteWeight)) {
    return err('WEIGHT_OUT_OF_RANGE', `a declared weight of ${count} is outside (0, ${maxSiteWeight}], the run's maxSiteWeight`, { count, maxSiteWeight });
  }
  return ok(Math.fround(count / maxSiteWeight));
}

/** How far an honest unmasked Σw may lie from the sum of `sites` declared weights: n/(2^(q−1) − 1). */
export function weightSumTolerance(sites: number, quantBits: number): number {
  return sites / zeroLevel(quantBits) + sites * FP_SLACK;
}

/** The largest |coordinate| of an honest unmasked sum: Σwᵢ·c + n·c/(2^(q−1) − 1). */
export function sumRangeBound(weightSum: number, sites: number, o: { readonly clip: number; readonly quantBits: number }): number {
  return weightSum * o.clip + (sites * o.clip) / zeroLevel(o.quantBits) + sites * o.clip * FP_SLACK;
}

/**
 * The Σw check: the unmasked sum of weight words against the weights the participants declared
 * (each from {@link encodedWeight}). Returns Σ declared, or `WEIGHT_SUM_MISMATCH` beyond
 * {@link weightSumTolerance}.
 */
export function checkWeightSum(unmasked: number, declared: readonly number[], quantBits: number): Result<number, SecAggErrorCode> {
  let sum = 0;
  for (const w of declared) sum += w;
  const tolerance = weightSumTolerance(declared.length, quantBits);
  if (!(Math.abs(unmasked - sum) <= tolerance)) {
    return err('WEIGHT_SUM_MISMATCH', `the unmasked sum of weights is ${unmasked}, the ${declared.length} declared weights add up to ${sum} (tolerance ${tolerance})`, {
      unmasked,
      declared: sum,
      tolerance,
      sites: declared.length,
    });
  }
  return ok(sum);
}

/**
 * The range check of a slice of the unmasked sum (its first element is element `offset` of the
 * whole): `SUM_OUT_OF_RANGE` naming the first coordinate beyond ±`bound` ({@link sumRangeBound}).
 */
export function checkSumRange(sum: ArrayLike<number>, bound: number, offset = 0): Result<void, SecAggErrorCode> {
  for (let i = 0; i < sum.length; i++) {
    const v = sum[i]!;
    if (!(v <= bound && v >= -bound)) {
      return err('SUM_OUT_OF_RANGE', `coordinate ${offset + i} of the unmasked sum is ${v}, beyond ±${bound}`, { index: offset + i, value: v, bound });
    }
  }
  return ok(undefined);
}
