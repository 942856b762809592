/**
 * The `slurm` runner: a training shard as an sbatch job rendered from a template, followed with
 * squeue / scontrol / sacct until it ends. After exit 75 or a preemption the job resumes from its
 * own checkpoint by exactly one path: Slurm's requeue (`requeue: true`: the job is submitted with
 * `--requeue` and the batch script runs `scontrol requeue` on exit 75; the agent never resubmits)
 * or the agent's resubmission (`requeue: false`: `--no-requeue`, overriding the cluster's
 * JobRequeue). Job ids are kept in `<roundDir>/job.json`, so a restarted agent re-attaches.
 * With `submitAhead` the next round's job is submitted as soon as a shard is done and waits on its
 * node for the model (slurm-ahead.ts); the task that comes adopts it, anything else cancels it.
 * An overlapped run's persistent trainer is one job for the whole run (slurm-persistent.ts).
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import type { Logger } from '../../common/logger.js';
import { SiteAgentError } from '../errors.js';
import { busySpanMs, type Allocation } from '../usage.js';
import { parseEvalOutput } from './command.js';
import { ProgressTail, RunnerConfigError, exitOutcome, plannedSteps, prepareRoundDir, refusalError, shardSpecShape, tailOf, verifyShard, writeSessionSpec } from './round-dir.js';
import type { PersistentCapable, PersistentLaunch, PersistentTrainer, SessionWindow } from './persistent.js';
import type { EvalResult, Runner, TrainRequest, TrainResult } from './runner.js';
import { blockPlaceholderIssues, ignoredDirectives, renderJobScript, sbatchDirectives } from './sbatch-template.js';
import { markReady, nextRoundDir, readModelWait, readRecord, waitingAhead, waitingAheadJobs, writeRecord, type JobRecord } from './slurm-ahead.js';
import { readSessionJob, startSessionJob } from './slurm-persistent.js';
import { AHEAD_GAVE_UP_EXIT, REQUIRED_SLURM_COMMANDS, SlurmCli, SlurmCommandError, formatTimeLimit, parseTimeLimit, shellQuote as q, type ModelWait, type Run, type SlurmCommands } from './slurm-cli.js';
import { SlurmJobWatcher } from './slurm-watch.js';

export { SlurmPendingError } from './slurm-watch.js';

const line = z.string().min(1).regex(/^[^\r\n]*$/, 'a single line');
/** Site config of the `slurm` runner (`runner.kind = "slurm"`). */
export const slurmRunnerSchema = z
  .object({
    kind: z.literal('slurm'),
    /** Path of the sbatch template (default: deploy/slurm/train.sbatch.tmpl); or `templateInline`. */
    template: z.string().optional(),
    templateInline: z.string().optional(),
    partition: line,
    account: line.optional(),
    /** `--gpus` (a count or "type:count"). */
    gpus: z.union([z.number().int().min(0), line]).optional(),
    cpusPerTask: z.number().int().positive().optional(),
    memory: line.optional(),
    timeLimit: line.refine((s) => parseTimeLimit(s) !== undefined, 'a Slurm time limit: M, M:S, H:M:S, D-H, D-H:M or D-H:M:S'),
    modules: z.array(line).default([]),
    container: z.object({ image: line, runtime: z.enum(['apptainer', 'singularity']).default('apptainer'), args: z.array(line).default([]) }).strict().optional(),
    /** The interpreter with torch on the compute nodes (often not the first python3 on PATH). */
    python: line,
    trainer: line,
    trainerArgs: z.array(line).default([]),
    /** Variables exported by the batch script. */
    env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a shell variable name'), z.string()).default({}),
    /** `--signal=B:USR1@N`: the trainer's warning before the time limit (0: none). */
    signalLeadS: z.number().int().min(0).max(86_400).default(300),
    requeue: z.boolean().default(true),
    /** Extra sbatch options, one `#SBATCH` line each (e.g. "--qos=normal"). */
    sbatchOptions: z.array(line).default([]),
    /** Working directory of the job (default: the round directory). */
    cwd: line.optional(),
    pollIntervalMs: z.number().int().min(100).max(300_000).default(5000),
    commandTimeoutS: z.number().int().min(1).max(600).default(60),
    /** Longest a job may stay PENDING before the round is reported as not startable. */
    maxPendingS: z.number().int().positive().default(6 * 3600),
    /** How long a preempted job may take to show up requeued (requeue mode). */
    requeueSettleS: z.number().int().min(0).max(3600).default(60),
    /** How long Slurm's commands may fail in a row (controller restart) before the round fails. */
    controllerGraceS: z.number().int().min(0).max(3600).default(300),
    /** After scancel, how long to wait for the job to end. */
    cancelWaitS: z.number().int().min(1).max(3600).default(120),
    maxRetries: z.number().int().min(0).max(5).default(1),
    maxResumes: z.number().int().min(0).max(50).default(5),
    evalArgs: z.array(z.string()).default(['--eval', '--model', '{model}']),
    evalTimeLimit: line.refine((s) => parseTimeLimit(s) !== undefined, 'a Slurm time limit').default('1:00:00'),
    ...shardSpecShape,
    // Shared filesystems may show DONE.json to the agent's node a while after the job wrote it.
    doneWaitMs: z.number().int().min(0).max(600_000).default(15_000),
    /**
     * Submit round r+1's job as soon as round r's shard is done, so its queue wait overlaps the
     * round's aggregation; once running it waits for the model, idle (docs/operators.md).
     */
    submitAhead: z.boolean().default(false),
    /** How long a job submitted ahead, once running, waits for its model before it exits 69; added to its time limit. */
    aheadWaitS: z.number().int().min(10).max(86_400).default(1800),
    /** How often a job submitted ahead looks for the model's READY marker on the shared filesystem. */
    aheadPollMs: z.number().int().min(100).max(60_000).default(2000),
  })
  .strict();

