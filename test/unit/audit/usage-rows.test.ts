/**
 * `admin usage` and the usage series sum what the journal holds (coordinator/audit/usage.ts): a
 * round counts for each participant; its usage is that site's receipt; unknown rounds and rounds
 * whose receipt has not come (or came before protocol version 6) are counted, never summed as 0.
 */
import { describe, expect, it } from 'vitest';
import type { RoundUsage } from '../../../common/usage.js';
import { usageRows } from '../../../coordinator/audit/usage.js';
import type { JournalRecord } from '../../../coordinator/state/journal.js';

const usage = (allocatedGpuMs: number, trainingGpuMs: number, source: RoundUsage['source'] = 'slurm-sacct'): RoundUsage => ({ source, gpus: 1, wallMs: allocatedGpuMs, allocatedGpuMs, trainingGpuMs, jobs: source === 'slurm-sacct' ? '9' : '', reason: '' });
const unknown: RoundUsage = { source: 'unknown', gpus: 0, wallMs: 0, allocatedGpuMs: 0, trainingGpuMs: 0, jobs: '', reason: 'no sacct' };

let seq = 0;
const record = (ts: number, body: Record<string, unknown>): JournalRecord => ({ seq: ++seq, ts, prev: '', hash: String(seq), body: body as JournalRecord['body'] });
const commit = (ts: number, runId: string, round: number, sites: string[]) => record(ts, { type: 'round-committed', runId, round, participants: sites.map((site) => ({ site })) });
const receipt = (runId: string, round: number, site: string, u?: RoundUsage) => record(0, { type: 'receipt', runId, round, site, ...(u ? { usage: u } : {}) });

const records = [
  commit(1000, 'r1', 1, ['a', 'b']),
  receipt('r1', 1, 'a', usage(100, 60)),
  receipt('r1', 1, 'b', unknown),
  commit(2000, 'r1', 2, ['a', 'b']),
  receipt('r1', 2, 'a', usage(50, 50, 'wall-clock')),
  // b's receipt of round 2 never came; a v1 receipt (before usage) counts the same
  commit(3000, 'r2', 1, ['b']),
  receipt('r2', 1, 'b'),
];

describe('usage rows from the journal', () => {
  it('sums known usage per run and site, and counts unknown rounds and rounds without a receipt', () => {
    const rows = usageRows(records);
    expect(rows.map((r) => [r.runId, r.site, r.rounds, r.allocatedGpuMs, r.trainingGpuMs, r.roundsUnknown, r.roundsWithoutReceipt, r.sources.join('+')])).toEqual([
      ['r1', 'a', 2, 150, 110, 0, 0, 'slurm-sacct+wall-clock'],
      ['r1', 'b', 2, 0, 0, 1, 1, ''],
      ['r2', 'b', 1, 0, 0, 0, 1, ''],
    ]);
    expect(rows[0]!.perRound.map((p) => p.committedMs)).toEqual([1000, 2000]);
  });

  it('filters by site and by the commit time window [from, to)', () => {
    expect(usageRows(records, { site: 'a' }).map((r) => r.site)).toEqual(['a']);
    expect(usageRows(records, { fromMs: 2000 }).map((r) => `${r.runId}/${r.site}/${r.rounds}`)).toEqual(['r1/a/1', 'r1/b/1', 'r2/b/1']);
    expect(usageRows(records, { toMs: 2000 }).map((r) => `${r.runId}/${r.site}/${r.allocatedGpuMs}`)).toEqual(['r1/a/100', 'r1/b/0']);
    expect(usageRows(records, { site: 'nobody' })).toEqual([]);
  });
});
