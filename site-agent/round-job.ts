/**
 * The site's work on one train task, the round job: download the global model, score it when
 * asked, train a shard through the runner, upload the delta (masked under secure aggregation) with
 * any kept work folded in, and remember the contribution for its receipt. One job runs at a time; a
 * lost connection stops it. A newer task or the coordinator's cancel stops it too, but a shard in
 * training then finishes and is kept (kept-work.ts): the next job waits for it, bounded by its own
 * training deadline, and folds it. The eval-only task after the last round runs here too, bounded
 * by its deadline and its connection since no job carries it.
 */
import type * as grpc from '@grpc/grpc-js';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../common/logger.js';
import type { SiteActivity } from './activity.js';
import type { ResolvedSiteConfig } from './config.js';
import { SiteAgentError } from './errors.js';
import type { FaultPoint } from './faults.js';
import type { CoordinatorLink } from './link.js';
import type { AgentMetrics } from './metrics.js';
import { stderrSink, TransferMeter } from './progress.js';
import type { FoldTerms } from './fold.js';
import { KeptWork, keptWorkDir } from './kept-work.js';
import { sweepSavedShards, uploadWithKeptWork } from './missed-work.js';
import type { Contribution } from './receipt.js';
import { afterUploadFailure, classifyFailure } from './retry.js';
import { markUploaded, namedShard, savedShard, saveTrainedResult, trainedResult } from './round-upload.js';
import type { TrainResult, Runner } from './runners/runner.js';
import type { SecureAttempt } from './secure/stages.js';
import { isSha256 } from '../common/files.js';
import { shardClients } from './client.js';
import { type DownloadOptions, downloadModel, pruneModelCache } from './download.js';
import { type TransferProgress, transferPolicy } from './transfer.js';
import { attemptKey, type AttemptRef, type CancelTask, type EvalTask, type ModelRef, type TrainTask } from './wire.js';

/**
 * How long an eval-only task may take when the coordinator names no deadline (the coordinator's
 * default `deadlines.evalS`): no evaluation is waited for without a bound.
 */
const EVAL_DEADLINE_FALLBACK_MS = 600_000;

/** How long a job waits for the previous round's shard to finish when its task names no training deadline. */
const DRAIN_FALLBACK_MS = 3_600_000;

/** How long a stopping agent waits for its jobs to end. */
const STOP_GRACE_MS = 5_000;

/** The calls a round job makes: transfers on the client, a score, a failure report. */
export type RoundLink = Pick<CoordinatorLink, 'client' | 'address' | 'reportEval' | 'reportFailure'>;

/** What round jobs need from the agent around them. */
export interface RoundJobsOptions {
  readonly config: ResolvedSiteConfig;
  readonly runner: Runner;
  readonly log: Logger;
  /** Where downloaded models are cached, by content. */
  readonly cacheDir: string;
  /** Written as the job goes; heartbeats read it. */
  readonly activity: SiteActivity;
  readonly metrics: AgentMetrics | undefined;
  /** The connection the next call goes on. */
  readonly link: () => RoundLink;
  /** Remembers an accepted upload, to sign its receipt once the round commits. */
  readonly contributed: (c: Contribution) => void;
  /** The secure session of attempt `a` (REFUSED when this site made no keys for it). */
  readonly secureAttempt: (a: AttemptRef) => SecureAttempt;
  readonly fault: FaultPoint;
  /** Reconnects when `err` says the coordinator forgot this session; whether it did. */
  readonly rejoinIfForgotten: (err: unknown, during: string) => boolean;
  /** Called when a job has finished and the site is between rounds. */
  readonly onIdle: () => void;
  /** Resolves once the receipts in flight have their verdicts (kept work folded earlier may be settled by them). */
  readonly receiptsSettled?: () => Promise<void>;
}

interface Job {
  readonly key: string;
  /** The task's global model: a newer task from the same model makes a shard in training worthless. */
  readonly model: string;
  /** Stops the job: downloads, waits, the upload. */
  readonly soft: AbortController;
  /** Stops the runner too. */
  readonly hard: AbortController;
  /** Stopped by a newer task or the coordinator's cancel: a trained shard is kept, one in training finishes first. */
  keepOnStop: boolean;
  done: Promise<void>;
}

/** Runs the round job of each train task, one at a time, and the eval-only task. */
export class RoundJobs {
  private job: Job | undefined;
  /** The current job and stopped ones whose shard still finishes training, to be kept. */
  private readonly live = new Set<Job>();
  private store: Promise<KeptWork> | undefined;

