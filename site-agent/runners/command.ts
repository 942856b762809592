/**
 * The `command` runner: one training shard as a local process (e.g. `python3
 * site-agent/trainers/torch_shard.py --round-dir DIR`), for one-node sites and CI. The process
 * gets its own process group, so an aborted round ends the trainer and everything it started.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { SiteAgentError } from '../errors.js';
import {
  ProgressTail,
  RunnerConfigError,
  exitOutcome,
  findExecutable,
  plannedSteps,
  prepareRoundDir,
  refusalError,
  shardSpecShape,
  tailOf,
  verifyShard,
  writeSessionSpec,
} from './round-dir.js';
import { USAGE_GPUS_MAX } from '../../common/usage.js';
import { busySpanMs, wallClockAllocation, type Allocation } from '../usage.js';
import type { PersistentCapable, PersistentLaunch, PersistentTrainer, SessionWindow } from './persistent.js';
import type { EvalResult, Runner, TrainRequest, TrainResult } from './runner.js';

/** Site config of the `command` runner (`runner.kind = "command"`). */
export const commandRunnerSchema = z
  .object({
    kind: z.literal('command'),
    /** The trainer's argv; `--round-dir DIR` is appended for a shard. */
    command: z.array(z.string().min(1)).min(1),
    /** Working directory of the trainer (default: the agent's). */
    cwd: z.string().optional(),
    /** Extra environment variables for the trainer (added to the agent's). */
    env: z.record(z.string()).default({}),
    /** Reruns after a crash (an exit code other than 0, 64, 65, 75) before the round fails. */
    maxRetries: z.number().int().min(0).max(5).default(1),
    /** Reruns after exit 75 (interrupted, resumable from scratch/) before the round fails. */
    maxResumes: z.number().int().min(0).max(20).default(3),
    /** Longest a shard may run, reruns included. */
    maxRuntimeS: z.number().int().positive().default(24 * 3600),
    /** Time between SIGTERM and SIGKILL when a round is aborted. */
    killGraceS: z.number().min(0).max(600).default(10),
    /** Arguments for an evaluation; `{model}` and `{modelConfig}` are replaced. Prints `{"loss","samples"}`. */
    evalArgs: z.array(z.string()).default(['--eval', '--model', '{model}']),
    evalTimeoutS: z.number().int().positive().default(3600),
    /** GPUs the trainer holds: its rounds' usage is wall-clock × gpus (receipts); unset, the usage is unknown. */
    gpus: z.number().int().min(0).max(USAGE_GPUS_MAX).optional(),
    ...shardSpecShape,
  })
  .strict();

export type CommandRunnerOptions = z.input<typeof commandRunnerSchema>;
export type ResolvedCommandRunner = z.output<typeof commandRunnerSchema>;

interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** Runs training shards and evaluations as local processes. */
export class CommandRunner implements Runner, PersistentCapable {
  readonly kind = 'command';
  private readonly env: NodeJS.ProcessEnv;
  private readonly cwd: string;
  private nextCursor: number | undefined;

  /** Checks at construction (agent start) that the trainer program can be executed. */
  constructor(private readonly o: ResolvedCommandRunner) {
    this.cwd = o.cwd ?? process.cwd();
    this.env = { ...process.env, ...o.env };
    if (findExecutable(o.command[0]!, this.env['PATH'], this.cwd) === undefined) {
      throw new RunnerConfigError('command', [`runner.command[0] ${o.command[0]} is not an executable file (PATH ${this.env['PATH'] ?? '(unset)'}, cwd ${this.cwd})`]);
    }
  }

