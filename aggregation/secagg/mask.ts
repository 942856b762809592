/**
 * Masking in Z_2^b (Bonawitz et al. 2017, round 2 "masked input collection", and round 4
 * "unmasking"): y_u = x_u + PRG(b_u) + Σ_{v} sign(u,v)·PRG(s_{u,v}) mod 2^b, where the lower site
 * id adds and the higher subtracts, so pairwise masks cancel in the sum of survivors; the
 * coordinator then removes survivors' self masks and dropped sites' pairwise masks.
 */
import { SecAggError } from './errors.js';
import { compareSiteIds } from './encoding.js';
import { type MaskWords, applyMask } from './prg.js';

/** One pairwise mask of a site: the seed s_{u,v} shared with `peer`, added (+1) or subtracted (−1). */
export interface PairwiseMask {
  readonly peer: string;
  readonly seed: Uint8Array;
  readonly sign: 1 | -1;
}

/** The masks a site applies to (one chunk of) its quantized input. */
export interface MaskOptions {
  /** The site's self-mask seed b_u (32 bytes). */
  readonly selfSeed: Uint8Array;
  /** One entry per neighbour. */
  readonly pairwise: readonly PairwiseMask[];
  /** Word offset of this chunk in the whole vector (default 0). */
  readonly wordOffset?: number;
}

/** A dropped site's pairwise seed with one survivor, rebuilt from the dropped site's s-key shares. */
export interface DroppedPair {
  readonly survivor: string;
  readonly dropped: string;
  readonly seed: Uint8Array;
}

/** What the coordinator removes from (one chunk of) the sum of masked inputs. */
export interface UnmaskOptions {
  /** Self-mask seeds b_u of every site whose masked input joined the sum. */
  readonly survivorSelfSeeds: readonly Uint8Array[];
  /** Pairwise seeds between each dropped site and each of its surviving neighbours. */
  readonly droppedPairs: readonly DroppedPair[];
  /** Word offset of this chunk in the whole vector (default 0). */
  readonly wordOffset?: number;
}

/** The sign site `self` gives its mask with `peer`: +1 when self sorts first, −1 otherwise. */
export function pairwiseSign(self: string, peer: string): 1 | -1 {
  const order = compareSiteIds(self, peer);
  if (order === 0) throw new SecAggError('INVALID_ARGUMENT', 'a site has no pairwise mask with itself', { site: self });
  return order < 0 ? 1 : -1;
}

/**
 * Returns y = x + PRG(b) + Σ sign·PRG(s) mod 2^b for one chunk (Bonawitz et al. 2017, round 2).
 * `quantized` is not modified.
 */
export function maskVector(quantized: MaskWords, options: MaskOptions): MaskWords {
  const offset = options.wordOffset ?? 0;
  const out = quantized.slice();
  applyMask(out, options.selfSeed, offset, 1);
  const peers = new Set<string>();
  for (const { peer, seed, sign } of options.pairwise) {
    if (peers.has(peer)) throw new SecAggError('INVALID_ARGUMENT', 'pairwise mask listed twice for one peer', { peer });
    peers.add(peer);
    applyMask(out, seed, offset, sign);
  }
  return out;
}

/** acc += x mod 2^b, in place (the coordinator's running sum of masked inputs). */
export function addModular(acc: MaskWords, x: MaskWords): void {
  if (acc.length !== x.length || acc.constructor !== x.constructor) {
    throw new SecAggError('INVALID_ARGUMENT', 'modular add needs vectors of the same length and word width', { acc: acc.length, x: x.length });
  }
  for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! + x[i]!;
}

/**
 * Removes masks from a sum of masked inputs (Bonawitz et al. 2017, round 4): subtracts each
 * survivor's PRG(b_u), and for each dropped site v and surviving neighbour u, the term
 * sign(u,v)·PRG(s_{u,v}) that u added and v's missing input no longer cancels. Returns the sum of
 * the survivors' quantized inputs mod 2^b; `sum` is not modified.
 */
export function unmaskSum(sum: MaskWords, options: UnmaskOptions): MaskWords {
  const offset = options.wordOffset ?? 0;
  const out = sum.slice();
  for (const seed of options.survivorSelfSeeds) applyMask(out, seed, offset, -1);
  const pairs = new Set<string>();
  for (const { survivor, dropped, seed } of options.droppedPairs) {
    const key = JSON.stringify([survivor, dropped]);
    if (pairs.has(key)) throw new SecAggError('INVALID_ARGUMENT', 'dropped pair listed twice', { survivor, dropped });
    pairs.add(key);
    applyMask(out, seed, offset, pairwiseSign(survivor, dropped) === 1 ? -1 : 1);
  }
  return out;
}