  constructor(private readonly o: RoundJobsOptions) {}

  /** The site's kept work (opened once, from `<workDir>/kept/`). */
  kept(): Promise<KeptWork> {
    this.store ??= KeptWork.open(keptWorkDir(this.o.config.workDir), this.o.log);
    return this.store;
  }

  /**
   * Starts the job of `t`, unless it already runs; a job of another attempt is stopped first, its
   * shard kept (finishing its training) unless `t` trains from the same model.
   */
  start(t: TrainTask): void {
    const key = attemptKey(t);
    if (this.job?.key === key) return;
    this.stop('superseded by a new round task', { keep: this.job !== undefined && this.job.model !== t.globalModel.sha256 });
    // A stopped shard from this task's own model (a new attempt of its round) would be superseded: not waited for.
    for (const j of this.live) if (j.model === t.globalModel.sha256) j.hard.abort(new SiteAgentError('CANCELLED', 'a new attempt trains from the same model', false));
    const job: Job = { key, model: t.globalModel.sha256, soft: new AbortController(), hard: new AbortController(), keepOnStop: false, done: Promise.resolve() };
    this.live.add(job);
    job.done = this.train(t, job)
      .catch((err) => this.reportFailure(t, err, job))
      .finally(() => this.live.delete(job));
    this.job = job;
  }

  /** Stops the job of the cancelled attempt, if it is the one running; its shard is kept. */
  cancel(c: CancelTask): void {
    if (this.job?.key !== attemptKey(c)) return;
    this.o.log.warn({ round: c.round, reason: c.reason }, 'round cancelled by the coordinator');
    this.stop(c.reason, { keep: true });
  }

  /**
   * Stops the running job, if any: its signal aborts with CANCELLED and `reason`. With `keep`, a
   * shard in training finishes (the runner is not stopped) and is kept, as is a trained one.
   */
  stop(reason: string, o: { readonly keep: boolean } = { keep: false }): void {
    const job = this.job;
    if (!job) return;
    const why = new SiteAgentError('CANCELLED', reason, false);
    job.keepOnStop = o.keep;
    job.soft.abort(why);
    if (!o.keep) job.hard.abort(why);
    this.job = undefined;
    this.o.activity.activity = 'idle';
  }

  /**
   * Stops every job, shards still training for keeps included (the agent is stopping), and waits
   * for them to end, at most `graceMs` (a runner that ignores its signal is not waited for).
   */
  async stopAll(reason: string, graceMs = STOP_GRACE_MS): Promise<void> {
    this.stop(reason);
    const jobs = [...this.live];
    for (const j of jobs) j.hard.abort(new SiteAgentError('CANCELLED', reason, false));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(jobs.map((j) => j.done)), new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
  }