export type SlurmRunnerOptions = z.input<typeof slurmRunnerSchema>;
export type ResolvedSlurmRunner = z.output<typeof slurmRunnerSchema>;

/** Where the runner keeps evaluation jobs, and the environment of the Slurm commands. */
export interface SlurmRunnerContext {
  readonly workDir: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Slurm's commands; default: the real ones on `env`'s PATH. Tests pass a scripted controller. */
  readonly cli?: SlurmCommands;
  /** Where the runner says what it did ahead of a task (submitted, adopted, cancelled, waited). */
  readonly log?: Logger | undefined;
  /** Told how long each shard's job waited for its model (AgentMetrics.modelWaited). */
  readonly metrics?: { modelWaited(ms: number): void } | undefined;
}

/** A round request; `deadlineMs` (epoch ms) is when the coordinator stops waiting for the shard. */
export type SlurmTrainRequest = TrainRequest & { readonly deadlineMs?: number };

function defaultTemplate(): string {
  const candidates = ['../../deploy/slurm/train.sbatch.tmpl', '../../../deploy/slurm/train.sbatch.tmpl'].map((p) => fileURLToPath(new URL(p, import.meta.url)));
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new RunnerConfigError('slurm', [`default template not found (looked at ${candidates.join(', ')}); set runner.template`]);
  return found;
}

/** Runs training shards and evaluations as Slurm batch jobs, and an overlapped run's trainer as one job. */
export class SlurmRunner implements Runner, PersistentCapable {
  readonly kind = 'slurm';
  private readonly cli: SlurmCommands;
  private readonly jobs: SlurmJobWatcher;
  private readonly template: string;
  private readonly timeLimitS: number;
  /** Whether the template's run block is generated ({{run}}), so the agent chooses the trainer's command. */
  private readonly generatedRun: boolean;
  private nextCursor: number | undefined;

