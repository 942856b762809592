/**
 * The aggregate step as the round driver runs it: the effect runner (round-effects.ts) starting and
 * aborting aggregations through round-commit.ts, on a real state store and the real kernel worker
 * pool. The driver's scheduler is left out: the test feeds the effects it would emit.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { expectLogs, testLogger, type LogLine } from '../../helpers/logger.js';
import { waitUntil } from '../../helpers/wait.js';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createOptimizer, createSafetensorsWriter, memorySink } from '../../../aggregation/index.js';
import { systemClock } from '../../../coordinator/core/clock.js';
import { coordinatorConfigSchema, runSchema, type RunningConfig } from '../../../coordinator/config.js';
import { CoordinatorError } from '../../../coordinator/core/errors.js';
import { EvalTracker } from '../../../coordinator/shell/evals.js';
import { EventBus } from '../../../coordinator/observe/events.js';
import { KernelPool, type PoolJob } from '../../../coordinator/aggregate/kernel-pool.js';
import { importInitialModel } from '../../../coordinator/state/model-import.js';
import { SiteRegistry } from '../../../coordinator/sites/registry.js';
import type { SchedulerEvent } from '../../../coordinator/round/types.js';
import { RoundCommitter, describeModel } from '../../../coordinator/shell/commit.js';
import type { AttemptContext, RoundContext, RunContext } from '../../../coordinator/shell/context.js';
import { EffectRunner } from '../../../coordinator/shell/effects.js';
import { RunControlState } from '../../../coordinator/shell/run-control.js';
import type { UploadIntent } from '../../../coordinator/upload/header.js';
import { RunBases } from '../../../coordinator/upload/bases.js';
import { LocalStateStore } from '../../../coordinator/state/store.js';
import { uploadIntent } from '../../helpers/upload-intent.js';

/** Values of the model's one tensor: four slices of 262144, so an aggregation is four pool jobs. */
const ELEMENTS = 1 << 20;
const SLICE = 1 << 18;

let dir: string;
let store: LocalStateStore;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedhpc-round-commit-'));
  store = await LocalStateStore.open(join(dir, 'state'), () => 0);
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

function values(n: number, seed: number): Float32Array {
  let x = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return Math.fround((x / 2 ** 32) * 4 - 2);
  });
}

async function importGlobal(): Promise<string> {
  const sink = memorySink();
  const w = await createSafetensorsWriter(sink, [{ name: 'w', dtype: 'F32', shape: [1024, 1024] }], { format: 'pt' });
  await w.writeF32('w', values(ELEMENTS, 1));
  await w.finish();
  const path = join(dir, 'initial.safetensors');
  await writeFile(path, sink.bytes());
  return (await importInitialModel(store, path, SLICE)).sha256;
}

/** A plain f32 spool (outside the state store's spool folders, which an abort prunes). */
async function writeSpool(name: string, seed: number): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, values(ELEMENTS, seed).map((v) => v * 1e-3));
  return path;
}

function intent(round: number, attempt: number, weight: number): UploadIntent {
  return uploadIntent(ELEMENTS, { round, attempt, weight, samples: weight, tokens: weight, trainLoss: 1, dataManifestSha256: '0'.repeat(64), segments: [], baseModelSha256: '0'.repeat(64) });
}

