/**
 * Unmasking a secure round (Bonawitz et al. 2017, round 4 at the server): rebuild each survivor's
 * self-mask seed and each dropped site's mask key from t revealed shares, then read the sum of the
 * survivors' masked spools slice by slice, remove the masks, dequantize, and divide by the
 * unmasked sum of weights. What comes out is only the weighted mean of the survivors' deltas.
 */
import {
  combine,
  dequantizeSum,
  derivePairwiseMaskSeed,
  importX25519PrivateKey,
  sharedSecret,
  unmaskSum,
  neighbourhoodThreshold,
  secureSessionId,
  type DroppedPair,
  type NeighbourGraph,
} from '../../aggregation/index.js';
import type { FileSource } from '../../common/files.js';
import type { MeanSource } from '../aggregate/checkpoint-writer.js';
import { CoordinatorError } from '../core/errors.js';
import type { KernelPool } from '../aggregate/kernel-pool.js';
import { openMaskedSpools } from '../aggregate/kernel-spools.js';
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

/** Where {@link secureMean} sums the masked words: a worker pool, or this thread. */
export interface SecureMeanOptions {
  readonly pool?: KernelPool;
  readonly signal?: AbortSignal;
}

/**
 * A mean source over the survivors' masked spools (`elements` words each plus one weight word).
 * Opens the spools, unmasks the weight word first, then serves unmasked slices. The modular sum
 * of the spools runs in `options.pool`'s workers when given, else through in-thread kernels.
 */
export async function secureMean(
  r: SecureRound,
  spoolPaths: readonly string[],
  elements: number,
  openSpool: (path: string) => Promise<FileSource>,
  options: SecureMeanOptions = {},
): Promise<MeanSource> {
  const { selfSeeds, droppedPairs } = unmaskingSecrets(r);
  const bits = r.params.modulusBits;
  const n = r.survivors.length;
  const q = { clip: r.params.clip, quantBits: r.params.quantBits, modulusBits: bits };
  const spools = await openMaskedSpools(spoolPaths, bits, { openSpool, ...options });
  const sumWords = async (wordOffset: number, count: number): Promise<Uint32Array | Uint16Array> =>
    unmaskSum(await spools.read(wordOffset, count), { survivorSelfSeeds: selfSeeds, droppedPairs, wordOffset });
  try {
    const weightSum = dequantizeSum(await sumWords(elements, 1), n, { ...q, clip: 1 })[0]!;
    if (!(weightSum > 0)) throw new CoordinatorError('INTERNAL', `the unmasked sum of weights is ${weightSum}`);
    return {
      async read(elemOffset, count) {
        const sum = dequantizeSum(await sumWords(elemOffset, count), n, q);
        const mean = new Float32Array(count);
        for (let i = 0; i < count; i++) mean[i] = sum[i]! / weightSum;
        return mean;
      },
      close: () => spools.close(),
    };
  } catch (err) {
    await spools.close();
    throw err;
  }
}