  async train(req: TrainRequest): Promise<TrainResult> {
    req.signal.throwIfAborted();
    await prepareRoundDir(req, this.o, this.nextCursor === undefined ? {} : { cursor: this.nextCursor });
    const startedMs = Date.now();
    const deadline = startedMs + this.o.maxRuntimeS * 1000;
    const tail = new ProgressTail(join(req.roundDir, 'progress.jsonl'), plannedSteps(req.train), req.onProgress, this.o.progressPollMs).start(req.signal);
    const log = join(req.roundDir, 'trainer.log');
    const context = { roundDir: req.roundDir, log };
    let crashes = 0;
    let resumes = 0;
    try {
      for (;;) {
        const exit = await this.run([...this.o.command.slice(1), '--round-dir', req.roundDir], log, req.signal, deadline);
        const outcome = exitOutcome(exit.code);
        if (outcome === 'done') {
          await tail.stop();
          const { result, done } = await verifyShard(req, this.o, tail);
          if (done.nextCursor !== undefined) this.nextCursor = done.nextCursor;
          return { ...result, allocation: wallClockAllocation(this.o.gpus, startedMs, Date.now(), busySpanMs(result)) };
        }
        if (outcome === 'bad-spec' || outcome === 'bad-global') throw refusalError(outcome, await tailOf(log), context);
        const how = exit.code === null ? `was killed by ${exit.signal}` : `exited with ${exit.code}`;
        if (outcome === 'resumable' && ++resumes > this.o.maxResumes) {
          throw new SiteAgentError('TRAINING_FAILED', `the trainer was interrupted (exit 75) ${resumes} times; giving up after ${this.o.maxResumes} resumes`, true, context);
        }
        if (outcome === 'crash' && ++crashes > this.o.maxRetries) {
          throw new SiteAgentError('TRAINING_FAILED', `the trainer ${how} (${crashes} runs): ${await tailOf(log)}`, true, { ...context, exitCode: exit.code ?? -1 });
        }
      }
    } finally {
      await tail.stop();
    }
  }

  get outputDtype(): string {
    return this.o.outputDtype;
  }

  get persistentRetries(): number {
    return this.o.maxRetries + this.o.maxResumes;
  }

  /**
   * The persistent trainer of an overlapped run: the command with `--session-dir DIR`, its output
   * in `DIR/trainer.log`, its process group's leader in `DIR/trainer.pid` — a trainer an earlier
   * agent process left running (it was killed) is ended first, so that two never share a session.
   */
  async startPersistent(launch: PersistentLaunch): Promise<PersistentTrainer> {
    await writeSessionSpec(launch, this.o);
    const pidFile = join(launch.dir, 'trainer.pid');
    const orphan = Number(await readFile(pidFile, 'utf8').catch(() => ''));
    if (Number.isInteger(orphan) && orphan > 0) {
      killGroup(orphan, 'SIGKILL');
      launch.log?.warn({ phase: 'training', pid: orphan }, 'ended a persistent trainer an earlier agent process left running');
    }
    const stop = new AbortController();
    const exit = this.run([...this.o.command.slice(1), '--session-dir', launch.dir], join(launch.dir, 'trainer.log'), stop.signal, Date.now() + this.o.maxRuntimeS * 1000, undefined, (pid) => {
      // Without the record an orphan is not found after a crash of the agent; the trainer still runs.
      writeFile(pidFile, String(pid)).catch((err: unknown) => launch.log?.warn({ phase: 'training', err: { message: (err as Error).message } }, 'could not record the persistent trainer\'s pid'));
    });
    const exited = exit.then(
      (e) => e.code,
      () => null,
    );
    void exited.then(() => rm(pidFile, { force: true })).catch(() => undefined);
    return {
      exited,
      kill: async () => {
        stop.abort(new SiteAgentError('CANCELLED', 'the persistent trainer was stopped', false));
        await exited;
      },
    };
  }

  /** A persistent trainer's share: this process's clock between the snapshots × the configured GPUs. */
  sessionAllocation(w: SessionWindow): Promise<Allocation> {
    return Promise.resolve(wallClockAllocation(this.o.gpus, w.fromMs ?? w.sessionStartedMs, w.toMs, w.busyMs));
  }

