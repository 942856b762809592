/**
 * The `slurm` runner against a real one-node Slurm cluster (munged, slurmctld and slurmd on this
 * host, started by scripts/ci/start-slurm.sh) and a stand-in trainer (a Node script following the
 * round-dir contract). Jobs really run: COMPLETED, FAILED, TIMEOUT, CANCELLED by an aborted round,
 * requeued by Slurm after exit 75, resubmitted by the agent after exit 75, a USR1 sent to the batch
 * shell only, a job pending past the round's deadline, and an agent killed while its job runs.
 * sbatch is counted through a PATH shim, so "no second submission" is checked, not assumed.
 *
 * Skipped with the reason in its title when `sinfo` does not answer, unless FEDHPC_REQUIRE
 * (comma-separated) contains `slurm`: then it fails.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { SiteAgentError } from '../../../site-agent/errors.js';
import { RunnerConfigError } from '../../../site-agent/runners/round-dir.js';
import type { TrainProgress } from '../../../site-agent/runners/runner.js';
import { parseScontrolJob, parseTimeLimit, stateFromOutput } from '../../../site-agent/runners/slurm-cli.js';
import { SlurmPendingError, SlurmRunner, slurmRunnerSchema, type SlurmRunnerOptions } from '../../../site-agent/runners/slurm.js';
import { alive, fakeSlurmOptions, makeWorkspace, sbatchShim, trainRequest, trainerRuns, type SbatchShim, type Workspace } from './helpers.js';
import { required, slurmUnavailable } from '../../helpers/components.js';
import { waitUntil } from '../../helpers/wait.js';

const REQUIRED = required('slurm');
/** Starts the cluster (idempotent); why Slurm is unusable, or undefined. */
const unavailable = slurmUnavailable();

if (unavailable !== undefined && REQUIRED) {
  describe('slurm runner', () => {
    it('needs a Slurm cluster (FEDHPC_REQUIRE contains slurm)', () => {
      throw new Error(`Slurm is required but unavailable: ${unavailable}`);
    });
  });
}

describe('slurm output parsing (no cluster needed)', () => {
  it('reads state, exit code, reason and restarts from scontrol show job -o', ({ expect }) => {
    const line = 'JobId=7 JobName=x UserId=root(0) JobState=FAILED Reason=NonZeroExitCode Dependency=(null) Requeue=1 Restarts=1 BatchFlag=1 ExitCode=75:0 RunTime=00:00:01';
    expect(parseScontrolJob(line)).toEqual({ state: 'FAILED', exitCode: 75, reason: 'NonZeroExitCode', restarts: 1, source: 'scontrol' });
    expect(parseScontrolJob('JobId=7 JobState=BOGUS')).toBeUndefined();
  });

  it("tells how a forgotten job's last run ended from its output file", ({ expect }) => {
    const start = (r: number): string => `fedhpc-start job=9 restart=${r} host=vm\n`;
    expect(stateFromOutput('9', `${start(0)}slurmstepd-vm: error: *** JOB 9 ON vm CANCELLED AT 2026-11-27T21:34:54 DUE TO TIME LIMIT ***\n`)).toMatchObject({ state: 'TIMEOUT' });
    expect(stateFromOutput('9', `${start(0)}slurmstepd-vm: error: *** JOB 9 ON vm CANCELLED AT 2026-11-27T21:47:06 ***\n`)).toMatchObject({ state: 'CANCELLED' });
    expect(stateFromOutput('9', `${start(0)}slurmstepd-vm: error: *** JOB 9 ON vm CANCELLED AT 2026-11-27T21:47:06 DUE TO PREEMPTION ***\n`)).toMatchObject({ state: 'PREEMPTED' });
    // A requeued job appends: only its last run counts.
    const requeued = `${start(0)}fedhpc-exit job=9 restart=0 code=75\nfedhpc-requeue job=9\n${start(1)}fedhpc-exit job=9 restart=1 code=0\n`;
    expect(stateFromOutput('9', requeued)).toMatchObject({ state: 'COMPLETED', exitCode: 0 });
    expect(stateFromOutput('9', `${start(0)}fedhpc-exit job=9 restart=0 code=3\n`)).toMatchObject({ state: 'FAILED', exitCode: 3 });
    expect(stateFromOutput('9', `${start(0)}still running when the node died\n`)).toMatchObject({ state: 'UNKNOWN' });
  });

  it('parses every Slurm time limit format into seconds', ({ expect }) => {
    expect(['5', '0:10', '1:00:00', '2-0', '1-2:3', '1-0:0:30', '1h', ''].map(parseTimeLimit)).toEqual([300, 10, 3600, 172_800, 93_780, 86_430, undefined, undefined]);
  });
});

