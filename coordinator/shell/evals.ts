/**
 * Federated evaluation bookkeeping: which sites were asked to score which global model, their
 * reports, and the per-site and overall result once all have answered or the deadline passed.
 * Results are journaled (type `eval`) and announced as `round.evaluated`.
 *
 * A report counts only from a site asked to score that very model of that run, with at most the
 * samples the evaluation asked for (`run.evalMaxSamples`); anything else is refused with a code
 * (NOT_ASKED, EVAL_INVALID, ROUND_CLOSED), never silently ignored. The wire edge has already
 * checked what a report alone can tell (coordinator/service/wire.ts, `evalReportFromWire`).
 */
import { err, invariant, ok, type Result } from '../../aggregation/index.js';
import type { Logger } from '../../common/logger.js';
import type { Clock } from './driver.js';
import type { EventBus } from '../observe/events.js';
import type { SiteRegistry, SiteTask } from '../sites/registry.js';
import type { EvalRecord } from '../state/records.js';
import type { StateStore } from '../state/store.js';

/** One site's score of a model, as the wire edge checked it: finite loss ≥ 0, samples a positive safe integer. */
export interface EvalReport {
  readonly runId: string;
  /** The round that produced the model (0: the initial model). */
  readonly modelRound: number;
  readonly modelSha256: string;
  readonly loss: number;
  readonly samples: number;
}

/** What the coordinator asks sites to score, and within which bounds. */
export interface EvalAsk {
  readonly runId: string;
  readonly modelRound: number;
  readonly modelSha256: string;
  /** The most samples one site's score may rest on (the run's `evalMaxSamples`). */
  readonly maxSamples: number;
  readonly timeoutMs: number;
}

/** Why a report was refused. */
export type EvalRefusalCode = 'NOT_ASKED' | 'EVAL_INVALID' | 'ROUND_CLOSED';

/** An accepted report: a new score, or the same score again (a retried call). */
export type EvalAccepted = 'recorded' | 'repeated';

interface Pending {
  readonly ask: EvalAsk;
  readonly expected: Set<string>;
  readonly reports: Map<string, { loss: number; samples: number }>;
  /** Σ samples of `reports`, kept exact: a report that would make it inexact is refused. */
  samples: number;
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
  /** The latest model round asked about or evaluated: reports beyond it name a model nobody asked about. */
  private latestAsked = -1;

  constructor(private readonly o: EvalTrackerOptions) {}

  /** Loads finished evaluations from the journal; a record whose figures are not numbers (older versions wrote `null` for a loss that overflowed) is left out. */
  restore(runId: string, records: readonly EvalRecord[]): void {
    for (const r of records) {
      if (r.runId !== runId) continue;
      if (!isSaneRecord(r)) {
        this.o.logger.warn({ modelRound: r.modelRound, loss: r.loss, samples: r.samples }, 'journaled evaluation with figures that are no score left out');
        continue;
      }
      this.done.set(r.modelRound, r);
      this.latestAsked = Math.max(this.latestAsked, r.modelRound);
    }
  }

  /** Finished evaluation of `modelRound`, if any. */
  result(modelRound: number): EvalRecord | undefined {
    return this.done.get(modelRound);
  }

  hasReport(modelRound: number, site: string): boolean {
    return this.done.has(modelRound) || (this.pending.get(modelRound)?.reports.has(site) ?? false);
  }

  /** Expects reports on `ask.modelRound` from `sites` within `ask.timeoutMs`. */
  expect(ask: EvalAsk, sites: readonly string[]): void {
    if (this.done.has(ask.modelRound)) return;
    this.latestAsked = Math.max(this.latestAsked, ask.modelRound);
    let p = this.pending.get(ask.modelRound);
    if (!p) {
      p = { ask, expected: new Set(), reports: new Map(), samples: 0, cancelTimer: undefined };
      this.pending.set(ask.modelRound, p);
    }
    for (const s of sites) p.expected.add(s);
    p.cancelTimer?.();
    p.cancelTimer = this.o.clock.setTimer(ask.timeoutMs, () => this.finish(ask.modelRound));
  }

  /** After the last round: asks every connected site to score the final model. */
  startFinal(ask: EvalAsk, registry: SiteRegistry, task: SiteTask): void {
    this.finalRound = ask.modelRound;
    if (this.done.has(ask.modelRound)) return;
    const sites = registry.connected();
    this.expect(ask, sites);
    for (const s of sites) if (!this.hasReport(ask.modelRound, s)) registry.send(s, task);
  }

  /** A site that connects after the run finished is asked for the final evaluation if still open. */
  requestFinal(site: string, registry: SiteRegistry, task: SiteTask): void {
    const r = this.finalRound;
    if (r === undefined || this.done.has(r) || this.hasReport(r, site)) return;
    this.pending.get(r)?.expected.add(site);
    registry.send(site, task);
  }