  /**
   * Checks at agent start, not at the first round: the Slurm commands are on PATH, the template's
   * multi-line placeholders stand alone on their lines, and it renders to a script that passes
   * `bash -n` with every `#SBATCH` line before the first command (sbatch ignores those after it).
   * Throws {@link RunnerConfigError} naming what is wrong.
   */
  constructor(
    private readonly o: ResolvedSlurmRunner,
    private readonly ctx: SlurmRunnerContext,
  ) {
    const env = ctx.env ?? process.env;
    this.cli = ctx.cli ?? new SlurmCli({ env, timeoutMs: o.commandTimeoutS * 1000 });
    this.jobs = new SlurmJobWatcher(this.cli, o);
    if (o.template !== undefined && o.templateInline !== undefined) throw new RunnerConfigError('slurm', ['set runner.template or runner.templateInline, not both']);
    const missing = this.cli.missing([...REQUIRED_SLURM_COMMANDS, 'bash']);
    if (missing.length > 0) throw new RunnerConfigError('slurm', [`Slurm commands not found on PATH (${env['PATH'] ?? '(unset)'}): ${missing.join(', ')}`]);
    const path = o.templateInline === undefined ? (o.template ?? defaultTemplate()) : undefined;
    try {
      this.template = o.templateInline ?? readFileSync(path!, 'utf8');
    } catch (err) {
      throw new RunnerConfigError('slurm', [`cannot read template ${path}: ${(err as Error).message}`], { cause: err });
    }
    this.timeLimitS = parseTimeLimit(o.timeLimit)!;
    const where = path ?? 'runner.templateInline';
    const misplaced = blockPlaceholderIssues(this.template);
    if (misplaced.length > 0) throw new RunnerConfigError('slurm', misplaced.map((issue) => `template ${where} ${issue}`));
    const runs = this.template.match(/\{\{\s*run\s*\}\}/g)?.length ?? 0;
    // A template either lets the agent generate its run block, or runs its own steps (the NeMo
    // recipe's three srun steps) and prints the start and exit markers the runner reads itself.
    const ownsRun = runs === 0 && this.template.includes('fedhpc-start') && this.template.includes('fedhpc-exit');
    this.generatedRun = runs === 1;
    if (runs !== 1 && !ownsRun) {
      throw new RunnerConfigError('slurm', [`template ${where} must contain {{run}} exactly once (found ${runs}), or print the fedhpc-start and fedhpc-exit markers itself`]);
    }
    if (o.submitAhead && runs !== 1) {
      throw new RunnerConfigError('slurm', [`runner.submitAhead needs a template with {{run}}: the wait for the model is part of the generated run block, and template ${where} runs its own steps`]);
    }
    const check = '/nonexistent/round-0';
    const script = this.render(check, 'fedhpc-check', this.trainCommand(check), o.requeue, o.timeLimit, o.submitAhead ? this.modelWait(check) : undefined);
    const syntax = spawnSync('bash', ['-n'], { input: script, encoding: 'utf8', timeout: 10_000, env });
    if (syntax.status !== 0) {
      const msg = (syntax.stderr || syntax.error?.message || `exit ${syntax.status}`).trim().replaceAll('bash: ', '');
      throw new RunnerConfigError('slurm', [`template ${where} does not render to a valid bash script: ${msg}`]);
    }
    const late = ignoredDirectives(script);
    if (late !== undefined) {
      throw new RunnerConfigError('slurm', [`template ${where} renders #SBATCH lines after the first command (line ${late.line}: ${late.command}), which sbatch ignores: ${late.ignored.join(' ')}`]);
    }
  }

  private trainCommand(roundDir: string): string {
    return this.launch([this.o.python, this.o.trainer, ...this.o.trainerArgs, '--round-dir', roundDir]);
  }

  private launch(argv: string[]): string {
    const c = this.o.container;
    return (c ? [c.runtime, 'exec', ...c.args, c.image, ...argv] : argv).map(q).join(' ');
  }

  private directives(roundDir: string, name: string, requeue: boolean, timeLimit: string): string[] {
    return sbatchDirectives(this.o, { roundDir, name, requeue, timeLimit });
  }

  private render(roundDir: string, name: string, command: string, requeue: boolean, timeLimit: string, modelWait?: ModelWait): string {
    return renderJobScript(this.template, this.o, { roundDir, name, command, requeue, timeLimit, modelWait });
  }

  private modelWait(roundDir: string): ModelWait {
    return { roundDir, pollMs: this.o.aheadPollMs, giveUpS: this.o.aheadWaitS };
  }

