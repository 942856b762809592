import { describe, expect, it } from 'vitest';
import { checkpointsToDelete } from '../../../coordinator/state/retention.js';
import type { JournalRecord } from '../../../coordinator/state/journal.js';

const sha = (n: number): string => n.toString(16).padStart(64, '0');
const journal = (...bodies: object[]): JournalRecord[] => bodies.map((body, i) => ({ seq: i + 1, ts: 0, prev: '', hash: '', body: body as JournalRecord['body'] }));
const committed = (runId: string, round: number) => ({ type: 'round-committed', runId, round, attempt: 0, modelSha256: sha(round + (runId === 'b' ? 100 : 0)) });

describe('checkpoint retention', () => {
  it('keeps the last K, every Nth and the initial model; deletes the rest', () => {
    const records = journal({ type: 'run-started', runId: 'a', initialModelSha256: sha(0) }, ...[1, 2, 3, 4, 5, 6, 7].map((r) => committed('a', r)));
    expect(checkpointsToDelete(records, 'a', { keepLast: 2, keepEvery: 3 }).sort()).toEqual([sha(1), sha(2), sha(4), sha(5)]);
    expect(checkpointsToDelete(records, 'a', { keepLast: 1, keepEvery: 0 })).not.toContain(sha(7));
  });

  it('never deletes what another run in the same state dir starts from or ended with', () => {
    const records = journal(
      { type: 'run-started', runId: 'b', initialModelSha256: sha(0) },
      committed('b', 1),
      { type: 'run-started', runId: 'a', initialModelSha256: sha(101) },
      committed('a', 1),
      committed('a', 2),
      committed('a', 3),
    );
    expect(checkpointsToDelete(records, 'a', { keepLast: 1, keepEvery: 0 }).sort()).toEqual([sha(1), sha(2)]);
  });
});