/** The driver as the effect runner sees it, with the scheduler's feed recorded instead of stepped. */
async function harness(globalSha256: string): Promise<{ ctx: RoundContext; events: SchedulerEvent[]; logs: readonly LogLine[]; fatal: unknown[]; paused: string[] }> {
  const events: SchedulerEvent[] = [];
  const fatal: unknown[] = [];
  const paused: string[] = [];
  // The aborted attempt is announced ('round attempt aborted'); any other warning fails the test.
  const { logger, lines: logs } = testLogger({ level: 'info', expect: [/^round attempt aborted$/] });
  const config: RunningConfig = {
    ...coordinatorConfigSchema.parse({
      federation: 'fed-1',
      listen: '127.0.0.1:7443',
      tls: { ca: 'ca.pem', cert: 'c.pem', key: 'c.key' },
      stateDir: join(dir, 'state'),
      model: { initial: 'initial.safetensors' },
      limits: { sliceElements: SLICE },
    }),
    run: runSchema.parse({ id: 'run-1', rounds: 3, minSites: 1, maxSiteWeight: 1000, strategy: { name: 'fedavg', lr: 1 } }),
  };
  const model = await describeModel(store, globalSha256);
  const run: RunContext = {
    plan: {
      runId: 'run-1',
      rounds: 3,
      minSites: 1,
      expectedSites: [],
      deadlines: { open: 60_000, training: 60_000, upload: 60_000, aggregate: 60_000, commit: 60_000 },
      maxAttempts: 5,
    },
    optimizer: createOptimizer(config.run.strategy),
    globalSha256,
    globalBytes: model.bytes,
    modelRound: 0,
    stateSha256: undefined,
    serverSteps: 0,
    tensors: model.tensors,
    bases: new RunBases(globalSha256),
    shards: { partition: undefined, problem: '' },
  };
  const bus = new EventBus();
  const o = {
    config,
    store,
    registry: new SiteRegistry(Date.now),
    bus,
    logger,
    clock: systemClock,
    onFatal: (err: unknown) => void fatal.push(err),
    revokedSites: [],
  };
  const ctx: RoundContext = {
    o,
    log: logger,
    control: new RunControlState(),
    evals: new EvalTracker({ store, bus, clock: systemClock, logger, onFatal: o.onFatal }),
    run: () => run,
    config: () => config,
    secure: () => undefined,
    scheduler: () => ({ connected: [], excused: [], run: { phase: 'idle' } }),
    dispatch: (event) => void events.push(event),
    advance: (event) => void events.push(event),
    pause: (reason) => {
      paused.push(reason);
      return Promise.resolve();
    },
  };
  return { ctx, events, logs, fatal, paused };
}


describe('aggregation of an aborted round attempt', () => {
  it('stops at once, leaves no checkpoint and frees the kernel pool for the next attempt', { timeout: 60_000 }, async () => {
    const globalSha256 = await importGlobal();
    const { ctx, events, logs, fatal } = await harness(globalSha256);
    const spoolA = await writeSpool('a.delta', 2);
    const spoolB = await writeSpool('b.delta', 3);
    const runner = new EffectRunner(ctx);

    // Every pool job, with the number of spools it adds and how it ended.
    const jobs: { sources: number; outcome: Promise<unknown> }[] = [];
    let onFirstJob = (): void => undefined;
    const realRun = KernelPool.prototype.run;
    vi.spyOn(KernelPool.prototype, 'run').mockImplementation(function (this: KernelPool, job: PoolJob, signal?: AbortSignal) {
      const p = realRun.call(this, job, signal);
      jobs.push({ sources: job.sources.length, outcome: p.then(() => 'done', (err: unknown) => err) });
      if (jobs.length === 1) onFirstJob();
      return p;
    });

    // Attempt 0 sums 40 spools (slow pool jobs); attempt 1 sums one other spool (another model).
    const sitesA = Array.from({ length: 40 }, (_, i) => `site-${i}`);
    const open = (attempt: number, sites: readonly string[], path: string): void => {
      runner.enqueue({ type: 'recordRoundOpened', round: 1, attempt });
      runner.queueTask(() => {
        for (const site of sites) runner.attempt!.uploads.set(site, { intent: intent(1, attempt, 1), spool: { path, bytes: ELEMENTS * 4, sha256: '0'.repeat(64) } });
        return Promise.resolve();
      });
      runner.enqueue({ type: 'startAggregation', round: 1, attempt, participants: sites.map((site) => ({ site, weight: 1 })), dropped: [] });
    };
    // The aggregate deadline of attempt 0 passes while its first pool job runs: the scheduler
    // aborts the attempt and opens the next one at once.
    onFirstJob = () => {
      runner.enqueue({ type: 'recordRoundAborted', round: 1, attempt: 0, reason: 'aggregation deadline passed' });
      open(1, ['site-b'], spoolB);
    };
    open(0, sitesA, spoolA);

    const settled = (attempt: number): boolean =>
      events.some((e) => 'attempt' in e && e.attempt === attempt) || logs.some((l) => l['attempt'] === attempt && l['msg'] === 'aggregation stopped');
    await waitUntil('both aggregations to end', () => settled(0) && settled(1), 30_000);
    await runner.idle();
    runner.close();

    // Attempt 0 reported nothing to the scheduler, which had left it; attempt 1 produced its model.
    expect(events.map((e) => [e.type, 'attempt' in e ? e.attempt : -1])).toEqual([['aggregated', 1]]);
    const next = events[0] as Extract<SchedulerEvent, { type: 'aggregated' }>;
    expect(logs.find((l) => l['attempt'] === 0 && l['msg'] === 'aggregation stopped')?.['reason']).toContain('aggregation deadline passed');

    // Attempt 0's pool job in flight rejected with the abort reason, and it submitted no other:
    // every later job was attempt 1's, which never waited behind the aborted sum.
    const outcomes = await Promise.all(jobs.map(async (j) => ({ sources: j.sources, outcome: await j.outcome })));
    expect(outcomes.filter((j) => j.sources === sitesA.length)).toHaveLength(1);
    const aborted = outcomes[0]!.outcome;
    expect(aborted).toBeInstanceOf(CoordinatorError);
    expect(aborted).toMatchObject({ code: 'ROUND_CLOSED', context: { round: 1, attempt: 0 } });
    expect((aborted as Error).message).toContain('aggregation deadline passed');
    expect(outcomes.slice(1)).toEqual(Array.from({ length: ELEMENTS / SLICE }, () => ({ sources: 1, outcome: 'done' })));

    // No checkpoint of attempt 0, finished or partial: only the initial model and attempt 1's.
    expect((await readdir(dirname(store.modelPath(globalSha256)))).sort()).toEqual([globalSha256, next.modelSha256].map((sha) => `${sha}.safetensors`).sort());
    expect(await readdir(join(dir, 'state', 'tmp'))).toEqual([]);
    expect(fatal).toEqual([]);
  });
});

