/**
 * The thin shell around the round scheduler: feeds it events, runs its effects (journal, tasks,
 * timers, aggregation), and answers the services' questions about the open round. Effects run one
 * at a time in order; the scheduler itself stays pure.
 */
import { createOptimizer, openSafetensors, type ServerOptimizer } from '../aggregation/index.js';
import { openFileSource } from '../common/files.js';
import type { Logger } from '../common/logger.js';
import { aggregateRound } from './aggregate.js';
import type { Clock } from './clock.js';
export { systemClock, type Clock } from './clock.js';
import type { ResolvedCoordinatorConfig } from './config.js';
import { CoordinatorError } from './errors.js';
import { EvalTracker } from './evals.js';
import type { EventBus } from './events.js';
import { importInitialModel } from './model-import.js';
import { recoverRun } from './recovery.js';
import type { SiteRegistry } from './registry.js';
import { initialSchedulerState, step } from './round/machine.js';
import type { Effect, RunPlan, SchedulerEvent, SchedulerState } from './round/types.js';
import type { LayoutTensor, SpooledUpload, UploadExpectation, UploadIntent } from './service/upload.js';
import { SecureSide } from './secure/coordinator-side.js';
import type { SecureStageHandlers } from './service/site-service.js';
import { refuseSecureStages } from './service/site-service.js';
import type { ParticipantRecord } from './state/records.js';
import { runPlanFromConfig } from './plan.js';
import type { StateStore } from './state/store.js';

interface RunContext {
  readonly plan: RunPlan;
  readonly optimizer: ServerOptimizer;
  globalSha256: string;
  globalBytes: number;
  /** Round that produced the current global model (0: the initial model). */
  modelRound: number;
  stateSha256: string | undefined;
  serverSteps: number;
  tensors: LayoutTensor[];
}

interface AttemptContext {
  readonly round: number;
  readonly attempt: number;
  readonly startedMs: number;
  bytesUp: number;
  bytesDown: number;
  readonly uploads: Map<string, { intent: UploadIntent; spool: SpooledUpload }>;
}

export interface DriverOptions {
  readonly config: ResolvedCoordinatorConfig;
  readonly store: StateStore;
  readonly registry: SiteRegistry;
  readonly bus: EventBus;
  readonly logger: Logger;
  readonly clock: Clock;
  /** Called when the driver cannot go on (e.g. the journal cannot be written). */
  readonly onFatal: (err: unknown) => void;
}

/** Runs rounds: the scheduler, its effects, and the open round's bookkeeping. */
export class RoundDriver {
  private state: SchedulerState = initialSchedulerState();
  private run: RunContext | undefined;
  private attempt: AttemptContext | undefined;
  private effects: Promise<void> = Promise.resolve();
  private readonly timers = new Map<string, () => void>();
  readonly evals: EvalTracker;
  private readonly log: Logger;
  private readonly startedMs: number;
  /** Secure aggregation middleware, when the run uses it. */
  private secure: SecureSide | undefined;
  private closed = false;

  constructor(private readonly o: DriverOptions) {
    this.log = o.logger;
    this.startedMs = o.clock.now();
    this.evals = new EvalTracker({
      store: o.store,
      bus: o.bus,
      clock: o.clock,
      logger: o.logger,
      onFatal: o.onFatal,
    });
  }

