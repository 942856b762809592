/**
 * Following a submitted Slurm job to its end, for the slurm runner's round jobs, its persistent
 * session job and its evaluations: polling it (through a controller that may be slow or restarting),
 * cancelling one that can no longer finish in time or that nobody follows any more, waiting out the
 * requeue of a preempted job, and reading a forgotten job's end from its own output.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SiteAgentError } from '../errors.js';
import type { JobRecord } from './slurm-ahead.js';
import { SlurmCommandError, TERMINAL_STATES, stateFromOutput, type JobInfo, type SlurmCommands } from './slurm-cli.js';

/** The job is still PENDING when it can no longer finish in time: the round will not get this shard. */
export class SlurmPendingError extends SiteAgentError {
  constructor(jobId: string, reason: string, pendingS: number, why: string) {
    super('TRAINING_FAILED', `Slurm job ${jobId} is still PENDING (reason ${reason}) after ${pendingS} s: ${why}; cancelled it`, true, {
      jobId,
      slurmState: 'PENDING',
      reason,
      pendingS,
    });
    this.name = 'SlurmPendingError';
  }
}


/** The runner settings a watch honours. */
export interface WatchLimits {
  readonly pollIntervalMs: number;
  readonly maxPendingS: number;
  readonly controllerGraceS: number;
  readonly cancelWaitS: number;
  readonly requeueSettleS: number;
}

/** What one watch is told: the resume mode, the job's limits, and the round's deadline if any. */
export interface WatchOptions {
  readonly requeue: boolean;
  readonly timeLimitS: number;
  /** Seconds the job waits for its model before its trainer starts (a job submitted ahead). */
  readonly waitS?: number;
  readonly deadlineMs?: number | undefined;
}

/** Follows jobs on one cluster with one runner's limits. */
export class SlurmJobWatcher {
  constructor(
    private readonly cli: SlurmCommands,
    private readonly o: WatchLimits,
  ) {}

  /** Polls the job until it ends; cancels it on abort, past the pending limits or far past its time limit. */
  async watch(jobId: string, dir: string, signal: AbortSignal, w: WatchOptions): Promise<JobInfo> {
    const { requeue, timeLimitS, deadlineMs } = w;
    const runLimitS = timeLimitS + (w.waitS ?? 0);
    let pendingSince: number | undefined;
    let runningSince: number | undefined;
    let settleSince: number | undefined;
    let silentSince: number | undefined;
    try {
      for (;;) {
        const info = await this.jobInfo(jobId, dir, signal).catch((err: unknown) => {
          // A controller restart or a slow RPC is not the job's failure: ask again until a deadline.
          if (!(err instanceof SlurmCommandError) || Date.now() - (silentSince ??= Date.now()) > this.o.controllerGraceS * 1000) throw err;
          return undefined;
        });
        const now = Date.now();
        if (info === undefined) {
          // no answer this time
        } else if (info.state === 'PENDING' || info.state === 'REQUEUE_HOLD') {
          runningSince = undefined;
          // The requeue showed up: a later preemption of this job gets a settle window of its own.
          settleSince = undefined;
          pendingSince ??= now;
          const pendingS = Math.round((now - pendingSince) / 1000);
          const late = deadlineMs !== undefined && now + timeLimitS * 1000 > deadlineMs;
          if (late || pendingS > this.o.maxPendingS) {
            await this.cancel(jobId);
            const why = late ? `its time limit no longer fits before the round's deadline ${new Date(deadlineMs!).toISOString()}` : `longer than runner.maxPendingS ${this.o.maxPendingS}`;
            throw new SlurmPendingError(jobId, info.reason ?? 'unknown', pendingS, why);
          }
        } else if (!TERMINAL_STATES.has(info.state) && info.state !== 'UNKNOWN') {
          pendingSince = undefined;
          settleSince = undefined;
          if (info.state !== 'REQUEUED' && info.state !== 'REQUEUE_FED') runningSince ??= now;
          // Slurm kills a job at its limit; one still running long after is beyond our control.
          if (runningSince !== undefined && now - runningSince > (runLimitS + this.o.cancelWaitS + 600) * 1000) {
            await this.cancel(jobId);
            throw new SiteAgentError('TRAINING_FAILED', `Slurm job ${jobId} still ${info.state} long past its time limit; cancelled it`, true, { jobId });
          }
        } else if (requeue && (info.state === 'PREEMPTED' || info.state === 'NODE_FAIL') && (settleSince ??= now) + this.o.requeueSettleS * 1000 > now) {
          // Requeue mode: Slurm requeues a preempted or node-failed job; give it time to show up PENDING.
        } else {
          return info;
        }
        if (info !== undefined) silentSince = undefined;
        await sleep(this.o.pollIntervalMs, undefined, { signal });
      }
    } catch (err) {
      if (err instanceof SlurmCommandError && !signal.aborted) {
        await this.cancel(jobId); // best effort: a job nobody follows would only waste the allocation
        throw new SiteAgentError('TRAINING_FAILED', `Slurm did not answer about job ${jobId} for ${this.o.controllerGraceS} s: ${err.message}`, true, { jobId }, { cause: err });
      }
      if (!signal.aborted) throw err;
      await this.cancel(jobId);
      throw signal.reason ?? new SiteAgentError('CANCELLED', 'round aborted', false);
    }
  }

  private async jobInfo(jobId: string, roundDir: string, signal: AbortSignal): Promise<JobInfo> {
    const info = await this.cli.jobInfo(jobId, signal);
    if (info.state !== 'UNKNOWN') return info;
    // Forgotten (MinJobAge passed, no sacct): the job's own output says how its last run ended.
    const out = await readFile(join(roundDir, `slurm-${jobId}.out`), 'utf8').catch(() => '');
    const fromLog = stateFromOutput(jobId, out.slice(-262_144));
    return fromLog.state === 'REQUEUED' ? { state: 'UNKNOWN', source: 'none' } : fromLog;
  }

  /** `scancel` and wait (bounded) for the job to leave the queue; never throws. */
  async cancel(jobId: string): Promise<void> {
    const signal = AbortSignal.timeout(this.o.cancelWaitS * 1000);
    try {
      await this.cli.scancel(jobId, signal);
      for (;;) {
        const { state } = await this.cli.jobInfo(jobId, signal);
        if (TERMINAL_STATES.has(state) || state === 'UNKNOWN') return;
        await sleep(Math.min(this.o.pollIntervalMs, 1000), undefined, { signal });
      }
    } catch {
      // Best effort: the job may outlive us, and the round is already lost.
    }
  }

  /** Cancels the last job of `rec` if it is still live (a fresh submission replaces it). */
  async cancelStale(rec: JobRecord, signal: AbortSignal): Promise<void> {
    const last = rec.jobs.at(-1);
    if (last === undefined) return;
    const { state } = await this.cli.jobInfo(last.id, signal);
    if (!TERMINAL_STATES.has(state) && state !== 'UNKNOWN') await this.cancel(last.id);
  }
}