const title = unavailable === undefined ? 'slurm runner on a real cluster (stand-in trainer)' : `slurm runner (skipped: ${unavailable})`;

describe.skipIf(unavailable !== undefined).concurrent(title, () => {
  let ws: Workspace;
  let shim: SbatchShim;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    // Round directories must be visible to slurmd: same host here, so any local folder does.
    ws = await makeWorkspace();
    shim = await sbatchShim();
    env = shim.env;
  });
  afterAll(async () => {
    await shim.remove();
    await rm(ws.dir, { recursive: true, force: true });
  });

  const options = fakeSlurmOptions;
  const runner = (extra: Partial<SlurmRunnerOptions> = {}, runnerEnv = env): SlurmRunner =>
    new SlurmRunner(slurmRunnerSchema.parse(options(extra)), { workDir: ws.dir, env: runnerEnv });
  const submissions = (dir: string): Promise<number> => shim.submissions(`${dir}/`);
  const jobIds = async (roundDir: string): Promise<string[]> =>
    (JSON.parse(await readFile(join(roundDir, 'job.json'), 'utf8')) as { jobs: { id: string }[] }).jobs.map((j) => j.id);
  const squeueState = (id: string): string => spawnSync('squeue', ['-h', '-j', id, '-o', '%T'], { encoding: 'utf8' }).stdout.trim();
  const rejection = async (p: Promise<unknown>): Promise<SiteAgentError> => {
    const err = await p.then(
      () => new Error('resolved'),
      (e: unknown) => e,
    );
    if (!(err instanceof SiteAgentError)) throw new Error(`expected a SiteAgentError, got ${String(err)}`);
    return err;
  };
  /** Waits until the trainer of the round's current job runs; returns the job id and trainer pid. */
  const running = async (roundDir: string): Promise<{ id: string; pid: number }> => {
    let id = '';
    let pid = 0;
    await waitUntil(
      'the job to run',
      async () => {
        id = (await jobIds(roundDir).catch(() => [])).at(-1) ?? '';
        pid = Number(await readFile(join(roundDir, 'scratch', 'pid'), 'utf8').catch(() => '0'));
        return id !== '' && pid > 0 && squeueState(id) === 'RUNNING';
      },
      60_000,
    );
    return { id, pid };
  };

  it('finishes a COMPLETED job whose DONE.json and out/ agree, forwarding progress', { timeout: 90_000 }, async ({ expect }) => {
    const progress: TrainProgress[] = [];
    const req = trainRequest(ws, {}, { name: 'completed', progress });
    const result = await runner().train(req);
    expect(result).toMatchObject({ steps: 3, samples: 24, tokens: 192, trainLoss: 2.8 });
    expect(progress.map((p) => p.step)).toEqual([1, 2, 3]);
    expect(await jobIds(req.roundDir)).toHaveLength(1);
    expect(await submissions(req.roundDir)).toBe(1);
  });

  it('retries a FAILED job once by resubmission, then reports TRAINING_FAILED with the exit code', { timeout: 90_000 }, async ({ expect }) => {
    const req = trainRequest(ws, { exitCode: 3 }, { name: 'failed' });
    const err = await rejection(runner().train(req));
    expect(err.code).toBe('TRAINING_FAILED');
    expect(err.context).toMatchObject({ slurmState: 'FAILED', exitCode: 3 });
    expect(await submissions(req.roundDir)).toBe(2);
  });

  it('reports exit 64 as SPEC_INVALID without resubmitting', { timeout: 90_000 }, async ({ expect }) => {
    const req = trainRequest(ws, { exitCode: 64 }, { name: 'spec-invalid' });
    expect((await rejection(runner().train(req))).code).toBe('SPEC_INVALID');
    expect(await submissions(req.roundDir)).toBe(1);
  });

  it('refuses a job that exits 0 without DONE.json', { timeout: 90_000 }, async ({ expect }) => {
    const err = await rejection(runner({ doneWaitMs: 500 }).train(trainRequest(ws, { noDone: true }, { name: 'no-done' })));
    expect(err.code).toBe('TRAINING_FAILED');
    expect(err.message).toMatch(/without a valid DONE\.json/);
  });

  it('reports TIMEOUT for a job killed by its time limit (stand-in trainer ignores the USR1 warning)', { timeout: 180_000 }, async ({ expect }) => {
    const req = trainRequest(ws, { onSignal: 'ignore', sleepMs: 600_000 }, { name: 'timeout' });
    const err = await rejection(runner({ timeLimit: '0:10', signalLeadS: 5 }).train(req));
    expect(err.code).toBe('TRAINING_FAILED');
    expect(err.context).toMatchObject({ slurmState: 'TIMEOUT' });
    expect(await submissions(req.roundDir)).toBe(1);
  });

  it('scancels the job when the round is aborted, ending the trainer', { timeout: 120_000 }, async ({ expect }) => {
    const abort = new AbortController();
    const req = trainRequest(ws, { sleepMs: 600_000 }, { name: 'cancelled', signal: abort.signal });
    const p = runner().train(req);
    const { id, pid } = await running(req.roundDir);
    abort.abort(new SiteAgentError('CANCELLED', 'round aborted by the test', false));
    expect((await rejection(p)).code).toBe('CANCELLED');
    await waitUntil('the trainer to end', () => !alive(pid), 20_000);
    const state = spawnSync('scontrol', ['show', 'job', '-o', id], { encoding: 'utf8' }).stdout;
    if (state !== '') expect(state).toMatch(/JobState=CANCELLED/);
  });

  it('lets Slurm requeue a job that exits 75 and never resubmits it (requeue mode)', { timeout: 120_000 }, async ({ expect }) => {
    const req = trainRequest(ws, { resumeOnce: true }, { name: 'requeued' });
    await runner({ requeue: true }).train(req);
    const [id, ...more] = await jobIds(req.roundDir);
    expect(more).toEqual([]);
    expect(await submissions(req.roundDir)).toBe(1);
    // The same job id ran twice: first run, then Slurm's requeue (SLURM_RESTART_COUNT=1).
    expect((await trainerRuns(req.roundDir)).map(([, job, restart]) => [job, restart])).toEqual([
      [id, '-'],
      [id, '1'],
    ]);
  });

  it('resubmits once after exit 75 when Slurm requeue is off (--no-requeue)', { timeout: 120_000 }, async ({ expect }) => {
    const req = trainRequest(ws, { resumeOnce: true }, { name: 'resubmitted' });
    await runner({ requeue: false }).train(req);
    const ids = await jobIds(req.roundDir);
    expect(ids).toHaveLength(2);
    expect(await submissions(req.roundDir)).toBe(2);
    expect((await trainerRuns(req.roundDir)).map(([, job]) => job)).toEqual(ids);
    expect(await readFile(join(req.roundDir, `slurm-${ids[0]}.out`), 'utf8')).not.toMatch(/fedhpc-requeue/);
  });

  it('forwards a USR1 sent to the batch shell alone to the trainer, which checkpoints and resumes', { timeout: 120_000 }, async ({ expect }) => {
    const req = trainRequest(ws, { onSignal: 'checkpoint', sleepMs: 600_000 }, { name: 'usr1' });
    const p = runner({ requeue: true }).train(req);
    const { id } = await running(req.roundDir);
    // --batch: the batch shell only, as --signal=B:USR1@lead does before the time limit.
    expect(spawnSync('scancel', ['--batch', '--signal=USR1', id], { encoding: 'utf8' }).status).toBe(0);
    const result = await p;
    expect(result.steps).toBe(3);
    expect(await jobIds(req.roundDir)).toEqual([id]);
    expect(await readFile(join(req.roundDir, `slurm-${id}.out`), 'utf8')).toMatch(/interrupted, checkpoint written[\s\S]*code=75[\s\S]*fedhpc-requeue/);
  });

  it("reports a job still pending when the round's deadline can no longer be met, and cancels it", { timeout: 90_000 }, async ({ expect }) => {
    const req = { ...trainRequest(ws, {}, { name: 'pending' }), deadlineMs: Date.now() + 30_000 };
    const err = await rejection(runner({ sbatchOptions: ['--begin=now+3600'] }).train(req));
    expect(err).toBeInstanceOf(SlurmPendingError);
    expect(err.context).toMatchObject({ slurmState: 'PENDING' });
    expect(err.message).toMatch(/still PENDING.*round's deadline/);
    const [id] = await jobIds(req.roundDir);
    expect(squeueState(id!)).toBe('');
  });

  /** Trains `req` in a separate agent process and SIGKILLs it once the job runs; returns the job id. */
  const killAgentWhileJobRuns = async (req: ReturnType<typeof trainRequest>): Promise<string> => {
    const { signal: _s, onProgress: _p, ...request } = req;
    const arg = JSON.stringify({ options: options(), workDir: ws.dir, env, request });
    const child = spawn(process.execPath, [resolve('node_modules/vite-node/vite-node.mjs'), resolve('test/integration/runners/slurm-agent-child.ts'), arg], { stdio: 'ignore' });
    const exited = new Promise((r) => child.once('exit', r));
    const { id } = await running(req.roundDir);
    child.kill('SIGKILL');
    await exited;
    return id;
  };

  it('re-attaches to the running job after the agent is killed, with no second submission', { timeout: 150_000 }, async ({ expect }) => {
    const req = trainRequest(ws, { sleepMs: 6000 }, { name: 'restart' });
    const id = await killAgentWhileJobRuns(req);
    expect(squeueState(id)).toBe('RUNNING');
    const result = await runner().train(req); // the restarted agent, same round directory
    expect(result.steps).toBe(3);
    expect(await jobIds(req.roundDir)).toEqual([id]);
    expect(await submissions(req.roundDir)).toBe(1);
    expect(await trainerRuns(req.roundDir)).toHaveLength(1);
  });

  it('adopts, by its name, a job whose id the agent never recorded (killed right after sbatch)', { timeout: 150_000 }, async ({ expect }) => {
    const req = trainRequest(ws, { sleepMs: 6000 }, { name: 'adopt' });
    const id = await killAgentWhileJobRuns(req);
    // As if the agent had died between sbatch and writing the id: only the job's name is known.
    const path = join(req.roundDir, 'job.json');
    const rec = JSON.parse(await readFile(path, 'utf8')) as { jobs: { name: string }[]; submitting?: string };
    await writeFile(path, JSON.stringify({ ...rec, jobs: [], submitting: rec.jobs[0]!.name }));
    await runner().train(req);
    expect(await jobIds(req.roundDir)).toEqual([id]);
    expect(await submissions(req.roundDir)).toBe(1);
  });

  it('keeps following a job while squeue and scontrol cannot reach the controller for a while', { timeout: 90_000 }, async ({ expect }) => {
    const flaky = await mkdtemp(join(tmpdir(), 'fedhpc-flaky-slurm-'));
    const down = join(flaky, 'controller-down');
    for (const cmd of ['squeue', 'scontrol']) {
      const real = spawnSync('bash', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).stdout.trim();
      const body = `#!/bin/sh\nif [ -e '${down}' ]; then echo "slurm_load_jobs error: Unable to contact slurm controller (connect failure)" >&2; exit 1; fi\nexec '${real}' "$@"\n`;
      await writeFile(join(flaky, cmd), body, { mode: 0o755 });
    }
    try {
      const req = trainRequest(ws, { sleepMs: 4000 }, { name: 'controller-down' });
      const p = runner({}, { ...env, PATH: `${flaky}:${env['PATH'] ?? ''}` }).train(req);
      await running(req.roundDir);
      await writeFile(down, '');
      await new Promise((r) => setTimeout(r, 3000));
      await rm(down);
      expect((await p).steps).toBe(3);
      expect(await submissions(req.roundDir)).toBe(1);
    } finally {
      await rm(flaky, { recursive: true, force: true });
    }
  });

  it('evaluates a model in a batch job and parses its {"loss","samples"} line', { timeout: 90_000 }, async ({ expect }) => {
    expect(await runner().evaluate(ws.globalPath, new AbortController().signal)).toEqual({ loss: 1.25, samples: 42 });
  });

  it('refuses at construction a template that is not valid bash', ({ expect }) => {
    const bad = '#!/bin/bash\n{{directives}}\nif [ -n "$X" ]; then\n  echo unterminated\n{{run}}\n';
    expect(() => runner({ templateInline: bad })).toThrow(RunnerConfigError);
    expect(() => runner({ templateInline: bad })).toThrow(/does not render to a valid bash script: .*syntax error/);
    expect(() => runner({ templateInline: '#!/bin/bash\n{{directives}}\n' })).toThrow(/must contain \{\{run\}\} exactly once/);
    expect(() => runner({ templateInline: '#!/bin/bash\n{{nodes}}\n{{run}}\n' })).toThrow(/placeholder \{\{nodes\}\} is unknown/);
  });

  it('refuses at construction when Slurm commands are missing from PATH, naming them', ({ expect }) => {
    const err = (() => {
      try {
        runner({}, { ...env, PATH: '/nonexistent/bin' });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(RunnerConfigError);
    expect((err as Error).message).toMatch(/Slurm commands not found on PATH \(\/nonexistent\/bin\): sbatch, squeue, scontrol, scancel, bash/);
  });
});
