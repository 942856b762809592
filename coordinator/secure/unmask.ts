/**
 * Unmasking a secure round (Bonawitz et al. 2017, round 4 at the server): rebuild each survivor's
 * self-mask seed and each dropped site's mask key from t revealed shares, then read the sum of the
 * survivors' masked spools slice by slice, remove the masks, dequantize, and divide by the sum of
 * the weights the survivors declared. What comes out is only the weighted mean of their deltas.
 *
 * Two checks stand between the sum and the model (aggregation/secagg/bounds.ts): the unmasked Σw
 * must equal the declared weights' sum within n/(2^(q−1) − 1) (WEIGHT_SUM_MISMATCH), and every
 * coordinate must lie within Σwᵢ·c + n·c/(2^(q−1) − 1) (SUM_OUT_OF_RANGE). Either failure aborts the
 * attempt; the sum cannot say which survivor sent the words that broke it.
 */
import {
  checkSumRange,
  checkWeightSum,
  encodedWeight,
  invariant,
  sumRangeBound,
  type Result,
  type SecAggErrorCode,
  combine,
  derivePairwiseMaskSeed,
  importX25519PrivateKey,
  sharedSecret,
  MaskWorkspace,
  unmaskDequantize,
  neighbourhoodThreshold,
  secureSessionId,
  type DroppedPair,
  type NeighbourGraph,
} from '../../aggregation/index.js';
import type { FileSource } from '../../common/files.js';
import type { MeanSource } from '../aggregate/checkpoint-writer.js';
import { CoordinatorError, type CoordinatorErrorCode } from '../core/errors.js';
import type { KernelPool } from '../aggregate/kernel-pool.js';
import { meanSliceArray, openMaskedSpools } from '../aggregate/kernel-spools.js';
import { neighbourGraph, type SecureRound } from './round.js';

function rebuild(r: SecureRound, graph: NeighbourGraph, owner: string, kind: 'self_seed' | 'mask_key'): Uint8Array {
  const threshold = neighbourhoodThreshold(graph, owner, r.params.threshold);
  const shares = [...r.revealed.values()].flat().filter((s) => s.owner === owner && s.kind === kind);
  if (shares.length < threshold) {
    throw new CoordinatorError('INTERNAL', `only ${shares.length} of ${threshold} shares of ${owner}'s ${kind.replace('_', ' ')} were revealed`);
  }
  try {
    return combine(shares.map((s) => ({ x: s.x, y: s.y })), { threshold });
  } catch (cause) {
    throw new CoordinatorError('INTERNAL', `the revealed shares of ${owner}'s ${kind.replace('_', ' ')} are inconsistent`, {}, { cause });
  }
}

/** Mask material the coordinator may rebuild: survivors' self seeds, dropped sites' pairwise seeds. */
export function unmaskingSecrets(r: SecureRound): { selfSeeds: Uint8Array[]; droppedPairs: DroppedPair[] } {
  const graph = neighbourGraph(r);
  const session = secureSessionId(r.runId, r.attempt);
  const selfSeeds = r.survivors.map((u) => rebuild(r, graph, u, 'self_seed'));
  const droppedPairs: DroppedPair[] = [];
  for (const d of r.dropped) {
    const key = importX25519PrivateKey(rebuild(r, graph, d, 'mask_key'));
    for (const u of graph.neighbours(d).filter((n) => r.survivors.includes(n))) {
      const sPk = r.adverts.get(u)!.sPk;
      droppedPairs.push({ survivor: u, dropped: d, seed: derivePairwiseMaskSeed(sharedSecret(key, sPk), { run: session, round: r.round, siteA: u, siteB: d }) });
    }
  }
  return { selfSeeds, droppedPairs };
}

/** The codes of the two checks of an unmasked sum: either one aborts the attempt. */
export const SUM_CHECK_CODES: readonly CoordinatorErrorCode[] = ['WEIGHT_SUM_MISMATCH', 'SUM_OUT_OF_RANGE'];

/** A failed check of the library as the coordinator's error of the same code, naming the survivors. */
function checked<T>(result: Result<T, SecAggErrorCode>, r: SecureRound): T {
  if (result.ok) return result.value;
  const code: CoordinatorErrorCode = result.code === 'WEIGHT_SUM_MISMATCH' || result.code === 'SUM_OUT_OF_RANGE' || result.code === 'WEIGHT_OUT_OF_RANGE' ? result.code : 'INTERNAL';
  const facts = Object.entries(result.context).filter((e): e is [string, number | string | boolean] => ['number', 'string', 'boolean'].includes(typeof e[1]));
  throw new CoordinatorError(code, `${result.issues.join('; ')}; the survivors were ${r.survivors.join(', ')} (the sum cannot say which of them sent it)`, {
    ...Object.fromEntries(facts),
    round: r.round,
    attempt: r.attempt,
    survivors: r.survivors.join(','),
  });
}

/**
 * The weight each survivor declared in its clear upload header (`declared`: its count in the run's
 * unit, by site), recomputed exactly as its encoder computed it, Float32 rounding included.
 */
