/**
 * Runs the round scheduler's effects for the driver, one at a time in the order the scheduler
 * emitted them: journal records, tasks to sites, deadline timers, and the aggregate and commit
 * steps (commit.ts). Owns the open attempt's bookkeeping and the deadline timers.
 */
import { invariant } from '../../aggregation/index.js';
import { CoordinatorError } from '../core/errors.js';
import { phaseCrashPoint } from '../core/crash-points.js';
import { RoundCommitter } from './commit.js';
import type { AttemptContext, RoundContext } from './context.js';
import type { EvalAsk } from './evals.js';
import type { Effect } from '../round/types.js';

/** The driver's effect queue: effects run in order, and a failing one is fatal (`onFatal`). */
export class EffectRunner {
  private queue: Promise<void> = Promise.resolve();
  private readonly timers = new Map<string, () => void>();
  private readonly steps: RoundCommitter;
  private current: AttemptContext | undefined;
  private closed = false;

  constructor(private readonly ctx: RoundContext) {
    this.steps = new RoundCommitter(ctx);
  }

  /** The round attempt opened last (its uploads and traffic); undefined before the first. */
  get attempt(): AttemptContext | undefined {
    return this.current;
  }

  /** The attempt whose uploads are aggregated or committed: the scheduler opened it first. */
  private openAttempt(): AttemptContext {
    invariant(this.current !== undefined, 'an attempt is open before its uploads are aggregated or committed');
    return this.current;
  }

  /** Queues `effect` behind every effect queued so far. */
  enqueue(effect: Effect): void {
    this.queueTask(() => this.runEffect(effect));
  }

  /** Queues `task` in order with the effects (e.g. a journal record the scheduler does not emit). */
  queueTask(task: () => Promise<void>): void {
    this.queue = this.queue.then(task).catch((err: unknown) => this.ctx.o.onFatal(err));
  }

  /** Resolves when every effect queued so far has run. */
  idle(): Promise<void> {
    return this.queue;
  }

  /** Cancels the armed phase deadline, if any. */
  cancelDeadlines(): void {
    for (const cancel of this.timers.values()) cancel();
    this.timers.clear();
  }

  /**
   * Stops timers, a running aggregation and the kernel pool; an effect already running finishes,
   * queued ones do nothing.
   */
  close(): void {
    this.closed = true;
    this.cancelDeadlines();
    this.steps.close();
  }

  private async runEffect(effect: Effect): Promise<void> {
    if (this.closed) return;
    const run = this.ctx.run();
    const runId = run.plan.runId;
    switch (effect.type) {
      case 'phaseEntered':
        this.ctx.log.info({ round: effect.round, attempt: effect.attempt, phase: effect.phase }, `phase ${effect.phase}`);
        phaseCrashPoint(effect.phase, effect.round);
        this.ctx.o.bus.emit('phase.changed', { runId, round: effect.round, attempt: effect.attempt, phase: effect.phase, deadlineMs: effect.deadline });
        return;
      case 'armDeadline': {
        this.cancelDeadlines();
        const key = `${effect.round}.${effect.attempt}.${effect.phase}`;
        const ms = Math.max(0, effect.at - this.ctx.o.clock.now());
        this.timers.set(key, this.ctx.o.clock.setTimer(ms, () => {
          this.timers.delete(key);
          this.ctx.dispatch({ type: 'deadline', round: effect.round, attempt: effect.attempt, phase: effect.phase });
        }));
        return;
      }
      case 'recordRoundOpened':
        await this.ctx.o.store.append({ type: 'round-opened', runId, round: effect.round, attempt: effect.attempt });
        this.current = { round: effect.round, attempt: effect.attempt, startedMs: this.ctx.o.clock.now(), bytesUp: 0, bytesDown: 0, bytesReused: 0, uploads: new Map() };
        this.ctx.control.excluded.clear();
        this.ctx.control.leftOut.clear();
        this.ctx.o.bus.emit('round.opened', { runId, round: effect.round, attempt: effect.attempt });
        return;
      case 'sendTrainTasks':
        return this.sendTrainTasks(effect.round, effect.attempt, effect.sites);
      case 'sendKeysTasks':
        return this.ctx.secure()?.sendKeys(runId, effect.round, effect.attempt, effect.sites);
      case 'sendSharesTasks':
        return this.ctx.secure()?.sendShares(effect.round, effect.attempt, effect.sites);
      case 'requestConsistency':
        return this.ctx.secure()?.sendConsistency(effect.round, effect.attempt, effect.survivors, effect.dropped);
      case 'requestUnmask':
        return this.ctx.secure()?.sendUnmask(effect.round, effect.attempt, effect.sites);
      case 'cancelSites':
        for (const site of effect.sites) {
          this.ctx.o.registry.send(site, { kind: 'cancel', runId, round: effect.round, attempt: effect.attempt, reason: effect.reason });
          for (const upload of this.ctx.o.registry.get(site)?.uploads ?? []) upload.abort(new CoordinatorError('ROUND_CLOSED', effect.reason));
          this.ctx.o.bus.emit('site.dropped', { runId, round: effect.round, attempt: effect.attempt, site, reason: effect.reason });
        }
        return;
      case 'startAggregation':
        // Not awaited: aggregation reports back through the scheduler, other effects may run meanwhile.
        void this.steps.aggregate(this.openAttempt(), effect.round, effect.attempt, effect.participants.map((p) => p.site));
        return;
      case 'commitRound':
        return this.steps.commit(this.openAttempt(), effect.round, effect.attempt, effect.participants.map((p) => p.site), effect.dropped, effect.modelSha256);
      case 'recordRoundAborted':
        // First: the attempt's aggregation, if one runs, would only hold the pool and write an orphan.
        this.steps.abortAggregation(effect.round, effect.attempt, new CoordinatorError('ROUND_CLOSED', `round ${effect.round} attempt ${effect.attempt} aborted: ${effect.reason}`, { round: effect.round, attempt: effect.attempt }));
        this.ctx.log.warn({ round: effect.round, attempt: effect.attempt, reason: effect.reason }, 'round attempt aborted');
        await this.ctx.o.store.append({ type: 'round-aborted', runId, round: effect.round, attempt: effect.attempt, reason: effect.reason });
        // The next attempt of a plain round may keep what its sites uploaded in this one (upload/reuse.ts).
        await this.ctx.o.store.pruneSpools(run.plan.secure ? undefined : { round: effect.round });
        this.ctx.o.bus.emit('round.aborted', { runId, round: effect.round, attempt: effect.attempt, reason: effect.reason });
        return;
      case 'runFinished':
        if (!this.ctx.o.store.records().some((r) => r.body.type === 'run-finished' && r.body['runId'] === runId && r.body['rounds'] === effect.rounds)) {
          await this.ctx.o.store.append({ type: 'run-finished', runId, rounds: effect.rounds, modelSha256: run.globalSha256 });
        }
        this.ctx.log.info({ rounds: effect.rounds, model: run.globalSha256 }, 'run finished');
        this.ctx.o.bus.emit('run.finished', { runId, rounds: effect.rounds, modelSha256: run.globalSha256 });
        // A run that evaluates nothing asks for no final score either, but its last round's
        // contributors still learn that it committed, to sign their receipts.
        if (this.ctx.config().run.evaluate) this.ctx.evals.startFinal(this.evalAsk(), this.ctx.o.registry, this.finalEvalTask());
        else for (const site of this.ctx.o.registry.connected()) this.ctx.o.registry.send(site, this.finishedTask());
        return;
      case 'runFailed':
        this.ctx.log.error({ reason: effect.reason }, 'run failed');
        await this.ctx.o.store.append({ type: 'run-failed', runId, reason: effect.reason });
        this.ctx.o.bus.emit('run.failed', { runId, reason: effect.reason });
        return;
    }
  }

