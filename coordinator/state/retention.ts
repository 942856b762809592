/**
 * Checkpoint retention: keep the last `keepLast` committed checkpoints and every `keepEvery`-th
 * round's, delete the rest. Never deleted: the current global model and its optimizer state (what
 * a restart resumes from), any checkpoint of a run that is not this one's latest, and the initial
 * model (round 0, the run's first parent). Runs after a commit, before the next round opens, so
 * no aggregation writes a checkpoint meanwhile.
 */
import { recordsOf, type RoundCommittedRecord } from './records.js';
import type { JournalRecord } from './journal.js';

/** `retention` of the coordinator config. */
export interface RetentionPolicy {
  readonly keepLast: number;
  /** Keep rounds divisible by this as well (0: none). */
  readonly keepEvery: number;
}

/** What retention needs from the state store. */
export interface RetentionStore {
  records(): readonly JournalRecord[];
  deleteCheckpoint(sha256: string): Promise<void>;
}

/**
 * Checkpoints of `runId` that `policy` lets go: committed models outside the last `keepLast`
 * rounds and not on a `keepEvery` multiple, never the current global or one still referenced by
 * a kept round of another run.
 */
export function checkpointsToDelete(records: readonly JournalRecord[], runId: string, policy: RetentionPolicy): string[] {
  const bodies = records.map((r) => r.body);
  const committed: readonly RoundCommittedRecord[] = recordsOf(bodies, runId, 'round-committed');
  const keep = new Set<string>();
  for (const started of recordsOf(bodies, runId, 'run-started')) keep.add(started.initialModelSha256);
  committed.slice(-policy.keepLast).forEach((c) => keep.add(c.modelSha256));
  for (const c of committed) if (policy.keepEvery > 0 && c.round % policy.keepEvery === 0) keep.add(c.modelSha256);
  // Other runs in the same state dir keep what they reference: their initial and latest models.
  for (const b of bodies) {
    if (b.type === 'run-started' && b['runId'] !== runId) keep.add(String(b['initialModelSha256']));
  }
  const lastOfOtherRuns = new Map<string, string>();
  for (const b of bodies) if (b.type === 'round-committed' && b['runId'] !== runId) lastOfOtherRuns.set(String(b['runId']), String(b['modelSha256']));
  for (const sha of lastOfOtherRuns.values()) keep.add(sha);
  return [...new Set(committed.map((c) => c.modelSha256))].filter((sha) => !keep.has(sha));
}

/** Applies `policy` to `runId`'s checkpoints; returns the hashes deleted. */
export async function applyRetention(store: RetentionStore, runId: string, policy: RetentionPolicy): Promise<string[]> {
  const doomed = checkpointsToDelete(store.records(), runId, policy);
  for (const sha of doomed) await store.deleteCheckpoint(sha);
  return doomed;
}
