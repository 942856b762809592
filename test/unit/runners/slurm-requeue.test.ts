/**
 * The `slurm` runner's requeue mode against a scripted Slurm controller: state sequences that the
 * one-node test cluster (test/integration/runners/slurm-runner.test.ts) cannot produce on demand,
 * such as the same job preempted twice. The runner itself, its round directory and the stand-in
 * trainer are real; only the answers of sbatch / squeue / scontrol / scancel are scripted.
 */
import { spawnSync } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobInfo, SlurmCommands, SlurmState } from '../../../site-agent/runners/slurm-cli.js';
import { SlurmRunner, slurmRunnerSchema } from '../../../site-agent/runners/slurm.js';
import { FAKE_TRAINER, fakeSlurmOptions, makeWorkspace, trainRequest, type Workspace } from '../../integration/runners/helpers.js';

/** One step of the script: Slurm reports `state` for `polls` polls in a row. */
interface Step {
  readonly state: SlurmState;
  readonly polls: number;
  readonly exitCode?: number;
}

/**
 * A Slurm controller that answers from a script: one job, whose state advances one poll at a
 * time. Before it first reports COMPLETED it runs the stand-in trainer in the round directory, as
 * the job's last run would have, so DONE.json and out/ are there for the runner to verify.
 */
class ScriptedSlurm implements SlurmCommands {
  readonly submitted: string[] = [];
  readonly cancelled: string[] = [];
  /** Every state reported, in order. */
  readonly reported: SlurmState[] = [];
  private step = 0;
  private pollsInStep = 0;

  constructor(
    private readonly script: readonly Step[],
    private readonly roundDir: string,
  ) {}

  missing(): string[] {
    return [];
  }

  sbatch(script: string): Promise<string> {
    this.submitted.push(script);
    return Promise.resolve('4242');
  }

  jobInfo(): Promise<JobInfo> {
    const s = this.script[Math.min(this.step, this.script.length - 1)]!;
    if (++this.pollsInStep >= s.polls && this.step < this.script.length - 1) {
      this.step++;
      this.pollsInStep = 0;
    }
    if (s.state === 'COMPLETED' && !this.reported.includes('COMPLETED')) {
      const run = spawnSync(process.execPath, [FAKE_TRAINER, '--round-dir', this.roundDir], { encoding: 'utf8', timeout: 30_000 });
      if (run.status !== 0) throw new Error(`stand-in trainer exited ${run.status}: ${run.stderr}`);
    }
    this.reported.push(s.state);
    return Promise.resolve({ state: s.state, source: 'scontrol', ...(s.exitCode !== undefined ? { exitCode: s.exitCode } : {}) });
  }

  jobsNamed(): Promise<string[]> {
    return Promise.resolve([]);
  }

  scancel(jobId: string): Promise<void> {
    this.cancelled.push(jobId);
    return Promise.resolve();
  }
}

describe('slurm runner, requeue mode (scripted Slurm states)', () => {
  let ws: Workspace;
  beforeAll(async () => {
    ws = await makeWorkspace();
  });
  afterAll(async () => {
    await rm(ws.dir, { recursive: true, force: true });
  });

  it('gives a second preemption of the same job its own settle window (scripted Slurm states)', { timeout: 30_000 }, async () => {
    const pollIntervalMs = 100;
    const requeueSettleS = 1;
    // Between the preemptions the job runs for more than a whole settle window (each poll sleeps
    // at least pollIntervalMs), so a window counted from the first preemption has long run out.
    const runningPolls = Math.ceil((requeueSettleS * 1000 * 1.5) / pollIntervalMs);
    const script: Step[] = [
      { state: 'RUNNING', polls: 2 },
      { state: 'PREEMPTED', polls: 2 },
      { state: 'PENDING', polls: 2 },
      { state: 'RUNNING', polls: runningPolls },
      { state: 'PREEMPTED', polls: 2 },
      { state: 'PENDING', polls: 2 },
      { state: 'RUNNING', polls: 2 },
      { state: 'COMPLETED', polls: 1, exitCode: 0 },
    ];
    const req = trainRequest(ws, {}, { name: 'preempted-twice' });
    const slurm = new ScriptedSlurm(script, req.roundDir);
    const options = slurmRunnerSchema.parse(fakeSlurmOptions({ pollIntervalMs, requeueSettleS }));
    const runner = new SlurmRunner(options, { workDir: ws.dir, cli: slurm });

    const result = await runner.train(req);

    expect(result).toMatchObject({ steps: 3, samples: 24, tokens: 192 });
    // Slurm's requeue is the one resume path: the agent submitted once and cancelled nothing.
    expect(slurm.submitted).toHaveLength(1);
    expect(slurm.cancelled).toEqual([]);
    expect(slurm.reported.filter((s) => s === 'PREEMPTED')).toHaveLength(4);
    expect(slurm.reported.at(-1)).toBe('COMPLETED');
  });
});