  /** What sites are asked to score now: the current global model, within the run's bounds. */
  private evalAsk(): EvalAsk {
    const run = this.ctx.run();
    const config = this.ctx.config().run;
    return { runId: run.plan.runId, modelRound: run.modelRound, modelSha256: run.globalSha256, maxSamples: config.evalMaxSamples, timeoutMs: config.deadlines.evalS * 1000 };
  }

  /** The notice that the run finished with its current model, for a run that evaluates nothing. */
  finishedTask() {
    const run = this.ctx.run();
    return { kind: 'finished' as const, runId: run.plan.runId, model: { sha256: run.globalSha256, sizeBytes: run.globalBytes }, modelRound: run.modelRound };
  }

  /** The task that asks a site to evaluate the run's final model. */
  finalEvalTask() {
    const run = this.ctx.run();
    return {
      kind: 'eval' as const,
      runId: run.plan.runId,
      model: { sha256: run.globalSha256, sizeBytes: run.globalBytes },
      modelRound: run.modelRound,
      deadlineMs: this.ctx.o.clock.now() + this.ctx.config().run.deadlines.evalS * 1000,
    };
  }

  /** Sends `sites` the round's training task; a site without an open task stream is dropped (`siteFailed`). */
  sendTrainTasks(round: number, attempt: number, sites: readonly string[]): void {
    const run = this.ctx.run();
    const s = this.ctx.scheduler().run;
    const deadline = s.phase === 'training' ? s.deadline : this.ctx.o.clock.now();
    const config = this.ctx.config();
    const secure = this.ctx.secure();
    const evaluate = config.run.evaluate;
    if (evaluate) this.ctx.evals.expect(this.evalAsk(), sites);
    for (const site of sites) {
      const sent = this.ctx.o.registry.send(site, {
        kind: 'train',
        runId: run.plan.runId,
        round,
        attempt,
        model: { sha256: run.globalSha256, sizeBytes: run.globalBytes },
        modelRound: run.modelRound,
        tensors: run.tensors,
        encoding: secure?.encoding ?? config.run.encoding,
        train: config.run.train,
        ...(secure ? secure.trainExtras(round, attempt, site, sites) : { shares: [], shareHolders: [] }),
        trainingDeadlineMs: deadline,
        uploadDeadlineMs: deadline + config.run.deadlines.uploadS * 1000,
        maxChunkBytes: this.ctx.o.config.limits.maxChunkBytes,
        maxStreams: this.ctx.o.config.limits.maxStreamsPerSite,
        maxStaleness: config.run.maxStaleness,
        weighting: config.run.weighting,
        maxSiteWeight: config.run.maxSiteWeight,
        evaluate: evaluate && !this.ctx.evals.hasReport(run.modelRound, site),
      });
      if (!sent) this.ctx.dispatch({ type: 'siteFailed', site, round, attempt, reason: 'no open task stream' });
    }
  }
}
