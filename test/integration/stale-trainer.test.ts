/**
 * Overlapped rounds at the coordinator (issue 17), with raw site clients in place of persistent
 * trainers: an upload whose applied staleness exceeds `run.train.overlap.maxAppliedSteps` is
 * refused with STALE_TRAINER and its site dropped, with a warning naming the figures; one within
 * the bound commits, and its applied staleness and busy time show in `admin status`, `admin sites`,
 * `admin round` and the metrics. One round of an in-process coordinator: a few seconds.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCoordinatorConfig, startCoordinator, type AdminClient, type CoordinatorHandle } from '../../coordinator/index.js';
import { createTestFederation, freePort, waitForCommitted, type TestFederation } from '../helpers/federation.js';
import { testLogger, type TestLogger } from '../helpers/logger.js';
import { craftDelta, joinedRawSite, refusal, validUpload, type RawSiteClient, type TaskStream } from '../helpers/raw-site.js';

const LIMIT = 8;
/** The round's wall time is far below this span, so the busy fraction is busy_ms over the span. */
const SPAN_MS = 60_000;
const BUSY_MS = 45_000;

describe('overlapped rounds: applied staleness at the coordinator', () => {
  let fed: TestFederation;
  let coordinator: CoordinatorHandle;
  let admin: AdminClient;
  let log: TestLogger;
  let metricsPort: number;
  const raws: { client: RawSiteClient; tasks: TaskStream }[] = [];

  beforeAll(async () => {
    fed = await createTestFederation({
      sites: 2,
      run: {
        rounds: 1,
        minSites: 1,
        evaluate: false,
        secureAggregation: { enabled: false },
        weighting: 'tokens',
        // An overlapped run sets maxSiteWeight (a late sync carries more than its budget); headerFor declares 640 tokens.
        maxSiteWeight: 2 * 640,
        train: { budget: { tokens: 640 }, batchSize: 32, lr: 0.01, overlap: { mode: 'whole-model', maxAppliedSteps: LIMIT } },
      },
    });
    metricsPort = await freePort();
    await fed.patchCoordinatorConfig((cfg) => ({ ...cfg, metrics: { port: metricsPort } }));
    // The refusal's two warnings are this file's purpose; any other fails it.
    log = testLogger({ level: 'info', expect: [/^upload refused$/, /^site dropped from round$/] });
    coordinator = await startCoordinator({
      config: loadCoordinatorConfig(fed.files.coordinatorConfig),
      logger: log.logger,
      onFatal: (err) => {
        throw err;
      },
    });
    admin = fed.admin();
    await admin.waitForReady(Date.now() + 15_000);
    for (const site of fed.sites) raws.push(await joinedRawSite(fed, site));
  }, 30_000);
  afterAll(async () => {
    for (const r of raws) r.client.close();
    await coordinator?.stop();
    await fed?.cleanup();
  });

  it('refuses an applied staleness above maxAppliedSteps with STALE_TRAINER and commits the round with the site within it, whose figures admin and metrics show', async () => {
    const [stale, fresh] = raws;
    const task = await stale!.tasks.nextTrain(20_000);
    const refused = refusal(await stale!.client.upload(validUpload(task, craftDelta(task), { appliedStalenessSteps: LIMIT + 1 })));
    expect(refused).toMatchObject({ code: grpc.status.FAILED_PRECONDITION, fedhpcCode: 'STALE_TRAINER' });
    expect(refused.details).toContain(`${LIMIT + 1} inner steps`);
    expect(refused.details).toContain(`maxAppliedSteps ${LIMIT}`);
    expect(log.warnings()).toContainEqual(
      expect.objectContaining({ msg: 'upload refused', site: 'site-1', round: 1, phase: 'upload', appliedStaleness: LIMIT + 1, limit: LIMIT, err: expect.objectContaining({ code: 'STALE_TRAINER' }) }),
    );

    const freshTask = await fresh!.tasks.nextTrain(20_000);
    const now = Date.now();
    const accepted = await fresh!.client.upload(
      validUpload(freshTask, craftDelta(freshTask), { appliedStalenessSteps: 3, busyMs: BUSY_MS, trainStartedMs: now - SPAN_MS, trainFinishedMs: now }),
    );
    expect(accepted.ok).toBe(true);

    const rounds = await waitForCommitted(admin, 1, 30_000);
    expect(rounds.rounds[0]).toMatchObject({ outcome: 'committed', participants: ['site-2'], dropped: ['site-1'] });
    const detail = await admin.round(1);
    expect(detail.attempts[0]!.participants).toEqual([expect.objectContaining({ siteId: 'site-2', appliedStaleness: 3, busyMs: String(BUSY_MS) })]);
    expect(detail.attempts[0]!.participants[0]!.busyFraction).toBeCloseTo(BUSY_MS / SPAN_MS);

    const status = await admin.status();
    expect(status).toMatchObject({ maxAppliedStalenessSteps: 3, appliedStalenessLimit: LIMIT });
    expect(Number(status.lastRoundBytesUp)).toBe(Number(rounds.rounds[0]!.bytesUp));
    expect(Number(status.lastRoundBytesUp)).toBeGreaterThan(0);
    const sites = new Map((await admin.sites()).sites.map((s) => [s.siteId, s]));
    expect(sites.get('site-2')).toMatchObject({ lastRound: '1', lastAppliedStaleness: 3 });
    expect(sites.get('site-2')!.busyFraction).toBeCloseTo(BUSY_MS / SPAN_MS);
    expect(sites.get('site-1')).toMatchObject({ lastRound: '0', lastAppliedStaleness: 0 });

    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/^fedhpc_site_applied_staleness_steps\{site="site-2",federation="testfed"\} 3$/m);
    expect(metrics).toMatch(/^fedhpc_max_applied_staleness_steps\{federation="testfed"\} 3$/m);
  }, 60_000);
});