  /**
   * The eval-only task after the last round. It belongs to no round job, so nothing else stops it:
   * it is bounded by the task's deadline and by `connection`. An evaluation still running at the
   * deadline is abandoned (the runner is told to stop; the agent stops waiting even if it does not)
   * and the coordinator, which stops waiting then too, goes on without this site's score.
   */
  async evaluateFinal(e: EvalTask, connection: AbortSignal): Promise<void> {
    const modelRound = e.modelRound;
    const deadlineMs = e.deadlineMs ?? Date.now() + EVAL_DEADLINE_FALLBACK_MS;
    const deadline = new AbortController();
    const timer = setTimeout(
      () => deadline.abort(new SiteAgentError('DEADLINE_PASSED', `the evaluation of round ${modelRound}'s model passed its deadline`, false, { modelRound, deadlineMs })),
      Math.max(0, deadlineMs - Date.now()),
    );
    const signal = AbortSignal.any([connection, deadline.signal]);
    try {
      await stopWaitingOnAbort(this.evaluate(e.runId, e.model, modelRound, signal), signal);
    } catch (err) {
      if (deadline.signal.aborted) {
        this.o.log.warn({ modelRound, deadlineMs, activity: this.o.activity.activity }, 'evaluation abandoned at the coordinator\'s deadline');
      } else if (connection.aborted) {
        this.o.log.info({ modelRound }, 'evaluation stopped: the connection closed (the coordinator asks again after the next Join)');
      } else if (!this.o.rejoinIfForgotten(err, 'evaluation')) {
        this.o.log.warn({ modelRound, err: { message: (err as Error).message } }, 'evaluation failed');
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** Scores `model` (the model round `modelRound` produced) and reports the score. */
  private async evaluate(runId: string, model: ModelRef, modelRound: number, signal: AbortSignal): Promise<void> {
    const log = this.o.log.child({ round: modelRound, phase: 'training' });
    const { path } = await downloadModel(this.o.link().client, model, this.downloadOptions(signal, () => undefined));
    const r = await this.o.runner.evaluate(path, signal);
    // A runner that finished after all must not report a score the caller has given up on.
    signal.throwIfAborted();
    try {
      await this.o.link().reportEval({ runId, modelRound, modelSha256: model.sha256, loss: r.loss, samples: r.samples });
    } catch (err) {
      // The coordinator's final word on the score (not asked, more samples than asked for, closed)
      // is about this score, not the round: training goes on. Anything else is the round's failure.
      const verdict = classifyFailure(err);
      if (verdict.source !== 'coordinator' || verdict.retryable) throw err;
      log.warn({ modelRound, loss: r.loss, samples: r.samples, code: verdict.code, reason: verdict.reason }, 'evaluation refused by the coordinator');
      return;
    }
    log.info({ modelRound, loss: r.loss, samples: r.samples }, 'evaluation reported');
  }

  /** The job of one train task, from download to receipt. */
  private async train(t: TrainTask, job: Job): Promise<void> {
    const signal = job.soft.signal;
    const activity = this.o.activity;
    activity.round = t.round;
    const log = this.o.log.child({ round: t.round, attempt: t.attempt });
    activity.activity = 'download';
    const dl = await this.download(t.globalModel, signal, log);
    log.info({ phase: 'training', bytes: dl.bytes, cached: dl.bytes === 0 }, dl.bytes === 0 ? 'global model already held' : 'global model downloaded');
    if (t.evaluate) await this.evaluate(t.runId, t.globalModel, t.modelRound, signal);

    // Bonawitz et al. 2017, round 2 begins with the shares neighbours sealed for this site.
    const secure = t.encoding.startsWith('secagg') ? this.o.secureAttempt(t) : undefined;
    secure?.session.receiveShares(t.shares, t.shareHolders);

    await this.waitForStopped(job, t, log);
    const kept = await this.kept();
    await sweepSavedShards({ workDir: this.o.config.workDir, cacheDir: this.o.cacheDir, task: t, kept, log, signal });
    await this.pruneModels(t, log);
    activity.activity = 'training';
    const roundDir = join(this.o.config.workDir, `round-${t.round}`);
    // The runner stops only with the hard signal: a job stopped to keep its shard lets it finish.
    const result = await this.trainShard(t, dl.path, roundDir, secure !== undefined, log, job);
    if (signal.aborted) {
      if (job.keepOnStop) return this.keepMissed(t, dl.path, result, roundDir, log, job);
      // A lost connection: the shard stays saved in its round directory, for the task coming back.
      throw signal.reason;
    }

    activity.activity = 'upload';
    await this.o.receiptsSettled?.();
    // The keys task's parameters make the weight word, so a secure round mixes by them; a plain one by the task's own.
    const terms: FoldTerms | undefined = secure
      ? { weighting: secure.params.weighting, maxSiteWeight: secure.params.maxSiteWeight, clip: secure.params.clip }
      : t.weighting !== undefined && t.maxSiteWeight !== undefined
        ? { weighting: t.weighting, maxSiteWeight: t.maxSiteWeight, clip: undefined }
        : undefined;
    let res;
    try {
      res = await uploadWithKeptWork({
        client: this.o.link().client,
        coordinator: this.o.link().address,
        config: this.o.config,
        task: t,
        globalPath: dl.path,
        result,
        secure,
        log,
        signal,
        kept,
        terms,
        roundDir,
        onMeter: (m) => (activity.meter = m),
        onProgress: (done, total) => {
          activity.progress = done / total;
          if (done >= total / 2) this.o.fault('upload');
        },
      });
    } catch (err) {
      if (afterUploadFailure(err, { folded: false, stoppedToKeep: signal.aborted && job.keepOnStop }) !== 'keep') throw err;
      return this.keepMissed(t, dl.path, result, roundDir, log, job, err);
    }
    const { outcome, folded } = res;
    log.info({ phase: 'upload', bytes: outcome.receivedBytes, folded: folded.length }, 'delta uploaded');
    // What the receipt will say the upload was recorded under: the receiver's hash, or the parts'.
    const delta = isSha256(outcome.sha256) ? { sha256: outcome.sha256, parts: outcome.parts ?? [] } : undefined;
    const contribution = {
      runId: t.runId,
      round: t.round,
      parentSha256: t.globalModel.sha256,
      dataManifestSha256: result.dataManifestSha256,
      allocation: result.allocation,
      foldedAllocations: folded.map((p) => p.allocation),
      delta,
    };
    // Pending before anything else: a crash from here on leaves the parts for the receipt (or ALREADY_COUNTED) to settle.
    await kept.markFolded(folded, { runId: t.runId, round: t.round, parentSha256: contribution.parentSha256, dataManifestSha256: contribution.dataManifestSha256, attempt: t.attempt, ...(delta ? { delta } : {}) });
    // The shard stays until the next round's sweep: a later attempt of this round uploads it again.
    await markUploaded(roundDir);
    this.o.metrics?.moved('up', outcome.receivedBytes);
    this.o.metrics?.roundTrained();
    this.o.contributed(contribution);
    activity.activity = 'idle';
    activity.progress = -1;
    this.o.onIdle();
  }

  /**
   * Keeps `result`, trained for `t` but not counted in its round, on disk to fold into a later upload
   * (kept-work.ts), and clears the round directory.
   */
  private async keepMissed(t: TrainTask, globalPath: string, result: TrainResult, roundDir: string, log: Logger, job: Job, cause?: unknown): Promise<void> {
    const why = cause === undefined ? (job.soft.signal.reason as Error).message : classifyFailure(cause).reason;
    log.warn({ phase: 'upload', why, samples: result.samples, tokens: result.tokens }, 'the trained delta missed its round: keeping it to fold into the next upload');
    const kept = await this.kept();
    try {
      await kept.keep({ runId: t.runId, round: t.round, attempt: t.attempt, baseModelSha256: t.globalModel.sha256, baseModelRound: t.modelRound, basePath: globalPath, result, tensors: t.tensors }, job.hard.signal);
    } catch (err) {
      // Stopped on purpose (the agent stops), the shard stays saved for the sweep of the next run.
      if (job.hard.signal.aborted) throw err;
      log.warn({ err: { message: (err as Error).message } }, 'the trained delta could not be kept: it is lost to the federation');
      throw err;
    }
    await rm(roundDir, { recursive: true, force: true });
    if (this.job === job) {
      this.o.activity.activity = 'idle';
      this.o.onIdle();
    }
  }

  /**
   * Waits for stopped jobs whose shards still finish training (the runner trains one shard at a
   * time), until `t`'s training deadline: past it they are stopped and nothing of theirs is kept.
   */
  private async waitForStopped(job: Job, t: TrainTask, log: Logger): Promise<void> {
    const others = [...this.live].filter((j) => j !== job);
    if (others.length === 0) return;
    log.info({ phase: 'training', jobs: others.length }, 'waiting for the shard of an earlier task to finish training: it is kept and folded');
    const deadlineMs = t.trainingDeadlineMs ?? Date.now() + DRAIN_FALLBACK_MS;
    const timer = setTimeout(() => {
      log.info({ phase: 'training' }, 'the earlier shard still trains at this round\'s training deadline: stopped, nothing of it kept');
      for (const j of others) j.hard.abort(new SiteAgentError('DEADLINE_PASSED', `round ${t.round}'s training deadline passed while an earlier shard still trained`, false));
    }, Math.max(0, deadlineMs - Date.now()));
    try {
      await stopWaitingOnAbort(Promise.all(others.map((j) => j.done)), job.soft.signal);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Keeps the model cache to what can still be read: this task's model, those of jobs still
   * training, and the bases of shards saved in round directories (after the sweep, this round's).
   * Kept work holds its own delta, so its base need not stay.
   */
  private async pruneModels(t: TrainTask, log: Logger): Promise<void> {
    const keep = new Set([t.globalModel.sha256, ...[...this.live].map((j) => j.model)]);
    const dirs = await readdir(this.o.config.workDir, { withFileTypes: true }).catch(() => []);
    for (const d of dirs) {
      const base = d.isDirectory() && /^round-\d+$/.test(d.name) ? (await savedShard(join(this.o.config.workDir, d.name)))?.task?.baseModelSha256 : undefined;
      if (base !== undefined) keep.add(base);
    }
    const removed = await pruneModelCache(this.o.cacheDir, keep);
    if (removed.length > 0) log.info({ phase: 'training', removed: removed.map((s) => s.slice(0, 12)) }, 'older global models removed from the cache');
  }

  /** Trains the shard in `roundDir`, or takes the one a previous run of the agent left complete there. */
  private async trainShard(t: TrainTask, globalPath: string, roundDir: string, secure: boolean, log: Logger, job: Job): Promise<TrainResult> {
    // A shard trained for this very task (the agent restarted mid-upload), or in a plain round for an
    // earlier attempt from the same model (the coordinator opened the round again), is not retrained.
    const saved = secure ? undefined : await trainedResult(roundDir, t);
    const kept = saved?.result;
    // A Slurm shard's job record lives in its round dir: a restarted agent re-attaches to it.
    if (!kept && this.o.runner.kind !== 'slurm') await rm(roundDir, { recursive: true, force: true });
    await mkdir(join(roundDir, 'out'), { recursive: true });
    if (saved) {
      const again = saved.attempt !== t.attempt;
      log.info({ phase: 'training', steps: saved.result.steps, ...(again ? { trainedInAttempt: saved.attempt } : {}) }, again ? 'shard already trained in an earlier attempt of this round from the same model: uploading it, not training again' : 'shard already trained for this task: uploading it');
      return saved.result;
    }
    const activity = this.o.activity;
    const t0 = Date.now();
    const result = await this.o.runner.train({
      runId: t.runId,
      round: t.round,
      attempt: t.attempt,
      globalPath,
      globalSha256: t.globalModel.sha256,
      roundDir,
      train: t.trainConfig,
      signal: job.hard.signal,
      deadlineMs: t.trainingDeadlineMs,
      secure,
      onProgress: (p) => {
        // A stopped job's shard trains on unseen: heartbeats report the current job.
        if (this.job !== job) return;
        activity.progress = p.step / p.steps;
        activity.trainLoss = p.loss;
      },
    });
    const named = namedShard(result);
    await saveTrainedResult(roundDir, t, named);
    log.info({ phase: 'training', steps: result.steps, loss: result.trainLoss, seconds: (Date.now() - t0) / 1000, ...(result.idleWaitMs ? { idleWaitMs: result.idleWaitMs } : {}) }, 'shard trained');
    return named;
  }

  /** How this site downloads models: into its cache, from the aggregator shards where the coordinator names them. */
  private downloadOptions(signal: AbortSignal, onProgress: TransferProgress): DownloadOptions {
    return { cacheDir: this.o.cacheDir, signal, onProgress, policy: transferPolicy(this.o.config), shardClient: shardClients(this.o.config, this.o.link().address) };
  }

  /** Downloads a model with progress (TTY line or log lines, and heartbeats). */
  private async download(model: ModelRef, signal: AbortSignal, log: Logger): Promise<{ path: string; bytes: number }> {
    const activity = this.o.activity;
    const meter = new TransferMeter('download', model.sizeBytes, log.child({ phase: 'download' }), stderrSink());
    activity.meter = meter;
    try {
      const dl = await downloadModel(this.o.link().client, model, this.downloadOptions(signal, (done, total) => {
        activity.progress = done / total;
        meter.update(done);
      }));
      if (dl.bytes > 0) meter.finish();
      this.o.metrics?.moved('down', dl.bytes);
      return dl;
    } finally {
      if (activity.meter === meter) activity.meter = undefined;
    }
  }

  /** Tells the coordinator this site failed the attempt, unless the job was stopped on purpose. */
  private reportFailure(t: TrainTask, err: unknown, job: Job): void {
    if (job.soft.signal.aborted) return; // cancelled by the coordinator or by a disconnect: nothing to report
    // A report on a forgotten session would be refused too; after the new Join the coordinator decides.
    if (this.o.rejoinIfForgotten(err, `round ${t.round}`)) return;
    const verdict = classifyFailure(err);
    const e = err instanceof SiteAgentError ? err : undefined;
    const code = e?.code ?? (err as grpc.ServiceError).code;
    const message = (err as Error).message;
    this.o.log.error({ round: t.round, err: { code, message } }, 'round failed at this site');
    this.o.metrics?.failed(code);
    this.o.activity.activity = 'idle';
    this.o.link().reportFailure(t, { code: e?.code ?? 'TRAINING_FAILED', message, retryable: verdict.retryable });
  }
}

/**
 * Settles with `work`, or rejects with the signal's reason as soon as it aborts: a runner that
 * ignores its signal cannot hold the caller past a deadline. A late outcome of `work` is dropped.
 */
function stopWaitingOnAbort<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    void work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
