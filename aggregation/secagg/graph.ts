/**
 * The SecAgg+ neighbour graph (Bell et al. 2020): each site masks with, and shares its secrets
 * among, only its neighbours. Small federations use the complete graph (plain SecAgg, Bonawitz et
 * al. 2017); larger ones a k-regular Harary graph H(k, n) over a random permutation of the sites,
 * Bell et al.'s construction, with the permutation drawn from a 32-byte round seed so every site
 * and the coordinator derive the same graph.
 */
import { Buffer } from 'node:buffer';
import { hkdfSync } from 'node:crypto';
import { assertBytes, SecAggError } from './errors.js';
import { compareSiteIds } from './encoding.js';
import { expandMask } from './prg.js';

/** Largest federation that gets the complete graph by default. */
export const DEFAULT_COMPLETE_GRAPH_MAX_SITES = 32;
/** HKDF label turning the round seed into the permutation key. */
export const NEIGHBOUR_GRAPH_LABEL = 'fedhpc/secagg/v1/neighbour-graph';

/** Inputs of {@link buildNeighbourGraph}. */
export interface NeighbourGraphOptions {
  /** Site ids (any order; duplicates refused). */
  readonly sites: readonly string[];
  /** 32-byte public round seed, the same for everyone. */
  readonly roundSeed: Uint8Array;
  /** Federations of at most this many sites use the complete graph. Default {@link DEFAULT_COMPLETE_GRAPH_MAX_SITES}. */
  readonly completeUpTo?: number;
  /** Degree k (even, ≥ ⌈log2 n⌉). Default {@link defaultDegree}(n). */
  readonly degree?: number;
}

/** An undirected neighbour graph without self-loops. */
export interface NeighbourGraph {
  /** Sites in canonical order. */
  readonly sites: readonly string[];
  /** Whether every pair of sites are neighbours. */
  readonly complete: boolean;
  /** Neighbours per site (n − 1 when complete). */
  readonly degree: number;
  /** The neighbours of `site`, in canonical order; `INVALID_ARGUMENT` for an unknown site. */
  neighbours(site: string): readonly string[];
}

/** Default SecAgg+ degree: the smallest even k ≥ 2·⌈log2 n⌉ (Bell et al. 2020: k = O(log n)). */
export function defaultDegree(sites: number): number {
  const k = 2 * Math.ceil(Math.log2(Math.max(2, sites)));
  return k % 2 === 0 ? k : k + 1;
}

/**
 * Builds the round's neighbour graph (Bell et al. 2020, §3): complete for n ≤ `completeUpTo` or
 * when k ≥ n − 1; otherwise H(k, n) — site at ring position i is joined to positions i ± 1..k/2
 * mod n — over a permutation drawn by Fisher–Yates from AES-CTR keyed by HKDF(roundSeed).
 */
export function buildNeighbourGraph(options: NeighbourGraphOptions): NeighbourGraph {
  assertBytes(options.roundSeed, 32, 'round seed');
  const sites = [...options.sites].sort(compareSiteIds);
  if (sites.some((s) => typeof s !== 'string' || s.length === 0)) throw new SecAggError('INVALID_ARGUMENT', 'site ids must be non-empty strings');
  for (let i = 1; i < sites.length; i++) {
    if (sites[i] === sites[i - 1]) throw new SecAggError('INVALID_ARGUMENT', 'site listed twice', { site: sites[i] });
  }
  const n = sites.length;
  const completeUpTo = options.completeUpTo ?? DEFAULT_COMPLETE_GRAPH_MAX_SITES;
  if (!Number.isSafeInteger(completeUpTo) || completeUpTo < 0) throw new SecAggError('INVALID_ARGUMENT', 'completeUpTo must be a non-negative integer', { completeUpTo });
  const k = options.degree ?? defaultDegree(n);
  if (!Number.isInteger(k) || k < 2 || k % 2 !== 0 || k < Math.ceil(Math.log2(Math.max(2, n)))) {
    throw new SecAggError('INVALID_ARGUMENT', 'degree must be an even integer ≥ max(2, ⌈log2 n⌉)', { degree: k, sites: n });
  }
  const adjacency = new Map<string, readonly string[]>();
  if (n <= completeUpTo || k >= n - 1) {
    for (const site of sites) adjacency.set(site, sites.filter((s) => s !== site));
    return graph(sites, true, Math.max(0, n - 1), adjacency);
  }
  const ring = permute(sites, options.roundSeed);
  for (let i = 0; i < n; i++) {
    const near: string[] = [];
    for (let d = 1; d <= k / 2; d++) near.push(ring[(i + d) % n]!, ring[(i - d + n) % n]!);
    adjacency.set(ring[i]!, near.sort(compareSiteIds));
  }
  return graph(sites, false, k, adjacency);
}

function graph(sites: readonly string[], complete: boolean, degree: number, adjacency: ReadonlyMap<string, readonly string[]>): NeighbourGraph {
  const frozen = Object.freeze([...sites]);
  for (const [site, near] of adjacency) (adjacency as Map<string, readonly string[]>).set(site, Object.freeze([...near]));
  return Object.freeze({
    sites: frozen,
    complete,
    degree,
    neighbours(site: string): readonly string[] {
      const near = adjacency.get(site);
      if (near === undefined) throw new SecAggError('INVALID_ARGUMENT', 'site is not in the graph', { site });
      return near;
    },
  });
}

/** Fisher–Yates shuffle with unbiased draws (rejection sampling on 32-bit PRG words). */
function permute(sites: readonly string[], roundSeed: Uint8Array): string[] {
  const label = Buffer.from(NEIGHBOUR_GRAPH_LABEL, 'utf8');
  const key = new Uint8Array(hkdfSync('sha256', roundSeed, label, label, 32));
  const out = [...sites];
  let words: Uint32Array = new Uint32Array(0);
  let used = 0;
  let offset = 0;
  const next = (): number => {
    if (used === words.length) {
      words = expandMask(key, offset, 1024, 32);
      offset += words.length;
      used = 0;
    }
    return words[used++]!;
  };
  for (let i = out.length - 1; i > 0; i--) {
    const m = i + 1;
    const limit = Math.floor(2 ** 32 / m) * m;
    let w = next();
    while (w >= limit) w = next();
    const j = w % m;
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
