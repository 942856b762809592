/**
 * Federated evaluation against dishonest reports, over mTLS with raw clients holding real site
 * certificates: a score of 1e300 over 2^53 − 1 samples, a negative or NaN loss, a report from a site
 * never asked and one about a model the site was not asked to score are each refused with their
 * code; the honest scores make the round's figures, which `admin rounds` shows the same before and
 * after the coordinator restarts, and the journal holds them as numbers (no `null`).
 */
import * as grpc from '@grpc/grpc-js';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AdminClient, CoordinatorHandle } from '../../coordinator/index.js';
import type { EvalReport, EvalTask__Output, TrainTask__Output } from '../../proto/index.js';
import { CLI, createTestFederation, startCoordinatorInProcess, waitFor, type TestFederation } from '../helpers/federation.js';
import { RawSiteClient, craftDelta, joinedRawSite, refusal, siteCertFiles, validUpload, type CallOutcome, type TaskStream } from '../helpers/raw-site.js';

const exec = promisify(execFile);
const EVAL_MAX_SAMPLES = 100_000;
/** The coordinator warns of each report its tracker refuses; these tests provoke them. */
const EXPECTED = [/evaluation report refused/];

function reportEval(c: RawSiteClient, r: EvalReport): Promise<CallOutcome<unknown>> {
  return new Promise((resolve) => {
    c.client.ReportEval(r, { deadline: Date.now() + 10_000 }, (err, res) => resolve(err ? { ok: false, error: err } : { ok: true, value: res }));
  });
}