describe('aggregation refusals', () => {
  /** Attempt 0 of round 1 with a verified upload from each of `sites`. */
  async function attemptWith(sites: readonly string[]): Promise<AttemptContext> {
    const path = await writeSpool('a.delta', 2);
    const uploads: AttemptContext['uploads'] = new Map();
    for (const site of sites) uploads.set(site, { intent: intent(1, 0, 1), spool: { path, bytes: ELEMENTS * 4, sha256: '0'.repeat(64) } });
    return { round: 1, attempt: 0, startedMs: 0, bytesUp: 0, bytesDown: 0, bytesReused: 0, uploads };
  }

  /** The error the committer logged with 'aggregation failed', as pino serialised it. */
  const failure = (logs: readonly LogLine[]): unknown => logs.find((l) => l.msg === 'aggregation failed')?.['err'];

  it('fails the attempt with TOO_FEW_UPLOADS when revocation leaves fewer uploads than minSites', async () => {
    expectLogs(/^aggregation failed$/);
    const { ctx, events, logs } = await harness(await importGlobal());
    ctx.control.excluded.add('site-a');
    await new RoundCommitter(ctx).aggregate(await attemptWith(['site-a']), 1, 0, ['site-a']);
    expect(events).toEqual([{ type: 'aggregationFailed', round: 1, attempt: 0, reason: 'TOO_FEW_UPLOADS: only 0 of 1 required uploads remain after revocation' }]);
    expect(failure(logs)).toMatchObject({ type: 'CoordinatorError', code: 'TOO_FEW_UPLOADS', context: { round: 1, attempt: 0, uploads: 0, needed: 1 } });
  });

  it('fails a secure attempt with REVOKED_IN_SUM when a revoked site is in the masked sum', async () => {
    expectLogs(/^aggregation failed$/);
    const { ctx, events, logs } = await harness(await importGlobal());
    // Only whether the round is secure matters before the sum starts.
    const secure = { ...ctx, secure: () => ({}) as NonNullable<ReturnType<RoundContext['secure']>> };
    ctx.control.excluded.add('site-b');
    await new RoundCommitter(secure).aggregate(await attemptWith(['site-a', 'site-b']), 1, 0, ['site-a', 'site-b']);
    expect(events).toEqual([{ type: 'aggregationFailed', round: 1, attempt: 0, reason: 'REVOKED_IN_SUM: revoked site(s) site-b in the masked sum' }]);
    expect(failure(logs)).toMatchObject({ type: 'CoordinatorError', code: 'REVOKED_IN_SUM', context: { sites: 'site-b' } });
  });

  it('journals each failed check of a secure sum with every participant and its declared weight, and pauses the run at the second failure of the round', async () => {
    expectLogs(/^aggregation failed$/);
    const { ctx, events, paused, fatal } = await harness(await importGlobal());
    const path = await writeSpool('a.delta', 2);
    const attempt = (n: number): AttemptContext => ({
      round: 1,
      attempt: n,
      startedMs: 0,
      bytesUp: 0,
      bytesDown: 0,
      bytesReused: 0,
      uploads: new Map([
        ['site-a', { intent: intent(1, n, 640), spool: { path, bytes: ELEMENTS * 4, sha256: '0'.repeat(64) } }],
        ['site-b', { intent: intent(1, n, 320), spool: { path, bytes: ELEMENTS * 4, sha256: '0'.repeat(64) } }],
      ]),
    });
    // The unmasking's verdicts, as secureMean throws them (test/unit/secure/sum-checks.test.ts checks the checks).
    const verdicts = [
      new CoordinatorError('WEIGHT_SUM_MISMATCH', 'the unmasked sum of weights is 0.000001, the 2 declared weights add up to 0.96'),
      new CoordinatorError('SUM_OUT_OF_RANGE', 'coordinate 0 of the unmasked sum is 128, beyond ±0.96'),
    ];
    const secure = { ...ctx, secure: () => ({ mean: () => Promise.reject(verdicts.shift()!) }) as unknown as NonNullable<ReturnType<RoundContext['secure']>> };
    const committer = new RoundCommitter(secure);
    await committer.aggregate(attempt(0), 1, 0, ['site-a', 'site-b']);
    expect(paused).toEqual([]);
    await committer.aggregate(attempt(1), 1, 1, ['site-a', 'site-b']);

    // Each attempt aborts with its code first in the reason (the journal's round-aborted and `admin rounds` show it).
    expect(events).toEqual([
      { type: 'aggregationFailed', round: 1, attempt: 0, reason: 'WEIGHT_SUM_MISMATCH: the unmasked sum of weights is 0.000001, the 2 declared weights add up to 0.96' },
      { type: 'aggregationFailed', round: 1, attempt: 1, reason: 'SUM_OUT_OF_RANGE: coordinate 0 of the unmasked sum is 128, beyond ±0.96' },
    ]);
    const participants = [
      { site: 'site-a', weight: 640 },
      { site: 'site-b', weight: 320 },
    ];
    expect(store.records().map((r) => r.body).filter((b) => b.type === 'sum-check-failed')).toEqual([
      { type: 'sum-check-failed', runId: 'run-1', round: 1, attempt: 0, code: 'WEIGHT_SUM_MISMATCH', message: 'the unmasked sum of weights is 0.000001, the 2 declared weights add up to 0.96', participants },
      { type: 'sum-check-failed', runId: 'run-1', round: 1, attempt: 1, code: 'SUM_OUT_OF_RANGE', message: 'coordinate 0 of the unmasked sum is 128, beyond ±0.96', participants },
    ]);
    expect(paused).toEqual([
      'the secure sum of round 1 failed its checks in attempts 0 (WEIGHT_SUM_MISMATCH: site-a, site-b), 1 (SUM_OUT_OF_RANGE: site-a, site-b): one of those sites sends words its header does not match',
    ]);
    expect(fatal).toEqual([]);
  });

  it('journals nothing and pauses nothing for an aggregation that fails otherwise', async () => {
    expectLogs(/^aggregation failed$/);
    const { ctx, paused } = await harness(await importGlobal());
    const secure = { ...ctx, secure: () => ({ mean: () => Promise.reject(new CoordinatorError('INTERNAL', 'the revealed shares are inconsistent')) }) as unknown as NonNullable<ReturnType<RoundContext['secure']>> };
    for (const n of [0, 1]) await new RoundCommitter(secure).aggregate(await attemptWith(['site-a']), 1, n, ['site-a']);
    expect(store.records().some((r) => r.body.type === 'sum-check-failed')).toBe(false);
    expect(paused).toEqual([]);
  });
});
