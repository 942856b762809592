import { describe, expect, it } from 'vitest';
import { recoverRun } from '../../../coordinator/state/recovery.js';
import { GENESIS_HASH, type JournalBody, type JournalRecord, recordHash, verifyChain } from '../../../coordinator/state/journal.js';
import type { EvalRecord, RoundCommittedRecord, RunStartedRecord, StateRecord } from '../../../coordinator/state/records.js';

const sha = (c: string): string => c.repeat(64);

/** Journal records chained by hand from bodies. */
function chain(bodies: readonly StateRecord[]): JournalRecord[] {
  const out: JournalRecord[] = [];
  let prev = GENESIS_HASH;
  bodies.forEach((body, i) => {
    const partial = { seq: i + 1, ts: 1000 + i, prev, body: body as unknown as JournalBody };
    const hash = recordHash(partial);
    out.push({ ...partial, hash });
    prev = hash;
  });
  expect(verifyChain(out).ok).toBe(true);
  return out;
}

function started(runId: string, rounds = 5): RunStartedRecord {
  return {
    type: 'run-started',
    runId,
    plan: {
      runId,
      rounds,
      minSites: 1,
      expectedSites: [],
      deadlines: { open: 1, training: 1, upload: 1, aggregate: 1, commit: 1 },
      maxAttempts: 5,
    },
    strategy: { name: 'diloco', lr: 0.7, momentum: 0.9 },
    weighting: 'samples',
    encoding: 'f32',
    train: {},
    initialModelSha256: sha('0'),
  };
}

function opened(runId: string, round: number, attempt: number): StateRecord {
  return { type: 'round-opened', runId, round, attempt };
}

function committed(runId: string, round: number, attempt: number, parent: string, model: string, serverStep = round): RoundCommittedRecord {
  return {
    type: 'round-committed',
    runId,
    round,
    attempt,
    participants: [],
    dropped: [],
    parentSha256: parent,
    modelSha256: model,
    strategy: { name: 'diloco', lr: 0.7, momentum: 0.9 },
    serverStep,
    bytesUp: 0,
    bytesDown: 0,
    startedMs: 0,
  };
}

describe('recoverRun', () => {
  it('returns undefined for an empty journal and for a run that never started', () => {
    expect(recoverRun([], 'r1')).toBeUndefined();
    expect(recoverRun(chain([started('other')]), 'r1')).toBeUndefined();
  });

  it('starts a fresh run at round 1 attempt 0 from the initial model', () => {
    const run = recoverRun(chain([started('r1', 4)]), 'r1')!;
    expect(run).toMatchObject({
      rounds: 4,
      nextRound: 1,
      nextAttempt: 0,
      globalSha256: sha('0'),
      stateSha256: undefined,
      serverSteps: 0,
      committed: [],
      evals: [],
    });
  });

  it('resumes after two committed rounds and an interrupted third with a fresh attempt', () => {
    const c1 = committed('r1', 1, 0, sha('0'), sha('1'));
    const c2 = committed('r1', 2, 1, sha('1'), sha('2'));
    const records = chain([
      started('r1'),
      opened('r1', 1, 0),
      c1,
      opened('r1', 2, 0),
      { type: 'round-aborted', runId: 'r1', round: 2, attempt: 0, reason: 'too few sites' },
      opened('r1', 2, 1),
      c2,
      opened('r1', 3, 0), // the coordinator stopped here
    ]);
    const run = recoverRun(records, 'r1')!;
    expect(run.nextRound).toBe(3);
    expect(run.nextAttempt).toBe(1);
    expect(run.globalSha256).toBe(sha('2'));
    expect(run.stateSha256).toBe(sha('2'));
    expect(run.serverSteps).toBe(2);
    expect(run.committed).toEqual([c1, c2]);
    expect(run.rounds).toBe(5);
  });

  it('counts attempts past the highest opened one, aborted or not', () => {
    const records = chain([started('r1'), opened('r1', 1, 0), opened('r1', 1, 1), opened('r1', 1, 2)]);
    expect(recoverRun(records, 'r1')).toMatchObject({ nextRound: 1, nextAttempt: 3, globalSha256: sha('0') });
  });

  it('raises the round count with the latest run-extended record', () => {
    const records = chain([
      started('r1', 2),
      opened('r1', 1, 0),
      committed('r1', 1, 0, sha('0'), sha('1')),
      { type: 'run-extended', runId: 'r1', rounds: 6 },
      { type: 'run-extended', runId: 'r1', rounds: 9 },
    ]);
    expect(recoverRun(records, 'r1')!.rounds).toBe(9);
  });

  it('ignores the records of another run id', () => {
    const ev: EvalRecord = { type: 'eval', runId: 'r1', modelRound: 1, modelSha256: sha('1'), sites: [], loss: 1, samples: 1 };
    const records = chain([
      started('r1', 3),
      started('r2', 10),
      opened('r1', 1, 0),
      committed('r1', 1, 0, sha('0'), sha('1')),
      ev,
      opened('r2', 1, 0),
      committed('r2', 1, 0, sha('0'), sha('a')),
      opened('r2', 2, 0),
      committed('r2', 2, 0, sha('a'), sha('b')),
      opened('r2', 3, 4),
      { type: 'run-extended', runId: 'r2', rounds: 20 },
      { type: 'eval', runId: 'r2', modelRound: 2, modelSha256: sha('b'), sites: [], loss: 2, samples: 1 },
    ]);
    const run = recoverRun(records, 'r1')!;
    expect(run.started.runId).toBe('r1');
    expect(run).toMatchObject({ rounds: 3, nextRound: 2, nextAttempt: 0, globalSha256: sha('1'), serverSteps: 1 });
    expect(run.committed.map((c) => c.modelSha256)).toEqual([sha('1')]);
    expect(run.evals).toEqual([ev]);
    expect(recoverRun(records, 'r2')).toMatchObject({ rounds: 20, nextRound: 3, nextAttempt: 5, globalSha256: sha('b'), serverSteps: 2 });
  });
});
