/**
 * The weight of an upload made of parts trained from different global models (docs/protocol.md,
 * "Bases, staleness and folded work"). Site and coordinator compute it alike, in integers, so the
 * coordinator's recomputation from the clear header is exact:
 *
 *   discount(k, s) = ⌊k / (1 + s)⌋                   a part of count k trained s rounds ago
 *   F = discount(fresh),  S = Σ discount(folded)
 *   W = F + min(S, maxSiteWeight − F)                folded parts scaled down together to fit
 *
 * F above maxSiteWeight is refused (`WEIGHT_OUT_OF_RANGE`), never clamped; the folded parts are
 * what gives way. The site mixes its parts' vectors with the same integers (`foldScale`).
 */
import { type Result, err, ok } from './result.js';

/** One part of an upload: its count in the run's weighting unit and its staleness in rounds. */
export interface WorkPart {
  readonly count: number;
  readonly staleness: number;
}

/** The weight an upload's parts make, and how each contributes. */
export interface UploadWeight {
  /** W: the count the upload weighs with, ≤ maxSiteWeight. */
  readonly weight: number;
  /** F: the fresh part's discounted count. */
  readonly fresh: number;
  /** Each folded part's discounted count before the scaling to fit. */
  readonly folded: readonly number[];
  /** λ ∈ [0, 1]: the factor on every folded part (1 unless they had to shrink to fit). */
  readonly foldScale: number;
}

/** Codes {@link uploadWeight} refuses with. */
export type UploadWeightCode = 'WEIGHT_OUT_OF_RANGE' | 'INVALID_ARGUMENT';

/** ⌊k / (1 + s)⌋: what a part of count k trained from a base s rounds old counts. */
export function discountedCount(count: number, staleness: number): number {
  return Math.floor(count / (1 + staleness));
}

/**
 * W = F + min(S, maxSiteWeight − F) for a fresh part and folded parts (see the module comment).
 * Counts and staleness must be non-negative safe integers (`INVALID_ARGUMENT`); F must be positive
 * and at most maxSiteWeight (`WEIGHT_OUT_OF_RANGE`).
 */
export function uploadWeight(fresh: WorkPart, folded: readonly WorkPart[], maxSiteWeight: number): Result<UploadWeight, UploadWeightCode> {
  for (const p of [fresh, ...folded]) {
    if (!Number.isSafeInteger(p.count) || p.count < 0 || !Number.isSafeInteger(p.staleness) || p.staleness < 0) {
      return err('INVALID_ARGUMENT', `a part's count and staleness must be non-negative integers, got ${p.count} and ${p.staleness}`, { ...p });
    }
  }
  const f = discountedCount(fresh.count, fresh.staleness);
  if (!(f > 0 && f <= maxSiteWeight)) {
    return err('WEIGHT_OUT_OF_RANGE', `the fresh part counts ${f} (${fresh.count} at staleness ${fresh.staleness}), outside (0, ${maxSiteWeight}], the run's maxSiteWeight`, {
      count: f,
      maxSiteWeight,
    });
  }
  const parts = folded.map((p) => discountedCount(p.count, p.staleness));
  const s = parts.reduce((a, b) => a + b, 0);
  const room = maxSiteWeight - f;
  const taken = Math.min(s, room);
  return ok({ weight: f + taken, fresh: f, folded: parts, foldScale: s === 0 ? 1 : taken / s });
}