  async evaluate(modelPath: string, signal: AbortSignal): Promise<EvalResult> {
    const args = this.o.evalArgs.map((a) => a.replaceAll('{model}', modelPath).replaceAll('{modelConfig}', this.o.modelConfig ?? ''));
    let stdout = '';
    const exit = await this.run([...this.o.command.slice(1), ...args], undefined, signal, Date.now() + this.o.evalTimeoutS * 1000, (chunk) => {
      stdout = (stdout + chunk).slice(-65_536); // the result is the last line: keep a bounded tail
    });
    if (exit.code !== 0) {
      throw new SiteAgentError('TRAINING_FAILED', `the evaluation ${exit.code === null ? `was killed by ${exit.signal}` : `exited with ${exit.code}`}`, true, { model: modelPath });
    }
    return parseEvalOutput(stdout, modelPath);
  }

  /**
   * Runs the trainer with `args` in its own process group; stdout and stderr go to `log` (or, for
   * evaluations, stdout to `onStdout`). Ends the group on abort or at `deadline`: SIGTERM, then
   * SIGKILL after the grace period. Resolves when the process has exited.
   */
  private run(args: string[], log: string | undefined, signal: AbortSignal, deadline: number, onStdout?: (s: string) => void, onSpawn?: (pid: number) => void): Promise<Exit> {
    signal.throwIfAborted();
    const fd = log === undefined ? undefined : openSync(log, 'a');
    let child;
    try {
      child = spawn(this.o.command[0]!, args, {
        cwd: this.cwd,
        env: this.env,
        detached: true, // a process group of its own: the kill reaches the trainer's children too
        stdio: ['ignore', fd ?? 'pipe', fd ?? 'ignore'],
      });
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
    if (child.pid !== undefined) onSpawn?.(child.pid);
    child.stdout?.setEncoding('utf8').on('data', (s: string) => onStdout?.(s));
    return new Promise<Exit>((resolvePromise, reject) => {
      let stopped: unknown;
      let killTimer: NodeJS.Timeout | undefined;
      const stop = (reason: unknown): void => {
        if (stopped !== undefined) return;
        stopped = reason;
        killGroup(child.pid, 'SIGTERM');
        killTimer = setTimeout(() => killGroup(child.pid, 'SIGKILL'), this.o.killGraceS * 1000);
      };
      const onAbort = (): void => stop(signal.reason ?? new SiteAgentError('CANCELLED', 'round aborted', false));
      const timer = setTimeout(
        () => stop(new SiteAgentError('TRAINING_FAILED', `the trainer ran past its limit of ${this.o.maxRuntimeS} s and was stopped`, true)),
        Math.max(0, deadline - Date.now()),
      );
      signal.addEventListener('abort', onAbort, { once: true });
      child.once('error', (err) => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        reject(new SiteAgentError('TRAINING_FAILED', `cannot start ${this.o.command[0]}: ${err.message}`, false, {}, { cause: err }));
      });
      child.once('close', (code, sig) => {
        clearTimeout(timer);
        clearTimeout(killTimer);
        signal.removeEventListener('abort', onAbort);
        // Whatever is left in the group (a child that ignored SIGTERM) goes with the leader.
        if (stopped !== undefined) killGroup(child.pid, 'SIGKILL');
        if (stopped !== undefined) reject(stopped);
        else resolvePromise({ code, signal: sig });
      });
    });
  }
}

function killGroup(pid: number | undefined, sig: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, sig);
  } catch {
    // ESRCH: the group is already gone
  }
}

const evalLine = z.object({ loss: z.number().finite(), samples: z.number().int().positive() }).passthrough();

/** The evaluation result: the last stdout line that is a `{"loss","samples"}` JSON object. */
export function parseEvalOutput(stdout: string, modelPath: string): EvalResult {
  const lines = stdout.trim().split('\n').reverse();
  for (const line of lines) {
    if (!line.trimStart().startsWith('{')) continue;
    try {
      const p = evalLine.safeParse(JSON.parse(line));
      if (p.success) return { loss: p.data.loss, samples: p.data.samples };
    } catch {
      // not JSON: a log line
    }
  }
  throw new SiteAgentError('TRAINING_FAILED', `the evaluation printed no {"loss","samples"} line with a finite loss (last output: ${lines.slice(0, 2).reverse().join(' | ').slice(0, 300)})`, true, {
    model: modelPath,
  });
}
