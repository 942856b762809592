/**
 * An overlapped run's persistent trainer under the `slurm` runner (issue 17) on a real one-node
 * Slurm cluster (scripts/ci/start-slurm.sh): ONE batch job for the whole run, followed through a
 * Slurm requeue (what a preemption with requeue looks like to the job), ended by `STOP` with exit 0,
 * and re-attached by a restarted agent instead of doubled. The trainer is
 * test/fixtures/trainers/fake-persistent-trainer.mjs, a real process that follows the file
 * contract without training. sbatch is counted through a PATH shim, so "one job" is checked.
 *
 * Skipped with the reason in its title when `sinfo` does not answer, unless FEDHPC_REQUIRE
 * (comma-separated) contains `slurm`: then it fails.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { SiteAgentError } from '../../../site-agent/errors.js';
import { OverlapRunner, sessionDir } from '../../../site-agent/runners/persistent.js';
import type { TrainRequest } from '../../../site-agent/runners/runner.js';
import { readSessionJob } from '../../../site-agent/runners/slurm-persistent.js';
import { SlurmRunner, slurmRunnerSchema, type SlurmRunnerOptions } from '../../../site-agent/runners/slurm.js';
import { required, slurmUnavailable } from '../../helpers/components.js';
import { waitUntil } from '../../helpers/wait.js';
import { fakeSlurmOptions, makeWorkspace, sbatchShim, type SbatchShim, type Workspace } from './helpers.js';

const TRAINER = resolve('test/fixtures/trainers/fake-persistent-trainer.mjs');
const REQUIRED = required('slurm');
/** Starts the cluster (idempotent); why Slurm is unusable, or undefined. */
const unavailable = slurmUnavailable();

if (unavailable !== undefined && REQUIRED) {
  describe('slurm persistent trainer', () => {
    it('needs a Slurm cluster (FEDHPC_REQUIRE contains slurm)', () => {
      throw new Error(`Slurm is required but unavailable: ${unavailable}`);
    });
  });
}

const title = unavailable === undefined ? 'persistent trainer as one Slurm job (real cluster, stand-in trainer)' : `slurm persistent trainer (skipped: ${unavailable})`;