  /** Recovers the configured run from the journal (or starts it) and hands it to the scheduler. */
  async start(): Promise<void> {
    const { config, store } = this.o;
    const cfg = config.run;
    let recovered = recoverRun(store.records(), cfg.id);
    if (!recovered) {
      const initial = await importInitialModel(store, config.model.initial, config.limits.sliceElements);
      await store.append({
        type: 'run-started',
        runId: cfg.id,
        plan: runPlanFromConfig(config),
        strategy: cfg.strategy,
        weighting: cfg.weighting,
        encoding: cfg.encoding,
        train: cfg.train,
        initialModelSha256: initial.sha256,
      });
      recovered = recoverRun(store.records(), cfg.id)!;
    } else if (cfg.rounds > recovered.rounds) {
      await store.append({ type: 'run-extended', runId: cfg.id, rounds: cfg.rounds });
      recovered = recoverRun(store.records(), cfg.id)!;
    }
    const plan: RunPlan = { ...recovered.started.plan, rounds: recovered.rounds };
    if (plan.secure) {
      this.secure = new SecureSide({
        config,
        registry: this.o.registry,
        logger: this.log,
        dispatch: (e) => this.dispatch(e),
        threshold: plan.secure.threshold,
      });
    }
    const model = await this.describeModel(recovered.globalSha256);
    this.run = {
      plan,
      optimizer: createOptimizer(recovered.started.strategy),
      globalSha256: recovered.globalSha256,
      globalBytes: model.bytes,
      modelRound: recovered.nextRound - 1,
      stateSha256: recovered.stateSha256,
      serverSteps: recovered.serverSteps,
      tensors: model.tensors,
    };
    this.evals.restore(cfg.id, recovered.evals);
    await store.pruneSpools();
    this.log.info(
      { runId: cfg.id, round: recovered.nextRound, attempt: recovered.nextAttempt, model: recovered.globalSha256 },
      recovered.committed.length > 0 ? 'resuming run from the journal' : 'starting run',
    );
    this.o.bus.emit('run.started', {
      runId: cfg.id,
      rounds: plan.rounds,
      nextRound: recovered.nextRound,
      strategy: recovered.started.strategy.name,
    });
    for (const site of this.o.registry.connected()) this.dispatch({ type: 'siteConnected', site });
    this.dispatch({ type: 'runStarted', plan, round: recovered.nextRound, attempt: recovered.nextAttempt });
  }

