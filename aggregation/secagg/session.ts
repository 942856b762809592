import { buildNeighbourGraph, type NeighbourGraph } from './graph.js';

/**
 * Identifiers both sides of a secure round must compute identically: the session id every
 * signature, AAD and key derivation binds to, and the bytes of the survivor list signed in the
 * consistency check (Bonawitz et al. 2017, the round added for an active server).
 */

/** Session id of one attempt: run and attempt, so keys and masks never carry over to a retry. */
export function secureSessionId(runId: string, attempt: number): string {
  return `${runId}/attempt-${attempt}`;
}

/** Canonical bytes of a survivor list: label, session, round, sorted survivors and dropped sites. */
export function survivorListBytes(session: string, round: number, survivors: readonly string[], dropped: readonly string[]): Uint8Array {
  const sorted = (xs: readonly string[]): string[] => [...xs].sort();
  return new TextEncoder().encode(JSON.stringify(['fedhpc/secagg/v1/survivors', session, round, sorted(survivors), sorted(dropped)]));
}

/**
 * The neighbour graph of an attempt over the sites that advertised keys: `degree` 0 is the
 * default (complete up to 32 sites), otherwise a k-regular SecAgg+ graph (Bell et al. 2020).
 * Sites and coordinator must build exactly the same graph, so both call this.
 */
export function sessionGraph(sites: readonly string[], roundSeed: Uint8Array, degree: number): NeighbourGraph {
  return buildNeighbourGraph({ sites, roundSeed, ...(degree > 0 ? { degree, completeUpTo: 0 } : {}) });
}

/** Shamir threshold within `site`'s neighbourhood: t, at most the neighbourhood size (itself included). */
export function neighbourhoodThreshold(graph: NeighbourGraph, site: string, threshold: number): number {
  return Math.min(threshold, graph.neighbours(site).length + 1);
}