describe.skipIf(unavailable !== undefined).concurrent(title, () => {
  let ws: Workspace;
  let shim: SbatchShim;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    ws = await makeWorkspace();
    shim = await sbatchShim();
    env = shim.env;
  });
  afterAll(async () => {
    await shim.remove();
    await rm(ws.dir, { recursive: true, force: true });
  });

  const slurm = (extra: Partial<SlurmRunnerOptions> = {}): SlurmRunner =>
    new SlurmRunner(slurmRunnerSchema.parse(fakeSlurmOptions({ trainer: TRAINER, ...extra })), { workDir: ws.dir, env });
  /** An agent's runner: overlapped runs through a persistent session of the slurm runner. */
  const agent = (workDir: string): OverlapRunner => new OverlapRunner(slurm(), { workDir, stopGraceMs: 30_000 });
  const request = (workDir: string, round: number): TrainRequest => ({
    runId: 'run-s',
    round,
    attempt: 0,
    globalPath: ws.globalPath,
    globalSha256: ws.globalSha256,
    roundDir: join(workDir, `round-${round}`),
    train: { batch_size: 4, seq_len: 16, budget: { seconds: 1 }, overlap: { mode: 'whole-model' } },
    signal: AbortSignal.timeout(60_000),
    onProgress: () => undefined,
  });
  const submissions = (dir: string): Promise<number> => shim.submissions(`${dir}/`);
  const jobIds = async (dir: string): Promise<string[]> => ((await readSessionJob(dir))?.jobs ?? []).map((j) => j.id);
  const starts = async (dir: string): Promise<number> => (await readFile(join(dir, 'runs.log'), 'utf8').catch(() => '')).split('\n').filter(Boolean).length;
  const squeueState = (id: string): string => spawnSync('squeue', ['-h', '-j', id, '-o', '%T'], { encoding: 'utf8' }).stdout.trim();
  const scontrolJob = (id: string): string => spawnSync('scontrol', ['show', 'job', '-o', id], { encoding: 'utf8' }).stdout;
  const workDir = (name: string): Promise<string> => mkdtemp(join(ws.dir, `${name}-`));

  it('trains two syncs with ONE job: one job id, one trainer start, one submission', { timeout: 90_000 }, async ({ expect }) => {
    const work = await workDir('two-syncs');
    const session = sessionDir(work, 'run-s');
    const r = agent(work);
    try {
      expect((await r.train(request(work, 1))).outPath).toContain(join('syncs', '1.0'));
      expect((await r.train(request(work, 2))).outPath).toContain(join('syncs', '2.0'));
      expect(await jobIds(session)).toHaveLength(1);
      expect(await submissions(session)).toBe(1);
      expect(await starts(session)).toBe(1);
      const spec = JSON.parse(await readFile(join(session, 'spec.json'), 'utf8')) as Record<string, unknown>;
      expect(spec).toMatchObject({ version: 3, mode: 'persistent', run_id: 'run-s', seed: 1, output_dtype: 'F32', budget: { seconds: 1 } });
      const script = await readFile(join(session, 'job-1.sbatch'), 'utf8');
      expect(script).toMatch(/#SBATCH --requeue/);
      expect(script).toContain(`--session-dir' '${session}'`);
    } finally {
      await r.endRun('run-s');
    }
  });

  it('follows its job through a Slurm requeue: the trainer resumes in the same job, never a second submission', { timeout: 90_000 }, async ({ expect }) => {
    const work = await workDir('requeue');
    const session = sessionDir(work, 'run-s');
    const r = agent(work);
    try {
      await r.train(request(work, 1));
      const [id] = await jobIds(session);
      // What a preemption with requeue looks like to the job: killed, then PENDING under the same id.
      expect(spawnSync('scontrol', ['requeue', id!], { encoding: 'utf8' }).status).toBe(0);
      await waitUntil('the job to be requeued', () => squeueState(id!) === 'PENDING', 20_000);
      const s2 = await r.train(request(work, 2)); // answered by the trainer of the requeued run
      expect(s2.outPath).toContain(join('syncs', '2.0'));
      expect(await starts(session)).toBe(2);
      expect(await readFile(join(session, `slurm-${id}.out`), 'utf8')).toMatch(/fedhpc-start job=\d+ restart=0[\s\S]*DUE TO JOB REQUEUE[\s\S]*fedhpc-start job=\d+ restart=1/);
      expect(await jobIds(session)).toEqual([id]);
      expect(await submissions(session)).toBe(1);
    } finally {
      await r.endRun('run-s');
    }
  });

  it('ends the job at the run end: STOP, and the job COMPLETES with exit 0', { timeout: 90_000 }, async ({ expect }) => {
    const work = await workDir('stop');
    const session = sessionDir(work, 'run-s');
    const r = agent(work);
    await r.train(request(work, 1));
    const [id] = await jobIds(session);
    await r.endRun('run-s');
    expect((await readSessionJob(session))?.jobs[0]?.end).toMatchObject({ state: 'COMPLETED', exitCode: 0 });
    expect(await readFile(join(session, `slurm-${id}.out`), 'utf8')).toMatch(/fedhpc-exit job=\d+ restart=0 code=0/);
    const shown = scontrolJob(id!);
    if (shown !== '') expect(shown).toMatch(/JobState=COMPLETED .*ExitCode=0:0/);
  });

  it("re-attaches a restarted agent to the session's live job instead of submitting a second, and kill() cancels it", { timeout: 90_000 }, async ({ expect }) => {
    const dir = join(await workDir('reattach'), 'session');
    await mkdir(join(dir, 'syncs'), { recursive: true });
    const launch = { dir, spec: { version: 3, mode: 'persistent', run_id: 'run-s', train: {} }, log: undefined };
    const first = await slurm().startPersistent(launch);
    try {
      const [id] = await jobIds(dir);
      await waitUntil('the trainer to start', async () => squeueState(id!) === 'RUNNING' && (await starts(dir)) === 1, 30_000);
      const second = await slurm().startPersistent(launch); // the agent restarted: a new runner, the same session
      expect(await jobIds(dir)).toEqual([id]);
      expect(await submissions(dir)).toBe(1);
      await second.kill();
      expect(await second.exited).toBeNull();
      expect(await first.exited).toBeNull();
      expect(scontrolJob(id!)).toMatch(/JobState=CANCELLED/);
      expect(await starts(dir)).toBe(1);
    } finally {
      for (const id of await jobIds(dir)) spawnSync('scancel', [id]); // a failed check leaves no job behind
      await first.kill();
    }
  });

  it('refuses a persistent trainer when the template runs its own steps (no {{run}})', async ({ expect }) => {
    const own = '#!/bin/bash\n{{directives}}\necho "fedhpc-start job=$SLURM_JOB_ID"\necho "fedhpc-exit job=$SLURM_JOB_ID code=0"\n';
    const dir = await workDir('own-steps');
    const err = await slurm({ templateInline: own })
      .startPersistent({ dir, spec: {}, log: undefined })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SiteAgentError);
    expect((err as SiteAgentError).code).toBe('SPEC_INVALID');
    expect(await submissions(dir)).toBe(0);
  });
});
