/**
 * Robust aggregators for plain rounds: the coordinate-wise median and trimmed mean of the sites'
 * deltas (Yin et al. 2018, "Byzantine-robust distributed learning"), which bound what one or a few
 * malicious or broken sites can do to the model — a weighted mean lets a single site move it
 * anywhere. Both need every site's individual delta, so they are refused under secure aggregation
 * (coordinator/config.ts). Both are unweighted: weighting by reported samples would hand a lying
 * site the very leverage the aggregator is there to take away.
 */
import type { FileSource } from '../../common/files.js';
import { CoordinatorError } from '../core/errors.js';
import type { MeanSource, SpoolInput } from './checkpoint-writer.js';
import { meanSliceArray, openWeightedSpools, type SpoolSlices } from './kernel-spools.js';

/** How a plain round combines its deltas. */
export type AggregatorOptions =
  | { readonly name: 'mean' }
  | { readonly name: 'median' }
  /** Drops ⌊trim·n⌋ of the largest and of the smallest values of every coordinate, averages the rest. */
  | { readonly name: 'trimmed-mean'; readonly trim: number };

/** The aggregators that need individual updates. */
export const isRobust = (a: AggregatorOptions): boolean => a.name !== 'mean';

/** Values dropped at each end of a coordinate for `n` sites. */
export function trimCount(a: AggregatorOptions, n: number): number {
  return a.name === 'trimmed-mean' ? Math.floor(a.trim * n) : 0;
}

/**
 * A {@link MeanSource} computing `aggregator` over the verified spools, slice by slice (memory:
 * one slice per site). `tensorElements` is the value count per tensor of what is read: the global
 * model's, or an aggregator shard's ranges (each spool then read from its `offset`).
 */
export async function robustMean(
  aggregator: AggregatorOptions,
  inputs: readonly SpoolInput[],
  tensorElements: readonly number[],
  openSpool: (path: string) => Promise<FileSource>,
  signal?: AbortSignal,
): Promise<MeanSource> {
  if (aggregator.name === 'mean') throw new CoordinatorError('BAD_REQUEST', 'robustMean: the mean is not a robust aggregator', { aggregator: aggregator.name });
  if (inputs.length === 0) throw new CoordinatorError('TOO_FEW_UPLOADS', 'robustMean: no inputs', { uploads: 0, needed: 1 });
  // Each site decoded on its own: a weighted "sum" of one spool with weight 1 is its values.
  const sources: SpoolSlices<Float32Array>[] = [];
  try {
    for (const i of inputs) sources.push(await openWeightedSpools([{ path: i.path, encoding: i.encoding, weight: 1, ...(i.offset ? { offset: i.offset } : {}) }], tensorElements, { openSpool, ...(signal ? { signal } : {}) }));
  } catch (err) {
    for (const s of sources) await s.close();
    throw err;
  }
  const n = inputs.length;
  const drop = trimCount(aggregator, n);
  return {
    async read(elemOffset, count, into) {
      const slices = await Promise.all(sources.map((s) => s.read(elemOffset, count)));
      const out = meanSliceArray(count, into);
      const column = new Float64Array(n);
      for (let i = 0; i < count; i++) {
        for (let k = 0; k < n; k++) column[k] = slices[k]![i]!;
        column.sort();
        out[i] = aggregator.name === 'median' ? medianOfSorted(column) : meanOfRange(column, drop, n - drop);
      }
      return out;
    },
    async close() {
      for (const s of sources) await s.close();
    },
  };
}

function medianOfSorted(v: Float64Array): number {
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

function meanOfRange(v: Float64Array, from: number, to: number): number {
  let s = 0;
  for (let k = from; k < to; k++) s += v[k]!;
  return s / (to - from);
}