  async train(req: SlurmTrainRequest): Promise<TrainResult> {
    req.signal.throwIfAborted();
    // A job submitted ahead for another directory waits for a task that is not this one.
    await this.dropAhead((dir) => dir !== req.roundDir, `round ${req.round} (attempt ${req.attempt}) of run ${req.runId} came instead`);
    let rec = await readRecord(req.roundDir);
    if (waitingAhead(rec) && rec.runId === req.runId && rec.round === req.round) {
      await this.adoptAhead(req, rec);
    } else if (rec === undefined || rec.runId !== req.runId || rec.round !== req.round || rec.attempt !== req.attempt || rec.globalSha256 !== req.globalSha256) {
      if (rec !== undefined) await this.jobs.cancelStale(rec, req.signal);
      for (const f of ['READY', 'MODEL_WAIT.json']) await rm(join(req.roundDir, f), { force: true });
      await prepareRoundDir(req, this.o, this.cursor());
      rec = { version: 1, runId: req.runId, round: req.round, attempt: req.attempt, globalSha256: req.globalSha256, jobs: [], resumes: 0, crashes: 0 };
      await writeRecord(req.roundDir, rec);
      await markReady(req);
    }
    const tail = new ProgressTail(join(req.roundDir, 'progress.jsonl'), plannedSteps(req.train), req.onProgress, this.o.progressPollMs).start(req.signal);
    try {
      return await this.follow(req, rec, tail);
    } finally {
      await tail.stop();
    }
  }

  private cursor(): Record<string, unknown> {
    return this.nextCursor === undefined ? {} : { cursor: this.nextCursor };
  }

  /** The task of a job submitted ahead came: lay out its directory, then `READY` last; the job trains. */
  private async adoptAhead(req: SlurmTrainRequest, rec: JobRecord & { ahead: NonNullable<JobRecord['ahead']> }): Promise<void> {
    await prepareRoundDir(req, this.o, this.cursor());
    Object.assign(rec, { attempt: req.attempt, globalSha256: req.globalSha256 });
    rec.ahead.adoptedAt = new Date().toISOString();
    await writeRecord(req.roundDir, rec); // before READY: a restarted agent then follows it as this task's job
    await markReady(req);
    this.ctx.log?.info({ round: req.round, attempt: req.attempt, phase: 'training', jobId: rec.jobs.at(-1)?.id ?? rec.submitting }, 'adopted the job submitted ahead: model ready, it trains');
  }

