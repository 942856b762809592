/**
 * The leader's side of an aggregation on shards (coordinator/shards/registry.ts, issue 22): only
 * when every configured shard is ready for the run's model; each shard's answer resolves its part,
 * and a shard that fails, or whose stream ends first, fails the whole aggregation (`SHARD_FAILED`,
 * or the sum check's own code) with the other shards told to stop; an abort tells every shard to stop. The links are the
 * registry's own interface, recorded in memory (the stream itself is tested over gRPC in
 * shard-terms.test.ts and the integration tests).
 */
import { describe, expect, it } from 'vitest';
import { AggregationError, partitionModel, unwrap } from '../../../aggregation/index.js';
import { CoordinatorError } from '../../../coordinator/core/errors.js';
import { ShardRegistry, type ShardLink } from '../../../coordinator/shards/registry.js';
import type { ShardAggregation } from '../../../coordinator/shell/ports.js';

const TENSORS = [
  { name: 'w', shape: [64, 128] },
  { name: 'b', shape: [128] },
];
const PLAN = {
  runId: 'run-1',
  globalSha256: 'a'.repeat(64),
  // The run's journaled partition over the two shards.
  shards: { partition: unwrap(partitionModel(TENSORS, 2), AggregationError, 'partition'), problem: '' },
};

type Sent = Parameters<ShardLink['send']>[0];

function link(peer: string): ShardLink & { sent: Sent[]; closed: string[] } {
  const sent: Sent[] = [];
  const closed: string[] = [];
  return { peer, servesUploads: false, sent, closed, send: (i) => void sent.push(i), close: (r) => void closed.push(r) };
}

/** A registry of shards s1 and s2, both attached and ready for PLAN's model. */
function readyRegistry(): { registry: ShardRegistry; links: ReturnType<typeof link>[] } {
  const registry = new ShardRegistry({ shards: [{ name: 's1', endpoint: 'h1:1' }, { name: 's2', endpoint: 'h2:1' }], plan: () => PLAN, now: () => 0 });
  const links = [link('p1'), link('p2')];
  for (const [i, name] of ['s1', 's2'].entries()) {
    registry.attach(name, links[i]!);
    registry.readiness(name, links[i]!, { term: '0', runId: PLAN.runId, globalModelSha256: PLAN.globalSha256, ready: true, problem: '', freeBytes: '1' }, '0');
  }
  return { registry, links };
}

const REQUEST: ShardAggregation = {
  runId: 'run-1',
  round: 3,
  attempt: 1,
  globalModelSha256: PLAN.globalSha256,
  previousStateSha256: undefined,
  optimizer: { name: 'diloco', params: { lr: 0.7, momentum: 0.9 } },
  step: 3,
  inputs: [],
  stage: { files: [] },
  sliceElements: 4096,
  unmask: undefined,
  aggregator: { name: 'mean' },
};
const answer = (ok: boolean, written: string[] = [], code = '', message = '') => ({ term: '0', round: '3', attempt: 1, ok, written, code, message });

