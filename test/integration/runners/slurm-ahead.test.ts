/**
 * `runner.submitAhead` of the slurm runner against a real one-node Slurm cluster (started by
 * scripts/ci/start-slurm.sh) and the stand-in trainer: the next round's job is submitted when a
 * shard is done, runs, waits for its model (the READY marker), trains once the task came, and
 * reports its wait; a job whose task will not come is cancelled (the run ended, the agent stops, a
 * task for another round came) or gives up by itself (exit 69). Each test has its own work
 * directory: the runner looks for waiting jobs across it.
 *
 * Skipped with the reason in its title when `sinfo` does not answer, unless FEDHPC_REQUIRE
 * (comma-separated) contains `slurm`: then it fails.
 */
import { spawnSync } from 'node:child_process';
import { access, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'vitest';
import { RunnerConfigError } from '../../../site-agent/runners/round-dir.js';
import { readRecord } from '../../../site-agent/runners/slurm-ahead.js';
import { formatTimeLimit, parseTimeLimit } from '../../../site-agent/runners/slurm-cli.js';
import { SlurmRunner, slurmRunnerSchema, type SlurmRunnerOptions } from '../../../site-agent/runners/slurm.js';
import { testLogger } from '../../helpers/logger.js';
import { required, slurmUnavailable } from '../../helpers/components.js';
import { waitFor, waitUntil } from '../../helpers/wait.js';
import { fakeSlurmOptions, makeWorkspace, trainRequest, type Workspace } from './helpers.js';

const REQUIRED = required('slurm');
/** Starts the cluster (idempotent); why Slurm is unusable, or undefined. */
const unavailable = slurmUnavailable();

if (unavailable !== undefined && REQUIRED) {
  describe('slurm runner, submitAhead', () => {
    it('needs a Slurm cluster (FEDHPC_REQUIRE contains slurm)', () => {
      throw new Error(`Slurm is required but unavailable: ${unavailable}`);
    });
  });
}

const options = (extra: Partial<SlurmRunnerOptions> = {}): SlurmRunnerOptions => fakeSlurmOptions({ submitAhead: true, aheadPollMs: 200, aheadWaitS: 120, ...extra });

describe('submitAhead config (no cluster needed)', () => {
  it('defaults to off and bounds the wait of a job submitted ahead', ({ expect }) => {
    expect(slurmRunnerSchema.parse(options({ submitAhead: undefined, aheadWaitS: undefined, aheadPollMs: undefined }))).toMatchObject({ submitAhead: false, aheadWaitS: 1800, aheadPollMs: 2000 });
    for (const bad of [{ aheadWaitS: 5 }, { aheadWaitS: 86_401 }, { aheadPollMs: 50 }, { submitAhead: 'yes' as unknown as boolean }]) {
      const r = slurmRunnerSchema.safeParse(options(bad));
      expect(r.success, JSON.stringify(bad)).toBe(false);
      expect(r.error?.issues[0]?.path).toEqual([Object.keys(bad)[0]]);
    }
  });

  it('lengthens the time limit of a job submitted ahead by its wait, in a form Slurm reads', ({ expect }) => {
    expect(formatTimeLimit(5 * 60 + 120)).toBe('0-00:07:00');
    expect(parseTimeLimit(formatTimeLimit(2 * 86_400 + 3 * 3600 + 4 * 60 + 5))).toBe(2 * 86_400 + 3 * 3600 + 4 * 60 + 5);
  });
});

const title = unavailable === undefined ? 'slurm runner, submitAhead, on a real cluster (stand-in trainer)' : `slurm runner, submitAhead (skipped: ${unavailable})`;

describe.skipIf(unavailable !== undefined).concurrent(title, () => {
  const runner = (ws: Workspace, extra: Partial<SlurmRunnerOptions> = {}, services: { log?: ReturnType<typeof testLogger>['logger']; waits?: number[] } = {}): SlurmRunner =>
    new SlurmRunner(slurmRunnerSchema.parse(options(extra)), {
      workDir: ws.dir,
      log: services.log,
      metrics: { modelWaited: (ms) => services.waits?.push(ms) },
    });
  /** The job submitted ahead into `dir`, once its record names it. */
  const aheadJob = (dir: string): Promise<string> =>
    waitFor(`a job submitted ahead in ${dir}`, async () => {
      const rec = await readRecord(dir);
      return rec?.ahead !== undefined ? rec.jobs[0]?.id : undefined;
    }, 10_000);
  const squeueState = (id: string): string => spawnSync('squeue', ['-h', '-j', id, '-o', '%T'], { encoding: 'utf8' }).stdout.trim();
  /** Gone from the queue, or shown CANCELLED by scontrol while Slurm still remembers it. */
  const cancelled = (id: string): boolean => {
    const state = squeueState(id);
    return state === '' || state === 'CANCELLED';
  };
  const exists = (path: string): Promise<boolean> => access(path).then(() => true, () => false);

  it('submits the next round\'s job before its task, which waits for the model, then trains and reports the wait', { timeout: 60_000 }, async ({ expect }) => {
    const ws = await makeWorkspace();
    const { logger, lines } = testLogger({ level: 'info' });
    const waits: number[] = [];
    const r = runner(ws, {}, { log: logger, waits });
    try {
      const first = await r.train(trainRequest(ws, {}, { round: 1 }));
      expect(first.idleWaitMs).toBeUndefined(); // submitted when its task came: no wait
      const dir2 = join(ws.dir, 'round-2');
      const id = await aheadJob(dir2); // before round 2's task
      await waitUntil('the job submitted ahead to run', () => squeueState(id) === 'RUNNING', 20_000);
      expect(await readFile(join(dir2, 'job-1.sbatch'), 'utf8')).toMatch(/^#SBATCH --time=0-00:07:00$/m);
      await new Promise((res) => setTimeout(res, 1500)); // it holds its node, waiting
      expect(await exists(join(dir2, 'progress.jsonl'))).toBe(false);
      expect(await exists(join(dir2, 'scratch', 'runs.log'))).toBe(false);
      expect(squeueState(id)).toBe('RUNNING');

      // A restarted agent (a runner with nothing in memory) adopts it from the round's job.json.
      const second = await runner(ws, {}, { log: logger, waits }).train(trainRequest(ws, {}, { round: 2 }));
      expect(second).toMatchObject({ steps: 3 });
      expect(second.idleWaitMs).toBeGreaterThanOrEqual(1500);
      expect((await readRecord(dir2))?.jobs.map((j) => j.id)).toEqual([id]); // adopted, not resubmitted
      expect(await readFile(join(dir2, `slurm-${id}.out`), 'utf8')).toMatch(/fedhpc-model-ready job=\d+ waited_ms=\d+/);
      // The busy span starts after the wait: the coordinator counts the wait as idle.
      const wait = JSON.parse(await readFile(join(dir2, 'MODEL_WAIT.json'), 'utf8')) as { readyMs: number };
      expect(second.trainStartedMs).toBeGreaterThanOrEqual(wait.readyMs);
      expect(waits).toEqual([second.idleWaitMs]);
      expect(lines.find((l) => l.msg?.includes('held its nodes idle'))).toMatchObject({ round: 2, phase: 'training', jobId: id, idleWaitMs: second.idleWaitMs });

      // Round 3's job now waits; the run ends: it is cancelled and its directory removed.
      const id3 = await aheadJob(join(ws.dir, 'round-3'));
      await r.endRun('run-test');
      await waitUntil('the job submitted ahead to be cancelled', () => cancelled(id3), 20_000);
      expect(await exists(join(ws.dir, 'round-3'))).toBe(false);
    } finally {
      await r.close();
      await rm(ws.dir, { recursive: true, force: true });
    }
  });

  it('cancels a job submitted ahead when a task for another round comes, and every one when the agent stops', { timeout: 60_000 }, async ({ expect }) => {
    const ws = await makeWorkspace();
    const r = runner(ws);
    try {
      await r.train(trainRequest(ws, {}, { round: 1 }));
      const id2 = await aheadJob(join(ws.dir, 'round-2'));
      // The site was not invited to round 2: round 3's task comes.
      await r.train(trainRequest(ws, {}, { round: 3 }));
      await waitUntil('the job submitted ahead for round 2 to be cancelled', () => cancelled(id2), 20_000);
      expect(await exists(join(ws.dir, 'round-2'))).toBe(false);
      const id4 = await aheadJob(join(ws.dir, 'round-4'));
      await r.close();
      await waitUntil('the job submitted ahead for round 4 to be cancelled', () => cancelled(id4), 20_000);
      expect(await exists(join(ws.dir, 'round-4'))).toBe(false);
    } finally {
      await rm(ws.dir, { recursive: true, force: true });
    }
  });

  it('a job submitted ahead gives up after aheadWaitS (exit 69); its late task gets a fresh job', { timeout: 60_000 }, async ({ expect }) => {
    const ws = await makeWorkspace();
    const r = runner(ws, { aheadWaitS: 10 });
    try {
      await r.train(trainRequest(ws, {}, { round: 1 }));
      const dir2 = join(ws.dir, 'round-2');
      const id = await aheadJob(dir2);
      await waitUntil('the job submitted ahead to give up', async () => /code=69 \(no model after 10 s\)/.test(await readFile(join(dir2, `slurm-${id}.out`), 'utf8').catch(() => '')), 40_000);
      await waitUntil('the job to leave the queue', () => squeueState(id) === '' || squeueState(id) === 'FAILED', 20_000);
      const late = await r.train(trainRequest(ws, {}, { round: 2 }));
      expect(late).toMatchObject({ steps: 3 });
      expect(late.idleWaitMs).toBeUndefined();
      const rec = await readRecord(dir2);
      expect(rec?.jobs).toHaveLength(2);
      expect(rec?.crashes).toBe(0);
    } finally {
      await r.close();
      await rm(ws.dir, { recursive: true, force: true });
    }
  });

  it('refuses submitAhead with a template that runs its own steps (the wait lives in {{run}})', async ({ expect }) => {
    const ws = await makeWorkspace();
    try {
      const own = '#!/bin/bash\n{{directives}}\necho fedhpc-start\necho fedhpc-exit code=0\n';
      expect(() => runner(ws, { templateInline: own })).toThrow(RunnerConfigError);
      expect(() => runner(ws, { templateInline: own })).toThrow(/runner.submitAhead needs a template with \{\{run\}\}/);
      expect(() => runner(ws, { templateInline: own, submitAhead: false })).not.toThrow();
    } finally {
      await rm(ws.dir, { recursive: true, force: true });
    }
  });
});