  private async describeModel(sha256: string): Promise<{ bytes: number; tensors: LayoutTensor[] }> {
    const src = await this.o.store.openModel(sha256);
    try {
      const file = await openSafetensors(src);
      return {
        bytes: src.size,
        tensors: file.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape], elements: t.elements })),
      };
    } finally {
      await src.close();
    }
  }

  /** Feeds one event to the scheduler. Refusals are returned, not thrown. */
  dispatch(event: SchedulerEvent): ReturnType<typeof step> {
    const result = step(this.state, event, this.o.clock.now());
    if (!result.ok) {
      this.log.debug({ refusal: result.refusal }, 'event refused');
      return result;
    }
    this.state = result.state;
    for (const effect of result.effects) {
      this.effects = this.effects.then(() => this.runEffect(effect)).catch((err: unknown) => this.o.onFatal(err));
    }
    return result;
  }

  /** Resolves when every effect queued so far has run (tests and shutdown). */
  idle(): Promise<void> {
    return this.effects;
  }

  // ---------------------------------------------------------------- questions from the services

  /** The scheduler state (read-only). */
  get scheduler(): SchedulerState {
    return this.state;
  }

  get runContext(): Readonly<RunContext> | undefined {
    return this.run;
  }

  get uptimeMs(): number {
    return this.o.clock.now() - this.startedMs;
  }

  /** What an upload from `site` must match now; throws ROUND_CLOSED when no round takes uploads. */
  uploadExpectation(): UploadExpectation {
    const s = this.state.run;
    if (!this.run || (s.phase !== 'training' && s.phase !== 'upload')) {
      throw new CoordinatorError('ROUND_CLOSED', `no round is accepting uploads (phase: ${s.phase})`);
    }
    return {
      runId: this.run.plan.runId,
      round: s.round,
      attempt: s.attempt,
      globalSha256: this.run.globalSha256,
      tensors: this.run.tensors,
      encoding: this.secure?.encoding ?? this.o.config.run.encoding,
      maxChunkBytes: this.o.config.limits.maxChunkBytes,
      weighting: this.secure ? 'uniform' : this.o.config.run.weighting,
    };
  }

  /** The secure-aggregation stage handlers for `site` (refusing when the run is plain). */
  secureHandlers(site: string): SecureStageHandlers {
    return this.secure?.handlers(site) ?? refuseSecureStages();
  }

  /** Marks the start of `site`'s upload; throws when the scheduler refuses it. */
  beginUpload(site: string, intent: UploadIntent): void {
    const r = this.dispatch({ type: 'uploadStarted', site, round: intent.round, attempt: intent.attempt });
    if (!r.ok) {
      const code = r.refusal.code === 'NOT_INVITED' ? 'NOT_INVITED' : 'ROUND_CLOSED';
      throw new CoordinatorError(code, `upload refused: ${r.refusal.message}`, { round: intent.round });
    }
  }

  /** A verified upload: it joins the round's sum. */
  completeUpload(site: string, intent: UploadIntent, spool: SpooledUpload): boolean {
    if (this.attempt && this.attempt.round === intent.round && this.attempt.attempt === intent.attempt) {
      this.attempt.uploads.set(site, { intent, spool });
    }
    const r = this.dispatch({ type: 'uploadCompleted', site, round: intent.round, attempt: intent.attempt, weight: intent.weight });
    if (r.ok) this.o.bus.emit('upload.done', { runId: this.run!.plan.runId, round: intent.round, attempt: intent.attempt, site, bytes: spool.bytes, weight: intent.weight });
    return r.ok;
  }

  /** Drops `site` from the attempt (bad upload, failed training). Stale reports are ignored. */
  failSite(site: string, round: number, attempt: number, reason: string): void {
    const r = this.dispatch({ type: 'siteFailed', site, round, attempt, reason });
    if (r.ok) {
      this.log.warn({ site, round, attempt, reason }, 'site dropped from round');
      this.o.bus.emit('site.dropped', { runId: this.run?.plan.runId ?? '', round, attempt, site, reason });
    }
  }

  countBytes(direction: 'up' | 'down', n: number): void {
    if (!this.attempt) return;
    if (direction === 'up') this.attempt.bytesUp += n;
    else this.attempt.bytesDown += n;
  }

  siteConnected(site: string): void {
    this.dispatch({ type: 'siteConnected', site });
    const run = this.run;
    if (run && this.state.run.phase === 'finished') this.evals.requestFinal(site, this.o.registry, this.finalEvalTask());
  }

  siteDisconnected(site: string): void {
    const before = this.state.run;
    this.dispatch({ type: 'siteDisconnected', site });
    if ((before.phase === 'training' || before.phase === 'upload') && before.roster[site]) {
      this.o.bus.emit('site.dropped', { runId: before.plan.runId, round: before.round, attempt: before.attempt, site, reason: 'disconnected' });
    }
  }

  /** Stops timers; pending effects are left to finish. */
  close(): void {
    this.closed = true;
    for (const cancel of this.timers.values()) cancel();
    this.timers.clear();
    this.evals.close();
  }

  // ---------------------------------------------------------------- effects

  private async runEffect(effect: Effect): Promise<void> {
    if (this.closed) return;
    const run = this.run!;
    const runId = run.plan.runId;
    switch (effect.type) {
      case 'phaseEntered':
        this.log.info({ round: effect.round, attempt: effect.attempt, phase: effect.phase }, `phase ${effect.phase}`);
        this.o.bus.emit('phase.changed', { runId, round: effect.round, attempt: effect.attempt, phase: effect.phase, deadlineMs: effect.deadline });
        return;
      case 'armDeadline': {
        for (const cancel of this.timers.values()) cancel();
        this.timers.clear();
        const key = `${effect.round}.${effect.attempt}.${effect.phase}`;
        const ms = Math.max(0, effect.at - this.o.clock.now());
        this.timers.set(key, this.o.clock.setTimer(ms, () => {
          this.timers.delete(key);
          this.dispatch({ type: 'deadline', round: effect.round, attempt: effect.attempt, phase: effect.phase });
        }));
        return;
      }
      case 'recordRoundOpened':
        await this.o.store.append({ type: 'round-opened', runId, round: effect.round, attempt: effect.attempt });
        this.attempt = { round: effect.round, attempt: effect.attempt, startedMs: this.o.clock.now(), bytesUp: 0, bytesDown: 0, uploads: new Map() };
        this.o.bus.emit('round.opened', { runId, round: effect.round, attempt: effect.attempt });
        return;
      case 'sendTrainTasks':
        return this.sendTrainTasks(effect.round, effect.attempt, effect.sites);
      case 'sendKeysTasks':
        return this.secure?.sendKeys(runId, effect.round, effect.attempt, effect.sites);
      case 'sendSharesTasks':
        return this.secure?.sendShares(effect.round, effect.attempt, effect.sites);
      case 'requestConsistency':
        return this.secure?.sendConsistency(effect.round, effect.attempt, effect.survivors, effect.dropped);
      case 'requestUnmask':
        return this.secure?.sendUnmask(effect.round, effect.attempt, effect.sites);
      case 'cancelSites':
        for (const site of effect.sites) {
          this.o.registry.send(site, { kind: 'cancel', runId, round: effect.round, attempt: effect.attempt, reason: effect.reason });
          for (const upload of this.o.registry.get(site)?.uploads ?? []) upload.abort(new CoordinatorError('ROUND_CLOSED', effect.reason));
          this.o.bus.emit('site.dropped', { runId, round: effect.round, attempt: effect.attempt, site, reason: effect.reason });
        }
        return;
      case 'startAggregation':
        // Not awaited: aggregation reports back through the scheduler, other effects may run meanwhile.
        void this.aggregate(effect.round, effect.attempt, effect.participants.map((p) => p.site));
        return;
      case 'commitRound':
        return this.commit(effect.round, effect.attempt, effect.participants.map((p) => p.site), effect.dropped, effect.modelSha256);
      case 'recordRoundAborted':
        this.log.warn({ round: effect.round, attempt: effect.attempt, reason: effect.reason }, 'round attempt aborted');
        await this.o.store.append({ type: 'round-aborted', runId, round: effect.round, attempt: effect.attempt, reason: effect.reason });
        await this.o.store.pruneSpools();
        this.o.bus.emit('round.aborted', { runId, round: effect.round, attempt: effect.attempt, reason: effect.reason });
        return;
      case 'runFinished':
        if (!this.o.store.records().some((r) => r.body.type === 'run-finished' && r.body['runId'] === runId && r.body['rounds'] === effect.rounds)) {
          await this.o.store.append({ type: 'run-finished', runId, rounds: effect.rounds, modelSha256: run.globalSha256 });
        }
        this.log.info({ rounds: effect.rounds, model: run.globalSha256 }, 'run finished');
        this.o.bus.emit('run.finished', { runId, rounds: effect.rounds, modelSha256: run.globalSha256 });
        this.evals.startFinal(run.modelRound, run.globalSha256, this.o.registry, this.finalEvalTask(), this.o.config.run.deadlines.evalS * 1000);
        return;
      case 'runFailed':
        this.log.error({ reason: effect.reason }, 'run failed');
        await this.o.store.append({ type: 'run-failed', runId, reason: effect.reason });
        this.o.bus.emit('run.failed', { runId, reason: effect.reason });
        return;
    }
  }

  private finalEvalTask() {
    const run = this.run!;
    return {
      kind: 'eval' as const,
      runId: run.plan.runId,
      model: { sha256: run.globalSha256, sizeBytes: run.globalBytes },
      modelRound: run.modelRound,
      deadlineMs: this.o.clock.now() + this.o.config.run.deadlines.evalS * 1000,
    };
  }

  private sendTrainTasks(round: number, attempt: number, sites: readonly string[]): void {
    const run = this.run!;
    const s = this.state.run;
    const deadline = s.phase === 'training' ? s.deadline : this.o.clock.now();
    const evaluate = this.o.config.run.evaluate;
    if (evaluate) this.evals.expect(run.plan.runId, run.modelRound, run.globalSha256, sites, this.o.config.run.deadlines.evalS * 1000);
    for (const site of sites) {
      const sent = this.o.registry.send(site, {
        kind: 'train',
        runId: run.plan.runId,
        round,
        attempt,
        model: { sha256: run.globalSha256, sizeBytes: run.globalBytes },
        modelRound: run.modelRound,
        tensors: run.tensors,
        encoding: this.secure?.encoding ?? this.o.config.run.encoding,
        train: this.o.config.run.train,
        ...(this.secure ? this.secure.trainExtras(round, attempt, site, sites) : { shares: [], shareHolders: [] }),
        trainingDeadlineMs: deadline,
        uploadDeadlineMs: deadline + this.o.config.run.deadlines.uploadS * 1000,
        maxChunkBytes: this.o.config.limits.maxChunkBytes,
        evaluate: evaluate && !this.evals.hasReport(run.modelRound, site),
      });
      if (!sent) this.dispatch({ type: 'siteFailed', site, round, attempt, reason: 'no open task stream' });
    }
  }

  private async aggregate(round: number, attempt: number, sites: readonly string[]): Promise<void> {
    const run = this.run!;
    const att = this.attempt!;
    try {
      const inputs = sites.map((site) => {
        const u = att.uploads.get(site);
        if (!u) throw new Error(`no verified upload from ${site}`);
        return { site, weight: u.intent.weight, path: u.spool.path };
      });
      const t0 = this.o.clock.now();
      const elements = run.tensors.reduce((n, t) => n + t.elements, 0);
      const mean = this.secure ? await this.secure.mean(round, attempt, inputs.map((i) => i.path), elements, openFileSource) : undefined;
      const result = await aggregateRound({
        ...(mean ? { mean } : {}),
        store: this.o.store,
        globalSha256: run.globalSha256,
        inputs,
        optimizer: run.optimizer,
        step: run.serverSteps + 1,
        previousStateSha256: run.stateSha256,
        sliceElements: this.o.config.limits.sliceElements,
        openSpool: openFileSource,
        metadata: { fedhpc_run: run.plan.runId, fedhpc_round: String(round) },
      });
      this.log.info({ round, attempt, phase: 'aggregate', ms: this.o.clock.now() - t0, model: result.modelSha256 }, 'aggregated');
      this.dispatch({ type: 'aggregated', round, attempt, modelSha256: result.modelSha256 });
    } catch (err) {
      this.log.error({ round, attempt, phase: 'aggregate', err }, 'aggregation failed');
      this.dispatch({ type: 'aggregationFailed', round, attempt, reason: (err as Error).message });
    }
  }

  private async commit(round: number, attempt: number, sites: readonly string[], dropped: readonly string[], modelSha256: string): Promise<void> {
    const run = this.run!;
    const att = this.attempt!;
    const participants: ParticipantRecord[] = sites.map((site) => {
      const u = att.uploads.get(site)!;
      return {
        site,
        weight: u.intent.weight,
        samples: u.intent.samples,
        tokens: u.intent.tokens,
        steps: u.intent.steps,
        trainLoss: Number.isFinite(u.intent.trainLoss) ? u.intent.trainLoss : -1,
        deltaSha256: u.spool.sha256,
        dataManifestSha256: u.intent.dataManifestSha256,
      };
    });
    const parentSha256 = run.globalSha256;
    const model = await this.describeModel(modelSha256);
    // The journal append is the commit point: the checkpoint is already on disk under its hash.
    await this.o.store.append({
      type: 'round-committed',
      runId: run.plan.runId,
      round,
      attempt,
      participants,
      dropped: [...dropped],
      parentSha256,
      modelSha256,
      strategy: this.o.config.run.strategy,
      serverStep: run.serverSteps + 1,
      bytesUp: att.bytesUp,
      bytesDown: att.bytesDown,
      startedMs: att.startedMs,
    });
    run.globalSha256 = modelSha256;
    run.globalBytes = model.bytes;
    run.modelRound = round;
    run.stateSha256 = modelSha256;
    run.serverSteps += 1;
    for (const site of sites) {
      const rec = this.o.registry.get(site);
      if (rec) rec.roundsContributed += 1;
    }
    await this.o.store.pruneSpools();
    const seconds = (this.o.clock.now() - att.startedMs) / 1000;
    this.log.info({ round, attempt, phase: 'commit', participants: sites, dropped, model: modelSha256, seconds }, 'round committed');
    this.o.bus.emit('round.committed', {
      runId: run.plan.runId,
      round,
      attempt,
      participants: [...sites],
      dropped: [...dropped],
      modelSha256,
      bytesUp: att.bytesUp,
      bytesDown: att.bytesDown,
      seconds,
    });
    this.dispatch({ type: 'committed', round, attempt });
  }
}