describe('ShardRegistry: an aggregation on the shards', () => {
  it('is offered only when every shard is ready for the run’s model, and resolves with each shard’s writes in shard order', async () => {
    const { registry, links } = readyRegistry();
    expect(registry.readyPartition()?.shards).toHaveLength(2);
    const done = registry.aggregate(REQUEST, new AbortController().signal);
    expect(links.map((l) => l.sent.at(-1))).toEqual([{ aggregate: REQUEST }, { aggregate: REQUEST }]);
    registry.aggregated('s2', links[1]!, answer(true, ['30', '40']));
    registry.aggregated('s1', links[0]!, { ...answer(true, ['10', '20']), attempt: 0 }); // another attempt's: ignored
    registry.aggregated('s1', links[0]!, answer(true, ['10', '20']));
    await expect(done).resolves.toEqual([
      [10, 20],
      [30, 40],
    ]);
    // One shard not ready (its readiness says so): no partition is offered.
    registry.readiness('s2', links[1]!, { term: '0', runId: PLAN.runId, globalModelSha256: PLAN.globalSha256, ready: false, problem: 'disk', freeBytes: '1' }, '0');
    expect(registry.readyPartition()).toBeUndefined();
  });

  it('fails with SHARD_FAILED when a shard reports a failure, and tells the other to stop', async () => {
    const { registry, links } = readyRegistry();
    const done = registry.aggregate(REQUEST, new AbortController().signal);
    registry.aggregated('s1', links[0]!, answer(false, [], 'MODEL_NOT_FOUND', 'no checkpoint aaaa in /srv/state'));
    const err = await done.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CoordinatorError);
    expect((err as CoordinatorError).code).toBe('SHARD_FAILED');
    expect((err as CoordinatorError).message).toBe('aggregator shard s1 failed its part: MODEL_NOT_FOUND: no checkpoint aaaa in /srv/state');
    expect(links[1]!.sent.at(-1)).toEqual({ cancel: { round: 3, attempt: 1 } });
  });

  it('keeps the code of a failed check of the sum (SUM_OUT_OF_RANGE), so the attempt is handled as one', async () => {
    const { registry, links } = readyRegistry();
    const done = registry.aggregate(REQUEST, new AbortController().signal);
    registry.aggregated('s2', links[1]!, answer(false, [], 'SUM_OUT_OF_RANGE', 'coordinate 9000 of the unmasked sum is 4e9, beyond ±12'));
    await expect(done).rejects.toMatchObject({ code: 'SUM_OUT_OF_RANGE', message: 'aggregator shard s2 failed its part: SUM_OUT_OF_RANGE: coordinate 9000 of the unmasked sum is 4e9, beyond ±12' });
  });

  it('fails with SHARD_FAILED when a shard’s stream ends before it answers', async () => {
    const { registry, links } = readyRegistry();
    const done = registry.aggregate(REQUEST, new AbortController().signal);
    registry.detach('s2', links[1]!);
    await expect(done).rejects.toMatchObject({ code: 'SHARD_FAILED', message: 'aggregator shard s2 went away before it answered' });
    expect(registry.readyPartition()).toBeUndefined();
  });

  it('stops every shard when the attempt is aborted, rejecting with the abort’s reason', async () => {
    const { registry, links } = readyRegistry();
    const controller = new AbortController();
    const done = registry.aggregate(REQUEST, controller.signal);
    controller.abort(new Error('the attempt ended'));
    await expect(done).rejects.toThrow('the attempt ended');
    expect(links.map((l) => l.sent.at(-1))).toEqual([{ cancel: { round: 3, attempt: 1 } }, { cancel: { round: 3, attempt: 1 } }]);
  });
});

describe('ShardRegistry: admissions and drops', () => {
  const admitDownload = (site: string, sha256: string) => ({ siteId: site, sha256, start: '0', end: '10', maxChunkBytes: 1024, idleMs: 1000 });

  it('tells a revoked site’s drop to every attached shard and, before any admission, to one that attaches later — until the site is approved again', () => {
    const { registry, links } = readyRegistry();
    registry.admitDownload('s1', admitDownload('bsc', 'b'.repeat(64)));
    registry.admitDownload('s1', admitDownload('hlrs', 'b'.repeat(64)));
    registry.drop('bsc', 'revoked by admin alice');
    expect(links.map((l) => l.sent.at(-1))).toEqual([{ drop: { siteId: 'bsc', reason: 'revoked by admin alice' } }, { drop: { siteId: 'bsc', reason: 'revoked by admin alice' } }]);
    // s1 comes back: the drop first, then the admissions it still holds (hlrs's only).
    const again = link('p1b');
    registry.attach('s1', again);
    const kinds = again.sent.map((i) => Object.keys(i)[0]);
    expect(kinds.slice(kinds.indexOf('drop'))).toEqual(['drop', 'admitDownload']);
    expect(again.sent.filter((i) => 'admitDownload' in i)).toEqual([{ admitDownload: admitDownload('hlrs', 'b'.repeat(64)) }]);
    // Approved again: a shard attaching from now on is not told to drop it.
    registry.undrop('bsc');
    const third = link('p1c');
    registry.attach('s1', third);
    expect(third.sent.some((i) => 'drop' in i)).toBe(false);
  });

  it('keeps the download admissions of the two newest models, and counts what the shard reports sent of the run’s model', () => {
    const { registry, links } = readyRegistry();
    for (const sha of ['1', '2', '3'].map((c) => c.repeat(64))) registry.admitDownload('s1', admitDownload('bsc', sha));
    registry.admitDownload('s1', admitDownload('bsc', PLAN.globalSha256));
    const again = link('p1b');
    registry.attach('s1', again);
    expect(again.sent.filter((i) => 'admitDownload' in i).map((i) => ('admitDownload' in i ? i.admitDownload.sha256 : ''))).toEqual(['3'.repeat(64), PLAN.globalSha256]);
    // A report on the old stream is not counted; on the current one it is.
    const report = { term: '0', siteId: 'bsc', sha256: PLAN.globalSha256, start: '0', end: '10', bytes: '10', complete: true };
    registry.sent('s1', links[0]!, report);
    expect(registry.list()[0]).toMatchObject({ downloadsAdmitted: 1, downloadsServed: 0, bytesSent: '0' });
    registry.sent('s1', again, report);
    expect(registry.list()[0]).toMatchObject({ downloadsAdmitted: 1, downloadsServed: 1, bytesSent: '10' });
  });
});
