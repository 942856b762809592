/**
 * The thin shell around the round scheduler: feeds it events, hands its effects (journal, tasks,
 * timers, aggregation) to the effect runner (effects.ts), takes admin run control, and
 * answers the services' questions about the open round. Effects run one at a time in order; the
 * scheduler itself stays pure.
 */
import type { Logger } from '../../common/logger.js';
import type { Clock } from '../core/clock.js';
export { systemClock, type Clock } from '../core/clock.js';
import { tokenCap, trainOverlap, type ResolvedCoordinatorConfig, type ResolvedRun, type RunningConfig } from '../config.js';
import { deltaSegments, invariant, segmentsBytes } from '../../aggregation/index.js';
import { crashPoint, crashPointArmed } from '../core/crash-points.js';
import { CoordinatorError } from '../core/errors.js';
import { EvalTracker, type EvalReport } from './evals.js';
import type { EventBus } from '../observe/events.js';
import type { SiteRegistry } from '../sites/registry.js';
import { initialSchedulerState, step } from '../round/machine.js';
import type { RunPlan, SchedulerEvent, SchedulerState, SiteProgress } from '../round/types.js';
import type { AttemptContext, RunContext } from './context.js';
import { EffectRunner } from './effects.js';
import { journalRunStart, runContextOf } from './run-start.js';
import { validateHeader, type SpooledUpload, type UploadExpectation, type UploadIntent } from '../upload/header.js';
import type { UploadHeader } from '../upload/frames.js';
import { SecureSide } from '../secure/coordinator-side.js';
import { refuseSecureStages } from '../secure/coordinator-side.js';
import type { SecureStageHandlers } from '../secure/messages.js';
import type { AdminRoundPort, AttemptAt, ShardAggregationPort, SiteRoundPort, TransferLimits, UploadRoundPort } from './ports.js';
import type { StateStore } from '../state/store.js';
import { siteJoinedRecord } from '../audit/joins.js';
import { RunControlState, activeRunAtStart, assertCanStart } from './run-control.js';

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
  /** Sites locked out by a revocation in the journal at start-up: rounds never wait for them. */
  readonly revokedSites: readonly string[];
  /** The aggregator shards (issue 22), when the config names some: plain means run on them when they are ready. */
  readonly shards?: ShardAggregationPort | undefined;
}