describe('federated evaluation: reports from those asked, with the figures of a score', () => {
  let fed: TestFederation;
  let coordinator: CoordinatorHandle;
  let admin: AdminClient;
  const raw = new Map<string, { client: RawSiteClient; tasks: TaskStream }>();
  let stranger: RawSiteClient;
  let task: TrainTask__Output;

  beforeAll(async () => {
    // site-3 joins but never opens its task stream: it is never invited, so never asked to evaluate.
    fed = await createTestFederation({
      sites: 3,
      run: {
        rounds: 1,
        minSites: 2,
        expectedSites: ['site-1', 'site-2'],
        evaluate: true,
        evalMaxSamples: EVAL_MAX_SAMPLES,
        secureAggregation: { enabled: false },
        deadlines: { openS: 30, trainingS: 60, uploadS: 60, aggregateS: 30, commitS: 30, evalS: 60 },
      },
    });
    coordinator = await startCoordinatorInProcess(fed, { expectLogs: EXPECTED });
    admin = fed.admin();
    await admin.waitForReady(Date.now() + 15_000);
    for (const s of ['site-1', 'site-2']) raw.set(s, await joinedRawSite(fed, s));
    stranger = new RawSiteClient({ address: fed.address, files: siteCertFiles(fed, 'site-3') });
    const joined = await stranger.join({ siteId: 'site-3' });
    expect(joined.ok).toBe(true);
    task = await raw.get('site-1')!.tasks.nextTrain(30_000);
  });
  afterAll(async () => {
    stranger?.close();
    for (const r of raw.values()) r.client.close();
    await coordinator?.stop();
    await fed?.cleanup();
  });

  const site = (s: string): RawSiteClient => raw.get(s)!.client;
  const honest = (): EvalReport => ({ runId: task.runId, modelRound: task.modelRound, modelSha256: task.globalModel!.sha256 });

  it('asks the invited sites to score the initial model with the round 1 task', () => {
    expect(task).toMatchObject({ round: '1', modelRound: '0', evaluate: true });
  });

  it('refuses 1e300 over 2^53 − 1 samples, a negative, NaN or infinite loss and zero samples (EVAL_INVALID)', async () => {
    const cases: [string, EvalReport, RegExp][] = [
      ['1e300 over 2^53 − 1', { ...honest(), loss: 1e300, samples: '9007199254740991' }, /9007199254740991 samples exceed the 100000 the evaluation asked for \(run\.evalMaxSamples\)/],
      ['a negative loss', { ...honest(), loss: -5, samples: 100 }, /loss must be a finite number of at least 0, got -5/],
      ['NaN', { ...honest(), loss: Number.NaN, samples: 100 }, /got NaN/],
      ['Infinity', { ...honest(), loss: Infinity, samples: 100 }, /got Infinity/],
      ['zero samples', { ...honest(), loss: 2, samples: 0 }, /samples must be a positive integer/],
    ];
    for (const [what, r, details] of cases) {
      const e = refusal(await reportEval(site('site-1'), r));
      expect([what, e.code, e.fedhpcCode]).toEqual([what, grpc.status.INVALID_ARGUMENT, 'EVAL_INVALID']);
      expect(e.details).toMatch(details);
    }
  });

  it('refuses a report from a site never asked, and one about a model the site was not asked to score (NOT_ASKED)', async () => {
    const fromStranger = refusal(await reportEval(stranger, { ...honest(), loss: 2, samples: 100 }));
    expect([fromStranger.code, fromStranger.fedhpcCode]).toEqual([grpc.status.FAILED_PRECONDITION, 'NOT_ASKED']);
    expect(fromStranger.details).toBe('NOT_ASKED: site site-3 was not asked to evaluate model round 0');
    const otherModel = refusal(await reportEval(site('site-1'), { ...honest(), modelSha256: 'f'.repeat(64), loss: 2, samples: 100 }));
    expect(otherModel.fedhpcCode).toBe('NOT_ASKED');
    const futureModel = refusal(await reportEval(site('site-1'), { ...honest(), modelRound: 1, loss: 2, samples: 100 }));
    expect(futureModel.fedhpcCode).toBe('NOT_ASKED');
    const otherRun = refusal(await reportEval(site('site-1'), { ...honest(), runId: 'another-run', loss: 2, samples: 100 }));
    expect(otherRun.fedhpcCode).toBe('NOT_ASKED');
  });

  it('counts the honest scores, commits the round, and shows the same figures before and after a restart', async () => {
    expect(await reportEval(site('site-1'), { ...honest(), loss: 2.5, samples: 1000 })).toMatchObject({ ok: true });
    // The same score again is a retried call; a different one is not asked for.
    expect(await reportEval(site('site-1'), { ...honest(), loss: 2.5, samples: 1000 })).toMatchObject({ ok: true });
    expect(refusal(await reportEval(site('site-1'), { ...honest(), loss: 0.1, samples: 1000 })).fedhpcCode).toBe('NOT_ASKED');
    expect(await reportEval(site('site-2'), { ...honest(), loss: 3, samples: 3000 })).toMatchObject({ ok: true });

    const task2 = await raw.get('site-2')!.tasks.nextTrain(30_000);
    for (const [s, t] of [['site-1', task], ['site-2', task2]] as const) {
      expect(await site(s).upload(validUpload(t, craftDelta(t)))).toMatchObject({ ok: true, value: { accepted: true } });
    }
    // The run ends after round 1 and asks for the final model's score with an eval-only task.
    for (const s of ['site-1', 'site-2']) {
      const evalTask = await waitFor(`the final eval task at ${s}`, () => raw.get(s)!.tasks.tasks.map((t) => t.eval).find((e): e is EvalTask__Output => !!e));
      expect(evalTask.modelRound).toBe('1');
      const r = { runId: evalTask.runId, modelRound: evalTask.modelRound, modelSha256: evalTask.model!.sha256 };
      expect(await reportEval(site(s), { ...r, loss: s === 'site-1' ? 1.5 : 2, samples: 1000 })).toMatchObject({ ok: true });
    }

    const before = await waitFor('both evaluations in admin rounds', async () => {
      const r = await admin.rounds();
      return r.hasInitialEval && r.rounds.some((x) => x.outcome === 'committed' && x.hasEval) ? r : undefined;
    });
    expect(before.initialEvalLoss).toBe(2.875);
    expect(before.initialEvals).toEqual([{ siteId: 'site-1', loss: 2.5, samples: '1000' }, { siteId: 'site-2', loss: 3, samples: '3000' }]);
    expect(before.rounds.find((x) => x.outcome === 'committed')).toMatchObject({ round: '1', evalLoss: 1.75 });
    const adminRounds = async (): Promise<string> => (await exec(process.execPath, [CLI, 'admin', 'rounds', '--config', fed.files.adminConfigs.get('admin')!], { timeout: 30_000 })).stdout;
    const tableBefore = await adminRounds();
    expect(tableBefore).toMatch(/\n1\.0\s+committed\s+site-1,site-2\s+-\s+1\.7500\s/);

    // The journal holds the figures as numbers, the counts as exact integers.
    const journal = (await readFile(join(fed.member('coordinator'), 'state', 'journal.jsonl'), 'utf8')).trim().split('\n');
    const evals = journal.filter((l) => l.includes('"type":"eval"'));
    expect(evals).toHaveLength(2);
    for (const line of evals) {
      expect(line).not.toContain('null');
      const body = (JSON.parse(line) as { body: { loss: number; samples: number; sites: { loss: number; samples: number }[] } }).body;
      for (const x of [body, ...body.sites]) expect(Number.isFinite(x.loss) && Number.isSafeInteger(x.samples)).toBe(true);
    }

    await coordinator.stop();
    coordinator = await startCoordinatorInProcess(fed, { expectLogs: EXPECTED });
    await admin.waitForReady(Date.now() + 15_000);
    expect(await admin.rounds()).toEqual(before);
    expect(await adminRounds()).toBe(tableBefore);
  }, 90_000);
});
