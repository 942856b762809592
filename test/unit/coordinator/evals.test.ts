/**
 * The evaluation tracker (coordinator/shell/evals.ts): a report counts only from a site asked to
 * score that model of that run, within the samples asked for; the mean cannot overflow; the
 * journal holds finite figures and exact counts, and a restore leaves out records that do not.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EventBus } from '../../../coordinator/observe/events.js';
import { EvalTracker, weightedMeanLoss, type EvalAsk, type EvalReport } from '../../../coordinator/shell/evals.js';
import { recordsOf } from '../../../coordinator/state/records.js';
import { LocalStateStore } from '../../../coordinator/state/store.js';
import { ManualClock } from '../../helpers/clock.js';
import { testLogger, type ExpectedLog } from '../../helpers/logger.js';
import { waitUntil } from '../../helpers/wait.js';

const SHA0 = 'a'.repeat(64);
const SHA1 = 'b'.repeat(64);
const ASK: EvalAsk = { runId: 'run-1', modelRound: 0, modelSha256: SHA0, maxSamples: 10_000, timeoutMs: 60_000 };
const report = (over: Partial<EvalReport> = {}): EvalReport => ({ runId: 'run-1', modelRound: 0, modelSha256: SHA0, loss: 2, samples: 100, ...over });

let dir: string;
let store: LocalStateStore;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedhpc-evals-'));
  store = await LocalStateStore.open(dir, () => 1);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

function tracker(expected: readonly ExpectedLog[] = []): { evals: EvalTracker; clock: ManualClock } {
  const clock = new ManualClock();
  const evals = new EvalTracker({
    store,
    bus: new EventBus(() => clock.now()),
    clock,
    logger: testLogger({ expect: expected }).logger,
    onFatal: (err) => {
      throw err;
    },
  });
  return { evals, clock };
}

/** Waits until the journal holds `n` evaluations (appends run behind the report that finished one). */
async function journaled(n: number): Promise<void> {
  await waitUntil(`${n} evaluations journaled`, () => store.records().filter((r) => r.body.type === 'eval').length >= n);
}

/** The code of a refused report (fails the test when it was accepted). */
function refusedWith(r: ReturnType<EvalTracker['report']>): string {
  if (r.ok) throw new Error(`expected a refusal, the report was ${r.value}`);
  return r.code;
}

describe('EvalTracker.report', () => {
  it('refuses a site never asked, another run, another model hash and a model round nobody asked about (NOT_ASKED)', () => {
    const { evals } = tracker();
    evals.expect(ASK, ['site-1', 'site-2']);
    expect(refusedWith(evals.report('site-3', report()))).toBe('NOT_ASKED');
    expect(refusedWith(evals.report('site-1', report({ runId: 'run-2' })))).toBe('NOT_ASKED');
    expect(refusedWith(evals.report('site-1', report({ modelSha256: SHA1 })))).toBe('NOT_ASKED');
    expect(refusedWith(evals.report('site-1', report({ modelRound: 1, modelSha256: SHA1 })))).toBe('NOT_ASKED');
    expect(evals.report('site-1', report())).toEqual({ ok: true, value: 'recorded' });
  });

  it('refuses more samples than the evaluation asked for (EVAL_INVALID), 2^53 - 1 included', async () => {
    const { evals } = tracker();
    evals.expect(ASK, ['site-1']);
    for (const samples of [10_001, Number.MAX_SAFE_INTEGER]) {
      const r = evals.report('site-1', report({ loss: 1e300, samples }));
      expect(refusedWith(r)).toBe('EVAL_INVALID');
      expect(r.ok ? [] : r.issues).toEqual([`${samples} samples exceed the 10000 the evaluation asked for (run.evalMaxSamples)`]);
    }
    expect(evals.hasReport(0, 'site-1')).toBe(false);
    expect(evals.report('site-1', report({ samples: 10_000 }))).toEqual({ ok: true, value: 'recorded' });
    await journaled(1);
  });

  it('accepts the same report again (a retried call) and refuses a second, different score (NOT_ASKED)', () => {
    const { evals } = tracker();
    evals.expect(ASK, ['site-1', 'site-2']);
    expect(evals.report('site-1', report())).toEqual({ ok: true, value: 'recorded' });
    expect(evals.report('site-1', report())).toEqual({ ok: true, value: 'repeated' });
    expect(refusedWith(evals.report('site-1', report({ loss: 0.1 })))).toBe('NOT_ASKED');
  });

  it('refuses a report after its evaluation closed at the deadline (ROUND_CLOSED); the same score again is still accepted', async () => {
    const { evals, clock } = tracker();
    evals.expect(ASK, ['site-1', 'site-2']);
    expect(evals.report('site-1', report())).toEqual({ ok: true, value: 'recorded' });
    clock.advance(ASK.timeoutMs);
    expect(evals.result(0)).toMatchObject({ sites: [{ site: 'site-1', loss: 2, samples: 100 }] });
    expect(refusedWith(evals.report('site-2', report()))).toBe('ROUND_CLOSED');
    expect(evals.report('site-1', report())).toEqual({ ok: true, value: 'repeated' });
    await journaled(1);
  });

  it('journals the sample-weighted mean with finite figures and exact counts once every asked site reported', async () => {
    const { evals } = tracker();
    evals.expect(ASK, ['site-1', 'site-2']);
    evals.report('site-2', report({ loss: 3, samples: 3000 }));
    evals.report('site-1', report({ loss: 2.5, samples: 1000 }));
    expect(evals.result(0)).toEqual({
      type: 'eval',
      runId: 'run-1',
      modelRound: 0,
      modelSha256: SHA0,
      sites: [{ site: 'site-1', loss: 2.5, samples: 1000 }, { site: 'site-2', loss: 3, samples: 3000 }],
      loss: 2.875,
      samples: 4000,
    });
    await journaled(1);
    const line = (await readFile(join(dir, 'journal.jsonl'), 'utf8')).split('\n').find((l) => l.includes('"eval"'));
    expect(line).toBeDefined();
    expect(line).not.toContain('null');
  });
});