/** Runs rounds: the scheduler, its effects, and the open round's bookkeeping. */
export class RoundDriver implements SiteRoundPort, UploadRoundPort, AdminRoundPort {
  private state: SchedulerState = initialSchedulerState();
  private run: RunContext | undefined;
  /** Runs the scheduler's effects in order (effects.ts). */
  private readonly runner: EffectRunner;
  readonly evals: EvalTracker;
  private readonly log: Logger;
  private readonly startedMs: number;
  /** Secure aggregation middleware, when the run uses it. */
  private secure: SecureSide | undefined;
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
    this.runner = new EffectRunner({
      o,
      log: this.log,
      control: this.control,
      evals: this.evals,
      run: () => this.activeRun('an effect runs only while a run is driven'),
      config: () => this.config,
      secure: () => this.secure,
      scheduler: () => this.state,
      dispatch: (event) => this.dispatch(event),
      advance: (event) => this.advance(event),
      pause: async (reason) => {
        const phase = this.state.run.phase;
        if (phase === 'idle' || phase === 'finished' || phase === 'failed') return;
        this.log.warn({ reason }, 'run paused by the coordinator');
        await this.setPaused(true, 'coordinator', reason);
      },
    });
    for (const site of o.revokedSites) this.excuseSite(site, true);
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
    const recovered = await journalRunStart(store, config);
    const plan: RunPlan = { ...recovered.started.plan, rounds: recovered.rounds };
    // A run started after another one must not inherit its secure side.
    this.secure = undefined;
    if (plan.secure) {
      this.secure = new SecureSide({
        config,
        registry: this.o.registry,
        logger: this.log,
        dispatch: (e) => this.dispatch(e),
        phase: () => this.state.run,
        threshold: plan.secure.threshold,
      });
    }
    this.run = await runContextOf(store, recovered, plan, this.o.shards?.names);
    this.evals.restore(cfg.id, recovered.evals);
    // A plain round interrupted mid-upload keeps its spools: the sites' uploads may carry over (upload/reuse.ts).
    await store.pruneSpools(plan.secure ? undefined : { round: recovered.nextRound });
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
    this.runner.cancelDeadlines();
    this.log.info({ held: event.type }, 'run paused at a round boundary');
  }

  /** Pauses (the open round completes; no new one opens) or resumes the run; `reason` is journaled. */
  async setPaused(paused: boolean, admin: string, reason?: string): Promise<string> {
    const runId = this.active?.run.id;
    const phase = this.state.run.phase;
    if (!runId || phase === 'idle' || phase === 'finished' || phase === 'failed') {
      throw new CoordinatorError('RUN_STATE', `no active run to ${paused ? 'pause' : 'resume'} (run state: ${phase})`);
    }
    if (this.control.paused === paused) return this.runState;
    await this.o.store.append({ type: paused ? 'run-paused' : 'run-resumed', runId, admin, ...(reason ? { reason } : {}) });
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
      this.state = { ...this.state, run: { phase: 'failed', plan: this.activeRun('an active run being aborted has a run context').plan, reason: why } };
      this.runner.enqueue({ type: 'runFailed', reason: why });
      return;
    }
    this.dispatch({ type: 'abortRequested', reason: why });
  }

  /**
   * Drops a revoked site from the open round: before its upload completes through the scheduler's
   * drop path (a dropout under secure aggregation); after, its upload is left out of the sum. From
   * now on no `open` phase waits for it, whether or not a round is open. Returns the round, or 0.
   */
  dropRevokedSite(site: string, reason: string): number {
    this.excuseSite(site, true);
    const s = this.state.run;
    if (!('round' in s)) return 0;
    this.control.excluded.add(site);
    this.failSite(site, s.round, s.attempt, reason);
    return s.round;
  }

  /**
   * Whether the `open` phase may stop waiting for `site` when the plan expects it: a revoked site
   * can never connect, until an admin approves a new certificate for it.
   */
  excuseSite(site: string, excused: boolean): void {
    this.dispatch({ type: 'siteExcused', site, excused });
  }

  /** "running", "pausing" (the open round still runs), "paused", or the scheduler's end state. */
  get runState(): string {
    const phase = this.state.run.phase;
    if (this.control.aborted) return 'aborted';
    if (phase === 'finished' || phase === 'failed' || phase === 'idle') return this.control.held ? 'paused' : phase;
    if (this.control.paused) return this.control.held ? 'paused' : 'pausing';
    return 'running';
  }

  /** Feeds one event to the scheduler. Refusals are returned, not thrown. */
  dispatch(event: SchedulerEvent): ReturnType<typeof step> {
    const result = step(this.state, event, this.o.clock.now());
    if (!result.ok) {
      this.log.debug({ refusal: result.refusal }, 'event refused');
      return result;
    }
    this.state = result.state;
    for (const effect of result.effects) this.runner.enqueue(effect);
    return result;
  }

  /** Resolves when every effect queued so far has run (tests and shutdown). */
  idle(): Promise<void> {
    return this.runner.idle();
  }

  // ---------------------------------------------------------------- questions from the services

  /** The scheduler state (read-only). */
  get scheduler(): SchedulerState {
    return this.state;
  }

  /** The run being driven; `why` names the invariant that says there must be one. */
  private activeRun(why: string): RunContext {
    invariant(this.run !== undefined, why);
    return this.run;
  }

  get runContext(): Readonly<RunContext> | undefined {
    return this.run;
  }

  get uptimeMs(): number {
    return this.o.clock.now() - this.startedMs;
  }

  checkUpload(header: UploadHeader, site: string): UploadIntent {
    // A part goes to its aggregator shard only: the coordinator takes whole deltas.
    if (header.partStart !== 0 || header.partEnd !== 0) {
      throw new CoordinatorError('UPLOAD_INVALID', `the coordinator takes whole deltas, not part [${header.partStart}, ${header.partEnd}): parts go to the aggregator shards AdmitUpload names`);
    }
    return validateHeader(header, this.uploadExpectation(), site);
  }

  /** What an upload from `site` must match now; throws ROUND_CLOSED when no round takes uploads. */
  private uploadExpectation(): UploadExpectation {
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
      weighting: this.config.run.weighting,
      maxSiteWeight: this.config.run.maxSiteWeight,
      modelRound: this.run.modelRound,
      maxStaleness: this.config.run.maxStaleness,
      bases: this.run.bases,
      tokenCap: tokenCap(this.config.run.train),
      maxAppliedSteps: trainOverlap(this.config.run.train)?.maxAppliedSteps,
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
    const att = this.runner.attempt;
    if (att && att.round === intent.round && att.attempt === intent.attempt) att.uploads.set(site, { intent, spool });
    const r = this.dispatch({ type: 'uploadCompleted', site, round: intent.round, attempt: intent.attempt, weight: intent.weight });
    if (r.ok) this.o.bus.emit('upload.done', { runId: this.activeRun('an accepted upload belongs to the driven run').plan.runId, round: intent.round, attempt: intent.attempt, site, bytes: spool.bytes, weight: intent.weight });
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

  countBytes(direction: 'up' | 'down' | 'reused', n: number): void {
    const att = this.runner.attempt;
    if (!att) return;
    if (direction === 'up') {
      att.bytesUp += n;
      if (crashPointArmed('upload.half')) this.killMidUpload(att);
    } else if (direction === 'down') att.bytesDown += n;
    else att.bytesReused += n;
  }

  /** The `upload.half` kill point: half of what the invited sites' deltas hold has arrived (logged first, for the failover bench). */
  private killMidUpload(att: AttemptContext): void {
    const s = this.state.run;
    if (!this.run || !('roster' in s)) return;
    const encoding = this.secure?.encoding ?? this.config.run.encoding;
    const expectedBytes = Object.keys(s.roster).length * segmentsBytes(deltaSegments(encoding, this.run.tensors.map((t) => t.elements)));
    if (att.bytesUp * 2 < expectedBytes) return;
    this.log.warn({ round: att.round, attempt: att.attempt, phase: 'upload', bytesUp: att.bytesUp, expectedBytes }, 'kill point upload.half reached');
    crashPoint('upload.half', att.round);
  }

  /** Idle timeout, stream limit and window of transfers (`limits`). */
  transferLimits(): TransferLimits {
    const l = this.o.config.limits;
    return { idleMs: l.idleTimeoutS * 1000, maxStreamsPerSite: l.maxStreamsPerSite, windowBytes: l.uploadWindowBytes };
  }

  /** A site's score of a committed model (federated evaluation); throws the tracker's refusal. */
  reportEval(site: string, report: EvalReport): void {
    const r = this.evals.report(site, report);
    if (r.ok) return;
    this.log.warn({ site, modelRound: report.modelRound, code: r.code, reason: r.issues.join('; ') }, 'evaluation report refused');
    throw new CoordinatorError(r.code, r.issues.join('; '), { site, modelRound: report.modelRound });
  }

  uploadingAttempt(): AttemptAt | undefined {
    const s = this.state.run;
    return s.phase === 'training' || s.phase === 'upload' ? { round: s.round, attempt: s.attempt } : undefined;
  }

  siteStatus(site: string): SiteProgress['status'] | undefined {
    const s = this.state.run;
    return 'roster' in s ? s.roster[site]?.status : undefined;
  }

  get paused(): boolean {
    return this.control.paused;
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
      this.runner.sendTrainTasks(s.round, s.attempt, [site]);
    }
    const run = this.run;
    if (run && this.state.run.phase === 'finished') {
      if (this.config.run.evaluate) this.evals.requestFinal(site, this.o.registry, this.runner.finalEvalTask());
      else this.o.registry.send(site, this.runner.finishedTask());
    }
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
    this.runner.close();
    for (const cancel of this.away.values()) cancel();
    this.away.clear();
    this.evals.close();
  }

  /** Journals a site's join with its certificate fingerprint (audit), in order with the effects. */
  private journalJoin(site: string): void {
    const rec = this.o.registry.get(site);
    if (!rec) return;
    const { fingerprint, agentVersion } = rec;
    this.runner.queueTask(async () => {
      const record = siteJoinedRecord(this.o.store.records(), site, fingerprint, agentVersion);
      if (record) await this.o.store.append(record);
    });
  }
}
