/**
 * The thin shell around the round scheduler: feeds it events, runs its effects (journal, tasks,
 * timers, aggregation), and answers the services' questions about the open round. Effects run one
 * at a time in order; the scheduler itself stays pure.
 */
import { createOptimizer, openSafetensors, type ServerOptimizer } from '../aggregation/index.js';
import { openFileSource } from '../common/files.js';
import type { Logger } from '../common/logger.js';
import { aggregateRound } from './aggregate.js';
import { isRobust, robustMean } from './robust.js';
import { KernelPool } from './kernel-pool.js';
import type { Clock } from './clock.js';
export { systemClock, type Clock } from './clock.js';
import type { ResolvedCoordinatorConfig, ResolvedRun, RunningConfig } from './config.js';
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
import { auditedConfig } from './audit/config.js';
import { siteJoinedRecord } from './audit/joins.js';
import { crashPoint, phaseCrashPoint } from './crash-points.js';
import { RunControlState, activeRunAtStart, assertCanStart } from './run-control.js';

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
  /** Runs after each commit is journaled, before the next round opens (checkpoint retention). */
  readonly afterCommit?: (() => Promise<void>) | undefined;
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
  /** Worker threads that decode and sum spools, started at the first aggregation; undefined inside: in-thread kernels. */
  private kernelPool: Promise<KernelPool | undefined> | undefined;
  private readonly startedMs: number;
  /** Secure aggregation middleware, when the run uses it. */
  private secure: SecureSide | undefined;
  private closed = false;
  /** Sites whose task stream closed during their upload, with the timer that drops them. */
  private readonly away = new Map<string, () => void>();
  /** The config of the run being driven; undefined while the coordinator idles without a run. */
  private active: RunningConfig | undefined;
  /** Admin controls (pause, abort, revocation): see run-control.ts. */
  readonly control = new RunControlState();

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

  /**
   * Recovers the active run from the journal (or starts the configured one) and hands it to the
   * scheduler; without either the coordinator idles until an admin starts a run.
   */
  async start(): Promise<void> {
    const run = activeRunAtStart(this.o.store.records(), this.o.config.run);
    if (!run) return this.log.info('no run configured or active: idle until an admin starts one');
    if (run.aborted) return this.log.info({ runId: run.run.id }, 'run was aborted by an admin: idle until an admin starts one');
    this.control.restore(this.o.store.records(), run.run.id);
    await this.drive({ ...this.o.config, run: run.run });
  }

  /** Starts `run` (from `fedhpc admin start`); refused while another run is active. */
  async startRun(run: ResolvedRun, raw: unknown, admin: string): Promise<void> {
    assertCanStart(this.state.run.phase, this.o.store.records(), run.id);
    await this.o.store.append({ type: 'run-requested', runId: run.id, run: raw, admin });
    this.control.restore(this.o.store.records(), run.id);
    await this.drive({ ...this.o.config, run });
  }

  private async drive(config: RunningConfig): Promise<void> {
    this.active = config;
    const { store } = this.o;
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
        config: auditedConfig(config),
      });
      recovered = recoverRun(store.records(), cfg.id)!;
    } else if (cfg.rounds > recovered.rounds) {
      await store.append({ type: 'run-extended', runId: cfg.id, rounds: cfg.rounds });
      recovered = recoverRun(store.records(), cfg.id)!;
    }
    const plan: RunPlan = { ...recovered.started.plan, rounds: recovered.rounds };
    // A run started after another one must not inherit its secure side.
    this.secure = undefined;
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
    this.advance({ type: 'runStarted', plan, round: recovered.nextRound, attempt: recovered.nextAttempt });
  }

  /** The active run's config; only called while a run is driven. */
  private get config(): RunningConfig {
    if (!this.active) throw new CoordinatorError('INTERNAL', 'no run is being driven');
    return this.active;
  }

  /** Feeds an event that opens a round, or holds it while the run is paused (a round boundary). */
  private advance(event: SchedulerEvent): void {
    if (!this.control.hold(event)) return void this.dispatch(event);
    // Held at a round boundary: no deadline may fire while nothing runs.
    for (const cancel of this.timers.values()) cancel();
    this.timers.clear();
    this.log.info({ held: event.type }, 'run paused at a round boundary');
  }

  /** Pauses (the open round completes; no new one opens) or resumes the run. */
  async setPaused(paused: boolean, admin: string): Promise<string> {
    const runId = this.active?.run.id;
    const phase = this.state.run.phase;
    if (!runId || phase === 'idle' || phase === 'finished' || phase === 'failed') {
      throw new CoordinatorError('RUN_STATE', `no active run to ${paused ? 'pause' : 'resume'} (run state: ${phase})`);
    }
    if (this.control.paused === paused) return this.runState;
    await this.o.store.append({ type: paused ? 'run-paused' : 'run-resumed', runId, admin });
    const held = this.control.setPaused(paused);
    if (held) this.dispatch(held);
    return this.runState;
  }

  /** Ends the active run: the open round is aborted, its sites told to cancel; journaled first. */
  async abortRun(admin: string, reason: string): Promise<void> {
    const runId = this.active?.run.id;
    const phase = this.state.run.phase;
    const ended = phase === 'idle' || phase === 'finished' || phase === 'failed';
    if (!runId || this.control.aborted || (ended && !this.control.held)) {
      throw new CoordinatorError('RUN_STATE', `no active run to abort (run state: ${this.active ? this.runState : 'idle'})`);
    }
    const why = `aborted by admin ${admin}${reason ? `: ${reason}` : ''}`;
    await this.o.store.append({ type: 'run-aborted', runId, admin, reason });
    this.control.aborted = true;
    if (this.control.setPaused(false) || phase === 'commit' || phase === 'idle') {
      // Held at a round boundary: no round is open, so the run just ends.
      this.state = { ...this.state, run: { phase: 'failed', plan: this.run!.plan, reason: why } };
      this.effects = this.effects.then(() => this.runEffect({ type: 'runFailed', reason: why })).catch((err: unknown) => this.o.onFatal(err));
      return;
    }
    this.dispatch({ type: 'abortRequested', reason: why });
  }

  /**
   * Drops a revoked site from the open round: before its upload completes through the scheduler's
   * drop path (a dropout under secure aggregation); after, its upload is left out of the sum.
   */
  dropRevokedSite(site: string, reason: string): number {
    const s = this.state.run;
    if (!('round' in s)) return 0;
    this.control.excluded.add(site);
    this.failSite(site, s.round, s.attempt, reason);
    return s.round;
  }

  /** "running", "pausing" (the open round still runs), "paused", or the scheduler's end state. */
  get runState(): string {
    const phase = this.state.run.phase;
    if (this.control.aborted) return 'aborted';
    if (phase === 'finished' || phase === 'failed' || phase === 'idle') return this.control.held ? 'paused' : phase;
    if (this.control.paused) return this.control.held ? 'paused' : 'pausing';
    return 'running';
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
      encoding: this.secure?.encoding ?? this.config.run.encoding,
      maxChunkBytes: this.o.config.limits.maxChunkBytes,
      weighting: this.secure ? 'uniform' : this.config.run.weighting,
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

  /** Idle timeout, stream limit and window of transfers (`limits`). */
  transferLimits(defaultIdleMs = 60_000): { idleMs: number; maxStreamsPerSite: number; windowBytes: number } {
    const l = this.o.config.limits;
    return { idleMs: l.idleTimeoutS ? l.idleTimeoutS * 1000 : defaultIdleMs, maxStreamsPerSite: l.maxStreamsPerSite ?? 8, windowBytes: l.uploadWindowBytes ?? 16 << 20 };
  }

  siteConnected(site: string): void {
    this.journalJoin(site);
    const wasAway = this.away.get(site);
    this.away.delete(site);
    wasAway?.();
    this.dispatch({ type: 'siteConnected', site });
    const s = this.state.run;
    if (wasAway && (s.phase === 'training' || s.phase === 'upload') && s.roster[site]?.status === 'uploading') {
      // Back within the idle timeout: the same task again, so the agent resumes its upload.
      this.log.info({ site, round: s.round, attempt: s.attempt, phase: 'upload' }, 'site back during its upload: task sent again');
      this.sendTrainTasks(s.round, s.attempt, [site]);
    }
    const run = this.run;
    if (run && this.state.run.phase === 'finished') this.evals.requestFinal(site, this.o.registry, this.finalEvalTask());
  }

  siteDisconnected(site: string, awayTooLong = false): void {
    const before = this.state.run;
    if (!awayTooLong && !this.secure && (before.phase === 'training' || before.phase === 'upload') && before.roster[site]?.status === 'uploading' && !this.away.has(site)) {
      // A plain upload resumes: the site keeps its place unless it stays away past the idle timeout.
      const cancel = this.o.clock.setTimer(this.transferLimits().idleMs, () => {
        this.away.delete(site);
        if (!this.o.registry.get(site)?.deliver) this.siteDisconnected(site, true);
      });
      this.away.set(site, cancel);
      return;
    }
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
    for (const cancel of this.away.values()) cancel();
    this.away.clear();
    this.evals.close();
    void this.kernelPool?.then((pool) => pool?.close());
  }

  private kernels(): Promise<KernelPool | undefined> {
    this.kernelPool ??= KernelPool.start().catch((err: unknown) => {
      this.log.warn({ phase: 'aggregate', err }, 'kernel worker pool unavailable; aggregating in the event-loop thread');
      return undefined;
    });
    return this.kernelPool;
  }

  /** Journals a site's join with its certificate fingerprint (audit), in order with the effects. */
  private journalJoin(site: string): void {
    const rec = this.o.registry.get(site);
    if (!rec) return;
    const { fingerprint, agentVersion } = rec;
    this.effects = this.effects
      .then(async () => {
        const record = siteJoinedRecord(this.o.store.records(), site, fingerprint, agentVersion);
        if (record) await this.o.store.append(record);
      })
      .catch((err: unknown) => this.o.onFatal(err));
  }

  // ---------------------------------------------------------------- effects

  private async runEffect(effect: Effect): Promise<void> {
    if (this.closed) return;
    const run = this.run!;
    const runId = run.plan.runId;
    switch (effect.type) {
      case 'phaseEntered':
        this.log.info({ round: effect.round, attempt: effect.attempt, phase: effect.phase }, `phase ${effect.phase}`);
        phaseCrashPoint(effect.phase);
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
        this.control.excluded.clear();
        this.control.leftOut.clear();
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
        this.evals.startFinal(run.modelRound, run.globalSha256, this.o.registry, this.finalEvalTask(), this.config.run.deadlines.evalS * 1000);
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
      deadlineMs: this.o.clock.now() + this.config.run.deadlines.evalS * 1000,
    };
  }

  private sendTrainTasks(round: number, attempt: number, sites: readonly string[]): void {
    const run = this.run!;
    const s = this.state.run;
    const deadline = s.phase === 'training' ? s.deadline : this.o.clock.now();
    const evaluate = this.config.run.evaluate;
    if (evaluate) this.evals.expect(run.plan.runId, run.modelRound, run.globalSha256, sites, this.config.run.deadlines.evalS * 1000);
    for (const site of sites) {
      const sent = this.o.registry.send(site, {
        kind: 'train',
        runId: run.plan.runId,
        round,
        attempt,
        model: { sha256: run.globalSha256, sizeBytes: run.globalBytes },
        modelRound: run.modelRound,
        tensors: run.tensors,
        encoding: this.secure?.encoding ?? this.config.run.encoding,
        train: this.config.run.train,
        ...(this.secure ? this.secure.trainExtras(round, attempt, site, sites) : { shares: [], shareHolders: [] }),
        trainingDeadlineMs: deadline,
        uploadDeadlineMs: deadline + this.config.run.deadlines.uploadS * 1000,
        maxChunkBytes: this.o.config.limits.maxChunkBytes,
        maxStreams: this.o.config.limits.maxStreamsPerSite,
        evaluate: evaluate && !this.evals.hasReport(run.modelRound, site),
      });
      if (!sent) this.dispatch({ type: 'siteFailed', site, round, attempt, reason: 'no open task stream' });
    }
  }

  private async aggregate(round: number, attempt: number, sites: readonly string[]): Promise<void> {
    const run = this.run!;
    const att = this.attempt!;
    try {
      // A site revoked after its upload: plain rounds leave it out; a masked input cannot be taken
      // out of a secure sum, so that attempt restarts (fresh keys) without the site.
      const revoked = sites.filter((site) => this.control.excluded.has(site));
      if (revoked.length > 0 && this.secure) throw new Error(`revoked site(s) ${revoked.join(', ')} in the masked sum`);
      sites = sites.filter((site) => !this.control.excluded.has(site));
      for (const site of revoked) this.control.leftOut.add(site);
      if (sites.length < run.plan.minSites) throw new Error(`only ${sites.length} of ${run.plan.minSites} required uploads remain after revocation`);
      const inputs = sites.map((site) => {
        const u = att.uploads.get(site);
        if (!u) throw new Error(`no verified upload from ${site}`);
        // The spool holds the raw wire bytes: aggregation decodes them by the run's plain encoding
        // (a secure round passes its unmasked `mean` instead and never decodes these).
        return { site, weight: u.intent.weight, path: u.spool.path, encoding: this.config.run.encoding };
      });
      const t0 = this.o.clock.now();
      const elements = run.tensors.reduce((n, t) => n + t.elements, 0);
      const pool = await this.kernels();
      const aggregator = this.config.run.aggregator;
      const mean = this.secure
        ? await this.secure.mean(round, attempt, inputs.map((i) => i.path), elements, openFileSource, pool ? { pool } : {})
        : isRobust(aggregator)
          ? await robustMean(aggregator, inputs, run.tensors.map((t) => t.elements), openFileSource)
          : undefined;
      const result = await aggregateRound({
        ...(mean ? { mean } : {}),
        ...(pool ? { pool } : {}),
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

  private async commit(round: number, attempt: number, allSites: readonly string[], allDropped: readonly string[], modelSha256: string): Promise<void> {
    const run = this.run!;
    // Only uploads left out of the sum are dropped here: a site revoked once aggregation had
    // started is in this round's model, and the record says so.
    const sites = allSites.filter((site) => !this.control.leftOut.has(site));
    const dropped = [...new Set([...allDropped, ...allSites.filter((site) => this.control.leftOut.has(site))])].sort();
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
    crashPoint('commit.before-journal');
    await this.o.store.append({
      type: 'round-committed',
      runId: run.plan.runId,
      round,
      attempt,
      participants,
      dropped: [...dropped],
      parentSha256,
      modelSha256,
      strategy: this.config.run.strategy,
      serverStep: run.serverSteps + 1,
      bytesUp: att.bytesUp,
      bytesDown: att.bytesDown,
      startedMs: att.startedMs,
    });
    crashPoint('commit.after-journal');
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
    await this.o.afterCommit?.();
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
    this.advance({ type: 'committed', round, attempt });
  }
}