describe('weightedMeanLoss', () => {
  it('stays finite for the largest losses and sample counts (the plain Σ loss·samples overflows)', () => {
    expect(1e300 * Number.MAX_SAFE_INTEGER).toBe(Infinity);
    expect(weightedMeanLoss([{ loss: 1e300, samples: Number.MAX_SAFE_INTEGER }])).toBe(1e300);
    const max = Number.MAX_VALUE;
    expect(weightedMeanLoss([{ loss: max, samples: 2 ** 52 }, { loss: max, samples: 2 ** 52 - 4 }, { loss: max, samples: 3 }])).toBe(max);
    expect(weightedMeanLoss([{ loss: max, samples: 1 }, { loss: 0, samples: Number.MAX_SAFE_INTEGER - 1 }])).toBeLessThan(max);
  });

  it('lies between the smallest and the largest loss for any finite inputs', () => {
    let seed = 7;
    const next = (): number => ((seed = (seed * 48271) % 0x7fffffff) / 0x7fffffff);
    for (let i = 0; i < 500; i++) {
      const reports = Array.from({ length: 1 + Math.floor(next() * 6) }, () => ({ loss: next() * 10 ** Math.floor(next() * 308), samples: 1 + Math.floor(next() * 2 ** 40) }));
      const m = weightedMeanLoss(reports);
      expect(m).toBeGreaterThanOrEqual(Math.min(...reports.map((r) => r.loss)));
      expect(m).toBeLessThanOrEqual(Math.max(...reports.map((r) => r.loss)));
    }
  });
});

describe('EvalTracker.restore', () => {
  it('restores journaled evaluations and leaves out one an older version wrote with a null loss', async () => {
    await store.append({ type: 'eval', runId: 'run-1', modelRound: 0, modelSha256: SHA0, sites: [{ site: 'site-1', loss: 2, samples: 10 }], loss: 2, samples: 10 });
    await store.append({ type: 'eval', runId: 'run-1', modelRound: 1, modelSha256: SHA1, sites: [{ site: 'site-1', loss: null, samples: 10 }], loss: null, samples: 10 });
    const { evals } = tracker([/figures that are no score/]);
    evals.restore('run-1', recordsOf(store.records().map((r) => r.body), 'run-1', 'eval'));
    expect(evals.result(0)).toMatchObject({ loss: 2, samples: 10 });
    expect(evals.result(1)).toBeUndefined();
    // Restored as finished: a report on it is closed, and the one it holds is accepted again.
    expect(refusedWith(evals.report('site-2', report()))).toBe('ROUND_CLOSED');
    expect(evals.report('site-1', report({ loss: 2, samples: 10 }))).toEqual({ ok: true, value: 'repeated' });
  });
});
