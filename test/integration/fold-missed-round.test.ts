/**
 * A site that misses a round's window keeps its work and folds it into its next upload (issue 16;
 * docs/protocol.md, "Bases, staleness and folded work"). A real coordinator in this process and
 * three real site agents, each with a stand-in trainer of known deltas (test/helpers/
 * known-delta-runner.ts); site-3's round-2 shard takes longer than the training deadline, so the
 * coordinator drops it and cancels; the agent lets the shard finish, keeps it, and folds it into its
 * round-3 upload at staleness 1. The journal lists the folded part and its discounted count, and the
 * committed model is its parent plus the weighted mean the test computes from each site's deltas
 * and W — exactly in a plain round (where λ < 1 scales the part to fit maxSiteWeight), within the
 * quantization bound in a secure one.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { CoordinatorOptions } from '../../coordinator/index.js';
import type { RoundCommittedRecord } from '../../coordinator/state/records.js';
import { committedRecords } from '../helpers/faults.js';
import { expectPlainMean, foldedDelta, keptFiles, modelTensors, type Delta } from '../helpers/fold-checks.js';
import { createTestFederation, startCoordinatorInProcess, waitForCommitted, type TestFederation } from '../helpers/federation.js';
import { FoldTestRun, KnownDeltaRunner, knownSamples, startKnownDeltaAgent } from '../helpers/known-delta-runner.js';
import { expectLogs } from '../helpers/logger.js';
import { expectCommittedMean, secureRun } from '../helpers/secure-federation.js';

const SLOW = 'site-3';
/** site-3's round-2 shard outlasts the training deadline by 1.5 s. */
const TRAINING_S = 5;
const SLOW_MS = 6_500;

const live = new FoldTestRun();
afterEach(() => live.stop());

/** The coordinator and three agents; site-3 slow in round 2. */
async function federation(run: Partial<CoordinatorOptions['run']>): Promise<TestFederation> {
  const f = await createTestFederation({ sites: 3, run: { minSites: 2, strategy: { name: 'fedavg', lr: 1 }, evaluate: false, ...run } });
  live.fed = f;
  live.coordinator = await startCoordinatorInProcess(f);
  for (const site of f.sites) {
    const runner = new KnownDeltaRunner({ site, samples: knownSamples(site), delayMs: (r) => (site === SLOW && r === 2 ? SLOW_MS : 0) });
    live.agents.push(startKnownDeltaAgent(f, runner, site));
  }
  return f;
}

/** site-3 is dropped from round 2 at its training deadline: the coordinator's and the agent's lines of it. */
function expectSlowSiteLines(): void {
  const slow = (l: { [k: string]: unknown }): boolean => l['site'] === SLOW && l['round'] === 2;
  expectLogs(
    (l) => l.msg === 'round cancelled by the coordinator' && slow(l),
    (l) => l.msg === 'the trained delta missed its round: keeping it to fold into the next upload' && slow(l),
  );
}

/** What round 3 must be: site-3's one upload folds its round-2 shard at staleness 1; the others are fresh. */
function roundThree(commits: readonly RoundCommittedRecord[], runners: ReadonlyMap<string, KnownDeltaRunner>): { round3: RoundCommittedRecord; deltas: Map<string, Delta> } {
  const [r1, r2, r3] = commits;
  expect(r2!.participants.map((p) => p.site).sort()).toEqual(['site-1', 'site-2']);
  expect(r3!.participants.map((p) => p.site).sort()).toEqual(['site-1', 'site-2', 'site-3']);
  const slow = r3!.participants.find((p) => p.site === SLOW)!;
  const runner = runners.get(SLOW)!;
  const missed = runner.shardFrom(r1!.modelSha256);
  expect(missed.round).toBe(2);
  expect(slow.baseModelSha256).toBe(r2!.modelSha256);
  expect(slow.folded).toHaveLength(1);
  const part = slow.folded![0]!;
  expect(part).toMatchObject({ baseModelSha256: r1!.modelSha256, staleness: 1, samples: missed.samples, tokens: missed.samples * 8, steps: 4 });
  const fresh = runner.shardFrom(r2!.modelSha256);
  const deltas = new Map<string, Delta>();
  for (const p of r3!.participants) {
    const own = runners.get(p.site)!.shardFrom(r2!.modelSha256);
    deltas.set(p.site, p.site === SLOW ? foldedDelta(fresh.delta, fresh.samples, [{ delta: missed.delta, count: part.count }], slow.weight) : own.delta);
  }
  return { round3: r3!, deltas };
}

describe('a site that misses a round\'s upload window', () => {
  it('folds its kept work into the next round (plain, λ < 1): staleness 1, the discounted count, parent + the weighted mean with W; the kept files go once the round is counted', async () => {
    expectSlowSiteLines();
    const maxSiteWeight = 800;
    const f = await federation({ rounds: 4, maxSiteWeight, secureAggregation: { enabled: false }, deadlines: { openS: 30, trainingS: TRAINING_S, uploadS: 30, aggregateS: 30, commitS: 30, evalS: 15 } });
    await waitForCommitted(f.admin(), 4, 50_000);
    const commits = await committedRecords(f);
    const { round3, deltas } = roundThree(commits, new Map(live.agents.map((a) => [a.site, a.runner])));
    const slow = round3.participants.find((p) => p.site === SLOW)!;
    // F = 630 fills most of 800: the part's ⌊620 / 2⌋ = 310 is scaled down to the 170 left.
    expect(slow.weight).toBe(maxSiteWeight);
    expect(slow.folded![0]!.count).toBeCloseTo(maxSiteWeight - knownSamples(SLOW)(3), 9);
    await expectPlainMean(f, round3, deltas);
    // Round 4's task told site-3 round 3 committed; its receipt was accepted: the kept part is done.
    const slowAgent = live.agents.find((a) => a.site === SLOW)!;
    await expect.poll(() => keptFiles(slowAgent.config.workDir), { timeout: 10_000 }).toEqual([]);
    expect(slowAgent.log.lines.some((l) => l.msg === 'kept work done: counted in a committed round')).toBe(true);
  }, 60_000);

  it('folds its kept work into the next secure round: the weight word carries W, the sum within the quantization bound', async () => {
    expectSlowSiteLines();
    // The coordinator drops site-3 (its shares are in) and unmasks without it.
    expectLogs((l) => l.msg === 'site dropped from round' && l['site'] === SLOW);
    const f = await federation(
      secureRun({ rounds: 3, minSites: 2, deadlines: { openS: 30, trainingS: TRAINING_S, uploadS: 30, aggregateS: 30, commitS: 30, evalS: 15, keysS: 20, sharesS: 20, unmaskS: 20 } }),
    );
    const rounds = await waitForCommitted(f.admin(), 3, 50_000);
    const commits = await committedRecords(f);
    const { round3, deltas } = roundThree(commits, new Map(live.agents.map((a) => [a.site, a.runner])));
    const slow = round3.participants.find((p) => p.site === SLOW)!;
    expect(slow.weight).toBe(knownSamples(SLOW)(3) + Math.floor(knownSamples(SLOW)(2) / 2));
    const info = rounds.rounds.find((r) => r.outcome === 'committed' && Number(r.round) === 3)!;
    const order = [...(await modelTensors(f, round3.parentSha256)).keys()];
    const flat = (d: Delta): Float32Array => Float32Array.from(order.flatMap((name) => Array.from(d.get(name)!)));
    await expectCommittedMean(f, info, new Map([...deltas].map(([s, d]) => [s, flat(d)])), new Map(round3.participants.map((p) => [p.site, p.weight])));
  }, 60_000);
});
