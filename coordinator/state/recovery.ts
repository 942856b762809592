/**
 * Replaying the journal at start-up: where a run stands after a restart. Finished rounds are never
 * lost or repeated; an interrupted round starts again with a fresh attempt number (so nothing keyed
 * to an attempt, such as secure-aggregation keys, is ever reused).
 */
import type { JournalRecord } from './journal.js';
import { recordsOf, type EvalRecord, type RoundCommittedRecord, type RunStartedRecord } from './records.js';

/** A run as the journal left it. */
export interface RecoveredRun {
  readonly started: RunStartedRecord;
  /** Total rounds, after any extension. */
  readonly rounds: number;
  readonly committed: readonly RoundCommittedRecord[];
  /** Next round to run (committed + 1). */
  readonly nextRound: number;
  /** Attempt number the next round starts at. */
  readonly nextAttempt: number;
  /** Hash of the current global model. */
  readonly globalSha256: string;
  /** Checkpoint whose optimizer state the next step continues from (undefined before round 1). */
  readonly stateSha256: string | undefined;
  /** Server steps taken so far. */
  readonly serverSteps: number;
  readonly evals: readonly EvalRecord[];
}

/** Reads the state of `runId` from journal records, or undefined when the run never started. */
export function recoverRun(records: readonly JournalRecord[], runId: string): RecoveredRun | undefined {
  const bodies = records.map((r) => r.body);
  const started = recordsOf(bodies, runId, 'run-started').at(-1);
  if (!started) return undefined;
  const committed = recordsOf(bodies, runId, 'round-committed');
  const last = committed.at(-1);
  const nextRound = (last?.round ?? 0) + 1;
  const attempts = recordsOf(bodies, runId, 'round-opened')
    .filter((r) => r.round === nextRound)
    .map((r) => r.attempt);
  const extended = recordsOf(bodies, runId, 'run-extended').at(-1);
  return {
    started,
    rounds: extended?.rounds ?? started.plan.rounds,
    committed,
    nextRound,
    nextAttempt: attempts.length > 0 ? Math.max(...attempts) + 1 : 0,
    globalSha256: last?.modelSha256 ?? started.initialModelSha256,
    stateSha256: last?.modelSha256,
    serverSteps: last?.serverStep ?? 0,
    evals: recordsOf(bodies, runId, 'eval'),
  };
}