export function declaredWeights(r: SecureRound, declared: ReadonlyMap<string, number>): number[] {
  return r.survivors.map((site) => {
    const count = declared.get(site);
    invariant(count !== undefined, 'every survivor of a secure attempt declared its count in a verified upload header');
    return checked(encodedWeight(count, r.params.maxSiteWeight), r);
  });
}

/** Where {@link secureMean} sums the masked words: a worker pool, or this thread. */
export interface SecureMeanOptions {
  readonly pool?: KernelPool;
  readonly signal?: AbortSignal;
}

/**
 * What unmasking needs besides the masked words: the secrets rebuilt from the revealed shares and
 * the attempt's quantization. The leader makes it once per attempt; with aggregator shards (issue
 * 22) it hands it to every shard, which unmasks its own range of the sum (masks are per coordinate,
 * and the keystream seeks by word offset).
 */
export interface UnmaskPlan {
  /** n, the survivors whose masked words are summed. */
  readonly survivors: number;
  readonly selfSeeds: readonly Uint8Array[];
  readonly droppedPairs: readonly DroppedPair[];
  readonly clip: number;
  readonly quantBits: number;
  readonly modulusBits: 16 | 32;
}

/** The attempt's {@link UnmaskPlan}: its survivors' self seeds and dropped sites' pairwise seeds rebuilt. */
export function unmaskPlan(r: SecureRound): UnmaskPlan {
  const { selfSeeds, droppedPairs } = unmaskingSecrets(r);
  return { survivors: r.survivors.length, selfSeeds, droppedPairs, clip: r.params.clip, quantBits: r.params.quantBits, modulusBits: r.params.modulusBits };
}

/** Unmasked, dequantized sums of the masked spools over global word ranges. */
interface UnmaskedSums {
  /** Σ of words [at, at + count) (global offsets), unmasked and decoded with `clip`; valid until the next call. */
  read(at: number, count: number, clip: number): Promise<Float64Array>;
  close(): Promise<void>;
}

/**
 * Opens the survivors' masked spools, whose first word is global word `base` (0 for whole deltas,
 * a shard's first value for spools holding only its part). Unmasking and decoding are fused slice by slice in one
 * workspace, into one reused f64 buffer: each caller checks and divides the decoded sum before its
 * next await, so no decoded sum outlives the turn that made it.
 */
async function openUnmaskedSums(
  plan: UnmaskPlan,
  spoolPaths: readonly string[],
  base: number,
  openSpool: (path: string) => Promise<FileSource>,
  options: SecureMeanOptions,
): Promise<UnmaskedSums> {
  invariant(spoolPaths.length === plan.survivors, 'a secure sum reads one spool per survivor');
  const workspace = new MaskWorkspace();
  const spools = await openMaskedSpools(spoolPaths, plan.modulusBits, { openSpool, ...options });
  const masks = { survivorSelfSeeds: plan.selfSeeds, droppedPairs: plan.droppedPairs };
  let decoded = new Float64Array(0);
  return {
    async read(at, count, clip) {
      const words = await spools.read(at - base, count);
      if (decoded.length !== words.length) decoded = new Float64Array(words.length);
      return unmaskDequantize(words, plan.survivors, { clip, quantBits: plan.quantBits, modulusBits: plan.modulusBits }, { ...masks, wordOffset: at }, workspace, decoded);
    },
    close: () => spools.close(),
  };
}

/**
 * The unmasked sum of the survivors' weight words (global word `elements`, quantized with clip 1),
 * read from spools whose first word is global word `base`: the whole deltas, or the parts of the
 * shard designated to hold the weight word. The caller checks it ({@link checkedWeightSum}).
 */
export async function unmaskWeightWord(
  plan: UnmaskPlan,
  spoolPaths: readonly string[],
  base: number,
  elements: number,
  openSpool: (path: string) => Promise<FileSource>,
  options: SecureMeanOptions = {},
): Promise<number> {
  const sums = await openUnmaskedSums(plan, spoolPaths, base, openSpool, options);
  try {
    return (await sums.read(elements, 1, 1))[0]!;
  } finally {
    await sums.close();
  }
}

/**
 * The Σw check: the unmasked weight sum against the weights the survivors declared in their clear
 * headers; returns the declared Σw every mean divides by, or throws `WEIGHT_SUM_MISMATCH` naming
 * the survivors.
 */
export function checkedWeightSum(r: SecureRound, declared: ReadonlyMap<string, number>, unmasked: number): number {
  return checked(checkWeightSum(unmasked, declaredWeights(r, declared), r.params.quantBits), r);
}

/**
 * A mean source over values [first, first + …) of the survivors' masked spools, offsets relative
 * to `first`; the spools' first word is global word `base` (0: whole deltas, the default; `first`:
 * spools holding only this part). Each slice is unmasked, checked against the range bound of
 * `weightSum` (`SUM_OUT_OF_RANGE`, through `check`, which may name the survivors) and divided by it.
 */
