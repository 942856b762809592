/**
 * Federated evaluation bookkeeping: which sites were asked to score which global model, their
 * reports, and the per-site and overall result once all have answered or the deadline passed.
 * Results are journaled (type `eval`) and announced as `round.evaluated`.
 */
import type { Logger } from '../../common/logger.js';
import type { Clock } from './driver.js';
import type { EventBus } from '../observe/events.js';
import type { SiteRegistry, SiteTask } from '../sites/registry.js';
import type { EvalRecord } from '../state/records.js';
import type { StateStore } from '../state/store.js';

interface Pending {
  readonly runId: string;
  readonly modelSha256: string;
  readonly expected: Set<string>;
  readonly reports: Map<string, { loss: number; samples: number }>;
  cancelTimer: (() => void) | undefined;
}

export interface EvalTrackerOptions {
  readonly store: StateStore;
  readonly bus: EventBus;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly onFatal: (err: unknown) => void;
}

/** Tracks evaluations per model round (the round that produced the model; 0 = initial). */
export class EvalTracker {
  private readonly pending = new Map<number, Pending>();
  private readonly done = new Map<number, EvalRecord>();
  private finalRound: number | undefined;

  constructor(private readonly o: EvalTrackerOptions) {}

  /** Loads finished evaluations from the journal. */
  restore(runId: string, records: readonly EvalRecord[]): void {
    for (const r of records) if (r.runId === runId) this.done.set(r.modelRound, r);
  }

  /** Finished evaluation of `modelRound`, if any. */
  result(modelRound: number): EvalRecord | undefined {
    return this.done.get(modelRound);
  }

  hasReport(modelRound: number, site: string): boolean {
    return this.done.has(modelRound) || (this.pending.get(modelRound)?.reports.has(site) ?? false);
  }

  /** Expects reports on `modelRound` from `sites` within `timeoutMs`. */
  expect(runId: string, modelRound: number, modelSha256: string, sites: readonly string[], timeoutMs: number): void {
    if (this.done.has(modelRound)) return;
    let p = this.pending.get(modelRound);
    if (!p) {
      p = { runId, modelSha256, expected: new Set(), reports: new Map(), cancelTimer: undefined };
      this.pending.set(modelRound, p);
    }
    for (const s of sites) p.expected.add(s);
    p.cancelTimer?.();
    p.cancelTimer = this.o.clock.setTimer(timeoutMs, () => this.finish(modelRound));
  }

  /** After the last round: asks every connected site to score the final model. */
  startFinal(modelRound: number, modelSha256: string, registry: SiteRegistry, task: SiteTask, timeoutMs: number): void {
    this.finalRound = modelRound;
    if (this.done.has(modelRound)) return;
    const sites = registry.connected();
    this.expect(task.runId, modelRound, modelSha256, sites, timeoutMs);
    for (const s of sites) if (!this.hasReport(modelRound, s)) registry.send(s, task);
  }

  /** A site that connects after the run finished is asked for the final evaluation if still open. */
  requestFinal(site: string, registry: SiteRegistry, task: SiteTask): void {
    const r = this.finalRound;
    if (r === undefined || this.done.has(r) || this.hasReport(r, site)) return;
    this.pending.get(r)?.expected.add(site);
    registry.send(site, task);
  }

  /** Records one site's report; stale or unexpected reports are ignored (returns false). */
  report(site: string, modelRound: number, modelSha256: string, loss: number, samples: number): boolean {
    const p = this.pending.get(modelRound);
    if (!p || p.modelSha256 !== modelSha256 || !Number.isFinite(loss) || samples <= 0) return false;
    p.reports.set(site, { loss, samples });
    if ([...p.expected].every((s) => p.reports.has(s))) this.finish(modelRound);
    return true;
  }

  private finish(modelRound: number): void {
    const p = this.pending.get(modelRound);
    if (!p) return;
    p.cancelTimer?.();
    this.pending.delete(modelRound);
    if (p.reports.size === 0) {
      this.o.logger.warn({ modelRound }, 'no site reported an evaluation before the deadline');
      return;
    }
    const sites = [...p.reports.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([site, r]) => ({ site, ...r }));
    const samples = sites.reduce((s, r) => s + r.samples, 0);
    const loss = sites.reduce((s, r) => s + r.loss * r.samples, 0) / samples;
    const record: EvalRecord = { type: 'eval', runId: p.runId, modelRound, modelSha256: p.modelSha256, sites, loss, samples };
    this.done.set(modelRound, record);
    this.o.store.append(record).then(
      () => this.o.bus.emit('round.evaluated', { runId: p.runId, modelRound, modelSha256: p.modelSha256, loss, samples, sites }),
      this.o.onFatal,
    );
  }

  close(): void {
    for (const p of this.pending.values()) p.cancelTimer?.();
  }
}
