/**
 * The run's partition over its aggregator shards is part of its journaled plan (issue 22,
 * coordinator/shell/run-start.ts `journalPartition`): journaled when a run starts with shards, again
 * only when a coordinator resumes it with another set (or none), never for a model that cannot be
 * cut. A real state dir's journal.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { journalPartition } from '../../../coordinator/shell/run-start.js';
import { recordsOf } from '../../../coordinator/state/records.js';
import { LocalStateStore } from '../../../coordinator/state/store.js';
import type { LayoutTensor } from '../../../coordinator/upload/header.js';

const TENSORS: LayoutTensor[] = [
  { name: 'embed', dtype: 'BF16', shape: [260, 64], elements: 260 * 64 },
  { name: 'norm', dtype: 'F32', shape: [64], elements: 64 },
  { name: 'head', dtype: 'BF16', shape: [130, 64], elements: 130 * 64 },
];
const TOTAL = TENSORS.reduce((n, t) => n + t.elements, 0);

let dir: string;
let store: LocalStateStore;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedhpc-run-partition-'));
  store = await LocalStateStore.open(dir, () => 0);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

const journaled = (runId = 'run-1') => recordsOf(store.records().map((r) => r.body), runId, 'shards-partitioned');

describe('the run partition in the journal', () => {
  it('is journaled at the start with shards, kept on a resume with the same shards, and journaled again from the round a resume changes them', async () => {
    const first = await journalPartition(store, 'run-1', 1, ['s1', 's2'], TENSORS);
    expect(first.problem).toBe('');
    expect(journaled()).toEqual([{ type: 'shards-partitioned', runId: 'run-1', fromRound: 1, shards: ['s1', 's2'], alignValues: 128, bounds: [...first.partition!.bounds] }]);
    expect(first.partition!.bounds).toEqual([0, expect.any(Number), TOTAL]);

    // A restart with the same shards: the same partition, nothing more in the journal.
    const again = await journalPartition(store, 'run-1', 3, ['s1', 's2'], TENSORS);
    expect(again.partition!.bounds).toEqual(first.partition!.bounds);
    expect(journaled()).toHaveLength(1);

    // Renamed or another count: a new record from the round the resume opens.
    await journalPartition(store, 'run-1', 4, ['s1', 'b2'], TENSORS);
    const three = await journalPartition(store, 'run-1', 5, ['s1', 'b2', 's3'], TENSORS);
    expect(journaled().map((r) => [r.fromRound, r.shards, r.bounds.length])).toEqual([
      [1, ['s1', 's2'], 3],
      [4, ['s1', 'b2'], 3],
      [5, ['s1', 'b2', 's3'], 4],
    ]);
    expect(journaled().at(-1)!.bounds).toEqual(three.partition!.bounds);

    // Shards removed: the coordinator aggregates alone from round 6, journaled once.
    expect(await journalPartition(store, 'run-1', 6, [], TENSORS)).toEqual({ partition: undefined, problem: '' });
    await journalPartition(store, 'run-1', 7, [], TENSORS);
    expect(journaled().at(-1)).toMatchObject({ fromRound: 6, shards: [], bounds: [] });
    expect(journaled()).toHaveLength(4);
  });

  it('journals nothing for a run that never had shards, nor for another run', async () => {
    await journalPartition(store, 'run-1', 1, ['s1', 's2'], TENSORS);
    await journalPartition(store, 'run-2', 1, [], TENSORS);
    expect(journaled('run-2')).toEqual([]);
    expect(journaled('run-1')).toHaveLength(1);
  });

  it('says why a model cannot be cut into that many shards: nothing journaled for a run without shards, an empty partition after one with', async () => {
    const tiny: LayoutTensor[] = [{ name: 'w', dtype: 'F32', shape: [4, 64], elements: 256 }];
    const r = await journalPartition(store, 'run-1', 1, ['s1', 's2', 's3', 's4'], tiny);
    expect(r.partition).toBeUndefined();
    expect(r.problem).toMatch(/^the model cannot be cut into 4 shards: /);
    expect(journaled()).toEqual([]);
    // A run that had two parts and resumes with shards it cannot be cut for: alone from that round.
    await journalPartition(store, 'run-1', 2, ['s1', 's2'], tiny);
    expect((await journalPartition(store, 'run-1', 3, ['s1', 's2', 's3', 's4'], tiny)).problem).toMatch(/^the model cannot be cut into 4 shards: /);
    expect(journaled().map((x) => [x.fromRound, x.shards])).toEqual([
      [2, ['s1', 's2']],
      [3, []],
    ]);
  });
});