export async function unmaskedMean(
  plan: UnmaskPlan,
  spoolPaths: readonly string[],
  first: number,
  weightSum: number,
  openSpool: (path: string) => Promise<FileSource>,
  options: SecureMeanOptions & { readonly base?: number; readonly check?: (result: Result<void, SecAggErrorCode>) => void } = {},
): Promise<MeanSource> {
  const check = options.check ?? ((result) => checkedAtShard(result));
  const bound = sumRangeBound(weightSum, plan.survivors, plan);
  const sums = await openUnmaskedSums(plan, spoolPaths, options.base ?? 0, openSpool, options);
  return {
    async read(offset, count, into) {
      const sum = await sums.read(first + offset, count, plan.clip);
      check(checkSumRange(sum, bound, first + offset));
      const mean = meanSliceArray(count, into);
      for (let i = 0; i < count; i++) mean[i] = sum[i]! / weightSum;
      return mean;
    },
    close: () => sums.close(),
  };
}

/** A failed range check where the survivors are not known (a shard): the leader names them when it aborts. */
function checkedAtShard(result: Result<void, SecAggErrorCode>): void {
  if (result.ok) return;
  const code: CoordinatorErrorCode = result.code === 'SUM_OUT_OF_RANGE' ? 'SUM_OUT_OF_RANGE' : 'INTERNAL';
  throw new CoordinatorError(code, result.issues.join('; '));
}

/**
 * A mean source over the survivors' masked spools (`elements` words each plus one weight word).
 * Opens the spools and unmasks the weight word first: the Σw check runs before any slice is
 * served, the range check on every slice served. The mean divides by the declared Σwᵢ, so a
 * passing sum gives a mean within ±(c + n·c/((2^(q−1) − 1)·Σwᵢ)) in every coordinate. The modular sum
 * of the spools runs in `options.pool`'s workers when given, else through in-thread kernels.
 */
export async function secureMean(
  r: SecureRound,
  spoolPaths: readonly string[],
  declared: ReadonlyMap<string, number>,
  elements: number,
  openSpool: (path: string) => Promise<FileSource>,
  options: SecureMeanOptions = {},
): Promise<MeanSource> {
  const { plan, weightSum } = await checkedUnmasking(r, spoolPaths, declared, elements, openSpool, options);
  return unmaskedMean(plan, spoolPaths, 0, weightSum, openSpool, { ...options, check: (result) => checked(result, r) });
}

/**
 * What unmasking the attempt's sum needs, checked: the secrets rebuilt from the revealed shares, and
 * Σw — the survivors' weight words unmasked from their whole spools (n words) and checked against the
 * counts they declared (`WEIGHT_SUM_MISMATCH` otherwise). `secureMean` runs on it; so do aggregator
 * shards, each over its own range (issue 22).
 */
export async function checkedUnmasking(
  r: SecureRound,
  spoolPaths: readonly string[],
  declared: ReadonlyMap<string, number>,
  elements: number,
  openSpool: (path: string) => Promise<FileSource>,
  options: SecureMeanOptions = {},
): Promise<{ readonly plan: UnmaskPlan; readonly weightSum: number }> {
  invariant(spoolPaths.length === r.survivors.length, 'a secure sum reads one spool per survivor');
  declaredWeights(r, declared); // a weight no encoder could have declared fails before any spool is read
  const plan = unmaskPlan(r);
  return { plan, weightSum: checkedWeightSum(r, declared, await unmaskWeightWord(plan, spoolPaths, 0, elements, openSpool, options)) };
}

/**
 * {@link checkedUnmasking} from the survivors' masked weight words themselves, in survivor order
 * (each `modulusBits / 8` bytes, little-endian): what the leader holds of the uploads aggregator
 * shards take in parts (the shard with the last part reports its word; issue 22), or reads from the
 * end of a whole spool. The same Σw, from n words instead of n spools.
 */
export function checkedUnmaskingOfWords(r: SecureRound, words: readonly Uint8Array[], declared: ReadonlyMap<string, number>, elements: number): { readonly plan: UnmaskPlan; readonly weightSum: number } {
  invariant(words.length === r.survivors.length, 'a secure sum takes one weight word per survivor');
  declaredWeights(r, declared);
  const plan = unmaskPlan(r);
  const bytes = plan.modulusBits / 8;
  let total = 0;
  for (const w of words) {
    invariant(w.length === bytes, 'a weight word is one word of the modulus');
    total = (total + (bytes === 4 ? Buffer.from(w.buffer, w.byteOffset, 4).readUInt32LE(0) : Buffer.from(w.buffer, w.byteOffset, 2).readUInt16LE(0))) % 2 ** plan.modulusBits;
  }
  const sum = plan.modulusBits === 32 ? Uint32Array.of(total) : Uint16Array.of(total);
  const masks = { survivorSelfSeeds: plan.selfSeeds, droppedPairs: plan.droppedPairs, wordOffset: elements };
  const unmasked = unmaskDequantize(sum, plan.survivors, { clip: 1, quantBits: plan.quantBits, modulusBits: plan.modulusBits }, masks)[0]!;
  return { plan, weightSum: checkedWeightSum(r, declared, unmasked) };
}