  /**
   * Round `req.round`'s shard is done: submits round r+1's job now, into `<workDir>/round-<r+1>`,
   * to wait there for its model. Best effort: a failure costs only the head start.
   */
  private async submitAhead(req: SlurmTrainRequest): Promise<void> {
    const dir = nextRoundDir(req);
    const log = this.ctx.log?.child({ round: req.round + 1, phase: 'training' });
    if (dir === undefined) {
      log?.warn({ roundDir: req.roundDir }, 'not submitting ahead: the round directory is not named round-<r>');
      return;
    }
    try {
      const old = await readRecord(dir);
      if (old !== undefined && !waitingAhead(old)) {
        log?.info({ dir }, 'not submitting ahead: the next round directory is in use');
        return;
      }
      if (old !== undefined) await this.jobs.cancelStale(old, req.signal);
      const entries = await readdir(dir).catch(() => [] as string[]);
      if (old === undefined && entries.length > 0) {
        log?.info({ dir }, 'not submitting ahead: the next round directory is in use');
        return;
      }
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir, { recursive: true });
      const rec: JobRecord = { version: 1, runId: req.runId, round: req.round + 1, attempt: 0, globalSha256: '', jobs: [], resumes: 0, crashes: 0, ahead: { afterRound: req.round, submittedAt: new Date().toISOString() } };
      await writeRecord(dir, rec);
      const jobId = await this.submit(dir, rec, req.signal, true);
      log?.info({ jobId, aheadWaitS: this.o.aheadWaitS }, "submitted the next round's job ahead: it waits for the model");
    } catch (err) {
      log?.warn({ err: { message: (err as Error).message } }, "could not submit the next round's job ahead: it is submitted when its task comes");
    }
  }

  /** Cancels the jobs submitted ahead whose directory `drop` selects, and removes their directories; never throws. */
  private async dropAhead(drop: (dir: string, rec: JobRecord) => boolean, why: string): Promise<void> {
    for (const { dir, rec } of await waitingAheadJobs(this.ctx.workDir)) {
      if (!drop(dir, rec)) continue;
      const jobId = rec.jobs.at(-1)?.id;
      if (jobId !== undefined) await this.jobs.cancel(jobId);
      else if (rec.submitting !== undefined) for (const id of await this.cli.jobsNamed(rec.submitting, AbortSignal.timeout(this.o.commandTimeoutS * 1000)).catch(() => [])) await this.jobs.cancel(id);
      await rm(dir, { recursive: true, force: true });
      this.ctx.log?.info({ round: rec.round, phase: 'training', jobId, why }, 'cancelled the job submitted ahead: its task will not come');
    }
  }

  /** The run ended (or the site left it): cancels its jobs submitted ahead. */
  async endRun(runId: string): Promise<void> {
    await this.dropAhead((_, rec) => rec.runId === runId, `run ${runId} ended`).catch(() => undefined);
  }

  /** The agent stops: cancels every job submitted ahead (a restarted agent would not be told why they wait). */
  async close(): Promise<void> {
    await this.dropAhead(() => true, 'the agent stops').catch(() => undefined);
  }

  /** Follows the round's current job (re-attaching to a recorded one) until the shard is done. */
  private async follow(req: SlurmTrainRequest, rec: JobRecord, tail: ProgressTail): Promise<TrainResult> {
    // A submission in flight when the agent died comes first: its job (if sbatch got that far) is the current one.
    const submit = (): Promise<string> => this.submit(req.roundDir, rec, req.signal);
    let jobId = rec.submitting !== undefined ? ((await this.adopt(req, rec)) ?? (await submit())) : (rec.jobs.at(-1)?.id ?? (await submit()));
    for (;;) {
      // A job submitted ahead may run its wait too before Slurm's time limit.
      const waitS = rec.ahead !== undefined && jobId === rec.jobs[0]?.id ? this.o.aheadWaitS : 0;
      const end = await this.jobs.watch(jobId, req.roundDir, req.signal, { requeue: this.o.requeue, timeLimitS: this.timeLimitS, waitS, deadlineMs: req.deadlineMs });
      const log = join(req.roundDir, `slurm-${jobId}.out`);
      const context = { jobId, slurmState: end.state, exitCode: end.exitCode ?? -1, log };
      const outcome = exitOutcome(end.exitCode ?? null);
      if (end.state === 'COMPLETED' && outcome === 'done') {
        await tail.stop();
        const { result, done } = await verifyShard(req, this.o, tail);
        if (done.nextCursor !== undefined) this.nextCursor = done.nextCursor;
        if (this.o.submitAhead) await this.submitAhead(req);
        // Every job this round ran counts (resubmissions, a job submitted ahead and its wait).
        return this.withModelWait(req, jobId, { ...result, allocation: { kind: 'slurm-jobs', jobs: rec.jobs.map((j) => j.id), busyMs: busySpanMs(result) } });
      }
      if (end.exitCode === AHEAD_GAVE_UP_EXIT && waitS > 0) {
        // Gave up waiting before its task came (adopted too late): a fresh job, no crash counted.
        this.ctx.log?.info({ round: req.round, phase: 'training', jobId }, 'the job submitted ahead gave up waiting for the model: submitting a new one');
        jobId = await submit();
        continue;
      }
      if (outcome === 'bad-spec' || outcome === 'bad-global') throw refusalError(outcome, await tailOf(log), context);
      const interrupted = outcome === 'resumable' || end.state === 'PREEMPTED' || end.state === 'NODE_FAIL';
      if (interrupted && this.o.requeue) {
        // Slurm owned the resume and did not requeue: resubmitting now would be the second path.
        throw new SiteAgentError('TRAINING_FAILED', `Slurm job ${jobId} ended ${end.state} (exit ${end.exitCode ?? '?'}) and was not requeued: ${await tailOf(log)}`, true, context);
      }
      if (end.state === 'TIMEOUT' || end.state === 'CANCELLED' || end.state === 'DEADLINE') {
        const why = end.state === 'TIMEOUT' ? `hit its time limit ${this.o.timeLimit}` : end.state === 'CANCELLED' ? 'was cancelled outside the agent' : 'passed its deadline';
        throw new SiteAgentError('TRAINING_FAILED', `Slurm job ${jobId} ${why} (${end.state})`, true, context);
      }
      if (interrupted) {
        if (++rec.resumes > this.o.maxResumes) throw new SiteAgentError('TRAINING_FAILED', `Slurm job ${jobId} was interrupted ${rec.resumes} times; giving up`, true, context);
      } else if (++rec.crashes > this.o.maxRetries) {
        throw new SiteAgentError('TRAINING_FAILED', `Slurm job ${jobId} ended ${end.state} (exit ${end.exitCode ?? '?'}) after ${rec.crashes} runs: ${await tailOf(log)}`, true, context);
      }
      jobId = await submit();
    }
  }

  /** `result` with the job's wait for its model, reported where the agent looks (log, metrics). */
  private async withModelWait(req: SlurmTrainRequest, jobId: string, result: TrainResult): Promise<TrainResult> {
    const idleWaitMs = await readModelWait(req.roundDir);
    if (idleWaitMs === undefined) return result;
    this.ctx.log?.info({ round: req.round, attempt: req.attempt, phase: 'training', jobId, idleWaitMs }, 'the job submitted ahead held its nodes idle, waiting for the model');
    this.ctx.metrics?.modelWaited(idleWaitMs);
    return { ...result, idleWaitMs };
  }

  /** After a restart mid-submission: the job named in the record, if Slurm has it. */
  private async adopt(req: SlurmTrainRequest, rec: JobRecord): Promise<string | undefined> {
    const name = rec.submitting;
    if (name === undefined) return undefined;
    const [id] = await this.cli.jobsNamed(name, req.signal);
    if (id === undefined) return undefined;
    rec.jobs.push({ id, name, submittedAt: new Date().toISOString() });
    delete rec.submitting;
    await writeRecord(req.roundDir, rec);
    return id;
  }

  /** Submits a job for `dir`; `ahead`: one that waits for its model first, its time limit lengthened by the wait. */
  private async submit(dir: string, rec: JobRecord, signal: AbortSignal, ahead = false): Promise<string> {
    const name = `fedhpc-r${rec.round}-${ahead ? 'ahead' : `a${rec.attempt}`}-${randomBytes(4).toString('hex')}`;
    rec.submitting = name;
    await writeRecord(dir, rec); // first, so a restart finds a job whose id we never saw
    const script = join(dir, `job-${rec.jobs.length + 1}.sbatch`);
    const timeLimit = ahead ? formatTimeLimit(this.timeLimitS + this.o.aheadWaitS) : this.o.timeLimit;
    const id = await this.sbatch(script, { roundDir: dir, name, command: this.trainCommand(dir), timeLimit, modelWait: ahead ? this.modelWait(dir) : undefined }, signal);
    rec.jobs.push({ id, name, submittedAt: new Date().toISOString() });
    delete rec.submitting;
    await writeRecord(dir, rec);
    return id;
  }

  /**
   * Writes `job`'s batch script to `script` and submits it in the runner's resume mode. The options
   * that keep the resume paths apart are repeated on the command line, which wins over whatever a
   * site's template says; so is the time limit of a job submitted ahead, lengthened by its wait.
   */
  private async sbatch(script: string, job: { roundDir: string; name: string; command: string; timeLimit: string; modelWait?: ModelWait | undefined }, signal: AbortSignal): Promise<string> {
    const { roundDir, name, timeLimit, modelWait } = job;
    await writeFile(script, this.render(roundDir, name, job.command, this.o.requeue, timeLimit, modelWait), { mode: 0o700 });
    const flags = this.directives(roundDir, name, this.o.requeue, timeLimit).filter((d) => /^--(job-name|requeue|no-requeue|signal|output|open-mode)/.test(d) || (modelWait !== undefined && d.startsWith('--time=')));
    return this.cli.sbatch(script, flags, signal).catch((err: unknown) => {
      if (!(err instanceof SlurmCommandError)) throw err;
      throw new SiteAgentError('TRAINING_FAILED', `cannot submit the training job: ${err.message}`, true, { script }, { cause: err });
    });
  }

  get outputDtype(): string {
    return this.o.outputDtype;
  }

  /** Ends of the session's job (a crash, a job not requeued) the session survives, as the shards' retries and resumes. */
  get persistentRetries(): number {
    return this.o.maxRetries + this.o.maxResumes;
  }

  /**
   * The persistent trainer of an overlapped run: ONE job for the whole run running the trainer with
   * `--session-dir DIR` (its output in `DIR/trainer.log`, Slurm's in `DIR/slurm-<id>.out`), in the
   * runner's resume mode — with `requeue` a preempted job comes back under the same id and the
   * trainer resumes from `state/`. A job an earlier agent process left live is re-attached, never
   * doubled (`DIR/slurm-job.json`). Refused when the template runs its own steps (no `{{run}}`).
   */
  async startPersistent(launch: PersistentLaunch): Promise<PersistentTrainer> {
    if (!this.generatedRun) {
      throw new SiteAgentError('SPEC_INVALID', "the run overlaps training with its syncs (run.train.overlap), but this site's Slurm template runs its own steps (no {{run}}): it cannot start a persistent trainer", false);
    }
    await writeSessionSpec(launch, this.o);
    const dir = launch.dir;
    const command = `${this.launch([this.o.python, this.o.trainer, ...this.o.trainerArgs, '--session-dir', dir])} >> ${q(join(dir, 'trainer.log'))} 2>&1`;
    const deadline = (): AbortSignal => AbortSignal.timeout(this.o.commandTimeoutS * 1000);
    return startSessionJob(launch, String(launch.spec['run_id'] ?? ''), {
      requeue: this.o.requeue,
      jobName: () => `fedhpc-session-${randomBytes(4).toString('hex')}`,
      submit: (name, script) => this.sbatch(script, { roundDir: dir, name, command, timeLimit: this.o.timeLimit }, deadline()),
      watch: (jobId, signal) => this.jobs.watch(jobId, dir, signal, { requeue: this.o.requeue, timeLimitS: this.timeLimitS }),
      jobInfo: (jobId) => this.cli.jobInfo(jobId, deadline()),
      jobsNamed: (name) => this.cli.jobsNamed(name, deadline()),
    });
  }

  /** A persistent trainer's share: its session's Slurm jobs between the snapshots, measured by sacct. */
  async sessionAllocation(w: SessionWindow): Promise<Allocation> {
    const jobs = ((await readSessionJob(w.dir))?.jobs ?? []).map((j) => j.id);
    return { kind: 'slurm-session', jobs, fromMs: w.fromMs, toMs: w.toMs, busyMs: w.busyMs };
  }

  /** Slurm's accounting of `jobIds` (sacct), for the usage receipts declare. */
  accounting(jobIds: readonly string[], signal: AbortSignal): Promise<Run> {
    if (!this.cli.accounting) return Promise.reject(new Error('this Slurm has no sacct'));
    return this.cli.accounting(jobIds, signal);
  }

  /** Scores a model in a batch job (no requeue, no resubmission), parsing its `{loss, samples}` line. */
  async evaluate(modelPath: string, signal: AbortSignal): Promise<EvalResult> {
    const dir = join(this.ctx.workDir, 'eval', `${Date.now()}-${randomBytes(4).toString('hex')}`);
    await mkdir(dir, { recursive: true });
    try {
      const args = this.o.evalArgs.map((a) => a.replaceAll('{model}', modelPath).replaceAll('{modelConfig}', this.o.modelConfig ?? ''));
      const result = join(dir, 'result.jsonl');
      const name = `fedhpc-eval-${randomBytes(4).toString('hex')}`;
      const script = join(dir, 'eval.sbatch');
      await writeFile(script, this.render(dir, name, `${this.launch([this.o.python, this.o.trainer, ...args])} > ${q(result)}`, false, this.o.evalTimeLimit), { mode: 0o700 });
      const id = await this.cli.sbatch(script, [`--job-name=${name}`, '--no-requeue', `--output=${join(dir, 'slurm-%j.out')}`], signal);
      const end = await this.jobs.watch(id, dir, signal, { requeue: false, timeLimitS: parseTimeLimit(this.o.evalTimeLimit)! });
      if (end.state !== 'COMPLETED' || end.exitCode !== 0) {
        throw new SiteAgentError('TRAINING_FAILED', `evaluation job ${id} ended ${end.state} (exit ${end.exitCode ?? '?'}): ${await tailOf(join(dir, `slurm-${id}.out`))}`, true, { jobId: id });
      }
      return parseEvalOutput(await readFile(result, 'utf8').catch(() => ''), modelPath);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}