  /**
   * Records `site`'s report, or says why not: NOT_ASKED (another run, a model this site was not
   * asked to score, a second score that differs from its first), EVAL_INVALID (more samples than
   * asked for), ROUND_CLOSED (the evaluation was asked for but has closed). The same report sent
   * again is accepted as `repeated` and changes nothing.
   */
  report(site: string, r: EvalReport): Result<EvalAccepted, EvalRefusalCode> {
    const context = { site, modelRound: r.modelRound };
    const p = this.pending.get(r.modelRound);
    if (!p) {
      const done = this.done.get(r.modelRound);
      const mine = done?.runId === r.runId && done.modelSha256 === r.modelSha256 ? done.sites.find((s) => s.site === site) : undefined;
      if (mine && mine.loss === r.loss && mine.samples === r.samples) return ok('repeated');
      return r.modelRound <= this.latestAsked
        ? err('ROUND_CLOSED', `the evaluation of model round ${r.modelRound} is not open for reports (closed at its deadline or complete)`, context)
        : err('NOT_ASKED', `site ${site} was not asked to evaluate a model of round ${r.modelRound}`, context);
    }
    const ask = p.ask;
    if (r.runId !== ask.runId) return err('NOT_ASKED', `site ${site} was asked about run ${ask.runId}, not ${r.runId}`, context);
    if (!p.expected.has(site)) return err('NOT_ASKED', `site ${site} was not asked to evaluate model round ${r.modelRound}`, context);
    if (r.modelSha256 !== ask.modelSha256) return err('NOT_ASKED', `model round ${r.modelRound} is ${ask.modelSha256}, not ${r.modelSha256}`, context);
    const before = p.reports.get(site);
    if (before) {
      if (before.loss === r.loss && before.samples === r.samples) return ok('repeated');
      return err('NOT_ASKED', `site ${site} already reported its score of model round ${r.modelRound}; a second, different score is not asked for`, context);
    }
    if (r.samples > ask.maxSamples) {
      return err('EVAL_INVALID', `${r.samples} samples exceed the ${ask.maxSamples} the evaluation asked for (run.evalMaxSamples)`, { ...context, samples: r.samples, maxSamples: ask.maxSamples });
    }
    if (!Number.isSafeInteger(p.samples + r.samples)) {
      return err('EVAL_INVALID', `the evaluation's sample total would pass 2^53 - 1 and stop being exact`, { ...context, samples: r.samples });
    }
    p.reports.set(site, { loss: r.loss, samples: r.samples });
    p.samples += r.samples;
    if ([...p.expected].every((s) => p.reports.has(s))) this.finish(r.modelRound);
    return ok('recorded');
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
    const { runId, modelSha256 } = p.ask;
    const sites = [...p.reports.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([site, r]) => ({ site, ...r }));
    const loss = weightedMeanLoss(sites);
    const samples = p.samples;
    const record: EvalRecord = { type: 'eval', runId, modelRound, modelSha256, sites, loss, samples };
    invariant(isSaneRecord(record), 'an evaluation record holds finite losses and exact sample counts (JSON would write null for a loss that is not finite)');
    this.done.set(modelRound, record);
    this.o.store.append(record).then(
      () => this.o.bus.emit('round.evaluated', { runId, modelRound, modelSha256, loss, samples, sites }),
      this.o.onFatal,
    );
  }

  close(): void {
    for (const p of this.pending.values()) p.cancelTimer?.();
  }
}

/**
 * The sample-weighted mean of the reported losses. The weights are normalised first (samplesᵢ / Σ
 * samples ≤ 1), so no product exceeds its loss and none overflows, whatever the counts; the mean of
 * finite losses lies between the smallest and the largest, and rounding alone could push the sum
 * past them (to Infinity, for losses near the largest double): it is kept within them.
 */
export function weightedMeanLoss(reports: readonly { readonly loss: number; readonly samples: number }[]): number {
  invariant(reports.length > 0, 'a mean is taken over at least one report');
  const total = reports.reduce((s, r) => s + r.samples, 0);
  let mean = 0;
  let lo = Infinity;
  let hi = -Infinity;
  for (const r of reports) {
    mean += (r.samples / total) * r.loss;
    lo = Math.min(lo, r.loss);
    hi = Math.max(hi, r.loss);
  }
  return Math.min(hi, Math.max(lo, mean));
}

/** Whether a journaled evaluation has the figures a score has: finite losses ≥ 0, positive safe integer sample counts. */
function isSaneRecord(r: EvalRecord): boolean {
  const score = (loss: unknown, samples: unknown): boolean => typeof loss === 'number' && Number.isFinite(loss) && loss >= 0 && Number.isSafeInteger(samples) && (samples as number) > 0;
  return score(r.loss, r.samples) && Array.isArray(r.sites) && r.sites.every((s) => score(s.loss, s.samples));
}
